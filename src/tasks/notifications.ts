/**
 * kojid's `buildNotification` and `tagNotification` (BuildNotificationTask, TagNotificationTask,
 * koji-protocol.md §7.9): the same hub reads, kojid's subject, `X-Koji-*` headers and body
 * (task results with log and rpm links from `weburl`/`topurl`, the last three changelog
 * entries), sent through `smtphost` from `from_addr`; nil when there is nothing to send.
 */
import { BuildState, stateName, taskStateName } from "../koji/states.js"
import { Effect, Schema } from "effect"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { type Fault, GenericError, isFault } from "../koji/faults.js"
import type { HubError } from "../hub/HubError.js"
import { hostApi, type HostApi } from "../hub/HostApi.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"
import { Mailer } from "../mail/Mailer.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskContext, type TaskHandler } from "./handler.js"

/** What the notification handlers need besides their task context. */
export interface NotificationDeps {
  readonly mailer: Mailer["Type"]
  readonly fromAddr: string
  /** kojid's first `topurl` (rpm links). */
  readonly topurl: string
}

/** The notification handlers' dependencies from the config and the Mailer. */
export const notificationDeps: Effect.Effect<NotificationDeps, never, AdjutantConfig | Mailer> = Effect.gen(function*() {
  const config = yield* AdjutantConfig
  return { mailer: yield* Mailer, fromAddr: config.kojid.from_addr, topurl: config.kojid.topurl }
})


const Build = Schema.Struct({
  id: Schema.Number,
  package_name: Schema.optional(Schema.String),
  name: Schema.optional(Schema.String),
  version: Schema.String,
  release: Schema.String,
  epoch: Schema.optional(Schema.NullOr(Schema.Number)),
  owner_name: Schema.optional(Schema.NullOr(Schema.String)),
  state: Schema.Number,
  task_id: Schema.optional(Schema.NullOr(Schema.Number)),
  creation_ts: Schema.optional(Schema.NullOr(Schema.Number)),
  completion_ts: Schema.optional(Schema.NullOr(Schema.Number)),
  volume_name: Schema.optional(Schema.NullOr(Schema.String)),
  draft: Schema.optional(Schema.Boolean)
}, Schema.Record({ key: Schema.String, value: Schema.Unknown }))
type Build = typeof Build.Type

const Target = Schema.NullOr(Schema.Struct({ dest_tag_name: Schema.String }, Schema.Record({ key: Schema.String, value: Schema.Unknown })))

/** Python's `str(None)`/`str(True)` for the template fields kojid fills with Python values. */
const pyStr = (v: unknown): string => (v === null || v === undefined ? "None" : v === true ? "True" : v === false ? "False" : String(v))

/** `koji.buildLabel(build)`: name-version-release. */
export const buildLabel = (b: { readonly package_name?: string | undefined; readonly name?: string | undefined; readonly version: string; readonly release: string }): string =>
  `${b.package_name ?? b.name ?? "None"}-${b.version}-${b.release}`

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const p2 = (n: number) => String(n).padStart(2, "0")

/** `koji.formatTimeLong(ts)`: `Sat, 07 Sep 2002 00:00:01 UTC` in the local time zone; '' for nil. */
export const formatTimeLong = (ts: number | null | undefined): string => {
  if (ts === null || ts === undefined) return ""
  const d = new Date(ts * 1000)
  const zone = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(d).find((p) => p.type === "timeZoneName")?.value ?? ""
  return `${DAYS[d.getDay()]}, ${p2(d.getDate())} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ` +
    `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${zone}`
}

