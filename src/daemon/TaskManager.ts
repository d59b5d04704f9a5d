/**
 * The daemon loop: kojid's `main` + `TaskManager` (DESIGN.md §3, koji-protocol.md §4). Every
 * cycle, in kojid's order: expire buildroots no running task owns (when the previous cycle took
 * nothing), watch running tasks (`host.getHostTasks`: free stale ones, interrupt canceled or
 * reassigned ones, wake waiters, sum the load), heartbeat (`host.updateHost`, every cycle), and
 * take at most one assigned task. Task fibers live in a FiberMap keyed by task id and do their
 * hub calls on their own subsessions, so the heartbeat on the main session never waits on them.
 */
import { Clock, Duration, Effect, Either, FiberMap, Option, Runtime, Schema, type Scope } from "effect"
import { Containers } from "../containers/Containers.js"
import { reap } from "../containers/Reaper.js"
import { ActionNotAllowed, AuthExpired, type Fault, isAuthFamily, isFault, ParameterError, RetryError } from "../hub/faults.js"
import { HubError as HubErrorClass, type HubError, type LoginError } from "../hub/HubError.js"
import { hostApi } from "../hub/HostApi.js"
import { decodeAs, doneOnRetry, KojiHub, type Kwargs, type Session } from "../hub/KojiHub.js"
import * as S from "../hub/schemas.js"
import type { HostInfo, HostTask, OpenHostTask } from "../hub/schemas.js"
import { decodeCall, Double, encodeFault, type XmlRpcValue } from "../hub/xmlrpc.js"
import { type DaemonControl } from "../tasks/handler.js"
import { ACTIVE_BUILDROOT_STATES, BuildrootState, TaskState } from "../koji/states.js"
import { HubFileTree } from "../koji/paths.js"
import { TaskRegistry } from "../tasks/TaskRegistry.js"
import { Readiness } from "./Readiness.js"
import { serveStatus, type StatusServerError, type StatusSnapshot } from "./StatusServer.js"
import { type RunnerOptions, type TaskEvents, runTask } from "./TaskRunner.js"
import { makeLoopWaker, makeWaker, type Waker } from "./Waiter.js"

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
   * Send adjacent calls of a cycle in one `multiCall` each: [host.getHostTasks, host.getHost],
   * [host.updateHost, host.getTasks] (only when ready) and [host.openTask, host.setTaskWeight];
   * the logoutChild of task sessions that ended before a cycle rides with the first.
   * Same calls, same order,
   * same session and the hub runs them the same way (§1.8), in half the round trips; false
   * gives kojid's exact one-call-per-request traffic (koji-captures/kojid/idle).
   */
  readonly batchHubCalls: boolean
  /** `[adjutant] status_listen` (host:port): serve /status and /healthz there; unset = none. */
  readonly statusListen?: string
}

/** The least time between two cycle starts when a wake-up starts the second: sleeptime/10, at most 1 s. */
export const defaultWakeGap = (sleeptime: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.millis(Duration.toMillis(sleeptime) / 10), Duration.seconds(1))

/** How a daemon run ended. */
export type DaemonResult =
  | { readonly _tag: "Restart" }
  | { readonly _tag: "Exit"; readonly code: number }

/** A running task fiber as the loop tracks it (kojid's `pids` + `subsessions`). */
interface Running {
  readonly taskId: number
  readonly method: string
  readonly subsessionId: number
  readonly waker: Waker
  /** Children this task created with host.subtask that have not ended here. */
  readonly children: Set<number>
  /** The fiber has ended (reported or not); the next cycle sends logoutChild and forgets it. */
  done: boolean
}

/** What a cycle asks of the loop. */
type Control = "taken" | "idle" | "restart" | "exit"

const describe = (e: unknown): string =>
  isFault(e) ? `${e._tag} ${e.faultCode}: ${e.faultString}` : e instanceof Error ? e.message : String(e)

