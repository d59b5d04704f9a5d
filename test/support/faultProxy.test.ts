/**
 * The fault proxy against a real fake hub: each fault kind does what it says (seen from a raw
 * HTTP client and from the hub's call log), rules pick methods, rates are seeded and replayable,
 * outages refuse then recover, and a TLS hub works through it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import { KojiHub, type HubOptions } from "../../src/hub/KojiHub.js"
import { decodeResponse, encodeMethodCall, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { HOST, PASSWORD } from "../daemon/harness.js"
import { type FaultKind, type FaultProxy, type FaultSchedule, FAULT_KINDS, FORWARDING_KINDS, startFaultProxy } from "./faultProxy.js"
import { testPki } from "./tls.js"

/** What a raw client saw: a whole answer, or an error (with the status and bytes that came before it). */
type Outcome =
  | { readonly ok: true; readonly status: number; readonly type: string; readonly body: string; readonly ms: number }
  | { readonly ok: false; readonly error: string; readonly status?: number; readonly received: number; readonly expected?: number; readonly ms: number }

/** One POST on a fresh connection, as a client with a timeout. */
const post = (
  url: string,
  body: string | Buffer,
  o: { readonly type?: string; readonly headers?: Record<string, string>; readonly timeoutMs?: number } = {}
): Effect.Effect<Outcome> =>
  Effect.async<Outcome>((resume) => {
    const started = Date.now()
    const buf = typeof body === "string" ? Buffer.from(body) : body
    let status: number | undefined
    let expected: number | undefined
    let received = 0
    let done = false
    const finish = (o: Outcome): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      resume(Effect.succeed(o))
    }
    const fail = (e: Error & { code?: string }): void =>
      finish({
        ok: false, error: e.code ?? e.message, received, ms: Date.now() - started,
        ...(status !== undefined ? { status } : {}), ...(expected !== undefined ? { expected } : {})
      })
    const req = http.request(url, {
      method: "POST", agent: false,
      headers: { "content-type": o.type ?? "text/xml", "content-length": String(buf.length), ...o.headers }
    }, (res) => {
      status = res.statusCode
      expected = res.headers["content-length"] !== undefined ? Number(res.headers["content-length"]) : undefined
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => {
        received += c.length
        chunks.push(c)
      })
      res.on("error", fail)
      res.on("aborted", () => fail(Object.assign(new Error("aborted"), { code: "ABORTED" })))
      res.on("end", () => {
        if (expected !== undefined && received < expected) return fail(Object.assign(new Error("short body"), { code: "SHORT" }))
        finish({ ok: true, status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body: Buffer.concat(chunks).toString(), ms: Date.now() - started })
      })
    })
    req.on("error", fail)
    const timer = setTimeout(() => {
      req.destroy(Object.assign(new Error("client timeout"), { code: "CLIENT_TIMEOUT" }))
    }, o.timeoutMs ?? 10_000)
    req.end(buf)
    return Effect.sync(() => req.destroy())
  })

const xmlCall = (url: string, method: string, params: ReadonlyArray<XmlRpcValue> = [], timeoutMs?: number) =>
  post(url, encodeMethodCall(method, params), timeoutMs === undefined ? {} : { timeoutMs })

const pause = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

/** Real-time wait until `cond` holds (at most 10 s). */
const waitFor = (what: string, cond: () => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (!cond()) {
      if (Date.now() > deadline) return assert.fail(`timed out waiting for ${what}`)
      yield* pause(10)
    }
  })

const hubCalls = (hub: FakeHub, method: string) => hub.state.calls.filter((c) => c.method === method)

/** A fake hub with host "builder" and a proxy in front of it. */
const setup = (schedule: FaultSchedule = {}, extra: { readonly seed?: number; readonly latencyMs?: readonly [number, number]; readonly hangMs?: number } = {}) =>
  Effect.gen(function*() {
    const hub = yield* startFakeHub({ hosts: [{ name: HOST, password: PASSWORD }] })
    const proxy = yield* startFaultProxy({ upstream: hub.url, seed: extra.seed ?? 1, schedule, ...extra })
    return { hub, proxy }
  })

