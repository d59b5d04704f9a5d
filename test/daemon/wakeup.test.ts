import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Fiber, Layer, Option, Schema, TestClock } from "effect"
import { defaultWakeGap } from "../../src/daemon/options.js"
import { makeLoopWaker } from "../../src/daemon/Waiter.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { encodeResponse } from "../../src/hub/xmlrpc.js"
import { defineHandler, required, signature } from "../../src/tasks/handler.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { daemonLayer, fakeHub, HOST, PASSWORD, realPause, startDaemon, tempWorkdir, testOptions } from "./harness.js"

/** Waits in real time only: the TestClock does not move. */
const untilReal = (cond: () => boolean, what: string, maxSteps = 1000) =>
  Effect.gen(function*() {
    for (let i = 0; i < maxSteps && !cond(); i++) yield* realPause(2)
    if (!cond()) return yield* Effect.dieMessage(`timed out waiting for: ${what}`)
  })

/**
 * `parent(n, channel)`: creates n `gate` subtasks (in `channel`) and waits for all of them;
 * `gate`: runs until the test opens the gate.
 */
const handlers = (gate: Deferred.Deferred<void>) => [
  ...genericHandlers,
  defineHandler({
    name: "ParentTask",
    methods: ["parent"],
    weight: 0.1,
    signature: signature("ParentTask.handler", { n: required(Schema.Int), channel: required(Schema.String) }),
    run: ({ channel, n }, ctx) =>
      Effect.gen(function*() {
        const ids: Array<number> = []
        for (let i = 0; i < n; i++) ids.push(yield* ctx.subtask("gate", [], { label: `gate ${i}`, channel }))
        yield* ctx.wait(ids, { all: true })
        return ids.length
      })
  }),
  defineHandler({
    name: "GateTask",
    methods: ["gate"],
    weight: 0.1,
    signature: signature("GateTask.handler", {}),
    run: () => Effect.as(Deferred.await(gate), null)
  })
]

describe("loop wake-ups (fake hub, TestClock)", () => {
  it.scoped("a subtask created by a local task starts the next cycle at once, without the clock moving", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const gate = yield* Deferred.make<void>()
      yield* Deferred.succeed(gate, undefined)
      const t0 = yield* Clock.currentTimeMillis
      const parent = hub.createTask("parent", [1, "default"])
      yield* startDaemon(testOptions(workdir, { wakeGap: Duration.zero })).pipe(Effect.provide(daemonLayer(hub, handlers(gate))))
      // Without the wake-up the loop would sleep 1 s of TestClock after the idle cycle that
      // follows taking the parent, and the child would never be assigned.
      yield* untilReal(() => hub.state.task(parent)?.state === TaskState.CLOSED, "parent closed")
      const child = hub.state.tasks.find((t) => t.parent === parent)!
      assert.strictEqual(child.state, TaskState.CLOSED)
      assert.strictEqual((yield* Clock.currentTimeMillis) - t0, 0)
      const created = hub.state.calls.findIndex((c) => c.method === "host.subtask")
      assert.isTrue(hub.state.calls.slice(created).some((c) => c.method === "host.getTasks"))
    }))

  it.scoped("a child that ends here wakes its waiting parent before the loop's next getHostTasks alert", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const gate = yield* Deferred.make<void>()
      const parent = hub.createTask("parent", [1, "default"])
      yield* startDaemon(testOptions(workdir, { wakeGap: Duration.millis(500) })).pipe(Effect.provide(daemonLayer(hub, handlers(gate))))
      yield* untilReal(() => hub.state.calls.some((c) => c.method === "host.taskWait"), "parent waiting")
      // The wake-up from host.subtask starts a cycle only once wakeGap has passed.
      yield* TestClock.adjust("500 millis")
      yield* untilReal(() => hub.state.tasks.find((t) => t.parent === parent)?.state === TaskState.OPEN, "child open")
      const getTasks = () => hub.state.calls.filter((c) => c.method === "host.getTasks").length
      // Taking the child is followed at once by one more cycle; after it the loop pauses (the
      // clock does not move again, so it runs no further cycle).
      const afterOpen = getTasks()
      yield* untilReal(() => getTasks() > afterOpen, "the cycle after the take")
      yield* realPause(30)
      const hostTasks = () => hub.state.calls.filter((c) => c.method === "host.getHostTasks").length
      const before = hostTasks()
      yield* Deferred.succeed(gate, undefined)
      // The parent's waitPoll is 30 s of TestClock: only the local wake-up can get it going.
      yield* untilReal(() => hub.state.task(parent)?.state === TaskState.CLOSED, "parent closed")
      assert.strictEqual(hostTasks(), before)
      const waits = hub.state.calls.filter((c) => c.method === "host.taskWait")
      assert.deepStrictEqual(waits.at(-1)?.result, [[hub.state.tasks.find((t) => t.parent === parent)!.id], []])
    }))

  it.scoped("a child that ends on another host still wakes the parent through the next cycle's alert", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub({
        hosts: [
          { name: HOST, password: PASSWORD, capacity: 10 },
          { name: "other", password: "other-pw", capacity: 10, channels: ["createrepo"] }
        ]
      })
      const workdir = yield* tempWorkdir
      const gate = yield* Deferred.make<void>()
      const parent = hub.createTask("parent", [1, "createrepo"])
      yield* startDaemon(testOptions(workdir, { wakeGap: Duration.zero })).pipe(Effect.provide(daemonLayer(hub, handlers(gate))))
      yield* untilReal(() => hub.state.calls.some((c) => c.method === "host.taskWait"), "parent waiting")
      const child = hub.state.tasks.find((t) => t.parent === parent)!.id
      yield* Effect.gen(function*() {
        const other = hostApi(yield* (yield* KojiHub).loginScoped(true))
        yield* other.openTask(child)
        yield* other.closeTask(child, encodeResponse(null))
      }).pipe(
        Effect.scoped,
        Effect.provide(KojiHub.layerWithTransport({ server: hub.url, user: "other", password: "other-pw" }).pipe(Layer.orDie))
      )
      yield* realPause(30)
      assert.strictEqual(hub.state.task(parent)?.state, TaskState.OPEN, "nothing local woke the parent")
      // One sleeptime later the cycle's getHostTasks carries the alert (the waitPoll is 30 s).
      yield* TestClock.adjust("1 second")
      yield* untilReal(() => hub.state.task(parent)?.state === TaskState.CLOSED, "parent closed")
      assert.isTrue(hub.state.calls.some((c) => c.method === "host.getHostTasks" && JSON.stringify(c.result).includes("\"alert\":true")))
    }))

  it.scoped("a burst of subtasks gives one cycle after wakeGap, and the idle pause after it is sleeptime again", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const gate = yield* Deferred.make<void>()
      // The children go to a channel this host is not in: nothing is taken, only wake-ups happen.
      const parent = hub.createTask("parent", [20, "createrepo"])
      yield* startDaemon(testOptions(workdir, { wakeGap: Duration.millis(500) })).pipe(Effect.provide(daemonLayer(hub, handlers(gate))))
      yield* untilReal(() => hub.state.calls.some((c) => c.method === "host.taskWait"), "parent waiting")
      assert.strictEqual(hub.state.tasks.filter((t) => t.parent === parent).length, 20)
      const getTasks = () => hub.state.calls.filter((c) => c.method === "host.getTasks").length
      // Cycles so far: the one that took the parent and the one right after it.
      yield* realPause(30)
      const n = getTasks()
      assert.isAtMost(n, 3)
      yield* TestClock.adjust("500 millis")
      yield* untilReal(() => getTasks() > n, "the woken cycle")
      yield* realPause(30)
      assert.strictEqual(getTasks(), n + 1, "20 wake-ups, one cycle")
      // Nothing is pending: the next cycle waits the whole sleeptime (1 s) from the pause.
      yield* TestClock.adjust("900 millis")
      yield* realPause(30)
      assert.strictEqual(getTasks(), n + 1)
      yield* TestClock.adjust("100 millis")
      yield* untilReal(() => getTasks() > n + 1, "the cycle after sleeptime")
      yield* Deferred.succeed(gate, undefined)
    }))

  it.scoped("an idle loop cycles every sleeptime", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const gate = yield* Deferred.make<void>()
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, handlers(gate))))
      const beats = () => hub.state.calls.filter((c) => c.method === "host.updateHost").length
      yield* untilReal(() => beats() === 1, "first heartbeat")
      for (let i = 1; i <= 3; i++) {
        yield* realPause(30)
        assert.strictEqual(beats(), i)
        yield* TestClock.adjust("999 millis")
        yield* realPause(30)
        assert.strictEqual(beats(), i, "no cycle before sleeptime")
        yield* TestClock.adjust("1 millis")
        yield* untilReal(() => beats() === i + 1, `heartbeat ${i + 1}`)
      }
    }))
})

