/**
 * The crash matrix of issue 12, shared by its test (crashMatrix.podman.test.ts) and the chaos
 * bench (scripts/bench/chaos.ts): the real program in a child process (crashWorld.ts) is
 * SIGKILLed at seeded random points of seeded scenarios — a sleep, a buildArch's cold fill, a warm
 * buildArch, a dynamic BuildRequires install, rebuildSRPM, buildSRPMFromSCM's checkout, createrepo,
 * newRepo, an upload in progress — and started again at once. After each point the task tree must
 * end as it should (CLOSED: every scenario is a good build), no task may be closed or failed twice,
 * the hub may list no active buildroot of the host, and the host must hold nothing of it:
 * containers, mounts and loop devices under the workdir and the cache, task directories.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { ChildProcess } from "node:child_process"
import { BuildrootState } from "../../src/koji/states.js"
import { buildrootTables } from "../fakehub/buildroots.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { type CrashWorld, type Leftovers, startCrashWorld, stderrOf } from "./crashWorld.js"

/** The scenarios, each a phase of real work to kill the daemon in. */
export const SCENARIOS = [
  "sleep", "buildArch cold fill", "buildArch warm", "dynamic BuildRequires", "rebuildSRPM", "buildSRPMFromSCM checkout",
  "createrepo", "newRepo", "upload in progress"
] as const
export type Scenario = (typeof SCENARIOS)[number]

/** One crash point and what followed it. */
export interface CrashPoint {
  readonly n: number
  readonly scenario: Scenario
  /** The task the scenario created (the root of its tree). */
  readonly taskId: number
  /** ms after the phase began that the daemon was killed. */
  readonly delayMs: number
  /** The phase was still on when the kill came (else the kill fell just after it). */
  readonly inPhase: boolean
  /** From the restart to the first task the new process opened. */
  readonly recoveryMs: number | undefined
  /** Loop cycles (heartbeats) of the new process before that open. */
  readonly recoveryCycles: number | undefined
  /** Of those, the cycles the host reported itself not ready (kojid's load average check on a busy machine, mostly). */
  readonly notReadyCycles: number | undefined
  /** Tasks of the tree not CLOSED at the end (id: state). */
  readonly lost: ReadonlyArray<string>
  /** What was left on the host or the hub after the tree ended. */
  readonly leaked: ReadonlyArray<string>
  /** Tasks closed or failed more than once. */
  readonly twice: ReadonlyArray<number>
  /** Half-filled cache entries left (src/buildroot/cache.ts's part of issue 12 §1; not counted in `leaked`). */
  readonly cacheStaging: ReadonlyArray<string>
  readonly elapsedMs: number
}

/** Options of a run. */
export interface CrashMatrixOptions {
  /** Crash points (default 20); the scenarios are dealt round-robin in a seeded order, cold fills at most `coldFills` times. */
  readonly points?: number
  readonly coldFills?: number
  /** Seed of the order and the delays (default CRASH_MATRIX_SEED, else random). */
  readonly seed?: number
  readonly progress?: (line: string) => void
  /** Give up a tree after this long (default 240 s). */
  readonly treeTimeoutMs?: number
}

/** What a run found. */
export interface CrashMatrixResult {
  readonly seed: number
  readonly points: ReadonlyArray<CrashPoint>
  readonly lost: number
  readonly leaked: number
  readonly twice: number
  /** Leftovers after the last daemon stopped with SIGTERM, and whether it exited 0. */
  readonly final: Leftovers | undefined
  readonly finalExit: number | string | undefined
  readonly elapsedMs: number
}

/** mulberry32: a small seeded generator. */
const rng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const DONE: ReadonlySet<number> = new Set([TaskState.CLOSED, TaskState.CANCELED, TaskState.FAILED])
const stateName = (s: number | undefined) => ["FREE", "OPEN", "CLOSED", "CANCELED", "ASSIGNED", "FAILED"][s ?? -1] ?? String(s)

