/**
 * `buildArch` (kojid BuildArchTask, koji-protocol.md §7.2): build one SRPM for one arch in a
 * fresh buildroot of the task's repo and upload the RPMs (and with `keep_srpm` the SRPM) into
 * the task directory. Returns `{rpms, srpms, logs, brootid}` with paths relative to work.
 */
import { TagRef } from "../koji/refs.js"
import { Effect, Either, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { Buildroots } from "../buildroot/Buildroots.js"
import { readRpmHeader } from "../buildroot/rpmHeader.js"
import { resultArches } from "../buildroot/config.js"
import { fetchWorkFile } from "../buildroot/taskFiles.js"
import { BuildError, ParameterError } from "../koji/faults.js"
import { type HostApi, hostApi } from "../hub/HostApi.js"
import * as S from "../hub/schemas.js"
import { uploadWrapper } from "../hub/Uploads.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { checkHostArch, findBuildrootArch } from "./arches.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskContext, type TaskHandler } from "./handler.js"
import { taskRelPath } from "../koji/paths.js"

/** `opts` of build handlers: a struct (repo_id, …) or nil. */
export const TaskOpts = Schema.NullOr(S.Struct)

/** kojid's BuildArchTask weight before the package is known. */
export const BUILD_ARCH_WEIGHT = 1.5

/** `opts.repo_id`, required (BuildError as kojid raises it). */
export const requireRepoId = (opts: Readonly<Record<string, XmlRpcValue>> | null) => {
  const id = opts?.["repo_id"]
  return typeof id === "number" && id !== 0
    ? Effect.succeed(id)
    : Effect.fail(new BuildError({ faultString: "A repo id must be provided" }))
}

/** `repoInfo(opts['repo_id'], strict=True)` after the repo id check, as each build handler starts. */
export const requireRepo = (api: HostApi, opts: Readonly<Record<string, XmlRpcValue>> | null) =>
  Effect.gen(function*() {
    const repoId = yield* requireRepoId(opts)
    const repo = yield* api.repoInfo(repoId, true)
    if (repo === null) return yield* new BuildError({ faultString: `No such repo: ${repoId}` })
    return { repoId, repo }
  })

/** kojid's `updateWeight`: 1.5 + min(18, avg/4800) when the package has a positive average duration. */
export const weightFromDuration = (avg: number | null): number | undefined =>
  avg === null || avg <= 0 ? undefined : BUILD_ARCH_WEIGHT + Math.min(18.0, avg / 4800.0)

/** `checkHostArch(tag, hostdata)`: `getBuildConfig(tag)` on the main session. */
export const checkTagHost = (tag: string | number, host: S.HostInfo, session: TaskContext["session"]) =>
  Effect.map(hostApi(session).getBuildConfig(tag), (config) => checkHostArch(config.arches, host.arches))

/** The noarch rpmdiff record kojid uploads as `noarch_rpmdiff.json`, a digest of each noarch rpm's header. */
const rpmdiffHash = (file: string) =>
  Effect.promise(async () => {
    const buf = await fsp.readFile(file)
    return createHash("sha256").update(buf.subarray(0, Math.min(buf.length, 1 << 20))).digest("hex")
  })

