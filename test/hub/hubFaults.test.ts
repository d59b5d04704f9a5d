/**
 * The hub client under hub faults (issue 12 §2), through the fault proxy in front of the fake
 * hub: every request bounded by its timeout wherever it runs, a lost exclusiveSession reply at
 * login, and the shared "hub is back" signal — calls waiting to retry go at once when the hub
 * answers again, kojid's retry counts stay the bound, and a reply already on its way when a call
 * failed is not taken for the hub's return.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Effect, Either, Exit, Fiber, Layer, Option } from "effect"
import { HubError } from "../../src/hub/HubError.js"
import { type HubOptions, KojiHub } from "../../src/hub/KojiHub.js"
import { type FakeHub, type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"
import { type FaultProxy, type FaultSchedule, startFaultProxy } from "../support/faultProxy.js"

const HOST = "builder1"
const PASSWORD = "pw"

const pause = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

/** A fake hub, the fault proxy in front of it, and a KojiHub talking through the proxy. */
const throughProxy = (schedule: FaultSchedule = {}, hubOptions: Partial<HubOptions> = {}, fakeOptions: FakeHubOptions = {}) =>
  Effect.gen(function*() {
    const fake = yield* startFakeHub({ hosts: [{ name: HOST, password: PASSWORD }], ...fakeOptions })
    const proxy = yield* startFaultProxy({ upstream: fake.url, schedule, latencyMs: [1500, 1500] })
    const context = yield* Layer.build(KojiHub.layerWithTransport({
      server: proxy.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 30, offlineRetryInterval: 30,
      recoveryProbeInterval: 0.2, ...hubOptions
    }))
    return { fake, proxy, hub: Context.get(context, KojiHub) }
  })

const requestsOf = (proxy: FaultProxy, method: string) => proxy.requests.filter((r) => r.method === method)
const callsOf = (fake: FakeHub, method: string) => fake.state.calls.filter((c) => c.method === method)

/** Milliseconds `self` takes, with its exit. */
const timed = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const t0 = Date.now()
    const exit = yield* Effect.exit(self)
    return { exit, ms: Date.now() - t0 }
  })

describe("hub faults: every call is bounded wherever it runs", () => {
  it.live("a hung request in an uninterruptible region ends at the transport's timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const { proxy, hub } = yield* throughProxy({ rules: [{ match: "echo", kind: "hang", skip: 1 }] }, { timeout: 1, maxRetries: 0 })
      const session = yield* hub.login(true)
      const { exit, ms } = yield* timed(Effect.uninterruptible(session.call("echo", ["stuck"])))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
      assert.isTrue(error instanceof HubError && error.reason === "Timeout", String(error))
      assert.isBelow(ms, 5000, "cut by the 1 s timeout, not hung")
      assert.strictEqual(requestsOf(proxy, "echo").length, 2)
    })))

  it.live("a hung request in a shutdown after an interrupt (no timeout of the caller's) ends at the transport's timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const { proxy, hub } = yield* throughProxy({ rules: [{ match: "host.freeTasks", kind: "hang" }] }, { timeout: 1, maxRetries: 0 })
      const session = yield* hub.login(true)
      let outcome = ""
      const daemon = yield* Effect.fork(Effect.never.pipe(Effect.onInterrupt(() =>
        session.call("host.freeTasks", [[]]).pipe(Effect.either, Effect.tap((r) => Effect.sync(() => {
          outcome = Either.isLeft(r) && r.left instanceof HubError ? r.left.reason : r._tag
        })))
      )))
      yield* pause(50)
      const { ms } = yield* timed(Fiber.interrupt(daemon).pipe(Effect.timeoutOption("10 seconds")))
      assert.strictEqual(outcome, "Timeout")
      assert.isBelow(ms, 5000)
      assert.strictEqual(requestsOf(proxy, "host.freeTasks").length, 1)
    })))

  it.live("login as a scope's acquire: an echo that hangs once is timed out and retried", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, proxy, hub } = yield* throughProxy({ rules: [{ match: "echo", kind: "hang", times: 1 }] }, { timeout: 1, retryInterval: 0.05 })
      const { exit, ms } = yield* timed(Effect.scoped(hub.loginScoped(true)))
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.isBelow(ms, 5000)
      assert.strictEqual(requestsOf(proxy, "echo").length, 2)
      assert.strictEqual(callsOf(fake, "logout").length, 1, "released: logged out")
    })))

  it.live("a caller's timeout bounds a call waiting to retry, even in a shutdown after an interrupt", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, proxy, hub } = yield* throughProxy({}, { retryInterval: 60, recoveryProbeInterval: 0 })
      const session = yield* hub.login(true)
      const outcomes: Array<string> = []
      const daemon = yield* Effect.fork(Effect.never.pipe(Effect.onInterrupt(() =>
        Effect.gen(function*() {
          // Run directly in the interrupted fiber, with no timeout of its own: still sent, to its end.
          yield* session.call("echo", ["first"]).pipe(Effect.either, Effect.tap((r) => Effect.sync(() => outcomes.push(`first ${r._tag}`))))
          proxy.outage(30_000)
          const bounded = yield* session.call("echo", ["second"]).pipe(Effect.timeoutOption("1 second"), Effect.either)
          outcomes.push(`second ${Either.isRight(bounded) && Option.isNone(bounded.right) ? "timed out" : "answered"}`)
        })
      )))
      yield* pause(50)
      const { ms } = yield* timed(Fiber.interrupt(daemon).pipe(Effect.timeoutOption("10 seconds")))
      assert.deepStrictEqual(outcomes, ["first Right", "second timed out"])
      assert.isBelow(ms, 5000, "not the 60 s retry_interval")
      assert.isTrue(callsOf(fake, "echo").some((c) => JSON.stringify(c.params) === "[\"first\"]"))
    })))

  it.live("a call queued behind another on its session is bounded by the caller's timeout in an uninterruptible region", () =>
    Effect.scoped(Effect.gen(function*() {
      const { proxy, hub } = yield* throughProxy({}, { retryInterval: 60, recoveryProbeInterval: 0 })
      const session = yield* hub.login(true)
      proxy.outage(30_000)
      // Holds the session's one-call-at-a-time lock while it waits out retry_interval.
      yield* Effect.fork(session.call("echo", ["holder"]))
      yield* pause(200)
      const { exit, ms } = yield* timed(Effect.uninterruptible(session.call("echo", ["queued"]).pipe(Effect.timeoutOption("1 second"))))
      assert.isTrue(Exit.isSuccess(exit) && Option.isNone(exit.value), String(exit))
      assert.isBelow(ms, 5000, "not until the holder's 60 s wait ends")
    })))

  it.live("login: a lost reply to exclusiveSession is a RetryError on the re-send, and counts as done", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, hub } = yield* throughProxy({ rules: [{ match: "exclusiveSession", kind: "resetAfter", times: 1 }] })
      const session = yield* hub.login(true)
      const sent = callsOf(fake, "exclusiveSession")
      assert.strictEqual(sent.length, 2)
      assert.strictEqual(sent[0]!.callnum, sent[1]!.callnum, "the re-send is the same call")
      assert.strictEqual(sent[1]!.fault?.faultCode, 1009)
      assert.isTrue(fake.state.session(session.sessionId)!.exclusive)
      assert.deepStrictEqual(yield* session.call("echo", ["after"]), ["after"])
    })))
})

