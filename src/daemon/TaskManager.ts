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
import { type CycleCalls, cycleCalls, type HostApi, hostApi, type PendingCall } from "../hub/HostApi.js"
import { doneOnRetry, type Session } from "../hub/KojiHub.js"
import type { HostInfo, HostTask, OpenHostTask } from "../hub/schemas.js"
import { decodeCall, encodeFault, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"
import { HubFileTree, type HubFiles } from "../koji/paths.js"
import { ACTIVE_BUILDROOT_STATES, BuildrootState, TaskState } from "../koji/states.js"
import type { DaemonControl, TaskHandler } from "../tasks/handler.js"
import { TaskRegistry, type TaskRegistryService } from "../tasks/TaskRegistry.js"
import { version } from "../version.js"
import type { DaemonOptions } from "./options.js"
import { Readiness } from "./Readiness.js"
import { makeRunningTasks, type RunningTask, type RunningTasks } from "./RunningTasks.js"
import { type StatusSnapshot } from "./StatusServer.js"
import { runTask, type TaskEvents } from "./TaskRunner.js"
import { type LoopWaker, makeLoopWaker, makeWaker, type Waker } from "./Waiter.js"

/** What a cycle asks of the loop. */
export type Control = "taken" | "idle" | "restart" | "exit"

type HubFailure = Fault | HubError

/** A hub failure in a log line. */
export const describe = (e: unknown): string =>
  isFault(e) ? `${e._tag} ${e.faultCode}: ${e.faultString}` : e instanceof Error ? e.message : String(e)

/** What a daemon run's loop changes as it goes. */
interface LoopState {
  taskLoad: number
  hostdata: HostInfo | undefined
  restartPending: boolean
  /** The hub has no updateHost `data` keyword (1.34): updateHost, then host.setHostData. */
  legacyHostData: boolean
  /** The last heartbeat the hub accepted (for the status endpoint). */
  lastBeat: { readonly at: number; readonly ready: boolean } | undefined
  /** Why the last readiness check said no (for the status endpoint, metrics and systemd). */
  notReady: ReadonlyArray<string>
}

/** The loop of one logged-in main session: its services, running tasks and state. */
interface Loop {
  readonly session: Session
  readonly api: HostApi
  readonly options: DaemonOptions
  readonly registry: TaskRegistryService
  readonly readiness: Readiness["Type"]
  readonly files: HubFiles
  readonly tasks: RunningTasks
  readonly hostId: number
  readonly startTs: number
  /** The `data` of the heartbeat: the methods we serve, maxjobs and our version. */
  readonly hostData: XmlRpcStruct
  readonly control: DaemonControl
  readonly mainWaker: Waker
  readonly loopWaker: LoopWaker
  readonly events: TaskEvents
  /** The calls of one loop step, batched or not (`batch_hub_calls`). */
  readonly calls: () => CycleCalls
  readonly state: LoopState
}

/** The loop's state and steps over one logged-in main session. */
export const makeTaskManager = Effect.fnUntraced(function*(session: Session, options: DaemonOptions) {
  const registry = yield* TaskRegistry
  const api = hostApi(session)
  const tasks = yield* makeRunningTasks
  const state: LoopState = { taskLoad: 0.0, hostdata: undefined, restartPending: false, legacyHostData: false, lastBeat: undefined, notReady: [] }
  const loopWaker = yield* makeLoopWaker
  // kojid's order: host.getID, then getSessionInfo.
  const hostId = yield* api.getID()
  const startTs = (yield* api.getSessionInfo()).start_ts ?? Date.now() / 1000
  const loop: Loop = {
    session, api, options, registry, tasks, state, loopWaker, startTs, hostId,
    readiness: yield* Readiness,
    files: yield* HubFileTree,
    // kojid sends methods and maxjobs; the hub stores the struct as JSON (scheduler_host_data), so the version rides along.
    hostData: { methods: [...registry.methods], maxjobs: options.maxjobs, version },
    control: { startTs, requestRestart: Effect.sync(() => void (state.restartPending = true)) },
    mainWaker: yield* makeWaker,
    // The hub scheduler assigns a new subtask only inside a later host.getTasks, and a parent
    // learns that a child ended from a later getHostTasks alert (§4.6–4.7): run that cycle now.
    // A child that ended here also wakes its waiting parent at once; the alert of the next cycle
    // would say the same.
    events: {
      subtaskCreated: (parent, child) => Effect.zipRight(Effect.sync(() => tasks.addChild(parent, child)), loopWaker.wake),
      reported: (taskId, outcome) =>
        outcome !== "closed" && outcome !== "failed"
          ? Effect.void
          : Effect.forEach(tasks.parentsOf(taskId), (entry) =>
            Effect.zipRight(Effect.logDebug(`Waking up task ${entry.taskId}: child ${taskId} ended`), entry.waker.wake), { discard: true })
    },
    calls: () => cycleCalls(session, options.batchHubCalls)
  }
  return {
    hostId: loop.hostId,
    startTs: loop.startTs,
    cycle: (taken: boolean) => cycle(loop, taken),
    shutdown: shutdown(loop),
    requestRestart: loop.control.requestRestart,
    /** Local task events cut the loop's idle pause short. */
    wakeup: loop.loopWaker,
    /** Ids of running task fibers (for status and tests). */
    runningTasks: Effect.sync(() => loop.tasks.active().map((e) => e.taskId)),
    /** The daemon's state for the status endpoint. */
    status: Effect.sync((): StatusSnapshot => ({
      host: loop.state.hostdata?.name ?? "",
      hostId: loop.hostId,
      pid: process.pid,
      startTs: loop.startTs,
      ready: loop.state.lastBeat?.ready ?? null,
      notReady: loop.state.notReady,
      taskLoad: loop.state.taskLoad,
      maxjobs: loop.options.maxjobs,
      restartPending: loop.state.restartPending,
      lastHeartbeat: loop.state.lastBeat?.at ?? null,
      tasks: loop.tasks.active().map((e) => ({ id: e.taskId, method: e.method }))
    })),
    /** True while the last accepted heartbeat is at most three cycles old. */
    healthy: Effect.map(Clock.currentTimeMillis, (now) =>
      loop.state.lastBeat !== undefined && now - loop.state.lastBeat.at <= 3 * Duration.toMillis(loop.options.sleeptime) + 30_000)
  }
})

/** §5.5 step 1: active buildroots of this host that no running task owns → EXPIRED. */
const updateBuildroots = (loop: Loop) =>
  Effect.gen(function*() {
  for (const br of yield* loop.api.listBuildroots({ hostID: loop.hostId, state: ACTIVE_BUILDROOT_STATES })) {
    const desc = `${br.id}/${br.tag_name ?? ""}/${br.arch ?? ""}`
    const owner = br.task_id == null ? undefined : loop.tasks.get(br.task_id)
    if (br.task_id != null && owner !== undefined && !owner.done) continue
    yield* br.task_id == null ? Effect.logWarning(`Expiring taskless buildroot: ${desc}`) : Effect.logInfo(`Expiring buildroot: ${desc}`)
    yield* doneOnRetry(loop.api.setBuildRootState(br.id, BuildrootState.EXPIRED))
  }
})

const logoutFailed = (entry: RunningTask) => (e: HubFailure) => Effect.logInfo(`logoutChild(${entry.subsessionId}) failed: ${describe(e)}`)

/** Interrupts a task fiber (its scope removes containers and the workdir), bounded. */
const killTask = (loop: Loop, entry: RunningTask, why: string) =>
  Effect.gen(function*() {
    yield* Effect.logInfo(`${why} ${entry.taskId}`)
    if (!(yield* loop.tasks.interrupt(entry.taskId, loop.options.shutdownTimeout))) yield* Effect.logWarning(`task ${entry.taskId} is still stopping`)
    yield* loop.session.logoutChild(entry.subsessionId).pipe(Effect.catchAll(logoutFailed(entry)))
    loop.tasks.forget(entry.taskId)
  })

/** The tasks the hub lists as ours: wake the alerted, sum the load; the ones without a fiber are stale. */
const sortHostTasks = (loop: Loop, open: ReadonlyArray<OpenHostTask>) =>
  Effect.gen(function*() {
    const seen = new Set<number>()
    const stale: Array<number> = []
    let load = 0.0
    for (const t of open) {
      const entry = loop.tasks.get(t.id)
      if (entry === undefined) {
        stale.push(t.id)
        continue
      }
      seen.add(t.id)
      if (t.alert === true) yield* Effect.zipRight(Effect.logInfo(`Waking up task ${t.id}`), entry.waker.wake)
      if (t.waiting !== true) load += t.weight
    }
    loop.state.taskLoad = load
    loop.tasks.setHeld(seen)
    return { seen, stale }
  })

/** A fiber of ours the hub no longer lists as OPEN for us: canceled, reassigned or lingering. */
const checkMissing = (loop: Loop, entry: RunningTask) =>
  Effect.gen(function*() {
    const info = yield* loop.api.getTaskInfo(entry.taskId)
    if (entry.done) return
    if (info === null) return yield* Effect.logError(`Invalid task ${entry.taskId}`)
    if (info.state === TaskState.CANCELED) return yield* killTask(loop, entry, "Killing canceled task")
    if (info.host_id !== loop.hostId) return yield* killTask(loop, entry, "Killing reassigned task")
    yield* Effect.logInfo(`Lingering task ${entry.taskId}`)
  })

/** §4.7: watch running loop.tasks. Returns the host row when it came with the tasks (batched). */
const updateTasks = (loop: Loop) =>
  Effect.gen(function*() {
  const step = loop.calls()
  const hostTasks = step.getHostTasks()
  const host = loop.state.restartPending ? undefined : step.getHost()
  const ended = loop.tasks.all().filter((e) => e.done).map((e) => [e, step.logoutChild(e.subsessionId)] as const)
  const { seen, stale } = yield* Effect.flatMap(hostTasks.await, (open) => sortHostTasks(loop, open))
  if (stale.length > 0) {
    yield* Effect.logInfo(`freeing stale tasks: ${stale.join(", ")}`)
    yield* doneOnRetry(loop.api.freeTasks(stale))
  }
  for (const [entry, logout] of ended) {
    yield* logout.await.pipe(Effect.catchAll(logoutFailed(entry)))
    loop.tasks.forget(entry.taskId)
  }
  for (const entry of loop.tasks.all()) if (!seen.has(entry.taskId)) yield* checkMissing(loop, entry)
  return host
})

/** §4.3 readyForTask: "restart" once a pending restart finds no task running. */
const readyForTask = (loop: Loop, host: PendingCall<HostInfo> | undefined) =>
  Effect.gen(function*() {
    if (loop.state.restartPending) {
      loop.state.notReady = ["Pending restart"]
      if (loop.tasks.size() > 0) return yield* Effect.as(Effect.logInfo("Pending restart"), false as const)
      return "restart" as const
    }
    const row = yield* (host ?? loop.calls().getHost()).await
    loop.state.hostdata = row
    const why = !row.enabled
      ? "Host is disabled"
      : loop.state.taskLoad > row.capacity
      ? `Task load (${loop.state.taskLoad.toFixed(2)}) exceeds capacity (${row.capacity.toFixed(2)})`
      : loop.tasks.size() >= loop.options.maxjobs
      ? "Full queue"
      : undefined
    loop.state.notReady = why === undefined ? yield* loop.readiness.check : [why]
    if (why !== undefined) return yield* Effect.as(Effect.logInfo(why), false as const)
    if (loop.state.notReady.length > 0) return yield* Effect.as(Effect.logWarning(loop.state.notReady.join("; ")), false as const)
    return true as const
  })

const beaten = (loop: Loop, ready: boolean) => Effect.map(Clock.currentTimeMillis, (at) => void (loop.state.lastBeat = { at, ready }))

/** A 1.34 hub has no updateHost `data` keyword (ParameterError): updateHost, then host.setHostData. */
const legacyHeartbeat = (loop: Loop, ready: boolean) =>
  Effect.zipRight(loop.api.updateHost(loop.state.taskLoad, ready), loop.api.setHostData(loop.hostData)).pipe(Effect.tap(() => beaten(loop, ready)))

/** The heartbeat and, when ready, host.getTasks (one step). */
const heartbeatAndGetTasks = (loop: Loop, ready: boolean): Effect.Effect<ReadonlyArray<HostTask>, HubFailure> =>
  Effect.gen(function*() {
    if (loop.state.legacyHostData) {
      yield* legacyHeartbeat(loop, ready)
      return ready ? yield* loop.api.getTasks() : []
    }
    const step = loop.calls()
    const beat = step.updateHost(loop.state.taskLoad, ready, loop.hostData)
    const assigned = ready ? step.getTasks() : undefined
    const sent = yield* Effect.either(beat.await)
    if (Either.isLeft(sent)) {
      if (!(sent.left instanceof ParameterError)) return yield* Effect.fail(sent.left)
      yield* Effect.logInfo("hub has no updateHost data keyword (1.34): using host.setHostData")
      loop.state.legacyHostData = true
      yield* legacyHeartbeat(loop, ready)
    } else {
      yield* beaten(loop, ready)
    }
    return assigned === undefined ? [] : yield* assigned.await
  })

/** The request of a task about to be opened: from getTaskInfo, or (batching, when nothing needs it before) from openTask's row. */
const requestOf = (loop: Loop, task: HostTask, fromOpen: boolean) =>
  fromOpen
    ? Effect.succeed<ReadonlyArray<XmlRpcValue> | undefined>([])
    : Effect.map(loop.api.getTaskInfo(task.id, { request: true }), (info) =>
      info === null || info.request === undefined || info.request === null ? undefined : Array.isArray(info.request) ? info.request : [info.request])

/** kojid's checkHost before the open; a request that does not bind fails it. */
const hostCheckPasses = (loop: Loop, handler: TaskHandler, request: ReadonlyArray<XmlRpcValue>) => {
  const bound = handler.bind(request)
  if (Either.isLeft(bound) || loop.state.hostdata === undefined || bound.right.checkHost === undefined) return Effect.succeed(false)
  return bound.right.checkHost(loop.state.hostdata, loop.session).pipe(
    Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("Error during host check", cause), false))
  )
}