describe("LoopWaker", () => {
  it("the default wakeGap is a tenth of sleeptime, at most 1 s", () => {
    assert.strictEqual(Duration.toMillis(defaultWakeGap(Duration.seconds(15))), 1000)
    assert.strictEqual(Duration.toMillis(defaultWakeGap(Duration.seconds(5))), 500)
    assert.strictEqual(Duration.toMillis(defaultWakeGap(Duration.millis(50))), 5)
  })

  it.effect("wake-ups before a pause count as one; clear forgets them; the pause is sleeptime without one", () =>
    Effect.gen(function*() {
      const w = yield* makeLoopWaker
      for (let i = 0; i < 10; i++) yield* w.wake
      const first = yield* Effect.fork(w.pause("1 second", 0))
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(first)), "a pending wake-up ends the pause")
      const second = yield* Effect.fork(w.pause("1 second", 0))
      yield* TestClock.adjust("999 millis")
      assert.isFalse(Option.isSome(yield* Fiber.poll(second)), "the ten wake-ups were one")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(second)
      yield* w.wake
      yield* w.clear
      const third = yield* Effect.fork(w.pause("1 second", 0))
      yield* TestClock.adjust("999 millis")
      assert.isFalse(Option.isSome(yield* Fiber.poll(third)), "clear forgot the wake-up")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(third)
    }))

  it.effect("a wake-up ends the pause no sooner than notBefore", () =>
    Effect.gen(function*() {
      const w = yield* makeLoopWaker
      const now = yield* Clock.currentTimeMillis
      const paused = yield* Effect.fork(w.pause("10 seconds", now + 300))
      yield* TestClock.adjust("100 millis")
      yield* w.wake
      yield* TestClock.adjust("199 millis")
      assert.isFalse(Option.isSome(yield* Fiber.poll(paused)))
      yield* TestClock.adjust("1 millis")
      assert.isTrue(Option.isSome(yield* Fiber.poll(paused)))
    }))
})
