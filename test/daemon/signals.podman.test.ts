/**
 * Issue 12 §5, signals at awkward moments, with podman (the real program as a child process,
 * crashWorld.ts): SIGTERM during a buildroot's cold fill and during an upload of a build's
 * results. The daemon exits 0 in time, frees the task exactly once (never closes or fails it),
 * leaves nothing on the host (containers, mounts, loop devices, task directories) and no active
 * buildroot on the hub; the next process runs the task once to CLOSED.
 */
import * as fs from "node:fs"
import { afterEach, assert, describe, it } from "vitest"
import { buildrootTables } from "../fakehub/buildroots.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { BuildrootState } from "../../src/koji/states.js"
import { podmanInstalled, podmanSkipReason } from "../support/podman.js"
import { createScenarioTask, type Scenario, scenarioPhase, slowUploads } from "./crashMatrix.js"
import { type CrashWorld, startCrashWorld, stderrOf } from "./crashWorld.js"

const requirePodman = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const until = async (cond: () => boolean | Promise<boolean>, what: string, ms: number, why: () => string = () => ""): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${why()}`)
    await sleep(40)
  }
}

const logOf = (world: CrashWorld): string => {
  try {
    return fs.readFileSync(world.logFile, "utf8").slice(-6000)
  } catch {
    return ""
  }
}

const okCalls = (world: CrashWorld, method: string, id: number): number =>
  world.hub.state.calls.filter((c) =>
    c.method === method && c.fault === undefined && c.http === undefined &&
    (Array.isArray(c.params[0]) ? c.params[0].includes(id) : c.params[0] === id)).length

let world: CrashWorld | undefined
afterEach(async () => {
  await world?.close()
  world = undefined
})

const sigtermIn = async (scenario: Scenario): Promise<void> => {
  world = await startCrashWorld("sigterm")
  const w = world
  const daemon = w.startDaemon()
  const why = () => `${stderrOf(daemon).slice(-3000)}\n${logOf(w)}`
  if (scenario === "upload in progress") w.setInject(slowUploads)
  const id = createScenarioTask(w, scenario)
  await until(async () => scenarioPhase(w, scenario, id, await w.containers()), `the ${scenario} phase`, 240_000, why)
  daemon.kill("SIGTERM")
  const t0 = Date.now()
  await until(() => daemon.exitCode !== null || daemon.signalCode !== null, "the daemon's exit", 60_000, why)
  console.log(`SIGTERM during ${scenario}: exit ${daemon.exitCode} after ${Date.now() - t0} ms`)
  assert.strictEqual(daemon.exitCode, 0, why())
  w.setInject(undefined)
  const summary = () => `state ${w.hub.state.task(id)?.state}, closeTask ${okCalls(w, "host.closeTask", id)}, failTask ${okCalls(w, "host.failTask", id)}, freeTasks ${okCalls(w, "host.freeTasks", id)}\n${why()}`
  assert.strictEqual(w.hub.state.task(id)?.state, TaskState.FREE, summary())
  assert.strictEqual(okCalls(w, "host.freeTasks", id), 1, summary())
  assert.strictEqual(okCalls(w, "host.closeTask", id) + okCalls(w, "host.failTask", id), 0, summary())
  const l = await w.leftovers()
  assert.deepStrictEqual([...l.containers, ...l.mounts, ...l.loops, ...l.taskDirs], [], "nothing left on the host")
  const active = [...buildrootTables(w.topdir).buildroots.values()].filter((b) => b.taskId === id && b.state !== BuildrootState.EXPIRED)
  assert.deepStrictEqual(active.map((b) => b.id), [], "no active buildroot of the task on the hub")
  // The next process runs it once.
  const next = w.startDaemon()
  await until(() => w.hub.state.task(id)?.state === TaskState.CLOSED, "the task CLOSED by the next process", 240_000, () => `${stderrOf(next).slice(-3000)}\n${logOf(w)}`)
  assert.strictEqual(okCalls(w, "host.closeTask", id), 1)
  next.kill("SIGTERM")
  await until(() => next.exitCode !== null, "the next daemon's exit", 60_000)
  assert.strictEqual(next.exitCode, 0)
}

describe.skipIf(!podmanInstalled && !requirePodman)(`SIGTERM with podman (needs podman${podmanInstalled ? "" : `: ${podmanSkipReason}`})`, () => {
  it("during a buildroot's cold fill: exit 0, task freed once, nothing left; the next process closes it", () => sigtermIn("buildArch cold fill"), 600_000)
  it("during an upload of the results: exit 0, task freed once, nothing left; the next process closes it", () => sigtermIn("upload in progress"), 600_000)
})
