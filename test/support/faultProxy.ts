/**
 * A fault-injecting proxy between a koji client (the daemon) and the fake hub, for the hub-fault
 * tests of issue 12 §2. It speaks HTTP (HTTPS when the hub does, terminating TLS with the hub's
 * own certificate so the client's `serverca` still verifies it): it reads each request, names it
 * by its XML-RPC method (`rawUpload` for the fast-upload POST), and either forwards it or injects a
 * fault, from a seeded schedule of per-request rates and explicit rules. Outage windows take the
 * "hub" down for a while (connections refused, or reset).
 *
 * Why HTTP-level and not TCP-level: the faults that matter are per call (a reply lost after the
 * hub committed `host.closeTask`, a 503 on one `rawUpload` chunk) and need the method name and the
 * hub's answer; a TCP relay sees neither, and under TLS it sees only ciphertext. Every daemon test
 * talks plain http to the fake hub; for the TLS hub tests the proxy terminates TLS and opens its
 * own TLS connection to the hub, presenting `tls.upstreamCert` if given. So a certificate login
 * through the proxy logs in as the proxy's certificate (use the host's), and the hub's
 * "ssllogin-renegotiate" mode is not supported through it.
 *
 * Determinism: each method has its own PRNG stream derived from the seed, and every request draws
 * the same amount from its method's stream, so the n-th call of a method gets the same decision
 * for a seed however calls of other methods interleave. Rules with a probability draw from their
 * own streams. The seed is printed at start and returned (`seed`); FAULT_PROXY_SEED sets it when
 * the test does not.
 */
import { Effect, type Scope } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo, Socket } from "node:net"
import { decodeCall, decodeResponse, encodeFault } from "../../src/hub/xmlrpc.js"

/** Every fault the proxy can inject. */
export const FAULT_KINDS = [
  "resetBefore", "resetAfter", "http500", "http502", "http503", "hang", "truncate", "notXml", "serverOffline", "latency"
] as const

/**
 * One fault kind:
 * - `resetBefore`: the connection is reset (RST; under TLS closed) before the request reaches the hub;
 * - `resetAfter`: the request is forwarded, the hub answers (and commits), then the connection is reset: the reply is lost;
 * - `http500`/`http502`/`http503`: that status with an HTML page (as Apache sends), not forwarded;
 * - `hang`: not forwarded, no answer, until the client gives up (or `hangMs`, then a reset);
 * - `truncate`: forwarded; the hub's headers and half its body are sent, then the connection closes;
 * - `notXml`: 200 with an HTML body, not forwarded;
 * - `serverOffline`: the XML-RPC fault ServerOffline (1014, "server is offline"), not forwarded;
 * - `latency`: forwarded after a delay drawn from `latencyMs`.
 */
export type FaultKind = (typeof FAULT_KINDS)[number]

/** Kinds after which the hub has seen (and possibly committed) the request. */
export const FORWARDING_KINDS: ReadonlySet<FaultKind> = new Set(["resetAfter", "truncate", "latency"])

/** A request as the proxy sees it. */
export interface ProxyRequest {
  /** 1-based arrival order. */
  readonly seq: number
  /** XML-RPC method name, "rawUpload" for an application/octet-stream POST, "?" when the body does not parse. */
  readonly method: string
  /** For a `multiCall`, the methods inside it, else empty. */
  readonly calls: ReadonlyArray<string>
  readonly sessionId: number | undefined
  readonly callnum: number | undefined
  /** Request path and query as sent (the session key is in the query for URL-session auth). */
  readonly url: string
}

/** Explicit fault for requests that match; checked in order before the rates. */
export interface FaultRule {
  /** Method name (as in `ProxyRequest.method`) or a predicate over the request. */
  readonly match: string | ((req: ProxyRequest) => boolean)
  readonly kind: FaultKind
  /** Let this many matching requests through before faulting (default 0). */
  readonly skip?: number
  /** Fault at most this many requests (default: no limit). */
  readonly times?: number
  /** Fault a matching request with this probability (default 1), from the rule's seeded stream. */
  readonly probability?: number
}

/** What to fault: rules first, then per-request rates for the eligible requests. */
export interface FaultSchedule {
  /** Per-request probability of each kind; they must add up to at most 1. */
  readonly rates?: Partial<Readonly<Record<FaultKind, number>>>
  /** Requests the rates apply to (default all); rules ignore it. */
  readonly eligible?: (req: ProxyRequest) => boolean
  readonly rules?: ReadonlyArray<FaultRule>
}