/** The buildArch handler over a Buildroots service. */
export const buildArchHandler = (buildroots: Buildroots["Type"]): TaskHandler =>
  defineHandler({
    name: "BuildArchTask",
    methods: ["buildArch"],
    weight: BUILD_ARCH_WEIGHT,
    signature: signature("BuildArchTask.handler", {
      pkg: required(Schema.String),
      root: required(TagRef),
      arch: required(Schema.String),
      keep_srpm: required(AnyValue),
      opts: optional(TaskOpts, null)
    }),
    checkHost: (p, host, session) => checkTagHost(p.root, host, session),
    run: (p, ctx) =>
      Effect.gen(function* () {
        const api = hostApi(ctx.session)
        const { repo, repoId } = yield* requireRepo(api, p.opts)
        const srpm = yield* fetchWorkFile(ctx.files, p.pkg, path.join(ctx.workdir, "input"))
        const h = yield* readRpmHeader(srpm).pipe(Effect.mapError((e) => new BuildError({ faultString: e.message })))
        if (!h.sourcepackage) return yield* new BuildError({ faultString: "not a source package" })

        // updateWeight (hubs < 1.23 have no `age`).
        const avg = yield* api.getAverageBuildDuration(h.name, 6).pipe(
          Effect.catchIf((e): e is ParameterError => e instanceof ParameterError, () => api.getAverageBuildDuration(h.name))
        )
        const weight = weightFromDuration(avg)
        if (weight !== undefined) yield* api.setTaskWeight(ctx.taskId, weight)
        else if (avg !== null && avg < 0) yield* Effect.logWarning(`Negative average build duration for ${h.name}: ${avg}`)

        const preferred = p.arch === "noarch" ? (yield* api.getTaskInfo(ctx.taskId))?.arch ?? null : null
        const hostInfo = yield* api.getHost()
        const tagConfig = yield* api.getBuildConfig(p.root, repo.create_event)
        const brArch = findBuildrootArch({
          arch: p.arch,
          host: { name: hostInfo.name, arches: hostInfo.arches },
          tag: { id: tagConfig.id, name: tagConfig.name, arches: tagConfig.arches ?? null },
          preferredArch: preferred
        })
        if (Either.isLeft(brArch)) return yield* brArch.left

        const broot = yield* buildroots.open(
          { taskId: ctx.taskId, tag: p.root, arch: brArch.right, repoId, installGroup: "build", workdir: ctx.workdir },
          ctx.buildrootHub
        )
        yield* broot.build(srpm, p.arch)
        const logs = [...(yield* broot.finishLogs)]
        const results = yield* broot.collect({ outDir: path.join(ctx.workdir, "results"), arches: resultArches(p.arch) })
        if (results.unexpected.length > 0) yield* Effect.logDebug(`unexpected: ${results.unexpected.map((f) => JSON.stringify(f)).join(", ")}`)
        const uploadPath = taskRelPath(ctx.taskId)

        const noarch = results.rpms.filter((r) => r.name.endsWith(".noarch.rpm"))
        if (noarch.length > 0) {
          const hashes: Record<string, string> = {}
          for (const r of noarch) hashes[r.name] = yield* rpmdiffHash(r.file)
          const file = path.join(ctx.workdir, "noarch_rpmdiff.json")
          yield* Effect.promise(() => fsp.writeFile(file, JSON.stringify({ [String(ctx.taskId)]: hashes }, null, 2)))
          yield* uploadWrapper(ctx.session, file, uploadPath)
          logs.push("noarch_rpmdiff.json")
        }
        for (const r of results.rpms) yield* uploadWrapper(ctx.session, r.file, uploadPath)
        const keep = p.keep_srpm !== null && p.keep_srpm !== false && p.keep_srpm !== 0 && p.keep_srpm !== ""
        if (keep) {
          if (results.srpms.length === 0) return yield* new BuildError({ faultString: `no srpm files found for task ${ctx.taskId}` })
          if (results.srpms.length > 1) {
            return yield* new BuildError({ faultString: `multiple srpm files found for task ${ctx.taskId}: ${results.srpms.map((r) => r.name).join(", ")}` })
          }
          const srpmOut = results.srpms[0]!
          if (!srpmOut.header.packager) return yield* new BuildError({ faultString: "The build system failed to set the packager tag" })
          if (!srpmOut.header.vendor) return yield* new BuildError({ faultString: "The build system failed to set the vendor tag" })
          if (!srpmOut.header.distribution) return yield* new BuildError({ faultString: "The build system failed to set the distribution tag" })
          yield* uploadWrapper(ctx.session, srpmOut.file, uploadPath)
        }
        const truncated = yield* broot.truncatedLogs
        const result = {
          rpms: results.rpms.map((r) => `${uploadPath}/${r.name}`),
          srpms: keep ? results.srpms.map((r) => `${uploadPath}/${r.name}`) : [],
          logs: logs.map((f) => `${uploadPath}/${f}`),
          brootid: broot.id,
          // Not kojid's: the logs that were cut at log_max_size (the parent build ignores unknown keys).
          ...(truncated.length > 0 ? { truncated_logs: truncated.map((f) => `${uploadPath}/${f}`) } : {})
        }
        yield* broot.expire
        return result
      })
  })

/** The `buildArch` handler, over the Buildroots service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, Buildroots> = Effect.map(Buildroots, (b) => [buildArchHandler(b)])