/** `login` commits a session row on the hub, so it shows whether a request reached the hub. */
const login = (proxy: FaultProxy, timeoutMs?: number) => xmlCall(proxy.url, "login", [HOST, PASSWORD], timeoutMs)

const onlyKind = (proxy: FaultProxy, kind: FaultKind, n = 1) => {
  const s = proxy.stats()
  assert.strictEqual(s.faulted, n, proxy.summary())
  assert.strictEqual(s.byKind[kind], n, proxy.summary())
  for (const k of FAULT_KINDS) if (k !== kind) assert.strictEqual(s.byKind[k], 0, `${k}: ${proxy.summary()}`)
}

describe("fault proxy: each kind", () => {
  it.scopedLive("no fault: the hub's answer passes through byte for byte", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup()
      const direct = yield* xmlCall(hub.url, "echo", ["a", 1])
      const through = yield* xmlCall(proxy.url, "echo", ["a", 1])
      assert.isTrue(direct.ok && through.ok)
      if (direct.ok && through.ok) {
        assert.strictEqual(through.body, direct.body)
        assert.strictEqual(through.type, direct.type)
      }
      assert.strictEqual(proxy.stats().forwarded, 1)
      assert.strictEqual(proxy.stats().faulted, 0)
      assert.deepStrictEqual(proxy.requests.map((r) => [r.method, r.forwarded, r.hub?.status]), [["echo", true, 200]])
    }))

  it.scopedLive("resetBefore: the connection is reset and the hub never sees the call", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "resetBefore", times: 1 }] })
      const first = yield* login(proxy)
      assert.isFalse(first.ok)
      if (!first.ok) assert.strictEqual(first.error, "ECONNRESET")
      assert.strictEqual(hubCalls(hub, "login").length, 0)
      assert.strictEqual(hub.state.sessions.length, 0)
      const second = yield* login(proxy)
      assert.isTrue(second.ok)
      assert.strictEqual(hub.state.sessions.length, 1)
      onlyKind(proxy, "resetBefore")
      assert.deepStrictEqual(proxy.requests.map((r) => [r.fault ?? "-", r.forwarded]), [["resetBefore", false], ["-", true]])
    }))

  it.scopedLive("resetAfter: the hub commits the call, then the reply is lost to a reset", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "resetAfter", times: 1 }] })
      const first = yield* login(proxy)
      assert.isFalse(first.ok)
      if (!first.ok) {
        assert.strictEqual(first.error, "ECONNRESET")
        assert.isUndefined(first.status, "not a byte of the answer reached the client")
      }
      assert.strictEqual(hub.state.sessions.length, 1, "the hub committed the login")
      assert.isDefined(hubCalls(hub, "login")[0]?.result)
      const rec = proxy.faults()[0]!
      assert.isTrue(rec.forwarded)
      assert.deepStrictEqual(rec.hub, { status: 200 })
      onlyKind(proxy, "resetAfter")
    }))

  for (const [kind, status, title] of [["http500", 500, "500 Internal Server Error"], ["http502", 502, "502 Bad Gateway"], ["http503", 503, "503 Service Unavailable"]] as const) {
    it.scopedLive(`${kind}: HTTP ${status} with an HTML page, not forwarded`, () =>
      Effect.gen(function*() {
        const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind, times: 1 }] })
        const r = yield* login(proxy)
        assert.isTrue(r.ok)
        if (r.ok) {
          assert.strictEqual(r.status, status)
          assert.match(r.type, /^text\/html/)
          assert.include(r.body, `<title>${title}</title>`)
        }
        assert.strictEqual(hubCalls(hub, "login").length, 0)
        onlyKind(proxy, kind)
        assert.isFalse(proxy.faults()[0]!.forwarded)
      }))
  }

  it.scopedLive("hang: no answer until the client gives up; the hub never sees the call", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "hang", times: 1 }] })
      const r = yield* login(proxy, 400)
      assert.isFalse(r.ok)
      if (!r.ok) {
        assert.strictEqual(r.error, "CLIENT_TIMEOUT")
        assert.isAtLeast(r.ms, 390)
        assert.isUndefined(r.status)
      }
      assert.strictEqual(hubCalls(hub, "login").length, 0)
      onlyKind(proxy, "hang")
      assert.isTrue((yield* login(proxy)).ok, "the next call goes through")
    }))

  it.scopedLive("hang with hangMs: the connection is reset after that long", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "hang", times: 1 }] }, { hangMs: 200 })
      const r = yield* login(proxy, 5000)
      assert.isFalse(r.ok)
      if (!r.ok) {
        assert.strictEqual(r.error, "ECONNRESET")
        assert.isAtLeast(r.ms, 190)
        assert.isBelow(r.ms, 4000)
      }
      assert.strictEqual(hubCalls(hub, "login").length, 0)
    }))

  it.scopedLive("truncate: the hub commits; the client gets the headers and half the body, then the connection ends", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "truncate", times: 1 }] })
      const r = yield* login(proxy)
      assert.isFalse(r.ok)
      if (!r.ok) {
        assert.strictEqual(r.status, 200)
        assert.isDefined(r.expected)
        assert.isAbove(r.received, 0)
        assert.strictEqual(r.received, Math.floor(r.expected! / 2))
      }
      assert.strictEqual(hub.state.sessions.length, 1, "the hub committed the login")
      assert.isTrue(proxy.faults()[0]!.forwarded)
      onlyKind(proxy, "truncate")
    }))

  it.scopedLive("notXml: 200 with an HTML body, not forwarded", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "notXml", times: 1 }] })
      const r = yield* login(proxy)
      assert.isTrue(r.ok)
      if (r.ok) {
        assert.strictEqual(r.status, 200)
        assert.match(r.type, /^text\/html/)
        const decoded = decodeResponse(r.body)
        assert.isTrue(Either.isLeft(decoded) && decoded.left._tag === "XmlRpcParseError")
      }
      assert.strictEqual(hubCalls(hub, "login").length, 0)
      onlyKind(proxy, "notXml")
    }))

  it.scopedLive("serverOffline: the XML-RPC fault 1014 'server is offline', not forwarded", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "login", kind: "serverOffline", times: 1 }] })
      const r = yield* login(proxy)
      assert.isTrue(r.ok)
      if (r.ok) {
        assert.strictEqual(r.status, 200)
        const decoded = decodeResponse(r.body)
        assert.isTrue(Either.isLeft(decoded))
        if (Either.isLeft(decoded)) {
          assert.strictEqual(decoded.left._tag, "ServerOffline")
          assert.isTrue("faultCode" in decoded.left && decoded.left.faultCode === 1014)
          assert.isTrue("faultString" in decoded.left && decoded.left.faultString === "server is offline")
        }
      }
      assert.strictEqual(hubCalls(hub, "login").length, 0)
      onlyKind(proxy, "serverOffline")
    }))

  it.scopedLive("latency: forwarded after a delay within latencyMs", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "echo", kind: "latency", times: 1 }] }, { latencyMs: [300, 400] })
      const slow = yield* xmlCall(proxy.url, "echo", [1])
      const plain = yield* xmlCall(proxy.url, "echo", [1])
      assert.isTrue(slow.ok && plain.ok)
      if (slow.ok && plain.ok) {
        assert.isAtLeast(slow.ms, 300)
        assert.strictEqual(slow.body, plain.body)
      }
      assert.strictEqual(hubCalls(hub, "echo").length, 2)
      onlyKind(proxy, "latency")
      assert.isTrue(proxy.faults()[0]!.forwarded)
    }))
})

