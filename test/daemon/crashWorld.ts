/**
 * The world of the crash matrix (issue 12): the real program (`node dist/main.js -c kojid.conf`,
 * main.ts's layer graph: every handler, Images, Buildroots, Scm) as a child process that the test
 * SIGKILLs and starts again, against a fake hub served by the test process, with real podman, the
 * offline fixture's repo over HTTP on loopback (so dnf goes through the daemon's proxy socket), the
 * fixture's git repository served by `git daemon`, and a topdir where newRepo can write. The
 * world also says what is left on the host: containers, mounts and loop devices under the workdir
 * and the buildroot cache, task directories.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { loopsUnder, mountsUnder, readLoopDevices, readMounts } from "../../src/daemon/Recovery.js"
import { type Fixture, loadFixtureFiles } from "../buildroot/support.js"
import { buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { type FakeHub, type InjectAction, type InjectRequest, startFakeHub } from "../fakehub/FakeHub.js"
import { repoWorld } from "../fakehub/newrepo.js"
import { type GitDaemon, startGitDaemon } from "../e2e/support.js"
import { traversableTempDir } from "../support/dirs.js"
import { ensureTestImage, type PodmanService, removeContainersOfHost, startPodmanService, uniqueHostName } from "../support/podman.js"
import { startBackgroundService } from "../support/service.js"
import { distMain, ensureBuilt } from "./child.js"

const PASSWORD = "crash-pw"

/** What a crash world leaves on the host at a moment. */
export interface Leftovers {
  readonly containers: ReadonlyArray<string>
  /** Mount points under the workdir and the buildroot cache. */
  readonly mounts: ReadonlyArray<string>
  /** Loop devices whose backing file is under the workdir or the cache. */
  readonly loops: ReadonlyArray<string>
  /** `tasks/<n>/<id>` directories under the workdir. */
  readonly taskDirs: ReadonlyArray<string>
  /** Directories of the workdir other than tasks/ (probe dirs of a start). */
  readonly otherDirs: ReadonlyArray<string>
  /** Half-filled cache entries (`.fill-*` staging directories of src/buildroot/cache.ts). */
  readonly cacheStaging: ReadonlyArray<string>
}

/** The running world. */
export interface CrashWorld {
  readonly fixture: Fixture
  readonly hub: FakeHub
  readonly hostName: string
  readonly topdir: string
  readonly workdir: string
  readonly cacheDir: string
  readonly gitUrl: string
  readonly podmanSocket: string
  /** The daemon's log file. */
  readonly logFile: string
  /** Starts the daemon (the real program) as a child process. */
  readonly startDaemon: () => ChildProcess
  /** Names of the containers labelled with this host (through the podman API: fast enough to poll). */
  readonly containers: () => Promise<ReadonlyArray<string>>
  readonly leftovers: () => Promise<Leftovers>
  /** The inject hook of the fake hub: the matrix delays uploads with it. */
  readonly setInject: (f: ((req: InjectRequest) => InjectAction) | undefined) => void
  /** Copies an SRPM into the hub's work area as `koji build` uploads it; the work-relative path. */
  readonly upload: (srpm: string) => string
  /** Empties the buildroot cache (a cold fill next time); only while no task uses it. */
  readonly dropCache: () => void
  readonly close: () => Promise<void>
}

/** koji's topurl: the topdir over HTTP on loopback, following its symlinks into the fixture. */
const serveTopdir = (dir: string): Promise<http.Server> =>
  new Promise((done) => {
    const server = http.createServer((req, res) => {
      const rel = path.normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname))
      const file = path.join(dir, rel)
      const st = rel.includes("..") ? undefined : fs.statSync(file, { throwIfNoEntry: false })
      if (st === undefined || !st.isFile()) {
        res.writeHead(404)
        res.end()
        return
      }
      res.writeHead(200, { "content-length": st.size })
      fs.createReadStream(file).pipe(res)
    })
    server.listen(0, "127.0.0.1", () => done(server))
  })

/** GET on the podman socket, JSON decoded. */
const podmanGet = (socket: string, p: string): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: p, method: "GET", timeout: 10_000 }, (res) => {
      const parts: Array<Buffer> = []
      res.on("data", (b: Buffer) => parts.push(b))
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString("utf8")))
        } catch (e) {
          reject(e)
        }
      })
    })
    req.on("error", reject)
    req.on("timeout", () => req.destroy(new Error("podman did not answer")))
    req.end()
  })

const readdirOr = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

/**
 * A topdir whose packages are the fixture's and whose tag `fixture-build` has the fixture's repo 1
 * (linked), in a repos/ directory of its own so that newRepo writes its repos here.
 */
