import { existsSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { MemoryContainers } from "../../src/containers/MemoryContainers.js"
import { decodeResponse } from "../../src/hub/xmlrpc.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { defineHandler, Int, required, signature, type TaskHandler } from "../../src/tasks/handler.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { daemonLayer, daemonLayerWith, fakeHub, HOST, PASSWORD, realPause, startDaemon, tempWorkdir, testOptions, until } from "./harness.js"

/** `containerSleep(n)`: creates a container in the task scope, then sleeps n seconds. */
const containerSleep = (containers: Containers["Type"]): TaskHandler =>
  defineHandler({
    name: "ContainerSleep",
    methods: ["containerSleep"],
    weight: 1.0,
    signature: signature("ContainerSleep.handler", { n: required(Int) }),
    run: ({ n }, ctx) =>
      Effect.gen(function*() {
        const c = yield* containers.create({ image: "localhost/none", command: ["sleep", String(n)], role: "test", taskId: ctx.taskId })
        yield* c.start
        yield* Effect.sleep(Duration.seconds(n))
        return null
      })
  })

/** `failany(n)`: n subtasks `sleep 1000` plus one bad `sleep`, waited with all+failany. */
const failany: TaskHandler = defineHandler({
  name: "FailAny",
  methods: ["failany"],
  weight: 0.1,
  signature: signature("FailAny.handler", { n: required(Int) }),
  run: ({ n }, ctx) =>
    Effect.gen(function*() {
      const ids: Array<number> = []
      for (let i = 0; i < n; i++) ids.push(yield* ctx.subtask("sleep", [1000], { label: `s${i}` }))
      ids.push(yield* ctx.subtask("sleep", ["BAD_ARG"], { label: "bad" }))
      yield* ctx.wait(ids, { all: true, failany: true })
      return null
    })
})

/** `waitTimeout(s)`: one `sleep 1000` subtask waited with a timeout of s seconds. */
const waitTimeout: TaskHandler = defineHandler({
  name: "WaitTimeout",
  methods: ["waitTimeout"],
  weight: 0.1,
  signature: signature("WaitTimeout.handler", { s: required(Int) }),
  run: ({ s }, ctx) =>
    Effect.gen(function*() {
      const child = yield* ctx.subtask("sleep", [1000], { label: "long" })
      yield* ctx.wait(child, { timeout: Duration.seconds(s) })
      return null
    })
})

describe("cancel and subtasks", () => {
  it.scoped("wait with a timeout: children canceled, GenericError 'Subtasks timed out after …'", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const parent = hub.createTask("waitTimeout", [20])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [waitTimeout, ...genericHandlers])))
      yield* until(() => hub.state.task(parent)?.state === TaskState.FAILED, "parent failed", 800)
      const child = hub.state.tasks.find((t) => t.parent === parent)!
      assert.strictEqual(child.state, TaskState.CANCELED)
      const r = decodeResponse(hub.state.task(parent)!.result!)
      assert.isTrue(Either.isLeft(r) && "faultCode" in r.left && r.left.faultCode === (1000 as number))
      if (Either.isLeft(r) && "faultString" in r.left) assert.match(r.left.faultString, /^Subtasks timed out after 2\d\.\d seconds$/)
    }))


  it.scoped("cancel a running task: fiber interrupted, containers removed, subsession logged out within one cycle", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      yield* Effect.gen(function*() {
        const mem = yield* MemoryContainers
        const id = hub.createTask("containerSleep", [10_000])
        yield* startDaemon(testOptions(workdir))
        yield* until(() => hub.state.task(id)?.state === TaskState.OPEN, "task open")
        yield* until(() => existsSync(path.join(workdir, "tasks", String(id % 10000), String(id))), "task workdir made")
        for (let i = 0; i < 100 && (yield* mem.live).length === 0; i++) yield* realPause(5)
        assert.strictEqual((yield* mem.live).length, 1)
        const sub = hub.state.calls.find((c) => c.method === "subsession")!
        // The fake hub answers subsession with the sinfo struct.
        const subId = Number((sub.result as { readonly "session-id": number })["session-id"])
        const beatsBefore = hub.state.calls.filter((c) => c.method === "host.updateHost").length
        hub.cancelTask(id)
        let live = 1
        yield* until(() => live === 0 && hub.state.session(subId)?.closed === true, "containers removed, subsession closed", 200, "1 second").pipe(
          Effect.race(Effect.forever(Effect.zipRight(realPause(2), Effect.map(mem.live, (l) => { live = l.length }))))
        )
        const beatsAfter = hub.state.calls.filter((c) => c.method === "host.updateHost").length
        // Within one cycle: at most one heartbeat between the cancel and the clean-up.
        assert.isAtMost(beatsAfter - beatsBefore, 1)
        assert.deepStrictEqual((yield* mem.live).length, 0)
        assert.strictEqual((yield* mem.created).length, 1)
        assert.isTrue(hub.state.session(subId)!.closed)
        assert.isTrue(hub.state.calls.some((c) => c.method === "logoutChild" && c.params[0] === subId))
        assert.strictEqual(hub.state.task(id)?.state, TaskState.CANCELED)
        assert.isFalse(existsSync(path.join(workdir, "tasks", String(id % 10000), String(id))), "task workdir removed")
      }).pipe(Effect.provide(daemonLayerWith(hub, (c) => [containerSleep(c), ...genericHandlers])))
    }))

  it.scoped("a task reassigned to another host is killed: containers removed, subsession logged out", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub({ hosts: [{ name: HOST, password: PASSWORD, capacity: 10 }, { name: "other", capacity: 10 }] })
      const workdir = yield* tempWorkdir
      yield* Effect.gen(function*() {
        const mem = yield* MemoryContainers
        const id = hub.createTask("containerSleep", [10_000], { assign: HOST })
        yield* startDaemon(testOptions(workdir))
        yield* until(() => hub.state.task(id)?.state === TaskState.OPEN, "task open")
        for (let i = 0; i < 100 && (yield* mem.live).length === 0; i++) yield* realPause(5)
        assert.strictEqual((yield* mem.live).length, 1)
        assert.isTrue(hub.assignTask(id, "other", { force: true, override: true }))
        let live = 1
        yield* until(() => live === 0 && hub.state.calls.some((c) => c.method === "logoutChild"), "reassigned task killed").pipe(
          Effect.race(Effect.forever(Effect.zipRight(realPause(2), Effect.map(mem.live, (l) => { live = l.length }))))
        )
        assert.strictEqual((yield* mem.live).length, 0)
        const info = hub.state.calls.filter((c) => c.method === "getTaskInfo" && c.params[0] === id && c.params.length === 1)
        assert.isAtLeast(info.length, 1, "the loop looked the task up before killing it")
        assert.strictEqual(hub.state.task(id)?.hostId, hub.state.host("other")!.id)
      }).pipe(Effect.provide(daemonLayerWith(hub, (c) => [containerSleep(c), ...genericHandlers])))
    }))

  it.scoped("waittest: parent waits, is woken, collects results; the bad child is in canfail", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const parent = hub.createTask("waittest", [2, 1])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(parent)?.state === TaskState.CLOSED, "parent closed", 800)
      const children = hub.state.tasks.filter((t) => t.parent === parent)
      assert.strictEqual(children.length, 3)
      assert.sameMembers(children.map((c) => c.state), [TaskState.CLOSED, TaskState.CLOSED, TaskState.FAILED])
      const methods = hub.state.calls.map((c) => c.method)
      for (const m of ["host.subtask", "host.taskSetWait", "host.taskWait", "host.taskWaitResults"]) assert.include(methods, m)
      // The parent slept between taskWait calls. Its children ran here, so each one that ended
      // woke it at once, usually before a cycle's alert could (the alert path, for a child on
      // another host, is tested in wakeup.test.ts).
      assert.isAtLeast(methods.filter((m) => m === "host.taskWait").length, 2)
    }))

  it.scoped("failany: a failed child cancels its siblings and fails the parent with the child's fault", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const parent = hub.createTask("failany", [2])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [failany, ...genericHandlers])))
      yield* until(() => hub.state.task(parent)?.state === TaskState.FAILED, "parent failed", 800)
      const children = hub.state.tasks.filter((t) => t.parent === parent)
      assert.strictEqual(children.length, 3)
      const bad = children.find((c) => c.label === "bad")!
      assert.strictEqual(bad.state, TaskState.FAILED)
      for (const c of children.filter((c) => c.label !== "bad")) assert.strictEqual(c.state, TaskState.CANCELED)
      assert.isTrue(hub.state.calls.some((c) => c.method === "cancelTaskChildren"))
      const r = decodeResponse(hub.state.task(parent)!.result!)
      assert.isTrue(Either.isLeft(r))
      if (Either.isLeft(r) && "faultCode" in r.left) assert.strictEqual(r.left.faultCode, 1019)
    }))
})
