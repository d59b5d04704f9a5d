/**
 * The daemon loop: kojid's `main` + `TaskManager` (DESIGN.md §3, koji-protocol.md §4). Every
 * cycle, in kojid's order: expire buildroots no running task owns (when the previous cycle took
 * nothing), watch running tasks (`host.getHostTasks`: free stale ones, interrupt canceled or
 * reassigned ones, wake waiters, sum the load), heartbeat (`host.updateHost`, every cycle), and
 * take at most one assigned task. Each step issues its hub calls through `cycleCalls`, which
 * batches them into one multiCall or sends kojid's exact sequence (`batch_hub_calls`); the
 * loop's code is the same either way. Task fibers live in RunningTasks and make their hub calls
 * on their own subsessions, so the heartbeat on the main session never waits on them.
 */
import { Clock, Duration, Effect, Either } from "effect"
import { ActionNotAllowed, type Fault, isFault, ParameterError } from "../koji/faults.js"
import type { HubError } from "../hub/HubError.js"
import { type CycleCalls, cycleCalls, hostApi, type PendingCall } from "../hub/HostApi.js"
import { doneOnRetry, type Session } from "../hub/KojiHub.js"
import type { HostInfo, HostTask, OpenHostTask } from "../hub/schemas.js"
import { decodeCall, encodeFault, type XmlRpcValue } from "../hub/xmlrpc.js"
import { HubFileTree } from "../koji/paths.js"
import { ACTIVE_BUILDROOT_STATES, BuildrootState, TaskState } from "../koji/states.js"
import type { DaemonControl, TaskHandler } from "../tasks/handler.js"
import { TaskRegistry } from "../tasks/TaskRegistry.js"
import { Readiness } from "./Readiness.js"
import { makeRunningTasks, type RunningTask } from "./RunningTasks.js"
import { type StatusSnapshot } from "./StatusServer.js"
import { type RunnerOptions, runTask, type TaskEvents } from "./TaskRunner.js"
import { makeLoopWaker, makeWaker } from "./Waiter.js"

/** The daemon's options (from kojid.conf and the command line; see `daemonOptionsFromConfig`). */
export interface DaemonOptions {
  /** kojid `sleeptime`: pause after a cycle that took no task. */
  readonly sleeptime: Duration.Duration
  /**
   * After an idle cycle, a local task event (a subtask created, a task ended) starts the next
   * cycle at once instead of after `sleeptime`, but no sooner than this after the previous
   * cycle started. Default: `defaultWakeGap(sleeptime)`.
   */
  readonly wakeGap?: Duration.Duration
  readonly maxjobs: number
  /** `--force-lock`: `exclusiveSession(force)` at login. */
  readonly forceLock: boolean
  readonly runner: RunnerOptions
  /** Bound on interrupting the task fibers at shutdown (containers are removed meanwhile). */
  readonly shutdownTimeout: Duration.Duration
  /** Bound on each hub call made while shutting down. */
  readonly shutdownCallTimeout: Duration.Duration
  /**
   * Send the calls of each cycle step in one `multiCall` ([host.getHostTasks, host.getHost,
   * logoutChild of ended tasks], [host.updateHost, host.getTasks], [host.openTask,
   * host.setTaskWeight]): same calls, same order, same session, half the round trips (§1.8);
   * false gives kojid's exact one-call-per-request traffic (koji-captures/kojid/idle).
   */
  readonly batchHubCalls: boolean
  /** `[adjutant] status_listen` (host:port): serve /status and /healthz there; unset = none. */
  readonly statusListen?: string
  /** Directories besides the workdir whose mounts a killed daemon may have left (the buildroot cache); see Recovery.ts. */
  readonly leftoverRoots?: ReadonlyArray<string>
  /** `[adjutant] reaper_interval`: how often containers of this host no task owns are removed (default 300 s). */
  readonly reaperInterval?: Duration.Duration
}

/** The least time between two cycle starts when a wake-up starts the second: sleeptime/10, at most 1 s. */
export const defaultWakeGap = (sleeptime: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.millis(Duration.toMillis(sleeptime) / 10), Duration.seconds(1))

/** How a daemon run ended. */
export type DaemonResult =
  | { readonly _tag: "Restart" }
  | { readonly _tag: "Exit"; readonly code: number }

/** What a cycle asks of the loop. */
export type Control = "taken" | "idle" | "restart" | "exit"

