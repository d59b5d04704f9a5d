/**
 * `build-local --target TARGET SRPM|SCM-URL`: build on this machine exactly what a builder of a
 * real koji hub would build, talking to the hub anonymously (no login, no host certificate).
 *
 * In kojid's order (BuildTask, RebuildSRPM / BuildSRPMFromSCMTask, BuildArchTask): the target's
 * build tag (or `--tag`); the tag's current repo (`--repo-id N`, or `--wait-repo` for one newer
 * than the tag's last change); the build config at the repo's event; the SRPM step in an
 * `srpm-build` buildroot — an SCM checkout in a container and the SRPM built from it, or the
 * given SRPM rebuilt unless the tag's `rebuild_srpm` extra is off; then the arch list kojid
 * makes (tag arches, the package's `extra_arches`, BuildArch/ExclusiveArch/ExcludeArch) and one
 * build for this machine's arch (or `--arch`) in a `build` buildroot. The buildroots are the
 * daemon's (same cache, macros, bootstrap image policy, containers and isolation) with the hub
 * side of `hubBuildroot.ts`. Logs of each step land in `<result>/srpm` and `<result>/build`,
 * the packages in `<result>`.
 */
import { RepoState } from "../koji/states.js"
import { Effect, Either } from "effect"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Buildroots } from "../buildroot/Buildroots.js"
import { resultArches } from "../buildroot/config.js"
import type { PackageEntry } from "../buildroot/packageList.js"
import { readRpmHeader } from "../buildroot/rpmHeader.js"
import * as S from "../hub/schemas.js"
import { pythonTruthy } from "../hub/xmlrpc.js"
import { isScmUrl, Scm } from "../scm/Scm.js"
import { buildArchList, findBuildrootArch } from "../tasks/arches.js"
import { canonArch } from "../koji/arch.js"
import { tagArchConfig } from "../tasks/build.js"
import { packThenRebuild } from "../tasks/buildSRPMFromSCM.js"
import { resultSrpm } from "../tasks/rebuildSRPM.js"
import { AnonymousHub, type AnonymousHubService, type RepoWaitOptions } from "./anonymousHub.js"
import { comparePackages, comparisonLines, pickReference, pkgOfEntry, type Reference } from "./compareTask.js"
import { LocalBuildError } from "./errors.js"
import { anonymousBuildrootHub, type BuildrootRecorder, makeRecorder, type RecordedBuildroot } from "./hubBuildroot.js"
import { type KojiProfile, kojiConfigPaths, readKojiProfile } from "./kojiProfile.js"
import { checkResultDir, checkSrpm, codeOf, hostArch, scopedWorkdir, why } from "./localFiles.js"

/** Which hub: a koji client profile, with `--server`/`--topurl` over it as in the koji CLI. */
export interface HubSelection {
  /** `-p/--profile`; without it the CLI's default profile `koji`, which may then be missing when `--server` is given. */
  readonly profile?: string | undefined
  /** A koji client config file read instead of `~/.koji/config.d` and `~/.koji/config` (the koji CLI's `-c`). */
  readonly kojiConfig?: string | undefined
  readonly server?: string | undefined
  readonly topurl?: string | undefined
  /** The home directory `~` stands for. */
  readonly home: string
  /** Where `koji.conf` and `koji.conf.d` are (default `/etc`; tests). */
  readonly etc?: string | undefined
}

/** The hub to build from. */
export interface ResolvedHub {
  readonly profile: KojiProfile
  readonly server: string
  readonly topurl: string
}

/** The profile koji's CLI would use, with the overrides; the hub needs a topurl for its repos. */
export const resolveHub = (sel: HubSelection): Effect.Effect<ResolvedHub, LocalBuildError> =>
  Effect.gen(function*() {
    const profile = yield* readKojiProfile({
      profile: sel.profile ?? "koji",
      paths: kojiConfigPaths(sel.home, { configFile: sel.kojiConfig, etc: sel.etc }),
      home: sel.home,
      overrides: {
        ...(sel.server === undefined ? {} : { server: sel.server }),
        ...(sel.topurl === undefined ? {} : { topurl: sel.topurl })
      },
      required: sel.profile !== undefined || sel.server === undefined
    }).pipe(
      Effect.mapError((e) =>
        new LocalBuildError({
          message: sel.profile === undefined && e.reason === "MissingProfile"
            ? `${e.message}; name the hub with -p PROFILE or --server URL --topurl URL`
            : e.message
        }))
    )
    for (const w of profile.warnings) yield* Effect.logWarning(w)
    const topurl = profile.topurl ?? ""
    if (topurl === "") {
      return yield* new LocalBuildError({
        message: `no topurl for the koji hub at ${profile.server}: set topurl in the koji profile [${profile.profile}] or pass --topurl URL`
      })
    }
    return { profile, server: profile.server, topurl }
  })

