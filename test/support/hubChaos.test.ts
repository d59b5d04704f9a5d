/**
 * Issue 12's fault-proxy runs: the daemon loop through the fault proxy keeps every task — none
 * lost, none run or reported twice, every upload byte-identical on the hub — under 10 % of its hub
 * calls faulted by kind and a hub outage; and a task that finished while the hub was down closes
 * within a few seconds of the hub's return, not retry_interval later.
 * HUB_CHAOS_OUTAGE_MS sets the outage of the 100-task run (default 10 s; the chaos bench uses 2 min).
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Logger, LogLevel, Option } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { defineHandler, Int, required, signature } from "../../src/tasks/handler.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { fakeHub, HOST, PASSWORD, startDaemon, tempWorkdir, testOptions } from "../daemon/harness.js"
import { startFaultProxy } from "./faultProxy.js"
import { describeHubChaos, runHubChaos } from "./hubChaos.js"

const pause = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

const OUTAGE_MS = Number(process.env["HUB_CHAOS_OUTAGE_MS"] ?? 10_000)

describe("fault-proxy runs", () => {
  it.live(`100 tasks (sleeps and uploads), 10 % of hub calls faulted by kind, one ${OUTAGE_MS / 1000} s outage: none lost, none twice, uploads identical`, () =>
    Effect.gen(function*() {
      const r = yield* runHubChaos({
        tasks: 100, outageMs: OUTAGE_MS, timeout: 2, retryInterval: 10, maxRetries: 120, offlineRetryInterval: 10,
        recoveryProbeInterval: 0.5, deadlineMs: 240_000, logLevel: LogLevel.None
      })
      const report = `${describeHubChaos(r)}\nlost ${r.lost.join(" ")}\ntwice ${r.twice.join(" ")}\nleaked ${r.leaked.join(" ")}`
      assert.deepStrictEqual([r.lost.length, r.twice.length, r.leaked.length], [0, 0, 0], report)
      assert.isTrue(r.stopped, `the daemon did not stop within 60 s of being interrupted\n${report}`)
      assert.strictEqual(r.uploads, 50)
      assert.isAtLeast(r.faulted, r.requests * 0.05, report)
      assert.isAtLeast(Object.values(r.byKind).filter((n) => n > 0).length, 8, report)
      assert.isDefined(r.heartbeatAfterOutageMs, report)
      assert.isBelow(r.heartbeatAfterOutageMs!, r.retryIntervalMs, `first heartbeat after the outage\n${report}`)
      if (r.closeAfterOutageMs !== undefined) assert.isBelow(r.closeAfterOutageMs, r.retryIntervalMs, report)
    }), 300_000)

  it.live("a task that finished while the hub was down closes within a few seconds of its return, not retry_interval (30 s) later", () =>
    Effect.scoped(Effect.gen(function*() {
      let startedAt = 0
      let finishedAt = 0
      const slowSleep = defineHandler({
        name: "SlowSleep",
        methods: ["slowSleep"],
        weight: 1,
        signature: signature("SlowSleep.handler", { ms: required(Int) }),
        run: ({ ms }) => Effect.sync(() => (startedAt = Date.now())).pipe(
          Effect.zipRight(Effect.sleep(Duration.millis(ms))),Effect.zipRight(Effect.sync(() => (finishedAt = Date.now()))), Effect.as(null))
      })
      const hub = yield* fakeHub()
      const proxy = yield* startFaultProxy({ upstream: hub.url })
      const workdir = yield* tempWorkdir
      const layer = Layer.mergeAll(
        KojiHub.layerWithTransport({
          server: proxy.url, user: HOST, password: PASSWORD, timeout: 5, maxRetries: 120, retryInterval: 30, recoveryProbeInterval: 0.5
        }).pipe(Layer.orDie),
        TaskRegistry.layerTest([...genericHandlers, slowSleep]),
        Readiness.layerAlways,
        HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
        Containers.layerMemory({ hostName: HOST }),
        Logger.minimumLogLevel(LogLevel.None)
      )
      const id = hub.createTask("slowSleep", [1500])
      const daemon = yield* startDaemon(testOptions(workdir, { sleeptime: Duration.millis(200), batchHubCalls: true })).pipe(Effect.provide(layer))
      yield* Effect.addFinalizer(() => Effect.promise(proxy.close))
      const deadline = Date.now() + 30_000
      while (startedAt === 0 && Date.now() < deadline) yield* pause(10)
      assert.strictEqual(hub.state.task(id)?.state, TaskState.OPEN)
      proxy.outage(3000)
      while (proxy.down()) yield* pause(10)
      const back = Date.now()
      assert.isAbove(finishedAt, 0, "the task finished while the hub was down")
      while (hub.state.task(id)?.state !== TaskState.CLOSED && Date.now() < back + 40_000) yield* pause(10)
      const closedAfter = Date.now() - back
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      assert.isBelow(closedAfter, 3000, `closed ${closedAfter} ms after the hub's return`)
      assert.isTrue(Option.isNone(yield* Fiber.poll(daemon)))
      yield* Fiber.interrupt(daemon).pipe(Effect.timeoutOption("30 seconds"))
      const closes = hub.state.calls.filter((c) => c.method === "host.closeTask" && c.params[0] === id && c.fault === undefined)
      assert.strictEqual(closes.length, 1)
    })), 60_000)
})