/** setTaskWeight failed with ActionNotAllowed: kojid checks whether the task is still ours and OPEN. */
const weightRefused = (loop: Loop, task: HostTask, e: ActionNotAllowed) =>
  Effect.gen(function*() {
    const again = yield* loop.api.getTaskInfo(task.id)
    if (again === null || again.host_id !== loop.hostId) return yield* Effect.as(Effect.logWarning(`Task ${task.id} was reassigned`), false)
    if (again.state !== TaskState.OPEN) return yield* Effect.as(Effect.logWarning(`Task ${task.id} changed state to ${again.state}`), false)
    return yield* Effect.fail(e)
  })

/** §4.3 takeTask: refuse, check, open, weigh, then run the task (in the foreground or a fiber). */
const takeTask = (loop: Loop, task: HostTask) =>
  Effect.gen(function*() {
    yield* Effect.logInfo(`Attempting to take task ${task.id}`)
    const handler = loop.registry.get(task.method)
    if (handler === undefined) {
      yield* Effect.logWarning(`Refusing task ${task.id}, no handler for ${task.method}`)
      yield* doneOnRetry(loop.api.refuseTask(task.id, { soft: false, msg: "no handler for method" }))
      return false
    }
    const fromOpen = loop.options.batchHubCalls && !handler.needsRequestBeforeOpen
    const before = yield* requestOf(loop, task, fromOpen)
    if (before === undefined) return yield* Effect.as(Effect.logWarning(`Task ${task.id} has no request`), false)
    if (handler.hasCheckHost && !(yield* hostCheckPasses(loop, handler, before))) {
      yield* Effect.logInfo(`Skipping task ${task.id} (${task.method}) due to host check`)
      if (task.state === TaskState.ASSIGNED) yield* doneOnRetry(loop.api.refuseTask(task.id, { soft: false, msg: "failed host check" }))
      return false
    }
    const step = loop.calls()
    const opening = step.openTask(task.id)
    const weighing = step.setTaskWeight(task.id, handler.weight(before))
    const opened = yield* opening.await
    if (opened === null) return yield* Effect.as(Effect.logWarning("Could not open"), false)
    loop.tasks.hold(task.id)
    const request = fromOpen ? requestFromRow(opened.request) : Either.right(before)
    if (Either.isLeft(request)) {
      // Opened but unreadable: fail it, as kojid's handler fails on unusable params.
      const why = `Task ${task.id} has no usable request: ${request.left}`
      yield* Effect.logWarning(why)
      yield* doneOnRetry(loop.api.failTask(task.id, encodeFault(1000, why)))
      loop.tasks.release(task.id)
      return false
    }
    const weighed = yield* doneOnRetry(weighing.await).pipe(
      Effect.as(true),
      Effect.catchIf((e): e is ActionNotAllowed => e instanceof ActionNotAllowed, (e) => weightRefused(loop, task, e))
    )
    if (!weighed) {
      loop.tasks.release(task.id)
      return false
    }
    return yield* startTask(loop, task, handler, request.right)
  })

