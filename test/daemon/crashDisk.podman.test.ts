/**
 * Issue 12 §4, disk faults, with the real program as a child process (crashWorld.ts) whose
 * workdir is a small tmpfs of the test's own:
 * - the workdir's file system runs full while a build runs: that task fails with a fault that
 *   names the full path, another task running at the same time closes, the daemon goes on;
 * - kojid's `minspace`: while the workdir has less free than that, the host reports itself not
 *   ready and takes no task; once space is back it takes and closes it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, assert, describe, it } from "vitest"
import { freeMB } from "../../src/daemon/Readiness.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { podmanInstalled, podmanSkipReason } from "../support/podman.js"
import { type CrashWorld, startCrashWorld, stderrOf } from "./crashWorld.js"

const requirePodman = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const MiB = 1024 * 1024

const until = async (cond: () => boolean | Promise<boolean>, what: string, ms: number, why: () => string = () => ""): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${why()}`)
    await sleep(100)
  }
}

const logOf = (world: CrashWorld): string => {
  try {
    return fs.readFileSync(world.logFile, "utf8")
  } catch {
    return ""
  }
}

/** Writes zeros to `file` until the file system is full (ENOSPC); the bytes written. */
const fillUp = (file: string): number => {
  const fd = fs.openSync(file, "w")
  const chunk = Buffer.alloc(MiB)
  let n = 0
  try {
    for (;;) n += fs.writeSync(fd, chunk)
  } catch (e) {
    if (!(typeof e === "object" && e !== null && "code" in e && e.code === "ENOSPC")) throw e
  } finally {
    fs.closeSync(fd)
  }
  return n
}

const readiness = (world: CrashWorld, from: number): ReadonlyArray<unknown> =>
  world.hub.state.calls.slice(from).filter((c) => c.method === "host.updateHost").map((c) => c.params[1])