const makeWritableTopdir = (fixture: Fixture, base: string): string => {
  const top = path.join(base, "topdir")
  fs.mkdirSync(path.join(top, "repos", fixture.manifest.tag.name), { recursive: true })
  fs.mkdirSync(path.join(top, "work"))
  fs.symlinkSync(path.join(fixture.dir, "packages"), path.join(top, "packages"))
  fs.symlinkSync(path.join(fixture.dir, "repos", fixture.manifest.tag.name, String(fixture.manifest.repo.id)), path.join(top, "repos", fixture.manifest.tag.name, String(fixture.manifest.repo.id)))
  fs.symlinkSync(String(fixture.manifest.repo.id), path.join(top, "repos", fixture.manifest.tag.name, "latest"))
  return top
}

/** A podman API service of the test's own that it can stop and start again on the same socket. */
export interface RestartablePodman extends PodmanService {
  /** Stops the service (SIGTERM; containers live on under conmon). */
  readonly down: () => Promise<void>
  /** Starts it again on the same socket and waits until it answers. */
  readonly up: () => Promise<void>
  readonly answers: () => Promise<boolean>
}

const pingSocket = (socket: string): Promise<boolean> =>
  podmanGet(socket, "/v4.0.0/libpod/info").then(() => true, () => false)

/** `podman system service` on a socket in a temp dir of its own; `up` when `started`. */
export const startRestartablePodman = async (started = true): Promise<RestartablePodman> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "koji-adjutant-podman-restartable-"))
  const socket = path.join(dir, "podman.sock")
  let current: { readonly stop: () => Promise<void>; readonly stderr: () => string } | undefined
  let runs = 0
  const down = async () => {
    await current?.stop()
    current = undefined
    fs.rmSync(socket, { force: true })
  }
  const up = async () => {
    if (current !== undefined) return
    // Each run's cwd is a scratch dir of its own (conmon drops files there; stop removes it).
    const cwd = path.join(dir, `run-${++runs}`)
    fs.mkdirSync(cwd)
    current = startBackgroundService("podman", ["system", "service", "--time=0", `unix://${socket}`], cwd)
    const deadline = Date.now() + 20_000
    while (!(await pingSocket(socket))) {
      if (Date.now() > deadline) throw new Error(`podman system service did not come up on ${socket}: ${current.stderr()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  if (started) await up()
  return {
    socket,
    down,
    up,
    answers: () => pingSocket(socket),
    stop: async () => {
      await down()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** Options of a world. */
export interface CrashWorldOptions {
  /** The podman service to use (default: startPodmanService's); the world stops it on close. */
  readonly podman?: PodmanService
  /** Mount a tmpfs of this many bytes at the workdir (a small file system to fill); unmounted on close. */
  readonly workdirTmpfsBytes?: number
  /** Mount a tmpfs of this many bytes at the buildroot cache; unmounted on close. */
  readonly cacheTmpfsBytes?: number
  /** kojid.conf `minspace` (default 1 MB). */
  readonly minspaceMB?: number
}

const umountQuietly = (dir: string): void => {
  spawnSync("umount", [dir], { stdio: "ignore" })
}

/** Starts a world; `close()` removes it all. */
export const startCrashWorld = async (prefix = "crash", options: CrashWorldOptions = {}): Promise<CrashWorld> => {
  ensureBuilt()
  ensureTestImage()
  const fixture = loadFixtureFiles()
  const hostName = uniqueHostName(prefix)
  const podman: PodmanService = options.podman ?? await startPodmanService()
  const base = traversableTempDir(`adjutant-${prefix}-`)
  const workdir = path.join(base, "work")
  const cacheDir = path.join(base, "cache")
  fs.mkdirSync(workdir, { mode: 0o711 })
  if (options.workdirTmpfsBytes !== undefined) execFileSync("mount", ["-t", "tmpfs", "-o", `size=${options.workdirTmpfsBytes},mode=0711`, "tmpfs", workdir])
  if (options.cacheTmpfsBytes !== undefined) {
    fs.mkdirSync(cacheDir, { mode: 0o711 })
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${options.cacheTmpfsBytes},mode=0711`, "tmpfs", cacheDir])
  }
  const topdir = makeWritableTopdir(fixture, base)
  const scope = Effect.runSync(Scope.make())
  let inject: ((req: InjectRequest) => InjectAction) | undefined
  let files: http.Server | undefined
  let git: GitDaemon | undefined
  const children: Array<ChildProcess> = []
  const close = async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
    await git?.stop()
    files?.closeAllConnections()
    await new Promise<void>((r) => (files === undefined ? r() : files.close(() => r())))
    await Effect.runPromise(Scope.close(scope, Exit.void))
    removeContainersOfHost(hostName)
    await podman.stop()
    if (options.workdirTmpfsBytes !== undefined) umountQuietly(workdir)
    if (options.cacheTmpfsBytes !== undefined) umountQuietly(cacheDir)
    fs.rmSync(base, { recursive: true, force: true })
  }
  try {
    const hub = await Effect.runPromise(Scope.extend(startFakeHub({
      hosts: [{ name: hostName, password: PASSWORD, capacity: 20, arches: "x86_64", channels: ["default", "createrepo"] }],
      topdir,
      scheduler: { runInterval: 0 },
      inject: (req) => inject?.(req)
    }), scope))
    loadFixture(topdir, fixture.manifest)
    repoWorld(topdir).groups.set(fixture.manifest.tag.id, new Map(Object.entries(fixture.manifest.groups).map(([g, p]) => [g, [...p]])))
    files = await serveTopdir(topdir)
    const topurl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`
    git = await startGitDaemon(path.join(fixture.dir, "git"), "fixture-hello.git")
    const logFile = path.join(base, "kojid.log")
    const conf = path.join(base, "kojid.conf")
    fs.writeFileSync(conf, [
      "[kojid]",
      `server = ${hub.url}`,
      `topurl = ${topurl}`,
      `topdir = ${topdir}`,
      `user = ${hostName}`,
      `password = ${PASSWORD}`,
      `workdir = ${workdir}`,
      "sleeptime = 1",
      "retry_interval = 1",
      "max_retries = 3",
      `minspace = ${options.minspaceMB ?? 1}`,
      "maxjobs = 10",
      "allowed_scms = 127.0.0.1*:/fixture-*.git:no:",
      "[adjutant]",
      `log_file = ${logFile}`,
      `podman_socket = unix://${podman.socket}`,
      `bootstrap_image = ${fixture.image}`,
      "pull_policy = never",
      "image_gc = False",
      `image_state_file = ${base}/images.json`,
      "scm_network = host",
      `buildroot_cache_dir = ${cacheDir}`,
      "container_memory = 2g",
      "container_stop_timeout = 2",
      // A short sweep, so a container whose removal failed goes within the matrix's wait.
      "reaper_interval = 10",
      ""
    ].join("\n"))
    const tasksDir = path.join(workdir, "tasks")
    let seq = 0
    return {
      fixture, hub, hostName, topdir, workdir, cacheDir, podmanSocket: podman.socket, logFile,
      gitUrl: `git://127.0.0.1:${git.port}/fixture-hello.git`,
      startDaemon: () => {
        const child = spawn(process.execPath, [distMain, "-c", conf, "--fg", "--force-lock"], { stdio: ["ignore", "ignore", "pipe"] })
        let err = ""
        child.stderr?.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-20_000)))
        Object.defineProperty(child, "output", { get: () => err })
        children.push(child)
        return child
      },
      containers: async () => {
        const filters = encodeURIComponent(JSON.stringify({ label: [`io.koji.adjutant.host=${hostName}`] }))
        const list = await podmanGet(podman.socket, `/v4.0.0/libpod/containers/json?all=true&filters=${filters}`)
        return Array.isArray(list) ? list.map((c: { readonly Names?: ReadonlyArray<string> }) => c.Names?.[0] ?? "?") : []
      },
      leftovers: async () => {
        const filters = encodeURIComponent(JSON.stringify({ label: [`io.koji.adjutant.host=${hostName}`] }))
        const list = await podmanGet(podman.socket, `/v4.0.0/libpod/containers/json?all=true&filters=${filters}`)
        const roots = [workdir, cacheDir]
        return {
          containers: Array.isArray(list) ? list.map((c: { readonly Names?: ReadonlyArray<string> }) => c.Names?.[0] ?? "?") : [],
          mounts: mountsUnder(readMounts(), roots).map((m) => m.mountPoint),
          loops: loopsUnder(readLoopDevices(), roots).map((l) => `${l.device} ${l.backingFile}`),
          taskDirs: readdirOr(tasksDir).flatMap((n) => readdirOr(path.join(tasksDir, n)).map((id) => `tasks/${n}/${id}`)),
          otherDirs: readdirOr(workdir).filter((n) => n !== "tasks"),
          cacheStaging: readdirOr(cacheDir).filter((n) => n.startsWith(".fill-"))
        }
      },
      setInject: (f) => {
        inject = f
      },
      upload: (srpm) => {
        const rel = `cli-build/${Date.now()}.${++seq}.crash/${path.basename(srpm)}`
        fs.mkdirSync(path.join(topdir, "work", path.dirname(rel)), { recursive: true })
        fs.copyFileSync(srpm, path.join(topdir, "work", rel))
        return rel
      },
      dropCache: () => {
        for (const n of readdirOr(cacheDir)) if (!n.startsWith(".")) fs.rmSync(path.join(cacheDir, n), { recursive: true, force: true })
      },
      close
    }
  } catch (e) {
    await close()
    throw e
  }
}

/** What a child printed on stderr (the tail). */
export const stderrOf = (child: ChildProcess): string => (child as ChildProcess & { readonly output?: string }).output ?? ""

/** The buildroots the hub recorded for a task. */
export const buildrootsOfTask = (world: CrashWorld, taskId: number) =>
  [...buildrootTables(world.topdir).buildroots.values()].filter((b) => b.taskId === taskId)
