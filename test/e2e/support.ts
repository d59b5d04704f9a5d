/**
 * Shared setup of the end-to-end build tests: ONE fake hub serving the offline fixture (tag
 * `fixture-build`, repo 1, target `fixture-build` → `fixture-dest`), ONE podman service and ONE
 * daemon (TaskManager with the real Containers, Buildroots and Scm, and every RPM build handler)
 * per test file, kept for all its tests so the buildroot cache stays warm. Tests submit tasks
 * to the hub as `koji build` does and wait for them; `close()` tears it all down and reports
 * containers left behind.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { traversableTempDir } from "../support/dirs.js"
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import * as path from "node:path"
import { Duration, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import type { DaemonOptions } from "../../src/daemon/options.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { DEFAULT_SCM_TIMEOUT, Scm, type ScmOptions } from "../../src/scm/Scm.js"
import { makeBuildHandler } from "../../src/tasks/build.js"
import { buildArchHandler } from "../../src/tasks/buildArch.js"
import { buildSrpmFromScmDeps, buildSrpmFromScmHandler } from "../../src/tasks/buildSRPMFromSCM.js"
import { rebuildSrpmHandler } from "../../src/tasks/rebuildSRPM.js"
import { tagBuildHandler } from "../../src/tasks/tagBuild.js"
import { makeRegistry, TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { waitrepoHandler } from "../../src/tasks/waitrepo.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import { addTag, buildrootTables, type BuildrootRow } from "../fakehub/buildroots.js"
import { addPackage, addTarget } from "../fakehub/targets.js"
import {
  buildrootsOptions, type Fixture, fixtureHub, HOST, loadFixtureFiles, makeTopdir, PASSWORD, startDaemon, uploadSrpm
} from "../buildroot/support.js"
import { containersOfHost, type PodmanService, removeContainersOfHost, startPodmanService, testContainersOptions, uniqueHostName } from "../support/podman.js"

export { HOST }

/** Task states that end a task (CLOSED, CANCELED, FAILED). */
export const DONE: ReadonlySet<number> = new Set([2, 3, 5])

/** The destination tag of target `fixture-build`. */
export const DEST_TAG = "fixture-dest"

/** A running end-to-end world. */
export interface E2E {
  readonly fixture: Fixture
  readonly hub: FakeHub
  readonly topdir: string
  readonly hostName: string
  readonly destTag: number
  /** The daemon's kojid `workdir`. */
  readonly workdir: string
  /** Task work directories (`tasks/<n>/<id>`) still on the host. */
  readonly taskDirsLeft: () => ReadonlyArray<string>
  /** Where scratch SRPMs and other per-file inputs may go (removed by close). */
  readonly scratchDir: string
  /** Copies an SRPM into the hub's work dir as `koji build` uploads it; returns the work-relative path. */
  readonly upload: (srpm: string) => string
  /** The fixture's example SRPM `<name>-1.0-1.src.rpm`. */
  readonly srpmOf: (name: string) => string
  /** Buildroots the hub recorded for a task. */
  readonly buildrootsOf: (taskId: number) => ReadonlyArray<BuildrootRow>
  /** Stops the daemon, the hub, podman; removes everything; returns the containers that were left. */
  readonly close: () => Promise<ReadonlyArray<string>>
}

/** Extra setup of one world. */
export interface E2EOptions {
  /** Overrides of the Scm service (allowed_scms …); the checkout runs with network "host" to reach loopback. */
  readonly scm?: Partial<ScmOptions>
  /** Packages to list in the destination tag besides the fixture's. */
  readonly packages?: ReadonlyArray<string>
}

/** Daemon options with short real cycles and 1 s subtask polls. */
export const e2eDaemonOptions = (workdir: string): DaemonOptions => ({
  sleeptime: Duration.millis(200),
  maxjobs: 6,
  forceLock: true,
  runner: { workdir, taskTimeout: 0, waitPoll: Duration.seconds(1) },
  shutdownTimeout: Duration.seconds(30),
  shutdownCallTimeout: Duration.seconds(5),
  batchHubCalls: true
})

/** Scm options of these tests: the fixture's image, checkout over loopback (network host). */
export const e2eScmOptions = (fixture: Fixture, patch: Partial<ScmOptions> = {}): ScmOptions => ({
  allowedScms: "127.0.0.1:/fixture-*.git:no:",
  useConfig: true,
  usePolicy: false,
  allowPassword: false,
  credentialsDir: null,
  supportRpmSourceLayout: false,
  image: fixture.image,
  user: "1000:1000",
  idmap: { base: 2000000000, size: 65536 },
  network: "host",
  timeoutSeconds: DEFAULT_SCM_TIMEOUT,
  ...patch
})