/** What to build against. */
export interface PlanRequest {
  readonly target?: string | undefined
  readonly tag?: string | undefined
  readonly repoId?: number | undefined
  readonly waitRepo?: boolean | undefined
  /** Polling of `--wait-repo` (koji's RepoWatcher: 6 s, 120 minutes). */
  readonly wait?: RepoWaitOptions | undefined
}

/** Target, build tag, repo and build config, as read from the hub. */
export interface HubPlan {
  readonly server: string
  readonly target: S.BuildTarget | null
  readonly buildTag: { readonly id: number; readonly name: string }
  /** The target's destination tag (the build tag with `--tag`), whose package list has `extra_arches`. */
  readonly destTag: number
  readonly repo: S.RepoInfo
  /** True when the repo was named with `--repo-id` (kojid then reads package config at its event). */
  readonly repoGiven: boolean
  /** `getBuildConfig(build tag, event=repo.create_event)`. */
  readonly config: S.TagInfo
}

const REPO_STATE_NAMES = ["INIT", "READY", "EXPIRED", "DELETED", "PROBLEM"]

/** Target → build tag → repo → build config, each a one-line error when the hub has none. */
export const planFromHub = Effect.fn("buildLocal.planFromHub")(function*(client: AnonymousHubService, request: PlanRequest) {
  const on = `on the koji hub at ${client.server}`
  let target: S.BuildTarget | null = null
  let buildTag: { readonly id: number; readonly name: string }
  let destTag: number
  if (request.target !== undefined) {
    target = yield* client.getBuildTarget(request.target)
    if (target === null) return yield* new LocalBuildError({ message: `unknown build target: ${request.target} (${on})` })
    buildTag = { id: target.build_tag, name: target.build_tag_name }
    destTag = target.dest_tag
  } else if (request.tag !== undefined) {
    const tag = yield* client.getTag(request.tag)
    if (tag === null) return yield* new LocalBuildError({ message: `no such tag: ${request.tag} (${on})` })
    buildTag = { id: tag.id, name: tag.name }
    destTag = tag.id
  } else {
    return yield* new LocalBuildError({ message: "give --target TARGET or --tag BUILD_TAG" })
  }
  let repo: S.RepoInfo
  if (request.repoId !== undefined) {
    const found = yield* client.repoInfo(request.repoId)
    if (found === null) return yield* new LocalBuildError({ message: `No such repo: ${request.repoId} (${on})` })
    if (found.state !== RepoState.READY && found.state !== RepoState.EXPIRED) {
      return yield* new LocalBuildError({ message: `Bad repo: ${found.id} (${REPO_STATE_NAMES[found.state] ?? found.state})` })
    }
    if (found.tag_id !== buildTag.id) {
      return yield* new LocalBuildError({ message: `Repo/Target mismatch: ${found.tag_name ?? found.tag_id}/${buildTag.name}` })
    }
    repo = found
  } else if (request.waitRepo === true) {
    repo = yield* client.waitRepo(buildTag.id, { minEvent: "last", ...request.wait })
  } else {
    const current = yield* client.getRepo(buildTag.id)
    if (current === null) {
      return yield* new LocalBuildError({
        message: `the build tag ${buildTag.name} has no current repo ${on}: wait for one with --wait-repo, or name one with --repo-id N`
      })
    }
    repo = current
  }
  const config = yield* client.getBuildConfig(buildTag.id, repo.create_event)
  return { server: client.server, target, buildTag, destTag, repo, repoGiven: request.repoId !== undefined, config } satisfies HubPlan
})