/** Options of the proxy. */
export interface FaultProxyOptions {
  /** The hub URL, e.g. `FakeHub.url`; the proxy's `url` is the same with its own port. */
  readonly upstream: string
  /** PRNG seed; default FAULT_PROXY_SEED, else random. */
  readonly seed?: number
  readonly schedule?: FaultSchedule
  /** Delay of a `latency` fault, uniform in [min, max] ms (default [50, 250]). */
  readonly latencyMs?: readonly [number, number]
  /** A `hang` resets the connection after this many ms; default never (the client must time out). */
  readonly hangMs?: number
  /** Required when `upstream` is https: the proxy serves `key`/`cert` and trusts `ca` for the hub. */
  readonly tls?: {
    readonly key: string
    readonly cert: string
    readonly ca: string
    /** PEM with certificate and key that the proxy presents to the hub. */
    readonly upstreamCert?: string
  }
}

/** How the proxy answers connections during an outage. */
export type OutageMode = "refuse" | "reset"

/** One outage window. */
export interface Outage {
  readonly mode: OutageMode
  /** ms since the proxy started. */
  readonly from: number
  /** ms since the proxy started; when it was ended early by `restore`, the time it ended. */
  readonly until: number
}

/** One request and what the proxy did with it. */
export interface ProxyRecord extends ProxyRequest {
  /** ms since the proxy started. */
  readonly at: number
  /** The injected fault, if any. */
  readonly fault?: FaultKind
  /** Where the fault came from: a rule (its index) or the rates. */
  readonly source?: { readonly rule: number } | "rate"
  /** True when the hub received the request. */
  readonly forwarded: boolean
  /** The hub's answer when forwarded: HTTP status, and the XML-RPC fault code if it was a fault. */
  readonly hub?: { readonly status: number; readonly faultCode?: number }
  /** Set when the hub could not be reached (the client's connection is then reset). */
  readonly upstreamError?: string
}

/** Counts per fault kind. */
export type KindCounts = Readonly<Record<FaultKind, number>>

/** Counts of one method. */
export interface MethodStats {
  readonly requests: number
  readonly forwarded: number
  readonly faulted: number
  readonly byKind: KindCounts
}

/** What the proxy has done so far. */
export interface FaultProxyStats {
  /** HTTP requests received. */
  readonly requests: number
  /** Requests the hub received. */
  readonly forwarded: number
  /** Requests with an injected fault (latency included). */
  readonly faulted: number
  readonly byKind: KindCounts
  readonly byMethod: Readonly<Record<string, MethodStats>>
  /** Forwards that failed because the hub was unreachable. */
  readonly upstreamErrors: number
  /** Connections reset because an outage in "reset" mode was on. */
  readonly outageResets: number
  /** Connections cut when an outage began. */
  readonly outageCut: number
}

/** A running proxy. */
export interface FaultProxy {
  /** Same as the upstream URL with the proxy's scheme, host and port. */
  readonly url: string
  readonly port: number
  readonly seed: number
  /** Every request so far, in arrival order. */
  readonly requests: ReadonlyArray<ProxyRecord>
  /** The requests that got a fault. */
  readonly faults: () => ReadonlyArray<ProxyRecord>
  readonly stats: () => FaultProxyStats
  readonly outages: ReadonlyArray<Outage>
  /** Replaces the schedule (rule counters start again). */
  readonly setSchedule: (schedule: FaultSchedule) => void
  /** Appends a rule to the current schedule. */
  readonly addRule: (rule: FaultRule) => void
  /** Takes the hub down for `ms` from now: new connections are refused (or reset), open ones are cut. */
  readonly outage: (ms: number, mode?: OutageMode) => void
  /** Ends the current outage now. */
  readonly restore: () => Promise<void>
  /** True during an outage, and until the proxy listens again after it. */
  readonly down: () => boolean
  /** One line for a failure message: seed, counts by kind. */
  readonly summary: () => string
  /** Stops listening and cuts every connection. */
  readonly close: () => Promise<void>
}

