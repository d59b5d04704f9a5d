/**
 * Buildroots (DESIGN §5, koji-protocol.md §5): kojid's `BuildRoot` with podman in place of mock.
 *
 * Hub side, in kojid's order: `repoInfo` (READY, or EXPIRED with a note), `getBuildConfig` at
 * the repo's create_event (tag/repo mismatch → BuildrootError), `host.newBuildRoot`, the config
 * uploaded as `mock_config.log`, the fill, `setBuildRootList` (INIT), `setBuildRootState
 * BUILDING`, the build, `updateBuildRootList`, and EXPIRED at the end, on failure and on
 * interruption (a scope finalizer).
 *
 * File-system side: a bounded disk of the task's own (layout.ts) holds everything the build can
 * write; the bootstrap image runs `dnf --installroot` from the task's koji repo into a root cached
 * per (repo, arch, group, image, dnf.conf + macros, id map) (dnf.ts); each task gets an overlay of
 * it; the steps of the build are steps.ts. Containers that run package code do so in the build
 * user namespace (`build_userns`), so they are nobody on the host.
 */
import { Context, Effect, Exit, FiberSet, Layer, Scope } from "effect"
import { readFileSync } from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { Metrics } from "../metrics/Metrics.js"
import { Containers } from "../containers/Containers.js"
import { hostId, hostIdsOf, type IdMap, idMapConflicts } from "../containers/idmap.js"
import { formatIdMap } from "../config/values.js"
import { Images } from "../containers/Images.js"
import { BuildrootError } from "../koji/faults.js"
import type { RepoInfo, TagInfo } from "../hub/schemas.js"
import { RepoState, stateName } from "../koji/states.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { canonArch } from "../koji/arch.js"
import { type BuildrootCache, makeCache } from "./cache.js"
import { fillOrReuse, pruneStale } from "./fill.js"
import { type BuildrootInputs, buildrootName, cacheKey, dnfConf, macrosFile, mockConfigText, rpmEnv, rpmMacros, targetArchOf } from "./config.js"
import { makeBuildrootImages } from "./buildrootImages.js"
import { makeDnf, readListing } from "./dnf.js"
import { BuildrootSetupError } from "./errors.js"
import type { BuildrootHub } from "./hubSide.js"
import { hwInfo } from "./hwInfo.js"
import { buildrootLog, type Layout, LOG_NAMES, makeLayout } from "./layout.js"
import { taskRoot } from "./overlay.js"
import type { RootIdentity } from "./rootImage.js"
import type { BuildrootState } from "./state.js"
import * as steps from "./steps.js"
import type { Buildroot, BuildrootFailure, BuildrootRequest, BuildrootsOptions } from "./types.js"

export type { Buildroot, BuildrootFailure, BuildrootRequest, BuildrootRunOptions, BuildrootRunResult, BuildrootsOptions, Collected } from "./types.js"
export { containerRepos } from "./dnf.js"

/** Builds buildroots for tasks. */
export class Buildroots extends Context.Tag("Buildroots")<
  Buildroots,
  {
    /** Opens a buildroot for a task (hub side through `hub`); it is expired and removed when the scope closes. */
    readonly open: (request: BuildrootRequest, hub: BuildrootHub) => Effect.Effect<Buildroot, BuildrootFailure, Scope.Scope>
    /** The cache (for status and tests). */
    readonly cache: BuildrootCache
    readonly options: BuildrootsOptions
  }
>() {
  /** The service over Containers with explicit options (fails when the build id range is someone's). */
  static layer = (options: BuildrootsOptions): Layer.Layer<Buildroots, BuildrootSetupError, Containers> =>
    Layer.scoped(Buildroots, makeBuildroots(options))

  /** The service configured from kojid.conf and `[adjutant]`, images through Images. */
  static layerConfig: Layer.Layer<Buildroots, BuildrootSetupError, Containers | Images | AdjutantConfig> = Layer.unwrapEffect(
    Effect.gen(function* () {
      const config = yield* AdjutantConfig
      const images = yield* Images
      return Buildroots.layer(buildrootsOptionsFromConfig(config, (request) =>
        Effect.map(images.forTask(request), (e) => ({ image: e.image, id: e.id }))))
    })
  )
}