/** What to build from the plan. */
export interface HubBuildRequest {
  /** A source package, or an SCM URL (built as buildSRPMFromSCM does). */
  readonly source: string
  /** The arch to build (kojid's `arch_override`, as for a scratch build); default: this machine's from kojid's arch list. */
  readonly arch?: string | undefined
  readonly resultDir: string
  /** The hub's topurl, where the repo is read from. */
  readonly topurl: string
}

/** What a build from a hub made. */
export interface HubBuildResult {
  readonly resultDir: string
  readonly nvr: string
  /** The arches kojid would build, and the one built here. */
  readonly archlist: ReadonlyArray<string>
  readonly arch: string
  readonly rpms: ReadonlyArray<string>
  readonly srpms: ReadonlyArray<string>
  /** The SCM source with its commit, for an SCM build. */
  readonly source?: { readonly url: string; readonly source: string } | undefined
  /** The local buildroots by kind, as the hub would record them. */
  readonly buildroots: ReadonlyArray<{ readonly kind: "srpm-build" | "build"; readonly brArch: string; readonly record: RecordedBuildroot }>
  /** Directories of the steps' logs. */
  readonly logDirs: ReadonlyArray<string>
}

const copyIfThere = (from: string, to: string) =>
  Effect.tryPromise(() => fsp.copyFile(from, to)).pipe(
    Effect.catchAll((e) =>
      codeOf(e.error) === "ENOENT" ? Effect.void : Effect.logWarning(`could not copy ${path.basename(from)} to ${path.dirname(to)}: ${why(e.error)}`))
  )

const makeDir = (dir: string) =>
  Effect.tryPromise({
    try: () => fsp.mkdir(dir, { recursive: true }),
    catch: (e) => new LocalBuildError({ message: `cannot make ${dir}: ${why(e)}` })
  })

/** Where the steps' logs go under the result directory: kojid's SRPM task, and its buildArch task. */
export const STEP_DIRS = { srpm: "srpm", build: "build" } as const

/** The SRPM step (kojid's RebuildSRPM or BuildSRPMFromSCMTask) in an `srpm-build` buildroot; the SRPM it left in `<result>/srpm`. */
const srpmStep = (plan: HubPlan, request: HubBuildRequest, recorder: BuildrootRecorder, brArch: string, fromScm: boolean) =>
  Effect.gen(function*() {
    const buildroots = yield* Buildroots
    const client = yield* AnonymousHub
    const dir = path.join(path.resolve(request.resultDir), STEP_DIRS.srpm)
    yield* makeDir(dir)
    const workdir = yield* scopedWorkdir
    const hub = anonymousBuildrootHub(client, { topurl: request.topurl, uploadDir: dir, recorder, buildrootId: 1 })
    const open = (network: boolean) =>
      buildroots.open({ taskId: 0, tag: plan.buildTag.id, arch: brArch, repoId: plan.repo.id, installGroup: "srpm-build", workdir, network }, hub)
    if (!fromScm) {
      const broot = yield* open(false)
      yield* broot.rebuildSrpm(path.resolve(request.source))
      const taken = yield* resultSrpm(broot, dir, path.posix.join(buildroots.options.kojid.mockdir, broot.name, "result"))
      yield* broot.finishLogs
      return { srpm: taken.file, brootId: broot.id, source: undefined }
    }
    const scm = yield* Scm
    const url = yield* scm.parse(request.source)
    // build_from_scm is the hub's policy for its builders: only allowed_scms applies here.
    const rules = yield* scm.assertAllowed(url, { evalPolicy: () => Effect.succeed(null), data: {} })
    // kojid turns DNS on in the buildroot of an SCM build (source commands fetch).
    const broot = yield* open(true)
    const checkout = yield* scm.checkout(url, rules, { taskId: 0, workdir: broot.scratchDir }).pipe(
      Effect.ensuring(copyIfThere(path.join(broot.scratchDir, "checkout.log"), path.join(dir, "checkout.log")))
    )
    const spec = yield* scm.findSpec(checkout)
    yield* packThenRebuild(scm)(broot, spec, checkout, rules, 0)
    const taken = yield* resultSrpm(broot, dir, checkout.sourcedirRelative || ".")
    yield* broot.finishLogs
    return { srpm: taken.file, brootId: broot.id, source: checkout.source }
  }).pipe(Effect.scoped)

