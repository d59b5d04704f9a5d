/**
 * The log file survives rotation (issue 12 §6): `log_file` is followed to a new file when it is
 * moved or removed (kojid's WatchedFileHandler), written on from its new end when it is truncated,
 * and reopened on SIGHUP, which the daemon survives (logrotate's postrotate in packaging/).
 */
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, truncateSync, unlinkSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { loggerLayer } from "../../src/daemon/Logging.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { distMain, ensureBuilt, exitOf, outputOf, spawnScoped, waitFor, writeConfig } from "./child.js"
import { fakeHub } from "./harness.js"

const read = (file: string): string => (existsSync(file) ? readFileSync(file, "utf8") : "")

beforeAll(() => ensureBuilt(), 180_000)

describe("log rotation (in process)", () => {
  it.effect("a moved, a truncated and a removed log_file: each line lands in the file at the path, none in a hole", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(path.join(os.tmpdir(), "adjutant-logrotate-"))
      const file = path.join(dir, "kojid.log")
      const config = yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest({ adjutant: { log_file: file }, flags: { verbose: true, fg: false } }))
      yield* Effect.gen(function*() {
        yield* Effect.logInfo("line one")
        renameSync(file, `${file}.1`)
        yield* Effect.logInfo("line two")
        yield* Effect.logInfo("line three")
        truncateSync(file, 0)
        yield* Effect.logInfo("line four")
        unlinkSync(file)
        yield* Effect.logInfo("line five")
      }).pipe(Effect.provide(Layer.fresh(loggerLayer(config))))
      const rotated = read(`${file}.1`)
      const current = read(file)
      rmSync(dir, { recursive: true, force: true })
      assert.include(rotated, "line one")
      assert.notInclude(rotated, "line two")
      assert.include(current, "line five")
      assert.notInclude(current, "line four", "the removed file took line four with it")
      assert.notInclude(current, "\u0000")
      assert.match(current, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[INFO\] koji\.daemon: line five\n$/)
    }))

  it.effect("a truncated log_file is written on from its start, with no hole of NULs", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(path.join(os.tmpdir(), "adjutant-logrotate-"))
      const file = path.join(dir, "kojid.log")
      const config = yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest({ adjutant: { log_file: file }, flags: { verbose: true, fg: false } }))
      yield* Effect.gen(function*() {
        for (let i = 0; i < 50; i++) yield* Effect.logInfo(`before the truncation ${i}`)
        truncateSync(file, 0)
        yield* Effect.logInfo("after the truncation")
      }).pipe(Effect.provide(Layer.fresh(loggerLayer(config))))
      const text = read(file)
      rmSync(dir, { recursive: true, force: true })
      assert.notInclude(text, "\u0000")
      assert.notInclude(text, "before the truncation")
      assert.isTrue(/^\d{4}-/.test(text) && text.includes("after the truncation"), text)
    }))
})

describe("log rotation (node dist/main.js as a child process)", () => {
  it.live("logrotate without copytruncate: rename, SIGHUP, the daemon lives and logs to the new file; then a truncation", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* fakeHub()
      const cfg = yield* writeConfig(hub.url)
      const log = path.join(cfg.dir, "kojid.log")
      const child = yield* spawnScoped([distMain, "-c", cfg.conf, "--force-lock", "-v"])
      const diagnostics = () => `${outputOf(child)}\n--- kojid.log\n${read(log)}\n--- kojid.log.1\n${read(`${log}.1`)}`
      yield* waitFor(() => read(log).includes("Starting up"), "the daemon logging", 60_000, diagnostics)
      // What logrotate does: rename, create an empty file (create 0644), postrotate sends SIGHUP.
      renameSync(log, `${log}.1`)
      child.kill("SIGHUP")
      const first = hub.createTask("sleep", [0])
      yield* waitFor(() => hub.state.task(first)?.state === TaskState.CLOSED, "the first task closed", 60_000, diagnostics)
      yield* waitFor(() => read(log).includes(`taskId=${first}`), "the first task's lines in the new kojid.log", 10_000, diagnostics)
      assert.strictEqual(child.exitCode, null, `SIGHUP ended the daemon\n${diagnostics()}`)
      assert.strictEqual(child.signalCode, null, diagnostics())
      assert.notInclude(read(`${log}.1`), `taskId=${first}`)
      truncateSync(log, 0)
      const second = hub.createTask("sleep", [0])
      yield* waitFor(() => hub.state.task(second)?.state === TaskState.CLOSED, "the second task closed", 60_000, diagnostics)
      yield* waitFor(() => read(log).includes(`taskId=${second}`), "the second task's lines after the truncation", 10_000, diagnostics)
      assert.notInclude(read(log), "\u0000", "no hole where the truncated lines were")
      child.kill("SIGHUP")
      child.kill("SIGTERM")
      assert.strictEqual(yield* exitOf(child, 15_000), 0, diagnostics())
    })), 120_000)
})
