/**
 * Session behaviour against the fake hub (koji-protocol.md §1.5–1.7, §3.5–3.6): callnum across
 * renewal, serialised concurrent calls, subsessions, kojid's retry policy on the TestClock,
 * ServerOffline, URL-session fallback, RetryError as "done".
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Duration, Effect, Either, Fiber, Layer, TestClock } from "effect"
import { GenericError, RetryError } from "../../src/koji/faults.js"
import { HostApi, hostApi } from "../../src/hub/HostApi.js"
import { HubError } from "../../src/hub/HubError.js"
import { doneOnRetry, type HubOptions, KojiHub } from "../../src/hub/KojiHub.js"
import { type FakeHub, type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"
import { testPki } from "../support/tls.js"

const hubFor = (options: HubOptions) =>
  Layer.build(KojiHub.layerWithTransport(options)).pipe(Effect.map((c) => Context.get(c, KojiHub)))

/** A fake hub with host builder1 and a logged-in, exclusive session on it. */
const loggedIn = (fakeOptions: FakeHubOptions = {}, hubOptions: Partial<HubOptions> = {}) =>
  Effect.gen(function* () {
    const fake = yield* startFakeHub({ hosts: [{ name: "builder1", password: "pw" }], ...fakeOptions })
    const hub = yield* hubFor({ server: fake.url, user: "builder1", password: "pw", maxRetries: 5, retryInterval: 60, offlineRetryInterval: 120, ...hubOptions })
    const session = yield* hub.login(true)
    return { fake, hub, session, api: hostApi(session) as HostApi }
  })

/** Real-time wait (the TestClock does not move by itself) until `cond` holds. */
const waitUntil = (what: string, cond: () => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 500; i++) {
      if (cond()) return
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
    }
    assert.fail(`timed out waiting for ${what}`)
  })

const settle = Effect.promise(() => new Promise((r) => setTimeout(r, 100)))

/** Only the request timeouts (12 h) are pending on the TestClock: nothing waits for a retry. */
const noRetrySleep = (sleeps: Chunk.Chunk<number>) => Chunk.every(sleeps, (at) => at >= 43_200_000)

/** A session's calls around one renewal: login, echo, a call, the call failing 1007, the re-login, the retry. */
const RENEWAL_SEQUENCE = [
  ["exclusiveSession", 0, undefined],
  ["echo", 1, undefined],
  ["host.getID", 2, undefined],
  ["host.getID", 3, 1007],
  ["login", 4, undefined],
  ["host.getID", 5, undefined]
]

const callsOf = (fake: FakeHub, method: string) => fake.state.calls.filter((c) => c.method === method)

