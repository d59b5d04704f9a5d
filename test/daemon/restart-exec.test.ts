/**
 * A restart loads the installed code anew (issue 14): SIGUSR1 makes the daemon — a real
 * `node dist/main.js` child — exec a fresh node with the same PID, argv and environment once the
 * old run has logged out. The daemon runs from a copy of dist/ whose package.json the test then
 * "upgrades": the version the log, /status and the heartbeat's host data report changes only
 * because the new process image read it again (a re-run inside the old process would keep the
 * module it had loaded).
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { readPackageVersion } from "../../src/version.js"
import { ensureBuilt, exitOf, outputOf, repoRoot, spawnScoped, waitFor, writeConfig } from "./child.js"
import { fakeHub } from "./harness.js"

beforeAll(() => ensureBuilt(), 180_000)

/** A copy of the built daemon (dist/ and package.json, node_modules linked), removed with the scope. */
const appCopy = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "adjutant-app-"))
    cpSync(path.join(repoRoot, "dist"), path.join(dir, "dist"), { recursive: true })
    cpSync(path.join(repoRoot, "package.json"), path.join(dir, "package.json"))
    symlinkSync(path.join(repoRoot, "node_modules"), path.join(dir, "node_modules"))
    return dir
  }),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A port nothing listens on (bound, then released). */
const freePort = Effect.promise(() => new Promise<number>((resolve) => {
  const s = http.createServer()
  s.listen(0, "127.0.0.1", () => {
    const address = s.address()
    s.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
  })
}))

const Status = Schema.Struct({ pid: Schema.Number, version: Schema.String, node: Schema.String })

/** /status decoded, or undefined while nothing answers there. */
const status = (port: number) =>
  Effect.promise(() => new Promise<typeof Status.Type | undefined>((resolve) => {
    http.get({ host: "127.0.0.1", port, path: "/status" }, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString()))
      res.on("end", () => resolve(res.statusCode === 200 ? Schema.decodeUnknownSync(Status)(JSON.parse(body)) : undefined))
    }).on("error", () => resolve(undefined))
  }))

/** Polls /status until `ok` holds for it. */
const statusWhen = (port: number, ok: (s: typeof Status.Type) => boolean, what: string, diagnostics: () => string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 60_000
    for (;;) {
      const s = yield* status(port)
      if (s !== undefined && ok(s)) return s
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for /status: ${what}\n${diagnostics()}`)
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
    }
  })

/** Fields of /proc/PID/stat by their proc(5) number (1-based; the command name may hold spaces). */
const procStat = (pid: number) => {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8")
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ")
  return (field: number): string => rest[field - 3]!
}

const aslr = existsSync("/proc/sys/kernel/randomize_va_space") && readFileSync("/proc/sys/kernel/randomize_va_space", "utf8").trim() !== "0"

describe("restart execs a fresh process (node dist/main.js as a child process)", () => {
  it.live("SIGUSR1: same PID, argv and environment, a new process image, and the upgraded version in the log, /status and the host data", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* fakeHub()
      const app = yield* appCopy
      const port = yield* freePort
      const cfg = yield* writeConfig(hub.url, { adjutant: `status_listen = 127.0.0.1:${port}` })
      const oldVersion = readPackageVersion(new URL(`file://${app}/package.json`))!
      const newVersion = `${oldVersion}-upgraded.${process.pid}`
      const marker = `restart-marker-${process.pid}-${Date.now()}`
      const child = yield* spawnScoped([path.join(app, "dist/main.js"), "-c", cfg.conf, "--fg", "--force-lock", "-v"], { ADJUTANT_TEST_MARKER: marker })
      const pid = child.pid!
      const diag = () => outputOf(child) + cfg.log()

      const before = yield* statusWhen(port, () => true, "first run answers", diag)
      assert.deepStrictEqual([before.pid, before.version, before.node], [pid, oldVersion, process.version])
      const logins = () => hub.state.calls.filter((c) => c.method === "exclusiveSession")
      assert.strictEqual(logins().length, 1)
      const firstSession = logins()[0]!.sessionId!
      yield* waitFor(() => hub.state.calls.some((c) => c.method === "host.updateHost" && c.sessionId === firstSession), "first heartbeat", 30_000, diag)
      const stat = procStat(pid)
      const [startTime, startStack] = [stat(22), stat(28)]
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "latin1")

      // The upgrade: a new package.json on disk while the old code runs.
      const pkg = path.join(app, "package.json")
      writeFileSync(pkg, readFileSync(pkg, "utf8").replace(`"version": "${oldVersion}"`, `"version": "${newVersion}"`))
      assert.strictEqual(readPackageVersion(new URL(`file://${pkg}`)), newVersion)
      assert.strictEqual((yield* status(port))!.version, oldVersion, "the running code does not re-read it")

      child.kill("SIGUSR1")
      const after = yield* statusWhen(port, (s) => s.version === newVersion, `version ${newVersion}`, diag)
      assert.strictEqual(after.pid, pid)
      assert.isNull(child.exitCode, "the process never exited")
      assert.isNull(child.signalCode)

      // The same process (its start time), a new image in it: exec re-randomizes the stack.
      const again = procStat(pid)
      assert.strictEqual(again(22), startTime)
      if (aslr) assert.notStrictEqual(again(28), startStack, "a fresh process image has a new stack")
      assert.strictEqual(readFileSync(`/proc/${pid}/cmdline`, "latin1"), cmdline, "argv kept")
      assert.include(readFileSync(`/proc/${pid}/environ`, "latin1").split("\0"), `ADJUTANT_TEST_MARKER=${marker}`, "environment kept")

      // The old run ended first (logged out), then the new image logged in again.
      assert.strictEqual(logins().length, 2)
      const secondSession = logins()[1]!.sessionId!
      assert.isTrue(hub.state.session(firstSession)!.closed)
      const logout = hub.state.calls.find((c) => c.method === "logout" && c.sessionId === firstSession)
      assert.isDefined(logout)
      assert.isBelow(logout!.seq, logins()[1]!.seq)

      // The log names both versions in order, and the exec between them.
      const log = cfg.log()
      const first = log.indexOf(`koji-adjutant ${oldVersion} (Node ${process.version}, pid ${pid}) starting`)
      const exec = log.indexOf(`Restarting: exec `)
      const second = log.indexOf(`koji-adjutant ${newVersion} (Node ${process.version}, pid ${pid}) starting`)
      assert.isTrue(first >= 0 && exec > first && second > exec, log)
      assert.notInclude(log, "Restarting in this process")

      // kojid's host data (methods, maxjobs) with the version, to the hub each heartbeat.
      yield* waitFor(() => hub.state.calls.some((c) => c.method === "host.updateHost" && c.sessionId === secondSession), "heartbeat after the restart", 30_000, diag)
      const data = (session: number) =>
        JSON.stringify(hub.state.calls.filter((c) => c.method === "host.updateHost" && c.sessionId === session).map((c) => c.params))
      assert.include(data(firstSession), `"version":"${oldVersion}"`)
      assert.include(data(secondSession), `"version":"${newVersion}"`)
      assert.notInclude(data(secondSession), `"version":"${oldVersion}"`)

      child.kill("SIGTERM")
      assert.strictEqual(yield* exitOf(child, 15_000), 0, diag())
    })))
})
