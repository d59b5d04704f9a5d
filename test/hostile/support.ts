/**
 * The hostile-package suite's runner (issue 10): makes every case's SRPM offline with the
 * bootstrap image, builds the cases through the real code paths — `buildLocal` with
 * `localLayerFromSettings` over a kojid.conf (build-local), and the daemon's buildArch (and
 * buildSRPMFromSCM for SCM cases) against the fake hub — in one batch per path, watches the host
 * while they run, and judges each case: contained when it ended as expected, no marker or secret
 * reached a log or an upload, what came out is plain and bounded, and what it refused did not
 * come out. `hostProblems` (host.ts) then checks the host after each batch. No vitest here: the
 * bench (scripts/bench/hostile.ts) runs the same batches.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import * as fs from "node:fs"
import { createServer, type Server } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { loadConfig } from "../../src/config/AdjutantConfig.js"
import { Containers } from "../../src/containers/Containers.js"
import type { IdMap } from "../../src/containers/idmap.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { buildLocal, failureText, localLayerFromSettings } from "../../src/local/buildLocal.js"
import { Scm } from "../../src/scm/Scm.js"
import { buildArchHandler } from "../../src/tasks/buildArch.js"
import { buildSrpmFromScmDeps, buildSrpmFromScmHandler } from "../../src/tasks/buildSRPMFromSCM.js"
import { taskRelPath } from "../../src/koji/paths.js"
import { makeRegistry, TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import {
  buildrootsOptions, daemonOptions, type Fixture, fixtureHub, HOST, makeTopdir, PASSWORD, startDaemon, uploadSrpm, waitFor
} from "../buildroot/support.js"
import { e2eScmOptions, startGitDaemon } from "../e2e/support.js"
import { testContainersOptions } from "../support/podman.js"
import {
  type CaseInputs, type CaseRun, type CheckEnv, ESCAPE_MARKER, type HostileCase, hostileCases, INJECTION_MARKER, KIT_SPEC, type Mode, SENTINEL,
  specText
} from "./cases.js"
import { allocatedBytes, cacheBytes, fsUsed, hostAccounts, type HostCheck, hostProblems, inRange, setuidFiles, startWatch, type WatchReport } from "./host.js"

/** The build id range of this suite: its own, so that other builds on the machine are never mistaken for its processes. */
export const HOSTILE_IDMAP: IdMap = { base: 2_100_000_000, size: 65536 }

/** The limits the suite runs under (small, so the disk attacks are quick). */
export const LIMITS = {
  taskDiskMax: 1024 ** 3,
  resultMaxSize: 256 * 1024 ** 2,
  logMaxSize: 1024 ** 2,
  memory: 1024 ** 3,
  pids: 256
} as const

/**
 * Growth allowed after a batch beyond the buildroot caches: of the test's directories (uploads,
 * logs, result copies: small), and of the whole file system (other work on the machine writes
 * there too; still far below what the disk attacks write).
 */
export const BASE_GROWTH_MAX = 256 * 1024 ** 2
export const FS_GROWTH_MAX = 1024 ** 3

/** Peak bytes a task's directory may take on the host: its disk, plus copies of what it took out. */
export const TASK_BYTES_MAX = LIMITS.taskDiskMax + 64 * 1024 ** 2

/** The suite's scratch world: one base directory (also $TMPDIR, so build-local's work dirs land in it). */
export interface HostileEnv {
  readonly base: string
  readonly fixture: Fixture
  readonly inputs: CaseInputs
  /** The secret in the fake client certificate (must never come out). */
  readonly secret: string
  readonly cases: ReadonlyArray<HostileCase>
  /** Case name → its SRPM. */
  readonly srpms: ReadonlyMap<string, string>
  /** Connections the loopback listener got. */
  readonly listenerConnections: () => number
  readonly close: () => Promise<void>
}

const traversable = (d: string): string => {
  mkdirSync(d, { recursive: true })
  chmodSync(d, 0o711)
  return d
}