describe("hub sessions", () => {
  it.scoped("callnum keeps increasing across renewal; the session id stays, the key changes", () =>
    Effect.gen(function* () {
      const { fake, session, api } = yield* loggedIn()
      const keyBefore = fake.state.session(session.sessionId)!.key
      yield* api.getID()
      fake.expireSession(session.sessionId)
      const id = yield* api.getID()
      assert.strictEqual(id, fake.state.host("builder1")!.id)
      const mine = fake.state.calls.filter((c) => c.sessionId === session.sessionId)
      assert.deepStrictEqual(mine.map((c) => [c.method, c.callnum, c.fault?.faultCode]), RENEWAL_SEQUENCE)
      const renew = mine[4]!
      assert.deepStrictEqual(renew.params, ["builder1", "pw", { opts: null, renew: true, exclusive: true, __starstar: true }])
      const row = fake.state.session(session.sessionId)!
      assert.notStrictEqual(row.key, keyBefore)
      assert.isFalse(row.expired === true)
      assert.strictEqual(yield* session.nextCallnum, 6)
    }))

  it.scoped("a hub without header-auth: the session travels in the URL, also for the renewal", () =>
    Effect.gen(function* () {
      const { fake, session, api } = yield* loggedIn({ headerAuth: false })
      yield* api.getID()
      fake.expireSession(session.sessionId)
      assert.strictEqual(yield* api.getID(), fake.state.host("builder1")!.id)
      const mine = fake.state.calls.filter((c) => c.sessionId === session.sessionId)
      assert.deepStrictEqual(mine.map((c) => [c.method, c.callnum, c.fault?.faultCode]), RENEWAL_SEQUENCE)
      // Every call of the session, the renewal included, names it in the query string.
      for (const c of mine) assert.include(c.query, `session-id=${session.sessionId}`, c.method)
      assert.isFalse(fake.state.session(session.sessionId)!.expired === true)
    }))

  it.scoped("a renewal the hub refuses surfaces its fault (kojid then exits and restarts)", () =>
    Effect.gen(function* () {
      let logins = 0
      const { fake, session, api } = yield* loggedIn({
        inject: (r) => (r.methodName === "login" && ++logins > 1 ? { fault: [1002, "Invalid session or bad credentials"] } : undefined)
      })
      fake.expireSession(session.sessionId)
      const result = yield* Effect.either(api.getID())
      assert.isTrue(Either.isLeft(result) && result.left._tag === "AuthError", String(Either.isLeft(result) ? result.left : ""))
      assert.deepStrictEqual(fake.state.calls.slice(-2).map((c) => c.method), ["host.getID", "login"])
    }))

  it.scoped("multiCall: one request, one callnum, results and faults in order", () =>
    Effect.gen(function* () {
      const { fake, session } = yield* loggedIn()
      const before = fake.state.calls.length
      const results = yield* session.multiCall([
        { method: "echo", params: ["a", 1] },
        { method: "getTaskInfo", params: [424242], kwargs: { strict: true } },
        { method: "host.getID" }
      ])
      // One request; the fake hub also lists the three calls it ran inside it.
      const requests = fake.state.calls.slice(before).filter((c) => c.within === undefined)
      assert.strictEqual(requests.length, 1)
      assert.strictEqual(requests[0]!.method, "multiCall")
      assert.deepStrictEqual(results[0], Either.right(["a", 1]))
      assert.isTrue(Either.isLeft(results[1]!) && results[1].left._tag === "GenericError", String(results[1]))
      assert.deepStrictEqual(results[2], Either.right(fake.state.host("builder1")!.id))
    }))

  it.scoped("concurrent calls on one session are serialised: increasing callnums, no SequenceError", () =>
    Effect.gen(function* () {
      const { fake, session, api } = yield* loggedIn({ checkCallnum: true })
      const results = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
        i % 2 === 0 ? api.getID() : api.setHostData({ n: i }), { concurrency: "unbounded" })
      assert.strictEqual(results.length, 20)
      const nums = fake.state.calls.filter((c) => c.sessionId === session.sessionId).map((c) => c.callnum!)
      for (let i = 1; i < nums.length; i++) assert.isTrue(nums[i]! > nums[i - 1]!, `callnums ${nums.join(",")}`)
      assert.isFalse(fake.state.calls.some((c) => c.fault !== undefined))
    }))

  it.scoped("subsessions have their own callnum starting at 0 and are closed by logoutChild", () =>
    Effect.gen(function* () {
      const { fake, session, api } = yield* loggedIn()
      const sub = yield* session.subsession
      assert.notStrictEqual(sub.sessionId, session.sessionId)
      const subApi = hostApi(sub)
      yield* subApi.getID()
      yield* subApi.getID()
      yield* api.getID()
      const subCalls = fake.state.calls.filter((c) => c.sessionId === sub.sessionId)
      assert.deepStrictEqual(subCalls.map((c) => c.callnum), [0, 1])
      assert.strictEqual(fake.state.session(sub.sessionId)!.master, session.sessionId)
      yield* session.logoutChild(sub.sessionId)
      assert.isTrue(fake.state.session(sub.sessionId)!.closed === true)
    }))

  it.scoped("logout sends session_id=None once and never fails", () =>
    Effect.gen(function* () {
      const { fake, session } = yield* loggedIn()
      yield* session.logout
      const last = fake.state.calls.at(-1)!
      assert.strictEqual(last.method, "logout")
      assert.deepStrictEqual(last.params, [{ session_id: null, __starstar: true }])
      assert.isTrue(fake.state.session(session.sessionId)!.closed === true)
      fake.setOffline(true)
      yield* session.logout // already out: no call, no failure
    }))

  it.scoped("URL sessions when the hub does not advertise header-auth", () =>
    Effect.gen(function* () {
      const { fake, api } = yield* loggedIn({ headerAuth: false })
      yield* api.getID()
      const call = callsOf(fake, "host.getID")[0]!
      assert.match(call.query, /session-id=\d+/)
      assert.match(call.query, /session-key=/)
      assert.match(call.query, /callnum=2/)
      assert.isUndefined(call.fault)
    }))

  it.effect("HTTP 5xx is retried: first retry at once, then retry_interval sleeps; identical callnum", () =>
    Effect.scoped(Effect.gen(function* () {
      // kojid's timing exactly: without the recovery probe nothing ends a retry_interval early (test/hub/hubFaults.test.ts).
      const { fake, api } = yield* loggedIn({ inject: (r) => (r.methodName === "host.getHost" && r.attempt <= 3 ? { http: 503 } : undefined) }, { recoveryProbeInterval: 0 })
      const fiber = yield* Effect.fork(api.getHost())
      yield* waitUntil("two attempts", () => callsOf(fake, "host.getHost").length === 2)
      yield* settle
      assert.strictEqual(callsOf(fake, "host.getHost").length, 2, "the second retry waits for retry_interval")
      yield* TestClock.adjust(Duration.seconds(59))
      yield* settle
      assert.strictEqual(callsOf(fake, "host.getHost").length, 2)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* waitUntil("third attempt", () => callsOf(fake, "host.getHost").length === 3)
      yield* TestClock.adjust(Duration.seconds(60))
      const host = yield* Fiber.join(fiber)
      assert.strictEqual(host.name, "builder1")
      const attempts = callsOf(fake, "host.getHost")
      assert.deepStrictEqual(attempts.map((c) => c.http), [503, 503, 503, undefined])
      assert.strictEqual(new Set(attempts.map((c) => c.callnum)).size, 1, "retries re-send the same callnum")
    })))

  it.effect("gives up after max_retries + 1 attempts with the HTTP error", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, api } = yield* loggedIn({ inject: (r) => (r.methodName === "host.getHost" ? { http: 502 } : undefined) }, { maxRetries: 2 })
      const fiber = yield* Effect.fork(Effect.either(api.getHost()))
      yield* waitUntil("two attempts", () => callsOf(fake, "host.getHost").length === 2)
      yield* TestClock.adjust(Duration.seconds(60))
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(callsOf(fake, "host.getHost").length, 3)
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<unknown, unknown>).left
      assert.isTrue(error instanceof HubError && error.reason === "Http" && error.status === 502, String(error))
    })))

  it.effect("a connection reset is re-sent at once with the same callnum", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, api } = yield* loggedIn({ inject: (r) => (r.methodName === "host.getHost" && r.attempt === 1 ? { reset: true } : undefined) })
      const host = yield* api.getHost()
      assert.strictEqual(host.name, "builder1")
      const attempts = callsOf(fake, "host.getHost")
      assert.strictEqual(attempts.length, 2)
      assert.strictEqual(attempts[0]!.callnum, attempts[1]!.callnum)
      assert.isTrue(noRetrySleep(yield* TestClock.sleeps()), "no retry_interval sleep")
    })))

  it.effect("faults are not retried", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, api } = yield* loggedIn({ inject: (r) => (r.methodName === "host.getHost" ? { fault: [1000, "boom"] } : undefined) })
      const result = yield* Effect.either(api.getHost())
      assert.isTrue(Either.isLeft(result) && result.left instanceof GenericError)
      assert.strictEqual(callsOf(fake, "host.getHost").length, 1)
    })))

  it.effect("ServerOffline is retried every offline_retry_interval, beyond max_retries, until the hub is back", () =>
    Effect.scoped(Effect.gen(function* () {
      // kojid's timing exactly: without the recovery probe nothing ends an offline_retry_interval early.
      const { fake, api } = yield* loggedIn({}, { maxRetries: 1, recoveryProbeInterval: 0 })
      fake.setOffline(true)
      const offlineCalls = () => fake.state.calls.filter((c) => c.fault?.faultCode === 1014).length
      const fiber = yield* Effect.fork(api.getID())
      for (let n = 1; n <= 5; n++) {
        yield* waitUntil(`offline attempt ${n}`, () => offlineCalls() === n)
        yield* TestClock.adjust(Duration.seconds(119))
        yield* settle
        assert.strictEqual(offlineCalls(), n, "waits the whole offline_retry_interval")
        yield* TestClock.adjust(Duration.seconds(1))
      }
      yield* waitUntil("sixth attempt", () => offlineCalls() === 6)
      fake.setOffline(false)
      yield* TestClock.adjust(Duration.seconds(120))
      const id = yield* Fiber.join(fiber)
      assert.strictEqual(id, fake.state.host("builder1")!.id)
    })))

  it.effect("ServerOffline without offline_retry is the fault at once", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, api } = yield* loggedIn({}, { offlineRetry: false })
      fake.setOffline(true)
      const result = yield* Effect.either(api.getID())
      assert.isTrue(Either.isLeft(result) && result.left._tag === "ServerOffline")
    })))

  it.effect("certificate errors are not retried (anonymous with anon_retry on, no sleeps needed)", () =>
    Effect.scoped(Effect.gen(function* () {
      const pki = yield* testPki(["builder1"])
      const fake = yield* startFakeHub({ tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" } })
      const hub = yield* hubFor({ server: fake.url, serverca: pki.otherCaFile, anonRetry: true, maxRetries: 5 })
      const result = yield* Effect.either(hub.anonymous.call("getAPIVersion"))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<unknown, unknown>).left
      assert.isTrue(error instanceof HubError && error.reason === "Certificate", String(error))
      assert.isTrue(noRetrySleep(yield* TestClock.sleeps()), "no retry_interval sleep")
    })))

  it.scoped("RetryError (reply of a committed call lost): a typed fault, and doneOnRetry maps it to done", () =>
    Effect.gen(function* () {
      const lose = new Set(["host.setTaskWeight", "host.closeTask"])
      const { fake, api } = yield* loggedIn({ inject: (r) => (lose.has(r.methodName) && r.attempt === 1 ? { afterCommit: { reset: true } } : undefined) })
      const taskId = fake.createTask("sleep", [1], { assign: "builder1" })
      const opened = yield* api.openTask(taskId)
      assert.strictEqual(opened?.id, taskId)
      const plain = yield* Effect.either(api.setTaskWeight(taskId, 1.5))
      assert.isTrue(Either.isLeft(plain) && plain.left instanceof RetryError, `got ${String(Either.isLeft(plain) ? plain.left : "success")}`)
      assert.strictEqual(fake.state.task(taskId)!.weight, 1.5, "the first attempt was committed")
      yield* doneOnRetry(api.closeTask(taskId, "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><nil/></value></param>\n</params>\n</methodResponse>\n"))
      assert.strictEqual(fake.state.task(taskId)!.state, 2)
    }))
})