/**
 * Builds the source from the plan's repo: the SRPM step, then the binary build for one arch.
 *
 * The `build` buildroot depends only on the repo and its arch, which is this machine's (or
 * `--arch`'s) whatever the SRPM says, so it is opened while the SRPM step runs: a cold `@build`
 * fill overlaps the SRPM build. Which arch rpmbuild targets, and whether koji would build the
 * package here at all, is decided from the SRPM the step made, as kojid decides it.
 */
export const buildFromPlan = Effect.fn("buildLocal.buildFromPlan")(function*(plan: HubPlan, request: HubBuildRequest) {
  const buildroots = yield* Buildroots
  const client = yield* AnonymousHub
  const resultDir = path.resolve(request.resultDir)
  yield* checkResultDir(resultDir)
  const fromScm = isScmUrl(request.source)
  if (!fromScm) {
    yield* checkSrpm(request.source)
    const given = yield* readRpmHeader(request.source).pipe(Effect.mapError((e) => new LocalBuildError({ message: e.message })))
    if (!given.sourcepackage) return yield* new LocalBuildError({ message: `${request.source}: not a source package` })
  }
  const recorder = makeRecorder()
  const tagArches = tagArchConfig(plan.config)
  const here = hostArch()
  const host = { name: os.hostname(), arches: here }
  const buildrootArch = (arch: string) =>
    Either.mapLeft(findBuildrootArch({ arch, host, tag: tagArches, preferredArch: here }), (e) => new LocalBuildError({ message: e.message }))

  // getSRPM: the SCM step, or RebuildSRPM unless the tag's extra turns it off.
  const rebuild = fromScm || pythonTruthy(plan.config.extra?.["rebuild_srpm"] ?? true)
  const srpmBrArch = rebuild ? yield* buildrootArch("noarch") : ""
  const brArch = canonArch(yield* buildrootArch(request.arch ?? "noarch"))
  const buildDir = path.join(resultDir, STEP_DIRS.build)
  yield* makeDir(buildDir)

  return yield* Effect.gen(function*() {
    const workdir = yield* scopedWorkdir
    const hub = anonymousBuildrootHub(client, { topurl: request.topurl, uploadDir: buildDir, recorder, buildrootId: rebuild ? 2 : 1 })
    const openBuild = buildroots.open({ taskId: 0, tag: plan.buildTag.id, arch: brArch, repoId: plan.repo.id, installGroup: "build", workdir }, hub)
    const getSrpm = rebuild
      ? srpmStep(plan, request, recorder, srpmBrArch, fromScm)
      : Effect.succeed({ srpm: path.resolve(request.source), brootId: undefined, source: undefined })
    const [made, broot] = yield* Effect.all([getSrpm, openBuild], { concurrency: 2 })

    const h = yield* readRpmHeader(made.srpm).pipe(Effect.mapError((e) => new LocalBuildError({ message: e.message })))
    const nvr = `${h.name}-${h.version}-${h.release}`
    const pkgConfig = yield* client.getPackageConfig(plan.destTag, h.name, plan.repoGiven ? plan.repo.create_event : null)
    const archlist = yield* buildArchList({
      tag: tagArches, extraArches: pkgConfig?.extra_arches ?? null, header: h, scratch: true, archOverride: request.arch ?? null
    }).pipe(Either.mapLeft((e) =>
      new LocalBuildError({
        message: `${e.message} for ${nvr} on ${plan.config.name} (tag arches: ${plan.config.arches ?? "none"}` +
          `${request.arch === undefined ? "" : `; --arch ${request.arch}`})`
      })))
    const arch = request.arch !== undefined
      ? archlist[0]
      : archlist.find((a) => canonArch(a) === here) ?? (archlist.includes("noarch") ? "noarch" : undefined)
    if (arch === undefined) {
      return yield* new LocalBuildError({
        message: `koji builds ${nvr} for ${archlist.join(", ")} on ${plan.config.name}, not for this machine's ${here}: choose one with --arch`
      })
    }
    if (canonArch(yield* buildrootArch(arch)) !== broot.brArch) {
      return yield* Effect.dieMessage(`the build of ${arch} needs another buildroot arch than ${broot.brArch}`)
    }
    const result = yield* Effect.exit(broot.build(made.srpm, arch))
    yield* broot.finishLogs
    if (result._tag === "Failure") return yield* Effect.failCause(result.cause)
    const collected = yield* broot.collect({ outDir: resultDir, arches: resultArches(arch) })

    const srpmRecord = made.brootId === undefined ? undefined : recorder.buildroots.get(made.brootId)
    const buildRecord = recorder.buildroots.get(broot.id)
    return {
      resultDir,
      nvr,
      archlist,
      arch,
      rpms: collected.rpms.map((r) => r.file),
      srpms: collected.srpms.map((r) => r.file),
      source: made.source,
      buildroots: [
        ...(srpmRecord === undefined ? [] : [{ kind: "srpm-build" as const, brArch: srpmBrArch, record: srpmRecord }]),
        ...(buildRecord === undefined ? [] : [{ kind: "build" as const, brArch: broot.brArch, record: buildRecord }])
      ],
      logDirs: [...(srpmRecord === undefined ? [] : [path.join(resultDir, STEP_DIRS.srpm)]), buildDir]
    } satisfies HubBuildResult
  }).pipe(Effect.scoped)
})

