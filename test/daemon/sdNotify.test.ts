/**
 * SdNotify against a real AF_UNIX datagram socket: a python3 child binds it (a path or an
 * abstract name) with SO_PASSCRED, as systemd binds its notify socket, and reports every datagram
 * with the sender's PID from SCM_CREDENTIALS and its own CLOCK_MONOTONIC at receipt. The messages
 * arrive exactly and in order, attributed to this process (what NotifyAccess=main needs); without
 * NOTIFY_SOCKET nothing is run; a failed send is logged, not fatal; WATCHDOG_* is parsed as systemd does.
 */
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Logger, LogLevel, Option, Ref } from "effect"
import { readEnvironment, SdNotify } from "../../src/daemon/SdNotify.js"
import { receiver, until } from "../support/notifySocket.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-sdnotify-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** The environment variables named, set for the scope and restored after. */
const withProcessEnv = (vars: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
      Object.assign(process.env, vars)
      return saved
    }),
    (saved) =>
      Effect.sync(() => {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k]
          else process.env[k] = v
        }
      })
  )

/** Log lines (level and message) written while `effect` runs. */
const captureLogs = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const lines: Array<{ level: string; message: string }> = []
    const logger = Logger.make(({ logLevel, message }) => {
      lines.push({ level: logLevel.label, message: Array.isArray(message) ? message.map(String).join(" ") : String(message) })
    })
    const result = yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Debug))
    return [result, lines] as const
  })

/** An executable standing in for systemd-notify that appends its NOTIFY_SOCKET and arguments to `log`. */
const spyCommand = (dir: string) => {
  const log = path.join(dir, "spy.log")
  const command = path.join(dir, "spy-notify")
  writeFileSync(command, `#!/bin/sh\nprintf '%s\\n' "socket=$NOTIFY_SOCKET" "$@" >> '${log}'\n`)
  chmodSync(command, 0o755)
  return { command, log }
}

const millis = (d: Option.Option<Duration.Duration>) => Option.map(d, Duration.toMillis)

