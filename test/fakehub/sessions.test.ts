/**
 * The fake hub's session rules against the real hub's (koji-protocol.md §1.5–1.8, §3): the nine
 * raw-client fault captures replayed, HTTP-level answers, callnum, exclusive locks, renewal,
 * subsessions, client-IP binding, URL sessions, multiCall, offline and injected failures.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import { join } from "node:path"
import { decodeResponse } from "../../src/hub/xmlrpc.js"
import { startFakeHub, type FakeHubOptions } from "./FakeHub.js"
import { call, callFrom, login, ok, type Sess, subsession } from "./client.js"
import { CAPTURES_DIR as CAPTURES } from "../support/captures.js"


/** The fault a raw-client capture recorded. */
const capturedFault = (name: string): { faultCode: number; faultString: string } => {
  const text = fs.readFileSync(join(CAPTURES, "raw-client", `${name}.txt`), "utf8")
  const resp = text.split("=== RESPONSE")[1]!
  const d = decodeResponse(resp.slice(resp.indexOf("<?xml")))
  if (Either.isRight(d) || !("faultCode" in d.left)) throw new Error(`${name} holds no fault`)
  return { faultCode: d.left.faultCode, faultString: d.left.faultString }
}

const HOSTS: FakeHubOptions["hosts"] = [{ name: "builder1", password: "pw", arches: "x86_64 noarch" }]
const USERS: FakeHubOptions["users"] = [{ name: "someone", password: "pw2" }]

const withHub = (opts: FakeHubOptions, f: (url: string, hub: Effect.Effect.Success<ReturnType<typeof startFakeHub>>) => Promise<void>) =>
  Effect.gen(function*() {
    const hub = yield* startFakeHub({ hosts: HOSTS, users: USERS, ...opts })
    yield* Effect.promise(() => f(hub.url, hub))
  })

describe("fake hub: raw-client fault captures", () => {
  it.scoped("90 wrong args → 1019 with the hub's message", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const r = await call(url, "host.openTask", [], { session: s })
      assert.deepStrictEqual(r.fault, capturedFault("90-fault-wrong-args"))
    }))

  it.scoped("91 openTask of a missing task → 1000 query returned no rows", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const r = await call(url, "host.openTask", [999999], { session: s })
      assert.deepStrictEqual(r.fault, capturedFault("91-fault-no-such-task"))
    }))

  it.scoped("92 unknown method → 1000 Invalid method", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const r = await call(url, "noSuchMethod", [], { session: s })
      assert.deepStrictEqual(r.fault, capturedFault("92-fault-unknown-method"))
    }))

  it.scoped("93 host call without a session → 1002 Not logged-in", () =>
    withHub({}, async (url) => {
      const r = await call(url, "host.getID", [])
      assert.deepStrictEqual(r.fault, capturedFault("93-fault-not-logged-in"))
    }))

  it.scoped("94 getTaskResult of a failed task → the task's own fault", () =>
    withHub({}, async (url, hub) => {
      const s = await login(url, "builder1", "pw")
      const id = hub.createTask("build", ["x.src.rpm", "target", {}])
      await ok(call(url, "host.updateHost", [0.0, true], { session: s }))
      hub.runScheduler()
      assert.strictEqual(hub.state.task(id)?.state, 4)
      await ok(call(url, "host.openTask", [id], { session: s }))
      const doc = "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n" +
        "<value><int>1</int></value>\n</member>\n<member>\n<name>faultString</name>\n" +
        "<value><string>rawbuilder.py: failing task 2 on purpose</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n"
      await ok(call(url, "host.failTask", [id, doc], { session: s }))
      const r = await call(url, "getTaskResult", [id])
      assert.deepStrictEqual(r.fault, capturedFault("94-fault-getTaskResult-failed"))
    }))

  it.scoped("95/96 a second session of a locked host → 1006 both ways", () =>
    withHub({}, async (url) => {
      await login(url, "builder1", "pw")
      const second = await login(url, "builder1", "pw", false)
      const r95 = await call(url, "exclusiveSession", [], { session: second })
      assert.deepStrictEqual(r95.fault, capturedFault("95-fault-exclusive-locked"))
      const r96 = await call(url, "host.getID", [], { session: second })
      assert.deepStrictEqual(r96.fault, capturedFault("96-fault-user-locked"))
    }))

  it.scoped("97 a user that is not a host → 1002 User 1 is not a host", () =>
    withHub({ users: [] }, async (url, hub) => {
      // user 1 is kojiadmin in the fake, as in the capture; give it a password to log in
      const admin = hub.state.users.find((u) => u.id === 1)!
      ;(admin as { password: string | null }).password = "adminpw"
      const s = await login(url, "kojiadmin", "adminpw", false)
      const r = await call(url, "host.getID", [], { session: s })
      assert.deepStrictEqual(r.fault, capturedFault("97-fault-not-a-host"))
    }))

  it.scoped("98 a non-exclusive host session → 1002 requires an exclusive session", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw", false)
      const r = await call(url, "host.getID", [], { session: s })
      assert.deepStrictEqual(r.fault, capturedFault("98-fault-not-exclusive"))
    }))
})