/** Builds the kit rpms and every case's SRPM in one container (offline, network none); case name → SRPM. */
export const makeSrpms = (dir: string, image: string, cases: ReadonlyArray<HostileCase>): ReadonlyMap<string, string> => {
  const specs = path.join(dir, "specs")
  mkdirSync(specs, { recursive: true })
  mkdirSync(path.join(dir, "sources"), { recursive: true })
  mkdirSync(path.join(dir, "srpms"), { recursive: true })
  writeFileSync(path.join(dir, "sources", "kit.spec"), KIT_SPEC)
  const withSpec = cases.filter((c) => c.spec !== undefined)
  for (const c of withSpec) writeFileSync(path.join(specs, `${c.name}.spec`), specText(c))
  // Fixed text; the specs are found by glob inside the container.
  const script = `set -e
kit() { rpmbuild -bb --quiet --target "$1" --define "_topdir /tmp/kit" --define "_rpmdir /w/sources" \\
  --define "_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm" /w/sources/kit.spec >/dev/null; }
kit noarch
kit s390x
for s in /w/specs/*.spec; do
  rpmbuild -bs --define "_topdir /tmp/t" --define "_sourcedir /w/sources" --define "_srcrpmdir /w/srpms" "$s" >/dev/null
done
`
  execFileSync("podman", ["run", "--rm", "--network=none", "-v", `${dir}:/w`, image, "sh", "-c", script], { stdio: ["ignore", "ignore", "inherit"] })
  const made = readdirSync(path.join(dir, "srpms"))
  return new Map(withSpec.map((c) => {
    const f = made.find((m) => m === `${c.name}-1.0-1.src.rpm`)
    if (f === undefined) throw new Error(`no SRPM was made for ${c.name}`)
    return [c.name, path.join(dir, "srpms", f)] as const
  }))
}

/** A TCP listener on the host's loopback that counts connections (what the network case must not reach). */
const countingListener = (): Promise<{ readonly server: Server; readonly port: number; readonly count: () => number }> =>
  new Promise((done, fail) => {
    let n = 0
    const server = createServer((s) => {
      n++
      s.destroy()
    })
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const a = server.address()
      done({ server, port: typeof a === "object" && a !== null ? a.port : 0, count: () => n })
    })
  })

/**
 * Makes the world: the base directory (0711, $TMPDIR from now on), the fake client certificate,
 * the loopback listener, the SRPMs.
 */
export const prepareHostileEnv = async (fixture: Fixture, podmanSocket: string): Promise<HostileEnv> => {
  const base = traversable(mkdtempSync(path.join(os.tmpdir(), "adjutant-hostile-")))
  process.env["TMPDIR"] = traversable(path.join(base, "tmp"))
  const secret = `SECRET-${Math.random().toString(36).slice(2)}-${Date.now()}`
  const secretFile = path.join(base, "client.pem")
  writeFileSync(secretFile, `-----BEGIN PRIVATE KEY-----\n${secret}\n-----END PRIVATE KEY-----\n`, { mode: 0o644 })
  const listener = await countingListener()
  const close = async () => {
    await new Promise<void>((r) => listener.server.close(() => r()))
    rmSync(base, { recursive: true, force: true })
  }
  const inputs: CaseInputs = { secretFile, podmanSocket, listenerPort: listener.port }
  const cases = hostileCases(inputs)
  try {
    const srpms = makeSrpms(path.join(base, "srpm-build"), fixture.image, cases)
    return { base, fixture, inputs, secret, cases, srpms, listenerConnections: listener.count, close }
  } catch (e) {
    await close()
    throw e
  }
}

// ---------------------------------------------------------------------------------------------
// Judging a case

const MAX_READ = 64 * 1024 ** 2

