import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { loggerLayer } from "../../src/daemon/Logging.js"
import { freeMB, Readiness } from "../../src/daemon/Readiness.js"

describe("Readiness (real measurements)", () => {
  it.effect("minspace above the free space is a reason naming the path; 0 is ready", () =>
    Effect.gen(function*() {
      const dir = os.tmpdir()
      const free = freeMB(dir)
      assert.isAbove(free, 0)
      const short = yield* Effect.flatMap(Readiness, (r) => r.check).pipe(
        Effect.provide(Readiness.layer({ minspaceMB: free + 1_000_000, paths: [dir] }))
      )
      assert.strictEqual(short.length >= 1, true)
      assert.include(short[0]!, `Insufficient disk space at ${dir}`)
      const fine = yield* Effect.flatMap(Readiness, (r) => r.check).pipe(
        Effect.provide(Readiness.layer({ minspaceMB: 0, paths: [dir] }))
      )
      assert.isFalse(fine.some((r) => r.startsWith("Insufficient")))
    }))

  it("a path that does not exist yet is measured on its nearest existing parent", () => {
    assert.strictEqual(freeMB(path.join(os.tmpdir(), "no", "such", "dir")), freeMB(os.tmpdir()))
  })
})

describe("daemon logging", () => {
  it.effect("logs go to log_file at the configured level (-v → info, debug dropped)", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(path.join(os.tmpdir(), "adjutant-log-"))
      const file = path.join(dir, "kojid.log")
      const config = yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest({ adjutant: { log_file: file }, flags: { verbose: true, fg: false } }))
      yield* Effect.gen(function*() {
        yield* Effect.logInfo("hello from the daemon").pipe(Effect.annotateLogs({ taskId: 7 }))
        yield* Effect.logDebug("not at -v")
      }).pipe(Effect.provide(Layer.fresh(loggerLayer(config))))
      assert.isTrue(existsSync(file))
      const text = readFileSync(file, "utf8")
      rmSync(dir, { recursive: true, force: true })
      assert.include(text, "hello from the daemon")
      assert.include(text, "taskId=7")
      assert.notInclude(text, "not at -v")
    }))
})