type HubFailure = Fault | HubError

/** A hub failure in a log line. */
export const describe = (e: unknown): string =>
  isFault(e) ? `${e._tag} ${e.faultCode}: ${e.faultString}` : e instanceof Error ? e.message : String(e)

/** The loop's state and steps over one logged-in main session. */
export const makeTaskManager = Effect.fnUntraced(function*(session: Session, options: DaemonOptions) {
  const registry = yield* TaskRegistry
  const readiness = yield* Readiness
  const files = yield* HubFileTree
  const api = hostApi(session)
  const tasks = yield* makeRunningTasks
  const hostId = yield* api.getID()
  const startTs = (yield* api.getSessionInfo()).start_ts ?? Date.now() / 1000
  const calls = (): CycleCalls => cycleCalls(session, options.batchHubCalls)
  const hostData = { methods: [...registry.methods], maxjobs: options.maxjobs }
  let taskLoad = 0.0
  let hostdata: HostInfo | undefined
  let restartPending = false
  let legacyHostData = false
  /** The last heartbeat the hub accepted (for the status endpoint). */
  let lastBeat: { readonly at: number; readonly ready: boolean } | undefined

  const control: DaemonControl = { startTs, requestRestart: Effect.sync(() => void (restartPending = true)) }
  const mainWaker = yield* makeWaker
  const loopWaker = yield* makeLoopWaker

  // The hub scheduler assigns a new subtask only inside a later host.getTasks, and a parent
  // learns that a child ended from a later getHostTasks alert (§4.6–4.7): run that cycle now.
  // A child that ended here also wakes its waiting parent at once; the alert of the next cycle
  // would say the same.
  const events: TaskEvents = {
    subtaskCreated: (parent, child) => Effect.zipRight(Effect.sync(() => tasks.addChild(parent, child)), loopWaker.wake),
    reported: (taskId, outcome) =>
      outcome !== "closed" && outcome !== "failed"
        ? Effect.void
        : Effect.forEach(tasks.parentsOf(taskId), (entry) =>
          Effect.zipRight(Effect.logDebug(`Waking up task ${entry.taskId}: child ${taskId} ended`), entry.waker.wake), { discard: true })
  }

  /** §5.5 step 1: active buildroots of this host that no running task owns → EXPIRED. */
  const updateBuildroots = Effect.gen(function*() {
    for (const br of yield* api.listBuildroots({ hostID: hostId, state: ACTIVE_BUILDROOT_STATES })) {
      const desc = `${br.id}/${br.tag_name ?? ""}/${br.arch ?? ""}`
      const owner = br.task_id == null ? undefined : tasks.get(br.task_id)
      if (br.task_id != null && owner !== undefined && !owner.done) continue
      yield* br.task_id == null ? Effect.logWarning(`Expiring taskless buildroot: ${desc}`) : Effect.logInfo(`Expiring buildroot: ${desc}`)
      yield* doneOnRetry(api.setBuildRootState(br.id, BuildrootState.EXPIRED))
    }
  })

  const logoutFailed = (entry: RunningTask) => (e: HubFailure) => Effect.logInfo(`logoutChild(${entry.subsessionId}) failed: ${describe(e)}`)

  /** Interrupts a task fiber (its scope removes containers and the workdir), bounded. */
  const killTask = (entry: RunningTask, why: string) =>
    Effect.gen(function*() {
      yield* Effect.logInfo(`${why} ${entry.taskId}`)
      if (!(yield* tasks.interrupt(entry.taskId, options.shutdownTimeout))) yield* Effect.logWarning(`task ${entry.taskId} is still stopping`)
      yield* session.logoutChild(entry.subsessionId).pipe(Effect.catchAll(logoutFailed(entry)))
      tasks.forget(entry.taskId)
    })

  /** The tasks the hub lists as ours: wake the alerted, sum the load; the ones without a fiber are stale. */
  const sortHostTasks = (open: ReadonlyArray<OpenHostTask>) =>
    Effect.gen(function*() {
      const seen = new Set<number>()
      const stale: Array<number> = []
      let load = 0.0
      for (const t of open) {
        const entry = tasks.get(t.id)
        if (entry === undefined) {
          stale.push(t.id)
          continue
        }
        seen.add(t.id)
        if (t.alert === true) yield* Effect.zipRight(Effect.logInfo(`Waking up task ${t.id}`), entry.waker.wake)
        if (t.waiting !== true) load += t.weight
      }
      taskLoad = load
      tasks.setHeld(seen)
      return { seen, stale }
    })

  /** A fiber of ours the hub no longer lists as OPEN for us: canceled, reassigned or lingering. */
  const checkMissing = (entry: RunningTask) =>
    Effect.gen(function*() {
      const info = yield* api.getTaskInfo(entry.taskId)
      if (entry.done) return
      if (info === null) return yield* Effect.logError(`Invalid task ${entry.taskId}`)
      if (info.state === TaskState.CANCELED) return yield* killTask(entry, "Killing canceled task")
      if (info.host_id !== hostId) return yield* killTask(entry, "Killing reassigned task")
      yield* Effect.logInfo(`Lingering task ${entry.taskId}`)
    })

  /** §4.7: watch running tasks. Returns the host row when it came with the tasks (batched). */
  const updateTasks = Effect.gen(function*() {
    const step = calls()
    const hostTasks = step.getHostTasks()
    const host = restartPending ? undefined : step.getHost()
    const ended = tasks.all().filter((e) => e.done).map((e) => [e, step.logoutChild(e.subsessionId)] as const)
    const { seen, stale } = yield* Effect.flatMap(hostTasks.await, sortHostTasks)
    if (stale.length > 0) {
      yield* Effect.logInfo(`freeing stale tasks: ${stale.join(", ")}`)
      yield* doneOnRetry(api.freeTasks(stale))
    }
    for (const [entry, logout] of ended) {
      yield* logout.await.pipe(Effect.catchAll(logoutFailed(entry)))
      tasks.forget(entry.taskId)
    }
    for (const entry of tasks.all()) if (!seen.has(entry.taskId)) yield* checkMissing(entry)
    return host
  })

  /** §4.3 readyForTask: "restart" once a pending restart finds no task running. */
  const readyForTask = (host: PendingCall<HostInfo> | undefined) =>
    Effect.gen(function*() {
      if (restartPending) {
        if (tasks.size() > 0) return yield* Effect.as(Effect.logInfo("Pending restart"), false as const)
        return "restart" as const
      }
      const row = yield* (host ?? calls().getHost()).await
      hostdata = row
      const why = !row.enabled
        ? "Host is disabled"
        : taskLoad > row.capacity
        ? `Task load (${taskLoad.toFixed(2)}) exceeds capacity (${row.capacity.toFixed(2)})`
        : tasks.size() >= options.maxjobs
        ? "Full queue"
        : undefined
      if (why !== undefined) return yield* Effect.as(Effect.logInfo(why), false as const)
      const reasons = yield* readiness.check
      if (reasons.length > 0) return yield* Effect.as(Effect.logWarning(reasons.join("; ")), false as const)
      return true as const
    })

  const beaten = (ready: boolean) => Effect.map(Clock.currentTimeMillis, (at) => void (lastBeat = { at, ready }))

  /** A 1.34 hub has no updateHost `data` keyword (ParameterError): updateHost, then host.setHostData. */
  const legacyHeartbeat = (ready: boolean) =>
    Effect.zipRight(api.updateHost(taskLoad, ready), api.setHostData(hostData)).pipe(Effect.tap(() => beaten(ready)))

  /** The heartbeat and, when ready, host.getTasks (one step). */
  const heartbeatAndGetTasks = (ready: boolean): Effect.Effect<ReadonlyArray<HostTask>, HubFailure> =>
    Effect.gen(function*() {
      if (legacyHostData) {
        yield* legacyHeartbeat(ready)
        return ready ? yield* api.getTasks() : []
      }
      const step = calls()
      const beat = step.updateHost(taskLoad, ready, hostData)
      const assigned = ready ? step.getTasks() : undefined
      const sent = yield* Effect.either(beat.await)
      if (Either.isLeft(sent)) {
        if (!(sent.left instanceof ParameterError)) return yield* Effect.fail(sent.left)
        yield* Effect.logInfo("hub has no updateHost data keyword (1.34): using host.setHostData")
        legacyHostData = true
        yield* legacyHeartbeat(ready)
      } else {
        yield* beaten(ready)
      }
      return assigned === undefined ? [] : yield* assigned.await
    })

  /** The request of a task about to be opened: from getTaskInfo, or (batching, when nothing needs it before) from openTask's row. */
  const requestOf = (task: HostTask, fromOpen: boolean) =>
    fromOpen
      ? Effect.succeed<ReadonlyArray<XmlRpcValue> | undefined>([])
      : Effect.map(api.getTaskInfo(task.id, { request: true }), (info) =>
        info === null || info.request === undefined || info.request === null ? undefined : Array.isArray(info.request) ? info.request : [info.request])

  /** kojid's checkHost before the open; a request that does not bind fails it. */
  const hostCheckPasses = (handler: TaskHandler, request: ReadonlyArray<XmlRpcValue>) => {
    const bound = handler.bind(request)
    if (Either.isLeft(bound) || hostdata === undefined || bound.right.checkHost === undefined) return Effect.succeed(false)
    return bound.right.checkHost(hostdata, session).pipe(
      Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("Error during host check", cause), false))
    )
  }

  /** setTaskWeight failed with ActionNotAllowed: kojid checks whether the task is still ours and OPEN. */
  const weightRefused = (task: HostTask, e: ActionNotAllowed) =>
    Effect.gen(function*() {
      const again = yield* api.getTaskInfo(task.id)
      if (again === null || again.host_id !== hostId) return yield* Effect.as(Effect.logWarning(`Task ${task.id} was reassigned`), false)
      if (again.state !== TaskState.OPEN) return yield* Effect.as(Effect.logWarning(`Task ${task.id} changed state to ${again.state}`), false)
      return yield* Effect.fail(e)
    })

  /** §4.3 takeTask: refuse, check, open, weigh, then run the task (in the foreground or a fiber). */
  const takeTask = (task: HostTask) =>
    Effect.gen(function*() {
      yield* Effect.logInfo(`Attempting to take task ${task.id}`)
      const handler = registry.get(task.method)
      if (handler === undefined) {
        yield* Effect.logWarning(`Refusing task ${task.id}, no handler for ${task.method}`)
        yield* doneOnRetry(api.refuseTask(task.id, { soft: false, msg: "no handler for method" }))
        return false
      }
      const fromOpen = options.batchHubCalls && !handler.needsRequestBeforeOpen
      const before = yield* requestOf(task, fromOpen)
      if (before === undefined) return yield* Effect.as(Effect.logWarning(`Task ${task.id} has no request`), false)
      if (handler.hasCheckHost && !(yield* hostCheckPasses(handler, before))) {
        yield* Effect.logInfo(`Skipping task ${task.id} (${task.method}) due to host check`)
        if (task.state === TaskState.ASSIGNED) yield* doneOnRetry(api.refuseTask(task.id, { soft: false, msg: "failed host check" }))
        return false
      }
      const step = calls()
      const opening = step.openTask(task.id)
      const weighing = step.setTaskWeight(task.id, handler.weight(before))
      const opened = yield* opening.await
      if (opened === null) return yield* Effect.as(Effect.logWarning("Could not open"), false)
      tasks.hold(task.id)
      const request = fromOpen ? requestFromRow(opened.request) : Either.right(before)
      if (Either.isLeft(request)) {
        // Opened but unreadable: fail it, as kojid's handler fails on unusable params.
        const why = `Task ${task.id} has no usable request: ${request.left}`
        yield* Effect.logWarning(why)
        yield* doneOnRetry(api.failTask(task.id, encodeFault(1000, why)))
        tasks.release(task.id)
        return false
      }
      const weighed = yield* doneOnRetry(weighing.await).pipe(
        Effect.as(true),
        Effect.catchIf((e): e is ActionNotAllowed => e instanceof ActionNotAllowed, (e) => weightRefused(task, e))
      )
      if (!weighed) {
        tasks.release(task.id)
        return false
      }
      return yield* startTask(task, handler, request.right)
    })

  const requestFromRow = (raw: XmlRpcValue | undefined): Either.Either<ReadonlyArray<XmlRpcValue>, string> =>
    typeof raw === "string"
      ? Either.mapBoth(decodeCall(raw), { onLeft: (e) => e.message, onRight: (c) => c.params })
      : Either.left(`request is ${raw === null ? "nil" : typeof raw}`)

  /** Runs an opened task: foreground on the main session, else in a fiber on its own subsession. */
  const startTask = (task: HostTask, handler: TaskHandler, request: ReadonlyArray<XmlRpcValue>) =>
    Effect.gen(function*() {
      const base = { taskId: task.id, method: task.method, handler, request, hostId, daemon: control, options: options.runner, files, events }
      if (handler.foreground) {
        yield* Effect.logInfo("running task in foreground")
        const outcome = yield* runTask({ ...base, session, waker: mainWaker })
        return outcome === "exit" ? ("exit" as const) : true
      }
      const sub = yield* session.subsession
      // The task's own session logs out after reporting, as kojid's task process (§13); the loop is
      // woken after the logout, so the cycle finds the task done (not lingering) and has a free slot.
      yield* tasks.start(task.id, task.method, sub.sessionId, (entry) =>
        Effect.asVoid(Effect.zipRight(runTask({ ...base, session: sub, waker: entry.waker }), sub.logout)), loopWaker.wake)
      return true
    })

  /** An assigned task this host will not try to take now (logged as kojid does). */
  const notTakeable = (task: HostTask): Effect.Effect<boolean> =>
    tasks.has(task.id)
      ? Effect.as(Effect.logInfo(`Task ${task.id} reassigned`), true)
      : task.state !== TaskState.ASSIGNED
      ? Effect.as(Effect.logError(`Received task ${task.id} is not assigned, state=${task.state}`), true)
      : task.host_id != null && task.host_id !== hostId
      ? Effect.as(Effect.logError(`Received task ${task.id} is not ours, host=${task.host_id}`), true)
      : Effect.succeed(false)

  /** §4.3 getNextTask. */
  const getNextTask = (host: PendingCall<HostInfo> | undefined) =>
    Effect.gen(function*() {
      const ready = yield* readyForTask(host)
      if (ready === "restart") return "restart" as const
      const assigned = yield* heartbeatAndGetTasks(ready)
      if (!ready) return "idle" as const
      for (const task of assigned) {
        if (yield* notTakeable(task)) continue
        const took = yield* takeTask(task)
        if (took === "exit") return "exit" as const
        if (took) return "taken" as const
      }
      return "idle" as const
    })

  /** One cycle of kojid's main loop. */
  const cycle = (taken: boolean): Effect.Effect<Control, HubFailure> =>
    Effect.gen(function*() {
      if (!taken) yield* updateBuildroots
      return yield* getNextTask(yield* updateTasks)
    })

  /** kojid's `TaskManager.shutdown`: kill every task, free ours, report not ready; bounded. */
  const shutdown = Effect.gen(function*() {
    yield* Effect.logWarning("Shutting down, please wait...")
    const ours = tasks.ours()
    if (!(yield* tasks.interruptAll(options.shutdownTimeout))) yield* Effect.logWarning("some tasks are still stopping")
    const bounded = <A>(what: string, eff: Effect.Effect<A, HubFailure>) =>
      eff.pipe(
        Effect.timeoutOption(options.shutdownCallTimeout),
        Effect.catchAllCause((cause) => Effect.logWarning(`${what} failed during shutdown`, cause))
      )
    for (const entry of tasks.all()) {
      yield* bounded("logoutChild", session.logoutChild(entry.subsessionId))
      tasks.forget(entry.taskId)
    }
    yield* bounded("host.freeTasks", api.freeTasks(ours))
    yield* bounded("host.updateHost", api.updateHost(0.0, false))
  })

  return {
    hostId,
    startTs,
    cycle,
    shutdown,
    requestRestart: control.requestRestart,
    /** Local task events cut the loop's idle pause short. */
    wakeup: loopWaker,
    /** Ids of running task fibers (for status and tests). */
    runningTasks: Effect.sync(() => tasks.active().map((e) => e.taskId)),
    /** The daemon's state for the status endpoint. */
    status: Effect.sync((): StatusSnapshot => ({
      host: hostdata?.name ?? "",
      hostId,
      pid: process.pid,
      startTs,
      ready: lastBeat?.ready ?? null,
      taskLoad,
      maxjobs: options.maxjobs,
      restartPending,
      lastHeartbeat: lastBeat?.at ?? null,
      tasks: tasks.active().map((e) => ({ id: e.taskId, method: e.method }))
    })),
    /** True while the last accepted heartbeat is at most three cycles old. */
    healthy: Effect.map(Clock.currentTimeMillis, (now) =>
      lastBeat !== undefined && now - lastBeat.at <= 3 * Duration.toMillis(options.sleeptime) + 30_000)
  }
})

/** The task manager of one daemon run. */
export type TaskManagerApi = Effect.Effect.Success<ReturnType<typeof makeTaskManager>>