/** Waits until `cond` (polled every `every` ms) or the deadline; false on timeout. */
const until = async (cond: () => boolean | Promise<boolean>, ms: number, every = 50): Promise<boolean> => {
  const deadline = Date.now() + ms
  for (;;) {
    if (await cond()) return true
    if (Date.now() > deadline) return false
    await sleep(every)
  }
}

const exited = (child: ChildProcess): Promise<number | string | undefined> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode)
    if (child.signalCode !== null) return resolve(child.signalCode)
    child.once("exit", (code, signal) => resolve(code ?? signal ?? undefined))
  })

/** A task and its descendants. */
const treeOf = (world: CrashWorld, root: number): ReadonlyArray<number> => {
  const ids = [root]
  for (let i = 0; i < ids.length; i++) for (const t of world.hub.state.tasks) if (t.parent === ids[i]) ids.push(t.id)
  return ids
}

const treeDone = (world: CrashWorld, root: number): boolean => treeOf(world, root).every((id) => DONE.has(world.hub.state.task(id)?.state ?? -1))

/** Containers of one task and role, by the names Containers gives them (`kojiadj-<role>-t<task>-<random>`). */
const hasContainer = (names: ReadonlyArray<string>, role: string, taskIds: ReadonlyArray<number>) =>
  names.some((n) => taskIds.some((id) => n.startsWith(`kojiadj-${role}-t${id}-`)))

const buildrootState = (world: CrashWorld, taskId: number): number | undefined =>
  [...buildrootTables(world.topdir).buildroots.values()].filter((b) => b.taskId === taskId).at(-1)?.state

/** How one scenario is set up and when its phase is on. */
interface Plan {
  readonly window: number
  readonly create: (world: CrashWorld) => number
  readonly phase: (world: CrashWorld, taskId: number, containers: ReadonlyArray<string>) => boolean
  readonly before?: (world: CrashWorld) => void
}

const srpm = (world: CrashWorld, name: string) => world.upload(path.join(world.fixture.srpms, `${name}-1.0-1.src.rpm`))
const buildArch = (name: string) => (world: CrashWorld) =>
  world.hub.createTask("buildArch", [srpm(world, name), "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" })
const newRepo = (world: CrashWorld) =>
  world.hub.createTask("newRepo", [
    { id: world.fixture.manifest.tag.id, name: world.fixture.manifest.tag.name },
    { opts: { src: false, debuginfo: false, separate_src: false, maven: false }, __starstar: true }
  ], { channel: "createrepo", priority: 15 })
const BUILDING = BuildrootState.BUILDING
const UPLOAD_DELAY_MS = 300
/** Tasks a point may create before its phase is seen (a fast phase can fall between two polls). */
const MISSED_TRIES = 3

