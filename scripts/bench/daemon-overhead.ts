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
// machine is shared and single runs vary by ±50%.
// Run: `npm run bench -- daemon-overhead [--tasks N]`.
// Last line: `daemon-overhead: daemon/floor = <x.xx> (target <= 1.50)`.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { createServer } from "node:http"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { Effect, type Fiber, LogLevel } from "effect"
import { KojiHub, type Session } from "../../src/hub/KojiHub.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { encodeResponse } from "../../src/hub/xmlrpc.js"
import { startFakeHub, TaskState } from "../../test/fakehub/FakeHub.js"
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
const arg = (flag: string, dflt: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

// ------------------------------------------------------------------------------------------
// Child mode: the daemon loop with the generic handlers, in-memory Containers.
if (process.argv[2] === "--child") {
  const [, , , hubUrl = "", host = "", password = "", workdir = ""] = process.argv
  await runDaemonLoop(hubUrl, host, password, workdir, LogLevel.Warning)
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

  const program = Effect.scoped(Effect.gen(function*() {
    const hub = yield* startFakeHub({
      hosts: [{ name: "bench", password: "pw", capacity: 10 }, { name: "floor", password: "pw", capacity: 10 }],
      scheduler: { runInterval: 0 }
    })
    const child = spawn(process.execPath, [self, "--child", hub.url, "bench", "pw", join(workdir, "a")], { stdio: ["ignore", "inherit", "inherit"] })

    // (a) the daemon: N sleep-0 tasks, first assignment → last close.
    const daemonRound = () => Effect.promise(async () => {
      const ids = Array.from({ length: N }, () => hub.createTask("sleep", [0]))
      await until(() => ids.some((id) => hub.state.task(id)?.state !== TaskState.FREE), "first assignment")
      const t0 = performance.now()
      await until(() => ids.every((id) => hub.state.task(id)?.state === TaskState.CLOSED), "all closed")
      return performance.now() - t0
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

    child.kill("SIGTERM")
    yield* Effect.promise(() => new Promise<void>((r) => child.exitCode !== null ? r() : child.once("exit", () => r())))

    // Peak RSS of the real daemon, `node dist/main.js` with every handler family loaded, while
    // 10 tasks run at once (kojid: 82 MiB + ~60 MiB per forked task process, §13).
    const rss = yield* Effect.promise(async () => {
      // sleep tasks start no container, but readiness wants a usable bootstrap image: a
      // stand-in podman socket answers "image exists" and 404 to everything else.
      const podmanSock = join(workdir, "podman.sock")
      const podman = createServer((req, res) => {
        const exists = req.method === "GET" && /\/images\/[^/]+\/exists$/.test((req.url ?? "").split("?")[0])
        res.writeHead(exists ? 204 : 404, exists ? {} : { "content-type": "application/json" })
        res.end(exists ? undefined : JSON.stringify({ cause: "no such object", message: "bench: not found", response: 404 }))
      })
      await new Promise<void>((r) => podman.listen(podmanSock, r))
      const conf = join(workdir, "kojid.conf")
      writeFileSync(conf, [
        "[kojid]", `server = ${hub.url}`, "topurl = http://127.0.0.1:1/kojifiles", "user = bench", "password = pw",
        `workdir = ${join(workdir, "c")}`, "sleeptime = 1", "maxjobs = 10",
        "[adjutant]", `log_file = ${join(workdir, "kojid.log")}`, `podman_socket = unix://${podmanSock}`, ""
      ].join("\n"))
      const real = spawn(process.execPath, [join(root, "dist/main.js"), "-c", conf, "--fg", "--force-lock"], { stdio: ["ignore", "ignore", "inherit"] })
      const busy = Array.from({ length: 10 }, () => hub.createTask("sleep", [2]))
      await until(() => busy.every((id) => hub.state.task(id)?.state === TaskState.OPEN), "10 running", 60_000)
      await until(() => busy.every((id) => hub.state.task(id)?.state === TaskState.CLOSED), "10 closed", 60_000)
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${real.pid}/status`, "utf8"))
      real.kill("SIGTERM")
      await new Promise<void>((r) => real.once("exit", () => r()))
      podman.closeAllConnections()
      await new Promise<void>((r) => podman.close(() => r()))
      return m ? Number(m[1]) / 1024 : NaN
    })
    return { daemonMs, floorMs, rss }
  }))

  const { daemonMs, floorMs, rss } = await Effect.runPromise(program)
  rmSync(workdir, { recursive: true, force: true })
  const a = median(daemonMs)
  const b = median(floorMs)
  const fmt = (xs: ReadonlyArray<number>) => xs.map((x) => x.toFixed(0)).join(", ")
  console.log(`daemon-overhead: (a) daemon: ${N} sleep-0 tasks, maxjobs 10, sleeptime 50 ms: median ${a.toFixed(0)} ms (${(a / N).toFixed(2)} ms/task; rounds ${fmt(daemonMs)})`)
  console.log(`daemon-overhead: (b) floor:  ${N} tasks: median ${b.toFixed(0)} ms (${(b / N).toFixed(2)} ms/task; rounds ${fmt(floorMs)})`)
  console.log(`daemon-overhead: peak RSS = ${Math.round(rss)} MB (target <= 150)  [node dist/main.js child process, VmHWM, 10 tasks running at once]`)
  console.log(`daemon-overhead: daemon/floor = ${(a / b).toFixed(2)} (target <= 1.50)`)
}