const requestFromRow = (raw: XmlRpcValue | undefined): Either.Either<ReadonlyArray<XmlRpcValue>, string> =>
  typeof raw === "string"
    ? Either.mapBoth(decodeCall(raw), { onLeft: (e) => e.message, onRight: (c) => c.params })
    : Either.left(`request is ${raw === null ? "nil" : typeof raw}`)

/** Runs an opened task: foreground on the main session, else in a fiber on its own subsession. */
const startTask = (loop: Loop, task: HostTask, handler: TaskHandler, request: ReadonlyArray<XmlRpcValue>) =>
  Effect.gen(function*() {
    const base = { taskId: task.id, method: task.method, handler, request, hostId: loop.hostId, daemon: loop.control, options: loop.options.runner, files: loop.files, events: loop.events }
    if (handler.foreground) {
      yield* Effect.logInfo("running task in foreground")
      const outcome = yield* runTask({ ...base, session: loop.session, waker: loop.mainWaker })
      return outcome === "exit" ? ("exit" as const) : true
    }
    const sub = yield* loop.session.subsession
    // The task's own session logs out after reporting, as kojid's task process (§13); the loop is
    // woken after the logout, so the cycle finds the task done (not lingering) and has a free slot.
    yield* loop.tasks.start(task.id, task.method, sub.sessionId, (entry) =>
      Effect.asVoid(Effect.zipRight(runTask({ ...base, session: sub, waker: entry.waker }), sub.logout)), loop.loopWaker.wake)
    return true
  })

