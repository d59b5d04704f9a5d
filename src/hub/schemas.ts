/**
 * Schemas of the hub's answers that kojid reads (koji-protocol.md §4.11, shapes as recorded in
 * koji-captures/kojid). Fields the daemon relies on are required; the rest are optional so that
 * older and newer hubs still decode. Datetimes arrive as strings (§1.2): use the `*_ts` floats.
 */
import { Schema } from "effect"
import type { XmlRpcValue } from "./xmlrpc.js"

/** Any XML-RPC value, passed through as decoded (values from the decoder are XmlRpcValues by construction). */
export const Value: Schema.Schema<XmlRpcValue> = Schema.declare(
  (u: unknown): u is XmlRpcValue => u !== undefined,
  { identifier: "XmlRpcValue" }
)

/** A struct of arbitrary values. */
export const Struct = Schema.Record({ key: Schema.String, value: Value })

const NullableNumber = Schema.NullOr(Schema.Number)
const NullableString = Schema.NullOr(Schema.String)
const opt = <S extends Schema.Schema.Any>(s: S) => Schema.optional(s)

/** `getTaskInfo` / `host.openTask` row. `request` is decoded params from getTaskInfo(request=True) and the raw XML string from openTask (§12). */
export const TaskInfo = Schema.Struct({
  id: Schema.Number,
  state: Schema.Number,
  method: Schema.String,
  arch: opt(Schema.String),
  channel_id: opt(Schema.Number),
  host_id: opt(NullableNumber),
  owner: opt(NullableNumber),
  parent: opt(NullableNumber),
  priority: opt(Schema.Number),
  weight: opt(Schema.Number),
  label: opt(NullableString),
  waiting: opt(Schema.NullOr(Schema.Boolean)),
  awaited: opt(Schema.NullOr(Schema.Boolean)),
  create_ts: opt(NullableNumber),
  start_ts: opt(NullableNumber),
  completion_ts: opt(NullableNumber),
  create_time: opt(NullableString),
  start_time: opt(NullableString),
  completion_time: opt(NullableString),
  request: opt(Value)
})
/** A task row. */
export type TaskInfo = typeof TaskInfo.Type

/** `host.getHost()` (§4.11). `arches` is space separated. */
export const HostInfo = Schema.Struct({
  id: Schema.Number,
  user_id: Schema.Number,
  name: Schema.String,
  update_ts: opt(NullableNumber),
  ready: Schema.Boolean,
  task_load: Schema.Number,
  arches: Schema.String,
  capacity: Schema.Number,
  description: opt(NullableString),
  comment: opt(NullableString),
  enabled: Schema.Boolean
})
/** Our host row. */
export type HostInfo = typeof HostInfo.Type

/** One entry of `host.getTasks()`: an ASSIGNED (or FREE, old flow) task offered to us. */
export const HostTask = Schema.Struct({
  id: Schema.Number,
  state: Schema.Number,
  method: Schema.String,
  arch: Schema.String,
  channel_id: Schema.Number,
  priority: Schema.Number,
  host_id: opt(NullableNumber),
  create_ts: opt(NullableNumber)
})
/** A task offered to us. */
export type HostTask = typeof HostTask.Type

/** One entry of `host.getHostTasks()`: an OPEN task of ours. `alert` wakes a waiting task. */
export const OpenHostTask = Schema.Struct({
  id: Schema.Number,
  waiting: Schema.NullOr(Schema.Boolean),
  weight: Schema.Number,
  alert: opt(Schema.NullOr(Schema.Boolean))
})
/** An OPEN task of ours. */
export type OpenHostTask = typeof OpenHostTask.Type

