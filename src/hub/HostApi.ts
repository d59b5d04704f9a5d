/**
 * The typed hub API a builder uses: every `host.*` call of koji-protocol.md §4.11 and the other
 * calls kojid makes, with arguments sent positionally or as keywords exactly as the recorded
 * kojid does (koji-captures/kojid), and results decoded with the Schemas of `schemas.ts`.
 * Floats such as task_load and weight go out as `<double>` (`Double`).
 */
import { Effect, Either, Schema } from "effect"
import type { Fault } from "../koji/faults.js"
import { HubError } from "./HubError.js"
import { type AnonymousSession, type BatchCall, decodeAs, type Kwargs, type Session } from "./KojiHub.js"
import type { Ref } from "../koji/refs.js"
import * as S from "./schemas.js"
import { Double, type XmlRpcStruct, type XmlRpcValue } from "./xmlrpc.js"

type E = Fault | HubError
type Params = ReadonlyArray<XmlRpcValue>

/** Arguments of `host.subtask` (kojid sends them all as keywords). */
export interface SubtaskArgs {
  readonly method: string
  readonly arglist: ReadonlyArray<XmlRpcValue>
  readonly parent: number
  readonly label?: string | null | undefined
  readonly arch?: string | null | undefined
  readonly priority?: number | null | undefined
  readonly channel?: string | number | null | undefined
  /** The host (id or name) to create the subtask ASSIGNED to (restartHosts uses it). */
  readonly assign?: number | string | null | undefined
  readonly kwargs?: XmlRpcStruct | null | undefined
  /** Other `host.subtask` keywords, passed through as given (dependantTask's `task[2]`). */
  readonly extra?: XmlRpcStruct | undefined
}

/** The three ways a method calls the hub: decoded with a Schema, answer ignored, answer as sent. */
interface Callers {
  readonly session: AnonymousSession
  readonly as: <A, I>(schema: Schema.Schema<A, I>, method: string, params?: Params, kw?: Kwargs) => Effect.Effect<A, E>
  readonly unit: (method: string, params?: Params, kw?: Kwargs) => Effect.Effect<void, E>
  readonly value: (method: string, params?: Params, kw?: Kwargs) => Effect.Effect<XmlRpcValue, E>
}

const callers = (session: AnonymousSession): Callers => ({
  session,
  as: (schema, method, params = [], kw) => session.callAs(schema, method, params, kw),
  unit: (method, params = [], kw) => Effect.asVoid(session.call(method, params, kw)),
  value: (method, params = [], kw) => session.call(method, params, kw)
})

const taskIdKw = (taskId: number | undefined): Kwargs | undefined => (taskId === undefined ? undefined : { task_id: taskId })

