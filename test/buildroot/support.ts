/**
 * Shared setup of the buildroot tests: the offline fixture (scripts/make-fixture-repo.sh), a
 * koji topdir for the fake hub that links the fixture's repos and packages (uploads land in its
 * own work/), the daemon's layers with the real Containers and Buildroots, and waiting for tasks.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import * as buildArch from "../../src/tasks/buildArch.js"
import * as rebuildSRPM from "../../src/tasks/rebuildSRPM.js"
import { traversableTempDir } from "../support/dirs.js"
import { execFileSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { Duration, Effect, Layer } from "effect"
import { Buildroots, type BuildrootsOptions } from "../../src/buildroot/Buildroots.js"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { type DaemonOptions } from "../../src/daemon/options.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { type FixtureManifest, loadFixture } from "../fakehub/buildroots.js"
import { testContainersOptions } from "../support/podman.js"

export const HOST = "builder"
export const PASSWORD = "builder-pw"

/** The fixture as make-fixture-repo.sh reports it. */
export interface Fixture {
  readonly dir: string
  readonly repoUrl: string
  readonly srpms: string
  readonly manifest: FixtureManifest & { readonly bootstrapImage: string; readonly groups: Readonly<Record<string, ReadonlyArray<string>>> }
  readonly image: string
  readonly imageId: string
}

/** The checkout's root, found upwards (this file also runs compiled from node_modules/.cache by the bench runner). */
const repoRoot = ((): string => {
  let dir = import.meta.dirname
  while (!existsSync(path.join(dir, "scripts/make-fixture-repo.sh")) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return dir
})()

/** Builds (or finds) the fixture; takes a fraction of a second when it is current. */
export const loadFixtureFiles = (): Fixture => {
  const out = execFileSync(path.join(repoRoot, "scripts/make-fixture-repo.sh"), { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
  const kv = new Map(out.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const))
  const dir = kv.get("FIXTURE_DIR")!
  const manifest = JSON.parse(readFileSync(kv.get("FIXTURE_MANIFEST")!, "utf8")) as Fixture["manifest"]
  const image = manifest.bootstrapImage
  const imageId = execFileSync("podman", ["image", "inspect", "--format", "{{.Id}}", image], { encoding: "utf8" }).trim()
  return { dir, repoUrl: kv.get("FIXTURE_REPO_URL")!, srpms: kv.get("FIXTURE_SRPMS")!, manifest, image, imageId }
}

/** A koji topdir whose repos/ and packages/ are the fixture's; removed by the caller. */
export const makeTopdir = (fixture: Fixture): string => {
  const top = mkdtempSync(path.join(tmpdir(), "adjutant-topdir-"))
  symlinkSync(path.join(fixture.dir, "repos"), path.join(top, "repos"))
  symlinkSync(path.join(fixture.dir, "packages"), path.join(top, "packages"))
  mkdirSync(path.join(top, "work"), { recursive: true })
  return top
}

/** Copies an SRPM under `<topdir>/work/cli-build/<dir>/` as `koji build` uploads it; returns the work-relative path. */
export const uploadSrpm = (topdir: string, srpm: string, dir = `${Date.now()}.test`): string => {
  const rel = `cli-build/${dir}/${path.basename(srpm)}`
  mkdirSync(path.join(topdir, "work", path.dirname(rel)), { recursive: true })
  copyFileSync(srpm, path.join(topdir, "work", rel))
  return rel
}

/** A scratch directory removed with the scope; traversable (0711) as a daemon's workdir must be for mapped containers. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => traversableTempDir(prefix)),
    (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
  )

/** `makeTopdir` for the life of the scope. */
export const scopedTopdir = (fixture: Fixture) =>
  Effect.acquireRelease(Effect.sync(() => makeTopdir(fixture)), (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true })))

/** A fake hub serving the fixture's tag and repo from `topdir`. */
export const fixtureHub = (fixture: Fixture, topdir: string, tagExtra: Record<string, string> = {}) =>
  Effect.tap(
    startFakeHub({ hosts: [{ name: HOST, password: PASSWORD, capacity: 10, arches: "x86_64" }], topdir, scheduler: { runInterval: 0 } }),
    () => Effect.sync(() => loadFixture(topdir, fixture.manifest, { tagExtra }))
  )

/** Buildroots options for tests: topurl file://<topdir>, the fixture's image, a cache dir. */
export const buildrootsOptions = (fixture: Fixture, topdir: string, cacheDir: string, patch: Partial<BuildrootsOptions> = {}): BuildrootsOptions => ({
  kojid: {
    topdir, topurls: [`file://${topdir}`], packager: "Koji Adjutant Test", vendor: "Koji Adjutant", distribution: "Fixture",
    mockhost: "koji-linux-gnu", yum_proxy: null, rpmbuild_timeout: 600, mockdir: "/var/lib/mock"
  },
  cacheDir,
  cacheMax: 4,
  buildUser: "1000:1000",
  idmap: { base: 2000000000, size: 65536 },
  taskDiskMax: 4 * 1024 ** 3,
  resultMaxSize: 2 * 1024 ** 3,
  logMaxSize: 64 * 1024 ** 2,
  buildTmpfsSize: "512m",
  resolveImage: () => Effect.succeed({ image: fixture.image, id: fixture.imageId }),
  limitsText: "test limits",
  ...patch
})

/** The daemon's layers: real Containers on `socket`, Buildroots, the build handlers, the fake hub. */
export const daemonLayers = (hub: FakeHub, socket: string, hostName: string, options: BuildrootsOptions, limits: { readonly pids?: number; readonly memory?: number } = {}) => {
  const containers = Containers.layer(testContainersOptions(socket, hostName, {
    defaultLimits: { memory: limits.memory ?? 2 * 1024 ** 3, pids: limits.pids ?? 1024, cpus: 0 }
  }))
  const broots = Buildroots.layer(options).pipe(Layer.provideMerge(containers))
  return Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
    TaskRegistry.layerModules([buildArch.handlers, rebuildSRPM.handlers]),
    HubFileTree.layer({ topurls: options.kojid.topurls, topdir: options.kojid.topdir })
  ).pipe(Layer.provideMerge(broots))
}

/** Daemon options with short real cycles. */
export const daemonOptions = (workdir: string, sleeptime: Duration.DurationInput = "200 millis"): DaemonOptions => ({
  sleeptime: Duration.decode(sleeptime),
  maxjobs: 4,
  forceLock: true,
  runner: { workdir, taskTimeout: 0, waitPoll: Duration.seconds(2) },
  shutdownTimeout: Duration.seconds(30),
  shutdownCallTimeout: Duration.seconds(5),
  batchHubCalls: true
})

/** Starts the daemon in the background of the scope. */
export const startDaemon = (options: DaemonOptions) => Effect.forkScoped(Effect.scoped(runDaemon(options)))

/** Waits (real time) until `cond` holds; dies after `timeout`. */
export const waitFor = (cond: () => boolean, what: string, timeout: Duration.DurationInput = "180 seconds") =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(timeout))
    while (!cond()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for: ${what}`)
      yield* Effect.sleep("100 millis")
    }
  })

/** A fingerprint of a directory tree: every path with its size, mode and mtime. */
export const treeDigest = (root: string): string =>
  execFileSync("sh", ["-c", `cd "${root}" && find . -printf '%p %s %m %T@\\n' | LC_ALL=C sort | sha256sum`], { encoding: "utf8" })