/** A file of the output directory, read with a bound (an output over it is itself a problem). */
const readBounded = (file: string): Buffer | undefined => {
  try {
    const st = lstatSync(file)
    if (!st.isFile()) return undefined
    if (st.size <= MAX_READ) return readFileSync(file)
    const fd = fs.openSync(file, "r")
    try {
      const buf = Buffer.alloc(MAX_READ)
      const n = fs.readSync(fd, buf, 0, MAX_READ / 2, 0)
      const m = fs.readSync(fd, buf, n, MAX_READ / 2, st.size - MAX_READ / 2)
      return buf.subarray(0, n + m)
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

const namesIn = (dir: string): ReadonlyArray<string> => {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}

/** Names the hub or build-local may write beside packages and logs. */
const isPlainOutputName = (n: string): boolean => /^[A-Za-z0-9_+][A-Za-z0-9._+~^-]*$/.test(n) && !n.includes("..")

/** Every way a finished case was not contained (empty when it was). */
export const caseProblems = (c: HostileCase, run: CaseRun, env: CheckEnv, secret: string): ReadonlyArray<string> => {
  const problems: Array<string> = []
  if (c.expect.closes && !run.closed) problems.push(`expected the build to succeed (bounded, not refused) but it failed: ${run.fault}`)
  if (!c.expect.closes) {
    if (run.closed) problems.push(`the build succeeded; it must fail: ${JSON.stringify(run.result)}`)
    else {
      for (const s of c.expect.faultIncludes ?? []) if (!run.fault.includes(s)) problems.push(`the fault does not say ${JSON.stringify(s)}: ${run.fault}`)
      if (c.expect.faultMatches !== undefined && !c.expect.faultMatches.test(run.fault)) problems.push(`the fault does not match ${c.expect.faultMatches}: ${run.fault}`)
      if (run.faultCode === 1) problems.push(`faultCode 1 (an unmapped error or a defect): ${run.fault}`)
    }
  }
  for (const marker of [INJECTION_MARKER, ESCAPE_MARKER, secret]) {
    if (run.fault.includes(marker)) problems.push(`${marker} is in the fault: ${run.fault}`)
  }
  for (const n of env.names(run)) {
    const file = path.join(run.outDir, n)
    const st = lstatSync(file)
    if (!isPlainOutputName(n)) problems.push(`an output has an unsafe name: ${JSON.stringify(n)}`)
    if (!st.isFile()) {
      problems.push(`output ${JSON.stringify(n)} is not a regular file`)
      continue
    }
    if ((st.mode & 0o7111) !== 0) problems.push(`output ${JSON.stringify(n)} has mode ${(st.mode & 0o7777).toString(8)}`)
    if (run.mode === "local" && n.endsWith(".rpm") && (st.mode & 0o7777) !== 0o644) problems.push(`output ${n} has mode ${(st.mode & 0o7777).toString(8)}, not 644`)
    if (n.endsWith(".log") && st.size > env.logMaxSize + 512) problems.push(`log ${n} came out with ${st.size} bytes (log_max_size ${env.logMaxSize})`)
    if (n.endsWith(".rpm") && st.size > LIMITS.resultMaxSize) problems.push(`rpm ${n} came out with ${st.size} bytes (result_max_size ${LIMITS.resultMaxSize})`)
    const data = env.read(run, n)
    for (const marker of [INJECTION_MARKER, ESCAPE_MARKER, secret]) {
      if (data?.includes(marker) === true) problems.push(`${marker === secret ? "the host secret" : marker} is in ${n}`)
    }
  }
  for (const r of c.refused ?? []) if (env.names(run).includes(r)) problems.push(`the refused ${JSON.stringify(r)} came out`)
  problems.push(...(c.check?.(run, env) ?? []))
  return problems
}

/** A judged case. */
export interface CaseReport {
  readonly case: HostileCase
  readonly run: CaseRun
  readonly problems: ReadonlyArray<string>
}

/** A batch: its cases, the host after it, what the watch saw. */
export interface BatchReport {
  readonly mode: Mode
  readonly cases: ReadonlyArray<CaseReport>
  readonly hostProblems: ReadonlyArray<string>
  /** Problems of the watch that belong to no case: host-account owners in result areas, setuid copies, task disks over their bound, mounts without nosuid. */
  readonly watchProblems: ReadonlyArray<string>
  readonly watch: WatchReport
  readonly seconds: number
}

/** What the watch saw that no case owns but must hold for all. */
const watchProblems = (watch: WatchReport, accounts: ReturnType<typeof hostAccounts>): ReadonlyArray<string> => [
  ...watch.resultEntries.filter((e) => accounts.uids.has(e.uid) || !inRange(HOSTILE_IDMAP, e.uid))
    .map((e) => `${JSON.stringify(e.path)} in a result area is owned by host uid ${e.uid}`),
  ...watch.setuidOutsideDisk.map((f) => `setuid/setgid file on the host outside a task disk: ${JSON.stringify(f)}`),
  ...[...watch.peakTaskBytes].filter(([, b]) => b > TASK_BYTES_MAX).map(([d, b]) => `task directory ${d} took ${b} bytes of the host (bound ${TASK_BYTES_MAX})`),
  ...watch.mounts.filter((m) => m.fstype === "ext4" && !(m.options.includes("nosuid") && m.options.includes("nodev")))
    .map((m) => `task disk ${m.point} is mounted without nosuid,nodev (${m.options})`)
]

const firstLine = (file: string): string => {
  try {
    return readFileSync(file, "utf8").split("\n")[0] ?? ""
  } catch {
    return ""
  }
}

const checkEnv = (watch: WatchReport, env: HostileEnv): CheckEnv => {
  const accounts = hostAccounts()
  return {
    watch,
    logMaxSize: LIMITS.logMaxSize,
    read: (run, name) => readBounded(path.join(run.outDir, name)),
    names: (run) => namesIn(run.outDir).filter((n) => n !== ".user"),
    accounts,
    inRange: (id) => inRange(HOSTILE_IDMAP, id),
    hostShadowLine: firstLine("/etc/shadow"),
    listenerConnections: env.listenerConnections
  }
}

/** The buildroot caches of both batches (each batch's check must know the other's). */
const cachesOf = (env: HostileEnv): ReadonlyArray<string> => [path.join(env.base, "local", "cache"), path.join(env.base, "daemon", "cache")]

/** The host's state before a batch, for `hostProblems` after it. */
const hostBefore = (env: HostileEnv, containers: HostCheck["containers"]): HostCheck => ({
  base: env.base,
  idmap: HOSTILE_IDMAP,
  containers,
  cacheDirs: cachesOf(env),
  tmpSetuidBefore: new Set(setuidFiles("/tmp").map((f) => f.path)),
  sentinel: SENTINEL,
  fsBefore: fsUsed(env.base),
  baseBytesBefore: allocatedBytes(env.base),
  cacheBytesBefore: cacheBytes(cachesOf(env)),
  baseGrowthMax: BASE_GROWTH_MAX,
  fsGrowthMax: FS_GROWTH_MAX
})

// ---------------------------------------------------------------------------------------------
// build-local

/** The kojid.conf build-local runs with: the daemon's keys, the suite's limits and id range. */
export const localConfigText = (env: HostileEnv, socket: string, cacheDir: string): string => `[kojid]
server = http://127.0.0.1:9/kojihub
topurl = http://127.0.0.1:9/kojifiles
rpmbuild_timeout = 900
[adjutant]
podman_socket = unix://${socket}
bootstrap_image = ${env.fixture.image}
buildroot_cache_dir = ${cacheDir}
container_memory = ${LIMITS.memory}
container_pids = ${LIMITS.pids}
container_stop_timeout = 2
build_userns = ${HOSTILE_IDMAP.base}:${HOSTILE_IDMAP.size}
task_disk_max = ${LIMITS.taskDiskMax}
result_max_size = ${LIMITS.resultMaxSize}
log_max_size = ${LIMITS.logMaxSize}
`

const quiet = <A, E, R>(e: Effect.Effect<A, E, R>) => e.pipe(Logger.withMinimumLogLevel(LogLevel.Error))

/** Builds every local case with `buildLocal` (two at a time, one cache), watching the host; then checks it. */
export const runLocalBatch = (env: HostileEnv, socket: string, only?: (c: HostileCase) => boolean) =>
  Effect.gen(function* () {
    const dir = traversable(path.join(env.base, "local"))
    const cacheDir = cachesOf(env)[0]!
    const confFile = path.join(dir, "kojid.conf")
    writeFileSync(confFile, localConfigText(env, socket, cacheDir))
    const config = yield* loadConfig(confFile)
    const cases = env.cases.filter((c) => c.modes.includes("local") && c.spec !== undefined && (only?.(c) ?? true))
    const before = hostBefore(env, "local")
    const tmp = process.env["TMPDIR"] ?? os.tmpdir()
    const watch = startWatch({
      base: env.base, idmap: HOSTILE_IDMAP,
      taskDirs: () => namesIn(tmp).filter((n) => n.startsWith("koji-adjutant-local-")).map((n) => path.join(tmp, n))
    })
    const t0 = Date.now()
    const runs = yield* Effect.forEach(cases, (c) =>
      Effect.gen(function* () {
        const resultDir = path.join(dir, "results", c.name)
        const started = Date.now()
        const exit = yield* Effect.exit(buildLocal({ srpm: env.srpms.get(c.name)!, repo: path.join(env.fixture.dir, "repos/fixture-build/1/x86_64"), arch: "noarch", resultDir }))
        const endedAt = Date.now()
        return {
          name: c.name, mode: "local", closed: Exit.isSuccess(exit), fault: Exit.isFailure(exit) ? failureText(exit.cause) : "",
          outDir: resultDir, seconds: (endedAt - started) / 1000, endedAt
        } satisfies CaseRun
      }), { concurrency: 2 }).pipe(Effect.provide(localLayerFromSettings({ config })), quiet)
    const seconds = (Date.now() - t0) / 1000
    const report = watch.stop()
    const cenv = checkEnv(report, env)
    return {
      mode: "local",
      cases: cases.map((c, i) => ({ case: c, run: runs[i]!, problems: caseProblems(c, runs[i]!, cenv, env.secret) })),
      hostProblems: hostProblems(before),
      watchProblems: watchProblems(report, cenv.accounts),
      watch: report,
      seconds
    } satisfies BatchReport
  })

// ---------------------------------------------------------------------------------------------
// The daemon

/** The daemon's layers: real Containers and Buildroots with the suite's limits, Scm, and the buildArch and buildSRPMFromSCM handlers. */
const daemonLayers = (hub: FakeHub, socket: string, hostName: string, env: HostileEnv, topdir: string, cacheDir: string) => {
  const containers = Containers.layer(testContainersOptions(socket, hostName, {
    defaultLimits: { memory: LIMITS.memory, pids: LIMITS.pids, cpus: 0 }
  }))
  const services = Layer.mergeAll(
    Buildroots.layer(buildrootsOptions(env.fixture, topdir, cacheDir, {
      idmap: HOSTILE_IDMAP, taskDiskMax: LIMITS.taskDiskMax, resultMaxSize: LIMITS.resultMaxSize, logMaxSize: LIMITS.logMaxSize,
      kojid: { ...buildrootsOptions(env.fixture, topdir, cacheDir).kojid, rpmbuild_timeout: 900 }
    })),
    Scm.layer(e2eScmOptions(env.fixture, { allowedScms: "127.0.0.1*:/*:no", idmap: HOSTILE_IDMAP }))
  ).pipe(Layer.provideMerge(containers))
  const registry = Layer.effect(TaskRegistry, Effect.gen(function* () {
    const broots = yield* Buildroots
    return makeRegistry([buildArchHandler(broots), buildSrpmFromScmHandler(buildSrpmFromScmDeps(broots, yield* Scm))])
  }))
  return Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
    registry,
    HubFileTree.layer({ topurls: buildrootsOptions(env.fixture, topdir, cacheDir).kojid.topurls, topdir })
  ).pipe(Layer.provideMerge(services))
}

const faultOf = (r: unknown): { readonly code: number | undefined; readonly text: string } =>
  typeof r === "object" && r !== null && "faultString" in r
    ? { code: "faultCode" in r && typeof r.faultCode === "number" ? r.faultCode : undefined, text: String(r.faultString) }
    : { code: undefined, text: "" }

/**
 * Submits every daemon case to the fake hub at once (buildArch of its SRPM, or buildSRPMFromSCM of
 * its URL against a git daemon on loopback), runs one daemon until all have ended, watching the
 * host; then judges each case and checks the host.
 */
export const runDaemonBatch = (env: HostileEnv, socket: string, hostName: string, only?: (c: HostileCase) => boolean) =>
  Effect.gen(function* () {
    const dir = traversable(path.join(env.base, "daemon"))
    const cacheDir = cachesOf(env)[1]!
    const workdir = traversable(path.join(dir, "work"))
    const topdir = makeTopdir(env.fixture)
    const gitBase = path.join(dir, "git")
    mkdirSync(gitBase, { recursive: true })
    if (!existsSync(path.join(gitBase, "fixture-hello.git"))) symlinkSync(path.join(env.fixture.dir, "git", "fixture-hello.git"), path.join(gitBase, "fixture-hello.git"))
    const git = yield* Effect.acquireRelease(Effect.promise(() => startGitDaemon(gitBase, "fixture-hello.git")), (g) => Effect.promise(() => g.stop()))
    const cases = env.cases.filter((c) => c.modes.includes("daemon") && (only?.(c) ?? true))
    const hub = yield* fixtureHub(env.fixture, topdir)
    const before = hostBefore(env, { label: hostName })
    const ids = cases.map((c) =>
      c.scmUrl !== undefined
        ? hub.createTask("buildSRPMFromSCM", [c.scmUrl(git.port), "fixture-build", { repo_id: 1, scratch: true }], { arch: "noarch" })
        : hub.createTask("buildArch", [uploadSrpm(topdir, env.srpms.get(c.name)!, c.name), "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" }))
    const tasksDir = path.join(workdir, "tasks")
    const watch = startWatch({
      base: env.base, idmap: HOSTILE_IDMAP,
      taskDirs: () => namesIn(tasksDir).flatMap((n) => namesIn(path.join(tasksDir, n)).map((id) => path.join(tasksDir, n, id)))
    })
    const t0 = Date.now()
    yield* Effect.gen(function* () {
      yield* startDaemon({ ...daemonOptions(workdir), maxjobs: 4 })
      yield* waitFor(() => ids.every((id) => [2, 3, 5].includes(hub.state.task(id)?.state ?? 0)), "the hostile tasks to end", "1800 seconds")
    }).pipe(Effect.scoped, Effect.provide(daemonLayers(hub, socket, hostName, env, topdir, cacheDir)), quiet)
    const seconds = (Date.now() - t0) / 1000
    const report = watch.stop()
    const cenv = checkEnv(report, env)
    const reports = cases.map((c, i): CaseReport => {
      const id = ids[i]!
      const task = hub.state.task(id)!
      const result = hub.state.taskResult(id)
      const closed = task.state === 2
      const fault = faultOf(result)
      const run: CaseRun = {
        name: c.name, mode: "daemon", closed, fault: closed ? "" : fault.text, ...(fault.code === undefined ? {} : { faultCode: fault.code }),
        outDir: path.join(topdir, "work", taskRelPath(id)), ...(closed ? { result } : {}),
        seconds: (task.completionTs ?? 0) - (task.startTs ?? task.createTs), endedAt: (task.completionTs ?? Date.now() / 1000) * 1000
      }
      return { case: c, run, problems: caseProblems(c, run, cenv, env.secret) }
    })
    return {
      mode: "daemon",
      cases: reports,
      hostProblems: hostProblems(before),
      watchProblems: watchProblems(report, cenv.accounts),
      watch: report,
      seconds
    } satisfies BatchReport
  }).pipe(Effect.scoped)

/** The first line of a fault and its last two (the log tail's end). */
const faultSummary = (fault: string): string => {
  const lines = fault.split("\n").filter((l) => l.trim() !== "")
  return lines.length <= 3 ? lines.join(" ⏎ ") : `${lines[0]} ⏎ … ⏎ ${lines.slice(-2).join(" ⏎ ")}`
}

/** One line per case: contained yes/no, wall time, the problems. */
export const formatBatch = (b: BatchReport, verbose = false): ReadonlyArray<string> => [
  ...b.cases.map((r) =>
    `${b.mode.padEnd(6)} ${r.case.cls.padEnd(10)} ${r.case.name.padEnd(34)} contained ${r.problems.length === 0 ? "yes" : "NO "} ${r.run.seconds.toFixed(1).padStart(6)} s` +
    (r.problems.length === 0 ? "" : `\n    ${r.problems.join("\n    ")}`) +
    (verbose ? `\n    ${r.run.closed ? "closed" : `fault: ${faultSummary(r.run.fault)}`}` : "")),
  `${b.mode} batch: ${b.seconds.toFixed(0)} s; watched: ${b.watch.procs.length} build processes, ${b.watch.mounts.length} mounts ` +
    `(${[...new Set(b.watch.mounts.map((m) => m.fstype))].join(", ")}), ${b.watch.resultEntries.length} result entries, ` +
    `largest task ${(Math.max(0, ...b.watch.peakTaskBytes.values()) / 1024 ** 2).toFixed(0)} MiB, file system peak +${(b.watch.fsPeakGrowth / 1024 ** 2).toFixed(0)} MiB`,
  `${b.mode} batch: host after the batch: ${b.hostProblems.length === 0 ? "unchanged" : b.hostProblems.join("; ")}` +
    (b.watchProblems.length === 0 ? "" : `; while it ran: ${b.watchProblems.join("; ")}`)
]

/**
 * The cases of a mode (names and expectations only: the inputs are placeholders), narrowed by
 * KOJI_ADJUTANT_HOSTILE_ONLY=REGEX on their names.
 */
export const selectedCases = (mode: Mode): ReadonlyArray<HostileCase> => {
  const only = process.env["KOJI_ADJUTANT_HOSTILE_ONLY"]
  const re = only === undefined || only === "" ? undefined : new RegExp(only)
  return hostileCases({ secretFile: "/nonexistent", podmanSocket: "/nonexistent", listenerPort: 9 })
    .filter((c) => c.modes.includes(mode) && (mode === "daemon" || c.spec !== undefined) && (re?.test(c.name) ?? true))
}