/** One package of a recorded list: N-V-R.A and what the hub knows it as. */
const listingLine = (entry: PackageEntry, isUpdate: boolean): string => {
  const p = pkgOfEntry(entry)
  const ext = entry["external_repo"]
  const known = typeof entry["id"] === "number"
    ? `rpm ${entry["id"]}`
    : typeof ext === "object" && ext !== null && !Array.isArray(ext) && "external_repo_name" in ext
      ? `external repo ${String(ext["external_repo_name"])}`
      : "not in the repo's rpm list"
  return `  ${p.name}-${p.epoch === null ? "" : `${p.epoch}:`}${p.version}-${p.release}.${p.arch}  (${known}${isUpdate ? ", installed for the build" : ""})`
}

/** The summary printed after a build from a hub: what was built, from where, each buildroot's list, the comparison. */
export const summaryLines = (plan: HubPlan, result: HubBuildResult, reference: Reference | undefined): ReadonlyArray<string> => {
  const lines: Array<string> = []
  const via = plan.target === null ? `tag ${plan.buildTag.name}` : `target ${plan.target.name} (build tag ${plan.buildTag.name})`
  lines.push(`built ${result.nvr} for ${result.arch} from ${via}, repo ${plan.repo.id} (event ${plan.repo.create_event}) of ${plan.server}`)
  if (result.archlist.length > 1 || result.archlist[0] !== result.arch) lines.push(`koji would build it for: ${result.archlist.join(", ")}`)
  if (result.source !== undefined) lines.push(`source: ${result.source.source}`)
  lines.push(...[...result.rpms, ...result.srpms].map((f) => `  ${path.basename(f)}`))
  for (const b of result.buildroots) {
    const entries = [...b.record.listing.values()].sort((x, y) => String(x.entry["name"]).localeCompare(String(y.entry["name"])))
    lines.push(`buildroot ${b.record.id} (${b.kind}, ${b.brArch}): ${entries.length} packages, as the hub would record them:`)
    lines.push(...entries.map((e) => listingLine(e.entry, e.isUpdate)))
  }
  if (reference !== undefined) {
    for (const b of result.buildroots) {
      const theirs = pickReference(reference, b.kind, b.brArch)
      if (theirs === undefined) continue
      const what = `task ${theirs.taskId} (${theirs.method}, ${theirs.source})`
      lines.push(...comparisonLines(what, comparePackages([...b.record.listing.values()].map((e) => pkgOfEntry(e.entry)), theirs.packages)))
    }
    if (result.buildroots.every((b) => pickReference(reference, b.kind, b.brArch) === undefined)) {
      lines.push(`task ${reference.taskId} (${reference.method}) has no buildroot of the kinds built here to compare with`)
    }
  }
  lines.push(`results and logs: ${result.resultDir}`)
  return lines
}