/** mulberry32: a small deterministic PRNG, uniform in [0, 1). */
export const mulberry32 = (seed: number): (() => number) => {
  let s = seed | 0
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const fnv1a = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

const zeroKinds = (): Record<FaultKind, number> => {
  const out: Partial<Record<FaultKind, number>> = {}
  for (const k of FAULT_KINDS) out[k] = 0
  // every key of FaultKind was set in the loop above
  return out as Record<FaultKind, number>
}

const HTML_STATUS: Readonly<Record<number, string>> = {
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable"
}

const apachePage = (status: number): string => {
  const title = `${status} ${HTML_STATUS[status] ?? "Error"}`
  return "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n" +
    `<title>${title}</title>\n</head><body>\n<h1>${HTML_STATUS[status] ?? "Error"}</h1>\n` +
    "<p>The server is temporarily unable to service your request due to maintenance downtime or capacity problems. " +
    "Please try again later.</p>\n<hr>\n<address>Apache/2.4.62 (Fedora Linux) Server at 127.0.0.1 Port 443</address>\n</body></html>\n"
}

const NOT_XML = "<!DOCTYPE html>\n<html><head><title>Koji maintenance</title></head>\n" +
  "<body><h1>Koji is down for maintenance</h1><p>Back soon.</p></body></html>\n"

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "te", "upgrade", "trailer"])

