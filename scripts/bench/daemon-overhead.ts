// Bench: what the daemon loop costs per task. In one run, against one in-process fake hub:
//  (a) 100 `sleep 0` tasks through the real daemon loop (src/daemon/TaskManager.ts) in a child
//      process with the generic handlers (kojid.conf's sleeptime is whole seconds), maxjobs=10,
//      sleeptime 50 ms; timed from the first assignment to the last close, polling the hub's
//      task table every 2 ms;
//  (b) the floor: 100 tasks assigned to a second host, driven by a minimal script in this
//      process with the same hub client, making only the calls a task needs — openTask,
//      setTaskWeight, subsession on the main session, closeTask on the subsession, logoutChild —
//      with up to 10 tasks in flight.
// Peak RSS: the real `node dist/main.js` (all handler families, kojid.conf), a child process,
// VmHWM while 10 `sleep 2` tasks run at once.
// (a) and (b) alternate for --rounds rounds (default 5); the medians are compared, because the
// machine is shared and single runs vary by ±50%. The daemon's CPU time per task during (a) is
// printed too: it moves far less with the machine's load than the wall-clock times do.
// Everything runs twice: metrics off (no status_listen), then on — the daemon serving
// status_listen with a real Prometheus (Debian's package, /usr/bin/prometheus) scraping its
// /metrics every second; where Prometheus is not installed, an HTTP scraper in this process GETs
// /metrics every second instead, and the output says which — with a floor of its own for each
// phase. Both figures are printed; the last line is the one with metrics on, the daemon as an
// admin who follows the README runs it.
// Run: `npm run bench -- daemon-overhead [--tasks N] [--rounds N]`.
// Last line: `daemon-overhead: daemon/floor = <x.xx> (target <= 1.50)`.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { createServer } from "node:http"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { Effect, type Fiber, LogLevel, type Scope } from "effect"
import { KojiHub, type Session } from "../../src/hub/KojiHub.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { encodeResponse } from "../../src/hub/xmlrpc.js"
import { startFakeHub, TaskState } from "../../test/fakehub/FakeHub.js"
import { freePort, prometheusBinary, startPrometheus } from "../../test/support/prometheus.js"
import { runDaemonLoop } from "./lib/daemonLoop.js"

const self = fileURLToPath(import.meta.url)
/** The checkout (the compiled bench runs from node_modules/.cache/…/scripts/bench). */
const root = ((): string => {
  let dir = dirname(self)
  while (!existsSync(join(dir, "package.json")) || dir.includes(`${join("node_modules", ".cache")}`)) {
    const up = dirname(dir)
    if (up === dir) break
    dir = up
  }
  return dir
})()
/** CPU time (user + system, every thread) of process `pid` so far, in ms; clock ticks are 1/100 s on Linux. */
const cpuMs = (pid: number | undefined): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}
const arg = (flag: string, dflt: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

/** What scrapes /metrics in the metrics-on phase. */
const scraperKind = prometheusBinary === undefined
  ? "an HTTP scraper in the bench (prometheus is not installed) GETting /metrics every 1 s"
  : `a real Prometheus (${prometheusBinary}) scraping /metrics every 1 s`

/**
 * Scrapes `target` (host:port) every second for the scope: a real Prometheus where there is one,
 * else a GET of /metrics each second. Waits for the first good scrape; `scrapes` counts the good
 * ones so far (Prometheus: samples of `up` = 1), so the report can show the scraping happened.
 */
const scrapeEverySecond = (target: string): Effect.Effect<{ readonly scrapes: Effect.Effect<number> }, never, Scope.Scope> =>
  Effect.gen(function*() {
    if (prometheusBinary !== undefined) {
      const prom = yield* startPrometheus(target, "1s")
      const scrapes = Effect.map(prom.query('sum_over_time(up{job="koji-adjutant"}[1h])'), (r) => Number(r[0]?.value[1] ?? 0))
      for (let i = 0; (yield* scrapes) < 1; i++) {
        if (i > 150) return yield* Effect.dieMessage(`Prometheus never scraped ${target}`)
        yield* Effect.sleep("200 millis")
      }
      return { scrapes }
    }
    let good = 0
    const once = Effect.promise(() =>
      fetch(`http://${target}/metrics`, { signal: AbortSignal.timeout(1000) })
        .then(async (r) => r.ok && (await r.text()).includes("koji_adjutant_build_info"))
        .catch(() => false)
    )
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.tap(once, (ok) => Effect.sync(() => ok && good++)),
      Effect.sleep("1 second")
    )))
    for (let i = 0; good < 1; i++) {
      if (i > 150) return yield* Effect.dieMessage(`nothing answered on http://${target}/metrics`)
      yield* Effect.sleep("200 millis")
    }
    return { scrapes: Effect.sync(() => good) }
  })

