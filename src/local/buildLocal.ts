/**
 * `koji-adjutant build-local SRPM --repo URL|DIR [--arch A] [--result DIR]`: the daemon's
 * buildroot and build code without a hub (DESIGN §5). The hub side is `localHub`: a synthetic
 * READY repo and tag, buildroot id 1, lists and states logged; the RPMs, the SRPM and every log
 * (mock_config.log, root.log, build.log, …) end up in the result directory.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Buildroots, type BuildrootsOptions } from "../buildroot/Buildroots.js"
import { localHub } from "../buildroot/hubSide.js"
import { readRpmHeader } from "../buildroot/rpmHeader.js"
import { sortResults } from "../buildroot/taskFiles.js"
import { defaultKojidOptions } from "../config/AdjutantConfig.js"
import { Containers } from "../containers/Containers.js"
import { Libpod } from "../containers/Libpod.js"
import { BuildError } from "../hub/faults.js"
import { canonArch } from "../tasks/arches.js"

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

/** Builds `request.srpm` from `request.repo` into `request.resultDir` (no hub). */
export const buildLocal = Effect.fn("buildLocal")(function* (request: BuildLocalRequest) {
  const buildroots = yield* Buildroots
  const resultDir = path.resolve(request.resultDir)
  yield* Effect.promise(() => fsp.mkdir(resultDir, { recursive: true }))
  const header = yield* readRpmHeader(request.srpm).pipe(Effect.mapError((e) => new BuildError({ faultString: e.message })))
  if (!header.sourcepackage) return yield* new BuildError({ faultString: `${request.srpm}: not a source package` })
  const work = yield* Effect.acquireRelease(
    Effect.promise(() => fsp.mkdtemp(path.join(os.tmpdir(), "koji-adjutant-local-"))),
    (d) => Effect.promise(() => fsp.rm(d, { recursive: true, force: true }))
  )
  const brArch = canonArch(request.arch === "noarch" ? hostArch() : request.arch)
  const hub = localHub(resultDir, { url: repoUrlOf(request.repo), tagName: "local", repoId: 0 }, brArch)
  const broot = yield* buildroots.open({ taskId: 0, tag: "local", arch: brArch, repoId: 0, installGroup: "build", workdir: work }, hub)
  const built = yield* Effect.exit(broot.build(path.resolve(request.srpm), request.arch))
  const logs = yield* broot.finishLogs
  const results = yield* sortResults(broot.resultDir)
  for (const f of [...results.rpms, ...results.srpms]) {
    yield* Effect.promise(() => fsp.copyFile(path.join(broot.resultDir, f), path.join(resultDir, f)))
  }
  if (built._tag === "Failure") return yield* Effect.failCause(built.cause)
  return {
    resultDir,
    rpms: results.rpms.map((f) => path.join(resultDir, f)),
    srpms: results.srpms.map((f) => path.join(resultDir, f)),
    logs: logs.filter((l) => fs.existsSync(path.join(resultDir, l))).map((l) => path.join(resultDir, l))
  } satisfies BuildLocalResult
}, Effect.scoped)

/** Options of the local Buildroots service (kojid's defaults for macros and timeouts). */
export const localBuildrootsOptions = (cacheDir: string, image: string): Effect.Effect<BuildrootsOptions, never, Libpod> =>
  Effect.map(Libpod, (libpod): BuildrootsOptions => ({
    kojid: {
      topdir: defaultKojidOptions.topdir, topurls: [], packager: defaultKojidOptions.packager, vendor: defaultKojidOptions.vendor,
      distribution: defaultKojidOptions.distribution, mockhost: defaultKojidOptions.mockhost, yum_proxy: null,
      rpmbuild_timeout: defaultKojidOptions.rpmbuild_timeout, mockdir: defaultKojidOptions.mockdir
    },
    cacheDir,
    cacheMax: 20,
    buildUser: "1000:1000",
    buildTmpfsSize: "8g",
    resolveImage: () => Effect.map(libpod.imageInspect(image), (i) => ({ image, id: i.Id })),
    limitsText: "memory 4 GiB, pids 4096"
  }))

/** Buildroots and Containers for a local build on `socket`. */
export const localLayer = (socket: string, cacheDir: string, image: string): Layer.Layer<Buildroots | Containers | Libpod> => {
  const containers = Containers.layer({
    socket, hostName: `build-local-${os.hostname()}`, defaultLimits: { memory: 4 * 1024 ** 3, pids: 4096, cpus: 0 },
    ulimits: [], stopTimeout: 10, buildUser: "1000:1000"
  })
  return Layer.unwrapEffect(Effect.map(localBuildrootsOptions(cacheDir, image), Buildroots.layer)).pipe(Layer.provideMerge(containers))
}

/** The `build-local` subcommand. */
export const buildLocalCommand = Command.make(
  "build-local",
  {
    srpm: Args.file({ name: "SRPM", exists: "yes" }),
    repo: Options.text("repo").pipe(Options.withDescription("koji-style repo: the arch directory holding repodata/, or its URL")),
    arch: Options.text("arch").pipe(Options.withDescription("target arch (default: this machine's)"), Options.optional),
    result: Options.text("result").pipe(Options.withDescription("directory for RPMs and logs"), Options.withDefault("build-local-result")),
    socket: Options.text("podman-socket").pipe(Options.withDefault("/run/podman/podman.sock")),
    cacheDir: Options.text("cache-dir").pipe(Options.withDefault("/var/lib/koji-adjutant/buildroots")),
    image: Options.text("image").pipe(Options.withDefault("localhost/koji-adjutant-bootstrap:latest"))
  },
  (o) =>
    Effect.gen(function* () {
      const arch = Option.getOrElse(o.arch, hostArch)
      const exit = yield* Effect.exit(buildLocal({ srpm: o.srpm, repo: o.repo, arch, resultDir: o.result }))
      const dir = path.resolve(o.result)
      if (exit._tag === "Failure") {
        yield* Console.error(`build failed; logs are in ${dir}`)
        return yield* exit
      }
      const r = exit.value
      yield* Console.log(`built ${[...r.rpms, ...r.srpms].map((f) => path.basename(f)).join(", ")}`)
      yield* Console.log(`results and logs: ${r.resultDir}`)
    }).pipe(Effect.provide(localLayer(o.socket.replace(/^unix:\/\//, ""), o.cacheDir, o.image)))
).pipe(Command.withDescription("build an SRPM in a podman buildroot filled from a koji-style repo, without a hub"))
