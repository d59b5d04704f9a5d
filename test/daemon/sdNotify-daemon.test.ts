/**
 * systemd integration through the daemon (issue 14 §2), with the real datagram receiver of
 * sdNotify.test.ts as NOTIFY_SOCKET: READY=1 once the hub accepted the first heartbeat, STATUS=
 * lines that follow what the daemon does, WATCHDOG=1 every cycle and — from the watchdog's own
 * fiber — while a hub call waits in kojid's retries, STOPPING=1 at shutdown, in that order. A loop
 * wedged on something local (not the hub) stops the watchdog, so systemd restarts the daemon.
 */
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Logger } from "effect"
import { Readiness } from "../../src/daemon/Readiness.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { SdNotify } from "../../src/daemon/SdNotify.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { receiver, until } from "../support/notifySocket.js"
import { daemonLayer, fakeHub, testOptions } from "./harness.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-sd-daemon-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const kinds = (data: ReadonlyArray<string>) => data.map((d) => d.split("=")[0])

describe("systemd notifications through the daemon", () => {
  it.scopedLive("READY after the first heartbeat, STATUS, WATCHDOG (also while the hub is down), STOPPING, in order", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = path.join(dir, "notify")
      const rx = yield* receiver(socket)
      const hub = yield* fakeHub()
      const sd = SdNotify.layerEnvironment({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: "2000000", WATCHDOG_PID: String(process.pid) })
      const data = () => rx.messages().map((m) => m.data)
      const daemon = yield* Effect.forkScoped(Effect.scoped(runDaemon(testOptions(dir, { sleeptime: Duration.millis(300) }))).pipe(
        Effect.provide(Layer.merge(daemonLayer(hub), sd))
      ))
      yield* until(() => data().includes("READY=1"), "READY=1", 20_000)
      assert.isAbove(hub.state.calls.filter((c) => c.method === "host.updateHost").length, 0, "READY=1 came after a heartbeat")
      yield* until(() => data().some((d) => d.startsWith("STATUS=ready; 0 of 10 tasks running")), "STATUS=ready", 10_000)

      const task = hub.createTask("sleep", [30])
      yield* until(() => data().some((d) => d === `STATUS=ready; 1 of 10 tasks running (sleep ${task})`), "STATUS with the task", 20_000)
      assert.strictEqual(hub.state.task(task)?.state, TaskState.OPEN)

      // The hub goes away for longer than WatchdogSec: the loop waits in a call's retries (5 × 1 s),
      // and the watchdog fiber keeps WATCHDOG=1 coming.
      const before = data().filter((d) => d === "WATCHDOG=1").length
      hub.setOffline(true)
      yield* Effect.sleep("4500 millis")
      const during = data().filter((d) => d === "WATCHDOG=1").length - before
      hub.setOffline(false)
      assert.isAtLeast(during, 3, `WATCHDOG=1 while the hub was down: ${during}\n${data().join("\n")}`)

      yield* Fiber.interrupt(daemon)
      yield* until(() => data().includes("STOPPING=1"), "STOPPING=1", 20_000)
      const seen = kinds(data())
      const first = (k: string) => seen.indexOf(k)
      assert.isTrue(first("READY") >= 0 && first("READY") < first("STATUS"), seen.join(" "))
      assert.isTrue(first("STATUS") < seen.indexOf("WATCHDOG", first("READY")), seen.join(" "))
      assert.strictEqual(seen.lastIndexOf("WATCHDOG") < first("STOPPING"), true, "no WATCHDOG=1 after STOPPING=1")
      assert.include(data().slice(data().indexOf("STOPPING=1")), "STATUS=stopping: signal")
      assert.strictEqual(seen.filter((k) => k === "READY").length, 1)
    }), 90_000)

  it.scopedLive("a loop wedged on something local (not a hub call) stops WATCHDOG=1 and says so", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const socket = path.join(dir, "notify")
      const rx = yield* receiver(socket)
      const hub = yield* fakeHub()
      let hang = false
      const readiness = Layer.succeed(Readiness, { check: Effect.suspend(() => (hang ? Effect.never : Effect.succeed([]))) })
      const errors: Array<string> = []
      const capture = Logger.add(Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Error") errors.push(String(Array.isArray(message) ? message.join(" ") : message))
      }))
      const sd = SdNotify.layerEnvironment({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: "1000000" })
      const data = () => rx.messages().map((m) => m.data)
      yield* Effect.forkScoped(Effect.scoped(runDaemon(testOptions(dir, { sleeptime: Duration.millis(200) }))).pipe(
        Effect.provide(Layer.mergeAll(daemonLayer(hub, undefined, readiness), sd, capture))
      ))
      yield* until(() => data().includes("READY=1"), "READY=1", 20_000)
      yield* Effect.sleep("1 second")
      hang = true
      yield* until(() => errors.some((e) => e.includes("wedged")), "the wedged error", 15_000)
      const stoppedAt = data().length
      yield* Effect.sleep("2 seconds")
      assert.deepStrictEqual(data().slice(stoppedAt).filter((d) => d === "WATCHDOG=1"), [], "no WATCHDOG=1 once wedged")
      assert.match(errors.find((e) => e.includes("wedged")) ?? "", /in one cycle for \d+ s with no hub call in flight/)
    }), 60_000)
})