// ------------------------------------------------------------------------------------------
// Child mode: the daemon loop with the generic handlers, in-memory Containers.
if (process.argv[2] === "--child") {
  const [, , , hubUrl = "", host = "", password = "", workdir = "", statusListen = ""] = process.argv
  await runDaemonLoop(hubUrl, host, password, workdir, LogLevel.Warning, statusListen)
} else {
  await main()
}

async function main() {
  const N = arg("--tasks", 100)
  const ROUNDS = arg("--rounds", 5)
  const workdir = mkdtempSync(join(tmpdir(), "daemon-overhead-"))
  const median = (xs: ReadonlyArray<number>): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
  const until = async (cond: () => boolean, what: string, ms = 120_000) => {
    const deadline = Date.now() + ms
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
      await new Promise((r) => setTimeout(r, 2))
    }
  }

  /** One phase: the daemon loop (metrics on or off) and the floor, alternating; then the real daemon's peak RSS. */
  const phase = (metrics: boolean) => Effect.scoped(Effect.gen(function*() {
    const hub = yield* startFakeHub({
      hosts: [{ name: "bench", password: "pw", capacity: 10 }, { name: "floor", password: "pw", capacity: 10 }],
      scheduler: { runInterval: 0 }
    })
    const statusPort = yield* Effect.promise(freePort)
    const listen = metrics ? `127.0.0.1:${statusPort}` : ""
    const child = spawn(process.execPath, [self, "--child", hub.url, "bench", "pw", join(workdir, metrics ? "a-on" : "a-off"), listen], { stdio: ["ignore", "inherit", "inherit"] })
    // Scraping works before the clock starts: one good scrape of the loop's /metrics.
    const scraper = metrics ? yield* scrapeEverySecond(listen) : undefined

    // The loop has logged in and sent a heartbeat before any round: start-up is not measured.
    yield* Effect.promise(() => until(() => hub.state.calls.some((c) => c.method === "host.updateHost"), "the loop's first heartbeat", 60_000))

    // (a) the daemon: N sleep-0 tasks, first assignment → last close; and the CPU the daemon
    // process used meanwhile (all its threads), which the shared machine's load hardly changes.
    let daemonCpuMs = 0
    const daemonRound = () => Effect.promise(async () => {
      const cpu0 = cpuMs(child.pid)
      const ids = Array.from({ length: N }, () => hub.createTask("sleep", [0]))
      await until(() => ids.some((id) => hub.state.task(id)?.state !== TaskState.FREE), "first assignment")
      const t0 = performance.now()
      await until(() => ids.every((id) => hub.state.task(id)?.state === TaskState.CLOSED), "all closed")
      const ms = performance.now() - t0
      daemonCpuMs += cpuMs(child.pid) - cpu0
      return ms
    })

    // (b) the floor: the calls a task needs, on another host's session, up to 10 in flight.
    const floorRound = (main: Session) => Effect.gen(function*() {
      const ids = Array.from({ length: N }, () => hub.createTask("sleep", [0], { assign: "floor" }))
      const api = hostApi(main)
      const t0 = performance.now()
      const inflight: Array<Fiber.RuntimeFiber<void, unknown>["await"]> = []
      for (const id of ids) {
        const oldest = inflight.length >= 10 ? inflight.shift() : undefined
        if (oldest !== undefined) yield* oldest
        yield* api.openTask(id)
        yield* api.setTaskWeight(id, 0.25)
        const sub = yield* main.subsession
        const fiber = yield* Effect.fork(hostApi(sub).closeTask(id, encodeResponse(null)).pipe(
          Effect.zipRight(main.logoutChild(sub.sessionId))
        ))
        inflight.push(fiber.await)
      }
      for (const f of inflight) yield* f
      const ms = performance.now() - t0
      for (const id of ids) if (hub.state.task(id)?.state !== TaskState.CLOSED) throw new Error(`floor task ${id} not closed`)
      return ms
    })

    const daemonMs: Array<number> = []
    const floorMs: Array<number> = []
    yield* Effect.gen(function*() {
      const kh = yield* KojiHub
      const main = yield* kh.loginScoped(true)
      for (let r = 0; r < ROUNDS; r++) {
        daemonMs.push(yield* daemonRound())
        floorMs.push(yield* floorRound(main))
      }
    }).pipe(Effect.provide(KojiHub.layerWithTransport({ server: hub.url, user: "floor", password: "pw" })))

    const scrapes = scraper === undefined ? 0 : yield* scraper.scrapes
    child.kill("SIGTERM")
    yield* Effect.promise(() => new Promise<void>((r) => child.exitCode !== null ? r() : child.once("exit", () => r())))

    // Peak RSS of the real daemon, `node dist/main.js` with every handler family loaded, while
    // 10 tasks run at once (kojid: 82 MiB + ~60 MiB per forked task process, §13).
    const rssPort = yield* Effect.promise(freePort)
    const rssListen = `127.0.0.1:${rssPort}`
    const started = yield* Effect.promise(async () => {
      // sleep tasks start no container, but readiness wants podman to answer and a usable
      // bootstrap image: a stand-in podman socket answers the ping, "image exists", an empty
      // container list (start-up recovery) and 404 to everything else.
      const podmanSock = join(workdir, metrics ? "podman-on.sock" : "podman-off.sock")
      const podman = createServer((req, res) => {
        const url = (req.url ?? "").split("?")[0] ?? ""
        if (req.method === "GET" && url.endsWith("/_ping")) {
          res.writeHead(200, { "content-type": "text/plain" })
          res.end("OK")
        } else if (req.method === "GET" && /\/images\/[^/]+\/exists$/.test(url)) {
          res.writeHead(204)
          res.end()
        } else if (req.method === "GET" && url.endsWith("/containers/json")) {
          res.writeHead(200, { "content-type": "application/json" })
          res.end("[]")
        } else {
          res.writeHead(404, { "content-type": "application/json" })
          res.end(JSON.stringify({ cause: "no such object", message: "bench: not found", response: 404 }))
        }
      })
      await new Promise<void>((r) => podman.listen(podmanSock, r))
      const conf = join(workdir, metrics ? "kojid-on.conf" : "kojid-off.conf")
      writeFileSync(conf, [
        "[kojid]", `server = ${hub.url}`, "topurl = http://127.0.0.1:1/kojifiles", "user = bench", "password = pw",
        `workdir = ${join(workdir, metrics ? "c-on" : "c-off")}`, "sleeptime = 1", "maxjobs = 10",
        "[adjutant]", `log_file = ${join(workdir, "kojid.log")}`, `podman_socket = unix://${podmanSock}`,
        ...(metrics ? [`status_listen = ${rssListen}`] : []), ""
      ].join("\n"))
      const real = spawn(process.execPath, [join(root, "dist/main.js"), "-c", conf, "--fg", "--force-lock"], {
        stdio: ["ignore", "ignore", "inherit"],
        // The stand-in podman has no container "vm" to compare paths with: no host-path check.
        env: { ...process.env, KOJI_ADJUTANT_CONTAINER: "no" }
      })
      return { podman, real }
    })
    const { podman, real } = started
    // The real daemon is scraped from its start, through the 10 tasks, to the reading.
    const rssScraper = metrics ? yield* scrapeEverySecond(rssListen) : undefined
    const rss = yield* Effect.promise(async () => {
      const busy = Array.from({ length: 10 }, () => hub.createTask("sleep", [2]))
      // Up to 5 minutes: readiness refuses tasks while the shared machine's load average is over 4 × cores.
      await until(() => busy.every((id) => hub.state.task(id)?.state === TaskState.OPEN), "10 running", 300_000)
      await until(() => busy.every((id) => hub.state.task(id)?.state === TaskState.CLOSED), "10 closed", 60_000)
      // A few more scrapes of the idle daemon before the peak is read.
      if (metrics) await new Promise((r) => setTimeout(r, 3000))
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${real.pid}/status`, "utf8"))
      return m ? Number(m[1]) / 1024 : NaN
    })
    const rssScrapes = rssScraper === undefined ? 0 : yield* rssScraper.scrapes
    yield* Effect.promise(async () => {
      real.kill("SIGTERM")
      await new Promise<void>((r) => real.exitCode !== null ? r() : real.once("exit", () => r()))
      podman.closeAllConnections()
      await new Promise<void>((r) => podman.close(() => r()))
    })
    return { daemonMs, floorMs, rss, scrapes, rssScrapes, cpuPerTask: daemonCpuMs / (N * ROUNDS) }
  }))

  const off = await Effect.runPromise(phase(false))
  const on = await Effect.runPromise(phase(true))
  rmSync(workdir, { recursive: true, force: true })
  const fmt = (xs: ReadonlyArray<number>) => xs.map((x) => x.toFixed(0)).join(", ")
  const report = (label: string, r: { daemonMs: ReadonlyArray<number>; floorMs: ReadonlyArray<number>; rss: number; cpuPerTask: number }) => {
    const a = median(r.daemonMs)
    const b = median(r.floorMs)
    console.log(`daemon-overhead [${label}]: (a) daemon: ${N} sleep-0 tasks, maxjobs 10, sleeptime 50 ms: median ${a.toFixed(0)} ms (${(a / N).toFixed(2)} ms/task; rounds ${fmt(r.daemonMs)}); daemon CPU ${r.cpuPerTask.toFixed(2)} ms/task`)
    console.log(`daemon-overhead [${label}]: (b) floor:  ${N} tasks: median ${b.toFixed(0)} ms (${(b / N).toFixed(2)} ms/task; rounds ${fmt(r.floorMs)})`)
    console.log(`daemon-overhead [${label}]: peak RSS = ${Math.round(r.rss)} MB (target <= 150)  [node dist/main.js child process, VmHWM, 10 tasks running at once]`)
    console.log(`daemon-overhead [${label}]: daemon/floor = ${(a / b).toFixed(2)} (target <= 1.50)`)
    return a / b
  }
  report("metrics off", off)
  console.log(`daemon-overhead: metrics on = status_listen served, ${scraperKind}: ${on.scrapes} good scrapes of the loop, ${on.rssScrapes} of node dist/main.js`)
  const ratio = report("metrics on", on)
  console.log(`daemon-overhead: daemon CPU = ${off.cpuPerTask.toFixed(2)} ms/task without metrics, ${on.cpuPerTask.toFixed(2)} ms/task with`)
  console.log(`daemon-overhead: peak RSS = ${Math.round(off.rss)} MB without metrics, ${Math.round(on.rss)} MB with (target <= 150)`)
  console.log(`daemon-overhead: daemon/floor = ${ratio.toFixed(2)} (target <= 1.50)`)
}