const hasSystemdNotify = (() => {
  try {
    execFileSync("systemd-notify", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

describe("SdNotify over a real datagram socket", () => {
  it("systemd-notify is installed (Debian/Fedora package systemd), which SdNotify runs to send", () => {
    assert.isTrue(hasSystemdNotify, "systemd-notify not found on PATH: install the systemd package")
  })

  it.scopedLive("READY, STATUS, WATCHDOG, RELOADING, EXTEND_TIMEOUT, STOPPING arrive exactly, in order, from this process", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = path.join(dir, "notify")
      const rx = yield* receiver(socket)
      assert.strictEqual(rx.bound, socket)
      yield* withProcessEnv({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: "4000000", WATCHDOG_PID: String(process.pid) })
      const sd = yield* Effect.provide(SdNotify, SdNotify.layer)
      yield* withProcessEnv({ NOTIFY_SOCKET: path.join(dir, "elsewhere") })
      assert.isTrue(sd.enabled)
      assert.deepStrictEqual(millis(sd.watchdogTimeout), Option.some(4000))
      assert.deepStrictEqual(millis(sd.watchdogInterval), Option.some(2000))

      const before = process.hrtime.bigint() / 1000n
      yield* sd.ready
      yield* sd.status("2 tasks running\nnext line")
      yield* sd.watchdog
      yield* sd.reloading
      yield* sd.extendTimeout("90 seconds")
      yield* sd.notify({ READY: "1", STATUS: "ready: 0 of 4 tasks" })
      yield* sd.stopping
      yield* until(() => rx.messages().length >= 7, "seven datagrams")

      const messages = rx.messages()
      const reloading = messages[3]!.data
      const mono = /^RELOADING=1\nMONOTONIC_USEC=(\d+)$/.exec(reloading)
      assert.isNotNull(mono, reloading)
      assert.deepStrictEqual(messages.map((m) => m.data), [
        "READY=1",
        "STATUS=2 tasks running next line",
        "WATCHDOG=1",
        reloading,
        "EXTEND_TIMEOUT_USEC=90000000",
        "READY=1\nSTATUS=ready: 0 of 4 tasks",
        "STOPPING=1"
      ])
      const stamped = BigInt(mono![1]!)
      assert.isTrue(stamped >= before && stamped <= BigInt(messages[3]!.mono), `MONOTONIC_USEC ${stamped} not on CLOCK_MONOTONIC between ${before} and ${messages[3]!.mono}`)
      // systemd-notify may claim our PID in SCM_CREDENTIALS only with privilege (root); then the
      // manager sees the main process itself and NotifyAccess=main accepts the message.
      if (process.getuid?.() === 0) assert.deepStrictEqual(messages.map((m) => m.pid), messages.map(() => process.pid))
      assert.strictEqual(rx.barriers(), 7, "systemd-notify waited for the socket's reader after each message")
    }))

  it.scopedLive("an abstract NOTIFY_SOCKET (@name) reaches the abstract socket of that name", () =>
    Effect.gen(function*() {
      const name = `@koji-adjutant-test-${process.pid}-${Date.now()}`
      const rx = yield* receiver(name)
      assert.strictEqual(rx.bound, `\0${name.slice(1)}`)
      const sd = yield* Effect.provide(SdNotify, SdNotify.layerEnvironment({ NOTIFY_SOCKET: name }))
      assert.isTrue(Option.isNone(sd.watchdogInterval))
      yield* sd.ready
      yield* sd.watchdog
      yield* sd.status("idle")
      yield* until(() => rx.messages().length >= 2, "two datagrams")
      assert.deepStrictEqual(rx.messages().map((m) => m.data), ["READY=1", "STATUS=idle"])
    }))

  it.scopedLive("WATCHDOG_PID of another process: no watchdog, and watchdog sends nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = path.join(dir, "notify")
      const rx = yield* receiver(socket)
      const sd = yield* Effect.provide(
        SdNotify,
        SdNotify.layerEnvironment({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: "4000000", WATCHDOG_PID: String(process.pid + 1) })
      )
      assert.isTrue(Option.isNone(sd.watchdogTimeout))
      assert.isTrue(Option.isNone(sd.watchdogInterval))
      yield* sd.watchdog
      yield* sd.stopping
      yield* until(() => rx.messages().length >= 1, "one datagram")
      assert.deepStrictEqual(rx.messages().map((m) => m.data), ["STOPPING=1"])
    }))

  it.scopedLive("a socket nobody listens on: a warning, once, the caller goes on; delivered again → info", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = path.join(dir, "notify")
      const sd = yield* Effect.provide(SdNotify, SdNotify.layerEnvironment({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: "10000000" }))
      const [, failing] = yield* captureLogs(Effect.all([sd.ready, sd.watchdog, sd.watchdog]))
      const warnings = failing.filter((l) => l.level === "WARN")
      assert.strictEqual(warnings.length, 1, JSON.stringify(failing))
      assert.include(warnings[0]!.message, "READY=1 not delivered")
      assert.include(warnings[0]!.message, "No such file or directory")
      assert.strictEqual(failing.filter((l) => l.level === "DEBUG" && l.message.includes("WATCHDOG=1 not delivered")).length, 2)

      const rx = yield* receiver(socket)
      const [, recovered] = yield* captureLogs(sd.ready)
      assert.deepStrictEqual(recovered.map((l) => l.level), ["INFO"])
      assert.include(recovered[0]!.message, "delivered again")
      yield* until(() => rx.messages().length >= 1, "READY=1 after recovery")
      assert.deepStrictEqual(rx.messages().map((m) => m.data), ["READY=1"])
    }))

  it.scopedLive("no systemd-notify on the machine: logged with what to install, not fatal", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const sd = yield* Effect.provide(
        SdNotify,
        SdNotify.layerEnvironment({ NOTIFY_SOCKET: path.join(dir, "notify") }, { command: path.join(dir, "no-such-systemd-notify") })
      )
      const [, logs] = yield* captureLogs(sd.ready)
      assert.strictEqual(logs.length, 1)
      assert.strictEqual(logs[0]!.level, "WARN")
      assert.include(logs[0]!.message, "not found: install systemd")
    }))

  it.scopedLive("a notify command that hangs is killed after the timeout and logged", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const command = path.join(dir, "hanging-notify")
      writeFileSync(command, "#!/bin/sh\nexec sleep 30\n")
      chmodSync(command, 0o755)
      const sd = yield* Effect.provide(
        SdNotify,
        SdNotify.layerEnvironment({ NOTIFY_SOCKET: path.join(dir, "notify") }, { command, timeout: "300 millis" })
      )
      const started = Date.now()
      const [, logs] = yield* captureLogs(sd.stopping)
      assert.isBelow(Date.now() - started, 5000)
      assert.strictEqual(logs.length, 1)
      assert.strictEqual(logs[0]!.level, "WARN")
      assert.include(logs[0]!.message, "STOPPING=1 not delivered")
      assert.include(logs[0]!.message, "did not finish within 300 ms")
    }))
})