/** The loop's state and steps over one logged-in main session. */
export const makeTaskManager = Effect.fnUntraced(function*(session: Session, options: DaemonOptions) {
  const registry = yield* TaskRegistry
  const readiness = yield* Readiness
  const files = yield* HubFileTree
  const api = hostApi(session)
  const fibers = yield* FiberMap.make<number>()
  const hostId = yield* api.getID()
  const sinfo = yield* api.getSessionInfo()
  const startTs = sinfo.start_ts ?? Date.now() / 1000
  const running = new Map<number, Running>()
  /** OPEN tasks we hold (kojid's `self.tasks`): freed at shutdown. */
  let held = new Set<number>()
  let taskLoad = 0.0
  let hostdata: HostInfo | undefined
  let restartPending = false
  let legacyHostData = false
  /** The last heartbeat the hub accepted (for the status endpoint). */
  let lastBeat: { readonly at: number; readonly ready: boolean } | undefined
  /** host.getHost's answer when it came in the same multiCall as getHostTasks. */
  let prefetchedHost: Either.Either<HostInfo, Fault | HubError> | undefined

  /** Two calls in one multiCall; each answer decoded on its own. */
  const batch2 = <A, IA, B, IB>(
    first: { readonly method: string; readonly params?: ReadonlyArray<XmlRpcValue>; readonly kwargs?: Kwargs; readonly schema: Schema.Schema<A, IA> },
    second: { readonly method: string; readonly params?: ReadonlyArray<XmlRpcValue>; readonly kwargs?: Kwargs; readonly schema: Schema.Schema<B, IB> },
    /** Calls whose answers only matter when they fail (logged). */
    extra: ReadonlyArray<{ readonly method: string; readonly params: ReadonlyArray<XmlRpcValue> }> = []
  ) =>
    Effect.gen(function*() {
      const results = yield* session.multiCall([first, second, ...extra])
      for (const [i, call] of extra.entries()) {
        const r = results[i + 2]
        if (r !== undefined && Either.isLeft(r)) yield* Effect.logInfo(`${call.method}(${call.params.join(", ")}) failed: ${describe(r.left)}`)
      }
      const decode = <X, IX>(r: Either.Either<XmlRpcValue, Fault> | undefined, method: string, schema: Schema.Schema<X, IX>) =>
        r === undefined
          ? Effect.either(Effect.fail(new HubErrorClass({ reason: "Decode", method: "multiCall", message: `multiCall: no answer for ${method}` })))
          : Either.isLeft(r)
          ? Effect.succeed(Either.left<Fault | HubError>(r.left))
          : Effect.either(decodeAs(schema, method)(r.right))
      const a: Either.Either<A, Fault | HubError> = yield* decode(results[0], first.method, first.schema)
      const b: Either.Either<B, Fault | HubError> = yield* decode(results[1], second.method, second.schema)
      return [a, b] as const
    })

  const control: DaemonControl = {
    startTs,
    requestRestart: Effect.sync(() => {
      restartPending = true
    })
  }
  const mainWaker = yield* makeWaker
  const loopWaker = yield* makeLoopWaker

  // The hub scheduler assigns a new subtask only inside a later host.getTasks, and a parent
  // learns that a child ended from a later getHostTasks alert (§4.6–4.7): run that cycle now.
  // A child that ended here also wakes its waiting parent at once; the alert of the next cycle
  // would say the same.
  const events: TaskEvents = {
    subtaskCreated: (parent, child) =>
      Effect.zipRight(
        Effect.sync(() => running.get(parent)?.children.add(child)),
        loopWaker.wake
      ),
    reported: (taskId, outcome) =>
      Effect.gen(function*() {
        if (outcome !== "closed" && outcome !== "failed") return
        for (const entry of running.values()) {
          if (!entry.children.delete(taskId)) continue
          yield* Effect.logDebug(`Waking up task ${entry.taskId}: child ${taskId} ended`)
          yield* entry.waker.wake
        }
      })
  }

  /** §5.5 step 1: active buildroots of this host that no running task owns → EXPIRED. */
  const updateBuildroots = Effect.gen(function*() {
    const brs = yield* api.listBuildroots({ hostID: hostId, state: ACTIVE_BUILDROOT_STATES })
    for (const br of brs) {
      const desc = `${br.id}/${br.tag_name ?? ""}/${br.arch ?? ""}`
      if (br.task_id == null) {
        yield* Effect.logWarning(`Expiring taskless buildroot: ${desc}`)
        yield* doneOnRetry(api.setBuildRootState(br.id, BuildrootState.EXPIRED))
      } else if (!running.has(br.task_id) || running.get(br.task_id)!.done) {
        yield* Effect.logInfo(`Expiring buildroot: ${desc}`)
        yield* doneOnRetry(api.setBuildRootState(br.id, BuildrootState.EXPIRED))
      }
    }
  })

  const logoutChild = (entry: Running) =>
    session.logoutChild(entry.subsessionId).pipe(
      Effect.catchAll((e) => Effect.logInfo(`logoutChild(${entry.subsessionId}) failed: ${describe(e)}`))
    )

  /** Interrupts a task fiber (its scope removes containers and the workdir), bounded. */
  const killTask = (entry: Running, why: string) =>
    Effect.gen(function*() {
      yield* Effect.logInfo(`${why} ${entry.taskId}`)
      const stopped = yield* FiberMap.remove(fibers, entry.taskId).pipe(Effect.timeoutOption(options.shutdownTimeout))
      if (Option.isNone(stopped)) yield* Effect.logWarning(`task ${entry.taskId} is still stopping`)
      yield* logoutChild(entry)
      running.delete(entry.taskId)
    })

  /** §4.7: watch running tasks. */
  const updateTasks = Effect.gen(function*() {
    let open: ReadonlyArray<OpenHostTask>
    const loggedOut = new Set<Running>()
    if (options.batchHubCalls && !restartPending) {
      // Fibers that ended before this cycle get their logoutChild in the same request.
      const ended = [...running.values()].filter((e) => e.done)
      const [tasks, host] = yield* batch2(
        { method: "host.getHostTasks", schema: Schema.Array(S.OpenHostTask) },
        { method: "host.getHost", schema: S.HostInfo },
        ended.map((e) => ({ method: "logoutChild", params: [e.subsessionId] }))
      )
      for (const e of ended) loggedOut.add(e)
      prefetchedHost = host
      open = yield* tasks
    } else {
      open = yield* api.getHostTasks()
    }
    const seen = new Set<number>()
    const stale: Array<number> = []
    let load = 0.0
    for (const t of open) {
      const entry = running.get(t.id)
      if (entry === undefined) {
        stale.push(t.id)
        continue
      }
      seen.add(t.id)
      if (t.alert === true) {
        yield* Effect.logInfo(`Waking up task ${t.id}`)
        yield* entry.waker.wake
      }
      if (t.waiting !== true) load += t.weight
    }
    taskLoad = load
    held = seen
    if (stale.length > 0) {
      yield* Effect.logInfo(`freeing stale tasks: ${stale.join(", ")}`)
      yield* doneOnRetry(api.freeTasks(stale))
    }
    for (const entry of [...running.values()]) {
      if (!entry.done) continue
      if (!loggedOut.has(entry)) yield* logoutChild(entry)
      running.delete(entry.taskId)
      held.delete(entry.taskId)
    }
    for (const entry of [...running.values()]) {
      if (seen.has(entry.taskId)) continue
      const info = yield* api.getTaskInfo(entry.taskId)
      if (entry.done) continue
      if (info === null) {
        yield* Effect.logError(`Invalid task ${entry.taskId}`)
      } else if (info.state === TaskState.CANCELED) {
        yield* killTask(entry, "Killing canceled task")
      } else if (info.host_id !== hostId) {
        yield* killTask(entry, "Killing reassigned task")
      } else {
        yield* Effect.logInfo(`Lingering task ${entry.taskId}`)
      }
    }
  })

  /** §4.3 readyForTask: "restart" once a pending restart finds no task running. */
  const readyForTask = Effect.gen(function*() {
    if (restartPending) {
      if (running.size > 0) {
        yield* Effect.logInfo("Pending restart")
        return false as const
      }
      return "restart" as const
    }
    const prefetched = prefetchedHost
    prefetchedHost = undefined
    hostdata = prefetched === undefined ? yield* api.getHost() : yield* prefetched
    if (!hostdata.enabled) {
      yield* Effect.logInfo("Host is disabled")
      return false as const
    }
    if (taskLoad > hostdata.capacity) {
      yield* Effect.logInfo(`Task load (${taskLoad.toFixed(2)}) exceeds capacity (${hostdata.capacity.toFixed(2)})`)
      return false as const
    }
    if (running.size >= options.maxjobs) {
      yield* Effect.logInfo("Full queue")
      return false as const
    }
    const reasons = yield* readiness.check
    if (reasons.length > 0) {
      yield* Effect.logWarning(reasons.join("; "))
      return false as const
    }
    return true as const
  })

  /** The heartbeat; a 1.34 hub has no `data` keyword (ParameterError) → updateHost + setHostData. */
  const heartbeat = (ready: boolean) => Effect.tap(heartbeatCalls(ready), () => beaten(ready))
  const beaten = (ready: boolean) => Effect.map(Clock.currentTimeMillis, (at) => void (lastBeat = { at, ready }))
  const heartbeatCalls = (ready: boolean) => {
    const data = { methods: [...registry.methods], maxjobs: options.maxjobs }
    if (legacyHostData) {
      return Effect.zipRight(api.updateHost(taskLoad, ready), api.setHostData(data))
    }
    return api.updateHost(taskLoad, ready, data).pipe(
      Effect.catchIf(
        (e): e is ParameterError => e instanceof ParameterError,
        () =>
          Effect.gen(function*() {
            yield* Effect.logInfo("hub has no updateHost data keyword (1.34): using host.setHostData")
            legacyHostData = true
            yield* api.updateHost(taskLoad, ready)
            yield* api.setHostData(data)
          })
      )
    )
  }

  /** §4.3 takeTask. */
  const takeTask = (task: HostTask) =>
    Effect.gen(function*() {
      yield* Effect.logInfo(`Attempting to take task ${task.id}`)
      const handler = registry.get(task.method)
      if (handler === undefined) {
        yield* Effect.logWarning(`Refusing task ${task.id}, no handler for ${task.method}`)
        yield* doneOnRetry(api.refuseTask(task.id, { soft: false, msg: "no handler for method" }))
        return false
      }
      // Batched, a handler that needs nothing before the open takes its request from openTask's
      // row (the raw methodCall XML, §12) instead of a getTaskInfo(request=True) round trip.
      const skipInfo = options.batchHubCalls && !handler.needsRequestBeforeOpen
      let request: ReadonlyArray<XmlRpcValue> = []
      if (!skipInfo) {
        const info = yield* api.getTaskInfo(task.id, { request: true })
        if (info === null || info.request === undefined || info.request === null) {
          yield* Effect.logWarning(`Task ${task.id} has no request`)
          return false
        }
        request = Array.isArray(info.request) ? info.request : [info.request]
      }
      if (handler.hasCheckHost) {
        const bound = handler.bind(request)
        const valid = Either.isLeft(bound) || hostdata === undefined || bound.right.checkHost === undefined
          ? false
          : yield* bound.right.checkHost(hostdata, session).pipe(
            Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("Error during host check", cause), false))
          )
        if (!valid) {
          yield* Effect.logInfo(`Skipping task ${task.id} (${task.method}) due to host check`)
          if (task.state === TaskState.ASSIGNED) {
            yield* doneOnRetry(api.refuseTask(task.id, { soft: false, msg: "failed host check" }))
          }
          return false
        }
      }
      const weight = handler.weight(request)
      // Batched, setTaskWeight rides with openTask; when the open gave nil it faults harmlessly.
      const [opened, weightResult] = options.batchHubCalls
        ? yield* Effect.flatMap(
          batch2(
            { method: "host.openTask", params: [task.id], schema: Schema.NullOr(S.TaskInfo) },
            { method: "host.setTaskWeight", params: [task.id, new Double(weight)], schema: Schema.Unknown }
          ),
          ([o, w]) => Effect.map(o, (row) => [row, w] as const)
        )
        : [yield* api.openTask(task.id), undefined] as const
      if (opened === null) {
        yield* Effect.logWarning("Could not open")
        return false
      }
      held.add(task.id)
      if (skipInfo) {
        const raw = opened.request
        const call: Either.Either<ReadonlyArray<XmlRpcValue>, string> = typeof raw === "string"
          ? Either.mapBoth(decodeCall(raw), { onLeft: (e) => e.message, onRight: (c) => c.params })
          : Either.left(`request is ${raw === null ? "nil" : typeof raw}`)
        if (Either.isLeft(call)) {
          // Opened but unreadable: fail it, as kojid's handler fails on unusable params.
          const why = `Task ${task.id} has no usable request: ${call.left}`
          yield* Effect.logWarning(why)
          yield* doneOnRetry(api.failTask(task.id, encodeFault(1000, why)))
          held.delete(task.id)
          return false
        }
        request = call.right
      }
      const setWeight: Effect.Effect<unknown, Fault | HubError> = weightResult === undefined
        ? api.setTaskWeight(task.id, weight)
        : weightResult
      const weightSet = yield* doneOnRetry(setWeight).pipe(
        Effect.as(true),
        Effect.catchIf(
          (e): e is ActionNotAllowed => e instanceof ActionNotAllowed,
          (e) =>
            Effect.gen(function*() {
              const again = yield* api.getTaskInfo(task.id)
              if (again === null || again.host_id !== hostId) {
                yield* Effect.logWarning(`Task ${task.id} was reassigned`)
                return false
              }
              if (again.state !== TaskState.OPEN) {
                yield* Effect.logWarning(`Task ${task.id} changed state to ${again.state}`)
                return false
              }
              return yield* Effect.fail(e)
            })
        )
      )
      if (!weightSet) {
        held.delete(task.id)
        return false
      }
      const base = { taskId: task.id, method: task.method, handler, request, hostId, daemon: control, options: options.runner, files, events }
      if (handler.foreground) {
        yield* Effect.logInfo("running task in foreground")
        const outcome = yield* runTask({ ...base, session, waker: mainWaker })
        return outcome === "exit" ? ("exit" as const) : true
      }
      const sub = yield* session.subsession
      const entry: Running = {
        taskId: task.id,
        method: task.method,
        subsessionId: sub.sessionId,
        waker: yield* makeWaker,
        children: new Set(),
        done: false
      }
      running.set(task.id, entry)
      yield* FiberMap.run(
        fibers,
        task.id,
        runTask({ ...base, session: sub, waker: entry.waker }).pipe(
          // The task's own session logs out after reporting, as kojid's task process (§13).
          Effect.zipRight(sub.logout),
          // Woken after the logout, so the cycle finds the task done (not lingering) and has a
          // free slot for the next task.
          Effect.ensuring(Effect.zipRight(
            Effect.sync(() => {
              entry.done = true
            }),
            loopWaker.wake
          ))
        )
      )
      return true
    })

  /** The heartbeat and, when ready, host.getTasks — in one multiCall when batching. */
  const heartbeatAndGetTasks = (ready: boolean): Effect.Effect<ReadonlyArray<HostTask>, Fault | HubError> =>
    Effect.gen(function*() {
      if (!options.batchHubCalls || legacyHostData || !ready) {
        yield* heartbeat(ready)
        return ready ? yield* api.getTasks() : []
      }
      const data = { methods: [...registry.methods], maxjobs: options.maxjobs }
      const [beat, tasks] = yield* batch2(
        { method: "host.updateHost", params: [new Double(taskLoad), ready], kwargs: { data }, schema: Schema.Unknown },
        { method: "host.getTasks", schema: Schema.Array(S.HostTask) }
      )
      if (Either.isLeft(beat)) {
        if (!(beat.left instanceof ParameterError)) return yield* Effect.fail(beat.left)
        yield* heartbeat(ready)
      } else {
        yield* beaten(ready)
      }
      return yield* tasks
    })

  /** §4.3 getNextTask. */
  const getNextTask = Effect.gen(function*() {
    const ready = yield* readyForTask
    if (ready === "restart") return "restart" as const
    const tasks = yield* heartbeatAndGetTasks(ready)
    if (!ready) return "idle" as const
    for (const task of tasks) {
      if (running.has(task.id)) {
        yield* Effect.logInfo(`Task ${task.id} reassigned`)
        continue
      }
      if (task.state !== TaskState.ASSIGNED) {
        yield* Effect.logError(`Received task ${task.id} is not assigned, state=${task.state}`)
        continue
      }
      if (task.host_id != null && task.host_id !== hostId) {
        yield* Effect.logError(`Received task ${task.id} is not ours, host=${task.host_id}`)
        continue
      }
      const took = yield* takeTask(task)
      if (took === "exit") return "exit" as const
      if (took) return "taken" as const
    }
    return "idle" as const
  })

  /** One cycle of kojid's main loop. */
  const cycle = (taken: boolean): Effect.Effect<Control, Fault | HubError> =>
    Effect.gen(function*() {
      if (!taken) yield* updateBuildroots
      yield* updateTasks
      return yield* getNextTask
    })

  /** kojid's `TaskManager.shutdown`: kill every task, free ours, report not ready; bounded. */
  const shutdown = Effect.gen(function*() {
    yield* Effect.logWarning("Shutting down, please wait...")
    const ids = new Set([...held, ...[...running.values()].filter((e) => !e.done).map((e) => e.taskId)])
    yield* FiberMap.clear(fibers).pipe(
      Effect.timeoutOption(options.shutdownTimeout),
      Effect.tap((r) => (Option.isNone(r) ? Effect.logWarning("some tasks are still stopping") : Effect.void))
    )
    const bounded = <A>(what: string, eff: Effect.Effect<A, Fault | HubError>) =>
      eff.pipe(
        Effect.timeoutOption(options.shutdownCallTimeout),
        Effect.catchAllCause((cause) => Effect.logWarning(`${what} failed during shutdown`, cause))
      )
    for (const entry of running.values()) yield* bounded("logoutChild", session.logoutChild(entry.subsessionId))
    running.clear()
    yield* bounded("host.freeTasks", api.freeTasks([...ids]))
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
    runningTasks: Effect.sync(() => [...running.values()].filter((e) => !e.done).map((e) => e.taskId)),
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
      tasks: [...running.values()].filter((e) => !e.done).map((e) => ({ id: e.taskId, method: e.method }))
    })),
    /** True while the last accepted heartbeat is at most three cycles old. */
    healthy: Effect.map(Clock.currentTimeMillis, (now) =>
      lastBeat !== undefined && now - lastBeat.at <= 3 * Duration.toMillis(options.sleeptime) + 30_000)
  }
})

