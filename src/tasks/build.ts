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

/** Builds the `build` handler with the daemon's options. */
export const makeBuildHandler = (options: BuildTaskOptions) => {

  const run = (src: XmlRpcValue, target: string | number | null, optsIn: XmlRpcStruct | null, ctx: TaskContext) =>
    Effect.gen(function*() {
      const api: HostApi = hostApi(ctx.session)
      const opts: Record<string, XmlRpcValue> = { ...(optsIn ?? {}) }
      const scratch = pythonTruthy(opts["scratch"])
      yield* checkArchOverride({ scratch: opts["scratch"], arch_override: opts["arch_override"] })
      let eventId: number | null = null
      let repoInfo: S.RepoInfo | null = null
      const repoIdOpt = opts["repo_id"]
      if (repoIdOpt !== undefined && repoIdOpt !== null) {
        if (typeof repoIdOpt !== "number") return yield* new BuildError({ faultString: `No such repo: ${String(repoIdOpt)}` })
        repoInfo = yield* api.repoInfo(repoIdOpt)
        if (repoInfo === null) return yield* new BuildError({ faultString: `No such repo: ${repoIdOpt}` })
        const state = stateName(RepoState, repoInfo.state)
        if (state !== "READY" && state !== "EXPIRED") {
          return yield* new BuildError({ faultString: `Bad repo: ${repoInfo.id} (${state})` })
        }
        eventId = repoInfo.create_event
      }
      const meta = opts["custom_user_metadata"]
      if (pythonTruthy(meta) && !isStruct(meta)) {
        return yield* new BuildError({ faultString: "custom_user_metadata must be serializable to a JSON object" })
      }
      if (typeof src !== "string") return yield* new BuildError({ faultString: `Invalid source specification: ${JSON.stringify(src)}` })
      const fromScm = isScmUrl(src)

      const taskInfo = yield* api.getTaskInfo(ctx.taskId)
      const owner = taskInfo?.owner ?? null
      const targetInfo = target === null || target === "" ? null : yield* api.getBuildTarget(target, { event: eventId })
      let destTag: number
      let buildTag: number
      if (targetInfo !== null) {
        destTag = targetInfo.dest_tag
        buildTag = targetInfo.build_tag
        if (repoInfo !== null && repoInfo.tag_id !== targetInfo.build_tag) {
          return yield* new BuildError({ faultString: `Repo/Target mismatch: ${repoInfo.tag_name}/${targetInfo.build_tag_name}` })
        }
      } else {
        if (repoInfo === null) return yield* new GenericError({ faultString: `unknown build target: ${target}` })
        buildTag = repoInfo.tag_id ?? 0
        if (target === null) {
          opts["skip_tag"] = true
          destTag = buildTag
        } else {
          const taginfo = yield* api.getTag(target, { event: eventId })
          if (taginfo === null) return yield* new GenericError({ faultString: `neither tag nor target: ${target}` })
          destTag = taginfo.id
        }
      }
      const skipTag = pythonTruthy(opts["skip_tag"])
      const policyData: Record<string, XmlRpcValue> = {
        user_id: owner,
        source: src,
        task_id: ctx.taskId,
        build_tag: buildTag,
        skip_tag: skipTag,
        scratch: opts["scratch"] ?? null,
        draft: opts["draft"] ?? null,
        from_scm: fromScm,
        repo_id: opts["repo_id"] ?? null
      }
      if (targetInfo !== null) policyData["target"] = targetInfo.name
      if (!skipTag) policyData["tag"] = destTag
      if (!fromScm && !scratch) yield* api.assertPolicy("build_from_srpm", policyData)
      if (opts["repo_id"] !== undefined && opts["repo_id"] !== null) yield* api.assertPolicy("build_from_repo_id", policyData)
      yield* api.assertPolicy("build_rpm", policyData)

      if (repoInfo === null) {
        const waitBuilds = opts["wait_builds"]
        repoInfo = yield* getRepo(ctx, buildTag, {
          builds: Array.isArray(waitBuilds) ? waitBuilds.map(String) : null,
          wait: pythonTruthy(opts["wait_repo"])
        })
        const last = yield* api.getLastEvent()
        eventId = last?.id ?? null
      }
      const repoId = repoInfo.id
      const buildConfig = () => api.getBuildConfig(buildTag, eventId)

      /** `choose_taskarch`: the build config is read only for a noarch that is not a literal arch. */
      const taskArch = (arch: string, header: SrpmArchFields | null) =>
        Effect.gen(function*() {
          if (multiFnmatch(arch, options.literal_task_arches) || arch !== "noarch") {
            return yield* chooseTaskArch({
              arch, literalTaskArches: options.literal_task_arches,
              tag: { id: buildTag, name: "", arches: "" }, header, choose: options.choose
            })
          }
          const cfg = yield* buildConfig()
          return yield* chooseTaskArch({
            arch, literalTaskArches: options.literal_task_arches, tag: tagArchConfig(cfg), header, choose: options.choose
          })
        })

      // getSRPM
      let srpm = src
      let source: { readonly source: string; readonly url: string } | undefined
      const srpmSubtask = (method: string) =>
        Effect.gen(function*() {
          const arch = yield* taskArch("noarch", null)
          const id = yield* ctx.subtask(method, [src, buildTag, { repo_id: repoId, scratch: opts["scratch"] ?? null }], {
            label: "srpm",
            arch
          })
          const results = yield* ctx.wait(id)
          const result = yield* decodeResult(SrpmResult, method, results.get(id))
          if (result.source !== undefined) source = result.source
          else yield* Effect.logWarning("subtask did not provide source data")
          return result.srpm
        })
      if (fromScm) {
        srpm = yield* srpmSubtask("buildSRPMFromSCM")
      } else {
        const cfg = yield* buildConfig()
        let rebuild: XmlRpcValue = cfg.extra?.["rebuild_srpm"] ?? true
        if (scratch && opts["rebuild_srpm"] !== undefined && opts["rebuild_srpm"] !== null) rebuild = opts["rebuild_srpm"]
        if (pythonTruthy(rebuild)) srpm = yield* srpmSubtask("rebuildSRPM")
      }

      const h = yield* readSrpmHeader(options.readFile ?? hubFileReader(ctx.files.topurls[0] ?? "", ctx.files.topdir), srpm)
      const data: Record<string, XmlRpcValue> = {
        name: h.name, version: h.version, release: h.release, epoch: h.epoch, task_id: ctx.taskId
      }
      if (source !== undefined) {
        data["source"] = source.source
        data["extra"] = { source: { original_url: source.url } }
      }
      if (pythonTruthy(meta) && isStruct(meta)) {
        const extra = isStruct(data["extra"]) ? data["extra"] : {}
        data["extra"] = { ...extra, custom_user_metadata: meta }
      }

      yield* Effect.logInfo(`Reading package config for ${h.name}`)
      const pkgCfg = yield* api.getPackageConfig(destTag, h.name, eventId)
      const extraArches = pkgCfg?.extra_arches ?? null
      if (!skipTag && !scratch) {
        const destName = targetInfo?.dest_tag_name ?? String(destTag)
        if (pkgCfg === null) return yield* new BuildError({ faultString: `package ${h.name} not in list for tag ${destName}` })
        if (pkgCfg.blocked) return yield* new BuildError({ faultString: `package ${h.name} is blocked for tag ${destName}` })
      }
      const archCfg = yield* buildConfig()
      const archOverride = opts["arch_override"]
      const archlist = yield* buildArchList({
        tag: tagArchConfig(archCfg),
        extraArches,
        header: h,
        scratch,
        archOverride: typeof archOverride === "string" ? archOverride : null
      })
      if (pythonTruthy(opts["draft"])) data["draft"] = opts["draft"] ?? null

      const buildId = scratch ? null : yield* api.initBuild(data)
      const failany = pythonTruthy(opts["fail_fast"]) || !options.build_arch_can_fail

      const runBuilds = Effect.gen(function*() {
        yield* Effect.logDebug(`Spawning jobs for arches: ${archlist.join(", ")}`)
        const subtasks: Array<readonly [string, number]> = []
        let keepSrpm = true
        for (const arch of archlist) {
          const taskarch = yield* taskArch(arch, h)
          const id = yield* ctx.subtask("buildArch", [srpm, buildTag, arch, keepSrpm, { repo_id: repoId }], {
            label: arch,
            arch: taskarch
          })
          subtasks.push([arch, id])
          keepSrpm = false
        }
        const results = yield* ctx.wait(subtasks.map(([, id]) => id), { all: true, failany })
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
            if (builtSrpm !== null) return yield* new BuildError({ faultString: `multiple builds returned a srpm.  task ${ctx.taskId}` })
            builtSrpm = r.srpms[0]!
            brmap[builtSrpm] = r.brootid
          }
        }
        if (builtSrpm === null) return yield* new BuildError({ faultString: "could not find a built srpm" })
        return { srpm: builtSrpm, rpms, brmap, logs }
      })

      yield* Effect.gen(function*() {
        const r = yield* runBuilds
        if (scratch) yield* api.moveBuildToScratch(ctx.taskId, r.srpm, r.rpms, r.logs)
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

      if (!skipTag && !scratch && buildId !== null) {
        const id = yield* ctx.subtask("tagBuild", [destTag, buildId, false, null, true], { label: "tag", arch: "noarch" })
        yield* ctx.wait(id)
      }
      return null
    })

  return defineHandler({
    name: "BuildTask",
    methods: ["build"],
    weight: 0.2,
    signature: buildSignature,
    run: ({ src, target, opts }, ctx) => run(src, target, opts, ctx)
  })
}

/** The `build` handler, with kojid.conf's `literal_task_arches` and `build_arch_can_fail`. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, AdjutantConfig> = Effect.map(AdjutantConfig, (config) => [
  makeBuildHandler({ literal_task_arches: config.kojid.literal_task_arches, build_arch_can_fail: config.kojid.build_arch_can_fail })
])
