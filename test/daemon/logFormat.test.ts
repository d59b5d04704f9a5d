/**
 * One log format on every path (issue 14 §4): kojid's layout by default, logfmt and JSON; task
 * context from the fiber's annotations, no fiber ids; a cause in one line unless at debug level;
 * the syslog priority prefix for the journal.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, HashMap, Logger, LogLevel } from "effect"
import { asctime, formatEntry, type LineOptions, type LogEntry, stderrIsJournal } from "../../src/daemon/logFormat.js"
import { lineLogger } from "../../src/daemon/Logging.js"
import { vi } from "vitest"

const at = new Date(2026, 4, 12, 10, 1, 2, 345)
const entry = (patch: Partial<LogEntry> = {}): LogEntry => ({
  date: at,
  level: LogLevel.Warning,
  message: "Insufficient disk space",
  cause: Cause.empty,
  annotations: HashMap.empty(),
  ...patch
})
const kojid: LineOptions = { format: "kojid", area: "daemon", stacks: false, syslog: false }
const task = HashMap.fromIterable<string, unknown>([["method", "buildArch"], ["container", "kojiadj-build-t1234-ab"], ["taskId", 1234]])

describe("log formats", () => {
  it("kojid: local asctime with milliseconds, Python level name, koji.<area>, message", () => {
    assert.strictEqual(asctime(at), "2026-05-12 10:01:02,345")
    assert.strictEqual(formatEntry(entry(), kojid), "2026-05-12 10:01:02,345 [WARNING] koji.daemon: Insufficient disk space")
    assert.strictEqual(formatEntry(entry({ level: LogLevel.Fatal }), kojid).split(" ")[2], "[CRITICAL]")
    assert.strictEqual(formatEntry(entry({ level: LogLevel.Debug }), kojid).split(" ")[2], "[DEBUG]")
  })

  it("kojid: a task's lines are koji.task with the task context first, no fiber id", () => {
    const line = formatEntry(entry({ message: "building", level: LogLevel.Info, annotations: task }), kojid)
    assert.strictEqual(line, "2026-05-12 10:01:02,345 [INFO] koji.task: building (taskId=1234 method=buildArch container=kojiadj-build-t1234-ab)")
    assert.notMatch(line, /fiber|#\d/)
    const area = HashMap.fromIterable<string, unknown>([["area", "hub"]])
    assert.include(formatEntry(entry({ annotations: area }), kojid), " koji.hub: ")
  })

  it("logfmt and json carry the same fields", () => {
    const e = entry({ message: 'say "hi"\nthere', annotations: task })
    assert.strictEqual(
      formatEntry(e, { ...kojid, format: "logfmt" }),
      `time=${at.toISOString()} level=WARNING logger=koji.task msg="say \\"hi\\"\\nthere" taskId=1234 method=buildArch container=kojiadj-build-t1234-ab`
    )
    const json: unknown = JSON.parse(formatEntry(e, { ...kojid, format: "json" }))
    assert.deepStrictEqual(json, {
      time: at.toISOString(), level: "WARNING", logger: "koji.task", message: 'say "hi"\nthere',
      taskId: "1234", method: "buildArch", container: "kojiadj-build-t1234-ab"
    })
  })

  it("a cause is one line of messages; its stack only when stacks are asked for (debug)", () => {
    const cause = Cause.fail(new Error("cannot connect to the podman API socket"))
    const short = formatEntry(entry({ message: "reaper pass failed", cause, level: LogLevel.Error }), kojid)
    assert.strictEqual(short, "2026-05-12 10:01:02,345 [ERROR] koji.daemon: reaper pass failed: cannot connect to the podman API socket")
    const long = formatEntry(entry({ message: "reaper pass failed", cause, level: LogLevel.Error }), { ...kojid, stacks: true })
    assert.match(long, /\n\s+at /)
    const fatal = formatEntry(entry({ message: [], cause, level: LogLevel.Fatal }), { ...kojid, format: "json" })
    assert.deepInclude(JSON.parse(fatal), { level: "CRITICAL", message: "cannot connect to the podman API socket" })
  })

  it("syslog: every line starts with its priority, so journalctl -p err finds errors", () => {
    const sys = { ...kojid, syslog: true }
    assert.match(formatEntry(entry({ level: LogLevel.Error }), sys), /^<3>2026-05-12 /)
    assert.match(formatEntry(entry({ level: LogLevel.Warning }), sys), /^<4>/)
    assert.match(formatEntry(entry({ level: LogLevel.Info }), sys), /^<6>/)
    assert.match(formatEntry(entry({ level: LogLevel.Debug }), sys), /^<7>/)
    assert.match(formatEntry(entry({ level: LogLevel.Fatal }), sys), /^<2>/)
    const multi = formatEntry(entry({ message: "a\nb", level: LogLevel.Error }), sys).split("\n")
    assert.deepStrictEqual(multi.map((l) => l.slice(0, 3)), ["<3>", "<3>"])
  })

  it("stderr is the journal when JOURNAL_STREAM names it, or with INVOCATION_ID alone (systemd < 232)", () => {
    const st = { dev: 25, ino: 123456 }
    assert.isTrue(stderrIsJournal({ JOURNAL_STREAM: "25:123456", INVOCATION_ID: "x" }, st))
    assert.isFalse(stderrIsJournal({ JOURNAL_STREAM: "25:999", INVOCATION_ID: "x" }, st), "stderr redirected elsewhere by the unit")
    assert.isTrue(stderrIsJournal({ INVOCATION_ID: "0123abcd" }, st))
    assert.isFalse(stderrIsJournal({}, st))
  })
})

describe("lineLogger", () => {
  it.effect("writes the formatted line, fatal lines to stderr even when stderr is off", () =>
    Effect.gen(function*() {
      const file: Array<string> = []
      const err: Array<string> = []
      const write = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
        err.push(String(chunk))
        return true
      })
      const sink = { format: "kojid" as const, area: "daemon", level: LogLevel.Info, stderr: false, syslog: true, file: { write: (t: string) => (file.push(t), true), reopen: () => undefined, close: () => undefined } }
      yield* Effect.gen(function*() {
        yield* Effect.logInfo("Starting up").pipe(Effect.annotateLogs({ taskId: 7, method: "sleep" }))
        yield* Effect.logFatal(Cause.fail(new Error("login failed")))
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, lineLogger(sink))))
      write.mockRestore()
      assert.strictEqual(file.length, 2)
      assert.match(file[0]!, /\[INFO\] koji\.task: Starting up \(taskId=7 method=sleep\)\n$/)
      assert.match(file[1]!, /\[CRITICAL\] koji\.daemon: login failed\n$/)
      assert.deepStrictEqual(err.length, 1, "only the fatal line goes to stderr")
      assert.match(err[0]!, /^<2>\d{4}-.* \[CRITICAL\] koji\.daemon: login failed\n$/)
    }))
})
