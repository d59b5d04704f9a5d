/**
 * The host checks of the hostile suite can fail: each one is shown something it must report — a
 * process with a marker, a setuid file, a sentinel, a sparse file's real size, and (as root) a
 * mount and a loop device left under the base directory.
 */
import { execFileSync, spawn } from "node:child_process"
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterEach, assert, beforeEach, describe, it } from "vitest"
import { allocatedBytes, filesNamed, loopsUnder, mountsUnder, setuidFiles, suspectProcesses } from "./host.js"

const isRoot = process.getuid?.() === 0
if (!isRoot) console.warn("skipping the mount and loop device checks: they need root")

let base: string

describe("hostile suite host checks", () => {
  beforeEach(() => {
    base = mkdtempSync(path.join(tmpdir(), "adjutant-hostcheck-"))
  })
  afterEach(() => {
    rmSync(base, { recursive: true, force: true })
  })

  it("a process with a marker in its command line is reported, with its ids and capabilities", async () => {
    const child = spawn("sh", ["-c", "sleep 5; : HOSTILE_SELFTEST"], { stdio: "ignore" })
    try {
      await new Promise((r) => setTimeout(r, 200))
      const seen = suspectProcesses({ base: 2_100_000_000, size: 65536 }).filter((p) => p.cmdline.includes("HOSTILE_SELFTEST"))
      assert.strictEqual(seen.length, 1)
      assert.strictEqual(seen[0]!.pid, child.pid)
      assert.deepStrictEqual(seen[0]!.uids, Array(4).fill(process.getuid?.() ?? 0))
    } finally {
      child.kill()
    }
  })

  it("setuid and setgid files and sentinels are found; a sparse file counts what it holds", () => {
    writeFileSync(path.join(base, "plain"), "x")
    writeFileSync(path.join(base, "suid"), "x")
    chmodSync(path.join(base, "suid"), 0o4755)
    mkdirSync(path.join(base, "d"))
    writeFileSync(path.join(base, "d", "sgid"), "x")
    chmodSync(path.join(base, "d", "sgid"), 0o2755)
    writeFileSync(path.join(base, "d", "HOSTILE_SENTINEL_x"), "x")
    assert.deepStrictEqual(setuidFiles(base).map((f) => path.relative(base, f.path)).sort(), ["d/sgid", "suid"])
    assert.deepStrictEqual(filesNamed("HOSTILE_SENTINEL", [{ dir: base }]), [path.join(base, "d", "HOSTILE_SENTINEL_x")])
    const fd = openSync(path.join(base, "sparse"), "w")
    closeSync(fd)
    execFileSync("truncate", ["-s", "1T", path.join(base, "sparse")])
    assert.isBelow(allocatedBytes(base), 1024 * 1024)
  })

  it.skipIf(!isRoot)("a mount and a loop device under the base are reported (root)", () => {
    const mnt = path.join(base, "mnt")
    mkdirSync(mnt)
    const img = path.join(base, "disk.img")
    execFileSync("truncate", ["-s", "8M", img])
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,nosuid,nodev", "tmpfs", mnt])
    const loop = execFileSync("losetup", ["-f", "--show", img], { encoding: "utf8" }).trim()
    try {
      assert.deepStrictEqual(mountsUnder(base).map((m) => [m.point, m.fstype]), [[mnt, "tmpfs"]])
      assert.include(mountsUnder(base)[0]!.options, "nosuid")
      assert.deepStrictEqual(loopsUnder(base), [`${loop} → ${img}`])
    } finally {
      execFileSync("losetup", ["-d", loop])
      execFileSync("umount", [mnt])
    }
    assert.deepStrictEqual(mountsUnder(base), [])
    assert.deepStrictEqual(loopsUnder(base), [])
  })
})
