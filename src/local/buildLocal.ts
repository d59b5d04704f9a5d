/**
 * `koji-adjutant build-local SRPM --repo URL|DIR [--arch A] [--result DIR] [-c kojid.conf]`: the
 * daemon's buildroot and build code without a hub (DESIGN §5), with the same containers, limits
 * and user namespace as the daemon (from `-c`, else kojid.conf's defaults). The hub side is
 * `localHub`: a synthetic READY repo and tag, buildroot id 1, lists and states logged; the RPMs,
 * the SRPM and every log (mock_config.log, root.log, build.log, …) end up in the result
 * directory. The repo is identified by its location and its repomd.xml digest, so a cached root
 * never serves another repo.
 */
import { Args, Command, Options } from "@effect/cli"
import { Cause, Console, Effect, Layer, Option, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Buildroots, buildrootsOptionsFromConfig } from "../buildroot/Buildroots.js"
import { resultArches } from "../buildroot/config.js"
import type { BuildrootSetupError } from "../buildroot/errors.js"
import { localHub } from "../buildroot/hubSide.js"
import { readRpmHeader } from "../buildroot/rpmHeader.js"
import { type Config, loadConfig, parseConfigSources } from "../config/AdjutantConfig.js"
import { Containers, containersOptionsFromConfig } from "../containers/Containers.js"
import { Libpod } from "../containers/Libpod.js"
import { canonArch } from "../koji/arch.js"

/** A local build cannot start: a path, the repo or the image is not usable (one line for the user). */
export class LocalBuildError extends Schema.TaggedError<LocalBuildError>()("LocalBuildError", {
  message: Schema.String
}) {}

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

/** The machine's arch as rpm names it. */
export const hostArch = (): string => {
  const a = os.arch()
  return a === "x64" ? "x86_64" : a === "arm64" ? "aarch64" : a === "ia32" ? "i386" : a
}

/** `file://` URL of a local repo directory; URLs pass through. */
export const repoUrlOf = (repo: string): string =>
  /^[a-z]+:\/\//.test(repo) ? repo : `file://${path.resolve(repo)}`

const MAX_REPOMD = 16 * 1024 * 1024
const why = (e: unknown): string => (e instanceof Error ? e.message : String(e))
const codeOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

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

/** The SRPM must be a readable regular file. */
const checkSrpm = (srpm: string) =>
  Effect.tryPromise({
    try: async () => {
      const st = await fsp.stat(srpm)
      if (!st.isFile()) throw new Error("not a regular file")
      await fsp.access(srpm, fs.constants.R_OK)
    },
    catch: (e) => new LocalBuildError({ message: `cannot read the SRPM ${srpm}: ${codeOf(e) === "ENOENT" ? "no such file" : why(e)}` })
  })

