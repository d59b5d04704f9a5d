/**
 * `koji-adjutant status` against a running daemon's status_listen (issue 14 §6): what it runs, the
 * version, ready or why not (exit 0 / 1), and exit 3 with one line when no daemon answers.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Ref, Schema } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { statusCommand } from "../../src/admin/status.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { DaemonStatus } from "../../src/daemon/StatusServer.js"
import { version } from "../../src/version.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { daemonLayer, fakeHub, HOST, testOptions } from "../daemon/harness.js"
import { until } from "../support/notifySocket.js"
import { freePort } from "../support/prometheus.js"
import { runAdmin } from "./support.js"

describe("koji-adjutant status", () => {
  it.scopedLive("prints the running daemon's state; exit 1 with the reason when it is not ready; 3 with no daemon", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-admin-status-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const hub = yield* fakeHub()
      const port = yield* Effect.promise(freePort)
      const conf = path.join(dir, "kojid.conf")
      writeFileSync(conf, `[kojid]\nserver = ${hub.url}\ntopurl = http://127.0.0.1:9/kojifiles\n[adjutant]\nstatus_listen = 0.0.0.0:${port}\n`)
      const reasons = yield* Ref.make<ReadonlyArray<string>>([])
      yield* Effect.forkScoped(Effect.scoped(runDaemon(testOptions(dir, { sleeptime: Duration.millis(200), statusListen: `127.0.0.1:${port}` }))).pipe(
        Effect.provide(daemonLayer(hub, undefined, Layer.effect(Readiness, Effect.succeed({ check: Ref.get(reasons) }))))
      ))
      const task = hub.createTask("sleep", [60])
      yield* until(() => hub.state.task(task)?.state === TaskState.OPEN, "the task running", 20_000)
      yield* Effect.sleep("500 millis")

      const ok = yield* runAdmin(statusCommand, ["-c", conf])
      assert.strictEqual(ok.status, 0, ok.stderr)
      assert.include(ok.stdout, `koji-adjutant ${version}: host ${HOST}`)
      assert.include(ok.stdout, "ready: takes tasks")
      assert.include(ok.stdout, "tasks: 1 of 10 running")
      assert.include(ok.stdout, `  ${task}  sleep`)
      assert.match(ok.stdout, /last heartbeat: \d+s ago/)

      const json = yield* runAdmin(statusCommand, ["-c", conf, "--json"])
      const parsed = Schema.decodeUnknownSync(Schema.parseJson(DaemonStatus))(json.stdout)
      assert.deepStrictEqual(parsed.tasks, [{ id: task, method: "sleep" }])

      yield* Ref.set(reasons, ["Load average 99.00 > 8.00"])
      let notReady = ok
      for (let i = 0; i < 50 && notReady.status !== 1; i++) {
        yield* Effect.sleep("100 millis")
        notReady = yield* runAdmin(statusCommand, ["-c", conf])
      }
      assert.strictEqual(notReady.status, 1)
      assert.include(notReady.stdout, "not ready: Load average 99.00 > 8.00")

      writeFileSync(conf, `[kojid]\nserver = ${hub.url}\ntopurl = http://127.0.0.1:9/kojifiles\n[adjutant]\nstatus_listen = 127.0.0.1:${yield* Effect.promise(freePort)}\n`)
      const none = yield* runAdmin(statusCommand, ["-c", conf])
      assert.strictEqual(none.status, 3)
      assert.match(none.stderr, /^\d{4}-.* \[ERROR\] koji\.admin: no daemon answers on http:\/\/127\.0\.0\.1:\d+\/status: .*ECONNREFUSED/)
      writeFileSync(conf, `[kojid]\nserver = ${hub.url}\ntopurl = http://127.0.0.1:9/kojifiles\n`)
      const unset = yield* runAdmin(statusCommand, ["-c", conf])
      assert.strictEqual(unset.status, 3)
      assert.include(unset.stderr, "status_listen is not set in [adjutant]")
    }), 60_000)
})
