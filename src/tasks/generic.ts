/**
 * kojid's generic task handlers (`koji/tasks.py`, koji-protocol.md §7.10), each with kojid's
 * parameters, weight, result and failure messages.
 */
import { spawn } from "node:child_process"
import { Duration, Effect, Schema } from "effect"
import { GenericError } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"
import { AnyValue, defineHandler, Int, Num, optional, required, signature, type TaskContext, type TaskHandler } from "./handler.js"
import { ServerExit, ServerRestart } from "./errors.js"
import { TaskState, taskStateName } from "../koji/states.js"

const HostRef = Schema.Struct({ id: Schema.Number })

/** Python's `time.asctime(time.localtime(ts))`, for restartVerify's message. */
const asctime = (ts: number): string => {
  const d = new Date(ts * 1000)
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
  const p2 = (n: number) => String(n).padStart(2, "0")
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, " ")} ` +
    `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`
}

const hostId = (ctx: TaskContext) => hostApi(ctx.session).getID()

/** `someMethod` (FakeTask, foreground, weight 1.0): any arguments, returns 42. */
export const fakeTask = defineHandler({
  name: "FakeTask",
  methods: ["someMethod"],
  weight: 1.0,
  foreground: true,
  signature: signature("FakeTask.handler", {}, { varargs: true }),
  run: (p) => Effect.as(Effect.logInfo(`This is a fake task.  Args: ${JSON.stringify(p.rest)}`), 42)
})

/** `sleep` (SleepTask, 0.25): `handler(n)` sleeps n seconds, returns nil. */
export const sleepTask = defineHandler({
  name: "SleepTask",
  methods: ["sleep"],
  weight: 0.25,
  signature: signature("SleepTask.handler", { n: required(Num) }),
  run: ({ n }) =>
    Effect.logInfo(`Sleeping for ${n} seconds`).pipe(
      Effect.zipRight(Effect.sleep(Duration.seconds(Math.max(0, n)))),
      Effect.zipRight(Effect.logInfo("Finished sleeping")),
      Effect.as(null)
    )
})

/**
 * `fork` (ForkTask, 1.0): `handler(n=5, m=37)` starts n `sleep m` processes and does not wait
 * for them, as kojid's `os.spawnvp(P_NOWAIT)`; returns nil.
 */
export const forkTask = defineHandler({
  name: "ForkTask",
  methods: ["fork"],
  weight: 1.0,
  signature: signature("ForkTask.handler", { n: optional(Int, 5), m: optional(Num, 37) }),
  run: ({ n, m }) =>
    Effect.sync(() => {
      for (let i = 0; i < n; i++) {
        const child = spawn("sleep", [String(m)], { detached: true, stdio: "ignore" })
        // A missing `sleep` binary is reported by the event; kojid ignores spawn results too.
        child.on("error", () => undefined)
        child.unref()
      }
    }).pipe(Effect.as(null))
})

/** `waittest` (WaitTestTask, 0.1): `handler(count, seconds=10)` — sleep subtasks, one bad one in canfail. */
export const waitTestTask = defineHandler({
  name: "WaitTestTask",
  methods: ["waittest"],
  weight: 0.1,
  signature: signature("WaitTestTask.handler", { count: required(Int), seconds: optional(AnyValue, 10) }),
  run: ({ count, seconds }, ctx) =>
    Effect.gen(function*() {
      const tasks: Array<number> = []
      for (let i = 0; i < count; i++) tasks.push(yield* ctx.subtask("sleep", [seconds], { label: String(i) }))
      const bad = yield* ctx.subtask("sleep", ["BAD_ARG"], { label: "bad" })
      tasks.push(bad)
      const results = yield* ctx.wait(tasks, { all: true, failany: true, canfail: [bad] })
      yield* Effect.logInfo(`results: ${JSON.stringify([...results.keys()])}`)
      return null
    })
})

/** `subtask` (SubtaskTask, 0.1): `handler(n=4)` — a chain of n subtask tasks ending in `sleep 15`. */
export const subtaskTask = defineHandler({
  name: "SubtaskTask",
  methods: ["subtask"],
  weight: 0.1,
  signature: signature("SubtaskTask.handler", { n: optional(Int, 4) }),
  run: ({ n }, ctx) =>
    Effect.gen(function*() {
      const child = n > 0
        ? yield* ctx.subtask("subtask", [n - 1], { label: "foo" })
        : yield* ctx.subtask("sleep", [15], { label: "bar" })
      yield* ctx.wait(child)
      return null
    })
})

/** `default` (DefaultTask, 0.1): any arguments; always fails "Invalid method: default". */
export const defaultTask = defineHandler({
  name: "DefaultTask",
  methods: ["default"],
  weight: 0.1,
  signature: signature("DefaultTask.handler", {}, { varargs: true, varkw: true }),
  run: (_p, ctx) => Effect.fail(new GenericError({ faultString: `Invalid method: ${ctx.method}` }))
})

/** `shutdown` (ShutdownTask, foreground, 0.0): no arguments; the daemon exits cleanly. */
export const shutdownTask = defineHandler({
  name: "ShutdownTask",
  methods: ["shutdown"],
  weight: 0.0,
  foreground: true,
  signature: signature("ShutdownTask.handler", {}),
  run: () => Effect.fail(new ServerExit())
})

/** `restart` (RestartTask, foreground, 0.1): `handler(host)` — sets restart pending. */
export const restartTask = defineHandler({
  name: "RestartTask",
  methods: ["restart"],
  weight: 0.1,
  foreground: true,
  signature: signature("RestartTask.handler", { host: required(HostRef) }),
  run: ({ host }, ctx) =>
    Effect.gen(function*() {
      if (host.id !== (yield* hostId(ctx))) return yield* new GenericError({ faultString: "Host mismatch" })
      yield* ctx.daemon.requestRestart
      return "graceful restart initiated"
    })
})

/** `restartVerify` (RestartVerifyTask, foreground, 0.1): `handler(task_id, host)` — the restart happened. */
export const restartVerifyTask = defineHandler({
  name: "RestartVerifyTask",
  methods: ["restartVerify"],
  weight: 0.1,
  foreground: true,
  signature: signature("RestartVerifyTask.handler", { task_id: required(Int), host: required(HostRef) }),
  run: ({ task_id, host }, ctx) =>
    Effect.gen(function*() {
      const tinfo = yield* hostApi(ctx.session).getTaskInfo(task_id)
      // kojid indexes the missing task's None: a TypeError, reported as fault 1.
      if (tinfo === null) return yield* Effect.dieMessage(`TypeError: 'NoneType' object is not subscriptable (task ${task_id})`)
      const state = taskStateName(tinfo.state)
      if (state !== "CLOSED") return yield* new GenericError({ faultString: `Stage one restart task is ${state}` })
      if (host.id !== (yield* hostId(ctx))) return yield* new GenericError({ faultString: "Host mismatch" })
      const completion = tinfo.completion_ts ?? 0
      if (ctx.daemon.startTs < completion) {
        return yield* new GenericError({ faultString: `Restart failed - start time is ${asctime(ctx.daemon.startTs)}` })
      }
      return null
    })
})

const RestartHostsOptions = Schema.NullOr(Schema.Struct({
  channel: Schema.optional(Schema.Union(Schema.String, Schema.Number)),
  arches: Schema.optional(AnyValue),
  timeout: Schema.optional(Schema.Number)
}))

/** `restartHosts` (RestartHostsTask, 0.1): `handler(options=None)` — restart + verify each matching host. */
export const restartHostsTask = defineHandler({
  name: "RestartHostsTask",
  methods: ["restartHosts"],
  weight: 0.1,
  signature: signature("RestartHostsTask.handler", { options: optional(RestartHostsOptions, null) }),
  run: ({ options }, ctx) =>
    Effect.gen(function*() {
      const opts = options ?? {}
      const query: Record<string, XmlRpcValue> = { enabled: true }
      if (opts.channel !== undefined) {
        const chan = yield* hostApi(ctx.session).getChannel(opts.channel, true)
        if (chan === null) return yield* new GenericError({ faultString: `No such channel: ${opts.channel}` })
        query["channelID"] = chan.id
      }
      if (opts.arches !== undefined) query["arches"] = opts.arches
      const hosts = yield* hostApi(ctx.session).listHosts(query)
      if (hosts.length === 0) return yield* new GenericError({ faultString: "No matching hosts" })
      const timeout = Duration.seconds(opts.timeout ?? 3600 * 24)
      const thisHost = yield* hostId(ctx)
      const subtasks: Array<number> = []
      let mine: [number, number] | undefined
      for (const host of hosts) {
        const id = Number(host["id"])
        const t1 = yield* ctx.subtask("restart", [host], { assign: id, label: `restart ${id}` })
        const t2 = yield* ctx.subtask("restartVerify", [t1, host], { assign: id, label: `sleep ${id}` })
        subtasks.push(t1, t2)
        if (id === thisHost) mine = [t1, t2]
      }
      if (mine !== undefined) {
        yield* ctx.wait(mine[0], { timeout })
        const verified = yield* hostApi(ctx.session).taskFinished(mine[1])
        // kojid raises ServerRestart so that this task is freed and does not block our own restart.
        if (!verified) return yield* new ServerRestart()
      }
      yield* ctx.wait(subtasks, { all: true, timeout })
      return null
    })
})

const TaskSpec = Schema.Array(AnyValue)

/** `dependantTask` (DependantTask, 0.2): `handler(wait_list, task_list)` — waits for other tasks, then spawns subtasks. */
export const dependantTask = defineHandler({
  name: "DependantTask",
  methods: ["dependantTask"],
  weight: 0.2,
  signature: signature("DependantTask.handler", {
    wait_list: required(Schema.Array(AnyValue)),
    task_list: required(Schema.Array(TaskSpec))
  }),
  run: ({ wait_list, task_list }, ctx) =>
    Effect.gen(function*() {
      const waitFor: Array<number> = []
      for (const t of wait_list) {
        if (typeof t !== "number" || !Number.isInteger(t)) continue
        const info = yield* hostApi(ctx.session).getTaskInfo(t)
        if (info !== null) waitFor.push(t)
        else yield* Effect.logDebug(`invalid task id ${t}, removing from wait_list`)
      }
      // These tasks are not our children, so host.taskWait cannot be used: poll as kojid does.
      while (waitFor.length > 0) {
        for (const t of [...waitFor]) {
          if (yield* hostApi(ctx.session).taskFinished(t)) {
            const info = yield* hostApi(ctx.session).getTaskInfo(t)
            if (info !== null && (info.state === TaskState.CANCELED || info.state === TaskState.FAILED)) {
              return yield* new GenericError({ faultString: `Dependency ${info.id} failed to complete.` })
            }
            waitFor.splice(waitFor.indexOf(t), 1)
          }
        }
        yield* Effect.sleep(Duration.seconds(1))
      }
      const subtasks: Array<number> = []
      for (const spec of task_list) {
        const method = String(spec[0])
        const args: ReadonlyArray<XmlRpcValue> = Array.isArray(spec[1]) ? spec[1] : []
        const extra: XmlRpcStruct = spec.length > 2 && isStruct(spec[2]) ? spec[2] : {}
        // kojid passes task[2] through as host.subtask keywords, verbatim.
        subtasks.push(yield* ctx.subtask(method, args, { extra }))
      }
      if (subtasks.length > 0) yield* ctx.wait(subtasks, { all: true })
      return null
    })
})

/** Every generic handler kojid registers from koji.tasks (waitrepo belongs to the build family). */
export const genericHandlers: ReadonlyArray<TaskHandler> = [
  fakeTask,
  sleepTask,
  forkTask,
  waitTestTask,
  subtaskTask,
  defaultTask,
  shutdownTask,
  restartTask,
  restartVerifyTask,
  restartHostsTask,
  dependantTask
]

/** kojid's generic handlers; they need no service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>> = Effect.succeed(genericHandlers)
