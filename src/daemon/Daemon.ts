/**
 * A daemon run (DESIGN.md §3): log in, remove what an earlier process left, serve status and
 * metrics, then kojid's main loop over the TaskManager's cycles with kojid's error policy, until a
 * signal, an exit or a restart, telling systemd how it goes (supervision.ts).
 */
import { Clock, Duration, Effect, Either, Runtime, type Scope } from "effect"
import type { Containers } from "../containers/Containers.js"
import { ownerOf } from "../containers/labels.js"
import { reap } from "../containers/Reaper.js"
import { AuthExpired, type Fault, isAuthFamily, isFault, RetryError } from "../koji/faults.js"
import type { HubError, LoginError } from "../hub/HubError.js"
import { KojiHub } from "../hub/KojiHub.js"
import type { HubFileTree } from "../koji/paths.js"
import type { TaskRegistry } from "../tasks/TaskRegistry.js"
import { makeMetrics, Metrics, type MetricsService } from "../metrics/Metrics.js"
import { version } from "../version.js"
import type { Readiness } from "./Readiness.js"
import { recoverHost } from "./Recovery.js"
import { serveStatus, type StatusServerError } from "./StatusServer.js"
import { daemonStatus, type LoopHooks, superviseRun } from "./supervision.js"
import { type Control, describe, makeTaskManager, type TaskManagerApi } from "./TaskManager.js"
import { type DaemonOptions, type DaemonResult, defaultWakeGap } from "./options.js"

type HubFailure = Fault | HubError

/** The loop's reaction to a failed cycle (§2): an exit code for the session's end, else go on. */
const failedCycle = (tm: TaskManagerApi, e: HubFailure, hooks: LoopHooks) =>
  Effect.gen(function*() {
    if (e instanceof AuthExpired) {
      yield* Effect.logError("Session expired")
      yield* hooks.stopping("session expired")
      yield* tm.shutdown
      return { _tag: "Exit", code: 1 } as const
    }
    if (isFault(e) && isAuthFamily(e) && !(e instanceof RetryError)) {
      yield* Effect.logError(`Authentication error: ${e.faultString}`)
      yield* hooks.stopping("authentication error")
      yield* tm.shutdown
      return { _tag: "Exit", code: 1 } as const
    }
    yield* Effect.logError(`cycle failed: ${describe(e)}`)
    return undefined
  })

/**
 * kojid's main loop with its error policy (§2): AuthExpired → "Session expired", exit 1;
 * other AuthError → exit 1; ServerExit → exit 0; anything else is logged and the loop goes on.
 * Unlike kojid, a RetryError (1009: a call's reply was lost after the hub committed it) does not
 * kill the daemon: the next cycle re-reads the hub's state (a task opened without a fiber is
 * freed as stale), so a flaky network costs a cycle, not a restart.
 */
export const runLoop = (tm: TaskManagerApi, options: DaemonOptions, hooks: LoopHooks = noHooks): Effect.Effect<DaemonResult> =>
  Effect.gen(function*() {
    let taken = false
    const gap = Duration.toMillis(options.wakeGap ?? defaultWakeGap(options.sleeptime))
    for (;;) {
      yield* tm.wakeup.clear
      const started = yield* Clock.currentTimeMillis
      yield* hooks.cycleStarted
      const step: Either.Either<Control, Fault | HubError> = yield* Effect.either(tm.cycle(taken))
      yield* hooks.cycleEnded
      if (Either.isLeft(step)) {
        const end = yield* failedCycle(tm, step.left, hooks)
        if (end !== undefined) return end
        taken = false
      } else if (step.right === "restart") {
        yield* Effect.logWarning("Restarting")
        return { _tag: "Restart" } as const
      } else if (step.right === "exit") {
        yield* Effect.logWarning("Exiting")
        yield* hooks.stopping("shutdown task")
        yield* tm.shutdown
        return { _tag: "Exit", code: 0 } as const
      } else {
        taken = step.right === "taken"
      }
      if (!taken) yield* tm.wakeup.pause(options.sleeptime, started + gap)
    }
  }).pipe(
    // SIGTERM/SIGINT interrupt the main fiber: shut down as kojid does before the session ends.
    Effect.onInterrupt(() => Effect.zipRight(hooks.stopping("signal"), tm.shutdown))
  )