/** The result directory, made if missing; it must be a writable directory. */
const checkResultDir = (dir: string) =>
  Effect.tryPromise({
    try: async () => {
      await fsp.mkdir(dir, { recursive: true })
      if (!(await fsp.stat(dir)).isDirectory()) throw new Error("not a directory")
      await fsp.access(dir, fs.constants.W_OK)
    },
    catch: (e) => {
      const code = codeOf(e)
      const reason = code === "EEXIST" || code === "ENOTDIR" ? "a file is in the way" : code === "EACCES" ? "permission denied" : why(e)
      return new LocalBuildError({ message: `cannot use the result directory ${dir}: ${reason}` })
    }
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
  const work = yield* Effect.acquireRelease(
    // Traversable (0711): the build's containers run as a mapped uid and must reach their root.
    Effect.promise(() => fsp.mkdtemp(path.join(os.tmpdir(), "koji-adjutant-local-")).then(async (d) => (await fsp.chmod(d, 0o711), d))),
    (d) => Effect.promise(() => fsp.rm(d, { recursive: true, force: true }))
  )
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
  readonly image?: string | undefined
}

/** A kojid.conf named with `-c`; it must exist. */
const configFile = (file: string): Effect.Effect<Config, LocalBuildError> =>
  fs.existsSync(file)
    ? Effect.mapError(loadConfig(file), (e) => new LocalBuildError({ message: e.message }))
    : Effect.fail(new LocalBuildError({ message: `cannot read ${file}: no such file` }))

/** kojid.conf's defaults, as the daemon runs without a config file. */
export const defaultConfig = (): Effect.Effect<Config, LocalBuildError> =>
  // No hub is used: the required hub URLs get placeholders.
  Effect.mapError(parseConfigSources([], "(defaults)", { server: "http://localhost/kojihub", topurl: "http://localhost/kojifiles" }, {}, true), (e) =>
    new LocalBuildError({ message: e.message }))

/**
 * Buildroots and Containers for local builds: the daemon's settings (limits, ulimits, user
 * namespace, task disk, OCI runtime), labelled `build-local-<machine>` so that no daemon's reaper
 * takes its containers; the bootstrap image must exist locally.
 */
export const localLayerFromSettings = (s: LocalSettings): Layer.Layer<Buildroots | Containers | Libpod, BuildrootSetupError> => {
  const a = s.config.adjutant
  const image = s.image ?? a.bootstrap_image
  const containers = Containers.layer({
    ...containersOptionsFromConfig(s.config),
    ...(s.socket === undefined ? {} : { socket: s.socket.replace(/^unix:\/\//, "") }),
    hostName: `build-local-${os.hostname()}`
  })
  const buildroots = Layer.unwrapEffect(Effect.map(Libpod, (libpod) => {
    const base = buildrootsOptionsFromConfig(s.config, () =>
      libpod.imageInspect(image).pipe(
        Effect.map((i) => ({ image, id: i.Id })),
        Effect.mapError(() => new LocalBuildError({ message: `the bootstrap image ${image} is not in podman's storage: build it (scripts/build-images.sh) or pull it` }))
      ))
    return Buildroots.layer({
      ...base,
      ...(s.cacheDir === undefined ? {} : { cacheDir: s.cacheDir }),
      // No hub: the repo comes from the command line, not from topurl/topdir.
      kojid: { ...base.kojid, topurls: [] }
    })
  }))
  return buildroots.pipe(Layer.provideMerge(containers))
}

/** Buildroots and Containers for a local build on `socket` with kojid.conf's defaults (tests). */
export const localLayer = (socket: string, cacheDir: string, image: string): Layer.Layer<Buildroots | Containers | Libpod, BuildrootSetupError> =>
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

/** The `build-local` subcommand. */
export const buildLocalCommand = Command.make(
  "build-local",
  {
    srpm: Args.text({ name: "SRPM" }).pipe(Args.withDescription("the source package to build")),
    repo: Options.text("repo").pipe(Options.withDescription("koji-style repo: the arch directory holding repodata/, or its URL")),
    arch: Options.text("arch").pipe(Options.withDescription("target arch (default: this machine's)"), Options.optional),
    result: Options.text("result").pipe(Options.withDescription("directory for RPMs and logs"), Options.withDefault("build-local-result")),
    config: Options.text("config").pipe(
      Options.withAlias("c"),
      Options.withDescription("kojid.conf to take podman, image, limits and user namespace settings from (default: kojid's defaults)"),
      Options.optional
    ),
    socket: Options.text("podman-socket").pipe(Options.withDescription("podman API socket (default: [adjutant] podman_socket)"), Options.optional),
    cacheDir: Options.text("cache-dir").pipe(Options.withDescription("buildroot cache (default: [adjutant] buildroot_cache_dir)"), Options.optional),
    image: Options.text("image").pipe(Options.withDescription("bootstrap image (default: [adjutant] bootstrap_image)"), Options.optional),
    timeout: Options.integer("timeout").pipe(Options.withDescription("give up after this many seconds (default: no limit)"), Options.optional)
  },
  (o) =>
    Effect.gen(function* () {
      yield* recordSignals
      const config = yield* Option.match(o.config, { onNone: defaultConfig, onSome: configFile })
      const arch = Option.getOrElse(o.arch, hostArch)
      const build = buildLocal({ srpm: o.srpm, repo: o.repo, arch, resultDir: o.result }).pipe(
        Effect.provide(localLayerFromSettings({
          config, socket: Option.getOrUndefined(o.socket), cacheDir: Option.getOrUndefined(o.cacheDir), image: Option.getOrUndefined(o.image)
        }))
      )
      const r = yield* Option.match(o.timeout, {
        onNone: () => build,
        onSome: (seconds) =>
          Effect.timeoutFail(build, {
            duration: `${seconds} seconds`,
            onTimeout: () => new LocalBuildError({ message: `the build did not finish within --timeout ${seconds} seconds; stopped` })
          })
      })
      yield* Console.log(`built ${[...r.rpms, ...r.srpms].map((f) => path.basename(f)).join(", ")}`)
      yield* Console.log(`results and logs: ${r.resultDir}`)
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.gen(function* () {
            const dir = path.resolve(o.result)
            const made = Cause.failureOption(cause).pipe(Option.exists((e) => !(e instanceof LocalBuildError))) && fs.existsSync(dir)
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
).pipe(Command.withDescription("build an SRPM in a podman buildroot filled from a koji-style repo, without a hub"))