/** `host.*` calls of the task life cycle: heartbeat, taking, subtasks, waiting, closing. */
const hostTaskCalls = ({ as, unit, value }: Callers) => ({
  /** `host.getID()` → our host id. */
  getID: () => as(Schema.Number, "host.getID"),
  /** `host.getHost()` → our host row. */
  getHost: () => as(S.HostInfo, "host.getHost"),
  /**
   * `host.updateHost` — the heartbeat. With `data` kojid sends `(load, ready, data=…)`; at
   * shutdown it sends `(task_load=…, ready=…)` as keywords (§13).
   */
  updateHost: (taskLoad: number, ready: boolean, data?: XmlRpcStruct) =>
    data === undefined
      ? unit("host.updateHost", [], { task_load: new Double(taskLoad), ready })
      : unit("host.updateHost", [new Double(taskLoad), ready], { data }),
  /** `host.setHostData(hostdata)` (1.34+). */
  setHostData: (hostdata: XmlRpcStruct | string) => unit("host.setHostData", [hostdata]),
  /** `host.getTasks()` → tasks the scheduler assigned to us. */
  getTasks: () => as(Schema.Array(S.HostTask), "host.getTasks"),
  /** `host.getLoadData()` (legacy flow). */
  getLoadData: () => value("host.getLoadData"),
  /** `host.refuseTask(task_id, soft=, msg=)`. */
  refuseTask: (taskId: number, opts: { readonly soft?: boolean; readonly msg?: string } = {}) =>
    unit("host.refuseTask", [taskId], { soft: opts.soft, msg: opts.msg }),
  /** `host.openTask(task_id)` → the task (with `request` as raw XML) or nil when someone else got it. */
  openTask: (taskId: number) => as(Schema.NullOr(S.TaskInfo), "host.openTask", [taskId]),
  /** `host.setTaskWeight(task_id, weight)`; the weight goes as `<double>`. */
  setTaskWeight: (taskId: number, weight: number) => unit("host.setTaskWeight", [taskId, new Double(weight)]),
  /** `host.closeTask(task_id, response)`; `response` is a methodResponse document (§4.5). */
  closeTask: (taskId: number, response: string) => unit("host.closeTask", [taskId, response]),
  /** `host.failTask(task_id, response)`; `response` is a fault document (§4.5). */
  failTask: (taskId: number, response: string) => unit("host.failTask", [taskId, response]),
  /** `host.freeTasks(task_ids)`; kojid sends it even with an empty list at shutdown. */
  freeTasks: (taskIds: ReadonlyArray<number>) => unit("host.freeTasks", [taskIds]),
  /** `host.getHostTasks()` → our OPEN tasks. */
  getHostTasks: () => as(Schema.Array(S.OpenHostTask), "host.getHostTasks"),
  /**
   * `host.subtask(method=, arglist=, …, parent=)` → the new task id; all keywords in the order
   * the recorded kojid sends them (koji-captures/kojid/build), `extra` passed through as given.
   */
  subtask: (args: SubtaskArgs) =>
    as(Schema.Number, "host.subtask", [], {
      method: args.method,
      arglist: args.arglist,
      label: args.label,
      arch: args.arch,
      priority: args.priority,
      channel: args.channel,
      assign: args.assign,
      kwargs: args.kwargs,
      parent: args.parent,
      ...args.extra
    }),
  /** `host.subtask2(parent, taskopts, method, *args)` → the new task id. */
  subtask2: (parent: number, taskopts: XmlRpcStruct, method: string, args: Params = [], kw?: Kwargs) =>
    as(Schema.Number, "host.subtask2", [parent, taskopts, method, ...args], kw),
  /** `host.taskSetWait(parent, tasks)`; nil = all children. */
  taskSetWait: (parent: number, tasks: ReadonlyArray<number> | null) => unit("host.taskSetWait", [parent, tasks]),
  /** `host.taskWait(parent)` → `[finished, unfinished]`. */
  taskWait: (parent: number) => as(S.TaskWaitResult, "host.taskWait", [parent]),
  /** `host.taskWaitResults(parent, tasks, canfail=)`; kojid always sends `canfail`. */
  taskWaitResults: (parent: number, tasks: ReadonlyArray<number> | null, canfail: ReadonlyArray<number> | null = null) =>
    as(S.TaskWaitResults, "host.taskWaitResults", [parent, tasks], { canfail })
})

