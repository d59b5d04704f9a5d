/**
 * `koji-adjutant build-local`: the daemon's buildroot and build code on this machine (DESIGN §5),
 * with the same containers, limits and user namespace as the daemon (from `-c`, else kojid.conf's
 * defaults), in two forms:
 *
 * - `--target TARGET` / `--tag BUILD_TAG` with an SRPM or an SCM URL: build exactly what a
 *   builder of a real koji hub would, reading the hub anonymously (fromHub.ts); the hub comes
 *   from a koji client profile (`-p`) or `--server`/`--topurl`.
 * - `--repo URL|DIR` with an SRPM: no hub. The hub side is `localHub`: a synthetic READY repo and
 *   tag, buildroot id 1, lists and states logged. The repo is identified by its location and its
 *   repomd.xml digest, so a cached root never serves another repo.
 *
 * The RPMs, the SRPM and every log (mock_config.log, root.log, build.log, …) end up in the result
 * directory; a failure is one line on stderr (exit 1), an interrupt exits 130.
 */
import { Args, Command, Options } from "@effect/cli"
import { Cause, Console, Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Buildroots, buildrootsOptionsFromConfig } from "../buildroot/Buildroots.js"
import { resultArches } from "../buildroot/config.js"
import { BuildrootSetupError } from "../buildroot/errors.js"
import { localHub } from "../buildroot/hubSide.js"
import { readRpmHeader } from "../buildroot/rpmHeader.js"
import { type Config, loadConfig, parseConfigSources } from "../config/AdjutantConfig.js"
import { Containers, containersOptionsFromConfig } from "../containers/Containers.js"
import { imagesOptionsFromConfig, makeImages } from "../containers/Images.js"
import { Libpod } from "../containers/Libpod.js"
import { canonArch } from "../koji/arch.js"
import { isScmUrl, Scm, type ScmOptions, scmOptionsFromConfig } from "../scm/Scm.js"
import { AnonymousHub } from "./anonymousHub.js"
import { loadReference } from "./compareTask.js"
import { LocalBuildError } from "./errors.js"
import { buildFromPlan, planFromHub, resolveHub, summaryLines } from "./fromHub.js"
import { checkResultDir, checkSrpm, hostArch, scopedWorkdir, why } from "./localFiles.js"

export { LocalBuildError }
export { hostArch }

/** What a local build needs. */
export interface BuildLocalRequest {
  readonly srpm: string
  /** The arch repo directory (holding repodata/) or its URL. */
  readonly repo: string
  readonly arch: string
  readonly resultDir: string
}

/** Where a local build put its files. */
export interface BuildLocalResult {
  readonly resultDir: string
  readonly rpms: ReadonlyArray<string>
  readonly srpms: ReadonlyArray<string>
  readonly logs: ReadonlyArray<string>
}

/** `file://` URL of a local repo directory; URLs pass through. */
export const repoUrlOf = (repo: string): string =>
  /^[a-z]+:\/\//.test(repo) ? repo : `file://${path.resolve(repo)}`

const MAX_REPOMD = 16 * 1024 * 1024

/** The repo's repomd.xml (bounded), read from its directory or fetched; the identity is URL + digest. */
export const repoIdentity = (url: string): Effect.Effect<string, LocalBuildError> =>
  Effect.tryPromise({
    try: async () => {
      let data: Uint8Array
      if (url.startsWith("file://")) {
        const file = path.join(decodeURIComponent(url.slice("file://".length)), "repodata", "repomd.xml")
        const st = await fsp.stat(file)
        if (!st.isFile() || st.size > MAX_REPOMD) throw new Error(`${file} is not a repomd.xml`)
        data = await fsp.readFile(file)
      } else {
        const res = await fetch(`${url.replace(/\/+$/, "")}/repodata/repomd.xml`, { signal: AbortSignal.timeout(60_000) })
        if (!res.ok) throw new Error(`HTTP ${res.status} for repodata/repomd.xml`)
        data = new Uint8Array(await res.arrayBuffer())
        if (data.length > MAX_REPOMD) throw new Error("repodata/repomd.xml is too large")
      }
      return `${url} sha256:${createHash("sha256").update(data).digest("hex")}`
    },
    catch: (e) => new LocalBuildError({ message: `cannot read the repo ${url}: ${why(e)}` })
  })

