// Bench: does the daemon's memory stay flat over thousands of tasks (a builder runs for months;
// kojid leaves that to its per-task processes). The real daemon loop (src/daemon/TaskManager.ts)
// runs in a child process with the generic handlers and in-memory Containers against an
// in-process fake hub, sleeptime 50 ms, maxjobs 10. Batches of `sleep 0` tasks (default 8 × 400);
// after each batch the child collects garbage twice and reports its used heap. The reference is
// the heap after the first batch (everything loaded and warm); the figure is the heap after the
// last batch against it.
// Run: `npm run bench -- soak [--batches 8] [--tasks 400]`.
// Last line: `soak: heap after/after first batch = <x.xx> (target <= 1.10)`.
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, LogLevel } from "effect"
import { startFakeHub, TaskState } from "../../test/fakehub/FakeHub.js"
import { runDaemonLoop } from "./lib/daemonLoop.js"

const self = fileURLToPath(import.meta.url)
const arg = (flag: string, dflt: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

if (process.argv[2] === "--child") {
  const [, , , hubUrl = "", host = "", password = "", workdir = ""] = process.argv
  process.on("message", () => {
    // The runner starts benches with --expose-gc.
    globalThis.gc?.()
    globalThis.gc?.()
    process.send?.(process.memoryUsage().heapUsed)
  })
  await runDaemonLoop(hubUrl, host, password, workdir, LogLevel.Error)
} else {
  const BATCHES = arg("--batches", 8)
  const TASKS = arg("--tasks", 400)
  const workdir = mkdtempSync(join(tmpdir(), "koji-adjutant-soak-"))
  const until = async (cond: () => boolean, what: string, ms = 300_000) => {
    const deadline = Date.now() + ms
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
      await new Promise((r) => setTimeout(r, 5))
    }
  }
  const heaps: Array<number> = []
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const hub = yield* startFakeHub({ hosts: [{ name: "soak", password: "pw", capacity: 10 }], scheduler: { runInterval: 0 } })
    const child = spawn(process.execPath, ["--expose-gc", self, "--child", hub.url, "soak", "pw", workdir], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
    const heap = () => new Promise<number>((r) => {
      child.once("message", (m) => r(Number(m)))
      child.send("gc")
    })
    yield* Effect.promise(async () => {
      for (let b = 1; b <= BATCHES; b++) {
        const ids = Array.from({ length: TASKS }, () => hub.createTask("sleep", [0]))
        await until(() => ids.every((id) => hub.state.task(id)?.state === TaskState.CLOSED), `batch ${b} closed`)
        const h = await heap()
        heaps.push(h)
        console.log(`soak: after ${b * TASKS} tasks: daemon heap ${(h / 1e6).toFixed(2)} MB`)
      }
      // Stop the daemon while its hub still answers (it frees its tasks and logs out).
      child.kill("SIGTERM")
      await new Promise<void>((r) => (child.exitCode !== null ? r() : child.once("exit", () => r())))
    })
  })))
  rmSync(workdir, { recursive: true, force: true })
  const first = heaps[0] ?? NaN
  const last = heaps[heaps.length - 1] ?? NaN
  const perThousand = ((last - first) / ((BATCHES - 1) * TASKS)) * 1000
  console.log(`soak: growth from batch 1 to batch ${BATCHES}: ${((last - first) / 1024).toFixed(0)} KiB (${(perThousand / 1024).toFixed(1)} KiB per 1000 tasks)`)
  console.log(`soak: heap after/after first batch = ${(last / first).toFixed(2)} (target <= 1.10)`)
  process.exit(0)
}
