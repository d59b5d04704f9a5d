/**
 * Issue 12 §5, signals at awkward moments, hub side (node dist/main.js as a child process, the
 * fake hub, a stand-in podman): SIGTERM while `host.closeTask` is on its way, SIGUSR1 while a task
 * is being opened. The fake hub holds the call (an inject delay) so the signal surely lands in it.
 * Afterwards hub and host agree: the task is closed exactly once, or free and then run once by
 * the next process — never closed and freed, never run twice to completion.
 * (SIGTERM during a buildroot fill and during an upload need podman: signals.podman.test.ts.)
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { InjectAction, InjectRequest } from "../fakehub/FakeHub.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { distMain, ensureBuilt, exitOf, outputOf, spawnScoped, waitFor, writeConfig } from "./child.js"
import { fakeHub } from "./harness.js"

beforeAll(() => ensureBuilt(), 180_000)

const HOLD_MS = 3000

/** Successful calls of `method` whose first parameter is (or lists) `id`. */
const okCalls = (calls: ReadonlyArray<{ readonly method: string; readonly params: ReadonlyArray<unknown>; readonly fault?: unknown; readonly http?: unknown }>, method: string, id: number) =>
  calls.filter((c) =>
    c.method === method && c.fault === undefined && c.http === undefined &&
    (Array.isArray(c.params[0]) ? c.params[0].includes(id) : c.params[0] === id)).length

describe("signals at awkward moments (node dist/main.js as a child process)", () => {
  it.live("SIGTERM while host.closeTask is on its way: exit 0; the task CLOSED once and not freed after, or FREE and never closed", () =>
    Effect.scoped(Effect.gen(function*() {
      let seen = false
      const hub = yield* fakeHub({
        inject: (req: InjectRequest): InjectAction => {
          if (req.methodName !== "host.closeTask" || seen) return undefined
          seen = true
          return { delayMs: HOLD_MS }
        }
      })
      const cfg = yield* writeConfig(hub.url)
      const id = hub.createTask("sleep", [0])
      const child = yield* spawnScoped([distMain, "-c", cfg.conf, "--fg", "--force-lock"])
      yield* waitFor(() => seen, "host.closeTask held by the hub", 60_000, () => outputOf(child) + cfg.log())
      child.kill("SIGTERM")
      assert.strictEqual(yield* exitOf(child, 30_000), 0, outputOf(child) + cfg.log())
      // Let the held call land on the hub.
      yield* Effect.sleep(HOLD_MS + 500)
      const state = hub.state.task(id)?.state
      const closes = okCalls(hub.state.calls, "host.closeTask", id)
      const frees = okCalls(hub.state.calls, "host.freeTasks", id)
      const fails = okCalls(hub.state.calls, "host.failTask", id)
      const summary = `state ${state}, closeTask ${closes}, freeTasks ${frees}, failTask ${fails}\n${cfg.log()}`
      console.log(`SIGTERM during closeTask: ${summary.split("\n")[0]}`)
      assert.strictEqual(fails, 0, summary)
      if (state === TaskState.CLOSED) {
        assert.strictEqual(closes, 1, summary)
      } else {
        assert.strictEqual(state, TaskState.FREE, summary)
        assert.strictEqual(closes, 0, summary)
        // The next process runs it, once.
        const again = yield* spawnScoped([distMain, "-c", cfg.conf, "--fg", "--force-lock"])
        yield* waitFor(() => hub.state.task(id)?.state === TaskState.CLOSED, "the freed task closed by the next process", 60_000, () => outputOf(again) + cfg.log())
        again.kill("SIGTERM")
        assert.strictEqual(yield* exitOf(again, 30_000), 0)
        assert.strictEqual(okCalls(hub.state.calls, "host.closeTask", id), 1)
      }
    })), 180_000)

  it.live("SIGUSR1 while host.openTask is on its way: the task runs once and CLOSES, then the daemon restarts and goes on", () =>
    Effect.scoped(Effect.gen(function*() {
      let seen = false
      const hub = yield* fakeHub({
        inject: (req: InjectRequest): InjectAction => {
          if (req.methodName !== "host.openTask" || seen) return undefined
          seen = true
          return { delayMs: HOLD_MS }
        }
      })
      // Without batching host.openTask goes alone, so the hub can hold just that call.
      const cfg = yield* writeConfig(hub.url, { adjutant: "batch_hub_calls = False" })
      const id = hub.createTask("sleep", [1])
      const child = yield* spawnScoped([distMain, "-c", cfg.conf, "--fg", "--force-lock"])
      yield* waitFor(() => seen, "host.openTask held by the hub", 60_000, () => outputOf(child) + cfg.log())
      child.kill("SIGUSR1")
      yield* waitFor(() => hub.state.calls.filter((c) => c.method === "exclusiveSession").length === 2, "the restart", 60_000, () => outputOf(child) + cfg.log())
      yield* waitFor(() => hub.state.task(id)?.state === TaskState.CLOSED || hub.state.task(id)?.state === TaskState.FREE, "the task settled", 60_000, () => outputOf(child) + cfg.log())
      // Opened by the first process: it finishes it before restarting, or frees it and the second runs it.
      yield* waitFor(() => hub.state.task(id)?.state === TaskState.CLOSED, "the task CLOSED", 60_000, () => outputOf(child) + cfg.log())
      assert.strictEqual(okCalls(hub.state.calls, "host.closeTask", id), 1, cfg.log())
      assert.strictEqual(okCalls(hub.state.calls, "host.failTask", id), 0, cfg.log())
      // The restarted daemon takes work.
      const b = hub.createTask("sleep", [0])
      yield* waitFor(() => hub.state.task(b)?.state === TaskState.CLOSED, "a task after the restart closed", 60_000, () => outputOf(child) + cfg.log())
      child.kill("SIGTERM")
      assert.strictEqual(yield* exitOf(child, 30_000), 0, outputOf(child) + cfg.log())
    })), 180_000)
})