/** The daemon's layers: real Containers on `socket` labelled `hostName`, Buildroots, Scm and the RPM build handlers. */
const layers = (e: { readonly hub: FakeHub; readonly fixture: Fixture; readonly topdir: string; readonly cacheDir: string }, socket: string, hostName: string, scm: ScmOptions) => {
  const containers = Containers.layer(testContainersOptions(socket, hostName, { defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 } }))
  const services = Layer.mergeAll(Buildroots.layer(buildrootsOptions(e.fixture, e.topdir, e.cacheDir)), Scm.layer(scm)).pipe(Layer.provideMerge(containers))
  const registry = Layer.effect(
    TaskRegistry,
    Effect.gen(function* () {
      const broots = yield* Buildroots
      return makeRegistry([
        // topurl "" reads SRPM headers from topdir (the fake hub's topurl is a file:// URL, which kojid's HTTP reader refuses too).
        makeBuildHandler({ literal_task_arches: "", build_arch_can_fail: false }),
        buildArchHandler(broots),
        rebuildSrpmHandler(broots),
        buildSrpmFromScmHandler(buildSrpmFromScmDeps(broots, yield* Scm)),
        tagBuildHandler,
        waitrepoHandler
      ])
    })
  )
  return Layer.mergeAll(
    KojiHub.layerWithTransport({ server: e.hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
    registry,
    HubFileTree.layer({ topurls: buildrootsOptions(e.fixture, e.topdir, e.cacheDir).kojid.topurls, topdir: e.topdir })
  ).pipe(Layer.provideMerge(services))
}

// Daemon logs at Info make a build's output hard to read among vitest's; KOJI_ADJUTANT_E2E_LOG=debug shows them.
const logLevel = process.env["KOJI_ADJUTANT_E2E_LOG"] === "debug" ? LogLevel.Debug : LogLevel.Warning

/** Starts the world for one test file (call from beforeAll). */
export const startE2E = async (prefix: string, options: E2EOptions = {}): Promise<E2E> => {
  const fixture = loadFixtureFiles()
  const hostName = uniqueHostName(prefix)
  const service: PodmanService = await startPodmanService()
  const scope = Effect.runSync(Scope.make())
  const base = traversableTempDir(`adjutant-e2e-${prefix}-`)
  const scratchDir = path.join(base, "scratch")
  mkdirSync(scratchDir)
  const cacheDir = path.join(base, "cache")
  const workdir = path.join(base, "work")
  mkdirSync(workdir)
  const topdir = makeTopdir(fixture)
  const stop = async (): Promise<ReadonlyArray<string>> => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    const left = containersOfHost(hostName)
    removeContainersOfHost(hostName)
    await service.stop()
    rmSync(topdir, { recursive: true, force: true })
    rmSync(base, { recursive: true, force: true })
    return left
  }
  try {
    const hub = await Effect.runPromise(Scope.extend(fixtureHub(fixture, topdir), scope))
    const destTag = addTag(topdir, DEST_TAG, null)
    addTarget(topdir, "fixture-build", fixture.manifest.tag.id, destTag)
    for (const f of readdirSync(fixture.srpms)) if (f.endsWith(".src.rpm")) addPackage(topdir, destTag, f.replace(/-[^-]+-[^-]+\.src\.rpm$/, ""))
    for (const p of options.packages ?? []) addPackage(topdir, destTag, p)
    const ctx = await Effect.runPromise(Layer.buildWithScope(layers({ hub, fixture, topdir, cacheDir }, service.socket, hostName, e2eScmOptions(fixture, options.scm)), scope))
    await Effect.runPromise(
      startDaemon(e2eDaemonOptions(workdir)).pipe(Effect.provide(ctx), Logger.withMinimumLogLevel(logLevel), Scope.extend(scope))
    )
    let seq = 0
    return {
      fixture, hub, topdir, hostName, destTag, scratchDir, workdir,
      taskDirsLeft: () => {
        const tasks = path.join(workdir, "tasks")
        if (!existsSync(tasks)) return []
        return readdirSync(tasks).flatMap((n) => readdirSync(path.join(tasks, n)).map((id) => `tasks/${n}/${id}`))
      },
      upload: (srpm) => uploadSrpm(topdir, srpm, `${Date.now()}.${++seq}.e2e`),
      srpmOf: (name) => path.join(fixture.srpms, `${name}-1.0-1.src.rpm`),
      buildrootsOf: (taskId) => [...buildrootTables(topdir).buildroots.values()].filter((b) => b.taskId === taskId),
      close: stop
    }
  } catch (e) {
    await stop()
    throw e
  }
}