describe("fake hub: HTTP", () => {
  it.scoped("GET → 405 with Allow: POST and the hub's text; responses carry Koji-Version", () =>
    withHub({}, async (url) => {
      const res = await fetch(url)
      assert.strictEqual(res.status, 405)
      assert.strictEqual(res.headers.get("allow"), "POST")
      assert.strictEqual(res.headers.get("koji-version"), "1.35.3")
      assert.strictEqual(await res.text(), "Method Not Allowed\nThis is an XML-RPC server. Only POST requests are accepted.\n")
      const r = await call(url, "getAPIVersion")
      assert.strictEqual(r.value, 1)
      assert.strictEqual(r.headers.get("content-type"), "text/xml")
      assert.strictEqual(r.headers.get("koji-version"), "1.35.3")
    }))

  it.scoped("empty or unparsable body → 400", () =>
    withHub({}, async (url) => {
      const empty = await fetch(url, { method: "POST", body: "", headers: { "Content-Type": "text/xml" } })
      assert.strictEqual(empty.status, 400)
      assert.strictEqual(await empty.text(), "Invalid request: Empty request\n")
      const bad = await fetch(url, { method: "POST", body: "<methodCall><oops", headers: { "Content-Type": "text/xml" } })
      assert.strictEqual(bad.status, 400)
    }))

  it.scoped("offline → 1014 server is offline for everything", () =>
    withHub({}, async (url, hub) => {
      hub.setOffline(true)
      const r = await call(url, "login", ["builder1", "pw"])
      assert.deepStrictEqual(r.fault, { faultCode: 1014, faultString: "server is offline" })
      hub.setOffline(false)
      assert.strictEqual((await call(url, "getAPIVersion")).value, 1)
    }))
})

