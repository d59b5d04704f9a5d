/** adler32Combine: the whole file's adler32 from its chunks' (what fastUpload asks checkUpload to confirm). */
import { assert, describe, it } from "@effect/vitest"
import { adler32, adler32Combine } from "../../src/hub/adler32.js"

describe("adler32Combine", () => {
  it("equals the adler32 of the concatenation, for pieces of any length (empty, 1, 65521 ± 1, a MiB)", () => {
    let x = 7
    const bytes = (n: number) => {
      const b = new Uint8Array(n)
      for (let i = 0; i < n; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        b[i] = x >>> 24
      }
      return b
    }
    const lengths = [0, 1, 2, 5551, 5552, 65520, 65521, 65522, 131042, 1048576, 3]
    for (const a of lengths) {
      for (const b of lengths) {
        const p = bytes(a)
        const q = bytes(b)
        const whole = new Uint8Array(a + b)
        whole.set(p)
        whole.set(q, a)
        assert.strictEqual(adler32Combine(adler32(p), adler32(q), b), adler32(whole), `${a} + ${b}`)
      }
    }
    const ones = new Uint8Array(3 * 1048576).fill(255)
    let running = adler32(ones.subarray(0, 1048576))
    for (let i = 1; i < 3; i++) running = adler32Combine(running, adler32(ones.subarray(i * 1048576, (i + 1) * 1048576)), 1048576)
    assert.strictEqual(running, adler32(ones))
  })
})
