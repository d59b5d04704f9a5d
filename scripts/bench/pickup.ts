// Bench: task pickup latency, create → open, of our daemon loop against kojid's (issue 15 item 5).
// The hub's scheduler runs only inside a host.getTasks of a host with nothing assigned, at most
// once per RunInterval (kojihub/scheduler.py), so pickup depends on when builders call getTasks.
// One in-process fake hub with the harness's settings (RunInterval 5 s, ../shared/harness) and
// two hosts, only one enabled and polling at a time, both at the harness's sleeptime (2 s):
//  (a) ours: the real daemon (src/daemon/Daemon.ts runDaemon, batched calls as in production)
//      with the generic handlers and in-memory containers;
//  (b) kojid: a minimal poller making kojid's main-loop calls in kojid's order (koji-captures
//      kojid/generic-sleep: getHostTasks, getHost, updateHost, getTasks, then getTaskInfo,
//      openTask, setTaskWeight and the task on a subsession), sleeping `sleeptime` after a cycle
//      that took nothing and noticing a finished task at its next cycle, as kojid does.
// Each side runs the same sequence, as the real-hub measurement did: create a `sleep 6` task
// (longer than RunInterval, as a build is, so the scheduler is due again when it ends),
// wait until it is closed, wait a delay (the same pseudo-random delays on both sides, 0.1–2 s,
// like a user or a script reacting to the end of the previous task), create the next. Pickup is
// the hub's own open time minus its create time (task.start_ts − task.create_ts).
// Run: `npm run bench -- pickup [--samples N] [--sleeptime S] [--run-interval R] [--task-seconds T]`.
// With --task-seconds 1 (shorter than RunInterval) ours is faster (0.74 in one run): the loop's
// wake-up at a task's end makes an extra getTasks, so the hub's scheduler runs closer to every
// RunInterval than with kojid's fixed sleeptime cadence.
// Last line: `pickup: ours/kojid = X (target <= 1.0)` (ratio of the medians).
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Duration, Effect, Fiber, Layer, Logger, LogLevel } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { KojiHub, type Session } from "../../src/hub/KojiHub.js"
import { encodeResponse } from "../../src/hub/xmlrpc.js"
import { HubFileTree } from "../../src/koji/paths.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { type FakeHub, startFakeHub, TaskState } from "../../test/fakehub/FakeHub.js"

const arg = (flag: string, dflt: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const SAMPLES = arg("--samples", 12)
const SLEEPTIME = arg("--sleeptime", 2)
const RUN_INTERVAL = arg("--run-interval", 5)
const TASK_SECONDS = arg("--task-seconds", 6)
const PASSWORD = "pw"

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** The same delays for both sides: a small LCG, 0.1–2.0 s. */
const delays = (n: number): ReadonlyArray<number> => {
  let x = 12345
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    return 0.1 + 1.9 * (x / 2 ** 31)
  })
}

const realSleep = (s: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, s * 1000)))

