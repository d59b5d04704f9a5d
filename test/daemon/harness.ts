/**
 * Test harness for the daemon loop: a fake hub with one host "builder", the real KojiHub client
 * over HTTP, the in-memory Containers, and helpers to drive the loop on the TestClock.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Duration, Effect, Fiber, Layer, Logger, LogLevel, TestClock, type Scope } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import type { MemoryContainers } from "../../src/containers/MemoryContainers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { type DaemonOptions, type DaemonResult } from "../../src/daemon/options.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import type { TaskHandler } from "../../src/tasks/handler.js"
import { makeRegistry, TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { type FakeHub, type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"

export const HOST = "builder"
export const PASSWORD = "builder-pw"

/** A temp workdir removed with the scope. */
export const tempWorkdir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-daemon-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Daemon options for tests: 1 s cycles on the TestClock. */
export const testOptions = (workdir: string, patch: Partial<DaemonOptions> = {}): DaemonOptions => ({
  sleeptime: Duration.seconds(1),
  maxjobs: 10,
  forceLock: true,
  runner: { workdir, taskTimeout: 0, waitPoll: Duration.seconds(30) },
  shutdownTimeout: Duration.seconds(10),
  shutdownCallTimeout: Duration.seconds(5),
  // The production default; tests that compare traffic with the recorded kojid set false.
  batchHubCalls: true,
  ...patch
})

/** A fake hub with the test host; the scheduler runs on every getTasks. */
export const fakeHub = (options: FakeHubOptions = {}) =>
  startFakeHub({
    hosts: [{ name: HOST, password: PASSWORD, capacity: 10 }],
    ...options,
    scheduler: { runInterval: 0, ...options.scheduler }
  })

/** Only warnings and errors of the daemon in test output. */
export const quietLogs: Layer.Layer<never> = Logger.minimumLogLevel(LogLevel.Warning)

/** The daemon's services against `hub`. */
export const daemonLayer = (
  hub: FakeHub,
  handlers?: ReadonlyArray<TaskHandler>,
  readiness: Layer.Layer<Readiness> = Readiness.layerAlways
): Layer.Layer<KojiHub | TaskRegistry | Readiness | Containers | MemoryContainers | HubFileTree, never> =>
  Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    TaskRegistry.layerTest(handlers ?? genericHandlers),
    HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
    readiness,
    Containers.layerMemory({ hostName: HOST }),
    quietLogs
  )

/** Like daemonLayer, with handlers made from the same in-memory Containers the test inspects. */
export const daemonLayerWith = (
  hub: FakeHub,
  handlers: (containers: Containers["Type"]) => ReadonlyArray<TaskHandler>
): Layer.Layer<KojiHub | TaskRegistry | Readiness | Containers | MemoryContainers | HubFileTree, never> =>
  Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
    HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
    Layer.effect(TaskRegistry, Effect.map(Containers, (c) => makeRegistry(handlers(c)))),
    quietLogs
  ).pipe(Layer.provideMerge(Containers.layerMemory({ hostName: HOST })))

/** Starts the daemon in the background of the test scope. */
export const startDaemon = (options: DaemonOptions) =>
  Effect.forkScoped(Effect.scoped(runDaemon(options)))

/** A few milliseconds of real time (I/O with the fake hub happens in real time). */
export const realPause = (ms = 5) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

/**
 * Advances the TestClock one cycle at a time (with real pauses for the HTTP round trips) until
 * `cond` holds; fails after `maxSteps`.
 */
export const until = (cond: () => boolean, what: string, maxSteps = 400, step: Duration.DurationInput = "1 second") =>
  Effect.gen(function*() {
    for (let i = 0; i < maxSteps; i++) {
      if (cond()) return
      yield* realPause()
      if (i % 4 === 3) yield* TestClock.adjust(step)
    }
    if (!cond()) return yield* Effect.dieMessage(`timed out waiting for: ${what}`)
  })

/** Interrupts the daemon fiber (as SIGTERM does) and returns how it ended. */
export const stopDaemon = <E>(fiber: Fiber.RuntimeFiber<DaemonResult, E>) =>
  Fiber.interrupt(fiber)
