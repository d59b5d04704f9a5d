/**
 * Buildroots (DESIGN §5, koji-protocol.md §5): kojid's `BuildRoot` with podman in place of mock.
 *
 * Hub side, in kojid's order: `repoInfo` (READY, or EXPIRED with a note), `getBuildConfig` at
 * the repo's create_event (tag/repo mismatch → BuildrootError), `host.newBuildRoot`, the config
 * uploaded as `mock_config.log`, the fill, `setBuildRootList` (INIT), `setBuildRootState
 * BUILDING`, the build, `updateBuildRootList`, and EXPIRED at the end, on failure and on
 * interruption (a scope finalizer).
 *
 * File-system side: the bootstrap image runs `dnf --installroot` from the task's koji repo into a
 * root that is cached per (repo, arch, group, image, dnf.conf + macros); each task gets an overlay
 * of it, BuildRequires (static, and dynamic through the `rpmbuild -br` exit-11 loop) are installed
 * into that overlay by the bootstrap image, and rpmbuild runs in a container whose root is the
 * overlay: no network, no capabilities, the unprivileged build user, read-only root with sized
 * tmpfs for /builddir, /tmp and /var/tmp, and `rpmbuild_timeout` as a hard limit.
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { type ContainerMount, type ContainerSpec, Containers } from "../containers/Containers.js"
import type { ImageRequest } from "../containers/ImagePolicy.js"
import { Images } from "../containers/Images.js"
import { BuildError, BuildrootError } from "../hub/faults.js"
import type { Ref } from "../hub/HostApi.js"
import type { RepoInfo, TagInfo } from "../hub/schemas.js"
import { RepoState } from "../hub/schemas.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { canonArch } from "../tasks/arches.js"
import { type BuildrootCache, makeCache } from "./cache.js"
import {
  type BuildrootInputs,
  type BuildrootOptions,
  buildrootName,
  cacheKey,
  dnfConf,
  macrosFile,
  mockConfigText,
  rpmEnv,
  rpmMacros,
  targetArchOf
} from "./config.js"
import { BuildrootSetupError, logTail, RpmbuildFailed } from "./errors.js"
import type { BuildrootHub, HubSideError } from "./hubSide.js"
import { type InstalledRpm, parseRpmQa, RPM_QA_FORMAT } from "./packageList.js"
import { hwInfo } from "./hwInfo.js"
import { taskRoot } from "./overlay.js"

/** Options of the Buildroots service. */
export interface BuildrootsOptions {
  readonly kojid: BuildrootOptions
  /** `[adjutant] buildroot_cache_dir` */
  readonly cacheDir: string
  /** `[adjutant] buildroot_cache_max` (entries; 0 = no cache). */
  readonly cacheMax: number
  /** `uid:gid` of the build user (`[adjutant] build_user`). */
  readonly buildUser: string
  /** Size of the /builddir tmpfs of the build container (bounds what a build may write). */
  readonly buildTmpfsSize: string
  /** The bootstrap image for a task and its image id (ImagePolicy through Images). */
  readonly resolveImage: (request: ImageRequest) => Effect.Effect<{ readonly image: string; readonly id: string }, unknown>
  /** For mock_config.log: the limits the Containers service applies. */
  readonly limitsText: string
}

/** What a task asks for. */
export interface BuildrootRequest {
  readonly taskId: number
  /** The build tag (id or name) as the task got it. */
  readonly tag: Ref
  /** The arch of the buildroot before canonArch (kojid's `arch` argument of BuildRoot). */
  readonly arch: string
  readonly repoId: number
  /** `build` (buildArch) or `srpm-build` (SRPM tasks). */
  readonly installGroup: string
  /** The task's workdir (scratch space; removed after the task). */
  readonly workdir: string
  /** Network during the build (only buildSRPMFromSCM has it). */
  readonly network?: boolean
}

/** A live buildroot of one task. */
export interface Buildroot {
  readonly id: number
  readonly name: string
  readonly repo: RepoInfo
  readonly config: TagInfo
  readonly brArch: string
  /** Host directory where rpmbuild puts RPMs and SRPMs. */
  readonly resultDir: string
  /** True when the root came from the cache. */
  readonly warm: boolean
  /** `mock --rebuild <srpm> --target <arch>`: BUILDING, the build with BuildRequires rounds, updateBuildRootList; failure → EXPIRED + BuildError. */
  readonly build: (srpm: string, arch: string) => Effect.Effect<void, RpmbuildFailed | BuildrootSetupError | HubSideError | unknown>
  /** kojid's `rebuild_srpm`: unpack the SRPM and `rpmbuild -bs --nodeps` its single spec. */
  readonly rebuildSrpm: (srpm: string) => Effect.Effect<void, BuildError | RpmbuildFailed | HubSideError | unknown>
  /** Stops log streaming (final flush) and returns every log name uploaded, kojid's `broot.logs`. */
  readonly finishLogs: Effect.Effect<ReadonlyArray<string>>
  /** `host.setBuildRootState(id, 'EXPIRED')` (once; also done when the scope closes). */
  readonly expire: Effect.Effect<void, HubSideError>
  /** Milliseconds from open to the first rpmbuild start (for the benchmark). */
  readonly readyMs: () => number | undefined
  /**
   * kojid's `mock --install` + `mock --chroot`: BUILDING, the extra packages installed into this
   * task's copy of the root (then updateBuildRootList), and the command run in that copy.
   */
  readonly run: (options: BuildrootRunOptions) => Effect.Effect<BuildrootRunResult, BuildrootSetupError | HubSideError | unknown>
}