const PLANS: Readonly<Record<Scenario, Plan>> = {
  "sleep": {
    window: 3000,
    create: (w) => w.hub.createTask("sleep", [4]),
    phase: (w, id) => w.hub.state.task(id)?.state === TaskState.OPEN
  },
  "buildArch cold fill": {
    window: 12_000,
    before: (w) => w.dropCache(),
    create: buildArch("fixture-hello"),
    phase: (w, id, names) => hasContainer(names, "buildroot", [id]) && buildrootState(w, id) !== BUILDING
  },
  "buildArch warm": {
    window: 1200,
    create: buildArch("fixture-hello"),
    phase: (w, id) => w.hub.state.task(id)?.state === TaskState.OPEN && buildrootState(w, id) !== undefined
  },
  "dynamic BuildRequires": {
    window: 700,
    create: buildArch("fixture-dynreq"),
    phase: (w, id, names) => buildrootState(w, id) === BUILDING && hasContainer(names, "buildroot", [id])
  },
  "rebuildSRPM": {
    window: 2500,
    create: (w) => w.hub.createTask("rebuildSRPM", [srpm(w, "fixture-hello"), "fixture-build", { repo_id: 1 }], { arch: "noarch" }),
    phase: (w, id) => w.hub.state.task(id)?.state === TaskState.OPEN && buildrootState(w, id) !== undefined
  },
  "buildSRPMFromSCM checkout": {
    window: 600,
    create: (w) => w.hub.createTask("buildSRPMFromSCM", [`${w.gitUrl}#fixture-hello-1.0-1`, "fixture-build", { repo_id: 1 }], { arch: "noarch" }),
    phase: (_w, id, names) => hasContainer(names, "scm", [id])
  },
  "createrepo": {
    window: 1500,
    create: newRepo,
    phase: (w, id, names) => hasContainer(names, "createrepo", treeOf(w, id).slice(1))
  },
  "newRepo": {
    window: 1200,
    create: newRepo,
    phase: (w, id) => w.hub.state.task(id)?.state === TaskState.OPEN
  },
  "upload in progress": {
    window: 2500,
    create: buildArch("fixture-hello"),
    // The results and logs go up after rpmbuild, once the buildroot's final package list is sent.
    phase: (w, id) => {
      const br = [...buildrootTables(w.topdir).buildroots.values()].filter((b) => b.taskId === id).at(-1)
      return br !== undefined && w.hub.state.calls.some((c) => c.method === "host.updateBuildRootList" && c.params[0] === br.id && c.fault === undefined) &&
        w.hub.state.task(id)?.state === TaskState.OPEN
    }
  }
}

/** The seeded order of `points` scenarios: every scenario in turn, cold fills at most `coldFills` times. */
export const planOrder = (points: number, coldFills: number, random: () => number): ReadonlyArray<Scenario> => {
  const out: Array<Scenario> = []
  let cold = 0
  while (out.length < points) {
    const round = [...SCENARIOS].filter((s) => s !== "buildArch cold fill" || cold < coldFills)
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[round[i], round[j]] = [round[j]!, round[i]!]
    }
    for (const s of round) {
      if (out.length >= points) break
      if (s === "buildArch cold fill") cold++
      out.push(s)
    }
  }
  return out
}