const reports = (world: CrashWorld, id: number): number =>
  world.hub.state.calls.filter((c) =>
    (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === id && c.fault === undefined && c.http === undefined).length

let world: CrashWorld | undefined
afterEach(async () => {
  await world?.close()
  world = undefined
})

describe.skipIf(!podmanInstalled && !requirePodman)(`disk faults (needs podman${podmanInstalled ? "" : `: ${podmanSkipReason}`})`, () => {
  it("the workdir fills up mid-build: that task fails naming the path, a task beside it closes, the daemon goes on", async () => {
    world = await startCrashWorld("diskfull", { workdirTmpfsBytes: 512 * MiB })
    const w = world
    const daemon = w.startDaemon()
    const why = () => `${stderrOf(daemon).slice(-3000)}\n${logOf(w).slice(-6000)}`
    const srpm = w.upload(`${w.fixture.srpms}/fixture-hello-1.0-1.src.rpm`)
    const build = w.hub.createTask("rebuildSRPM", [srpm, "fixture-build", { repo_id: 1 }], { arch: "noarch" })
    const beside = w.hub.createTask("sleep", [25])
    // The build's container runs (its fill, or rpmbuild): fill the workdir's file system.
    await until(async () => (await w.containers()).some((n) => n.includes(`-t${build}-`)), "a container of the build", 240_000, why)
    const filler = path.join(w.workdir, "filler")
    fillUp(filler)
    const done = (state: number | undefined) => state === TaskState.CLOSED || state === TaskState.FAILED
    await until(() => done(w.hub.state.task(build)?.state), "the build done", 240_000, why)
    const result = JSON.stringify(w.hub.state.taskResult(build))
    console.log(`build on a full workdir: ${w.hub.state.task(build)?.state === TaskState.FAILED ? "FAILED" : "CLOSED"} ${result.slice(0, 800)}`)
    assert.strictEqual(w.hub.state.task(build)?.state, TaskState.FAILED, result)
    assert.include(result, w.workdir, "the fault names the full file system's path")
    assert.match(result, /no space left|full/i)
    assert.strictEqual(reports(w, build), 1)
    fs.rmSync(filler)
    await until(() => w.hub.state.task(beside)?.state === TaskState.CLOSED, "the task beside it closed", 60_000, why)
    assert.strictEqual(reports(w, beside), 1)
    // The daemon goes on: a new task runs.
    const after = w.hub.createTask("sleep", [0])
    await until(() => w.hub.state.task(after)?.state === TaskState.CLOSED, "a task after the fault closed", 60_000, why)
    assert.isNull(daemon.exitCode, why())
    daemon.kill("SIGTERM")
    await until(() => daemon.exitCode !== null, "the daemon stopped", 30_000, why)
    const l = await w.leftovers()
    assert.deepStrictEqual([...l.containers, ...l.mounts, ...l.loops, ...l.taskDirs], [])
  }, 600_000)

  it("the buildroot cache fills up during a cold fill: that task fails with a clear fault, the daemon goes on and builds once space is back", async () => {
    world = await startCrashWorld("cachefull", { cacheTmpfsBytes: 1024 * MiB })
    const w = world
    const daemon = w.startDaemon()
    const why = () => `${stderrOf(daemon).slice(-3000)}\n${logOf(w).slice(-6000)}`
    const srpm = w.upload(`${w.fixture.srpms}/fixture-hello-1.0-1.src.rpm`)
    const build = w.hub.createTask("rebuildSRPM", [srpm, "fixture-build", { repo_id: 1 }], { arch: "noarch" })
    // The fill's container runs (dnf into a staging entry of the cache): fill the cache's file system.
    await until(async () => (await w.containers()).some((n) => n.startsWith(`kojiadj-buildroot-t${build}-`)), "the fill's container", 240_000, why)
    const filler = path.join(w.cacheDir, "filler")
    fillUp(filler)
    const done = (state: number | undefined) => state === TaskState.CLOSED || state === TaskState.FAILED
    await until(() => done(w.hub.state.task(build)?.state), "the build done", 240_000, why)
    const result = JSON.stringify(w.hub.state.taskResult(build))
    console.log(`build on a full cache: ${w.hub.state.task(build)?.state === TaskState.FAILED ? "FAILED" : "CLOSED"} ${result.slice(0, 1500)}`)
    assert.strictEqual(w.hub.state.task(build)?.state, TaskState.FAILED, result)
    assert.match(result, /no space left/i, "the fault says the disk is full")
    assert.include(result, w.cacheDir, "and names the full file system")
    assert.strictEqual(reports(w, build), 1)
    fs.rmSync(filler)
    // Space back: the next build fills the cache and closes; nothing half-filled is used.
    const again = w.hub.createTask("rebuildSRPM", [w.upload(`${w.fixture.srpms}/fixture-hello-1.0-1.src.rpm`), "fixture-build", { repo_id: 1 }], { arch: "noarch" })
    await until(() => w.hub.state.task(again)?.state === TaskState.CLOSED, "a build after the fault closed", 240_000, why)
    assert.isNull(daemon.exitCode, why())
    daemon.kill("SIGTERM")
    await until(() => daemon.exitCode !== null, "the daemon stopped", 30_000, why)
    const l = await w.leftovers()
    assert.deepStrictEqual([...l.containers, ...l.mounts, ...l.loops, ...l.taskDirs], [])
  }, 600_000)

  it("minspace: less free than that on the workdir → not ready, no task taken; space back → ready, the task CLOSED", async () => {
    world = await startCrashWorld("minspace", { workdirTmpfsBytes: 96 * MiB, minspaceMB: 48 })
    const w = world
    const filler = path.join(w.workdir, "filler")
    fs.writeFileSync(filler, Buffer.alloc(64 * MiB))
    assert.isBelow(freeMB(w.workdir), 48)
    const id = w.hub.createTask("sleep", [0])
    const daemon = w.startDaemon()
    const why = () => `${stderrOf(daemon).slice(-3000)}\n${logOf(w).slice(-6000)}`
    await until(() => readiness(w, 0).length >= 3, "three heartbeats", 60_000, why)
    assert.isTrue(readiness(w, 0).every((r) => r === false), JSON.stringify(readiness(w, 0)))
    assert.strictEqual(w.hub.state.task(id)?.state, TaskState.FREE)
    assert.include(logOf(w), `Insufficient disk space at ${w.workdir}:`)
    fs.rmSync(filler)
    await until(() => w.hub.state.task(id)?.state === TaskState.CLOSED, "the task CLOSED with space back", 60_000, why)
    assert.isTrue(readiness(w, 0).includes(true))
    daemon.kill("SIGTERM")
    await until(() => daemon.exitCode !== null, "the daemon stopped", 30_000, why)
    assert.strictEqual(daemon.exitCode, 0, why())
  }, 300_000)
})