/** What `Buildroot.run` runs. */
export interface BuildrootRunOptions {
  /** argv in the root; stdin is /dev/null, stdout and stderr go to the log `log`. */
  readonly command: ReadonlyArray<string>
  /** `root` (runroot: `mock --chroot` runs as root, in a writable root) or the build user (read-only root, tmpfs /builddir as for rpmbuild). */
  readonly user: "root" | "build"
  /** Extra mounts; missing mount points are made in the task's copy of the root. */
  readonly mounts: ReadonlyArray<ContainerMount>
  /** Host network (kojid's setup_dns); default: the buildroot request's `network`. */
  readonly network?: boolean
  /** Installed first with dnf into the task's copy (never into the cached root), as `mock --install`. */
  readonly installPackages?: ReadonlyArray<string>
  /** Name of the log the output goes to, streamed into the task directory under that name (`runroot.log`). */
  readonly log: string
  /** Container label role (default `runroot` for root, `build` for the build user). */
  readonly role?: string
  /** Hard wall-clock limit of the command (none by default, as kojid's `mock --chroot`). */
  readonly timeoutSeconds?: number
}

/** How `Buildroot.run` ended. */
export interface BuildrootRunResult {
  /** The command's exit code; -1 when it was killed at `timeoutSeconds`. */
  readonly exitCode: number
  /** Host path of the log. */
  readonly logFile: string
  /** Host path of the task's copy of the root (kojid's `rootdir()`), there until the buildroot's scope closes. */
  readonly rootdir: string
  /** What the container printed outside the log (the shell's own errors); only on failure. */
  readonly stray: string
}

/** Builds buildroots for tasks. */
export class Buildroots extends Context.Tag("Buildroots")<
  Buildroots,
  {
    /** Opens a buildroot for a task (hub side through `hub`); it is expired and removed when the scope closes. */
    readonly open: (request: BuildrootRequest, hub: BuildrootHub) => Effect.Effect<Buildroot, unknown, Scope.Scope>
    /** The cache (for status and tests). */
    readonly cache: BuildrootCache
    readonly options: BuildrootsOptions
  }
>() {
  /** The service over Containers with explicit options. */
  static layer = (options: BuildrootsOptions): Layer.Layer<Buildroots, never, Containers> =>
    Layer.effect(Buildroots, makeBuildroots(options))

  /** The service configured from kojid.conf and `[adjutant]`, images through Images. */
  static layerConfig: Layer.Layer<Buildroots, never, Containers | Images | AdjutantConfig> = Layer.unwrapEffect(
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
    buildUser: a.build_user === "" ? "1000:1000" : a.build_user,
    buildTmpfsSize: "8g",
    resolveImage,
    limitsText: `memory ${a.container_memory} bytes, pids ${a.container_pids}, cpus ${a.container_cpus || "unlimited"}`
  }
}