const firstHeader = (headers: http.IncomingHttpHeaders, name: string): string | undefined => {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

const intOrUndefined = (s: string | null | undefined): number | undefined =>
  s !== null && s !== undefined && /^\s*-?\d+\s*$/.test(s) ? Number.parseInt(s, 10) : undefined

/** Method name, multiCall contents, session id and callnum of a request. */
const describeRequest = (req: http.IncomingMessage, body: Buffer): Omit<ProxyRequest, "seq"> => {
  const url = req.url ?? "/"
  const query = new URL(url, "http://proxy").searchParams
  const headerSession = firstHeader(req.headers, "koji-session-id")
  const sessionId = intOrUndefined(headerSession ?? query.get("session-id"))
  const callnum = intOrUndefined(
    headerSession !== undefined
      ? firstHeader(req.headers, "koji-session-callnum") ?? firstHeader(req.headers, "koji-callnum")
      : query.get("callnum")
  )
  if (firstHeader(req.headers, "content-type") === "application/octet-stream") {
    return { method: "rawUpload", calls: [], sessionId, callnum, url }
  }
  const decoded = decodeCall(body)
  if (decoded._tag === "Left") return { method: "?", calls: [], sessionId, callnum, url }
  const { methodName, params } = decoded.right
  const calls: Array<string> = []
  if (methodName === "multiCall" || methodName === "system.multicall") {
    const list = params[0]
    if (Array.isArray(list)) {
      for (const c of list) {
        if (c !== null && typeof c === "object" && !Array.isArray(c) && "methodName" in c && typeof c["methodName"] === "string") {
          calls.push(c["methodName"])
        }
      }
    }
  }
  return { method: methodName, calls, sessionId, callnum, url }
}

interface HubAnswer {
  readonly status: number
  readonly headers: http.OutgoingHttpHeaders
  readonly body: Buffer
}

const readBody = (stream: http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    stream.on("data", (c: Buffer) => chunks.push(c))
    stream.on("end", () => resolve(Buffer.concat(chunks)))
    stream.on("error", reject)
    stream.on("aborted", () => reject(new Error("aborted")))
  })

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Starts a proxy in front of `options.upstream` (plain API; `startFaultProxy` is the scoped one). */
export const makeFaultProxy = async (options: FaultProxyOptions): Promise<FaultProxy> => {
  const upstream = new URL(options.upstream)
  const secure = upstream.protocol === "https:"
  if (secure && options.tls === undefined) throw new Error("fault proxy: an https upstream needs the tls option")
  const envSeed = intOrUndefined(process.env["FAULT_PROXY_SEED"])
  const seed = (options.seed ?? envSeed ?? Math.floor(Math.random() * 0x7fffffff)) >>> 0
  const [latencyMin, latencyMax] = options.latencyMs ?? [50, 250]
  const started = Date.now()
  const now = (): number => Date.now() - started

  let schedule: FaultSchedule = options.schedule ?? {}
  let ruleMatches: Array<number> = []
  let ruleFired: Array<number> = []
  let ruleStreams: Array<() => number> = []
  const resetRules = (): void => {
    const n = schedule.rules?.length ?? 0
    ruleMatches = Array.from({ length: n }, () => 0)
    ruleFired = Array.from({ length: n }, () => 0)
    ruleStreams = Array.from({ length: n }, (_, i) => mulberry32(seed ^ fnv1a(`rule#${i}`)))
  }
  const checkRates = (s: FaultSchedule): void => {
    const total = Object.values(s.rates ?? {}).reduce((a, b) => a + b, 0)
    if (total > 1 + 1e-9) throw new Error(`fault proxy: rates add up to ${total} > 1`)
  }
  checkRates(schedule)
  resetRules()

  const methodStreams = new Map<string, () => number>()
  const streamOf = (method: string): (() => number) => {
    let s = methodStreams.get(method)
    if (s === undefined) {
      s = mulberry32(seed ^ fnv1a(method))
      methodStreams.set(method, s)
    }
    return s
  }

  const decide = (req: ProxyRequest): { kind: FaultKind; source: NonNullable<ProxyRecord["source"]>; param: number } | undefined => {
    const stream = streamOf(req.method)
    const uKind = stream()
    const param = stream()
    const rules = schedule.rules ?? []
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!
      const hit = typeof rule.match === "string" ? rule.match === req.method : rule.match(req)
      if (!hit) continue
      ruleMatches[i] = (ruleMatches[i] ?? 0) + 1
      if (ruleMatches[i]! <= (rule.skip ?? 0)) continue
      if (rule.times !== undefined && (ruleFired[i] ?? 0) >= rule.times) continue
      if (rule.probability !== undefined && ruleStreams[i]!() >= rule.probability) continue
      ruleFired[i] = (ruleFired[i] ?? 0) + 1
      return { kind: rule.kind, source: { rule: i }, param }
    }
    if (schedule.rates === undefined || (schedule.eligible !== undefined && !schedule.eligible(req))) return undefined
    let acc = 0
    for (const kind of FAULT_KINDS) {
      acc += schedule.rates[kind] ?? 0
      if (uKind < acc) return { kind, source: "rate", param }
    }
    return undefined
  }

  const records: Array<ProxyRecord> = []
  let upstreamErrors = 0
  let outageResets = 0
  let outageCut = 0
  const outages: Array<{ mode: OutageMode; from: number; until: number }> = []
  let current: { mode: OutageMode; timer: NodeJS.Timeout; index: number } | undefined
  let closed = false

  const sockets = new Set<Socket>()
  const hangTimers = new Set<NodeJS.Timeout>()
  // A fresh upstream connection per request: a kept-alive one the hub closes just as it is reused
  // would reset a request the schedule did not fault.
  const upstreamAgent = secure
    ? new https.Agent({
      keepAlive: false,
      ca: options.tls!.ca,
      ...(options.tls!.upstreamCert !== undefined ? { cert: options.tls!.upstreamCert, key: options.tls!.upstreamCert } : {})
    })
    : new http.Agent({ keepAlive: false })

  const forward = (req: http.IncomingMessage, body: Buffer): Promise<HubAnswer> =>
    new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = {}
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v
      headers["content-length"] = String(body.length)
      headers["host"] = upstream.host
      const request = (secure ? https.request : http.request)({
        protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port,
        method: req.method ?? "POST", path: req.url ?? "/", headers, agent: upstreamAgent
      }, (res) => {
        readBody(res).then((b) => {
          const out: http.OutgoingHttpHeaders = {}
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v
          resolve({ status: res.statusCode ?? 502, headers: out, body: b })
        }, reject)
      })
      request.on("error", reject)
      request.end(body)
    })

  const reset = (socket: Socket): void => {
    if (socket.destroyed) return
    // resetAndDestroy needs a TCP handle; a TLS socket (over its TCP socket) is closed instead.
    if (secure) socket.destroy()
    else socket.resetAndDestroy()
  }

  const answer = (res: http.ServerResponse, status: number, type: string, body: string | Buffer, headers: http.OutgoingHttpHeaders = {}): void => {
    if (res.destroyed || res.socket === null || res.socket.destroyed) return
    const buf = typeof body === "string" ? Buffer.from(body, "utf8") : body
    res.writeHead(status, { ...headers, "content-type": type, "content-length": String(buf.length) })
    res.end(buf)
  }

  const hubSummary = (a: HubAnswer): NonNullable<ProxyRecord["hub"]> => {
    if (a.status !== 200) return { status: a.status }
    const r = decodeResponse(a.body)
    return r._tag === "Left" && "faultCode" in r.left ? { status: a.status, faultCode: r.left.faultCode } : { status: a.status }
  }

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const body = await readBody(req)
    const info: ProxyRequest = { seq: records.length + 1, ...describeRequest(req, body) }
    const decision = decide(info)
    const index = records.length
    const base: ProxyRecord = {
      ...info, at: now(), forwarded: false,
      ...(decision !== undefined ? { fault: decision.kind, source: decision.source } : {})
    }
    records.push(base)
    const update = (patch: Partial<ProxyRecord>): void => {
      records[index] = { ...records[index]!, ...patch }
    }
    const relay = async (): Promise<HubAnswer | undefined> => {
      try {
        const a = await forward(req, body)
        update({ forwarded: true, hub: hubSummary(a) })
        return a
      } catch (e) {
        upstreamErrors++
        update({ upstreamError: e instanceof Error ? e.message : String(e) })
        reset(req.socket)
        return undefined
      }
    }
    switch (decision?.kind) {
      case undefined: {
        const a = await relay()
        if (a !== undefined) answer(res, a.status, String(a.headers["content-type"] ?? "text/xml"), a.body, a.headers)
        return
      }
      case "latency": {
        await sleep(latencyMin + Math.floor(decision.param * (latencyMax - latencyMin + 1)))
        const a = await relay()
        if (a !== undefined) answer(res, a.status, String(a.headers["content-type"] ?? "text/xml"), a.body, a.headers)
        return
      }
      case "resetBefore":
        reset(req.socket)
        return
      case "resetAfter": {
        const a = await relay()
        if (a !== undefined) reset(req.socket)
        return
      }
      case "http500":
      case "http502":
      case "http503": {
        const status = decision.kind === "http500" ? 500 : decision.kind === "http502" ? 502 : 503
        answer(res, status, "text/html; charset=iso-8859-1", apachePage(status))
        return
      }
      case "hang": {
        if (options.hangMs !== undefined) {
          const t = setTimeout(() => {
            hangTimers.delete(t)
            reset(req.socket)
          }, options.hangMs)
          hangTimers.add(t)
        }
        return
      }
      case "truncate": {
        const a = await relay()
        if (a === undefined || res.socket === null || res.socket.destroyed) return
        res.writeHead(a.status, { ...a.headers, "content-length": String(a.body.length) })
        res.write(a.body.subarray(0, Math.floor(a.body.length / 2)), () => req.socket.end())
        return
      }
      case "notXml":
        answer(res, 200, "text/html; charset=utf-8", NOT_XML)
        return
      case "serverOffline":
        answer(res, 200, "text/xml", encodeFault(1014, "server is offline"))
        return
    }
  }

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    handle(req, res).catch((e: unknown) => {
      // The client went away mid-request (or its socket was cut by an outage): nothing to answer.
      if (!req.socket.destroyed) console.error("fault proxy: request failed", e)
      reset(req.socket)
    })
  }

  const track = (s: Socket): void => {
    if (current?.mode === "reset") {
      outageResets++
      reset(s)
      return
    }
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  }

  const createServer = (): http.Server => {
    const server = secure
      ? https.createServer({ key: options.tls!.key, cert: options.tls!.cert }, onRequest)
      : http.createServer(onRequest)
    // The proxy needs no keep-alive limit of its own; a client's idle connection stays until it closes it.
    server.keepAliveTimeout = 5000
    server.on(secure ? "secureConnection" : "connection", track)
    if (secure) {
      // A reset during an outage happens before the handshake.
      server.on("connection", (s: Socket) => {
        if (current?.mode === "reset") {
          outageResets++
          reset(s)
        }
      })
    }
    server.on("clientError", (_e, socket) => socket.destroy())
    return server
  }

  const listen = (server: http.Server, port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e)
      server.once("error", onError)
      server.listen(port, "127.0.0.1", () => {
        server.removeListener("error", onError)
        resolve()
      })
    })

  let server = createServer()
  await listen(server, 0)
  // listening on a TCP port, so address() is an AddressInfo
  const port = (server.address() as AddressInfo).port

  const cutAll = (): void => {
    for (const s of sockets) {
      outageCut++
      reset(s)
    }
    sockets.clear()
  }

  const closeServer = (s: http.Server): Promise<void> =>
    new Promise((resolve) => {
      if (!s.listening) return resolve()
      s.close(() => resolve())
      s.closeAllConnections()
    })

  /** Listens again on the same port unless an outage refuses again; retries while the port is still in use. */
  const relisten = async (): Promise<void> => {
    for (let i = 0; ; i++) {
      if (closed || server.listening || current?.mode === "refuse") return
      const next = createServer()
      try {
        await listen(next, port)
        server = next
        return
      } catch (e) {
        if (i >= 100) {
          console.error(`fault proxy: cannot listen on port ${port} again after an outage`, e)
          return
        }
        await sleep(20)
      }
    }
  }
  // Relistens run one after another, so two never race for the port.
  let relistening: Promise<void> = Promise.resolve()
  const scheduleRelisten = (): Promise<void> => (relistening = relistening.then(relisten))

  const endOutage = (): Promise<void> => {
    if (current === undefined) return relistening
    clearTimeout(current.timer)
    outages[current.index]!.until = Math.min(outages[current.index]!.until, now())
    current = undefined
    return scheduleRelisten()
  }

  const startOutage = (ms: number, mode: OutageMode): void => {
    if (closed) return
    if (current !== undefined) {
      clearTimeout(current.timer)
      outages[current.index]!.until = Math.min(outages[current.index]!.until, now())
    }
    const index = outages.push({ mode, from: now(), until: now() + ms }) - 1
    current = { mode, index, timer: setTimeout(() => void endOutage(), ms) }
    cutAll()
    // close() unlistens at once (`listening` turns false), so connects are refused from here on.
    if (mode === "refuse") void closeServer(server)
    else void scheduleRelisten()
  }

  const proxy: FaultProxy = {
    url: `${secure ? "https" : "http"}://127.0.0.1:${port}${upstream.pathname}${upstream.search}`,
    port,
    seed,
    requests: records,
    faults: () => records.filter((r) => r.fault !== undefined),
    stats: () => {
      const byKind = zeroKinds()
      const byMethod: Record<string, { requests: number; forwarded: number; faulted: number; byKind: Record<FaultKind, number> }> = {}
      let forwarded = 0
      let faulted = 0
      for (const r of records) {
        const m = byMethod[r.method] ?? (byMethod[r.method] = { requests: 0, forwarded: 0, faulted: 0, byKind: zeroKinds() })
        m.requests++
        if (r.forwarded) {
          forwarded++
          m.forwarded++
        }
        if (r.fault !== undefined) {
          faulted++
          m.faulted++
          byKind[r.fault]++
          m.byKind[r.fault]++
        }
      }
      return { requests: records.length, forwarded, faulted, byKind, byMethod, upstreamErrors, outageResets, outageCut }
    },
    outages,
    setSchedule: (s) => {
      checkRates(s)
      schedule = s
      resetRules()
    },
    addRule: (rule) => {
      schedule = { ...schedule, rules: [...(schedule.rules ?? []), rule] }
      const i = schedule.rules!.length - 1
      ruleMatches.push(0)
      ruleFired.push(0)
      ruleStreams.push(mulberry32(seed ^ fnv1a(`rule#${i}`)))
    },
    outage: (ms, mode = "refuse") => startOutage(ms, mode),
    restore: endOutage,
    down: () => current !== undefined || (!closed && !server.listening),
    summary: () => {
      const s = proxy.stats()
      const kinds = FAULT_KINDS.filter((k) => s.byKind[k] > 0).map((k) => `${k} ${s.byKind[k]}`).join(", ")
      return `fault proxy seed ${seed} (FAULT_PROXY_SEED=${seed}): ${s.requests} requests, ${s.forwarded} forwarded, ` +
        `${s.faulted} faulted${kinds === "" ? "" : ` (${kinds})`}, ${outages.length} outages, ${s.upstreamErrors} upstream errors`
    },
    close: async () => {
      if (closed) return
      closed = true
      if (current !== undefined) clearTimeout(current.timer)
      current = undefined
      for (const t of hangTimers) clearTimeout(t)
      hangTimers.clear()
      await relistening
      for (const s of sockets) s.destroy()
      sockets.clear()
      await closeServer(server)
      upstreamAgent.destroy()
    }
  }
  return proxy
}

/** A fault proxy closed with the scope; logs its URL and seed when it starts. */
export const startFaultProxy = (options: FaultProxyOptions): Effect.Effect<FaultProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => makeFaultProxy(options)).pipe(
      Effect.tap((p) => Effect.logInfo(`fault proxy ${p.url} → ${options.upstream}, seed ${p.seed} (replay with FAULT_PROXY_SEED=${p.seed})`))
    ),
    (p) =>
      Effect.promise(p.close).pipe(
        Effect.timeout("5 seconds"),
        Effect.tapError(() => Effect.logWarning("fault proxy: did not close within 5 s")),
        Effect.ignore
      )
  )