const hubFor = (options: HubOptions) =>
  Layer.build(KojiHub.layerWithTransport(options)).pipe(Effect.map((c) => Context.get(c, KojiHub)))

describe("fault proxy: rules", () => {
  it.scopedLive("rules match host.updateHost, rawUpload and multiCall by name, with skip and times", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({
        rules: [
          { match: "host.updateHost", kind: "http503", skip: 1, times: 2 },
          { match: "rawUpload", kind: "resetAfter", times: 1 },
          { match: (r) => r.method === "multiCall" && r.calls.includes("host.getHost"), kind: "serverOffline", times: 1 }
        ]
      })
      const client = yield* hubFor({ server: proxy.url, user: HOST, password: PASSWORD, maxRetries: 3, retryInterval: 0.01, offlineRetryInterval: 0.01 })
      const session = yield* client.login(true)
      for (let i = 0; i < 4; i++) yield* session.call("host.updateHost", [0.0, true])
      const reply = yield* session.rawUpload({ path: "proxytest/up", name: "x.log", offset: 0, overwrite: true, data: new TextEncoder().encode("hello") })
      const batch = yield* session.multiCall([{ method: "host.getHost" }, { method: "host.getID" }])
      assert.strictEqual(batch.length, 2)
      assert.isTrue(batch.every(Either.isRight))
      const seen = (m: string) => proxy.requests.filter((r) => r.method === m).map((r) => r.fault ?? "-")
      // updateHost: the first passes, the next two get 503 (each retried by the client), then none.
      assert.deepStrictEqual(seen("host.updateHost"), ["-", "http503", "http503", "-", "-", "-"])
      assert.strictEqual(hubCalls(hub, "host.updateHost").length, 4)
      // rawUpload: the hub wrote the chunk, the reply was lost; the client re-sent it at once with
      // the same callnum (an upload changes no table, so the hub runs it again; overwrite as the daemon sends it).
      assert.deepStrictEqual(seen("rawUpload"), ["resetAfter", "-"])
      assert.strictEqual(hub.state.upload("proxytest/up/x.log")?.toString(), "hello")
      assert.strictEqual(reply.size, 5)
      assert.deepStrictEqual(seen("multiCall"), ["serverOffline", "-"])
      assert.deepStrictEqual(proxy.requests.find((r) => r.method === "multiCall")!.calls, ["host.getHost", "host.getID"])
      const s = proxy.stats()
      assert.strictEqual(s.byMethod["host.updateHost"]!.faulted, 2)
      assert.strictEqual(s.byMethod["rawUpload"]!.byKind.resetAfter, 1)
      assert.strictEqual(s.byMethod["multiCall"]!.byKind.serverOffline, 1)
      assert.strictEqual(s.faulted, 4)
      assert.deepStrictEqual(proxy.faults().map((r) => r.source), [{ rule: 0 }, { rule: 0 }, { rule: 1 }, { rule: 2 }])
      assert.isDefined(proxy.requests.find((r) => r.method === "rawUpload")!.sessionId)
    }))

  it.scopedLive("the KojiHub client re-sends a reset call once at once and gets its answer", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "host.getID", kind: "resetBefore", times: 1 }] })
      const client = yield* hubFor({ server: proxy.url, user: HOST, password: PASSWORD, maxRetries: 0, retryInterval: 60 })
      const session = yield* client.login(true)
      const id = yield* session.call("host.getID")
      assert.strictEqual(id, hub.state.host(HOST)!.id)
      assert.deepStrictEqual(proxy.requests.filter((r) => r.method === "host.getID").map((r) => r.fault ?? "-"), ["resetBefore", "-"])
    }))

  it.scopedLive("setSchedule and addRule change the faults of a running proxy", () =>
    Effect.gen(function*() {
      const { proxy } = yield* setup()
      assert.isTrue((yield* xmlCall(proxy.url, "echo")).ok)
      proxy.addRule({ match: "echo", kind: "http502", times: 1 })
      const r = yield* xmlCall(proxy.url, "echo")
      assert.isTrue(r.ok && r.status === 502)
      proxy.setSchedule({ rates: { notXml: 1 } })
      const n = yield* xmlCall(proxy.url, "echo")
      assert.isTrue(n.ok && n.type.startsWith("text/html") && n.status === 200)
      proxy.setSchedule({})
      const ok = yield* xmlCall(proxy.url, "echo")
      assert.isTrue(ok.ok && ok.status === 200 && ok.type === "text/xml")
      assert.deepStrictEqual(proxy.requests.map((x) => x.fault ?? "-"), ["-", "http502", "notXml", "-"])
    }))
})