/** `host.*` calls of buildroots, builds and tagging. */
const hostBuildCalls = ({ as, unit, value }: Callers) => ({
  /** `host.newBuildRoot(repo_id, arch, task_id=)` → buildroot id. */
  newBuildRoot: (repoId: number, arch: string, taskId?: number) =>
    as(Schema.Number, "host.newBuildRoot", [repoId, arch], taskIdKw(taskId)),
  /** `host.setBuildRootState(brootid, state, task_id=)`; state as int or name. */
  setBuildRootState: (brootId: number, state: number | string, taskId?: number) =>
    unit("host.setBuildRootState", [brootId, state], taskIdKw(taskId)),
  /** `host.setBuildRootList(brootid, rpmlist, task_id=)` (state INIT). */
  setBuildRootList: (brootId: number, rpmlist: ReadonlyArray<XmlRpcStruct>, taskId?: number) =>
    unit("host.setBuildRootList", [brootId, rpmlist], taskIdKw(taskId)),
  /** `host.updateBuildRootList(brootid, rpmlist, task_id=)` (state BUILDING). */
  updateBuildRootList: (brootId: number, rpmlist: ReadonlyArray<XmlRpcStruct>, taskId?: number) =>
    unit("host.updateBuildRootList", [brootId, rpmlist], taskIdKw(taskId)),
  /** `host.updateBuildrootArchives(brootid, task_id, archives, project=)`. */
  updateBuildrootArchives: (brootId: number, taskId: number, archives: Params, project?: boolean) =>
    unit("host.updateBuildrootArchives", [brootId, taskId, archives], { project }),
  /** `host.updateMavenBuildRootList(brootid, task_id, mavenlist, …)`. */
  updateMavenBuildRootList: (brootId: number, taskId: number, mavenlist: Params, kw?: Kwargs) =>
    unit("host.updateMavenBuildRootList", [brootId, taskId, mavenlist], kw),
  /** `host.initBuild(data)` → build id. */
  initBuild: (data: XmlRpcStruct) => as(Schema.Number, "host.initBuild", [data]),
  /** `host.completeBuild(task_id, build_id, srpm, rpms, brmap, logs=)` → the build. */
  completeBuild: (taskId: number, buildId: number, srpm: string, rpms: ReadonlyArray<string>, brmap: XmlRpcStruct, logs?: XmlRpcStruct) =>
    value("host.completeBuild", [taskId, buildId, srpm, rpms, brmap], { logs }),
  /** `host.failBuild(task_id, build_id)`. */
  failBuild: (taskId: number, buildId: number) => unit("host.failBuild", [taskId, buildId]),
  /** `host.moveBuildToScratch(task_id, srpm, rpms, logs=)`. */
  moveBuildToScratch: (taskId: number, srpm: string, rpms: ReadonlyArray<string>, logs?: XmlRpcStruct) =>
    unit("host.moveBuildToScratch", [taskId, srpm, rpms], { logs }),
  /** `host.tagBuild(task_id, tag, build, force=, fromtag=)`; kojid sends both keywords. */
  tagBuild: (taskId: number, tag: Ref, build: Ref, force: boolean | null = null, fromtag: Ref | null = null) =>
    unit("host.tagBuild", [taskId, tag, build], { force, fromtag }),
  /** `host.tagNotification(is_successful, tag_id, from_id, build_id, user_id, ignore_success, failure_msg)`, positional. */
  tagNotification: (isSuccessful: boolean, tagId: number | null, fromId: number | null, buildId: number, userId: number | null, ignoreSuccess = false, failureMsg?: string) =>
    unit("host.tagNotification", failureMsg === undefined
      ? [isSuccessful, tagId, fromId, buildId, userId, ignoreSuccess]
      : [isSuccessful, tagId, fromId, buildId, userId, ignoreSuccess, failureMsg])
})

/** `host.*` calls of policies and repos, and any other `host.*` call. */
const hostRepoCalls = ({ as, unit, value, session }: Callers) => ({
  /** `host.checkPolicy(name, data, default=, strict=)` → `[allowed, reason]`. */
  checkPolicy: (name: string, data: XmlRpcStruct, opts: { readonly default?: string; readonly strict?: boolean } = {}) =>
    as(S.PolicyResult, "host.checkPolicy", [name, data], { default: opts.default, strict: opts.strict }),
  /** `host.assertPolicy(name, data, default=)`; ActionNotAllowed when denied. */
  assertPolicy: (name: string, data: XmlRpcStruct, defaultAction?: string) =>
    unit("host.assertPolicy", [name, data], { default: defaultAction }),
  /** `host.evalPolicy(name, data)` → the action string, or nil (kojid reads it as `or ''`). */
  hostEvalPolicy: (name: string, data: XmlRpcStruct) => as(Schema.NullOr(Schema.String), "host.evalPolicy", [name, data]),
  /** `host.repoInit(tag, opts=, task_id=, event=)` → `[repo_id, event_id]`; `event` only when given, as kojid. */
  repoInit: (tag: Ref, opts: { readonly taskId?: number; readonly event?: number | null; readonly opts?: XmlRpcValue } = {}) =>
    as(S.RepoInitResult, "host.repoInit", [tag], { opts: opts.opts, task_id: opts.taskId, ...(opts.event === undefined || opts.event === null ? {} : { event: opts.event }) }),
  /** `host.repoDone(repo_id, data, expire=, repo_json_updates=)`. */
  repoDone: (repoId: number, data: XmlRpcStruct, opts: { readonly expire?: boolean; readonly repoJsonUpdates?: XmlRpcStruct } = {}) =>
    unit("host.repoDone", [repoId, data], { expire: opts.expire, repo_json_updates: opts.repoJsonUpdates }),
  /** `host.distRepoMove(repo_id, uploadpath, arch)`. */
  distRepoMove: (repoId: number, uploadpath: string, arch: string) => unit("host.distRepoMove", [repoId, uploadpath, arch]),
  /** `host.writeSignedRPM(rpm_id, sigkey)` for each pair, in one multiCall; each its own answer. */
  writeSignedRPMs: (pairs: ReadonlyArray<readonly [number, string]>) =>
    session.multiCall(pairs.map(([id, key]) => ({ method: "host.writeSignedRPM", params: [id, key] }))),
  /** `host.isEnabled()`. */
  isEnabled: () => as(Schema.Boolean, "host.isEnabled"),
  /** Any other `host.*` call (maven, image, win imports), undecoded. */
  hostCall: (method: string, params: Params = [], kw?: Kwargs) => value(`host.${method}`, params, kw)
})