/** BuildrootsOptions from the daemon config. */
export const buildrootsOptionsFromConfig = (
  config: AdjutantConfig["Type"],
  resolveImage: BuildrootsOptions["resolveImage"]
): BuildrootsOptions => {
  const k = config.kojid
  const a = config.adjutant
  return {
    kojid: {
      topdir: k.topdir, topurls: k.topurls, packager: k.packager, vendor: k.vendor, distribution: k.distribution,
      mockhost: k.mockhost, yum_proxy: k.yum_proxy, rpmbuild_timeout: k.rpmbuild_timeout, mockdir: k.mockdir
    },
    cacheDir: a.buildroot_cache_dir,
    cacheMax: a.buildroot_cache_max,
    cacheMaxBytes: a.buildroot_cache_max_bytes,
    ...(a.buildroot_registry === "" ? {} : {
      registry: {
        namespace: a.buildroot_registry,
        authFile: a.registry_auth_file,
        insecure: a.insecure_registries.some((r) => r.toLowerCase() === a.buildroot_registry.split("/")[0]!.toLowerCase())
      }
    }),
    buildUser: a.build_user === "" ? "1000:1000" : a.build_user,
    idmap: a.build_userns,
    taskDiskMax: a.task_disk_max,
    resultMaxSize: a.result_max_size,
    logMaxSize: a.log_max_size,
    buildTmpfsSize: "8g",
    resolveImage,
    limitsText: `memory ${a.container_memory} bytes, pids ${a.container_pids}, cpus ${a.container_cpus || "unlimited"}`
  }
}

/**
 * The first steps of kojid's BuildRoot: the repo must be READY (EXPIRED is accepted with a note),
 * the tag config read at the repo's event must be the repo's tag.
 */
const checkRepo = (hub: BuildrootHub, request: BuildrootRequest) =>
  Effect.gen(function* () {
    const repo = yield* hub.repoInfo(request.repoId)
    const config = yield* hub.getBuildConfig(request.tag, repo.create_event)
    if (config.id !== repo.tag_id) {
      return yield* new BuildrootError({ faultString: `tag/repo mismatch: ${config.name} vs ${repo.tag_name ?? ""}` })
    }
    const repoStateName = stateName(RepoState, repo.state)
    if (repo.state === RepoState.EXPIRED) {
      yield* Effect.logInfo(`Requested repo (${request.repoId}) is no longer current`)
    } else if (repo.state !== RepoState.READY) {
      return yield* new BuildrootError({ faultString: `Requested repo (${request.repoId}) is ${repoStateName}` })
    }
    return { repo, config }
  })

/** `host.newBuildRoot`; from here on the buildroot is expired whatever happens (§5.1 step 8), once. */
const newBuildRoot = (hub: BuildrootHub, repoId: number, brArch: string) =>
  Effect.gen(function* () {
    let expired = false
    const expireOnce = (brid: number) =>
      Effect.suspend(() => {
        if (expired) return Effect.void
        expired = true
        return hub.setBuildRootState(brid, "EXPIRED")
      })
    const id = yield* Effect.acquireRelease(hub.newBuildRoot(repoId, brArch), (brid) =>
      expireOnce(brid).pipe(
        Effect.timeout("60 seconds"),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not expire buildroot ${brid}; the daemon's cleanup will`, cause))
      ))
    return { id, expire: expireOnce(id) }
  })

/** mock_config.log, written and uploaded first as kojid does. */
const writeMockConfig = (
  options: BuildrootsOptions, hub: BuildrootHub, request: BuildrootRequest, inputs: BuildrootInputs, urls: ReadonlyArray<string>,
  image: { readonly image: string; readonly id: string }, idmap: IdMap | null
) =>
  Effect.gen(function* () {
    const file = path.join(request.workdir, "mock_config.log")
    const text = mockConfigText(options.kojid, inputs, urls, {
      bootstrapImage: image.image, bootstrapImageId: image.id, limits: options.limitsText,
      buildUser: `${options.buildUser} (host ids: ${formatIdMap(idmap)}), task disk ${options.taskDiskMax || "unbounded"} bytes`
    })
    yield* Effect.tryPromise({
      try: () => fsp.writeFile(file, text),
      catch: (e) => new BuildrootSetupError({ message: `cannot write the buildroot config: ${String(e)}` })
    })
    yield* hub.upload(file, "mock_config.log")
  })

/** Streams the buildroot's logs until `finishLogs` (or the scope's end); returns the streaming scope. */
const startLogs = (hub: BuildrootHub, layout: Layout, maxBytes: number) =>
  Effect.gen(function* () {
    const logScope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(logScope, Exit.void))
    yield* hub.streamLogs(LOG_NAMES.map((n) => ({ local: layout.logFile(n), remote: n })), maxBytes).pipe(Scope.extend(logScope))
    return logScope
  })

