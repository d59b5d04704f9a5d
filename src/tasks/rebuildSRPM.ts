/**
 * `rebuildSRPM` (kojid RebuildSRPM, koji-protocol.md §7.4): rebuild an uploaded SRPM in an
 * `srpm-build` buildroot so it carries the build system's macros, and upload it. Returns
 * `{srpm, logs, brootid, source: {source, url}}` (source and url are the SRPM's basename).
 */
import { Effect, Either, Schema } from "effect"
import * as path from "node:path"
import { type Buildroot, Buildroots } from "../buildroot/Buildroots.js"
import { readRpmHeader } from "../buildroot/rpmHeader.js"
import { fetchWorkFile } from "../buildroot/taskFiles.js"
import { BuildError } from "../koji/faults.js"
import { type HostApi, hostApi } from "../hub/HostApi.js"
import { uploadWrapper } from "../hub/Uploads.js"
import { findBuildrootArch } from "./arches.js"
import { checkTagHost, requireRepo, TaskOpts } from "./buildArch.js"
import { TagRef } from "../koji/refs.js"
import { defineHandler, optional, required, signature, type TaskHandler } from "./handler.js"
import { taskRelPath } from "../koji/paths.js"

/**
 * The tag and buildroot arch of an SRPM task, as kojid's RebuildSRPM and BuildSRPMFromSCMTask
 * find them: `getTag(build_tag, strict=True, event=)`, then `find_arch('noarch', getHost(),
 * getBuildConfig(tag, event=))`.
 */
export const srpmBuildrootArch = (api: HostApi, buildTag: string | number, event: number, preferredArch: string | null) =>
  Effect.gen(function*() {
    const tag = yield* api.getTag(buildTag, { strict: true, event })
    if (tag === null) return yield* new BuildError({ faultString: `No such tag: ${String(buildTag)}` })
    const hostInfo = yield* api.getHost()
    const tagConfig = yield* api.getBuildConfig(tag.id, event)
    const arch = findBuildrootArch({
      arch: "noarch",
      host: { name: hostInfo.name, arches: hostInfo.arches },
      tag: { id: tagConfig.id, name: tagConfig.name, arches: tagConfig.arches ?? null },
      preferredArch
    })
    if (Either.isLeft(arch)) return yield* arch.left
    return { tag, arch: arch.right }
  })

/**
 * The one SRPM an SRPM task's buildroot left, checked as kojid does: exactly one `*.src.rpm` (the
 * faults name `shownDir`), named `N-V-R.src.rpm` after its own header; copied out into `outDir`.
 */
export const resultSrpm = (broot: Buildroot, outDir: string, shownDir: string) =>
  Effect.gen(function*() {
    const results = yield* broot.collect({ outDir })
    if (results.srpms.length === 0) return yield* new BuildError({ faultString: `No srpms found in ${shownDir}` })
    if (results.srpms.length > 1) {
      return yield* new BuildError({ faultString: `Multiple srpms found in ${shownDir}: ${results.srpms.map((r) => r.name).join(", ")}` })
    }
    const taken = results.srpms[0]!
    const h = taken.header
    const srpmName = `${h.name}-${h.version}-${h.release}.src.rpm`
    if (srpmName !== taken.name) return yield* new BuildError({ faultString: `srpm name mismatch: ${srpmName} != ${taken.name}` })
    return taken
  })

/** The rebuildSRPM handler over a Buildroots service. */
export const rebuildSrpmHandler = (buildroots: Buildroots["Type"]): TaskHandler =>
  defineHandler({
    name: "RebuildSRPM",
    methods: ["rebuildSRPM"],
    weight: 1.0,
    signature: signature("RebuildSRPM.handler", {
      srpm: required(Schema.String),
      build_tag: required(TagRef),
      opts: optional(TaskOpts, null)
    }),
    checkHost: (p, host, session) => checkTagHost(p.build_tag, host, session),
    run: (p, ctx) =>
      Effect.gen(function* () {
        const api = hostApi(ctx.session)
        const { repo, repoId } = yield* requireRepo(api, p.opts)
        const { tag, arch } = yield* srpmBuildrootArch(api, p.build_tag, repo.create_event, null)
        const broot = yield* buildroots.open(
          { taskId: ctx.taskId, tag: tag.id, arch, repoId, installGroup: "srpm-build", workdir: ctx.workdir },
          ctx.buildrootHub
        )
        const input = yield* fetchWorkFile(ctx.files, p.srpm, path.join(ctx.workdir, "input"), "Input SRPM file")
        // kojid leaves a binary rpm to mock, whose failure does not say why; say it as readSRPMHeader does.
        const given = yield* readRpmHeader(input).pipe(Effect.mapError((e) => new BuildError({ faultString: `${p.srpm}: ${e.message}` })))
        if (!given.sourcepackage) return yield* new BuildError({ faultString: `${p.srpm} is not a source package` })
        yield* broot.rebuildSrpm(input)
        // kojid names mock's result directory in these faults.
        const taken = yield* resultSrpm(broot, path.join(ctx.workdir, "results"), broot.mockResultDir)
        const srpmName = taken.name
        const logs = yield* broot.finishLogs
        const uploadPath = taskRelPath(ctx.taskId)
        yield* uploadWrapper(ctx.session, taken.file, uploadPath)
        yield* broot.expire
        return {
          srpm: `${uploadPath}/${srpmName}`,
          logs: logs.map((f) => `${uploadPath}/${f}`),
          brootid: broot.id,
          source: { source: srpmName, url: srpmName }
        }
      })
  })

/** The `rebuildSRPM` handler, over the Buildroots service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, Buildroots> = Effect.map(Buildroots, (b) => [rebuildSrpmHandler(b)])