/** Non-host calls kojid makes about tasks and buildroots (end of §4.11). */
const taskQueries = ({ as, unit, value }: Callers) => ({
  /** `echo(*args)` → the args. */
  echo: (...args: ReadonlyArray<XmlRpcValue>) => value("echo", args),
  /** `getSessionInfo()`. */
  getSessionInfo: () => as(S.SessionDetails, "getSessionInfo"),
  /** `getTaskInfo(id, request=, strict=)`; nil for a missing task unless strict. */
  getTaskInfo: (taskId: number, opts: { readonly request?: boolean; readonly strict?: boolean } = {}) =>
    as(Schema.NullOr(S.TaskInfo), "getTaskInfo", [taskId], { request: opts.request, strict: opts.strict }),
  /** `getTaskInfo([ids])` → one entry (or nil) per id, in order. */
  getTaskInfos: (taskIds: ReadonlyArray<number>, opts: { readonly request?: boolean } = {}) =>
    as(Schema.Array(Schema.NullOr(S.TaskInfo)), "getTaskInfo", [taskIds], { request: opts.request }),
  /** `getTaskResult(id)`; the task's fault when it failed. */
  getTaskResult: (taskId: number) => value("getTaskResult", [taskId]),
  /** `getTaskRequest(id)` → the decoded params. */
  getTaskRequest: (taskId: number) => value("getTaskRequest", [taskId]),
  /** `getTaskChildren(id)`. */
  getTaskChildren: (taskId: number) => as(Schema.Array(S.TaskInfo), "getTaskChildren", [taskId]),
  /** `taskFinished(id)`. */
  taskFinished: (taskId: number) => as(Schema.Boolean, "taskFinished", [taskId]),
  /** `cancelTaskChildren(id)` (allowed for the host that owns the task). */
  cancelTaskChildren: (taskId: number) => unit("cancelTaskChildren", [taskId]),
  /** `listBuildroots(hostID=, state=, buildrootID=, taskID=)`. */
  listBuildroots: (opts: {
    readonly hostID?: number
    readonly state?: ReadonlyArray<number> | number
    readonly buildrootID?: ReadonlyArray<number> | number
    readonly taskID?: number
  }) => as(Schema.Array(S.BuildrootInfo), "listBuildroots", [], { hostID: opts.hostID, state: opts.state, buildrootID: opts.buildrootID, taskID: opts.taskID }),
  /** `getBuildrootListing(id)`: the buildroot's packages. */
  getBuildrootListing: (brootId: number) => as(Schema.Array(S.BuildrootListingEntry), "getBuildrootListing", [brootId]),
  /** `getBuildroot(id)`. */
  getBuildroot: (brootId: number) => as(Schema.NullOr(S.BuildrootInfo), "getBuildroot", [brootId])
})

