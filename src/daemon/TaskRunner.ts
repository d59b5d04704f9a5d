/**
 * One task's life after `host.openTask` (koji-protocol.md §4.4–4.6): bind the request to the
 * handler's signature, run it in one Scope (workdir, containers) on the task's own session,
 * bounded by `[adjutant] task_timeout`, and report the outcome as kojid's `runTask` does:
 * closeTask with a methodResponse document, failTask with the fault `toFault` picks, refuseTask
 * (soft) for RefuseTask, freeTasks([id]) for ServerRestart and for a task that lost podman.
 */
import * as path from "node:path"
import { Cause, Clock, Duration, Effect, Either, Exit, Option } from "effect"
import { sessionHub } from "../buildroot/hubSide.js"
import { PodmanError } from "../containers/Libpod.js"
import { ActionNotAllowed, type Fault, GenericError, isFault, RetryError } from "../koji/faults.js"
import type { HubError } from "../hub/HubError.js"
import { hostApi } from "../hub/HostApi.js"
import { doneOnRetry, type Session } from "../hub/KojiHub.js"
import { encodeFault, encodeResponse, type XmlRpcValue } from "../hub/xmlrpc.js"
import { type DaemonControl, type SubtaskOptions, type TaskContext, type TaskHandler, type WaitOptions } from "../tasks/handler.js"
import { RefuseTask, ServerExit, ServerRestart, type TaskError, TaskTimeout } from "../tasks/errors.js"
import { type HubFiles, taskRelPath } from "../koji/paths.js"
import { Metrics } from "../metrics/Metrics.js"
import { fullDiskNote } from "./Readiness.js"
import { clearTaskDir, removeTaskDir } from "./Recovery.js"
import { toFault } from "./toFault.js"
import type { Waker } from "./Waiter.js"

/** How a task ended, from the daemon's side. */
export type TaskOutcome =
  | "closed" // host.closeTask sent
  | "failed" // host.failTask sent
  | "refused" // host.refuseTask sent (handler's RefuseTask)
  | "freed" // host.freeTasks([id]) sent (handler's ServerRestart)
  | "exit" // the handler asked the daemon to exit (ServerExit)
  | "unreported" // the report did not reach the hub; the next cycle frees the task as stale

/** What the runner needs from the daemon's configuration. */
export interface RunnerOptions {
  /** kojid's `workdir`; the task's own dir is `<workdir>/tasks/<id % 10000>/<id>`. */
  readonly workdir: string
  /** `[adjutant] task_timeout` in seconds; 0 = none (kojid has none, §4.5). */
  readonly taskTimeout: number
  /** How often a waiting task polls `host.taskWait` when no wake-up comes. */
  readonly waitPoll: Duration.Duration
  /** The file systems a failed task's fault names when they are full (workdir, buildroot cache), and kojid's `minspace`. */
  readonly disks?: { readonly paths: ReadonlyArray<string>; readonly minspaceMB: number } | undefined
}

/** What a running task tells the daemon loop, so waits for it can end early. */
export interface TaskEvents {
  /** `host.subtask` returned `child`, a new child of `parent`. */
  readonly subtaskCreated: (parent: number, child: number) => Effect.Effect<void>
  /** The task has sent its report (closeTask, failTask, …); not called when it is interrupted. */
  readonly reported: (taskId: number, outcome: TaskOutcome) => Effect.Effect<void>
}

/** One task to run. */
export interface TaskRun {
  readonly taskId: number
  readonly method: string
  readonly handler: TaskHandler
  readonly request: ReadonlyArray<XmlRpcValue>
  /** The task's subsession (the main session for foreground handlers). */
  readonly session: Session
  readonly hostId: number
  readonly waker: Waker
  readonly daemon: DaemonControl
  readonly options: RunnerOptions
  /** Where the task reads koji's files (kojid.conf `topurl`/`topdir`). */
  readonly files: HubFiles
  /** Listener for the loop's wake-ups (none in tests that run a task alone). */
  readonly events?: TaskEvents
}

const isRetryError = (e: unknown): boolean => e instanceof RetryError

