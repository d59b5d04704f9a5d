/**
 * `buildSRPMFromSCM` (BuildSRPMFromSCMTask, weight 1.0; koji-protocol.md §7.3, §8): vet the SCM
 * URL (kojid.conf `allowed_scms`, the hub's `build_from_scm` policy), open an `srpm-build`
 * buildroot of the repo (network on, as kojid sets up DNS), check the sources out in a container
 * (the Scm service), pick and check the spec, build the SRPM (source command, then
 * `rpmbuild -bs`), upload it and return `{srpm, logs, brootid, source}` where `source.source`
 * is the URL with the commit hash. The hub calls follow the recorded kojid
 * (koji-captures/kojid/scm-build, session 115).
 */
import type { TaskError } from "./errors.js"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import { type Buildroot, Buildroots } from "../buildroot/Buildroots.js"
import { realDirUnder } from "../buildroot/results.js"
import { BuildError } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { uploadWrapper } from "../hub/Uploads.js"
import type { XmlRpcStruct } from "../hub/xmlrpc.js"
import type { PolicyValue, ScmRules } from "../scm/allowed.js"
import { CONTAINER_SCMDIR, faultFor, Scm, type ScmCheckout, ScmError, type ScmSpec } from "../scm/Scm.js"
import { checkTagHost, requireRepo, TaskOpts } from "./buildArch.js"
import { TagRef } from "../koji/refs.js"
import { resultSrpm, srpmBuildrootArch } from "./rebuildSRPM.js"
import { defineHandler, optional, required, signature, type TaskHandler } from "./handler.js"
import { taskRelPath } from "../koji/paths.js"

/**
 * kojid's `broot.build_srpm(spec, sourcedir, source_cmd)`: run the source command in the
 * buildroot (cwd = the module directory), then `rpmbuild -bs` the spec with the sources, the
 * SRPM landing in `broot.resultDir`. Supplied by the buildroot side.
 */
export type BuildSrpmFromSpec = (
  broot: Buildroot,
  spec: ScmSpec,
  checkout: ScmCheckout,
  rules: ScmRules,
  taskId: number
) => Effect.Effect<void, TaskError>

/**
 * The default `build_srpm`: the source command in a checkout container, then `rpmbuild -bs
 * --nodeps` there only to pack the spec and its sources into an SRPM, which the `srpm-build`
 * buildroot then rebuilds (`Buildroot.rebuildSrpm`), so the SRPM gets the build tag's macros
 * exactly as an uploaded one does (koji-protocol.md §7.4).
 */
export const packThenRebuild = (scm: Scm["Type"]): BuildSrpmFromSpec => (broot, spec, checkout, rules, taskId) =>
  Effect.gen(function*() {
    yield* scm.runSourceCmd({ ...checkout, rules }, {}, { taskId })
    const inContainer = (rel: string) => (rel === "" ? CONTAINER_SCMDIR : `${CONTAINER_SCMDIR}/${rel}`)
    const pack = [
      "rpmbuild", "-bs", "--nodeps",
      "--define", `_topdir ${CONTAINER_SCMDIR}/.koji-srpm/top`,
      "--define", `_sourcedir ${inContainer(spec.sourcesDirRelative)}`,
      "--define", `_srcrpmdir ${CONTAINER_SCMDIR}/.koji-srpm/out`,
      inContainer(spec.specFileRelative)
    ]
    yield* scm.runSourceCmd({ ...checkout, rules: { useCommon: rules.useCommon, sourceCmd: pack } }, { network: "none" }, { taskId }).pipe(
      Effect.mapError((e) =>
        e._tag === "ScmError"
          ? new BuildError({ faultString: e.message.replace(/^error retrieving sources/, "error building srpm") })
          : e
      )
    )
    // The checkout is the package's: its directories may be links out of it, so the path is
    // checked a component at a time before the daemon reads there.
    const outDir = yield* realDirUnder(checkout.scmdir, ".koji-srpm/out")
    const packed = outDir === undefined
      ? []
      : (yield* Effect.promise(() => fsp.readdir(outDir).catch(() => [] as Array<string>))).filter((f) => f.endsWith(".src.rpm"))
    if (outDir === undefined || packed.length !== 1) return yield* new BuildError({ faultString: `No srpms found in ${checkout.sourcedirRelative || "."}` })
    yield* broot.rebuildSrpm(path.join(outDir, packed[0]!))
  })

/** What the handler needs. */
export interface BuildSrpmFromScmDeps {
  /** `Buildroots.open`. */
  readonly openBuildroot: Buildroots["Type"]["open"]
  readonly scm: Pick<Scm["Type"], "parse" | "assertAllowed" | "checkout" | "findSpec">
  readonly buildSrpm: BuildSrpmFromSpec
}