/** Non-host calls about repos, tags, targets and events. */
const tagQueries = ({ as }: Callers) => ({
  /** `repoInfo(id, strict=)`. */
  repoInfo: (repoId: number, strict?: boolean) => as(Schema.NullOr(S.RepoInfo), "repoInfo", [repoId], { strict }),
  /** `getRepo(tag, state=, event=, dist=)`. */
  getRepo: (tag: Ref, opts: { readonly state?: number; readonly event?: number | null; readonly dist?: boolean } = {}) =>
    as(Schema.NullOr(S.RepoInfo), "getRepo", [tag], { state: opts.state, event: opts.event, dist: opts.dist }),
  /** `getRepo(tag)` as the hub's whole struct (kojid hands it on to createrepo as the old repo), or nil. */
  getRepoStruct: (tag: Ref) => as(Schema.NullOr(S.Struct), "getRepo", [tag]),
  /** `repo.request(tag, min_event=, at_event=, opts=)`; kojid sends all three. */
  repoRequest: (tag: Ref, opts: { readonly minEvent?: number | null; readonly atEvent?: number | null; readonly opts?: XmlRpcStruct | null } = {}) =>
    as(S.RepoRequestResult, "repo.request", [tag], { min_event: opts.minEvent ?? null, at_event: opts.atEvent ?? null, opts: opts.opts ?? null }),
  /** `repo.checkRequest(req_id)`. */
  repoCheckRequest: (requestId: number) => as(S.Struct, "repo.checkRequest", [requestId]),
  /** `repo.get(tag, …)`. */
  repoGet: (tag: Ref, kw?: Kwargs) => as(Schema.NullOr(S.RepoInfo), "repo.get", [tag], kw),
  /** `getBuildConfig(tag, event=)`; the keyword is sent only when an event is given, as kojid does. */
  getBuildConfig: (tag: Ref, event?: number | null) =>
    as(S.TagInfo, "getBuildConfig", [tag], event === undefined ? undefined : { event }),
  /** `getTag(tag, strict=, event=)`; the keywords go in the caller's order (kojid's call sites differ). */
  getTag: (tag: Ref | XmlRpcStruct, opts: { readonly strict?: boolean; readonly event?: number | null } = {}) =>
    as(Schema.NullOr(S.TagInfo), "getTag", [tag], opts),
  /** `getBuildTarget(target, event=, strict=)`. */
  getBuildTarget: (target: Ref, opts: { readonly event?: number | null; readonly strict?: boolean } = {}) =>
    as(Schema.NullOr(S.BuildTarget), "getBuildTarget", [target], { event: opts.event, strict: opts.strict }),
  /** `getPackageConfig(tag, pkg, event=)`. */
  getPackageConfig: (tag: Ref, pkg: Ref, event?: number | null) =>
    as(Schema.NullOr(S.PackageConfig), "getPackageConfig", [tag, pkg], event === undefined ? undefined : { event }),
  /** `getAverageBuildDuration(pkg, age=)` → seconds or nil. */
  getAverageBuildDuration: (pkg: Ref, age?: number) =>
    as(Schema.NullOr(Schema.Number), "getAverageBuildDuration", [pkg], { age }),
  /** `getLastEvent(before=, strict=)`. */
  getLastEvent: (opts: { readonly before?: number; readonly strict?: boolean } = {}) =>
    as(Schema.NullOr(S.EventInfo), "getLastEvent", [], { before: opts.before, strict: opts.strict }),
  /** `tagLastChangeEvent(tag)`. */
  tagLastChangeEvent: (tag: Ref) => as(Schema.NullOr(Schema.Number), "tagLastChangeEvent", [tag]),
  /** `tagFirstChangeEvent(tag, after=)`. */
  tagFirstChangeEvent: (tag: Ref, after?: number) => as(Schema.NullOr(Schema.Number), "tagFirstChangeEvent", [tag], { after }),
  /** `listTagged(tag, event=, package=, inherit=)`. */
  listTagged: (tag: Ref, opts: { readonly event?: number | null; readonly package?: string; readonly inherit?: boolean } = {}) =>
    as(Schema.Array(S.Struct), "listTagged", [tag], { event: opts.event, package: opts.package, inherit: opts.inherit }),
  /** `listTaggedRPMS(tag, event=, latest=, …)` → `[rpms, builds]`; the keywords go in the caller's order. */
  listTaggedRPMS: (tag: Ref | XmlRpcStruct, opts: {
    readonly event?: number | null
    readonly arch?: string
    readonly latest?: boolean | XmlRpcValue
    readonly inherit?: boolean | XmlRpcValue
    readonly draft?: boolean | null
    readonly rpmsigs?: boolean
  } = {}) => as(Schema.Tuple(Schema.Array(S.Struct), Schema.Array(S.Struct)), "listTaggedRPMS", [tag], opts),
  /** `getExternalRepoList(tag, event=)`. */
  getExternalRepoList: (tag: Ref, event?: number | null) =>
    as(Schema.Array(S.ExternalRepo), "getExternalRepoList", [tag], event === undefined ? undefined : { event }),
  /** `getFullInheritance(tag)`. */
  getFullInheritance: (tag: Ref) => as(Schema.Array(S.InheritanceLink), "getFullInheritance", [tag])
})

