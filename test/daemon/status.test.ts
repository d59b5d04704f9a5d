/**
 * `[adjutant] status_listen`: /status reports the daemon's state as JSON and /healthz follows
 * the heartbeat — 200 while the hub accepts it, 503 once it is older than three cycles (the hub
 * taken offline), 200 again after it comes back. A taken port fails start-up with a clear error.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema, TestClock } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { serveStatus } from "../../src/daemon/StatusServer.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { daemonLayer, fakeHub, HOST, realPause, startDaemon, tempWorkdir, testOptions, until } from "./harness.js"

/** A port nothing listens on (bound, then released). */
const freePort = Effect.promise(() => new Promise<number>((resolve) => {
  const s = http.createServer()
  s.listen(0, "127.0.0.1", () => {
    const port = (s.address() as AddressInfo).port
    s.close(() => resolve(port))
  })
}))

const get = (port: number, p: string) =>
  Effect.promise(() => new Promise<{ status: number; body: string }>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: p }, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString()))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    }).on("error", reject)
  }))

const Status = Schema.Struct({
  host: Schema.String,
  hostId: Schema.Number,
  pid: Schema.Number,
  ready: Schema.NullOr(Schema.Boolean),
  maxjobs: Schema.Number,
  restartPending: Schema.Boolean,
  lastHeartbeat: Schema.NullOr(Schema.Number),
  tasks: Schema.Array(Schema.Struct({ id: Schema.Number, method: Schema.String }))
})

describe("status endpoint", () => {
  it.scoped("/status lists the running task; /healthz goes 503 while the hub is offline and back to 200", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const port = yield* freePort
      const task = hub.createTask("sleep", [600])
      yield* startDaemon(testOptions(workdir, { statusListen: `127.0.0.1:${port}` })).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(task)?.state === TaskState.OPEN, "sleep task OPEN")
      yield* until(() => hub.state.calls.filter((c) => c.method === "host.updateHost").length >= 2, "two heartbeats")
      const s = yield* get(port, "/status")
      assert.strictEqual(s.status, 200)
      const status = Schema.decodeUnknownSync(Status)(JSON.parse(s.body))
      assert.deepStrictEqual(status.tasks, [{ id: task, method: "sleep" }])
      assert.strictEqual(status.host, HOST)
      assert.strictEqual(status.hostId, hub.state.host(HOST)!.id)
      assert.strictEqual(status.pid, process.pid)
      assert.strictEqual(status.ready, true)
      assert.strictEqual(status.maxjobs, 10)
      assert.isNotNull(status.lastHeartbeat)
      assert.deepStrictEqual(yield* get(port, "/healthz"), { status: 200, body: "ok\n" })
      assert.strictEqual((yield* get(port, "/nope")).status, 404)

      hub.setOffline(true)
      let stale = { status: 0, body: "" }
      for (let i = 0; i < 120 && stale.status !== 503; i++) {
        yield* TestClock.adjust("1 second")
        yield* realPause(20)
        stale = yield* get(port, "/healthz")
      }
      assert.deepStrictEqual(stale, { status: 503, body: "heartbeat stale\n" })
      hub.setOffline(false)
      let back = stale
      for (let i = 0; i < 120 && back.status !== 200; i++) {
        yield* TestClock.adjust("1 second")
        yield* realPause(20)
        back = yield* get(port, "/healthz")
      }
      assert.strictEqual(back.status, 200)
    }))

  it.scoped("a taken port fails start-up with an error naming status_listen's address", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const taken = yield* serveStatus("127.0.0.1:0", Effect.die("unused"), Effect.succeed(true))
      const exit = yield* Effect.exit(Effect.scoped(runDaemon(testOptions(workdir, { statusListen: `127.0.0.1:${taken.port}` }))).pipe(
        Effect.provide(daemonLayer(hub))
      ))
      assert.isTrue(Exit.isFailure(exit))
      const text = Exit.isFailure(exit) ? String(exit.cause) : ""
      assert.include(text, `cannot listen on 127.0.0.1:${taken.port}`)
      assert.include(text, "EADDRINUSE")
      // The session it opened was logged out on the way out.
      assert.isTrue(hub.state.sessions.length > 0 && hub.state.sessions.every((x) => x.closed))
    }))
})
