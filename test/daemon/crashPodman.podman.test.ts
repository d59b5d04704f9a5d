/**
 * Issue 12 §3, podman faults, with the real program as a child process (crashWorld.ts) and a
 * podman API service the test owns and stops and starts on the same socket:
 * - the service stops mid-build: the task is freed (not failed: losing podman is the builder's
 *   failure, not the build's), the host reports itself not ready while podman does not answer
 *   (as kojid while /mnt/koji is unreachable), and once the service is back the daemon is ready by
 *   itself, takes the task again and closes it; nothing of the host is left;
 * - podman is gone when the daemon starts: it runs, not ready, takes nothing, and takes and
 *   closes the task once podman answers.
 */
import * as fs from "node:fs"
import { afterEach, assert, describe, it } from "vitest"
import { TaskState } from "../fakehub/FakeHub.js"
import { podmanInstalled, podmanSkipReason } from "../support/podman.js"
import { type CrashWorld, type RestartablePodman, startCrashWorld, startRestartablePodman, stderrOf } from "./crashWorld.js"

const requirePodman = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const until = async (cond: () => boolean | Promise<boolean>, what: string, ms: number, why: () => string | Promise<string> = () => ""): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${await why()}`)
    await sleep(100)
  }
}

const logTail = (world: CrashWorld): string => {
  try {
    return fs.readFileSync(world.logFile, "utf8").slice(-6000)
  } catch {
    return ""
  }
}

/** The heartbeats (host.updateHost, inside multiCalls too) from call index `from` on: their `ready`. */
const readiness = (world: CrashWorld, from: number): ReadonlyArray<unknown> =>
  world.hub.state.calls.slice(from).filter((c) => c.method === "host.updateHost").map((c) => c.params[1])

/** Successful closeTask / failTask / freeTasks calls naming `id`. */
const reportsOf = (world: CrashWorld, id: number, method: string): number =>
  world.hub.state.calls.filter((c) =>
    c.method === method && c.fault === undefined && c.http === undefined &&
    (method === "host.freeTasks" ? JSON.stringify(c.params[0]).includes(String(id)) : c.params[0] === id)).length

const nothingLeft = async (world: CrashWorld): Promise<string> => {
  const l = await world.leftovers()
  return [...l.containers, ...l.mounts, ...l.loops, ...l.taskDirs].join(", ")
}

let world: CrashWorld | undefined
let podman: RestartablePodman | undefined
afterEach(async () => {
  await world?.close()
  world = undefined
  podman = undefined
})

describe.skipIf(!podmanInstalled && !requirePodman)(`podman faults (needs podman${podmanInstalled ? "" : `: ${podmanSkipReason}`})`, () => {
  it("podman's API service stops mid-build: task freed, host not ready; back: ready by itself, task rerun and CLOSED, nothing left", async () => {
    podman = await startRestartablePodman()
    world = await startCrashWorld("pmdown", { podman })
    const w = world
    const daemon = w.startDaemon()
    const why = () => `${stderrOf(daemon).slice(-3000)}\n${logTail(w)}`
    const srpm = w.upload(`${w.fixture.srpms}/fixture-hello-1.0-1.src.rpm`)
    const id = w.hub.createTask("rebuildSRPM", [srpm, "fixture-build", { repo_id: 1 }], { arch: "noarch" })
    // A container of the task runs (the buildroot's fill, or rpmbuild).
    await until(async () => (await w.containers()).some((n) => n.includes(`-t${id}-`)), "a container of the task", 240_000, why)
    const downAt = w.hub.state.calls.length
    await podman.down()
    await until(() => reportsOf(w, id, "host.freeTasks") >= 1, "the task freed", 60_000, why)
    assert.strictEqual(reportsOf(w, id, "host.failTask"), 0, "losing podman does not fail the build")
    assert.strictEqual(reportsOf(w, id, "host.closeTask"), 0)
    // Not ready while podman does not answer: no task taken, the reason logged.
    await until(() => readiness(w, downAt).includes(false), "a not-ready heartbeat", 30_000, why)
    await sleep(4000)
    const beatsDown = readiness(w, w.hub.state.calls.length - 50)
    assert.isTrue(beatsDown.slice(-3).every((r) => r === false), `heartbeats while podman is down: ${JSON.stringify(beatsDown)}`)
    assert.notStrictEqual(w.hub.state.task(id)?.state, TaskState.OPEN, "nobody runs the task while podman is down")
    assert.include(logTail(w), "podman does not answer")
    assert.isNull(daemon.exitCode, "the daemon runs on without podman")
    const upAt = w.hub.state.calls.length
    await podman.up()
    await until(() => readiness(w, upAt).includes(true), "ready again", 30_000, why)
    await until(() => w.hub.state.task(id)?.state === TaskState.CLOSED, "the rerun CLOSED", 240_000, why)
    assert.strictEqual(reportsOf(w, id, "host.closeTask"), 1)
    assert.strictEqual(reportsOf(w, id, "host.failTask"), 0)
    await until(async () => (await nothingLeft(w)) === "", "nothing of the task left", 30_000, async () => `${await nothingLeft(w)}\n${why()}`)
    daemon.kill("SIGTERM")
    await until(() => daemon.exitCode !== null, "the daemon stopped", 30_000, why)
    assert.strictEqual(daemon.exitCode, 0, why())
    assert.strictEqual(await nothingLeft(w), "")
  }, 600_000)

  it("podman gone at start-up: the daemon runs not ready and takes nothing; podman back: ready, the task CLOSED", async () => {
    podman = await startRestartablePodman(false)
    world = await startCrashWorld("pmstart", { podman })
    const w = world
    const id = w.hub.createTask("sleep", [1])
    const daemon = w.startDaemon()
    const why = () => `${stderrOf(daemon).slice(-3000)}\n${logTail(w)}`
    await until(() => readiness(w, 0).length >= 3, "three heartbeats", 60_000, why)
    assert.isTrue(readiness(w, 0).every((r) => r === false), JSON.stringify(readiness(w, 0)))
    assert.strictEqual(w.hub.state.task(id)?.state, TaskState.FREE)
    assert.isNull(daemon.exitCode, why())
    assert.include(logTail(w), "podman does not answer")
    await podman.up()
    await until(() => w.hub.state.task(id)?.state === TaskState.CLOSED, "the task CLOSED once podman answers", 120_000, why)
    assert.strictEqual(reportsOf(w, id, "host.closeTask"), 1)
    daemon.kill("SIGTERM")
    await until(() => daemon.exitCode !== null, "the daemon stopped", 30_000, why)
    assert.strictEqual(daemon.exitCode, 0, why())
    assert.strictEqual(await nothingLeft(w), "")
  }, 300_000)
})
