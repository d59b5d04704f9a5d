import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Double } from "../../src/hub/xmlrpc.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { ensureBuilt, distMain, exitOf, outputOf, spawnScoped, waitFor, writeConfig } from "./child.js"
import { fakeHub, HOST } from "./harness.js"

beforeAll(() => ensureBuilt(), 180_000)

describe("signals (node dist/main.js as a child process)", () => {
  it.live("SIGTERM with running tasks: tasks freed, host not ready, session logged out, exit 0", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* fakeHub()
      const cfg = yield* writeConfig(hub.url)
      const a = hub.createTask("sleep", [300])
      const b = hub.createTask("sleep", [300])
      const child = yield* spawnScoped([distMain, "-c", cfg.conf, "--fg", "--force-lock", "-v"])
      yield* waitFor(() => hub.state.task(a)?.state === TaskState.OPEN && hub.state.task(b)?.state === TaskState.OPEN, "both tasks OPEN", 60_000, () => outputOf(child) + cfg.log())
      const mainSession = hub.state.calls.find((c) => c.method === "host.getID")!.sessionId!
      // The heartbeat advertises the RPM build handlers wired in main.ts next to the generic ones.
      const beatText = JSON.stringify(hub.state.calls.find((c) => c.method === "multiCall" && JSON.stringify(c.params).includes("host.updateHost"))!.params)
      for (const m of ["sleep", "build", "buildArch", "rebuildSRPM", "buildSRPMFromSCM", "tagBuild", "newRepo", "createrepo", "waitrepo", "tagNotification"]) {
        assert.include(beatText, `"${m}"`)
      }
      assert.notInclude(beatText, "\"runroot\"", "runroot only with plugin = runroot")
      const t0 = Date.now()
      child.kill("SIGTERM")
      const code = yield* exitOf(child, 15_000)
      assert.strictEqual(code, 0, outputOf(child) + cfg.log())
      assert.isBelow(Date.now() - t0, 15_000)
      assert.strictEqual(hub.state.task(a)?.state, TaskState.FREE)
      assert.strictEqual(hub.state.task(b)?.state, TaskState.FREE)
      assert.isFalse(hub.state.host(HOST)!.ready)
      const free = hub.state.calls.filter((c) => c.method === "host.freeTasks" && c.sessionId === mainSession).at(-1)
      assert.isDefined(free)
      assert.sameMembers([...(free!.params[0] as ReadonlyArray<number>)], [a, b])
      const last = hub.state.calls.filter((c) => c.sessionId === mainSession).slice(-3).map((c) => c.method)
      assert.deepStrictEqual(last, ["host.freeTasks", "host.updateHost", "logout"])
      const beat = hub.state.calls.filter((c) => c.method === "host.updateHost").at(-1)!
      // As kojid: keywords only, task_load a <double>, no data (koji-protocol.md §13 "Shutdown").
      assert.strictEqual(beat.params.length, 1)
      const kw = beat.params[0] as { readonly task_load: unknown; readonly ready: unknown; readonly __starstar: unknown }
      assert.instanceOf(kw.task_load, Double)
      assert.deepStrictEqual([(kw.task_load as Double).value, kw.ready, kw.__starstar, Object.keys(kw).length], [0, false, true, 3])
      assert.isTrue(hub.state.session(mainSession)!.closed)
    })))
})

describe("restart and shutdown (node dist/main.js as a child process)", () => {
  it.live("SIGUSR1: not ready while a task runs, then restarts in place with a new session and goes on", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* fakeHub()
      const cfg = yield* writeConfig(hub.url)
      const a = hub.createTask("sleep", [3])
      const child = yield* spawnScoped([distMain, "-c", cfg.conf, "--fg", "--force-lock", "-v"])
      yield* waitFor(() => hub.state.task(a)?.state === TaskState.OPEN, "task OPEN", 60_000, () => outputOf(child) + cfg.log())
      const firstSession = hub.state.calls.find((c) => c.method === "host.getID")!.sessionId!
      child.kill("SIGUSR1")
      yield* waitFor(() => hub.state.calls.filter((c) => c.method === "host.getID").length === 2, "second start-up", 20_000, () => outputOf(child) + cfg.log())
      assert.strictEqual(hub.state.task(a)?.state, TaskState.CLOSED, "the running task finished before the restart")
      const beatsOfFirst = hub.state.calls.filter((c) => c.method === "host.updateHost" && c.sessionId === firstSession)
      assert.strictEqual(beatsOfFirst.at(-1)!.params[1], false, "pending restart reports not ready")
      const secondSession = hub.state.calls.filter((c) => c.method === "host.getID")[1]!.sessionId!
      assert.notStrictEqual(secondSession, firstSession)
      assert.isTrue(hub.state.session(firstSession)!.closed)
      // The restarted daemon takes work.
      const b = hub.createTask("sleep", [0])
      yield* waitFor(() => hub.state.task(b)?.state === TaskState.CLOSED, "task after restart closed", 60_000, () => outputOf(child) + cfg.log())
      // Only the second session heartbeats now (the first one is closed).
      const lastBeats = hub.state.calls.filter((c) => c.method === "multiCall" || c.method === "host.updateHost").slice(-3)
      assert.isTrue(lastBeats.every((c) => c.sessionId === secondSession))
      child.kill("SIGTERM")
      assert.strictEqual(yield* exitOf(child, 15_000), 0)
    })))

  it.live("restart and restartVerify tasks restart the daemon; the shutdown task makes it exit 0", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* fakeHub()
      const cfg = yield* writeConfig(hub.url)
      const hostId = hub.state.host(HOST)!.id
      const r = hub.createTask("restart", [{ id: hostId }])
      const child = yield* spawnScoped([distMain, "-c", cfg.conf, "--fg", "--force-lock"])
      yield* waitFor(() => hub.state.task(r)?.state === TaskState.CLOSED, "restart task closed", 60_000, () => outputOf(child) + cfg.log())
      // The restart task itself calls host.getID (kojid's host check), so count start-ups by their exclusiveSession.
      yield* waitFor(() => hub.state.calls.filter((c) => c.method === "exclusiveSession").length === 2, "restarted", 60_000, () => outputOf(child) + cfg.log())
      const v = hub.createTask("restartVerify", [r, { id: hostId }])
      yield* waitFor(() => hub.state.task(v)?.state === TaskState.CLOSED || hub.state.task(v)?.state === TaskState.FAILED, "verify done", 60_000, () => outputOf(child) + cfg.log())
      assert.strictEqual(hub.state.task(v)?.state, TaskState.CLOSED, hub.state.task(v)?.result ?? "")
      const s = hub.createTask("shutdown", [])
      assert.strictEqual(yield* exitOf(child, 20_000), 0, outputOf(child) + cfg.log())
      // kojid frees the shutdown task itself on the way out (it is still OPEN when ServerExit leaves the loop).
      assert.strictEqual(hub.state.task(s)?.state, TaskState.FREE)
      assert.isFalse(hub.state.host(HOST)!.ready)
    })))
})