/** `koji.util.formatChangelog(entries)`: `* Day Mon DD YYYY author\ntext\n\n` per entry. */
export const formatChangelog = (entries: ReadonlyArray<XmlRpcValue>): string =>
  entries.filter(isStruct).map((e) => {
    const raw = String(e["date"] ?? "")
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(raw)
    const date = m === null ? raw : (() => {
      const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])))
      return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${p2(d.getUTCDate())} ${d.getUTCFullYear()}`
    })()
    return `* ${date} ${String(e["author"] ?? "")}\n${String(e["text"] ?? "")}\n\n`
  }).join("")

const basename = (s: string): string => s.slice(s.lastIndexOf("/") + 1)

/** koji's `_module_info(url)`: `repo:rev` (or `repo:module:rev`) of an SCM URL. */
const moduleInfo = (url: string): string => {
  const q = url.indexOf("?")
  const h = url.indexOf("#")
  const module = q >= 0 ? url.slice(q + 1, h >= 0 ? h : undefined) : ""
  const start = url.indexOf("/", url.indexOf("://") + 3)
  const end = q >= 0 ? q : h
  const repo = url.slice(start, end >= 0 ? end : undefined)
  const rev = url.slice(h + 1)
  return module !== "" ? `${repo}:${module}:${rev}` : `${repo}:${rev}`
}

/** `koji.taskLabel(task)` for the methods whose label kojid's mails show. */
export const taskLabel = (method: string, arch: string, request: XmlRpcValue): string => {
  const params: ReadonlyArray<XmlRpcValue> = Array.isArray(request) ? request : []
  const str = (v: XmlRpcValue | undefined): string => (isStruct(v) ? pyStr(v["name"]) : pyStr(v))
  let extra = ""
  if (method === "build") {
    const src = String(params[0] ?? "")
    extra = `${str(params[1])}, ${src.includes("://") ? moduleInfo(src) : basename(src)}`
  } else if (method === "buildSRPMFromSCM") {
    extra = moduleInfo(String(params[0] ?? ""))
  } else if (method === "buildArch") {
    const pkg = params[0]
    extra = `${basename(isStruct(pkg) ? String(pkg["name"]) : String(pkg ?? ""))}, ${pyStr(params[2])}`
  } else if (method === "buildNotification") {
    const b = params[1]
    if (isStruct(b)) extra = `${pyStr(b["package_name"] ?? b["name"])}-${pyStr(b["version"])}-${pyStr(b["release"])}`
  } else if (method === "newRepo" || method === "distRepo") {
    extra = str(params[0])
  } else if (method === "createrepo") {
    extra = pyStr(params[1])
  } else if (method === "createdistrepo") {
    extra = `${pyStr(params[1])}, ${pyStr(params[2])}`
  }
  return `${method} (${extra !== "" ? extra : arch})`
}

interface TaskData {
  readonly id: number
  readonly method: string
  readonly arch: string
  readonly buildArch: string
  readonly host: string | null
  readonly state: string
  readonly result: string
  readonly request: XmlRpcValue
  readonly logs: ReadonlyArray<readonly [string, string]>
  readonly rpms: ReadonlyArray<string>
  readonly srpms: ReadonlyArray<string>
  readonly misc: ReadonlyArray<readonly [string, string]>
}

/** Python's `str()` of a task result for the mail (strings bare). */
const resultText = (v: XmlRpcValue): string => (typeof v === "string" ? v : JSON.stringify(v) ?? "None")

/** kojid's `_getTaskData`: the task and its descendants, with results and output files. */
const getTaskData = (api: HostApi, taskId: number, data: Map<number, TaskData>): Effect.Effect<void, Fault | HubError> =>
  Effect.gen(function*() {
    const info = yield* api.getTaskInfo(taskId)
    if (info === null) return
    const host = info.host_id ? yield* api.getHostById(info.host_id) : null
    const res = yield* Effect.either(api.getTaskResult(taskId))
    let result = res._tag === "Right" ? resultText(res.right) : isFault(res.left) ? res.left.faultString.trim() : String(res.left)
    if (result === "" || result === "null") result = "Unknown"
    const files = yield* api.listTaskOutput(taskId, { allVolumes: true })
    const logs: Array<[string, string]> = []
    const misc: Array<[string, string]> = []
    const rpms: Array<string> = []
    const srpms: Array<string> = []
    const entries: ReadonlyArray<[string, ReadonlyArray<string>]> = isStruct(files)
      ? Object.entries(files).map(([f, v]) => [f, Array.isArray(v) ? v.map(String) : ["DEFAULT"]])
      : Array.isArray(files) ? files.map((f) => [String(f), ["DEFAULT"]]) : []
    for (const [f, volumes] of entries) {
      if (f.endsWith(".log")) for (const v of volumes) logs.push([f, v])
      else if (f.endsWith(".src.rpm")) srpms.push(f)
      else if (f.endsWith(".rpm")) rpms.push(f)
      else for (const v of volumes) misc.push([f, v])
    }
    const byVolume = (a: readonly [string, string], b: readonly [string, string]) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0])
    logs.sort(byVolume)
    misc.sort(byVolume)
    rpms.sort()
    data.set(taskId, {
      id: info.id,
      method: info.method,
      arch: info.arch ?? "",
      buildArch: info.label ?? "",
      host: host?.name ?? null,
      state: taskStateName(info.state).toLowerCase(),
      result,
      request: yield* api.getTaskRequest(taskId),
      logs,
      rpms,
      srpms,
      misc
    })
    for (const child of yield* api.getTaskChildren(taskId)) yield* getTaskData(api, child.id, data)
  })

const send = (deps: NotificationDeps, recipients: ReadonlyArray<string>, raw: string) =>
  deps.mailer.send({ from: deps.fromAddr, to: recipients, raw }).pipe(
    Effect.mapError((e) => new GenericError({ faultString: e.message }))
  )

/** The body and headers kojid's BuildNotificationTask sends. */
const buildMessage = (deps: NotificationDeps, ctx: TaskContext, recipients: ReadonlyArray<string>, build: Build, target: typeof Target.Type, weburl: string) =>
  Effect.gen(function*() {
    const api = hostApi(ctx.session)
    const buildPkgName = build.package_name ?? build.name ?? "None"
    const buildNvr = buildLabel(build)
    const buildId = build.id
    const buildOwner = pyStr(build.owner_name)
    const draft = pyStr(build.draft ?? false)
    const destTag = pyStr(target?.dest_tag_name ?? null)
    const status = stateName(BuildState, build.state).toLowerCase()
    const taskId = build.task_id ?? null
    const taskData = new Map<number, TaskData>()
    if (taskId !== null) yield* getTaskData(api, taskId, taskData)

    let cancelInfo = ""
    let failureInfo = ""
    if (build.state === 4) {
      // The owner of this notification task is whoever canceled the build.
      const me = yield* api.getTaskInfo(ctx.taskId)
      if (me?.owner) {
        const canceler = yield* api.getUser(me.owner)
        cancelInfo = `\r\nCanceled by: ${canceler?.name ?? "None"}`
      }
    } else if (build.state === 3) {
      const failureData = taskId === null ? "Unknown" : taskData.get(taskId)?.result ?? "Unknown"
      const failedHosts = [...taskData.values()].filter((t) => t.host !== null && t.state === "failed").map((t) => `${t.host} (${t.arch})`)
      failureInfo = `\r\n${buildNvr} (${buildId}) failed on ${failedHosts.join(", ")}:\r\n  ${failureData}`
    }
    const failure = failureInfo || cancelInfo

    const srpms = [...new Set([...taskData.values()].flatMap((t) => t.srpms))].sort()
    let output = srpms.length > 0 ? `SRPMS:\r\n${srpms.map((s) => `  ${s}`).join("")}\r\n\r\n` : ""
    const volume = build.volume_name && build.volume_name !== "DEFAULT" ? `/vol/${build.volume_name}` : ""
    const buildurl = `${deps.topurl}${volume}/packages/${buildPkgName}/${build.version}/${build.release}`
    for (const state of ["failed", "canceled", "closed"]) {
      const tasks = [...taskData.values()].filter((t) => t.state === state)
      if (tasks.length === 0) continue
      output += `${state[0]!.toUpperCase()}${state.slice(1)} tasks:\r\n${"-".repeat(state.length)}-------\r\n\r\n`
      for (const task of tasks) {
        output += `Task ${task.id}${task.host !== null ? ` on ${task.host}\r\n` : "\r\n"}`
        output += `Task Type: ${taskLabel(task.method, task.arch, task.request)}\r\n`
        if (task.logs.length > 0) {
          // kojid compares a list with 'closed' here, so every log gets a getfile link.
          output += "logs:\r\n"
          for (const [file, vol] of task.logs) output += ` ${weburl}/getfile?taskID=${task.id}&name=${file}&volume=${vol}\r\n`
        }
        if (task.rpms.length > 0) {
          output += "rpms:\r\n"
          for (const file of task.rpms) output += ` ${[buildurl, task.buildArch, file].join("/")}\r\n`
        }
        if (task.misc.length > 0) {
          output += "misc:\r\n"
          for (const [file, vol] of task.misc) output += ` ${weburl}/getfile?taskID=${task.id}&name=${file}&volume=${vol}\r\n`
        }
        output += "\r\n"
      }
      output += "\r\n"
    }

    const entries = yield* api.getChangelogEntries(buildId, { limit: 3 })
    let changelog = formatChangelog(entries).replaceAll("\n", "\r\n")
    if (changelog !== "") changelog = `Changelog:\r\n${changelog}`

    const toAddrs = recipients.join(", ")
    const subject = `Package: ${buildNvr} Tag: ${destTag} Status: ${status} Built by: ${buildOwner}`
    return `From: ${deps.fromAddr}\r\nSubject: ${subject}\r\nTo: ${toAddrs}\r\n` +
      `X-Koji-Tag: ${destTag}\r\nX-Koji-Package: ${buildPkgName}\r\nX-Koji-Builder: ${buildOwner}\r\n` +
      `X-Koji-Status: ${status}\r\nX-Koji-Draft: ${draft}\r\n\r\n` +
      `Package: ${buildNvr}\r\nTag: ${destTag}\r\nStatus: ${status}${cancelInfo}\r\nBuilt by: ${buildOwner}\r\n` +
      `ID: ${buildId}\r\nStarted: ${formatTimeLong(build.creation_ts)}\r\nFinished: ${formatTimeLong(build.completion_ts)}\r\n` +
      `${changelog}\r\n${failure}\r\n${output}\r\n` +
      `Task Info: ${weburl}/taskinfo?taskID=${taskId ?? "None"}\r\nBuild Info: ${weburl}/buildinfo?buildID=${buildId}\r\n`
  })

/** `buildNotification` (BuildNotificationTask, 0.1): `handler(recipients, build, target, weburl)`. */
export const buildNotificationHandler = (deps: NotificationDeps) =>
  defineHandler({
    name: "BuildNotificationTask",
    methods: ["buildNotification"],
    weight: 0.1,
    signature: signature("BuildNotificationTask.handler", {
      recipients: required(Schema.Array(Schema.String)),
      build: required(Build),
      target: required(Target),
      weburl: required(Schema.NullOr(Schema.String))
    }),
    run: ({ recipients, build, target, weburl }, ctx) =>
      Effect.gen(function*() {
        if (recipients.length === 0) {
          yield* Effect.logDebug(`task ${ctx.taskId}: no recipients, not sending notifications`)
          return null
        }
        const raw = yield* buildMessage(deps, ctx, recipients, build, target, weburl ?? "None")
        yield* send(deps, recipients, raw)
        return `sent notification of build ${build.id} to: ${recipients.join(", ")}`
      })
  })

const Ref = Schema.Union(Schema.Number, Schema.String, Schema.Record({ key: Schema.String, value: AnyValue }))

/** `tagNotification` (TagNotificationTask, 0.1): `handler(recipients, is_successful, tag_info, from_info, build_info, user_info, ignore_success=None, failure_msg='')`. */
export const tagNotificationHandler = (deps: NotificationDeps) =>
  defineHandler({
    name: "TagNotificationTask",
    methods: ["tagNotification"],
    weight: 0.1,
    signature: signature("TagNotificationTask.handler", {
      recipients: required(Schema.Array(Schema.String)),
      is_successful: required(AnyValue),
      tag_info: required(Schema.NullOr(Ref)),
      from_info: required(Schema.NullOr(Ref)),
      build_info: required(Ref),
      user_info: required(Schema.NullOr(Ref)),
      ignore_success: optional(AnyValue, null),
      failure_msg: optional(Schema.String, "")
    }),
    run: (p, ctx) =>
      Effect.gen(function*() {
        if (p.recipients.length === 0) {
          yield* Effect.logDebug(`task ${ctx.taskId}: no recipients, not sending notifications`)
          return null
        }
        const ok = p.is_successful !== null && p.is_successful !== false && p.is_successful !== 0
        if (p.ignore_success !== null && p.ignore_success !== false && p.ignore_success !== 0 && ok) {
          yield* Effect.logDebug(`task ${ctx.taskId}: tag operation successful and ignore success is true, not sending notifications`)
          return null
        }
        const api = hostApi(ctx.session)
        const asRef = (v: typeof Ref.Type): number | string | XmlRpcStruct => v
        const build = yield* api.getBuild(asRef(p.build_info))
        const user = p.user_info === null ? null : yield* api.getUser(typeof p.user_info === "object" ? Number(p.user_info["id"]) : p.user_info)
        if (build === null) return yield* new GenericError({ faultString: `No such build: ${JSON.stringify(p.build_info)}` })
        const pkgName = build.package_name ?? build.name
        const nvr = buildLabel(build)
        const draft = pyStr(build.draft ?? false)
        const userName = pyStr(user?.name ?? null)
        let action = ""
        let operation = "%(action)s"
        let details = "Tag Operation: %(action)s\r\n"
        let tagHeaders = ""
        if (p.from_info !== null) {
          const from = yield* api.getTag(asRef(p.from_info))
          const name = pyStr(from?.name ?? null)
          operation += ` from ${name}`
          details += `From Tag: ${name}\r\n`
          tagHeaders += `X-Koji-Tag: ${name}`
          action = "untagged"
        }
        if (p.tag_info !== null) {
          const tag = yield* api.getTag(asRef(p.tag_info))
          const name = pyStr(tag?.name ?? null)
          operation += ` into ${name}`
          details += `Into Tag: ${name}\r\n`
          if (tagHeaders !== "") tagHeaders += "\r\n"
          tagHeaders += `X-Koji-Tag: ${name}`
          action = "tagged"
        }
        if (p.tag_info !== null && p.from_info !== null) action = "moved"
        operation = operation.replace("%(action)s", action)
        details = details.replace("%(action)s", action)
        const result = ok ? "successfully" : "unsuccessfully"
        const status = ok ? "complete" : "failed"
        const failureInfo = ok ? "" : `Operation failed with the error:\r\n    ${p.failure_msg}\r\n`
        const toAddrs = p.recipients.join(", ")
        const raw = `From: ${deps.fromAddr}\r\nSubject: ${nvr} ${result} ${operation} by ${userName}\r\nTo: ${toAddrs}\r\n` +
          `X-Koji-Package: ${pkgName}\r\nX-Koji-NVR: ${nvr}\r\nX-Koji-Draft: ${draft}\r\nX-Koji-User: ${userName}\r\n` +
          `X-Koji-Status: ${status}\r\n${tagHeaders}\r\n\r\n` +
          `Package: ${pkgName}\r\nNVR: ${nvr}\r\nUser: ${userName}\r\nStatus: ${status}\r\n${details}\r\n` +
          `${nvr} ${result} ${operation} by ${userName}\r\n${failureInfo}\r\n`
        yield* send(deps, p.recipients, raw)
        return `sent notification of tag operation ${ctx.taskId} to: ${toAddrs}`
      })
  })

/** buildNotification and tagNotification bound to their dependencies. */
export const makeNotificationHandlers = (deps: NotificationDeps): ReadonlyArray<TaskHandler> => [
  buildNotificationHandler(deps),
  tagNotificationHandler(deps)
]

/** The notification handlers, with kojid.conf's `from_addr`/`topurl` and the Mailer. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, AdjutantConfig | Mailer> =
  Effect.map(notificationDeps, makeNotificationHandlers)
