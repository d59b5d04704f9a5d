/**
 * Recovery after a killed daemon (issue 12 §1): what a task leaves when its process dies — a
 * container, the loop-mounted task disk, the overlay root on it, the repo proxy's socket — is
 * found and removed in order, at start-up and before the task's workdir is used again. The
 * mount tests make the real mounts of taskDisk.ts and overlay.ts and leak them, as SIGKILL does.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Scope } from "effect"
import { taskRoot } from "../../src/buildroot/overlay.js"
import { taskDisk } from "../../src/buildroot/taskDisk.js"
import { Containers } from "../../src/containers/Containers.js"
import { MemoryContainers } from "../../src/containers/MemoryContainers.js"
import {
  clearTaskDir, isUnder, loopsUnder, mountsUnder, parseMountInfo, readLoopDevices, readMounts, recoverHost
} from "../../src/daemon/Recovery.js"
import { tempDir } from "../buildroot/support.js"

const isRoot = process.getuid?.() === 0
const canMount = isRoot && spawnSync("mkfs.ext4", ["-V"], { stdio: "ignore" }).status === 0

describe("Recovery: reading mountinfo and loop devices", () => {
  it("parses mountinfo with escaped paths; mounts under a root come innermost first, stacked ones last-made first", () => {
    const text = [
      "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
      "100 27 7:0 / /work/tasks/1/1/broot rw,nosuid,nodev - ext4 /dev/loop0 rw",
      "101 100 0:60 / /work/tasks/1/1/broot/task/root rw - overlay overlay rw,lowerdir=/c/r",
      "102 27 0:61 / /work/with\\040space rw - tmpfs tmpfs rw",
      "103 27 0:62 / /workshop rw - tmpfs tmpfs rw",
      "104 100 0:63 / /work/tasks/1/1/broot rw - tmpfs tmpfs rw",
      "garbage"
    ].join("\n")
    const mounts = parseMountInfo(text)
    assert.strictEqual(mounts.length, 6)
    assert.strictEqual(mounts[3]!.mountPoint, "/work/with space")
    assert.deepStrictEqual(mounts[2], { id: 101, mountPoint: "/work/tasks/1/1/broot/task/root", fsType: "overlay", source: "overlay" })
    assert.deepStrictEqual(mountsUnder(mounts, ["/work"]).map((m) => m.id), [101, 104, 100, 102])
    assert.deepStrictEqual(mountsUnder(mounts, ["/work/tasks/1/1"]).map((m) => m.id), [101, 104, 100])
    assert.isFalse(isUnder("/workshop", "/work"))
    assert.isFalse(isUnder("/work", "/work"))
    assert.isTrue(isUnder("/work/a", "/work/"))
    assert.deepStrictEqual(
      loopsUnder([{ device: "/dev/loop3", backingFile: "/work/tasks/1/1/broot.img" }, { device: "/dev/loop4", backingFile: "/var/lib/x.img" }], ["/work"]),
      [{ device: "/dev/loop3", backingFile: "/work/tasks/1/1/broot.img" }]
    )
  })
})

/** The repo proxy's socket file as a SIGKILLed daemon leaves it: its server, in a process killed while listening. */
const deadProxySocket = (socket: string) =>
  Effect.promise(async () => {
    const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(socket)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] })
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()))
    child.kill("SIGKILL")
    await new Promise<void>((resolve) => child.once("exit", () => resolve()))
    assert.isTrue(fs.statSync(socket).isSocket())
  })

/** What a buildArch killed mid-build leaves in `taskDir`: disk, overlay root, proxy socket; the scope is never closed. */
const leakBuildroot = (taskDir: string, lower: string) =>
  Effect.gen(function*() {
    const leaked = yield* Scope.make()
    const disk = yield* Scope.extend(taskDisk(path.join(taskDir, "broot"), 64 * 1024 * 1024), leaked)
    yield* Scope.extend(taskRoot(lower, path.join(disk.dir, "task")), leaked)
    yield* deadProxySocket(path.join(disk.dir, "proxy.sock"))
    return leaked
  })