/** One `listBuildroots`/`getBuildroot` entry. */
export const BuildrootInfo = Schema.Struct({
  id: Schema.Number,
  state: NullableNumber,
  arch: opt(NullableString),
  host_id: opt(NullableNumber),
  host_name: opt(NullableString),
  repo_id: opt(NullableNumber),
  repo_state: opt(NullableNumber),
  repo_create_event_id: opt(NullableNumber),
  tag_id: opt(NullableNumber),
  tag_name: opt(NullableString),
  task_id: opt(NullableNumber),
  br_type: opt(NullableNumber),
  container_type: opt(NullableString),
  container_arch: opt(NullableString),
  create_event_id: opt(NullableNumber),
  create_ts: opt(NullableNumber),
  retire_event_id: opt(NullableNumber),
  retire_ts: opt(NullableNumber),
  extra: opt(Schema.NullOr(Struct))
})
/** A buildroot row. */
export type BuildrootInfo = typeof BuildrootInfo.Type

/** `repoInfo` / `getRepo` / `repo.get`. */
export const RepoInfo = Schema.Struct({
  id: Schema.Number,
  state: Schema.Number,
  tag_id: opt(Schema.Number),
  tag_name: opt(Schema.String),
  create_event: Schema.Number,
  create_ts: opt(NullableNumber),
  begin_event: opt(NullableNumber),
  end_event: opt(NullableNumber),
  dist: opt(Schema.Boolean),
  opts: opt(Schema.NullOr(Struct)),
  custom_opts: opt(Schema.NullOr(Struct)),
  task_id: opt(NullableNumber),
  task_state: opt(NullableNumber),
  creation_ts: opt(NullableNumber),
  state_ts: opt(NullableNumber)
})
/** A repo row. */
export type RepoInfo = typeof RepoInfo.Type

/** `repo.request(tag, …)`: an existing repo, or the request to wait on. */
export const RepoRequestResult = Schema.Struct({
  repo: Schema.NullOr(RepoInfo),
  request: Schema.NullOr(Struct),
  duplicate: opt(Schema.Boolean)
})
/** Result of repo.request. */
export type RepoRequestResult = typeof RepoRequestResult.Type

/** `getBuildConfig` / `getTag`. */
export const TagInfo = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  arches: opt(NullableString),
  locked: opt(Schema.Boolean),
  perm: opt(NullableString),
  perm_id: opt(NullableNumber),
  maven_support: opt(Schema.Boolean),
  maven_include_all: opt(Schema.Boolean),
  extra: opt(Struct),
  query_event: opt(NullableNumber),
  config_inheritance: opt(Struct)
})
/** A tag / build config. */
export type TagInfo = typeof TagInfo.Type

/** `getBuildTarget`. */
export const BuildTarget = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  build_tag: Schema.Number,
  build_tag_name: Schema.String,
  dest_tag: Schema.Number,
  dest_tag_name: Schema.String
})
/** A build target. */
export type BuildTarget = typeof BuildTarget.Type

/** `getLastEvent`. */
export const EventInfo = Schema.Struct({ id: Schema.Number, ts: Schema.Number })
/** An event. */
export type EventInfo = typeof EventInfo.Type

/** `getPackageConfig`. */
export const PackageConfig = Schema.Struct({
  blocked: Schema.Boolean,
  extra_arches: opt(NullableString),
  owner_id: opt(NullableNumber),
  owner_name: opt(NullableString),
  package_id: Schema.Number,
  package_name: Schema.String,
  tag_id: Schema.Number,
  tag_name: opt(Schema.String)
})
/** A package's config in a tag. */
export type PackageConfig = typeof PackageConfig.Type

/** `getBuild` / `host.completeBuild`. */
export const BuildInfo = Schema.Struct({
  id: Schema.Number,
  build_id: opt(Schema.Number),
  name: Schema.String,
  version: Schema.String,
  release: Schema.String,
  epoch: Schema.NullOr(Schema.Number),
  nvr: Schema.String,
  state: Schema.Number,
  task_id: opt(NullableNumber),
  owner_id: opt(Schema.Number),
  owner_name: opt(Schema.String),
  package_id: opt(Schema.Number),
  package_name: opt(Schema.String),
  volume_id: opt(Schema.Number),
  volume_name: opt(Schema.String),
  source: opt(NullableString),
  draft: opt(Schema.Boolean),
  extra: opt(Schema.NullOr(Struct)),
  creation_ts: opt(NullableNumber),
  completion_ts: opt(NullableNumber)
})
/** A build. */
export type BuildInfo = typeof BuildInfo.Type