/** The TaskContext of one task: its session and the subtask/wait helpers of koji.tasks (§4.6). */
export const makeTaskContext = (run: TaskRun, workdir: string): TaskContext => {
  const api = hostApi(run.session)
  const parent = run.taskId

  const subtask = (method: string, args: ReadonlyArray<XmlRpcValue>, options: SubtaskOptions = {}) => {
    const call = api.subtask({
      method,
      arglist: args,
      parent,
      label: options.label,
      arch: options.arch,
      priority: options.priority,
      channel: options.channel,
      assign: options.assign,
      kwargs: options.kwargs,
      extra: options.extra
    })
    // A RetryError means the first attempt was committed but its answer lost. With a label the
    // hub returns the existing child for the same parent+label, so asking again is safe (§11).
    const created = options.label === undefined
      ? call
      : Effect.catchIf(call, isRetryError, () => call)
    const events = run.events
    return events === undefined ? created : Effect.tap(created, (child) => events.subtaskCreated(parent, child))
  }

  const waitResults = (subtasks: ReadonlyArray<number> | null, canfail: ReadonlyArray<number> | null = null) =>
    Effect.map(api.taskWaitResults(parent, subtasks, canfail), (pairs) => new Map(pairs.map(([id, r]) => [id, r] as const)))

  const wait = (subtasks: number | ReadonlyArray<number> | null, options: WaitOptions = {}) =>
    Effect.gen(function*() {
      const list: ReadonlyArray<number> | null = subtasks === null ? null : typeof subtasks === "number" ? [subtasks] : subtasks
      const checked = new Set(options.canfail ?? [])
      const timeout = options.timeout === undefined ? undefined : Duration.toMillis(Duration.decode(options.timeout))
      yield* api.taskSetWait(parent, list)
      const start = yield* Clock.currentTimeMillis
      let finished: ReadonlyArray<number> = []
      for (;;) {
        const [done, pending] = yield* api.taskWait(parent)
        finished = done
        if (pending.length === 0) break
        if (done.length > 0) {
          if (options.all !== true) break
          if (options.failany === true) {
            for (const t of done) {
              if (checked.has(t)) continue
              const result = yield* Effect.either(api.getTaskResult(t))
              if (Either.isLeft(result)) {
                yield* Effect.logInfo(`task ${t} failed or was canceled, cancelling unfinished tasks`)
                yield* api.cancelTaskChildren(parent)
                return yield* Effect.fail(result.left)
              }
              checked.add(t)
            }
          }
        }
        if (timeout !== undefined) {
          const now = yield* Clock.currentTimeMillis
          const remain = start + timeout - now
          if (remain > 0) yield* run.waker.sleep(Duration.millis(remain))
          const duration = (yield* Clock.currentTimeMillis) - start
          if (duration > timeout) {
            yield* Effect.logInfo("Subtasks timed out")
            yield* api.cancelTaskChildren(parent)
            return yield* new GenericError({ faultString: `Subtasks timed out after ${(duration / 1000).toFixed(1)} seconds` })
          }
        } else {
          // kojid pauses until SIGUSR2; the poll is a safety net for a missed alert.
          yield* run.waker.sleep(run.options.waitPoll)
        }
      }
      return yield* waitResults(options.all === true ? list : finished, options.canfail ?? null)
    })

  return {
    taskId: run.taskId,
    method: run.method,
    hostId: run.hostId,
    workdir,
    session: run.session,
    files: run.files,
    buildrootHub: sessionHub(run.session, run.taskId, run.files),
    daemon: run.daemon,
    subtask,
    wait,
    waitResults
  }
}

/**
 * The task's workdir, made empty before the handler runs and removed after (BaseTaskHandler.run).
 * An earlier run of the task killed with its daemon may have left mounts there (Recovery.ts).
 */