/** Kinds that answer at once (everything but hang), for rate runs. */
const QUICK_RATES = {
  resetBefore: 0.015, resetAfter: 0.015, http500: 0.01, http502: 0.01, http503: 0.01,
  truncate: 0.01, notXml: 0.01, serverOffline: 0.01, latency: 0.01
} as const

describe("fault proxy: rates and seeds", () => {
  it.scopedLive("10 % of calls faulted, counted by kind and by method; ineligible calls never", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rates: QUICK_RATES, eligible: (r) => r.method !== "getAPIVersion" }, { seed: 20261124, latencyMs: [1, 3] })
      for (let i = 0; i < 300; i++) {
        yield* xmlCall(proxy.url, "echo", [i])
        if (i % 3 === 0) yield* xmlCall(proxy.url, "getAPIVersion")
      }
      const s = proxy.stats()
      assert.strictEqual(s.requests, 400)
      assert.strictEqual(s.byMethod["getAPIVersion"]!.faulted, 0)
      assert.strictEqual(s.byMethod["echo"]!.faulted, s.faulted)
      // ~10 % of 300 eligible calls; the seed fixes the number, the bounds say it is the right rate.
      assert.isAtLeast(s.faulted, 18, proxy.summary())
      assert.isAtMost(s.faulted, 45, proxy.summary())
      const faults = proxy.faults()
      assert.strictEqual(faults.length, s.faulted)
      assert.strictEqual(FAULT_KINDS.reduce((a, k) => a + s.byKind[k], 0), s.faulted)
      for (const k of FAULT_KINDS) assert.strictEqual(faults.filter((f) => f.fault === k).length, s.byKind[k])
      assert.isAtLeast(FAULT_KINDS.filter((k) => s.byKind[k] > 0).length, 6, "most kinds occur")
      assert.strictEqual(s.byKind.hang, 0)
      // The hub saw exactly the forwarded requests.
      const forwardedEcho = proxy.requests.filter((r) => r.method === "echo" && r.forwarded).length
      assert.strictEqual(hubCalls(hub, "echo").length, forwardedEcho)
      assert.strictEqual(s.forwarded, hub.state.calls.length)
      assert.strictEqual(s.forwarded, s.requests - faults.filter((f) => !FORWARDING_KINDS.has(f.fault!)).length)
      assert.include(proxy.summary(), "seed 20261124")
    }))

  it.scopedLive("the same seed gives the same faults; each method's sequence does not depend on interleaving", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const schedule: FaultSchedule = { rates: { ...QUICK_RATES, resetBefore: 0.1, http503: 0.1 } }
      const run = (seed: number, order: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const proxy = yield* startFaultProxy({ upstream: hub.url, seed, schedule, latencyMs: [1, 2] })
          for (const m of order) yield* xmlCall(proxy.url, m)
          return proxy
        })
      const order = Array.from({ length: 80 }, (_, i) => (i % 4 === 0 ? "getAPIVersion" : "echo"))
      const sig = (p: FaultProxy, method?: string) =>
        p.requests.filter((r) => method === undefined || r.method === method).map((r) => r.fault ?? "-").join(",")
      const a = yield* run(7, order)
      const b = yield* run(7, order)
      const c = yield* run(8, order)
      assert.isAbove(a.stats().faulted, 5)
      assert.strictEqual(sig(b), sig(a))
      assert.notStrictEqual(sig(c), sig(a))
      assert.strictEqual(a.seed, 7)
      // Other interleaving, same per-method decisions.
      const shuffled = [...order.filter((m) => m === "echo"), ...order.filter((m) => m !== "echo")]
      const d = yield* run(7, shuffled)
      assert.strictEqual(sig(d, "echo"), sig(a, "echo"))
      assert.strictEqual(sig(d, "getAPIVersion"), sig(a, "getAPIVersion"))
    }))

  it.scopedLive("a rule with a probability is seeded too", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const run = (seed: number) =>
        Effect.gen(function*() {
          const proxy = yield* startFaultProxy({ upstream: hub.url, seed, schedule: { rules: [{ match: "echo", kind: "http500", probability: 0.3 }] } })
          for (let i = 0; i < 40; i++) yield* xmlCall(proxy.url, "echo")
          return proxy.requests.map((r) => r.fault ?? "-").join(",")
        })
      const a = yield* run(99)
      assert.strictEqual(yield* run(99), a)
      const n = a.split(",").filter((x) => x === "http500").length
      assert.isAtLeast(n, 4)
      assert.isAtMost(n, 24)
    }))
})