describe("fake hub: sessions", () => {
  it.scoped("login gives sinfo with a <uid>-<19 alnum> key; echo and getSessionInfo", () =>
    withHub({}, async (url) => {
      const r = await call(url, "login", ["builder1", "pw"], { kw: { opts: null } })
      const v = r.value as Record<string, unknown>
      assert.strictEqual(v["header-auth"], true)
      assert.match(v["session-key"] as string, /^2-[A-Za-z0-9]{19}$/)
      const s: Sess = { id: v["session-id"] as number, key: v["session-key"] as string, callnum: 0 }
      await ok(call(url, "exclusiveSession", [], { session: s, kw: { force: true } }))
      assert.deepStrictEqual(await ok(call(url, "echo", ["OK"], { session: s })), ["OK"])
      const info = await ok(call(url, "getSessionInfo", [], { session: s })) as Record<string, unknown>
      // exclusiveSession committed callnum 0; echo (#1) changed nothing so it was not stored
      assert.strictEqual(info["callnum"], 0)
      assert.strictEqual(info["exclusive"], true)
      assert.strictEqual(info["authtype"], 0)
      assert.strictEqual(info["user_id"], 2)
      assert.strictEqual(await ok(call(url, "host.getID", [], { session: s })), 1)
    }))

  it.scoped("bad key, unknown id, closed session → 1002 Invalid session or bad credentials", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const bad = await call(url, "echo", [], { session: { ...s, key: "2-xxxxxxxxxxxxxxxxxxx" } })
      assert.deepStrictEqual(bad.fault, { faultCode: 1002, faultString: "Invalid session or bad credentials" })
      const unknown = await call(url, "echo", [], { session: { id: 999, key: s.key, callnum: 0 } })
      assert.strictEqual(unknown.fault?.faultCode, 1002)
      await ok(call(url, "logout", [], { session: s }))
      const closed = await call(url, "echo", [], { session: s })
      assert.deepStrictEqual(closed.fault, { faultCode: 1002, faultString: "Invalid session or bad credentials" })
    }))

  it.scoped("wrong password → 1002 invalid username or password", () =>
    withHub({}, async (url) => {
      const r = await call(url, "login", ["builder1", "nope"])
      assert.deepStrictEqual(r.fault, { faultCode: 1002, faultString: "invalid username or password" })
    }))

  it.scoped("callnum: lower → 1008, repeated DML → 1009, whitelisted and read-only repeats run", () =>
    withHub({}, async (url, hub) => {
      const s = await login(url, "builder1", "pw") // exclusiveSession stored callnum 0
      const r1 = await call(url, "host.updateHost", [0.0, true], { session: s, callnum: 5 })
      assert.isUndefined(r1.fault)
      assert.strictEqual(hub.state.session(s.id)?.callnum, 5)
      const lower = await call(url, "echo", [], { session: s, callnum: 4 })
      assert.deepStrictEqual(lower.fault, { faultCode: 1008, faultString: `5 > 4 (session ${s.id})` })
      // updateHost is in RetryWhitelist: the same callnum runs again
      assert.isUndefined((await call(url, "host.updateHost", [0.0, true], { session: s, callnum: 5 })).fault)
      // a DML call that is not whitelisted: stored, then refused when repeated
      const sub = await call(url, "subsession", [], { session: s, callnum: 6 })
      assert.isDefined(sub.value)
      const again = await call(url, "subsession", [], { session: s, callnum: 6 })
      assert.deepStrictEqual(again.fault, { faultCode: 1009, faultString: `unable to retry call 6 (method subsession) for session ${s.id}` })
      // read-only calls do not store their callnum, so repeating one is harmless
      await ok(call(url, "echo", [1], { session: s, callnum: 7 }))
      await ok(call(url, "echo", [1], { session: s, callnum: 7 }))
      assert.strictEqual(hub.state.session(s.id)?.callnum, 6)
      // a call that faults stores nothing either
      await call(url, "host.openTask", [424242], { session: s, callnum: 8 })
      assert.strictEqual(hub.state.session(s.id)?.callnum, 6)
      // no callnum header → no check at all
      const noNum = await fetch(url, {
        method: "POST", body: "<?xml version='1.0'?><methodCall><methodName>echo</methodName><params></params></methodCall>",
        headers: { "Content-Type": "text/xml", "Koji-Session-Id": String(s.id), "Koji-Session-Key": s.key }
      })
      assert.include(await noNum.text(), "<params>")
    }))

  it.scoped("the legacy Koji-Callnum header is read when Koji-Session-Callnum is absent", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const body = "<?xml version='1.0'?><methodCall><methodName>echo</methodName><params></params></methodCall>"
      const res = await fetch(url, {
        method: "POST", body,
        headers: { "Content-Type": "text/xml", "Koji-Session-Id": String(s.id), "Koji-Session-Key": s.key, "Koji-Callnum": "-1" }
      })
      assert.include(await res.text(), "1008")
    }))

  it.scoped("checkCallnum=false ignores callnums", () =>
    withHub({ checkCallnum: false }, async (url) => {
      const s = await login(url, "builder1", "pw")
      await ok(call(url, "subsession", [], { session: s, callnum: 3 }))
      await ok(call(url, "subsession", [], { session: s, callnum: 3 }))
      await ok(call(url, "echo", [], { session: s, callnum: 1 }))
    }))

  it.scoped("exclusiveSession(force) steals the lock and closes the old session", () =>
    withHub({}, async (url) => {
      const first = await login(url, "builder1", "pw")
      const second = await login(url, "builder1", "pw", false)
      // while the first holds the lock, login/logout/exclusiveSession still work for the second
      await ok(call(url, "exclusiveSession", [], { session: second, kw: { force: true } }))
      assert.strictEqual(await ok(call(url, "host.getID", [], { session: second })), 1)
      const old = await call(url, "host.getID", [], { session: first })
      assert.deepStrictEqual(old.fault, { faultCode: 1002, faultString: "Invalid session or bad credentials" })
    }))

  it.scoped("subsessions inherit exclusivity, cannot become exclusive, logout closes them", () =>
    withHub({}, async (url, hub) => {
      const main = await login(url, "builder1", "pw")
      const sub = await subsession(url, main)
      assert.strictEqual(hub.state.session(sub.id)?.master, main.id)
      assert.strictEqual(await ok(call(url, "host.getID", [], { session: sub })), 1)
      const excl = await call(url, "exclusiveSession", [], { session: sub })
      assert.deepStrictEqual(excl.fault, { faultCode: 1000, faultString: "subsessions cannot become exclusive" })
      const sub2 = await subsession(url, main)
      // logoutChild closes one; nil even when it is already gone
      assert.isNull(await ok(call(url, "logoutChild", [sub2.id], { session: main })))
      assert.isNull(await ok(call(url, "logoutChild", [sub2.id], { session: main })))
      assert.strictEqual((await call(url, "echo", [], { session: sub2 })).fault?.faultCode, 1002)
      // logout(session_id=None) by the task's own session, as kojid sends it
      await ok(call(url, "logout", [], { session: sub, kw: { session_id: null } }))
      assert.isTrue(hub.state.session(sub.id)?.closed)
      assert.isFalse(hub.state.session(main.id)?.closed)
      const sub3 = await subsession(url, main)
      await ok(call(url, "logout", [], { session: main }))
      assert.isTrue(hub.state.session(sub3.id)?.closed)
    }))

  it.scoped("renewal timeout → 1007; login(renew=True) keeps the id with a new key", () => {
    let clock = 1_000_000
    return withHub({ sessionRenewalTimeout: 60, now: () => clock }, async (url, hub) => {
      const s = await login(url, "builder1", "pw", false)
      clock += 61
      const r = await call(url, "echo", [], { session: s })
      assert.deepStrictEqual(r.fault, { faultCode: 1007, faultString: `session "${s.id}" has expired` })
      const renewed = await ok(call(url, "login", ["builder1", "pw"], { session: s, kw: { opts: null, renew: true } })) as Record<string, unknown>
      assert.strictEqual(renewed["session-id"], s.id)
      assert.notStrictEqual(renewed["session-key"], s.key)
      const s2: Sess = { id: s.id, key: renewed["session-key"] as string, callnum: s.callnum }
      assert.deepStrictEqual(await ok(call(url, "echo", ["x"], { session: s2 })), ["x"])
      assert.strictEqual(hub.state.session(s.id)?.renewTs, clock)
    })
  })

  it.scoped("renewing an exclusive session with exclusive=True keeps it exclusive", () => {
    let clock = 1_000_000
    return withHub({ sessionRenewalTimeout: 60, now: () => clock }, async (url, hub) => {
      const s = await login(url, "builder1", "pw")
      clock += 61
      assert.strictEqual((await call(url, "host.getID", [], { session: s })).fault?.faultCode, 1007)
      // an expired session is not logged in, so makeExclusive finds no user to lock against (auth.py)
      const r = await ok(call(url, "login", ["builder1", "pw"], { session: s, kw: { opts: null, renew: true, exclusive: true } })) as Record<string, unknown>
      assert.strictEqual(r["session-id"], s.id)
      assert.isTrue(hub.state.session(s.id)?.exclusive)
      const s2: Sess = { id: s.id, key: r["session-key"] as string, callnum: s.callnum }
      assert.strictEqual(await ok(call(url, "host.getID", [], { session: s2 })), 1)
      assert.strictEqual((await call(url, "echo", [], { session: s })).fault?.faultCode, 1002)
    })
  })

  it.scoped("expireSession (admin) expires the session and its subsessions", () =>
    withHub({}, async (url, hub) => {
      const s = await login(url, "builder1", "pw")
      const sub = await subsession(url, s)
      hub.expireSession(s.id)
      assert.strictEqual((await call(url, "echo", [], { session: sub })).fault?.faultCode, 1007)
      assert.strictEqual((await call(url, "echo", [], { session: s })).fault?.faultCode, 1007)
    }))

  it.scoped("client IP binding: another source address → 1002", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const r = await callFrom(url, "127.0.0.2", "echo", [], s)
      assert.deepStrictEqual(r.fault, { faultCode: 1002, faultString: "Invalid session or bad credentials" })
      const same = await callFrom(url, "127.0.0.1", "echo", ["a"], s)
      assert.deepStrictEqual(same.value, ["a"])
    }))

  it.scoped("checkClientIP=false accepts any address", () =>
    withHub({ checkClientIP: false }, async (url) => {
      const s = await login(url, "builder1", "pw")
      assert.deepStrictEqual((await callFrom(url, "127.0.0.2", "echo", [1], s)).value, [1])
    }))

  it.scoped("URL sessions work; headerAuth=false omits header-auth and ignores the headers", () =>
    withHub({ headerAuth: false }, async (url) => {
      const r = await call(url, "login", ["builder1", "pw"])
      const v = r.value as Record<string, unknown>
      assert.isFalse("header-auth" in v)
      const s: Sess = { id: v["session-id"] as number, key: v["session-key"] as string, callnum: 0 }
      await ok(call(url, "exclusiveSession", [], { session: s, urlSession: true, kw: { force: true } }))
      assert.strictEqual(await ok(call(url, "host.getID", [], { session: s, urlSession: true })), 1)
      const viaHeaders = await call(url, "host.getID", [], { session: s })
      assert.deepStrictEqual(viaHeaders.fault, { faultCode: 1002, faultString: "Not logged-in" })
    }))

  it.scoped("ParameterError shapes: too many, unexpected keyword; wrapped auth calls give fault 1", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const many = await call(url, "host.getID", [1], { session: s })
      assert.deepStrictEqual(many.fault, { faultCode: 1019, faultString: "HostExports.getID() takes 1 positional argument but 2 were given" })
      const kw = await call(url, "host.openTask", [1], { session: s, kw: { nope: 1 } })
      assert.deepStrictEqual(kw.fault, { faultCode: 1019, faultString: "HostExports.openTask() got an unexpected keyword argument 'nope'" })
      const range = await call(url, "getTaskInfo", [1, 2, 3, 4], { session: s })
      assert.deepStrictEqual(range.fault, { faultCode: 1019, faultString: "RootExports.getTaskInfo() takes from 2 to 4 positional arguments but 5 were given" })
      const wrapped = await call(url, "exclusiveSession", [], { session: s, kw: { bogus: true } })
      assert.deepStrictEqual(wrapped.fault, { faultCode: 1, faultString: "<class 'TypeError'>: Session.makeExclusive() got an unexpected keyword argument 'bogus'" })
      const two = await call(url, "host.closeTask", [], { session: s })
      assert.strictEqual(two.fault?.faultString, "HostExports.closeTask() missing 2 required positional arguments: 'task_id' and 'response'")
    }))

  it.scoped("multiCall: one-element arrays and fault structs, one callnum", () =>
    withHub({}, async (url) => {
      const s = await login(url, "builder1", "pw")
      const r = await ok(call(url, "multiCall", [[
        { methodName: "echo", params: ["a"] },
        { methodName: "noSuch", params: [] },
        { methodName: "host.getID", params: [] }
      ]], { session: s })) as ReadonlyArray<unknown>
      assert.deepStrictEqual(r[0], [["a"]])
      const f = r[1] as Record<string, unknown>
      assert.strictEqual(f["faultCode"], 1000)
      assert.strictEqual(f["faultString"], "Invalid method: noSuch")
      assert.deepStrictEqual(r[2], [1])
    }))

  it.scoped("multiCall: a faulting call is rolled back alone, the others are committed", () =>
    withHub({}, async (url, hub) => {
      const s = await login(url, "builder1", "pw")
      const id = hub.createTask("sleep", [1])
      await ok(call(url, "host.updateHost", [0.0, true], { session: s }))
      await ok(call(url, "host.getTasks", [], { session: s }))
      const r = await ok(call(url, "system.multicall", [[
        { methodName: "host.openTask", params: [id] },
        { methodName: "host.closeTask", params: [id, "garbage"] },
        { methodName: "subsession", params: [] }
      ]], { session: s })) as ReadonlyArray<unknown>
      assert.strictEqual((r[1] as Record<string, unknown>)["faultCode"], 1)
      assert.isArray(r[2])
      assert.strictEqual(hub.state.task(id)?.state, 1, "opened, and the failed close undone")
      assert.strictEqual(hub.state.sessions.filter((x) => x.master === s.id).length, 1)
    }))
})