/** Builds `request.srpm` from `request.repo` into `request.resultDir` (no hub). */
export const buildLocal = Effect.fn("buildLocal")(function* (request: BuildLocalRequest) {
  const buildroots = yield* Buildroots
  const resultDir = path.resolve(request.resultDir)
  yield* checkSrpm(request.srpm)
  yield* checkResultDir(resultDir)
  const url = repoUrlOf(request.repo)
  const identity = yield* repoIdentity(url)
  const header = yield* readRpmHeader(request.srpm).pipe(Effect.mapError((e) => new LocalBuildError({ message: e.message })))
  if (!header.sourcepackage) return yield* new LocalBuildError({ message: `${request.srpm}: not a source package` })
  const work = yield* scopedWorkdir
  const brArch = canonArch(request.arch === "noarch" ? hostArch() : request.arch)
  const hub = localHub(resultDir, { url, tagName: "local", repoId: 0, identity }, brArch)
  const broot = yield* buildroots.open({ taskId: 0, tag: "local", arch: brArch, repoId: 0, installGroup: "build", workdir: work }, hub)
  const built = yield* Effect.exit(broot.build(path.resolve(request.srpm), request.arch))
  const logs = yield* broot.finishLogs
  if (built._tag === "Failure") return yield* Effect.failCause(built.cause)
  const results = yield* broot.collect({ outDir: resultDir, arches: resultArches(request.arch) })
  return {
    resultDir,
    rpms: results.rpms.map((r) => r.file),
    srpms: results.srpms.map((r) => r.file),
    logs: logs.filter((l) => fs.existsSync(path.join(resultDir, l))).map((l) => path.join(resultDir, l))
  } satisfies BuildLocalResult
}, Effect.scoped)

/** What a local build's services are made of: kojid.conf (or its defaults) and the command line. */
export interface LocalSettings {
  readonly config: Config
  readonly socket?: string | undefined
  readonly cacheDir?: string | undefined
  /** `--image`: this bootstrap image for every buildroot, which must be in podman's storage. */
  readonly image?: string | undefined
  /**
   * Building from a hub: its topurl (the buildroots' repos); the bootstrap image is then chosen
   * as the daemon chooses it (the tag's `mock.bootstrap_image` when `mock_bootstrap_image` is on,
   * `image_rules`, `bootstrap_image`) and pulled by `pull_policy`, unless `image` is given.
   */
  readonly hub?: { readonly topurl: string } | undefined
  /** SCM checkouts: kojid.conf's `allowed_scms` (from `-c`), or any URL (no `-c`: the user's own machine). */
  readonly scm?: "config" | "any" | undefined
}

/** A kojid.conf named with `-c`; it must exist. The hub's URLs, when building from one, stand in for server and topurl. */
const configFile = (file: string, hub?: { readonly server: string; readonly topurl: string }): Effect.Effect<Config, LocalBuildError> =>
  fs.existsSync(file)
    ? Effect.mapError(loadConfig(file, hub ?? {}), (e) => new LocalBuildError({ message: e.message }))
    : Effect.fail(new LocalBuildError({ message: `cannot read ${file}: no such file` }))

/** kojid.conf's defaults, as the daemon runs without a config file. */
export const defaultConfig = (hub?: { readonly server: string; readonly topurl: string }): Effect.Effect<Config, LocalBuildError> =>
  // Without a hub the required hub URLs get placeholders.
  Effect.mapError(parseConfigSources([], "(defaults)", hub ?? { server: "http://localhost/kojihub", topurl: "http://localhost/kojifiles" }, {}, true), (e) =>
    new LocalBuildError({ message: e.message }))

/**
 * The SCM rules of a local build: with `-c`, kojid.conf's `allowed_scms` as a builder of the hub
 * applies them; without, any URL (the user's machine, the user's choice), with kojid's defaults
 * for what an entry does not say (no `common` checkout, source command `make sources`). The
 * hub's `build_from_scm` policy is for its builders and cannot be asked anonymously.
 */