describe("fault proxy: outages", () => {
  it.scopedLive("refuse: connections are refused for the window, then the hub is back on the same URL", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup()
      assert.isTrue((yield* xmlCall(proxy.url, "echo")).ok)
      proxy.outage(600)
      assert.isTrue(proxy.down())
      const refused = yield* xmlCall(proxy.url, "echo")
      assert.isFalse(refused.ok)
      if (!refused.ok) assert.strictEqual(refused.error, "ECONNREFUSED")
      yield* waitFor("the outage to end", () => !proxy.down())
      const back = yield* xmlCall(proxy.url, "echo")
      assert.isTrue(back.ok && back.status === 200)
      assert.strictEqual(hubCalls(hub, "echo").length, 2)
      assert.strictEqual(proxy.outages.length, 1)
      assert.strictEqual(proxy.outages[0]!.mode, "refuse")
      assert.isAtLeast(proxy.outages[0]!.until - proxy.outages[0]!.from, 600)
    }))

  it.scopedLive("reset: connections are reset during the window; restore ends it early; a call in flight is cut", () =>
    Effect.gen(function*() {
      const { hub, proxy } = yield* setup({ rules: [{ match: "getAPIVersion", kind: "latency", times: 1 }] }, { latencyMs: [500, 500] })
      // A call waiting in the proxy when the outage begins loses its connection.
      const inFlight = yield* Effect.fork(xmlCall(proxy.url, "getAPIVersion"))
      yield* waitFor("the call to reach the proxy", () => proxy.requests.length === 1)
      proxy.outage(60_000, "reset")
      const cut = yield* inFlight.await.pipe(Effect.flatten)
      assert.isFalse(cut.ok)
      assert.strictEqual(proxy.stats().outageCut, 1)
      const r = yield* xmlCall(proxy.url, "echo")
      assert.isFalse(r.ok)
      if (!r.ok) assert.strictEqual(r.error, "ECONNRESET")
      assert.strictEqual(proxy.stats().outageResets, 1)
      yield* Effect.promise(proxy.restore)
      assert.isFalse(proxy.down())
      assert.isTrue((yield* xmlCall(proxy.url, "echo")).ok)
      assert.strictEqual(hubCalls(hub, "echo").length, 1)
      assert.isBelow(proxy.outages[0]!.until - proxy.outages[0]!.from, 60_000)
    }))

  it.scopedLive("a KojiHub client waits out a refused outage with its retries", () =>
    Effect.gen(function*() {
      const { proxy } = yield* setup()
      const client = yield* hubFor({ server: proxy.url, user: HOST, password: PASSWORD, maxRetries: 50, retryInterval: 0.05 })
      const session = yield* client.login(true)
      proxy.outage(700)
      const started = Date.now()
      const id = yield* session.call("host.getID")
      assert.isNumber(id)
      assert.isAtLeast(Date.now() - started, 600)
      assert.isFalse(proxy.down())
    }))
})