/** Capabilities dnf needs to install packages into a root owned by others (podman-notes §4). */
const DNF_CAPS = ["SYS_CHROOT", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP", "MKNOD"]

/** Exit code the build script uses for "BuildRequires missing" (rpmbuild's own, §9). */
/** Shell (no single quotes: it goes into `trap '…' EXIT`) moving dnf's logs out of the installroot. */
const DNF_LOGS_OUT =
  "for f in dnf.log dnf.rpm.log dnf.librepo.log; do if [ -f /buildroot/var/log/$f ]; then " +
  "cat /buildroot/var/log/$f >>/logs/$f; rm -f /buildroot/var/log/$f; fi; done"

const MISSING_DEPS = 11
const MAX_DEP_ROUNDS = 8

const BUILD_SCRIPT = `set -u
S=$1 T=$2 MODE=$3
top=/builddir/build
rm -rf /result/buildreqs
# The build user owns $top but not its parent (/builddir): empty it rather than remove it.
if [ -d "$top" ]; then find "$top" -mindepth 1 -delete; fi
mkdir -p "$top"
rpm -i --nodeps --define "_topdir $top" "$S" || exit 30
set -- "$top"/SPECS/*.spec
if [ ! -f "$1" ]; then echo "error: No spec file found in $S"; exit 31; fi
if [ $# -gt 1 ]; then echo "error: Multiple spec files found: $*"; exit 32; fi
spec=$1
if [ "$MODE" = srpm ]; then
  exec rpmbuild -bs --nodeps --define "_topdir $top" --define "_srcrpmdir /result" "$spec"
fi
rpmbuild -ba --target "$T" --define "_srcrpmdir /result" --define "_rpmdir /result" "$spec"
rc=$?
if [ $rc -eq ${MISSING_DEPS} ]; then
  # -ba leaves the round's buildreqs.nosrc.rpm beside the results; it is no result.
  rm -f /result/*.buildreqs.nosrc.rpm
  mkdir -p /result/buildreqs
  rpmbuild -br --nodeps --define "_srcrpmdir /result/buildreqs" "$spec" >/dev/null 2>&1
  exit ${MISSING_DEPS}
fi
exit $rc
`

const isoNow = (): string => new Date().toISOString().replace("T", " ").replace("Z", "")

const appendText = (file: string, text: string) => Effect.sync(() => fs.appendFileSync(file, text))


/**
 * Repo URLs as a container can read them: a file:// repo is bind-mounted read-only at its real
 * path together with the tree its `toplink` points at (the koji topdir holding the packages), and
 * its URL rewritten to the real path so symlinked topdirs work. A directory inside another one
 * mounted is not mounted again.
 */
export const containerRepos = (urls: ReadonlyArray<string>): { readonly urls: ReadonlyArray<string>; readonly mounts: ReadonlyArray<ContainerMount> } => {
  const dirs = new Set<string>()
  const out = urls.map((u) => {
    if (!u.startsWith("file://")) return u
    const p = decodeURIComponent(u.slice("file://".length))
    let real = p
    for (const d of [p, path.join(p, "toplink")]) {
      try {
        const r = fs.realpathSync(d)
        if (d === p) real = r
        dirs.add(r)
      } catch {
        // no toplink (a plain local repo) or a missing repo: dnf reports the latter in root.log
      }
    }
    return `file://${real}`
  })
  const sorted = [...dirs].sort()
  const top = sorted.filter((d) => !sorted.some((o) => o !== d && d.startsWith(`${o}/`)))
  return { urls: out, mounts: top.map((d) => ({ type: "bind" as const, source: d, destination: d })) }
}

/** True when a component of `rel` below `root` is a symlink (or cannot be read). */
const hasSymlink = async (root: string, rel: string): Promise<boolean> => {
  let p = root
  for (const part of rel.split(path.sep)) {
    p = path.join(p, part)
    const st = await fsp.lstat(p).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? null : "error" as const))
    if (st === null) return false
    if (st === "error" || st.isSymbolicLink()) return true
  }
  return false
}

const isLoopback = (u: string): boolean => /^https?:\/\/(127\.|localhost|\[::1\])/.test(u)

/** Network of a dnf container: none for local repos, host for loopback URLs, else bridge. */
const dnfNetwork = (urls: ReadonlyArray<string>): "none" | "host" | "bridge" =>
  urls.every((u) => u.startsWith("file://")) ? "none" : urls.some(isLoopback) ? "host" : "bridge"