/** Non-host calls about builds, users, hosts, task output and uploads. */
const otherQueries = ({ as, value }: Callers) => ({
  /** `getChannel(id, strict=)`. */
  getChannel: (channel: Ref, strict?: boolean) => as(Schema.NullOr(S.ChannelInfo), "getChannel", [channel], { strict }),
  /** `getBuild(build, strict=)`. */
  getBuild: (build: Ref | XmlRpcStruct, strict?: boolean) => as(Schema.NullOr(S.BuildInfo), "getBuild", [build], { strict }),
  /** `getUser(user)`. */
  getUser: (user: Ref) => as(Schema.NullOr(S.UserInfo), "getUser", [user]),
  /** `listBuilds(taskID=)`. */
  listBuilds: (kw: Kwargs) => as(Schema.Array(S.BuildInfo), "listBuilds", [], kw),
  /** `listTaskOutput(task, all_volumes=, stat=)`. */
  listTaskOutput: (taskId: number, opts: { readonly allVolumes?: boolean; readonly stat?: boolean } = {}) =>
    value("listTaskOutput", [taskId], { stat: opts.stat, all_volumes: opts.allVolumes }),
  /** `listTaskOutput(task)` → the file names. */
  listTaskOutputNames: (taskId: number) => as(Schema.Array(Schema.String), "listTaskOutput", [taskId]),
  /** `downloadTaskOutput(task, file, offset=, size=)` → the bytes (the hub sends base64 text or `<base64>`). */
  downloadTaskOutput: (taskId: number, fileName: string, opts: { readonly offset: number; readonly size: number }) =>
    Effect.map(as(Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf), "downloadTaskOutput", [taskId, fileName], opts), (block) =>
      typeof block === "string" ? new Uint8Array(Buffer.from(block, "base64")) : block),
  /** `getAPIVersion()`. */
  getAPIVersion: () => as(Schema.Number, "getAPIVersion"),
  /** `getChangelogEntries(build, queryOpts=)`. */
  getChangelogEntries: (build: Ref, queryOpts?: XmlRpcStruct) =>
    as(Schema.Array(S.Struct), "getChangelogEntries", [build], { queryOpts }),
  /** `getHost(id)`. */
  getHostById: (host: Ref) => as(Schema.NullOr(S.HostInfo), "getHost", [host]),
  /** `listHosts(…)`. */
  listHosts: (kw: Kwargs = {}) => as(Schema.Array(S.Struct), "listHosts", [], kw),
  /** `evalPolicy(name, data)` (non-host variant). */
  evalPolicy: (name: string, data: XmlRpcStruct) => as(Schema.NullOr(Schema.String), "evalPolicy", [name, data]),
  /** `checkUpload(path, name, verify=, tail=, volume=)` → nil when the file is missing. */
  checkUpload: (path: string, name: string, opts: { readonly verify?: "adler32" | "md5" | "sha256"; readonly tail?: number; readonly volume?: string } = {}) =>
    as(S.UploadCheck, "checkUpload", [path, name], { verify: opts.verify, tail: opts.tail, volume: opts.volume }),
  /** Legacy `uploadFile(path, name, size, checksum, offset, data, volume=)` → false on a digest mismatch (§6.2). */
  uploadFile: (path: string, name: string, size: number, checksum: readonly [string, string], offset: number, base64Data: string, volume?: string) =>
    as(Schema.Boolean, "uploadFile", [path, name, size, checksum, offset, base64Data], { volume })
})