/** One package of a buildroot as `getBuildrootListing` returns it. */
export const BuildrootListingEntry = Schema.Struct({
  rpm_id: Schema.Number,
  name: Schema.String,
  version: Schema.String,
  release: Schema.String,
  epoch: Schema.NullOr(Schema.Number),
  arch: Schema.String,
  build_id: opt(Schema.NullOr(Schema.Number)),
  external_repo_id: opt(Schema.NullOr(Schema.Number)),
  external_repo_name: opt(Schema.NullOr(Schema.String)),
  is_update: opt(Schema.Boolean)
})
/** One package of a buildroot. */
export type BuildrootListingEntry = typeof BuildrootListingEntry.Type

/** One `getFullInheritance` link (the fields a builder reads). */
export const InheritanceLink = Schema.Struct({
  parent_id: Schema.Number,
  currdepth: opt(Schema.Number)
})
/** An inheritance link. */
export type InheritanceLink = typeof InheritanceLink.Type

/** `getChannel`. */
export const ChannelInfo = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  enabled: opt(Schema.Boolean),
  description: opt(NullableString),
  comment: opt(NullableString)
})
/** A channel. */
export type ChannelInfo = typeof ChannelInfo.Type

/** One `getExternalRepoList` entry. */
export const ExternalRepo = Schema.Struct({
  external_repo_id: Schema.Number,
  external_repo_name: Schema.String,
  url: Schema.String,
  priority: Schema.Number,
  merge_mode: opt(Schema.String),
  arches: opt(NullableString),
  tag_id: opt(Schema.Number),
  tag_name: opt(Schema.String)
})
/** An external repo of a tag. */
export type ExternalRepo = typeof ExternalRepo.Type

/** `getUser`. */
export const UserInfo = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  status: opt(Schema.Number),
  usertype: opt(Schema.Number),
  krb_principals: opt(Schema.Array(Schema.String))
})
/** A user. */
export type UserInfo = typeof UserInfo.Type

/** `getSessionInfo`. */
export const SessionDetails = Schema.Struct({
  user_id: Schema.Number,
  authtype: Schema.Number,
  callnum: opt(NullableNumber),
  exclusive: opt(Schema.NullOr(Schema.Boolean)),
  expired: opt(Schema.Boolean),
  master: opt(NullableNumber),
  start_ts: opt(NullableNumber),
  renew_ts: opt(NullableNumber)
})
/** Details of the current session. */
export type SessionDetails = typeof SessionDetails.Type

/** `checkUpload`: nil when the file is missing (§6.1). */
export const UploadCheck = Schema.NullOr(
  Schema.Struct({
    size: Schema.Union(Schema.Number, Schema.BigIntFromSelf),
    mtime: opt(Schema.Number),
    sumlength: opt(Schema.Union(Schema.Number, Schema.BigIntFromSelf)),
    hexdigest: opt(Schema.String)
  })
)
/** Result of checkUpload. */
export type UploadCheck = typeof UploadCheck.Type

/** `host.taskWait(parent)` → `[finished, unfinished]`. */
export const TaskWaitResult = Schema.Tuple(Schema.Array(Schema.Number), Schema.Array(Schema.Number))

/** `host.taskWaitResults` → `[[task_id, result], …]`. */
export const TaskWaitResults = Schema.Array(Schema.Tuple(Schema.Number, Value))

/** `host.repoInit` → `[repo_id, event_id]`. */
export const RepoInitResult = Schema.Tuple(Schema.Number, Schema.Number)

/** `host.checkPolicy` → `[allowed, reason]`. */
export const PolicyResult = Schema.Tuple(Schema.Boolean, Schema.String)

/** `listTaskOutput` (without stat): file names. */
export const TaskOutputList = Schema.Union(Schema.Array(Schema.String), Struct)