describe("SdNotify without NOTIFY_SOCKET", () => {
  it.scopedLive("every method is a no-op: nothing is run, nothing logged, no watchdog even with WATCHDOG_USEC", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const spy = spyCommand(dir)
      const sd = yield* Effect.provide(SdNotify, SdNotify.layerEnvironment({ WATCHDOG_USEC: "4000000" }, { command: spy.command }))
      assert.isFalse(sd.enabled)
      assert.isTrue(Option.isNone(sd.watchdogInterval))
      const [, logs] = yield* captureLogs(
        Effect.all([sd.ready, sd.status("x"), sd.watchdog, sd.reloading, sd.extendTimeout("1 minute"), sd.notify({ READY: "1" }), sd.stopping])
      )
      assert.deepStrictEqual(logs, [])
      assert.isFalse(existsSync(spy.log), "the notify command was run without NOTIFY_SOCKET")

      const on = yield* Effect.provide(SdNotify, SdNotify.layerEnvironment({ NOTIFY_SOCKET: "@spy" }, { command: spy.command }))
      yield* on.ready
      assert.strictEqual(readFileSync(spy.log, "utf8"), "socket=@spy\nREADY=1\n", "the same spy sees a message when NOTIFY_SOCKET is set")
    }))

  it.live("SdNotify.layer reads NOTIFY_SOCKET when it is built: unset → disabled", () =>
    Effect.gen(function*() {
      const saved = process.env["NOTIFY_SOCKET"]
      delete process.env["NOTIFY_SOCKET"]
      try {
        const sd = yield* Effect.provide(SdNotify, SdNotify.layer)
        assert.isFalse(sd.enabled)
      } finally {
        if (saved !== undefined) process.env["NOTIFY_SOCKET"] = saved
      }
    }))
})

describe("readEnvironment", () => {
  const pid = 4242
  const watchdog = (env: Record<string, string>) => millis(readEnvironment({ NOTIFY_SOCKET: "/run/systemd/notify", ...env }, pid).watchdogTimeout)

  it("WATCHDOG_USEC for this process, or for whichever process when WATCHDOG_PID is unset", () => {
    assert.deepStrictEqual(watchdog({ WATCHDOG_USEC: "30000000" }), Option.some(30_000))
    assert.deepStrictEqual(watchdog({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "4242" }), Option.some(30_000))
    assert.deepStrictEqual(watchdog({ WATCHDOG_USEC: "1500" }), Option.some(1.5))
  })

  it("no watchdog: WATCHDOG_PID another process or not a PID, WATCHDOG_USEC missing, zero or not a number", () => {
    assert.isTrue(Option.isNone(watchdog({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "4243" })))
    assert.isTrue(Option.isNone(watchdog({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "abc" })))
    assert.isTrue(Option.isNone(watchdog({})))
    assert.isTrue(Option.isNone(watchdog({ WATCHDOG_USEC: "0" })))
    assert.isTrue(Option.isNone(watchdog({ WATCHDOG_USEC: "-5" })))
    assert.isTrue(Option.isNone(watchdog({ WATCHDOG_USEC: "30s" })))
  })

  it("NOTIFY_SOCKET empty or unset: no socket and no watchdog", () => {
    for (const env of [{ NOTIFY_SOCKET: "", WATCHDOG_USEC: "30000000" }, { WATCHDOG_USEC: "30000000" }]) {
      const e = readEnvironment(env, pid)
      assert.isTrue(Option.isNone(e.socket))
      assert.isTrue(Option.isNone(e.watchdogTimeout))
    }
    assert.deepStrictEqual(readEnvironment({ NOTIFY_SOCKET: "@x" }, pid).socket, Option.some("@x"))
  })
})

describe("SdNotify.layerTest", () => {
  it.effect("records the datagrams the real one would send, watchdog only when given a timeout", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<string>>([])
      yield* Effect.gen(function*() {
        const sd = yield* SdNotify
        assert.deepStrictEqual(millis(sd.watchdogInterval), Option.some(5000))
        yield* sd.ready
        yield* sd.status("a\r\nb")
        yield* sd.watchdog
        yield* sd.stopping
      }).pipe(Effect.provide(SdNotify.layerTest(sent, { watchdogTimeout: "10 seconds" })))
      assert.deepStrictEqual(yield* Ref.get(sent), ["READY=1", "STATUS=a b", "WATCHDOG=1", "STOPPING=1"])

      const unwatched = yield* Ref.make<ReadonlyArray<string>>([])
      yield* Effect.flatMap(SdNotify, (sd) => sd.watchdog).pipe(Effect.provide(SdNotify.layerTest(unwatched)))
      assert.deepStrictEqual(yield* Ref.get(unwatched), [])
    }))

  it.effect("a field name that is not one is a bug, not a datagram", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<string>>([])
      const exit = yield* Effect.flatMap(SdNotify, (sd) => sd.notify({ "READY=1\nX": "1" })).pipe(
        Effect.provide(SdNotify.layerTest(sent)),
        Effect.exit
      )
      assert.isTrue(exit._tag === "Failure")
      assert.deepStrictEqual(yield* Ref.get(sent), [])
    }))
})
