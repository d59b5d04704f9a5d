// Bench: issue 12's chaos figure — does the builder lose, leak or repeat anything under faults?
// It is the sum of parts, each counting tasks lost, things leaked and tasks run twice, over its
// crash points and faulted hub calls:
//   * hub faults (here): the fault-proxy run of test/support/hubChaos.ts — the daemon loop against
//     the fake hub through the fault proxy, 100 tasks (half small sleeps, half small uploads),
//     10 % of the session's hub calls faulted by kind (resets before and after the hub commits,
//     500/502/503, hangs cut by `timeout`, truncated and non-XML answers, ServerOffline, latency)
//     and one hub outage of 2 minutes (plus 0-5 s, so the hub's return does not fall on a probe of
//     the daemon by luck; connections refused) while tasks run, with kojid's retry
//     settings (max_retries 120, retry_interval 60, offline_retry_interval 120) and timeout 5 s.
//     It also reports how long after the hub's return the first heartbeat and the tasks that
//     finished during the outage got through, against retry_interval (kojid's waiting calls
//     learn of the return only when their retry_interval ends; ours wake at the first answer).
//   * crash matrix (test/daemon/crashMatrix.ts, also crashMatrix.podman.test.ts): the real program
//     (`node dist/main.js`) in a child process with real podman, SIGKILLed at seeded random points of
//     a sleep, a buildArch's cold fill, a warm buildArch, a dynamic BuildRequires install,
//     rebuildSRPM, buildSRPMFromSCM's checkout, createrepo, newRepo and an upload in progress, and
//     started again after each; a tree not CLOSED is lost, anything of the host left (containers,
//     mounts and loop devices under the workdir and cache, task directories, buildroots the hub
//     still lists as active) is leaked, a task closed or failed twice is twice. It also reports the
//     recovery time, restart → first task taken, against kojid's one cycle (sleeptime).
// To add a part, append a function returning a `ChaosPart` to `parts`.
// Run: `npm run bench -- chaos [--tasks 100] [--outage 120] [--retry-interval 60] [--seed N]
//        [--crash-points 20] [--cold-fills 2] [--crash-seed N] [--only hub|crash]`.
// Last line: `chaos: lost+leaked+twice = N (lost A, leaked B, twice C over P crash points and M faulted calls) (target <= 0)`.
import { Effect } from "effect"
import { describePoint, median, runCrashMatrix } from "../../test/daemon/crashMatrix.js"
import { describeHubChaos, runHubChaos } from "../../test/support/hubChaos.js"

/** What one part of the chaos figure found. */
interface ChaosPart {
  readonly name: string
  readonly lost: number
  readonly leaked: number
  readonly twice: number
  readonly crashPoints: number
  readonly faultedCalls: number
}