/** An assigned task this host will not try to take now (logged as kojid does). */
const notTakeable = (loop: Loop, task: HostTask): Effect.Effect<boolean> =>
  loop.tasks.has(task.id)
    ? Effect.as(Effect.logInfo(`Task ${task.id} reassigned`), true)
    : task.state !== TaskState.ASSIGNED
    ? Effect.as(Effect.logError(`Received task ${task.id} is not assigned, state=${task.state}`), true)
    : task.host_id != null && task.host_id !== loop.hostId
    ? Effect.as(Effect.logError(`Received task ${task.id} is not ours, host=${task.host_id}`), true)
    : Effect.succeed(false)

/** §4.3 getNextTask. */
const getNextTask = (loop: Loop, host: PendingCall<HostInfo> | undefined) =>
  Effect.gen(function*() {
    const ready = yield* readyForTask(loop, host)
    if (ready === "restart") return "restart" as const
    const assigned = yield* heartbeatAndGetTasks(loop, ready)
    if (!ready) return "idle" as const
    for (const task of assigned) {
      if (yield* notTakeable(loop, task)) continue
      const took = yield* takeTask(loop, task)
      if (took === "exit") return "exit" as const
      if (took) return "taken" as const
    }
    return "idle" as const
  })

/** One cycle of kojid's main loop. */
const cycle = (loop: Loop, taken: boolean): Effect.Effect<Control, HubFailure> =>
  Effect.gen(function*() {
    if (!taken) yield* updateBuildroots(loop)
    return yield* getNextTask(loop, yield* updateTasks(loop))
  })

/** kojid's `TaskManager.shutdown`: kill every task, free ours, report not ready; bounded. */
const shutdown = (loop: Loop) =>
  Effect.gen(function*() {
  yield* Effect.logWarning("Shutting down, please wait...")
  const ours = loop.tasks.ours()
  if (!(yield* loop.tasks.interruptAll(loop.options.shutdownTimeout))) yield* Effect.logWarning("some tasks are still stopping")
  const bounded = <A>(what: string, eff: Effect.Effect<A, HubFailure>) =>
    eff.pipe(
      Effect.timeoutOption(loop.options.shutdownCallTimeout),
      Effect.catchAllCause((cause) => Effect.logWarning(`${what} failed during shutdown`, cause))
    )
  for (const entry of loop.tasks.all()) {
    yield* bounded("logoutChild", loop.session.logoutChild(entry.subsessionId))
    loop.tasks.forget(entry.taskId)
  }
  yield* bounded("host.freeTasks", loop.api.freeTasks(ours))
  yield* bounded("host.updateHost", loop.api.updateHost(0.0, false))
})

/** The task manager of one daemon run. */
export type TaskManagerApi = Effect.Effect.Success<ReturnType<typeof makeTaskManager>>