/** The task manager of one daemon run. */
export type TaskManagerApi = Effect.Effect.Success<ReturnType<typeof makeTaskManager>>

/**
 * kojid's main loop with its error policy (§2): AuthExpired → "Session expired", exit 1;
 * other AuthError → exit 1; ServerExit → exit 0; anything else is logged and the loop goes on.
 * Unlike kojid, a RetryError (1009: a call's reply was lost after the hub committed it) does not
 * kill the daemon: the next cycle re-reads the hub's state (a task opened without a fiber is
 * freed as stale), so a flaky network costs a cycle, not a restart.
 */
export const runLoop = (tm: TaskManagerApi, options: DaemonOptions): Effect.Effect<DaemonResult> =>
  Effect.gen(function*() {
    let taken = false
    const gap = Duration.toMillis(options.wakeGap ?? defaultWakeGap(options.sleeptime))
    for (;;) {
      yield* tm.wakeup.clear
      const started = yield* Clock.currentTimeMillis
      const step: Either.Either<Control, Fault | HubError> = yield* Effect.either(tm.cycle(taken))
      if (Either.isRight(step)) {
        if (step.right === "restart") {
          yield* Effect.logWarning("Restarting")
          return { _tag: "Restart" } as const
        }
        if (step.right === "exit") {
          yield* Effect.logWarning("Exiting")
          yield* tm.shutdown
          return { _tag: "Exit", code: 0 } as const
        }
        taken = step.right === "taken"
      } else {
        const e = step.left
        if (e instanceof AuthExpired) {
          yield* Effect.logError("Session expired")
          yield* tm.shutdown
          return { _tag: "Exit", code: 1 } as const
        }
        if (isFault(e) && isAuthFamily(e) && !(e instanceof RetryError)) {
          yield* Effect.logError(`Authentication error: ${e.faultString}`)
          yield* tm.shutdown
          return { _tag: "Exit", code: 1 } as const
        }
        yield* Effect.logError(`cycle failed: ${describe(e)}`)
        taken = false
      }
      if (!taken) yield* tm.wakeup.pause(options.sleeptime, started + gap)
    }
  }).pipe(
    // SIGTERM/SIGINT interrupt the main fiber: shut down as kojid does before the session ends.
    Effect.onInterrupt(() => tm.shutdown)
  )

