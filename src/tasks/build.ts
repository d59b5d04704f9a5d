/**
 * `build` (BuildTask, weight 0.2; koji-protocol.md §7.1): the parent task of an RPM build. It
 * resolves the target and the repo, asks the hub's policies, gets an SRPM (rebuildSRPM or
 * buildSRPMFromSCM subtask, label `srpm`), reads its header, registers the build
 * (`host.initBuild`, not for scratch), runs one buildArch subtask per arch (label = arch,
 * `keep_srpm` on the first), imports the result (`host.completeBuild` or
 * `host.moveBuildToScratch`; `host.failBuild` when anything in between fails) and tags it
 * (`tagBuild` subtask, label `tag`). Hub calls, their order and their argument shapes follow
 * the recorded kojid (koji-captures/kojid/build, scratch-build, failed-build, scm-build).
 */
import { RepoState, stateName } from "../koji/states.js"
import { Effect, Schema } from "effect"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { remoteFiles } from "../buildroot/packageList.js"
import { parseRpmHeader, type RpmHeaderInfo } from "../buildroot/rpmHeader.js"
import { BuildError, GenericError } from "../koji/faults.js"
import { type HostApi, hostApi } from "../hub/HostApi.js"
import type * as S from "../hub/schemas.js"
import { isStruct, pythonTruthy, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"
import { isScmUrl } from "../scm/url.js"
import { multiFnmatch } from "../koji/fnmatch.js"
import {
  buildArchList,
  checkArchOverride,
  type Choose,
  chooseTaskArch,
  type SrpmArchFields,
  type TagArchConfig
} from "./arches.js"
import { getRepo } from "./getRepo.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskContext, type TaskHandler } from "./handler.js"

// ---------------------------------------------------------------------------------------------
// SRPM headers

/** Reads files of the hub's tree as `koji.openRemoteFile` does: `<topurl>/<relpath>`, else `<topdir>/<relpath>`. */
export type ReadHubFile = (relpath: string) => Effect.Effect<Uint8Array | null, BuildError>

/** The default reader: the buildroot's `remoteFiles`, its faults as BuildError. */
export const hubFileReader = (topurl: string, topdir: string): ReadHubFile => {
  const files = remoteFiles(topurl, topdir)
  return (relpath) => files.read(relpath).pipe(Effect.mapError((e) => new BuildError({ faultString: e.faultString })))
}

/** `BuildTask.readSRPMHeader`: the header of `work/<srpm>`, which must be a source package. */
export const readSrpmHeader = (read: ReadHubFile, srpm: string): Effect.Effect<RpmHeaderInfo, BuildError> =>
  Effect.gen(function*() {
    const data = yield* read(`work/${srpm}`)
    if (data === null) return yield* new BuildError({ faultString: `SRPM ${srpm} not found under work/ on the hub` })
    const h = parseRpmHeader(data)
    if (typeof h === "string") return yield* new BuildError({ faultString: `${srpm} is not a source package (${h})` })
    if (!h.sourcepackage) return yield* new BuildError({ faultString: `${srpm} is not a source package` })
    return h
  })

// ---------------------------------------------------------------------------------------------
// The handler

/** The kojid.conf options `build` reads. */
export interface BuildTaskOptions {
  readonly literal_task_arches: string
  readonly build_arch_can_fail: boolean
  /** Random choice for noarch subtask arches (tests inject one). */
  readonly choose?: Choose
  /** How the SRPM is fetched (default: from the task's topurl/topdir). */
  readonly readFile?: ReadHubFile
}

const Opts = Schema.NullOr(Schema.Record({ key: Schema.String, value: AnyValue }))

/** The `build` signature: `handler(src, target, opts=None)`. */
export const buildSignature = signature("BuildTask.handler", {
  src: required(AnyValue),
  target: required(Schema.NullOr(Schema.Union(Schema.String, Schema.Number))),
  opts: optional(Opts, null)
})



const BuildArchResult = Schema.Struct({
  rpms: Schema.Array(Schema.String),
  srpms: Schema.Array(Schema.String),
  logs: Schema.Array(Schema.String),
  brootid: Schema.Number
})

const SrpmResult = Schema.Struct({
  srpm: Schema.String,
  source: Schema.optional(Schema.Struct({ source: Schema.String, url: Schema.String }))
})

const decodeResult = <A, I>(schema: Schema.Schema<A, I>, what: string, v: XmlRpcValue | undefined) =>
  Schema.decodeUnknown(schema)(v ?? null).pipe(
    Effect.mapError(() => new BuildError({ faultString: `${what} returned an unexpected result: ${JSON.stringify(v ?? null)}` }))
  )

/** The arch rules' view of a build config (`extra.noarch_arches` included). */
export const tagArchConfig = (cfg: S.TagInfo): TagArchConfig => {
  const noarch = cfg.extra?.["noarch_arches"]
  return { id: cfg.id, name: cfg.name, arches: cfg.arches ?? null, noarchArches: typeof noarch === "string" ? noarch : null }
}

/** An SRPM's source as its subtask reported it (`SCM.get_source()`). */
type SrpmSource = { readonly source: string; readonly url: string } | undefined

/** Where a build goes: the target (when there is one), its destination and its build tag. */
interface BuildTags {
  readonly targetInfo: S.BuildTarget | null
  readonly destTag: number
  readonly buildTag: number
}

/** One run of `build` once its tags and repo are settled (kojid's locals of BuildTask.handler). */
interface BuildRun extends BuildTags {
  readonly options: BuildTaskOptions
  readonly ctx: TaskContext
  readonly api: HostApi
  readonly src: string
  readonly opts: Record<string, XmlRpcValue>
  readonly scratch: boolean
  readonly skipTag: boolean
  readonly repoId: number
  readonly eventId: number | null
}

/** The `repo_id` option: that repo, which must be READY or EXPIRED; null without the option. */
const requestedRepo = (api: HostApi, opts: Record<string, XmlRpcValue>) =>
  Effect.gen(function*() {
    const repoIdOpt = opts["repo_id"]
    if (repoIdOpt === undefined || repoIdOpt === null) return null
    if (typeof repoIdOpt !== "number") return yield* new BuildError({ faultString: `No such repo: ${String(repoIdOpt)}` })
    const repoInfo = yield* api.repoInfo(repoIdOpt)
    if (repoInfo === null) return yield* new BuildError({ faultString: `No such repo: ${repoIdOpt}` })
    const state = stateName(RepoState, repoInfo.state)
    if (state !== "READY" && state !== "EXPIRED") {
      return yield* new BuildError({ faultString: `Bad repo: ${repoInfo.id} (${state})` })
    }
    return repoInfo
  })

/**
 * The tags from the target; without a target (a `repo_id` build) the build tag is the repo's and
 * the destination the tag named by `target`, or none (`skip_tag`, set in `opts` as kojid does).
 */
const resolveTags = (
  api: HostApi, target: string | number | null, opts: Record<string, XmlRpcValue>, repoInfo: S.RepoInfo | null, eventId: number | null
) =>
  Effect.gen(function*() {
    const targetInfo = target === null || target === "" ? null : yield* api.getBuildTarget(target, { event: eventId })
    if (targetInfo !== null) {
      if (repoInfo !== null && repoInfo.tag_id !== targetInfo.build_tag) {
        return yield* new BuildError({ faultString: `Repo/Target mismatch: ${repoInfo.tag_name}/${targetInfo.build_tag_name}` })
      }
      return { targetInfo, destTag: targetInfo.dest_tag, buildTag: targetInfo.build_tag } satisfies BuildTags
    }
    if (repoInfo === null) return yield* new GenericError({ faultString: `unknown build target: ${target}` })
    const buildTag = repoInfo.tag_id ?? 0
    if (target === null) {
      opts["skip_tag"] = true
      return { targetInfo, destTag: buildTag, buildTag } satisfies BuildTags
    }
    const taginfo = yield* api.getTag(target, { event: eventId })
    if (taginfo === null) return yield* new GenericError({ faultString: `neither tag nor target: ${target}` })
    return { targetInfo, destTag: taginfo.id, buildTag } satisfies BuildTags
  })

/** The hub's policies on this build: build_from_srpm (not for SCM or scratch), build_from_repo_id, build_rpm. */
const assertBuildPolicies = (
  api: HostApi, ctx: TaskContext, src: string, opts: Record<string, XmlRpcValue>, tags: BuildTags,
  build: { readonly owner: number | null; readonly fromScm: boolean; readonly scratch: boolean; readonly skipTag: boolean }
) =>
  Effect.gen(function*() {
    const policyData: Record<string, XmlRpcValue> = {
      user_id: build.owner,
      source: src,
      task_id: ctx.taskId,
      build_tag: tags.buildTag,
      skip_tag: build.skipTag,
      scratch: opts["scratch"] ?? null,
      draft: opts["draft"] ?? null,
      from_scm: build.fromScm,
      repo_id: opts["repo_id"] ?? null
    }
    if (tags.targetInfo !== null) policyData["target"] = tags.targetInfo.name
    if (!build.skipTag) policyData["tag"] = tags.destTag
    if (!build.fromScm && !build.scratch) yield* api.assertPolicy("build_from_srpm", policyData)
    if (opts["repo_id"] !== undefined && opts["repo_id"] !== null) yield* api.assertPolicy("build_from_repo_id", policyData)
    yield* api.assertPolicy("build_rpm", policyData)
  })

const buildConfig = (b: BuildRun) => b.api.getBuildConfig(b.buildTag, b.eventId)

/** `choose_taskarch`: the build config is read only for a noarch that is not a literal arch. */
const taskArch = (b: BuildRun, arch: string, header: SrpmArchFields | null) =>
  Effect.gen(function*() {
    const { literal_task_arches: literalTaskArches, choose } = b.options
    if (multiFnmatch(arch, literalTaskArches) || arch !== "noarch") {
      return yield* chooseTaskArch({ arch, literalTaskArches, tag: { id: b.buildTag, name: "", arches: "" }, header, choose })
    }
    const cfg = yield* buildConfig(b)
    return yield* chooseTaskArch({ arch, literalTaskArches, tag: tagArchConfig(cfg), header, choose })
  })

/** The SRPM made by a `rebuildSRPM` or `buildSRPMFromSCM` subtask (label `srpm`), and its source. */
const srpmSubtask = (b: BuildRun, method: string) =>
  Effect.gen(function*() {
    const arch = yield* taskArch(b, "noarch", null)
    const id = yield* b.ctx.subtask(method, [b.src, b.buildTag, { repo_id: b.repoId, scratch: b.opts["scratch"] ?? null }], {
      label: "srpm",
      arch
    })
    const results = yield* b.ctx.wait(id)
    const result = yield* decodeResult(SrpmResult, method, results.get(id))
    if (result.source === undefined) yield* Effect.logWarning("subtask did not provide source data")
    const source: SrpmSource = result.source
    return { srpm: result.srpm, source }
  })

/** `getSRPM`: from SCM, rebuilt (the tag's `rebuild_srpm`, overridable for scratch builds), or as uploaded. */
const getSrpm = (b: BuildRun, fromScm: boolean) =>
  Effect.gen(function*() {
    if (fromScm) return yield* srpmSubtask(b, "buildSRPMFromSCM")
    const cfg = yield* buildConfig(b)
    let rebuild: XmlRpcValue = cfg.extra?.["rebuild_srpm"] ?? true
    if (b.scratch && b.opts["rebuild_srpm"] !== undefined && b.opts["rebuild_srpm"] !== null) rebuild = b.opts["rebuild_srpm"]
    if (pythonTruthy(rebuild)) return yield* srpmSubtask(b, "rebuildSRPM")
    const source: SrpmSource = undefined
    return { srpm: b.src, source }
  })

/** `host.initBuild`'s data, in kojid's key order (`draft` is added later). */
const buildData = (taskId: number, h: RpmHeaderInfo, source: SrpmSource, meta: XmlRpcValue | undefined) => {
  const data: Record<string, XmlRpcValue> = {
    name: h.name, version: h.version, release: h.release, epoch: h.epoch, task_id: taskId
  }
  if (source !== undefined) {
    data["source"] = source.source
    data["extra"] = { source: { original_url: source.url } }
  }
  if (pythonTruthy(meta) && isStruct(meta)) {
    const extra = isStruct(data["extra"]) ? data["extra"] : {}
    data["extra"] = { ...extra, custom_user_metadata: meta }
  }
  return data
}

/** The package must be listed and not blocked in the destination tag (unless skipped); its arches. */
const archesFor = (b: BuildRun, h: RpmHeaderInfo) =>
  Effect.gen(function*() {
    yield* Effect.logInfo(`Reading package config for ${h.name}`)
    const pkgCfg = yield* b.api.getPackageConfig(b.destTag, h.name, b.eventId)
    const extraArches = pkgCfg?.extra_arches ?? null
    if (!b.skipTag && !b.scratch) {
      const destName = b.targetInfo?.dest_tag_name ?? String(b.destTag)
      if (pkgCfg === null) return yield* new BuildError({ faultString: `package ${h.name} not in list for tag ${destName}` })
      if (pkgCfg.blocked) return yield* new BuildError({ faultString: `package ${h.name} is blocked for tag ${destName}` })
    }
    const archCfg = yield* buildConfig(b)
    const archOverride = b.opts["arch_override"]
    return yield* buildArchList({
      tag: tagArchConfig(archCfg),
      extraArches,
      header: h,
      scratch: b.scratch,
      archOverride: typeof archOverride === "string" ? archOverride : null
    })
  })

/** One buildArch subtask per arch (label = arch), `keep_srpm` on the first. */
const spawnBuildArches = (b: BuildRun, srpm: string, archlist: ReadonlyArray<string>, h: RpmHeaderInfo) =>
  Effect.gen(function*() {
    yield* Effect.logDebug(`Spawning jobs for arches: ${archlist.join(", ")}`)
    const subtasks: Array<readonly [string, number]> = []
    let keepSrpm = true
    for (const arch of archlist) {
      const taskarch = yield* taskArch(b, arch, h)
      const id = yield* b.ctx.subtask("buildArch", [srpm, b.buildTag, arch, keepSrpm, { repo_id: b.repoId }], {
        label: arch,
        arch: taskarch
      })
      subtasks.push([arch, id])
      keepSrpm = false
    }
    return subtasks
  })

/** The buildArch results merged for the import: rpms, the buildroot of each, logs by arch, the one srpm. */
const mergeBuildArchResults = (
  taskId: number, subtasks: ReadonlyArray<readonly [string, number]>, results: ReadonlyMap<number, XmlRpcValue>
) =>
  Effect.gen(function*() {
    const rpms: Array<string> = []
    const brmap: Record<string, XmlRpcValue> = {}
    const logs: Record<string, Array<string>> = {}
    let builtSrpm: string | null = null
    for (const [arch, id] of subtasks) {
      const r = yield* decodeResult(BuildArchResult, `buildArch task ${id}`, results.get(id))
      for (const fn of r.rpms) {
        rpms.push(fn)
        brmap[fn] = r.brootid
      }
      for (const fn of r.logs) (logs[arch] ??= []).push(fn)
      if (r.srpms.length > 0) {
        if (builtSrpm !== null) return yield* new BuildError({ faultString: `multiple builds returned a srpm.  task ${taskId}` })
        builtSrpm = r.srpms[0]!
        brmap[builtSrpm] = r.brootid
      }
    }
    if (builtSrpm === null) return yield* new BuildError({ faultString: "could not find a built srpm" })
    return { srpm: builtSrpm, rpms, brmap, logs }
  })

/** The arch builds and their import (`completeBuild`, or `moveBuildToScratch`); `failBuild` when either fails. */
const buildAndImport = (b: BuildRun, srpm: string, archlist: ReadonlyArray<string>, h: RpmHeaderInfo, buildId: number | null) => {
  const failany = pythonTruthy(b.opts["fail_fast"]) || !b.options.build_arch_can_fail
  const { api, ctx } = b
  return Effect.gen(function*() {
    const subtasks = yield* spawnBuildArches(b, srpm, archlist, h)
    const results = yield* ctx.wait(subtasks.map(([, id]) => id), { all: true, failany })
    const r = yield* mergeBuildArchResults(ctx.taskId, subtasks, results)
    if (b.scratch) yield* api.moveBuildToScratch(ctx.taskId, r.srpm, r.rpms, r.logs)
    else yield* api.completeBuild(ctx.taskId, buildId!, r.srpm, r.rpms, r.brmap, r.logs)
  }).pipe(
    Effect.tapError(() =>
      buildId === null
        ? Effect.void
        : api.failBuild(ctx.taskId, buildId).pipe(
          Effect.catchAll((e) => Effect.logWarning(`host.failBuild(${ctx.taskId}, ${buildId}) failed: ${String(e)}`))
        )
    )
  )
}

/** Everything before the SRPM: options checked, tags and repo resolved, policies asserted. */
const settle = (options: BuildTaskOptions, src: XmlRpcValue, target: string | number | null, optsIn: XmlRpcStruct | null, ctx: TaskContext) =>
  Effect.gen(function*() {
    const api: HostApi = hostApi(ctx.session)
    const opts: Record<string, XmlRpcValue> = { ...(optsIn ?? {}) }
    const scratch = pythonTruthy(opts["scratch"])
    yield* checkArchOverride({ scratch: opts["scratch"], arch_override: opts["arch_override"] })
    const requested = yield* requestedRepo(api, opts)
    let eventId: number | null = requested === null ? null : requested.create_event
    const meta = opts["custom_user_metadata"]
    if (pythonTruthy(meta) && !isStruct(meta)) {
      return yield* new BuildError({ faultString: "custom_user_metadata must be serializable to a JSON object" })
    }
    if (typeof src !== "string") return yield* new BuildError({ faultString: `Invalid source specification: ${JSON.stringify(src)}` })
    const fromScm = isScmUrl(src)
    const taskInfo = yield* api.getTaskInfo(ctx.taskId)
    const tags = yield* resolveTags(api, target, opts, requested, eventId)
    const skipTag = pythonTruthy(opts["skip_tag"])
    yield* assertBuildPolicies(api, ctx, src, opts, tags, { owner: taskInfo?.owner ?? null, fromScm, scratch, skipTag })
    let repoInfo = requested
    if (repoInfo === null) {
      const waitBuilds = opts["wait_builds"]
      repoInfo = yield* getRepo(ctx, tags.buildTag, {
        builds: Array.isArray(waitBuilds) ? waitBuilds.map(String) : null,
        wait: pythonTruthy(opts["wait_repo"])
      })
      const last = yield* api.getLastEvent()
      eventId = last?.id ?? null
    }
    const b: BuildRun = { ...tags, options, ctx, api, src, opts, scratch, skipTag, repoId: repoInfo.id, eventId }
    return { b, fromScm, meta }
  })

const run = (options: BuildTaskOptions, src: XmlRpcValue, target: string | number | null, optsIn: XmlRpcStruct | null, ctx: TaskContext) =>
  Effect.gen(function*() {
    const { b, fromScm, meta } = yield* settle(options, src, target, optsIn, ctx)
    const { srpm, source } = yield* getSrpm(b, fromScm)
    const h = yield* readSrpmHeader(options.readFile ?? hubFileReader(ctx.files.topurls[0] ?? "", ctx.files.topdir), srpm)
    const data = buildData(ctx.taskId, h, source, meta)
    const archlist = yield* archesFor(b, h)
    if (pythonTruthy(b.opts["draft"])) data["draft"] = b.opts["draft"] ?? null
    const buildId = b.scratch ? null : yield* b.api.initBuild(data)
    yield* buildAndImport(b, srpm, archlist, h, buildId)
    if (!b.skipTag && !b.scratch && buildId !== null) {
      const id = yield* ctx.subtask("tagBuild", [b.destTag, buildId, false, null, true], { label: "tag", arch: "noarch" })
      yield* ctx.wait(id)
    }
    return null
  })

/** Builds the `build` handler with the daemon's options. */
export const makeBuildHandler = (options: BuildTaskOptions) =>
  defineHandler({
    name: "BuildTask",
    methods: ["build"],
    weight: 0.2,
    signature: buildSignature,
    run: ({ src, target, opts }, ctx) => run(options, src, target, opts, ctx)
  })

/** The `build` handler, with kojid.conf's `literal_task_arches` and `build_arch_can_fail`. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, AdjutantConfig> = Effect.map(AdjutantConfig, (config) => [
  makeBuildHandler({ literal_task_arches: config.kojid.literal_task_arches, build_arch_can_fail: config.kojid.build_arch_can_fail })
])