const readAccounts = (file: string): string => {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

/**
 * Builds must run as ids no host account has: the `build_userns` range may hold no user or group
 * (refused) and should hold no other subordinate range (warned); with host ids (`none`), a
 * build user that is a host account is warned about.
 */
export const checkBuildIds = (options: Pick<BuildrootsOptions, "idmap" | "buildUser">) =>
  Effect.gen(function* () {
    const files = { passwd: readAccounts("/etc/passwd"), group: readAccounts("/etc/group"), subuid: readAccounts("/etc/subuid"), subgid: readAccounts("/etc/subgid") }
    if (options.idmap === null) {
      const ids = hostIdsOf(null, options.buildUser)
      const who = ids === undefined ? [] : idMapConflicts({ base: ids.uid, size: 1 }, { ...files, group: "", subuid: "", subgid: "" }).users
      if (who.length > 0) yield* Effect.logWarning(`build_userns = none: builds run as the host's ${who[0]}; a dedicated system user (kojibuilder) or a build_userns range is safer`)
      return
    }
    const found = idMapConflicts(options.idmap, files)
    if (found.users.length > 0) {
      return yield* new BuildrootSetupError({
        message: `build_userns = ${formatIdMap(options.idmap)} holds ${found.users.slice(0, 3).join(", ")}: builds would run as them; ` +
          "choose a range no account of /etc/passwd or /etc/group uses"
      })
    }
    for (const r of found.ranges) yield* Effect.logWarning(`build_userns = ${formatIdMap(options.idmap)} overlaps ${r}: that user's containers could share ids with builds`)
  })

/** Builds the service. */
export const makeBuildroots = Effect.fnUntraced(function* (options: BuildrootsOptions) {
  yield* checkBuildIds(options)
  const containers = yield* Containers
  // Work a task must not wait for (sizing and flushing a new root, eviction, pushes) runs here,
  // in the service's scope.
  const background = yield* FiberSet.make<void, never>()
  const runInBackground = (work: Effect.Effect<void>) => Effect.asVoid(FiberSet.run(background, work))
  const cache = makeCache(options.cacheDir, options.cacheMax, { maxBytes: options.cacheMaxBytes ?? 0, background: runInBackground, flush: true })
  if (options.cacheMax > 0) {
    yield* cache.recover.pipe(Effect.catchAllCause((cause) => Effect.logWarning(`buildroot cache: could not check ${options.cacheDir} for leftovers`, cause)))
  }
  const images = options.registry === undefined || options.cacheMax <= 0 ? undefined : yield* makeBuildrootImages(options.registry, cache, runInBackground)
  const k = options.kojid

  const open = Effect.fn("Buildroots.open")(function* (request: BuildrootRequest, hub: BuildrootHub) {
    const openedAt = Date.now()
    const { repo, config } = yield* checkRepo(hub, request)
    const brArch = canonArch(request.arch)
    const tagExtra: Readonly<Record<string, XmlRpcValue>> = config.extra ?? {}
    const idmap = request.hostIds === true ? null : options.idmap
    const { id, expire } = yield* newBuildRoot(hub, request.repoId, brArch)
    const name = buildrootName(config.name, id, repo.id)
    yield* Effect.annotateCurrentSpan({ buildroot: id, name })
    const inputs: BuildrootInputs = {
      id, tagName: config.name, repoId: repo.id, brArch, targetArch: targetArchOf(request.arch), installGroup: request.installGroup,
      tagExtra, network: request.network === true
    }
    const urls = hub.repoUrls(config.name, repo.id, brArch)
    const image = yield* options.resolveImage({ tag: config.name, arch: brArch, tagExtra }).pipe(
      Effect.mapError((e) => new BuildrootSetupError({ message: `no bootstrap image for ${config.name}/${brArch}: ${e instanceof Error ? e.message : String(e)}` }))
    )
    const layout = yield* makeLayout(request.workdir, options.taskDiskMax, idmap, options.buildUser)
    const log = buildrootLog(layout)
    yield* writeMockConfig(options, hub, request, inputs, urls, image, idmap)
    const logScope = yield* startLogs(hub, layout, options.logMaxSize)
    yield* log.append("hw_info.log", hwInfo([layout.base, options.cacheDir]))
    const dnf = yield* makeDnf({ kojid: k, urls, tagExtra, layout, image: image.image, idmap, taskId: request.taskId, buildrootId: id })

    // The fill (kojid's `mock --init`), or the cached root. The repo id names the package set;
    // where it is served from does not change the root; the id map changes its owners.
    // A buildroot image holds container ids: its key leaves the host's id map out.
    const macrosText = macrosFile(rpmMacros(k, inputs))
    const keyParts = { repoId: repo.id, brArch, installGroup: request.installGroup, imageId: image.id, macros: macrosText }
    const repoLine = hub.repoIdentity === undefined ? "" : `\n# repo ${hub.repoIdentity}`
    const key = cacheKey({ ...keyParts, dnfConf: `${dnfConf(k, ["<repo>"], tagExtra)}\n# ids ${formatIdMap(idmap)}${repoLine}` })
    const identity: RootIdentity = {
      key: cacheKey({ ...keyParts, dnfConf: `${dnfConf(k, ["<repo>"], tagExtra)}${repoLine}` }),
      repoId: repo.id, tagName: config.name, brArch, installGroup: request.installGroup
    }
    yield* log.state("Start: chroot init")
    const fillStarted = Date.now()
    const entry = yield* fillOrReuse({ cache, images, containers, dnf, log, layout, key, identity, macrosText, idmap }, {
      repoId: repo.id, tagName: config.name, brArch, installGroup: request.installGroup, image: image.image, imageId: image.id
    })
    yield* Effect.flatMap(Metrics, (m) => Effect.sync(() => m.cache(entry.warm, (Date.now() - fillStarted) / 1000)))
    if (entry.warm) yield* log.rootNote(`using the cached buildroot ${entry.key} (repo ${repo.id}, @${request.installGroup}, ${image.image})`)
    const installed = yield* readListing(path.join(entry.dir, "installed.tsv"))
    yield* log.append("installed_pkgs.log", installed.map((r) => `${r.name}-${r.version}-${r.release}.${r.arch} ${r.buildtime} ${r.size} ${r.payloadhash} installed`).join("\n") + "\n")
    const task = yield* taskRoot(entry.root, layout.task, { uid: hostId(idmap, 0), gid: hostId(idmap, 0) })
    yield* log.state(`Finish: chroot init (${entry.warm ? "cached" : "filled"}, ${task.kind})`)

    // Repos the hub no longer keeps READY lose their cached roots (checked on cold fills only).
    if (!entry.warm && options.cacheMax > 0) yield* pruneStale(cache, images, hub, repo.id, runInBackground)
    const listRepo = { tagId: repo.tag_id ?? config.id, tagName: config.name, repoId: repo.id, createEvent: repo.create_event, brArch }
    yield* hub.setBuildRootList(id, yield* hub.packageList(installed, listRepo))

    const st: BuildrootState = {
      request, options, containers, hub, id, name, repo, config, inputs, idmap, layout, log, dnf, root: task.root,
      env: { HOME: "/builddir", LANG: "C.UTF-8", PATH: "/usr/bin:/bin:/usr/sbin:/sbin", ...rpmEnv(tagExtra) },
      listRepo, openedAt, expire,
      status: { installed, building: false, readyAt: undefined, runLogs: [], logsFinished: false }
    }
    return buildrootOf(st, entry.warm, logScope)
  })

  return Buildroots.of({ open, cache, options })
})

/** The Buildroot a task uses: its state's steps. */
const buildrootOf = (st: BuildrootState, warm: boolean, logScope: Scope.CloseableScope): Buildroot => ({
  id: st.id,
  name: st.name,
  repo: st.repo satisfies RepoInfo,
  config: st.config satisfies TagInfo,
  brArch: st.inputs.brArch,
  warm,
  mockResultDir: path.posix.join(st.options.kojid.mockdir, st.name, "result"),
  scratchDir: st.layout.scratch,
  build: (srpm, arch) => steps.build(st, srpm, arch),
  rebuildSrpm: (srpm) => steps.rebuildSrpm(st, srpm),
  collect: (o) => steps.collect(st, o),
  finishLogs: steps.finishLogs(st, logScope),
  truncatedLogs: Effect.sync(() => steps.truncatedLogs(st)),
  expire: st.expire,
  readyMs: () => (st.status.readyAt === undefined ? undefined : st.status.readyAt - st.openedAt),
  run: (o) =>
    steps.run(st, o, (local, remote) => st.hub.streamLogs([{ local, remote }], st.options.logMaxSize).pipe(Scope.extend(logScope)))
})

/** The host ids that own what the build user writes (for callers preparing files for it). */
export const buildUserHostIds = (options: BuildrootsOptions) => hostIdsOf(options.idmap, options.buildUser)
