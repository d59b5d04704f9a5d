/**
 * The fake hub's `host.writeSignedRPM` (kojihub write_signed_rpm) on a synthetic rpm: the
 * signed copy is the rpm with the cached signature header spliced in at koji's path, an
 * existing copy is kept unless forced, and the hub's faults for a bad rpm, key or sigkey.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { afterEach } from "vitest"
import { addBuild, dropRepoWorld, repoWorld } from "../fakehub/newrepo.js"
import { findRpmSighdr, ripRpmSighdr, storeRpmSig, writeSignedRpm } from "../fakehub/signed.js"

/** A signature header with `il` index entries and `dl` data bytes (contents filled with `fill`). */
const sigHeader = (il: number, dl: number, fill: number): Buffer => {
  const h = Buffer.alloc(16 + 16 * il + dl, fill)
  Buffer.from([0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]).copy(h, 0)
  h.writeUInt32BE(il, 8)
  h.writeUInt32BE(dl, 12)
  const pad = (8 - ((8 + 16 * il + dl) % 8)) % 8
  return Buffer.concat([h, Buffer.alloc(pad)])
}

const LEAD = Buffer.alloc(96, 0xed)
const MAIN = Buffer.from("main header and payload")

const dirs: Array<string> = []
afterEach(() => {
  for (const d of dirs.splice(0)) {
    dropRepoWorld(d)
    rmSync(d, { recursive: true, force: true })
  }
})

/** A topdir with build 1 (foo-1.0-1) and its rpm 10 (x86_64) on disk. */
const world = () => {
  const topdir = mkdtempSync(path.join(tmpdir(), "adjutant-signed-"))
  dirs.push(topdir)
  const w = repoWorld(topdir)
  addBuild(w, { id: 1, name: "foo", version: "1.0", release: "1" }, [{ id: 10, arch: "x86_64" }])
  const rpm = path.join(topdir, "packages/foo/1.0/1/x86_64/foo-1.0-1.x86_64.rpm")
  mkdirSync(path.dirname(rpm), { recursive: true })
  writeFileSync(rpm, Buffer.concat([LEAD, sigHeader(1, 5, 0x11), MAIN]))
  return { topdir, w, rpm, signed: path.join(topdir, "packages/foo/1.0/1/data/signed/abcd1234/x86_64/foo-1.0-1.x86_64.rpm") }
}

const faultOf = (f: () => unknown): string => {
  try {
    f()
  } catch (e) {
    return e !== null && typeof e === "object" && "faultString" in e ? String(e.faultString) : `not a fault: ${String(e)}`
  }
  return "no fault"
}

describe("fake hub host.writeSignedRPM", () => {
  it("finds the signature header as koji does (96-byte lead, 8-byte padding)", () => {
    const { rpm } = world()
    assert.deepStrictEqual(findRpmSighdr(readFileSync(rpm)), { start: 96, size: 16 + 16 + 5 + 3 })
    assert.strictEqual(ripRpmSighdr(rpm).length, 40)
  })

  it("writes <builddir>/data/signed/<key>/<arch>/<nvra>.rpm with the cached header spliced in", () => {
    const { w, rpm, signed } = world()
    const newSig = sigHeader(2, 9, 0x22)
    storeRpmSig(w, 10, "ABCD1234", newSig)
    assert.isNull(writeSignedRpm(w, 10, "ABCD1234", false))
    assert.deepStrictEqual(readFileSync(signed), Buffer.concat([LEAD, newSig, MAIN]))
    assert.deepStrictEqual(ripRpmSighdr(signed), newSig)
    assert.deepStrictEqual(readFileSync(rpm), Buffer.concat([LEAD, sigHeader(1, 5, 0x11), MAIN]))
  })

  it("keeps an existing signed copy unless forced; takes N-V-R.A and string ids", () => {
    const { w, signed } = world()
    storeRpmSig(w, 10, "abcd1234", sigHeader(1, 1, 0x33))
    mkdirSync(path.dirname(signed), { recursive: true })
    writeFileSync(signed, "old copy")
    writeSignedRpm(w, "foo-1.0-1.x86_64", "abcd1234", false)
    assert.strictEqual(readFileSync(signed, "utf8"), "old copy")
    writeSignedRpm(w, "10", "abcd1234", true)
    assert.deepStrictEqual(ripRpmSighdr(signed), sigHeader(1, 1, 0x33))
  })

  it("faults as the hub: no signature for the key, no such rpm, a sigkey that is not a string, a missing header file", () => {
    const { w, rpm } = world()
    assert.strictEqual(faultOf(() => writeSignedRpm(w, 10, "feedface", false)), "No cached signature for package foo-1.0-1.x86_64, key feedface")
    assert.strictEqual(faultOf(() => writeSignedRpm(w, 99, "feedface", false)), "No such rpm: {'id': 99}")
    assert.strictEqual(faultOf(() => writeSignedRpm(w, 10, 5, false)), "<class 'AttributeError'>: 'int' object has no attribute 'lower'")
    assert.strictEqual(faultOf(() => writeSignedRpm(w, "foo", "feedface", false)), "invalid format: foo")
    w.sigkeys.set(10, ["feedface"])
    assert.include(faultOf(() => writeSignedRpm(w, 10, "feedface", false)), "<class 'FileNotFoundError'>: [Errno 2] No such file or directory: '")
    rmSync(rpm)
    assert.strictEqual(faultOf(() => writeSignedRpm(w, 10, "feedface", false)), `No such path: ${rpm}`)
  })
})