/** Builds the typed API over a session (a logged-in Session for host calls). */
export const hostApi = (session: AnonymousSession) => {
  const c = callers(session)
  return {
    ...hostTaskCalls(c),
    ...hostBuildCalls(c),
    ...hostRepoCalls(c),
    ...taskQueries(c),
    ...tagQueries(c),
    ...otherQueries(c)
  }
}

/** The typed API object returned by `hostApi`. */
export type HostApi = ReturnType<typeof hostApi>

/** A call a cycle step awaits; see `cycleCalls`. */
export interface PendingCall<A> {
  /** Its answer: sends the call (with the batch it belongs to) the first time, then remembers. */
  readonly await: Effect.Effect<A, E>
}

/**
 * The calls of one step of the daemon loop, batched or not behind one interface (§1.8). A step
 * issues its calls up front and awaits their answers where it needs them. Batching, every call
 * not yet sent goes out in one `multiCall` at the first await (a single call goes out alone);
 * not batching, each call goes out when it is first awaited — so the hub sees kojid's exact
 * order, and a call the step never awaits is never sent, as kojid would not have made it.
 */
export const cycleCalls = (session: Session, batching: boolean) => {
  interface Entry {
    readonly call: BatchCall
    sent: boolean
    answer: Either.Either<XmlRpcValue, E> | undefined
  }
  const queue: Array<Entry> = []

  const flush = Effect.gen(function*() {
    const pending = queue.filter((q) => !q.sent)
    if (pending.length === 0) return
    for (const q of pending) q.sent = true
    if (pending.length === 1) {
      const only = pending[0]!
      only.answer = yield* Effect.either(session.call(only.call.method, only.call.params ?? [], only.call.kwargs))
      return
    }
    const results = yield* Effect.either(session.multiCall(pending.map((q) => q.call)))
    pending.forEach((q, i) => {
      q.answer = Either.isLeft(results)
        ? Either.left(results.left)
        : results.right[i] ?? Either.left(new HubError({ reason: "Decode", method: "multiCall", message: `multiCall: no answer for ${q.call.method}` }))
    })
  })

  const add = <A, I>(schema: Schema.Schema<A, I>, method: string, params: Params = [], kwargs?: Kwargs): PendingCall<A> => {
    const entry: Entry = { call: { method, params, kwargs }, sent: false, answer: undefined }
    if (batching) queue.push(entry)
    const raw: Effect.Effect<XmlRpcValue, E> = Effect.suspend(() => {
      if (entry.answer !== undefined) return entry.answer
      const send = batching
        ? flush
        : Effect.map(Effect.either(session.call(method, params, kwargs)), (answer) => void (entry.answer = answer))
      return Effect.flatMap(send, () => entry.answer ?? Either.left(new HubError({ reason: "Decode", method, message: `no answer for ${method}` })))
    })
    return { await: Effect.flatMap(raw, decodeAs(schema, method)) }
  }

  return {
    batching,
    getHostTasks: () => add(Schema.Array(S.OpenHostTask), "host.getHostTasks"),
    getHost: () => add(S.HostInfo, "host.getHost"),
    logoutChild: (sessionId: number) => add(Schema.Unknown, "logoutChild", [sessionId]),
    updateHost: (taskLoad: number, ready: boolean, data: XmlRpcStruct) =>
      add(Schema.Unknown, "host.updateHost", [new Double(taskLoad), ready], { data }),
    getTasks: () => add(Schema.Array(S.HostTask), "host.getTasks"),
    openTask: (taskId: number) => add(Schema.NullOr(S.TaskInfo), "host.openTask", [taskId]),
    setTaskWeight: (taskId: number, weight: number) => add(Schema.Unknown, "host.setTaskWeight", [taskId, new Double(weight)])
  }
}

/** The calls of one loop step. */
export type CycleCalls = ReturnType<typeof cycleCalls>