describe("hub faults: the hub is back", () => {
  it.live("calls waiting out retry_interval (30 s) on two sessions go at once when the hub answers again; recovered completes", () =>
    Effect.scoped(Effect.gen(function*() {
      const { proxy, hub } = yield* throughProxy()
      const main = yield* hub.login(true)
      const sub = yield* main.subsession
      let backAt = 0
      const recovered = yield* Effect.fork(Effect.zipRight(hub.recovered, Effect.sync(() => (backAt = Date.now()))))
      proxy.outage(2000)
      const a = yield* Effect.fork(timed(main.call("echo", ["a"])))
      const b = yield* Effect.fork(timed(sub.call("echo", ["b"])))
      const ra = yield* Fiber.join(a)
      const rb = yield* Fiber.join(b)
      yield* Fiber.join(recovered)
      const restored = proxy.outages[0]!.until
      for (const r of [ra, rb]) {
        assert.isTrue(Exit.isSuccess(r.exit), String(r.exit))
        assert.isBelow(r.ms, 6000, "within a few seconds of the 2 s outage, not after retry_interval")
      }
      assert.isAbove(backAt, 0)
      assert.isTrue(proxy.requests.some((r) => r.method === "getAPIVersion"), "the probe asked")
      assert.isAtLeast(proxy.requests.filter((r) => r.method === "echo" && r.at >= restored).length, 2)
    })))

  it.live("ServerOffline: the offline_retry_interval wait ends when the hub answers again", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, hub } = yield* throughProxy()
      const session = yield* hub.login(true)
      fake.setOffline(true)
      const call = yield* Effect.fork(timed(session.call("echo", ["x"])))
      yield* pause(1000)
      fake.setOffline(false)
      const t0 = Date.now()
      const r = yield* Fiber.join(call)
      assert.isTrue(Exit.isSuccess(r.exit))
      assert.isBelow(Date.now() - t0, 2000, "not the 30 s offline_retry_interval")
    })))

  it.live("kojid's retry count stays the bound: a call that keeps failing while the hub answers gives up after max_retries", () =>
    Effect.scoped(Effect.gen(function*() {
      const { proxy, hub } = yield* throughProxy({ rules: [{ match: "host.getHost", kind: "http503" }] }, { maxRetries: 3 })
      const session = yield* hub.login(true)
      const { exit, ms } = yield* timed(session.call("host.getHost"))
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(requestsOf(proxy, "host.getHost").length, 4, "max_retries + 1 sends")
      assert.isBelow(ms, 10_000, "each wait ended by the probe's answer, not 3 × 30 s")
    })))

  it.live("a reply already on its way when a call failed does not end that call's wait", () =>
    Effect.scoped(Effect.gen(function*() {
      const { proxy, hub } = yield* throughProxy(
        { rules: [{ match: "host.getID", kind: "latency", times: 1 }, { match: "echo", kind: "http503", skip: 1, times: 2 }] },
        { recoveryProbeInterval: 0 }
      )
      const main = yield* hub.login(true)
      const sub = yield* main.subsession
      const slow = yield* Effect.fork(sub.call("host.getID"))
      yield* pause(200)
      const waiting = yield* Effect.fork(timed(main.call("echo", ["w"])))
      yield* Fiber.join(slow)
      yield* pause(1000)
      assert.isTrue(Option.isNone(yield* Fiber.poll(waiting)), "the late reply to an older request did not wake it")
      yield* hub.anonymous.call("getAPIVersion")
      const r = yield* Fiber.join(waiting)
      assert.isTrue(Exit.isSuccess(r.exit))
      assert.isBelow(r.ms, 5000)
      assert.strictEqual(requestsOf(proxy, "echo").filter((e) => e.sessionId === main.sessionId).length, 4)
    })))
})