/** Waits (real time) until `cond` holds; throws after `timeoutMs`. */
export const waitUntil = async (cond: () => boolean, what: string, timeoutMs = 300_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** The result of a finished task (its fault struct when it failed). */
export interface Finished {
  readonly id: number
  readonly state: number
  readonly result: XmlRpcValue
}

/** Creates a task as the CLI does (owner kojiadmin, channel default) and waits for it to end. */
export const runToEnd = async (e: E2E, method: string, params: ReadonlyArray<XmlRpcValue>, timeoutMs = 300_000): Promise<Finished> => {
  const id = e.hub.createTask(method, params, { arch: "noarch" })
  await waitUntil(() => DONE.has(e.hub.state.task(id)?.state ?? 0), `task ${id} (${method}) to end`, timeoutMs)
  // The daemon removes the task's containers before it reports; its buildroot is expired in a finalizer.
  await waitUntil(() => containersOfHost(e.hostName).length === 0, `containers of task ${id} to go`, 30_000).catch(() => undefined)
  return { id, state: e.hub.state.task(id)!.state, result: e.hub.state.taskResult(id) }
}

/** The subtasks of a task (direct children), in creation order. */
export const childrenOf = (e: E2E, parent: number) => e.hub.state.tasks.filter((t) => t.parent === parent).sort((a, b) => a.id - b.id)

/** A field of a fault struct result. */
export const fault = (r: XmlRpcValue): { readonly faultCode: number; readonly faultString: string } => {
  const s = r as Record<string, XmlRpcValue> // a failed task's result is the fault struct
  return { faultCode: Number(s["faultCode"]), faultString: String(s["faultString"]) }
}

/** Makes an SRPM from a spec text with the bootstrap image (offline); returns its path. */
export const makeSrpm = (e: E2E, name: string, spec: string): string => {
  const d = path.join(e.scratchDir, name)
  mkdirSync(d, { recursive: true })
  writeFileSync(path.join(d, `${name}.spec`), spec)
  execFileSync("podman", [
    "run", "--rm", "--network=none", "-v", `${d}:/w`, e.fixture.image, "rpmbuild", "-bs", "--define", "_topdir /tmp/t",
    "--define", "_sourcedir /w", "--define", "_srcrpmdir /w", `/w/${name}.spec`
  ], { stdio: "ignore" })
  return path.join(d, readdirSync(d).find((f) => f.endsWith(".src.rpm"))!)
}

/** A free TCP port on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const s = createServer()
    s.once("error", fail)
    s.listen(0, "127.0.0.1", () => {
      const a = s.address()
      const p = typeof a === "object" && a !== null ? a.port : 0
      s.close(() => done(p))
    })
  })

/** A `git daemon` serving `baseDir` read-only on 127.0.0.1. */
export interface GitDaemon {
  readonly port: number
  readonly stop: () => Promise<void>
}

/** Starts `git daemon --export-all --base-path=<baseDir>` on loopback and waits until `probe` (a repo under it) answers. */
export const startGitDaemon = async (baseDir: string, probe: string): Promise<GitDaemon> => {
  const port = await freePort()
  const child: ChildProcess = spawn("git", [
    // The fixture's repos belong to whoever made them; git would refuse to serve another user's.
    "-c", "safe.directory=*",
    "daemon", "--reuseaddr", "--export-all", `--base-path=${baseDir}`, "--listen=127.0.0.1", `--port=${port}`, baseDir
  ], { stdio: "ignore" })
  const stop = () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done()
      child.once("exit", () => done())
      child.kill("SIGTERM")
    })
  for (let i = 0; i < 100; i++) {
    if (spawnSync("git", ["ls-remote", `git://127.0.0.1:${port}/${probe}`], { stdio: "ignore" }).status === 0) return { port, stop }
    await new Promise((r) => setTimeout(r, 100))
  }
  await stop()
  throw new Error(`git daemon did not answer for ${probe} on port ${port}`)
}