/** Successful closeTask/failTask calls per task. */
const reports = (world: CrashWorld, taskId: number): number =>
  world.hub.state.calls.filter((c) =>
    (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === taskId && c.fault === undefined && c.http === undefined).length

/** What of the host and the hub is left (the cache's staging dirs apart). */
const leftoverList = (world: CrashWorld, l: Leftovers): ReadonlyArray<string> => {
  const hostId = world.hub.state.host(world.hostName)?.id
  const active = [...buildrootTables(world.topdir).buildroots.values()].filter((b) => b.hostId === hostId && b.state !== BuildrootState.EXPIRED)
  return [
    ...l.containers.map((c) => `container ${c}`),
    ...l.mounts.map((m) => `mount ${m}`),
    ...l.loops.map((d) => `loop ${d}`),
    ...l.taskDirs.map((d) => `dir ${d}`),
    ...l.otherDirs.map((d) => `dir ${d}`),
    ...active.map((b) => `buildroot ${b.id} of task ${b.taskId} still ${b.state}`)
  ]
}

/** Runs the matrix in a world of its own; never throws for what it finds (see the result). */
export const runCrashMatrix = async (options: CrashMatrixOptions = {}): Promise<CrashMatrixResult> => {
  const envSeed = process.env["CRASH_MATRIX_SEED"]
  const seed = options.seed ?? (envSeed !== undefined && envSeed !== "" ? Number(envSeed) : Math.floor(Math.random() * 2 ** 31))
  const random = rng(seed)
  const progress = options.progress ?? (() => undefined)
  const order = planOrder(options.points ?? 20, options.coldFills ?? 2, random)
  const t0 = Date.now()
  const world = await startCrashWorld("crashmx")
  const points: Array<CrashPoint> = []
  let final: Leftovers | undefined
  let finalExit: number | string | undefined
  try {
    let daemon = world.startDaemon()
    let startedAtCall = 0
    const windows = new Map<Scenario, number>()
    for (const [i, scenario] of order.entries()) {
      const started = Date.now()
      const plan = PLANS[scenario]
      // The daemon may have died on its own: that is a finding, and the matrix goes on with a new one.
      if (daemon.exitCode !== null || daemon.signalCode !== null) {
        progress(`daemon exited on its own (${daemon.exitCode ?? daemon.signalCode}): ${stderrOf(daemon).slice(-2000)}`)
        daemon = world.startDaemon()
      }
      world.setInject(scenario === "upload in progress" ? slowUploads : undefined)
      let taskId = 0
      let delayMs = 0
      let inPhase = false
      for (let attempt = 1; ; attempt++) {
        plan.before?.(world)
        taskId = plan.create(world)
        let names: ReadonlyArray<string> = []
        const id = taskId
        const phaseNow = async () => {
          names = await world.containers().catch(() => names)
          return plan.phase(world, id, names)
        }
        // Until the phase is on, or the tree ended without it being seen (a fast phase between two polls).
        let on = false
        await until(async () => (on = await phaseNow()) || treeDone(world, id), 240_000, 40)
        if (!on && attempt < MISSED_TRIES) {
          progress(`#${i + 1} ${scenario}: task ${id} ended before its phase was seen; another task`)
          continue
        }
        // Kill at a seeded moment of the window, or as soon as the phase ends if it ends first; a
        // phase that ended early shrinks the window of its next points, so they fall inside it.
        const window = windows.get(scenario) ?? plan.window
        const planned = Math.floor(random() * window)
        const phaseStart = Date.now()
        let endedAt: number | undefined
        if (on) {
          await until(async () => {
            if (!(await phaseNow())) endedAt = Date.now()
            return endedAt !== undefined || Date.now() - phaseStart >= planned
          }, planned + 5000, 20)
        }
        delayMs = Date.now() - phaseStart
        inPhase = on && endedAt === undefined
        if (endedAt !== undefined) windows.set(scenario, Math.max(100, Math.floor((endedAt - phaseStart) * 0.8)))
        break
      }
      daemon.kill("SIGKILL")
      await exited(daemon)
      world.setInject(undefined)
      const callsBefore = world.hub.state.calls.length
      startedAtCall = callsBefore
      const restartAt = Date.now()
      daemon = world.startDaemon()
      let recoveryMs: number | undefined
      let recoveryCycles: number | undefined
      let notReadyCycles: number | undefined
      const ended = await until(() => {
        if (recoveryMs === undefined) {
          const calls = world.hub.state.calls.slice(callsBefore)
          const open = calls.findIndex((c) => c.method === "host.openTask" && c.fault === undefined && c.result !== null && c.result !== undefined)
          if (open >= 0) {
            recoveryMs = Date.now() - restartAt
            const beats = calls.slice(0, open).filter((c) => c.method === "host.updateHost")
            recoveryCycles = beats.length
            notReadyCycles = beats.filter((c) => c.params[1] === false).length
          }
        }
        return treeDone(world, taskId)
      }, options.treeTimeoutMs ?? 240_000)
      const tree = treeOf(world, taskId)
      const lost = tree.filter((id) => world.hub.state.task(id)?.state !== TaskState.CLOSED)
        .map((id) => `${id} ${world.hub.state.task(id)?.method}: ${stateName(world.hub.state.task(id)?.state)}${ended ? "" : " (timed out)"}`)
      const twice = tree.filter((id) => reports(world, id) > 1)
      // The tree is done; its containers, mounts and directories go with the task scopes, and the
      // idle loop expires what the killed process's buildroots left.
      let left: Leftovers = await world.leftovers()
      await until(async () => {
        left = await world.leftovers()
        return leftoverList(world, left).length === 0
      }, 30_000, 200)
      const point: CrashPoint = {
        n: i + 1, scenario, taskId, delayMs, inPhase, recoveryMs, recoveryCycles, notReadyCycles, lost, twice,
        leaked: leftoverList(world, left), cacheStaging: left.cacheStaging, elapsedMs: Date.now() - started
      }
      points.push(point)
      progress(describePoint(point))
      if (lost.length > 0) {
        for (const id of tree) progress(`  task ${id}: ${JSON.stringify(world.hub.state.taskResult(id)).slice(0, 600)}`)
        progress(`  daemon log tail: ${tailOf(world.logFile, 3000)}`)
      }
    }
    // SIGTERM once the last process is up (its first heartbeat): before Node.js has set up its
    // handlers, SIGTERM's default action ends it, which says nothing about the daemon.
    await until(() => world.hub.state.calls.slice(startedAtCall).some((c) => c.method === "host.updateHost"), 60_000)
    daemon.kill("SIGTERM")
    finalExit = await Promise.race([exited(daemon), sleep(60_000).then(() => "timeout")])
    final = await world.leftovers()
  } finally {
    await world.close()
  }
  const sum = (f: (p: CrashPoint) => number) => points.reduce((a, p) => a + f(p), 0)
  const finalLeaks = final === undefined ? 1 : final.containers.length + final.mounts.length + final.loops.length + final.taskDirs.length
  return {
    seed,
    points,
    lost: sum((p) => (p.lost.length > 0 ? 1 : 0)),
    leaked: sum((p) => (p.leaked.length > 0 ? 1 : 0)) + (finalLeaks > 0 || finalExit !== 0 ? 1 : 0),
    twice: sum((p) => p.twice.length),
    final,
    finalExit,
    elapsedMs: Date.now() - t0
  }
}

const tailOf = (file: string, n: number): string => {
  try {
    const text = fs.readFileSync(file, "utf8")
    return text.slice(-n)
  } catch {
    return ""
  }
}

/** One line per crash point. */
export const describePoint = (p: CrashPoint): string =>
  `#${p.n} ${p.scenario}: task ${p.taskId} killed ${p.delayMs} ms into the phase${p.inPhase ? "" : " (just after it)"}, ` +
  `back to work ${p.recoveryMs === undefined ? "never" : `${p.recoveryMs} ms`} after the restart (${p.recoveryCycles ?? "?"} cycles${p.notReadyCycles ? `, ${p.notReadyCycles} not ready` : ""}); ` +
  `${p.lost.length === 0 ? "tree CLOSED" : `lost ${p.lost.join(", ")}`}` +
  `${p.twice.length === 0 ? "" : `; closed twice: ${p.twice.join(", ")}`}` +
  `${p.leaked.length === 0 ? "" : `; left: ${p.leaked.join(", ")}`}` +
  `${p.cacheStaging.length === 0 ? "" : `; cache staging left: ${p.cacheStaging.length}`} (${(p.elapsedMs / 1000).toFixed(1)} s)`

/** Median of a list (undefined when empty). */
export const median = (xs: ReadonlyArray<number>): number | undefined => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? undefined : s[Math.floor(s.length / 2)]
}

/** Creates the task of a scenario (its `before` first: a cold fill empties the cache); its id. */
export const createScenarioTask = (world: CrashWorld, scenario: Scenario): number => {
  PLANS[scenario].before?.(world)
  return PLANS[scenario].create(world)
}

/** Whether the phase of `scenario` is on for task `taskId`, given the host's container names. */
export const scenarioPhase = (world: CrashWorld, scenario: Scenario, taskId: number, containers: ReadonlyArray<string>): boolean =>
  PLANS[scenario].phase(world, taskId, containers)

/** The inject hook that slows uploads down, so that one is in progress for a while. */
export const slowUploads = (req: { readonly methodName: string }) => (req.methodName === "rawUpload" ? { delayMs: UPLOAD_DELAY_MS } : undefined)
