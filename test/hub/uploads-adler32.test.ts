import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import { execFileSync } from "node:child_process"
import { adler32Hexdigest, adler32Update, adler32Hex } from "../../src/hub/adler32.js"

describe("adler32", () => {
  it("matches zlib on known inputs (values from python3 zlib.adler32)", () => {
    assert.strictEqual(adler32Hexdigest(new Uint8Array()), "00000001")
    assert.strictEqual(adler32Hexdigest(new TextEncoder().encode("a")), "00620062")
    // The rawUpload capture (koji-captures raw-client/20-rawUpload.txt): 55 bytes → 3d1112fe.
    assert.strictEqual(adler32Hexdigest(new TextEncoder().encode("rawbuilder.py: pretending to run task 1 (build)\nline 2\n")), "3d1112fe")
    const ramp = new Uint8Array(25600)
    for (let i = 0; i < ramp.length; i++) ramp[i] = i % 256
    assert.strictEqual(adler32Hexdigest(ramp), "747fd0e0")
    assert.strictEqual(adler32Hexdigest(new Uint8Array(100000).fill(0xff)), "149a302c")
  })

  it.effect("incremental updates equal one pass, and python's zlib agrees on random data", () =>
    Effect.sync(() => {
      FastCheck.assert(
        FastCheck.property(FastCheck.uint8Array({ maxLength: 20000 }), FastCheck.nat({ max: 20000 }), (bytes, cut) => {
          const k = Math.min(cut, bytes.length)
          const split = adler32Update(adler32Update(1, bytes.subarray(0, k)), bytes.subarray(k))
          return adler32Hex(split) === adler32Hexdigest(bytes)
        }),
        { numRuns: 50 }
      )
      const big = new Uint8Array(3 * 1024 * 1024 + 12345)
      for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24
      const py = execFileSync("python3", ["-c", "import sys,zlib; print('%08x' % (zlib.adler32(sys.stdin.buffer.read()) & 0xffffffff))"], { input: big }).toString().trim()
      assert.strictEqual(adler32Hexdigest(big), py)
    }))
})