/**
 * One daemon run: log in (exclusive, `force` from --force-lock), remove orphan containers of
 * this host, then the loop until a signal, an exit or a restart. The session is logged out when
 * the run's scope closes.
 */
export const runDaemon = (
  options: DaemonOptions
): Effect.Effect<DaemonResult, Fault | HubError | LoginError | StatusServerError, KojiHub | TaskRegistry | Readiness | Containers | HubFileTree | Scope.Scope> =>
  Effect.gen(function*() {
    const hub = yield* KojiHub
    const session = yield* hub.loginScoped(options.forceLock)
    const tm = yield* makeTaskManager(session, options)
    yield* Effect.logInfo(`Starting up: host ${tm.hostId}, session ${session.sessionId}`)
    // At start no task of ours runs here: every container labelled with this host is an orphan
    // of an earlier process (its OPEN tasks are freed as stale by the first cycle).
    const reaped = yield* Effect.either(reap(() => false))
    if (Either.isLeft(reaped)) yield* Effect.logWarning(`could not reap orphan containers: ${reaped.left.message}`)
    else if (reaped.right.removed.length > 0) yield* Effect.logInfo(`removed ${reaped.right.removed.length} orphan containers`)
    if (options.statusListen !== undefined && options.statusListen !== "") yield* serveStatus(options.statusListen, tm.status, tm.healthy)
    yield* installRestartSignal(tm)
    return yield* runLoop(tm, options)
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