const arg = (flag: string, dflt: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const seconds = (ms: number | undefined): string => (ms === undefined ? "n/a" : `${(ms / 1000).toFixed(1)} s`)

const hubFaults = async (): Promise<ChaosPart> => {
  const outage = arg("--outage", 120)
  const retryInterval = arg("--retry-interval", 60)
  const seed = process.argv.includes("--seed") ? arg("--seed", 0) : undefined
  console.log(`hub faults: ${arg("--tasks", 100)} tasks, 10 % of hub calls faulted, one ${outage} s outage, retry_interval ${retryInterval} s`)
  const r = await Effect.runPromise(runHubChaos({
    tasks: arg("--tasks", 100),
    outageMs: outage * 1000,
    // Up to one probe interval (5 s) more, so the hub's return falls anywhere between two probes.
    outageJitterMs: 5000,
    retryInterval,
    maxRetries: 120,
    offlineRetryInterval: 120,
    timeout: 5,
    ...(seed !== undefined ? { seed } : {}),
    deadlineMs: 15 * 60_000 + outage * 1000,
    progress: (line) => console.log(`  ${line}`)
  }))
  console.log(`hub faults: ${describeHubChaos(r)}`)
  if (r.lost.length > 0) console.log(`hub faults: lost tasks ${r.lost.join(" ")}`)
  if (r.twice.length > 0) console.log(`hub faults: tasks run or reported twice ${r.twice.join(" ")}`)
  if (r.leaked.length > 0) console.log(`hub faults: task workdirs left behind ${r.leaked.join(" ")}`)
  if (!r.stopped) console.log("hub faults: the daemon did not stop within 60 s of being interrupted (counted as leaked)")
  console.log(
    `hub faults: after the ${(r.outageMs / 1000).toFixed(1)} s outage: first heartbeat ${seconds(r.heartbeatAfterOutageMs)}, ` +
    `the ${r.finishedDuringOutage} tasks that finished during it closed within ${seconds(r.closeAfterOutageMs)} of the hub's return ` +
    `(retry_interval ${retryInterval} s: kojid's waiting calls retry up to that long after the return)`
  )
  console.log(`hub faults: ${seconds(r.elapsedMs)} in all`)
  return {
    name: "hub faults",
    lost: r.lost.length,
    leaked: r.leaked.length + (r.stopped ? 0 : 1),
    twice: r.twice.length,
    crashPoints: 0,
    faultedCalls: r.faulted
  }
}

/** The crash world's sleeptime (test/daemon/crashWorld.ts): kojid's recovery is one cycle of it. */
const CRASH_WORLD_SLEEPTIME_S = 1

const crashMatrix = async (): Promise<ChaosPart> => {
  const points = arg("--crash-points", 20)
  const seed = process.argv.includes("--crash-seed") ? arg("--crash-seed", 0) : undefined
  console.log(`crash matrix: ${points} SIGKILL points, real podman, the daemon as a child process`)
  const r = await runCrashMatrix({
    points,
    coldFills: arg("--cold-fills", 2),
    ...(seed !== undefined ? { seed } : {}),
    progress: (line) => console.log(`  ${line}`)
  })
  const inPhase = r.points.filter((p) => p.inPhase).length
  console.log(`crash matrix: seed ${r.seed} (--crash-seed ${r.seed} replays its order and kill moments), ${inPhase} of ${r.points.length} kills inside their phase`)
  for (const p of r.points.filter((p) => p.lost.length + p.leaked.length + p.twice.length > 0)) console.log(`crash matrix: FOUND ${describePoint(p)}`)
  if (r.finalExit !== 0) console.log(`crash matrix: the last daemon did not exit 0 on SIGTERM (${r.finalExit}); counted as leaked`)
  const recovery = r.points.flatMap((p) => (p.recoveryMs === undefined ? [] : [p.recoveryMs]))
  // Cycles the host was ready in: a busy machine's load average keeps it (as kojid) not ready for a while.
  const cycles = r.points.flatMap((p) => (p.recoveryCycles === undefined ? [] : [p.recoveryCycles - (p.notReadyCycles ?? 0)]))
  const notReady = r.points.reduce((a, p) => a + (p.notReadyCycles ?? 0), 0)
  console.log(
    `crash matrix: recovery (restart → first task taken) median ${seconds(median(recovery))}, max ${seconds(recovery.length === 0 ? undefined : Math.max(...recovery))} ` +
    `over ${recovery.length} restarts, ${median(cycles) ?? "n/a"} ready loop cycle(s) (max ${cycles.length === 0 ? "n/a" : Math.max(...cycles)}; ` +
    `${notReady} not-ready cycles in all); ` +
    `kojid: one cycle = sleeptime (${CRASH_WORLD_SLEEPTIME_S} s here, 15 s at its default) after its start-up`
  )
  console.log(`crash matrix: ${seconds(r.elapsedMs)} in all`)
  return { name: "crash matrix", lost: r.lost, leaked: r.leaked, twice: r.twice, crashPoints: r.points.length, faultedCalls: 0 }
}

const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined
const parts: ReadonlyArray<() => Promise<ChaosPart>> = [
  ...(only === undefined || only === "hub" ? [hubFaults] : []),
  ...(only === undefined || only === "crash" ? [crashMatrix] : [])
]

const results: Array<ChaosPart> = []
for (const part of parts) results.push(await part())
const sum = (f: (p: ChaosPart) => number): number => results.reduce((a, p) => a + f(p), 0)
const lost = sum((p) => p.lost)
const leaked = sum((p) => p.leaked)
const twice = sum((p) => p.twice)
console.log(
  `chaos: lost+leaked+twice = ${lost + leaked + twice} (lost ${lost}, leaked ${leaked}, twice ${twice} over ` +
  `${sum((p) => p.crashPoints)} crash points and ${sum((p) => p.faultedCalls)} faulted calls) (target <= 0)`
)
// Kept-alive hub connections of the finished run must not hold the bench.
process.exit(0)