describe("fake hub: injected failures", () => {
  it.scoped("http, fault, reset, and a lost reply after commit (retry → 1009)", () => {
    const plan = new Map<string, NonNullable<FakeHubOptions["inject"]>>()
    return withHub({
      inject: (req) => plan.get(req.methodName)?.(req)
    }, async (url, hub) => {
      const s = await login(url, "builder1", "pw")
      plan.set("echo", (req) => (req.attempt === 1 ? { http: 503 } : undefined))
      const first = await call(url, "echo", [1], { session: s, callnum: 10 })
      assert.strictEqual(first.status, 503)
      assert.deepStrictEqual((await call(url, "echo", [1], { session: s, callnum: 10 })).value, [1])
      plan.set("getAPIVersion", () => ({ fault: [1014, "server is offline"] }))
      assert.strictEqual((await call(url, "getAPIVersion")).fault?.faultCode, 1014)
      plan.set("getKojiVersion", () => ({ reset: true }))
      let reset = false
      await call(url, "getKojiVersion").catch(() => {
        reset = true
      })
      assert.isTrue(reset)
      plan.set("subsession", (req) => (req.attempt === 1 ? { afterCommit: { http: 502 } } : undefined))
      const lost = await call(url, "subsession", [], { session: s, callnum: 11 })
      assert.strictEqual(lost.status, 502)
      assert.strictEqual(hub.state.sessions.filter((x) => x.master === s.id).length, 1)
      const retry = await call(url, "subsession", [], { session: s, callnum: 11 })
      assert.strictEqual(retry.fault?.faultCode, 1009)
      const rec = hub.state.calls.filter((c) => c.method === "subsession")
      assert.deepStrictEqual(rec.map((c) => c.callnum), [11, 11])
      // a reset after commit: the change is there, the reply is not
      plan.set("host.updateHost", (req) => (req.attempt === 1 ? { afterCommit: { reset: true } } : undefined))
      let dropped = false
      await call(url, "host.updateHost", [1.5, true], { session: s, callnum: 12 }).catch(() => {
        dropped = true
      })
      assert.isTrue(dropped)
      assert.strictEqual(hub.state.host("builder1")?.taskLoad, 1.5)
      // whitelisted: the retry with the same callnum runs again
      assert.isNull(await ok(call(url, "host.updateHost", [1.5, true], { session: s, callnum: 12 })))
      plan.set("getLoggedInUser", () => ({ delayMs: 150 }))
      const t0 = Date.now()
      const me = await ok(call(url, "getLoggedInUser", [], { session: s, callnum: 13 })) as Record<string, unknown>
      assert.strictEqual(me["name"], "builder1")
      assert.isAtLeast(Date.now() - t0, 140)
    })
  })
})