/** Polls the hub's table every 10 ms until `cond` holds. */
const until = (cond: () => boolean, what: string, seconds = 120) =>
  Effect.gen(function*() {
    const deadline = Date.now() + seconds * 1000
    while (!cond()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out: ${what}`)
      yield* realSleep(0.01)
    }
  })

/** The measured sequence on `host` (the only enabled one): one warm-up task, then SAMPLES. */
const measure = (hub: FakeHub, host: string) =>
  Effect.gen(function*() {
    const pickups: Array<number> = []
    const waits = delays(SAMPLES)
    for (let i = -1; i < SAMPLES; i++) {
      const id = hub.createTask("sleep", [TASK_SECONDS])
      yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED, `task ${id} closed on ${host}`)
      const t = hub.state.task(id)!
      const ownerName = hub.state.hosts.find((h) => h.id === t.hostId)?.name
      if (ownerName !== host) return yield* Effect.dieMessage(`task ${id} ran on ${ownerName}, not ${host}`)
      if (i >= 0) pickups.push(t.startTs! - t.createTs)
      yield* realSleep(i >= 0 ? waits[i]! : 1)
    }
    return pickups
  })

const hubLayer = (hub: FakeHub, host: string) =>
  KojiHub.layerWithTransport({ server: hub.url, user: host, password: PASSWORD, maxRetries: 3, retryInterval: 1 })

/** (a) our daemon loop on host "ours". */
const ours = (hub: FakeHub, workdir: string) =>
  Effect.gen(function*() {
    const layer = Layer.mergeAll(
      hubLayer(hub, "ours"),
      TaskRegistry.layerTest(genericHandlers),
      Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: workdir }),
      Containers.layerMemory({ hostName: "ours" }),
      Logger.minimumLogLevel(LogLevel.Warning)
    )
    const daemon = yield* Effect.fork(Effect.scoped(runDaemon({
      sleeptime: Duration.seconds(SLEEPTIME),
      maxjobs: 10,
      forceLock: true,
      runner: { workdir, taskTimeout: 0, waitPoll: Duration.seconds(30) },
      shutdownTimeout: Duration.seconds(10),
      shutdownCallTimeout: Duration.seconds(5),
      batchHubCalls: true
    })).pipe(Effect.provide(layer)))
    const pickups = yield* measure(hub, "ours")
    yield* Fiber.interrupt(daemon)
    return pickups
  })

/** (b) kojid's main loop, reduced to the calls that decide pickup. */
const kojidLoop = (main: Session) =>
  Effect.gen(function*() {
    const api = hostApi(main)
    const running = new Map<number, Fiber.RuntimeFiber<void, unknown>>()
    const data = { methods: ["sleep"], maxjobs: 10 }
    for (;;) {
      // updateTasks: the OPEN tasks of ours; finished task processes are reaped.
      const open = yield* api.getHostTasks()
      for (const [id, f] of running) if (f.unsafePoll() !== null) running.delete(id)
      const load = open.filter((t) => t.waiting !== true).reduce((acc, t) => acc + t.weight, 0)
      // getNextTask: readyForTask, updateHost, getTasks, takeTask.
      const host = yield* api.getHost()
      const ready = host.enabled && load <= host.capacity && running.size < 10
      yield* api.updateHost(load, ready, data)
      let taken = false
      if (ready) {
        for (const task of yield* api.getTasks()) {
          if (running.has(task.id) || task.state !== TaskState.ASSIGNED) continue
          yield* api.getTaskInfo(task.id, { request: true })
          const opened = yield* api.openTask(task.id)
          if (opened === null) continue
          yield* api.setTaskWeight(task.id, 0.25)
          const sub = yield* main.subsession
          running.set(task.id, yield* Effect.fork(realSleep(TASK_SECONDS).pipe(
            Effect.zipRight(hostApi(sub).closeTask(task.id, encodeResponse(null))),
            Effect.zipRight(sub.logout)
          )))
          taken = true
          break
        }
      }
      if (!taken) yield* realSleep(SLEEPTIME)
    }
  })

const kojid = (hub: FakeHub) =>
  Effect.gen(function*() {
    const poller = yield* Effect.fork(Effect.scoped(Effect.flatMap(Effect.flatMap(KojiHub, (kh) => kh.loginScoped(true)), kojidLoop)).pipe(
      Effect.provide(hubLayer(hub, "kojid"))
    ))
    const pickups = yield* measure(hub, "kojid")
    yield* Fiber.interrupt(poller)
    return pickups
  })

const program = Effect.scoped(Effect.gen(function*() {
  const workdir = mkdtempSync(join(tmpdir(), "bench-pickup-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(workdir, { recursive: true, force: true })))
  const hub = yield* startFakeHub({
    hosts: [{ name: "ours", password: PASSWORD, capacity: 10 }, { name: "kojid", password: PASSWORD, capacity: 10 }],
    scheduler: { runInterval: RUN_INTERVAL }
  })
  hub.setHostEnabled("kojid", false)
  const a = yield* ours(hub, workdir)
  hub.setHostEnabled("ours", false)
  hub.setHostEnabled("kojid", true)
  const b = yield* kojid(hub)
  return { a, b }
}))

const { a, b } = await Effect.runPromise(program)
const fmt = (xs: ReadonlyArray<number>) => xs.map((x) => x.toFixed(2)).join(" ")
console.log(`pickup: sleeptime ${SLEEPTIME} s, RunInterval ${RUN_INTERVAL} s, ${SAMPLES} sequential sleep-${TASK_SECONDS} tasks each`)
console.log(`pickup: ours  create→open median ${median(a).toFixed(2)} s (min ${Math.min(...a).toFixed(2)}, max ${Math.max(...a).toFixed(2)}): ${fmt(a)}`)
console.log(`pickup: kojid create→open median ${median(b).toFixed(2)} s (min ${Math.min(...b).toFixed(2)}, max ${Math.max(...b).toFixed(2)}): ${fmt(b)}`)
console.log(`pickup: ours/kojid = ${(median(a) / median(b)).toFixed(2)} (target <= 1.0)`)