/** A tiny cached root for the overlay's lower dir. */
const lowerRoot = (base: string) => {
  const lower = path.join(base, "cache", "root")
  fs.mkdirSync(path.join(lower, "etc"), { recursive: true })
  fs.writeFileSync(path.join(lower, "etc", "os-release"), "ID=fixture\n")
  return lower
}

const mountsIn = (dir: string) => mountsUnder(readMounts(), [dir]).map((m) => m.mountPoint)
const loopsIn = (dir: string) => loopsUnder(readLoopDevices(), [dir]).map((l) => l.device)

describe.skipIf(!canMount)(`Recovery with real mounts${canMount ? "" : " (needs root and mkfs.ext4)"}`, () => {
  it.scopedLive("start-up: the orphan container, the overlay root, the task disk and its loop device, the task directory go, in that order", () =>
    Effect.gen(function*() {
      const base = yield* tempDir("adjutant-recovery-")
      const workdir = path.join(base, "work")
      const taskDir = path.join(workdir, "tasks", "7", "1007")
      const leaked = yield* leakBuildroot(taskDir, lowerRoot(base))
      const probe = path.join(workdir, ".adjutant-propagation-0123")
      fs.mkdirSync(probe)
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe])
      // The daemon's own container of task 1007, left running by the killed process.
      const containers = yield* Containers
      yield* Scope.extend(containers.create({ image: "fixture", command: ["sleep", "1000"], role: "build", taskId: 1007 }), leaked)
      assert.deepStrictEqual(mountsIn(workdir).length, 3)
      assert.strictEqual(loopsIn(workdir).length, 1)
      // The failure of issue 12: the rerun's `rm -rf` of the workdir.
      const rm = yield* Effect.either(Effect.tryPromise(() => fsp.rm(taskDir, { recursive: true, force: true })))
      assert.isTrue(rm._tag === "Left" && String(rm.left.error).includes("EBUSY"), String(rm))

      const report = yield* recoverHost({ workdir })
      assert.strictEqual(report.containers.length, 1)
      assert.deepStrictEqual(report.failed, [])
      assert.strictEqual(report.unmounted.length, 3)
      const at = (p: string) => report.unmounted.findIndex((u) => u.startsWith(`${p} (`))
      assert.isAtLeast(at(path.join(taskDir, "broot", "task", "root")), 0, report.unmounted.join("; "))
      assert.isBelow(at(path.join(taskDir, "broot", "task", "root")), at(path.join(taskDir, "broot")), "the overlay before the disk under it")
      assert.isAtLeast(at(probe), 0)
      assert.deepStrictEqual(mountsIn(workdir), [])
      assert.deepStrictEqual(loopsIn(workdir), [])
      assert.sameMembers([...report.removed], [taskDir, probe])
      assert.isFalse(fs.existsSync(taskDir))
      assert.isFalse(fs.existsSync(probe))
      assert.deepStrictEqual((yield* (yield* MemoryContainers).live).map((c) => c.name), [])
      // Nothing was left, so a second recovery finds nothing.
      const again = yield* recoverHost({ workdir })
      assert.deepStrictEqual([again.containers, again.unmounted, again.detached, again.removed, again.failed].map((l) => l.length), [0, 0, 0, 0, 0])
    }).pipe(Effect.provide(Layer.merge(Containers.layerMemory({ hostName: "recovery-host" }), Layer.empty))))

  it.scopedLive("a task's workdir used again: the earlier run's mounts are released and the directory is empty", () =>
    Effect.gen(function*() {
      const base = yield* tempDir("adjutant-recovery-")
      const taskDir = path.join(base, "work", "tasks", "8", "1008")
      yield* leakBuildroot(taskDir, lowerRoot(base))
      fs.writeFileSync(path.join(taskDir, "mock_config.log"), "from the killed run\n")
      assert.strictEqual(yield* clearTaskDir(taskDir), taskDir)
      assert.deepStrictEqual(fs.readdirSync(taskDir), [])
      assert.deepStrictEqual(mountsIn(base), [])
      assert.deepStrictEqual(loopsIn(base), [])
    }))
})