describe("fault proxy: TLS hub", () => {
  it.scopedLive("terminates TLS with the hub's certificate and logs in to the hub with the host's certificate", () =>
    Effect.gen(function*() {
      const pki = yield* testPki([HOST])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" },
        hosts: [{ name: HOST }]
      })
      const proxy = yield* startFaultProxy({
        upstream: hub.url, seed: 3,
        schedule: { rules: [{ match: "host.getID", kind: "http503", times: 1 }, { match: "echo", kind: "resetBefore", times: 1 }] },
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, upstreamCert: fs.readFileSync(pki.clientFiles[HOST]!, "utf8") }
      })
      assert.match(proxy.url, /^https:\/\/127\.0\.0\.1:\d+\/kojihub$/)
      const client = yield* hubFor({ server: proxy.url, serverca: pki.caFile, cert: pki.clientFiles[HOST]!, maxRetries: 3, retryInterval: 0.01 })
      const session = yield* client.login(true)
      const id = yield* session.call("host.getID")
      assert.strictEqual(id, hub.state.host(HOST)!.id)
      assert.deepStrictEqual(proxy.requests.map((r) => `${r.method}${r.fault === undefined ? "" : `:${r.fault}`}`), [
        "sslLogin", "exclusiveSession", "echo:resetBefore", "echo", "host.getID:http503", "host.getID"
      ])
      assert.strictEqual(hub.state.session(session.sessionId)?.userId, hub.state.host(HOST)!.userId)
    }))
})