/** The deps from the running services: Buildroots, Scm, and `packThenRebuild` for the SRPM. */
export const buildSrpmFromScmDeps = (buildroots: Buildroots["Type"], scm: Scm["Type"]): BuildSrpmFromScmDeps => ({
  openBuildroot: buildroots.open,
  scm,
  buildSrpm: packThenRebuild(scm)
})

const TaskRow = Schema.Struct({ owner: Schema.Number, channel_id: Schema.Number })

/** The `buildSRPMFromSCM` handler. */
export const buildSrpmFromScmHandler = (deps: BuildSrpmFromScmDeps): TaskHandler =>
  defineHandler({
    name: "BuildSRPMFromSCMTask",
    methods: ["buildSRPMFromSCM"],
    weight: 1.0,
    signature: signature("BuildSRPMFromSCMTask.handler", {
      url: required(Schema.String),
      build_tag: required(TagRef),
      opts: optional(TaskOpts, null)
    }),
    checkHost: (p, host, session) => checkTagHost(p.build_tag, host, session),
    run: (p, ctx) =>
      Effect.gen(function*() {
        const api = hostApi(ctx.session)
        const opts = p.opts ?? {}
        // SCM(url) raises before any hub call for a URL it cannot use.
        const scm = yield* deps.scm.parse(p.url)
        const info = yield* api.getTaskInfo(ctx.taskId, { request: true, strict: true })
        const task = yield* Schema.decodeUnknown(TaskRow)(info).pipe(
          Effect.mapError(() => new BuildError({ faultString: `task ${ctx.taskId} has no owner or channel` }))
        )
        const channel = yield* api.getChannel(task.channel_id, true)
        const scratch = opts["scratch"]
        const policyData: Record<string, PolicyValue> = {
          user_id: task.owner,
          channel: channel?.name ?? null,
          scratch: typeof scratch === "boolean" || typeof scratch === "number" || typeof scratch === "string" ? scratch : null
        }
        const rules = yield* deps.scm.assertAllowed(scm, {
          evalPolicy: (name: string, data: XmlRpcStruct) => api.evalPolicy(name, data),
          data: policyData
        })
        const { repo, repoId } = yield* requireRepo(api, opts)
        const { tag, arch } = yield* srpmBuildrootArch(api, p.build_tag, repo.create_event, info?.arch ?? null)
        const broot = yield* deps.openBuildroot(
          {
            taskId: ctx.taskId, tag: tag.id, arch, repoId, installGroup: "srpm-build", workdir: ctx.workdir,
            network: true
          },
          ctx.buildrootHub
        )
        const uploadPath = taskRelPath(ctx.taskId)
        // The checkout lives on the buildroot's bounded disk, as kojid's lives in the chroot.
        const checkout = yield* deps.scm.checkout(scm, rules, { taskId: ctx.taskId, workdir: broot.scratchDir }).pipe(
          // kojid streams checkout.log to the task directory; it is not one of the buildroot's logs.
          Effect.ensuring(
            uploadWrapper(ctx.session, path.join(broot.scratchDir, "checkout.log"), uploadPath).pipe(
              Effect.catchAll((e) => Effect.logWarning(`checkout.log not uploaded: ${String(e)}`))
            )
          )
        )
        const spec = yield* deps.scm.findSpec(checkout)
        yield* deps.buildSrpm(broot, spec, checkout, rules, ctx.taskId)
        const taken = yield* resultSrpm(broot, path.join(ctx.workdir, "results"), checkout.sourcedirRelative || ".")
        const srpmName = taken.name
        yield* uploadWrapper(ctx.session, taken.file, uploadPath)
        const logs = yield* broot.finishLogs
        yield* broot.expire
        return {
          srpm: `${uploadPath}/${srpmName}`,
          logs: logs.map((f) => `${uploadPath}/${f}`),
          brootid: broot.id,
          source: { url: checkout.source.url, source: checkout.source.source }
        }
      }).pipe(
        // An SCM problem is the fault kojid raises for it: GenericError for a URL it cannot parse
        // (or one with a password), BuildError for the rest (§8).
        Effect.catchIf((e): e is ScmError => e instanceof ScmError, (e) => Effect.fail(faultFor(e)))
      )
  })

/** The `buildSRPMFromSCM` handler, over the Buildroots and Scm services. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, Buildroots | Scm> = Effect.gen(function*() {
  return [buildSrpmFromScmHandler(buildSrpmFromScmDeps(yield* Buildroots, yield* Scm))]
})
