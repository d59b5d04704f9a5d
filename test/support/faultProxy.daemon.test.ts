/**
 * The daemon loop (TaskManager against the fake hub, as test/daemon/harness.ts runs it) through the
 * fault proxy: 10 % of the hub calls faulted, of every kind; each task ends CLOSED, reported once.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Layer, Option } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { fakeHub, HOST, PASSWORD, quietLogs, startDaemon, tempWorkdir, testOptions } from "../daemon/harness.js"
import { FAULT_KINDS, startFaultProxy } from "./faultProxy.js"

const pause = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

/** Every kind at about 1 %: 10 % of the calls faulted. */
const RATES = {
  resetBefore: 0.015, resetAfter: 0.015, http500: 0.01, http502: 0.01, http503: 0.01,
  truncate: 0.01, notXml: 0.01, serverOffline: 0.01, latency: 0.01, hang: 0.01
} as const

describe("fault proxy: the daemon loop", () => {
  it.live("40 sleep tasks through 10 % faults of every kind: each task is CLOSED, reported exactly once", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* fakeHub()
      const proxy = yield* startFaultProxy({
        upstream: hub.url,
        latencyMs: [5, 50],
        // The login itself is not retried (anon_retry is off, as in kojid): a fault there ends the daemon.
        schedule: {
          rates: RATES,
          eligible: (r) => r.sessionId !== undefined
        }
      })
      const workdir = yield* tempWorkdir
      const ids = Array.from({ length: 40 }, () => hub.createTask("sleep", [0]))
      const layer = Layer.mergeAll(
        KojiHub.layerWithTransport({
          server: proxy.url, user: HOST, password: PASSWORD, timeout: 2,
          maxRetries: 10, retryInterval: 0.05, offlineRetryInterval: 0.05
        }).pipe(Layer.orDie),
        TaskRegistry.layerTest(genericHandlers),
        Readiness.layerAlways,
        HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
        Containers.layerMemory({ hostName: HOST }),
        quietLogs
      )
      const daemon = yield* startDaemon(testOptions(workdir, { sleeptime: Duration.millis(50), batchHubCalls: true })).pipe(Effect.provide(layer))
      // Runs before the daemon fiber is interrupted at scope close: a request the daemon is stuck on
      // is cut, so a failing run ends with its message instead of a hung scope.
      yield* Effect.addFinalizer(() => Effect.promise(proxy.close))
      const closed = () => ids.every((id) => hub.state.task(id)?.state === TaskState.CLOSED)
      const report = () => {
        const states = ids.map((id) => `${id}:${hub.state.task(id)?.state}`).join(" ")
        const last = proxy.requests.slice(-12).map((r) =>
          `  ${r.at}ms session ${r.sessionId ?? "-"}#${r.callnum ?? "-"} ${r.method} ${r.fault ?? "-"}${r.forwarded ? ` hub ${r.hub?.status}${r.hub?.faultCode === undefined ? "" : ` fault ${r.hub.faultCode}`}` : ""}`
        ).join("\n")
        return `${proxy.summary()}\nstates ${states}\nlast requests:\n${last}`
      }
      const deadline = Date.now() + 90_000
      while (!closed() && Date.now() < deadline && Option.isNone(yield* Fiber.poll(daemon))) yield* pause(50)
      const early = yield* Fiber.poll(daemon)
      assert.isTrue(Option.isNone(early), `the daemon stopped by itself: ${Option.isSome(early) ? Cause.pretty(Exit.causeOption(early.value).pipe(Option.getOrElse(() => Cause.empty))) || "success" : ""}\n${report()}`)
      assert.isTrue(closed(), report())
      // SIGTERM: the daemon stops within its shutdown bounds (shutdownTimeout, shutdownCallTimeout per call, logout's 30 s).
      yield* Fiber.interruptFork(daemon)
      const stopBy = Date.now() + 60_000
      while (Option.isNone(yield* Fiber.poll(daemon)) && Date.now() < stopBy) yield* pause(50)
      assert.isTrue(Option.isSome(yield* Fiber.poll(daemon)), `the daemon did not stop within 60 s of being interrupted\n${report()}`)
      const s = proxy.stats()
      assert.isAtLeast(s.faulted, 15, report())
      assert.isAtLeast(FAULT_KINDS.filter((k) => s.byKind[k] > 0).length, 7, report())
      for (const id of ids) {
        const committed = hub.state.calls.filter((c) =>
          (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === id && c.fault === undefined && c.http === undefined
        )
        assert.strictEqual(committed.length, 1, `task ${id}: ${committed.length} reports\n${report()}`)
        assert.strictEqual(committed[0]!.method, "host.closeTask")
      }
    })), 180_000)
})