export const localScmOptions = (config: Config, rules: "config" | "any", image: string | undefined): ScmOptions => {
  const base = scmOptionsFromConfig(config)
  return {
    ...base,
    ...(rules === "any" ? { allowedScms: "*:*:no", useConfig: true } : {}),
    usePolicy: false,
    ...(image === undefined ? {} : { image })
  }
}

/**
 * Buildroots, Containers and Scm for local builds: the daemon's settings (limits, ulimits, user
 * namespace, task disk, OCI runtime), labelled `build-local-<machine>` so that no daemon's reaper
 * takes its containers. Without a hub the bootstrap image must exist locally.
 */
export const localLayerFromSettings = (s: LocalSettings): Layer.Layer<Buildroots | Containers | Libpod | Scm, BuildrootSetupError> => {
  const a = s.config.adjutant
  const containers = Containers.layer({
    ...containersOptionsFromConfig(s.config),
    ...(s.socket === undefined ? {} : { socket: s.socket.replace(/^unix:\/\//, "") }),
    hostName: `build-local-${os.hostname()}`
  })
  const inspect = (libpod: Libpod["Type"], image: string) =>
    libpod.imageInspect(image).pipe(
      Effect.map((i) => ({ image, id: i.Id })),
      Effect.mapError(() => new BuildrootSetupError({ message: `the bootstrap image ${image} is not in podman's storage: build it (scripts/build-images.sh) or pull it` }))
    )
  const hub = s.hub
  const buildroots = Layer.unwrapEffect(Effect.gen(function* () {
    const libpod = yield* Libpod
    // The daemon's image state file is the daemon's: a local build remembers nothing.
    const images = hub === undefined || s.image !== undefined
      ? undefined
      : yield* makeImages({ ...imagesOptionsFromConfig(s.config), stateFile: undefined })
    const base = buildrootsOptionsFromConfig(s.config, (request) =>
      images === undefined
        ? inspect(libpod, s.image ?? a.bootstrap_image)
        : Effect.map(images.forTask(request), (e) => ({ image: e.image, id: e.id })))
    return Buildroots.layer({
      ...base,
      ...(s.cacheDir === undefined ? {} : { cacheDir: s.cacheDir }),
      // The repo comes from the hub's topurl, or (no hub) from the command line.
      kojid: { ...base.kojid, topurls: hub === undefined ? [] : [hub.topurl] }
    })
  }))
  const scm = Scm.layer(localScmOptions(s.config, s.scm ?? "any", s.image))
  return Layer.merge(buildroots, scm).pipe(Layer.provideMerge(containers))
}

/** Buildroots and Containers for a local build on `socket` with kojid.conf's defaults (tests). */
export const localLayer = (socket: string, cacheDir: string, image: string): Layer.Layer<Buildroots | Containers | Libpod | Scm, BuildrootSetupError> =>
  Layer.unwrapEffect(Effect.map(Effect.orDie(defaultConfig()), (config) => localLayerFromSettings({ config, socket, cacheDir, image })))

/** The message of a failed local build for the terminal: the error's own text, no stack for known errors. */
export const failureText = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) return Cause.pretty(cause)
  const e = failure.value
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" && e.message !== "") return e.message
  if (typeof e === "object" && e !== null && "faultString" in e && typeof e.faultString === "string") return e.faultString
  return String(e)
}

let lastSignal: "SIGINT" | "SIGTERM" | undefined

/** Remembers which signal stopped the build (the runtime's own handlers interrupt it), for the exit code. */
const recordSignals = Effect.acquireRelease(
  Effect.sync(() => {
    const onInt = () => void (lastSignal = "SIGINT")
    const onTerm = () => void (lastSignal = "SIGTERM")
    process.prependListener("SIGINT", onInt)
    process.prependListener("SIGTERM", onTerm)
    return { onInt, onTerm }
  }),
  ({ onInt, onTerm }) => Effect.sync(() => {
    process.off("SIGINT", onInt)
    process.off("SIGTERM", onTerm)
  })
)

const text = (name: string, description: string) => Options.text(name).pipe(Options.withDescription(description), Options.optional)

/** The `build-local` subcommand. */
export const buildLocalCommand = Command.make(
  "build-local",
  {
    source: Args.text({ name: "SRPM|SCM-URL" }).pipe(Args.withDescription("the source package to build, or (with --target/--tag) an SCM URL")),
    target: text("target", "build as the builders of a koji hub build for this build target, reading the hub anonymously"),
    tag: text("tag", "build from this build tag of the hub instead of a target's"),
    profile: text("profile", "koji client profile naming the hub (~/.koji/config, /etc/koji.conf, …; default: koji)").pipe(Options.withAlias("p")),
    kojiConfig: text("koji-config", "koji client config file to read instead of ~/.koji/config.d and ~/.koji/config"),
    server: text("server", "the hub's URL (over the profile's server)").pipe(Options.withAlias("s")),
    topurl: text("topurl", "the hub's file URL, where its repos are (over the profile's topurl)"),
    repoId: Options.integer("repo-id").pipe(Options.withDescription("build from this repo of the build tag instead of its current one"), Options.optional),
    waitRepo: Options.boolean("wait-repo").pipe(Options.withDescription("wait for a repo newer than the build tag's last change")),
    compareTask: Options.integer("compare-task").pipe(
      Options.withDescription("compare the buildroots' packages with those of this koji task (or its subtasks)"),
      Options.optional
    ),
    repo: text("repo", "build without a hub from this koji-style repo: the arch directory holding repodata/, or its URL"),
    arch: text("arch", "arch to build (default: this machine's)"),
    result: Options.text("result").pipe(Options.withDescription("directory for RPMs and logs"), Options.withDefault("build-local-result")),
    config: text("config", "kojid.conf to take podman, image, limits, user namespace and allowed_scms settings from (default: kojid's defaults)")
      .pipe(Options.withAlias("c")),
    socket: text("podman-socket", "podman API socket (default: [adjutant] podman_socket)"),
    cacheDir: text("cache-dir", "buildroot cache (default: [adjutant] buildroot_cache_dir)"),
    image: text("image", "bootstrap image (default: as the daemon chooses it; [adjutant] bootstrap_image without a hub)"),
    timeout: Options.integer("timeout").pipe(Options.withDescription("give up after this many seconds (default: no limit)"), Options.optional)
  },
  (o) => {
    let started = false
    const fail = (message: string) => Effect.fail(new LocalBuildError({ message }))
    const settings = (config: Config, extra: Partial<LocalSettings> = {}): LocalSettings => ({
      config, socket: Option.getOrUndefined(o.socket), cacheDir: Option.getOrUndefined(o.cacheDir), image: Option.getOrUndefined(o.image),
      ...extra
    })
    const hubFlags: ReadonlyArray<readonly [string, boolean]> = [
      ["--profile", Option.isSome(o.profile)], ["--koji-config", Option.isSome(o.kojiConfig)], ["--server", Option.isSome(o.server)],
      ["--topurl", Option.isSome(o.topurl)], ["--repo-id", Option.isSome(o.repoId)], ["--wait-repo", o.waitRepo],
      ["--compare-task", Option.isSome(o.compareTask)]
    ]

    /** Today's form: an SRPM from a repo, no hub. */
    const offline = (repo: string) =>
      Effect.gen(function* () {
        const given = hubFlags.filter(([, set]) => set).map(([name]) => name)
        if (given.length > 0) return yield* fail(`${given.join(", ")} need --target or --tag (--repo builds without a hub)`)
        if (isScmUrl(o.source)) return yield* fail("an SCM URL is built from a hub: give --target or --tag instead of --repo")
        const config = yield* Option.match(o.config, { onNone: () => defaultConfig(), onSome: (f) => configFile(f) })
        const arch = Option.getOrElse(o.arch, hostArch)
        started = true
        const r = yield* buildLocal({ srpm: o.source, repo, arch, resultDir: o.result }).pipe(Effect.provide(localLayerFromSettings(settings(config))))
        yield* Console.log(`built ${[...r.rpms, ...r.srpms].map((f) => path.basename(f)).join(", ")}`)
        yield* Console.log(`results and logs: ${r.resultDir}`)
      })

    /** From a hub: target → build tag → repo → build config, then the build as its builders do it. */
    const fromHub = Effect.gen(function* () {
      if (Option.isSome(o.target) && Option.isSome(o.tag)) return yield* fail("give --target or --tag, not both")
      if (Option.isSome(o.repoId) && o.waitRepo) return yield* fail("give --repo-id or --wait-repo, not both")
      if (!isScmUrl(o.source)) yield* checkSrpm(o.source)
      yield* checkResultDir(path.resolve(o.result))
      const hub = yield* resolveHub({
        profile: Option.getOrUndefined(o.profile), kojiConfig: Option.getOrUndefined(o.kojiConfig),
        server: Option.getOrUndefined(o.server), topurl: Option.getOrUndefined(o.topurl), home: os.homedir()
      })
      const urls = { server: hub.server, topurl: hub.topurl }
      const config = yield* Option.match(o.config, { onNone: () => defaultConfig(urls), onSome: (f) => configFile(f, urls) })
      if (Option.isSome(o.config) && config.kojid.allowed_scms_use_policy) {
        yield* Effect.logWarning("allowed_scms_use_policy: the hub's build_from_scm policy is not checked for a local build (it needs a host login)")
      }
      yield* Effect.gen(function* () {
        const client = yield* AnonymousHub
        const plan = yield* planFromHub(client, {
          target: Option.getOrUndefined(o.target), tag: Option.getOrUndefined(o.tag),
          repoId: Option.getOrUndefined(o.repoId), waitRepo: o.waitRepo
        })
        const reference = Option.isSome(o.compareTask) ? yield* loadReference(client, o.compareTask.value) : undefined
        yield* Effect.logInfo(`building from ${plan.server}: build tag ${plan.buildTag.name}, repo ${plan.repo.id} (event ${plan.repo.create_event})`)
        started = true
        const result = yield* buildFromPlan(plan, { source: o.source, arch: Option.getOrUndefined(o.arch), resultDir: o.result, topurl: hub.topurl }).pipe(
          Effect.provide(localLayerFromSettings(settings(config, { hub: { topurl: hub.topurl }, scm: Option.isSome(o.config) ? "config" : "any" })))
        )
        for (const line of summaryLines(plan, result, reference)) yield* Console.log(line)
      }).pipe(Effect.provide(AnonymousHub.layerProfile(hub.profile)))
    })

    return Effect.gen(function* () {
      yield* recordSignals
      const build = Option.isSome(o.repo)
        ? Option.isSome(o.target) || Option.isSome(o.tag)
          ? fail("--repo builds without a hub and --target/--tag from one: give one or the other")
          : offline(o.repo.value)
        : Option.isNone(o.target) && Option.isNone(o.tag)
          ? fail("give --target TARGET (or --tag BUILD_TAG) to build as a koji hub's builders do, or --repo URL|DIR to build without a hub")
          : fromHub
      yield* Option.match(o.timeout, {
        onNone: () => build,
        onSome: (seconds) =>
          Effect.timeoutFail(build, {
            duration: `${seconds} seconds`,
            onTimeout: () => new LocalBuildError({ message: `the build did not finish within --timeout ${seconds} seconds; stopped` })
          })
      })
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.gen(function* () {
            const dir = path.resolve(o.result)
            const made = started && Cause.failureOption(cause).pipe(Option.exists((e) => !(e instanceof LocalBuildError))) && fs.existsSync(dir)
            yield* Console.error(`koji-adjutant build-local: ${failureText(cause)}${made ? `\nlogs: ${dir}` : ""}`)
            yield* Effect.sync(() => {
              process.exitCode = 1
            })
          })),
      // SIGINT/SIGTERM interrupt the build; its scope has removed the containers and files by now:
      // exit as a shell reports a command killed by that signal.
      Effect.onInterrupt(() => Effect.sync(() => {
        process.exitCode = 128 + (lastSignal === "SIGTERM" ? 15 : 2)
      })),
      Effect.scoped
    )
  }
).pipe(Command.withDescription(
  "build an SRPM or SCM URL as the builders of a koji hub build it (--target/--tag, read anonymously), or an SRPM from a koji-style repo without a hub (--repo)"
))