/** Builds the service. */
export const makeBuildroots = Effect.fnUntraced(function* (options: BuildrootsOptions) {
  const containers = yield* Containers
  const cache = makeCache(options.cacheDir, options.cacheMax)
  const k = options.kojid

  const open = Effect.fn("Buildroots.open")(function* (request: BuildrootRequest, hub: BuildrootHub) {
    const openedAt = Date.now()
    let readyAt: number | undefined
    const repo = yield* hub.repoInfo(request.repoId)
    const config = yield* hub.getBuildConfig(request.tag, repo.create_event)
    if (config.id !== repo.tag_id) {
      return yield* new BuildrootError({ faultString: `tag/repo mismatch: ${config.name} vs ${repo.tag_name ?? ""}` })
    }
    const stateName = Object.entries(RepoState).find(([, v]) => v === repo.state)?.[0] ?? String(repo.state)
    if (repo.state === RepoState.EXPIRED) {
      yield* Effect.logInfo(`Requested repo (${request.repoId}) is no longer current`)
    } else if (repo.state !== RepoState.READY) {
      return yield* new BuildrootError({ faultString: `Requested repo (${request.repoId}) is ${stateName}` })
    }
    const brArch = canonArch(request.arch)
    const targetArch = targetArchOf(request.arch)
    const tagExtra: Readonly<Record<string, XmlRpcValue>> = config.extra ?? {}

    // host.newBuildRoot; from here on the buildroot is expired whatever happens (§5.1 step 8).
    let expired = false
    const expire = Effect.suspend(() => {
      if (expired) return Effect.void
      expired = true
      return hub.setBuildRootState(id, "EXPIRED")
    })
    const id = yield* Effect.acquireRelease(hub.newBuildRoot(request.repoId, brArch), (brid) =>
      expired
        ? Effect.void
        : Effect.suspend(() => {
          expired = true
          return hub.setBuildRootState(brid, "EXPIRED")
        }).pipe(
          Effect.timeout("60 seconds"),
          Effect.catchAllCause((cause) => Effect.logWarning(`could not expire buildroot ${brid}; the daemon's cleanup will`, cause))
        ))
    const name = buildrootName(config.name, id, repo.id)
    yield* Effect.annotateCurrentSpan({ buildroot: id, name })

    const inputs: BuildrootInputs = {
      id, tagName: config.name, repoId: repo.id, brArch, targetArch, installGroup: request.installGroup,
      tagExtra, network: request.network === true
    }
    const urls = hub.repoUrls(config.name, repo.id, brArch)
    const image = yield* options.resolveImage({ tag: config.name, arch: brArch, tagExtra }).pipe(
      Effect.mapError((e) => new BuildrootSetupError({ message: `no bootstrap image for ${config.name}/${brArch}: ${e instanceof Error ? e.message : String(e)}` }))
    )

    // Local layout (kojid: <mockdir>/<name>/{root,result}); all of it inside the task workdir.
    const base = path.join(request.workdir, "broot")
    const logsDir = path.join(base, "logs")
    const resultDir = path.join(base, "result")
    const metaDir = path.join(base, "meta")
    const srpmDir = path.join(base, "srpm")
    yield* Effect.tryPromise({
      try: async () => {
        for (const d of [logsDir, resultDir, metaDir, srpmDir]) await fsp.mkdir(d, { recursive: true })
        const [uid, gid] = options.buildUser.split(":").map((x) => Number(x))
        if (uid !== undefined && Number.isFinite(uid)) await fsp.chown(resultDir, uid, gid !== undefined && Number.isFinite(gid) ? gid : uid)
      },
      catch: (e) => new BuildrootSetupError({ message: `cannot create ${base}: ${String(e)}` })
    })

    const macros = rpmMacros(k, inputs)
    const macrosText = macrosFile(macros)
    const conf = dnfConf(k, urls, tagExtra)
    const confFile = path.join(metaDir, "dnf.conf")
    const mockConfig = path.join(request.workdir, "mock_config.log")
    yield* Effect.tryPromise({
      try: async () => {
        await fsp.writeFile(confFile, conf)
        await fsp.writeFile(mockConfig, mockConfigText(k, inputs, urls, {
          bootstrapImage: image.image, bootstrapImageId: image.id, buildUser: options.buildUser, limits: options.limitsText
        }))
      },
      catch: (e) => new BuildrootSetupError({ message: `cannot write the buildroot config: ${String(e)}` })
    })
    const uploaded: Array<string> = []
    yield* hub.upload(mockConfig, "mock_config.log")
    uploaded.push("mock_config.log")

    // Logs stream to the task directory while the buildroot lives (§6.3).
    // The logs mock leaves in kojid's result dir, in the order kojid uploads them.
    const logNames = [
      "state.log", "installed_pkgs.log", "hw_info.log", "root.log", "dnf.log", "dnf.rpm.log", "dnf.librepo.log", "mock_output.log", "build.log"
    ] as const
    const logFile = (n: (typeof logNames)[number]) => path.join(logsDir, n)
    const logScope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(logScope, Exit.void))
    yield* hub.streamLogs(logNames.map((n) => ({ local: logFile(n), remote: n }))).pipe(Scope.extend(logScope))
    let logsFinished = false
    const runLogs: Array<string> = []
    const finishLogs = Effect.gen(function* () {
      if (!logsFinished) {
        logsFinished = true
        yield* Scope.close(logScope, Exit.void)
      }
      // dnf's logs exist only once dnf ran in this task's root (a cached root brings none).
      const present = logNames.filter((n) => (fs.statSync(logFile(n), { throwIfNoEntry: false })?.size ?? 0) > 0 || (fs.existsSync(logFile(n)) && !n.startsWith("dnf.")))
      return [...uploaded, ...present, ...runLogs]
    })
    // mock_output.log is what mock itself prints: its state lines and its errors.
    const state = (msg: string) =>
      Effect.zipRight(appendText(logFile("state.log"), `${isoNow()} INFO buildroot: ${msg}\n`), appendText(logFile("mock_output.log"), `INFO: ${msg}\n`))
    const outputError = (msg: string) => appendText(logFile("mock_output.log"), `ERROR: ${msg}\n`)
    yield* appendText(logFile("hw_info.log"), hwInfo([logsDir, options.cacheDir]))

    const inContainer = containerRepos(urls)
    const repoMountList = inContainer.mounts
    const containerConf = path.join(metaDir, "dnf-container.conf")
    yield* Effect.promise(() => fsp.writeFile(containerConf, dnfConf(k, inContainer.urls, tagExtra)))
    const net = dnfNetwork(urls)
    const releasever = tagExtra["mock.releasever"]
    const dnfBase = [
      "dnf", "-c", "/koji/dnf.conf", "--installroot=/buildroot",
      ...(releasever === undefined || releasever === null ? [] : [`--releasever=${String(releasever)}`])
    ]
    const qa = `rpm --root /buildroot -qa --qf '${RPM_QA_FORMAT}' > /meta/installed.tsv`
    const dnfSpec = (root: string, meta: string, command: string, extra: ReadonlyArray<ContainerMount> = []): ContainerSpec => ({
      image: image.image,
      role: "buildroot",
      taskId: request.taskId,
      buildrootId: id,
      user: "0:0",
      capAdd: DNF_CAPS,
      network: net,
      // dnf writes its own logs into the installroot's /var/log: they move to the task's logs
      // (kojid's result dir has them) and never stay in a root that may be cached.
      command: ["/bin/sh", "-c", `exec >>/logs/root.log 2>&1\ntrap '${DNF_LOGS_OUT}' EXIT\n${command}`],
      mounts: [
        { type: "bind", source: logsDir, destination: "/logs", writable: true },
        { type: "bind", source: root, destination: "/buildroot", writable: true },
        { type: "bind", source: meta, destination: "/meta", writable: true },
        { type: "bind", source: containerConf, destination: "/koji/dnf.conf" },
        ...repoMountList,
        ...extra
      ]
    })

    // The fill (kojid's `mock --init`), or the cached root.
    // The repo id names the package set; where it is served from does not change the root.
    const key = cacheKey({
      repoId: repo.id, brArch, installGroup: request.installGroup, imageId: image.id,
      dnfConf: dnfConf(k, ["<repo>"], tagExtra), macros: macrosText
    })
    yield* Effect.promise(() => fsp.writeFile(logFile("root.log"), "", { flag: "a" }))
    yield* state("Start: chroot init")
    const entry = yield* cache.acquire(key, {
      repoId: repo.id, tagName: config.name, brArch, installGroup: request.installGroup, image: image.image, imageId: image.id
    }, (staging) =>
      Effect.gen(function* () {
        const root = path.join(staging, "root")
        yield* Effect.promise(() => fsp.mkdir(root, { recursive: true }))
        yield* state(`Start: installing minimal buildroot with dnf (install @${request.installGroup})`)
        const command = `set -e\n${[...dnfBase, "install", `@${request.installGroup}`].join(" ")}\n${qa.replace("/meta/", "/meta/")}\n`
        const result = yield* containers.run(dnfSpec(root, staging, command))
        if (result.exitCode !== 0) {
          yield* outputError(`Command failed: dnf install @${request.installGroup} (exit ${result.exitCode}); see root.log`)
          const text = yield* Effect.promise(() => fsp.readFile(logFile("root.log"), "utf8").catch(() => ""))
          const tail = logTail(text)
          return yield* new BuildrootSetupError({
            message: `could not init buildroot, dnf exited with status ${result.exitCode}; see root.log for more information\n${tail}`,
            logTail: tail
          })
        }
        yield* Effect.tryPromise({
          try: async () => {
            await fsp.mkdir(path.join(root, "etc/rpm"), { recursive: true })
            await fsp.writeFile(path.join(root, "etc/rpm/macros.koji"), macrosText)
            // Mount points of the build container's read-only root (podman-notes §9).
            for (const d of ["builddir", "result", "srpm", "tmp", "var/tmp"]) await fsp.mkdir(path.join(root, d), { recursive: true, mode: 0o755 })
            await fsp.chmod(path.join(root, "tmp"), 0o1777)
            await fsp.chmod(path.join(root, "var/tmp"), 0o1777)
            await fsp.rm(path.join(root, "var/cache/yum"), { recursive: true, force: true })
          },
          catch: (e) => new BuildrootSetupError({ message: `cannot finish the buildroot: ${String(e)}` })
        })
        yield* state("Finish: installing minimal buildroot with dnf")
      }))
    if (entry.warm) {
      yield* appendText(logFile("root.log"), `${isoNow()} INFO: using the cached buildroot ${entry.key} (repo ${repo.id}, @${request.installGroup}, ${image.image})\n`)
    }
    let installed: ReadonlyArray<InstalledRpm> = parseRpmQa(entry.installed)
    yield* appendText(logFile("installed_pkgs.log"), installed.map((r) => `${r.name}-${r.version}-${r.release}.${r.arch} ${r.buildtime} ${r.size} ${r.payloadhash} installed`).join("\n") + "\n")
    const task = yield* taskRoot(entry.root, path.join(base, "task"))
    yield* Effect.tryPromise({
      try: async () => {
        for (const d of ["builddir", "result", "srpm", "logs"]) await fsp.mkdir(path.join(task.root, d), { recursive: true })
        await fsp.writeFile(logFile("build.log"), "", { flag: "a" })
        const [uid, gid] = options.buildUser.split(":").map((x) => Number(x))
        if (uid !== undefined && Number.isFinite(uid)) await fsp.chown(logFile("build.log"), uid, gid !== undefined && Number.isFinite(gid) ? gid : uid)
      },
      catch: (e) => new BuildrootSetupError({ message: `cannot prepare the task root: ${String(e)}` })
    })
    yield* state(`Finish: chroot init (${entry.warm ? "cached" : "filled"}, ${task.kind})`)

    // Repos the hub no longer keeps READY lose their cached roots (checked on cold fills only).
    if (!entry.warm && options.cacheMax > 0) {
      yield* cache.prune((meta) =>
        meta.repoId === repo.id || meta.repoId < 0
          ? Effect.succeed(meta.repoId < 0)
          : Effect.map(hub.repoState(meta.repoId), (s) => s === null || s === RepoState.DELETED || s === RepoState.PROBLEM || s === RepoState.EXPIRED))
    }

    const repoInfoForList = { tagId: repo.tag_id ?? config.id, tagName: config.name, repoId: repo.id, createEvent: repo.create_event, brArch }
    yield* hub.setBuildRootList(id, yield* hub.packageList(installed, repoInfoForList))

    const env = { HOME: "/builddir", LANG: "C.UTF-8", PATH: "/usr/bin:/bin:/usr/sbin:/sbin", ...rpmEnv(tagExtra) }
    const buildSpec = (srpmFile: string, arch: string, mode: "rebuild" | "srpm"): ContainerSpec => ({
      rootfs: { path: task.root, overlay: false },
      readOnlyRoot: true,
      role: "build",
      taskId: request.taskId,
      buildrootId: id,
      user: options.buildUser,
      hostname: name.slice(0, 63),
      network: inputs.network ? "host" : "none",
      env,
      workDir: "/builddir",
      timeoutSeconds: k.rpmbuild_timeout,
      // Output goes straight into build.log, a single bind-mounted file the build can write but
      // not replace (following podman's log stream costs ~0.3 s per container).
      command: ["/bin/sh", "-c", `exec >>/logs/build.log 2>&1\n${BUILD_SCRIPT}`, "build", `/srpm/${path.basename(srpmFile)}`, arch, mode],
      mounts: [
        { type: "tmpfs", destination: "/builddir", size: options.buildTmpfsSize },
        { type: "bind", source: resultDir, destination: "/result", writable: true },
        { type: "bind", source: srpmDir, destination: "/srpm" },
        { type: "bind", source: logFile("build.log"), destination: "/logs/build.log", writable: true }
      ]
    })

    const stageSrpm = (srpm: string) =>
      Effect.tryPromise({
        try: () => fsp.copyFile(srpm, path.join(srpmDir, path.basename(srpm))),
        catch: (e) => new BuildError({ faultString: `SRPM file missing: ${srpm} (${String(e)})` })
      })

    const runBuild = (srpm: string, arch: string, mode: "rebuild" | "srpm") =>
      Effect.gen(function* () {
        if (readyAt === undefined) readyAt = Date.now()
        yield* state(`Start: rpmbuild ${mode === "srpm" ? "-bs" : path.basename(srpm)}`)
        const r = yield* containers.run(buildSpec(srpm, arch, mode))
        yield* state(`Finish: rpmbuild (exit ${r.exitCode})`)
        return r.exitCode
      })

    const buildLogTail = Effect.promise(() => fsp.readFile(logFile("build.log"), "utf8").catch(() => "")).pipe(Effect.map((t) => logTail(t)))

    /** Installs the missing BuildRequires of this round into the task root (bootstrap image). */
    const installDeps = (srpm: string, arch: string) =>
      Effect.gen(function* () {
        const nosrc = yield* Effect.promise(() => fsp.readdir(path.join(resultDir, "buildreqs")).catch(() => [] as Array<string>))
        const nosrcFile = nosrc.find((f) => f.endsWith(".nosrc.rpm"))
        const target = nosrcFile !== undefined ? `/result/buildreqs/${nosrcFile}` : `/srpm/${path.basename(srpm)}`
        yield* state(`Start: dnf builddep ${path.basename(target)}`)
        const command = `set -e\n${[...dnfBase, "builddep", target].join(" ")}\n${qa}\n`
        const r = yield* containers.run(
          dnfSpec(task.root, metaDir, command, [
            { type: "bind", source: resultDir, destination: "/result" },
            { type: "bind", source: srpmDir, destination: "/srpm" }
          ])
        )
        yield* state(`Finish: dnf builddep (exit ${r.exitCode})`)
        yield* Effect.promise(() => fsp.rm(path.join(resultDir, "buildreqs"), { recursive: true, force: true }))
        if (r.exitCode !== 0) {
          yield* outputError(`Command failed: dnf builddep ${path.basename(target)} (exit ${r.exitCode}); see root.log`)
          const text = yield* Effect.promise(() => fsp.readFile(logFile("root.log"), "utf8").catch(() => ""))
          const tail = logTail(text)
          return yield* new RpmbuildFailed({
            message: `error building package (arch ${arch}), dnf builddep exited with status ${r.exitCode}; see root.log for more information\n${tail}`,
            exitCode: r.exitCode,
            logTail: tail
          })
        }
        installed = parseRpmQa(yield* Effect.promise(() => fsp.readFile(path.join(metaDir, "installed.tsv"), "utf8")))
      })

    const build = (srpm: string, arch: string) =>
      Effect.gen(function* () {
        yield* hub.setBuildRootState(id, "BUILDING")
        yield* stageSrpm(srpm)
        const attempt = Effect.gen(function* () {
          for (let round = 0; ; round++) {
            const rc = yield* runBuild(srpm, arch, "rebuild")
            if (rc !== MISSING_DEPS || round >= MAX_DEP_ROUNDS) return rc
            yield* installDeps(srpm, arch)
          }
        })
        const rc = yield* Effect.exit(attempt)
        yield* Effect.promise(() => fsp.rm(path.join(resultDir, "buildreqs"), { recursive: true, force: true }))
        yield* hub.updateBuildRootList(id, yield* hub.packageList(installed, repoInfoForList))
        if (Exit.isFailure(rc)) {
          yield* expire
          return yield* Exit.failCause(rc.cause)
        }
        if (rc.value !== 0) {
          yield* expire
          const tail = yield* buildLogTail
          const why = rc.value === -1
            ? `rpmbuild was killed after rpmbuild_timeout (${k.rpmbuild_timeout} s)`
            : `rpmbuild exited with status ${rc.value}`
          yield* outputError(`Command failed: rpmbuild ${path.basename(srpm)}: ${why}; see build.log`)
          return yield* new RpmbuildFailed({
            message: `error building package (arch ${arch}), ${why}; see build.log for more information\n${tail}`,
            exitCode: rc.value,
            logTail: tail
          })
        }
      })

    const rebuildSrpm = (srpm: string) =>
      Effect.gen(function* () {
        yield* hub.setBuildRootState(id, "BUILDING")
        yield* stageSrpm(srpm)
        const rc = yield* runBuild(srpm, "noarch", "srpm")
        if (rc === 31) return yield* new BuildError({ faultString: "No spec file found" })
        if (rc === 32) {
          const tail = yield* buildLogTail
          return yield* new BuildError({ faultString: `Multiple spec files found: ${tail.split("\n").slice(-1)[0] ?? ""}` })
        }
        if (rc !== 0) {
          yield* outputError(`Command failed: rpmbuild -bs ${path.basename(srpm)} (exit ${rc}); see build.log`)
          yield* expire
          const tail = yield* buildLogTail
          return yield* new BuildError({ faultString: `error building srpm, rpmbuild exited with status ${rc}; see build.log for more information\n${tail}` })
        }
      })

    const shellQuote = (w: string) => `'${w.replaceAll("'", "'\\''")}'`

    /** `mock --install <packages>` into the task root, then updateBuildRootList as kojid's runroot does. */
    const installPackages = (packages: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        yield* state(`Start: dnf install ${packages.join(" ")}`)
        const command = `set -e\n${[...dnfBase, "install", ...packages.map(shellQuote)].join(" ")}\n${qa}\n`
        const r = yield* containers.run(dnfSpec(task.root, metaDir, command))
        yield* state(`Finish: dnf install (exit ${r.exitCode})`)
        if (r.exitCode === 0) installed = parseRpmQa(yield* Effect.promise(() => fsp.readFile(path.join(metaDir, "installed.tsv"), "utf8")))
        // kojid updates the list whether or not the install worked, then fails (runroot.py).
        yield* hub.updateBuildRootList(id, yield* hub.packageList(installed, repoInfoForList))
        if (r.exitCode !== 0) {
          yield* outputError(`Command failed: dnf install ${packages.join(" ")} (exit ${r.exitCode}); see root.log`)
          const tail = logTail(yield* Effect.promise(() => fsp.readFile(logFile("root.log"), "utf8").catch(() => "")))
          return yield* new BuildrootSetupError({
            message: `${["--install", ...packages].join(" ")} exited with status ${r.exitCode}; see root.log for more information\n${tail}`,
            logTail: tail
          })
        }
      })

    /** Makes the mount points of `mounts` in the task root that it lacks (a file for a file bind). */
    const mountPoints = (mounts: ReadonlyArray<ContainerMount>) =>
      Effect.tryPromise({
        try: async () => {
          for (const m of mounts) {
            const target = path.join(task.root, m.destination)
            const rel = path.relative(task.root, target)
            if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) throw new Error(`mount point outside the root: ${m.destination}`)
            // A symlink on the way could point out of the root: podman resolves those itself.
            if (await hasSymlink(task.root, rel)) continue
            const isFile = m.type === "bind" && (await fsp.stat(m.source).then((st) => !st.isDirectory(), () => false))
            if (isFile) {
              await fsp.mkdir(path.dirname(target), { recursive: true })
              await fsp.writeFile(target, "", { flag: "a" })
            } else {
              await fsp.mkdir(target, { recursive: true })
            }
          }
        },
        catch: (e) => new BuildrootSetupError({ message: `cannot make the mount points: ${e instanceof Error ? e.message : String(e)}` })
      })

    let running = false
    const run = (o: BuildrootRunOptions) =>
      Effect.gen(function* () {
        const logName = path.basename(o.log)
        const log = path.join(logsDir, logName)
        if (!running) yield* hub.setBuildRootState(id, "BUILDING")
        running = true
        if (o.installPackages !== undefined && o.installPackages.length > 0) yield* installPackages(o.installPackages)
        yield* Effect.tryPromise({
          try: async () => {
            await fsp.writeFile(log, "", { flag: "a" })
            const [uid, gid] = options.buildUser.split(":").map((x) => Number(x))
            if (o.user === "build" && uid !== undefined && Number.isFinite(uid)) await fsp.chown(log, uid, gid !== undefined && Number.isFinite(gid) ? gid : uid)
          },
          catch: (e) => new BuildrootSetupError({ message: `cannot create ${logName}: ${String(e)}` })
        })
        if (!runLogs.includes(logName) && !(logNames as ReadonlyArray<string>).includes(logName)) {
          runLogs.push(logName)
          if (!logsFinished) yield* hub.streamLogs([{ local: log, remote: logName }]).pipe(Scope.extend(logScope))
        }
        const inRoot = `/logs/${logName}`
        const mounts: ReadonlyArray<ContainerMount> = [
          ...(o.user === "build" ? [{ type: "tmpfs" as const, destination: "/builddir", size: options.buildTmpfsSize }] : []),
          { type: "bind", source: log, destination: inRoot, writable: true },
          ...o.mounts
        ]
        yield* mountPoints(mounts)
        const network = o.network ?? inputs.network
        yield* state(`Start: ${o.command.join(" ")}`)
        const r = yield* containers.run({
          rootfs: { path: task.root, overlay: false },
          // The build user gets the rpmbuild container's read-only root; root writes into the task's own copy.
          readOnlyRoot: o.user === "build",
          role: o.role ?? (o.user === "root" ? "runroot" : "build"),
          taskId: request.taskId,
          buildrootId: id,
          user: o.user === "root" ? "0:0" : options.buildUser,
          hostname: name.slice(0, 63),
          network: network ? "host" : "none",
          env,
          workDir: "/builddir",
          ...(o.timeoutSeconds === undefined ? {} : { timeoutSeconds: o.timeoutSeconds }),
          command: ["/bin/sh", "-c", `exec >>"/logs/$0" 2>&1 </dev/null\nexec "$@"`, logName, ...o.command],
          mounts
        }, { outputOnFailureOnly: true })
        yield* state(`Finish: ${o.command[0] ?? ""} (exit ${r.exitCode})`)
        return { exitCode: r.exitCode, logFile: log, rootdir: task.root, stray: `${r.stdout}${r.stderr}` } satisfies BuildrootRunResult
      })

    return {
      id, name, repo, config, brArch, resultDir, warm: entry.warm,
      build, rebuildSrpm, finishLogs, expire, run,
      readyMs: () => (readyAt === undefined ? undefined : readyAt - openedAt)
    } satisfies Buildroot
  })

  return Buildroots.of({ open, cache, options })
})