const acquireWorkdir = (dir: string) =>
  Effect.acquireRelease(
    clearTaskDir(dir).pipe(Effect.mapError((why) => new GenericError({ faultString: `cannot create workdir ${dir}: ${why}` }))),
    () =>
      removeTaskDir(dir).pipe(
        Effect.timeout(Duration.seconds(60)),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not remove workdir ${dir}`, cause))
      )
  )

/** Runs the handler in its own scope: bind, workdir, run, bounded by task_timeout. */
const execute = (run: TaskRun): Effect.Effect<XmlRpcValue, TaskError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const bound = run.handler.bind(run.request)
      if (Either.isLeft(bound)) return yield* Effect.fail(bound.left)
      const workdir = yield* acquireWorkdir(path.join(run.options.workdir, taskRelPath(run.taskId)))
      return yield* bound.right.run(makeTaskContext(run, workdir))
    })
  ).pipe((self) =>
    run.options.taskTimeout > 0
      ? Effect.timeoutFail(self, {
        duration: Duration.seconds(run.options.taskTimeout),
        onTimeout: () => new TaskTimeout({ taskId: run.taskId, seconds: run.options.taskTimeout })
      })
      : self
  )

/** The task failed because podman's API service stopped answering (not because of its build). */
const lostPodman = (e: unknown): boolean => e instanceof PodmanError && e.unreachable === true

/** Logs a failed report; 1004 "does not own" is expected after a cancel (koji-protocol.md §13). */
const reportFailed = (what: string, e: Fault | HubError): Effect.Effect<TaskOutcome> =>
  e instanceof ActionNotAllowed
    ? Effect.as(Effect.logInfo(`${what} refused by the hub (task canceled or reassigned): ${e.faultString}`), "unreported")
    : Effect.as(Effect.logWarning(`${what} failed; the task stays OPEN and is freed next cycle`, e), "unreported")

/**
 * Runs one task and reports its outcome; never fails. Interruption (cancel, shutdown) closes
 * the task's scope and reports nothing, as kojid kills the task process.
 */
export const runTask = (run: TaskRun): Effect.Effect<TaskOutcome> =>
  Effect.gen(function*() {
    const api = hostApi(run.session)
    const exit = yield* Effect.exit(execute(run))
    if (Exit.isSuccess(exit)) {
      yield* Effect.logInfo("task completed")
      return yield* doneOnRetry(api.closeTask(run.taskId, encodeResponse(exit.value))).pipe(
        Effect.as<TaskOutcome>("closed"),
        Effect.catchAll((e) => reportFailed("host.closeTask", e))
      )
    }
    const cause = exit.cause
    if (Cause.isInterruptedOnly(cause)) return yield* Effect.interrupt
    const failure = Option.getOrUndefined(Cause.failureOption(cause))
    if (failure instanceof RefuseTask) {
      yield* Effect.logWarning(`Refusing task: ${failure.message}`)
      return yield* api.refuseTask(run.taskId, { soft: true, msg: failure.message }).pipe(
        Effect.as<TaskOutcome>("refused"),
        Effect.catchAll((e) => reportFailed("host.refuseTask", e))
      )
    }
    if (failure instanceof ServerRestart || lostPodman(failure)) {
      // Freeing the task lets a pending restart of this daemon happen (§4.5). A task that lost
      // podman's API service is the builder's failure, not the build's: given back, it runs again
      // from scratch once podman answers (Readiness keeps this host from taking it before) or elsewhere.
      if (failure instanceof PodmanError) yield* Effect.logWarning(`freeing the task for a rerun: ${failure.message}`)
      return yield* doneOnRetry(api.freeTasks([run.taskId])).pipe(
        Effect.as<TaskOutcome>("freed"),
        Effect.catchAll((e) => reportFailed("host.freeTasks", e))
      )
    }
    if (failure instanceof ServerExit) return "exit"
    const found = toFault(cause)
    const disks = run.options.disks
    const note = disks === undefined ? "" : yield* Effect.sync(() => fullDiskNote(disks.paths, disks.minspaceMB, found.faultString))
    const fault = note === "" ? found : { faultCode: found.faultCode, faultString: found.faultString + note }
    if (isFault(failure)) yield* Effect.logWarning(`FAULT: ${fault.faultCode} ${fault.faultString}`)
    else yield* Effect.logWarning("task failed", cause)
    return yield* doneOnRetry(api.failTask(run.taskId, encodeFault(fault.faultCode, fault.faultString))).pipe(
      Effect.as<TaskOutcome>("failed"),
      Effect.catchAll((e) => reportFailed("host.failTask", e))
    )
  }).pipe(
    Effect.tap((outcome) => (run.events === undefined ? Effect.void : run.events.reported(run.taskId, outcome))),
    (self) => Effect.flatMap(Metrics, (m) => m.task(run.method, self)),
    Effect.annotateLogs({ taskId: run.taskId, method: run.method })
  )