/** A loop nobody watches (tests that drive runLoop alone). */
const noHooks: LoopHooks = { cycleStarted: Effect.void, cycleEnded: Effect.void, stopping: () => Effect.void }

/**
 * One daemon run: log in (exclusive, `force` from --force-lock), remove what an earlier process
 * of this host left (Recovery.ts), then the loop until a signal, an exit or a restart. The
 * session is logged out when the run's scope closes.
 */
export const runDaemon = (
  options: DaemonOptions
): Effect.Effect<DaemonResult, Fault | HubError | LoginError | StatusServerError, KojiHub | TaskRegistry | Readiness | Containers | HubFileTree | Scope.Scope> =>
  Effect.suspend(() => {
    const serving = options.statusListen !== undefined && options.statusListen !== ""
    const metrics = makeMetrics({ exported: serving, version })
    return Effect.provideService(daemonRun(options, metrics), Metrics, metrics)
  })

/** The run itself, with its metrics provided to everything it does. */
const daemonRun = (options: DaemonOptions, metrics: MetricsService) =>
  Effect.gen(function*() {
    const hub = yield* KojiHub
    const session = yield* hub.loginScoped(options.forceLock)
    const tm = yield* makeTaskManager(session, options)
    // When the hub answers again after a failure, the next cycle (and its heartbeat) goes at once.
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(hub.recovered, tm.wakeup.wake)))
    yield* Effect.logInfo(`Starting up: host ${tm.hostId}, session ${session.sessionId}`)
    // At start no task of ours runs here: every container labelled with this host, every mount
    // under the workdir and every task directory is a leftover of an earlier process. Its OPEN
    // tasks are freed as stale and its active buildroots expired by the first cycle (kojid's
    // updateBuildroots runs first, since nothing was taken), so a task the hub gives back to us
    // reruns from scratch in an empty workdir.
    yield* recoverHost({ workdir: options.runner.workdir, otherRoots: options.leftoverRoots ?? [] })
    yield* Effect.forkScoped(reapOrphans(tm, options))
    const status = daemonStatus(tm)
    if (options.statusListen !== undefined && options.statusListen !== "") {
      yield* serveStatus(options.statusListen, status, tm.healthy, Effect.flatMap(status, metrics.page))
    }
    yield* installRestartSignal(tm)
    return yield* runLoop(tm, options, yield* superviseRun(tm, metrics))
  })

/**
 * Containers of this host that no running task owns (their removal failed, typically while
 * podman was not answering) are removed every `reaperInterval`, and every `sleeptime` while
 * podman does not answer, so they go as soon as it is back. Ownership is asked per container
 * after the listing, so a task that starts meanwhile keeps its containers.
 */
const reapOrphans = (tm: TaskManagerApi, options: DaemonOptions) =>
  Effect.gen(function*() {
    const owned = (labels: Readonly<Record<string, string>>) =>
      Effect.map(tm.runningTasks, (ids) => {
        const taskId = ownerOf(labels)?.taskId
        return taskId !== undefined && ids.includes(taskId)
      })
    let down = false
    for (;;) {
      yield* Effect.sleep(down ? options.sleeptime : options.reaperInterval ?? Duration.minutes(5))
      const pass = yield* Effect.either(reap(owned))
      if (Either.isLeft(pass)) {
        if (!down) yield* Effect.logWarning(`reaper: podman does not answer; trying again every cycle: ${pass.left.message}`)
        down = true
        continue
      }
      if (down) yield* Effect.logInfo(`reaper: podman answers again; removed ${pass.right.removed.length} containers no task owns`)
      down = false
    }
  })

/** SIGUSR1 → graceful restart (kojid: `restart_pending = True`), for the life of the scope. */
const installRestartSignal = (tm: TaskManagerApi) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const onUsr1 = () => {
      const run = Effect.logWarning("Initiating graceful restart").pipe(Effect.zipRight(tm.requestRestart))
      Runtime.runFork(runtime)(run)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGUSR1", onUsr1)),
      () => Effect.sync(() => process.off("SIGUSR1", onUsr1))
    )
  })
