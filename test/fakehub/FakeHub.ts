/**
 * A fake koji hub for tests: an in-process HTTP(S) XML-RPC server with the real hub's rules for
 * the builder-facing API (koji-protocol.md §1, §3, §4, §6, §10) and fault codes and strings as the
 * real hub sends them (koji-captures/). Tests read its tables through `state` and drive it as a
 * koji admin would (create and cancel tasks, disable hosts, expire sessions, take it offline).
 */
import { Effect, Either, type Scope } from "effect"
import { constants as cryptoConstants } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo, Socket } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type * as tls from "node:tls"
import { GenericError, ParameterError, isFault } from "../../src/koji/faults.js"
import {
  decodeCall, encodeFault, encodeResponse, isStruct, splitKwargs, type XmlRpcValue
} from "../../src/hub/xmlrpc.js"
import { CallContext, type HubCore, type HubSettings, type RequestEnv, asList, pyStr, pythonError } from "./context.js"
import { methods } from "./methods.js"
import { assignTask, runScheduler } from "./scheduler.js"
import { configureRemoteUser, enforceLock, openSession, parseQs } from "./sessions.js"
import { bindArgs } from "./signature.js"
import {
  type ChannelRow, Db, type HostRow, type RefusalRow, type RunRow, type SchedulerLogRow, type SessionRow,
  type TaskRow, type UserRow
} from "./state.js"
import { cancelTask as cancelTaskRow, freeTask as freeTaskRow, makeTask } from "./tasks.js"
import { beginRawUpload, finishRawUpload } from "./uploads.js"

export { TaskState, taskStateName } from "./state.js"
export type { ChannelRow, HostRow, RefusalRow, RunRow, SchedulerLogRow, SessionRow, TaskRow, UserRow }

/** The hub version the fake claims (Koji-Version header, getKojiVersion). */
export const FAKE_HUB_VERSION = "1.35.3"

/** What a test can make the hub do to one request instead of (or around) answering it. */
export type InjectAction =
  | undefined
  | { readonly http: number }
  | { readonly fault: readonly [number, string] }
  | { readonly reset: true }
  | { readonly delayMs: number }
  | { readonly afterCommit: { readonly http: number } | { readonly reset: true } }

/** The request an `inject` hook sees; `attempt` counts identical (method, session, callnum) requests from 1. */
export interface InjectRequest {
  readonly methodName: string
  readonly sessionId: number | undefined
  readonly callnum: number | undefined
  readonly attempt: number
}

/** Options of the fake hub. */
export interface FakeHubOptions {
  readonly tls?: {
    readonly key: string
    readonly cert: string
    /** PEM of the CA that signs client certificates. */
    readonly ca: string
    /**
     * "handshake": the client certificate is requested in the first handshake; "ssllogin-renegotiate":
     * only a request to /ssllogin renegotiates for it, which works under TLS 1.2 only (Apache's
     * stock config, §12); without a verified certificate /ssllogin answers 403.
     */
    readonly clientCert: "handshake" | "ssllogin-renegotiate"
  }
  readonly hosts?: ReadonlyArray<{
    readonly name: string
    readonly arches?: string
    readonly capacity?: number
    readonly enabled?: boolean
    readonly password?: string
    /** Channel names, default ["default"]. */
    readonly channels?: ReadonlyArray<string>
    /** `user_krb_principals` of the host's user, e.g. ["compile/builder.example.com@EXAMPLE.COM"]. */
    readonly krbPrincipals?: ReadonlyArray<string>
  }>
  /** Users that are not hosts (user 1 is always "kojiadmin", an admin). */
  readonly users?: ReadonlyArray<{
    readonly name: string
    readonly password?: string
    readonly admin?: boolean
    readonly krbPrincipals?: ReadonlyArray<string>
  }>
  /**
   * Request header taken as REMOTE_USER, which a web server in front sets after GSSAPI
   * (e.g. Apache's `RequestHeader set X-Remote-User "%{REMOTE_USER}s"`); off by default, because
   * anyone can send a header. With it, `sslLogin` is a GSSAPI login as the hub does it (§3.2).
   */
  readonly remoteUserHeader?: string
  /** hub.conf LoginCreatesUser (default true): an unknown login creates a NORMAL user, else AuthError "Unknown user". */
  readonly loginCreatesUser?: boolean
  /** Advertise header-auth in sinfo (default true); when false, session headers are ignored as by hubs < 1.31. */
  readonly headerAuth?: boolean
  /** Check callnums (default true, §1.5). */
  readonly checkCallnum?: boolean
  /** Bind sessions to the client IP (default true). */
  readonly checkClientIP?: boolean
  /** Seconds, 0 = off (default). */
  readonly sessionRenewalTimeout?: number
  /** Uploads land in <topdir>/work/<filepath>; default a temp dir removed with the hub. */
  readonly topdir?: string
  readonly scheduler?: {
    readonly maxJobs?: number
    readonly capacityOvercommit?: number
    readonly readyTimeout?: number
    readonly assignTimeout?: number
    readonly softRefusalTimeout?: number
    readonly hostTimeout?: number
    readonly runInterval?: number
  }
  readonly inject?: (req: InjectRequest) => InjectAction
  /** Clock in seconds (tests may drive it); default Date.now()/1000. */
  readonly now?: () => number
}

/** One request as the fake hub saw it. */
export interface CallRecord {
  readonly seq: number
  /** XML-RPC method, "rawUpload", or the HTTP verb of a non-POST request. */
  readonly method: string
  /** Session id and callnum as the request carried them (not validated). */
  readonly sessionId: number | undefined
  readonly callnum: number | undefined
  readonly path: string
  readonly query: string
  readonly params: ReadonlyArray<XmlRpcValue>
  readonly result?: XmlRpcValue
  readonly fault?: { readonly faultCode: number; readonly faultString: string }
  /** HTTP status when the answer was not 200 (400, 403, 405, injected). */
  readonly http?: number
  /** What `inject` did, if anything. */
  readonly injected?: InjectAction
  /**
   * For a call inside a multiCall: the seq of the multiCall record (which comes first). The
   * hub runs each inner call as a call of its own (§1.8), so they are listed too.
   */
  readonly within?: number
}

/** A file under <topdir>/work. */
export interface UploadedFile {
  /** Relative to <topdir>/work, e.g. "tasks/1/1/build.log". */
  readonly path: string
  readonly size: number
}

/** Read-only views of the fake hub's tables. */
export interface FakeHubState {
  readonly users: ReadonlyArray<Readonly<UserRow>>
  readonly sessions: ReadonlyArray<Readonly<SessionRow>>
  readonly hosts: ReadonlyArray<Readonly<HostRow>>
  readonly channels: ReadonlyArray<Readonly<ChannelRow>>
  readonly tasks: ReadonlyArray<Readonly<TaskRow>>
  readonly refusals: ReadonlyArray<Readonly<RefusalRow>>
  readonly runs: ReadonlyArray<Readonly<RunRow>>
  readonly schedulerLog: ReadonlyArray<SchedulerLogRow>
  readonly uploads: ReadonlyArray<UploadedFile>
  readonly calls: ReadonlyArray<CallRecord>
  readonly session: (id: number) => Readonly<SessionRow> | undefined
  readonly host: (name: string) => Readonly<HostRow> | undefined
  readonly task: (id: number) => Readonly<TaskRow> | undefined
  /** Content of an uploaded file, by path relative to <topdir>/work. */
  readonly upload: (relpath: string) => Buffer | undefined
  /** The decoded result of a finished task (the fault struct for a failed one). */
  readonly taskResult: (id: number) => XmlRpcValue
}

/** Options of the admin `createTask` (koji's make_task). */
export interface CreateTaskOptions {
  readonly arch?: string
  readonly channel?: string
  readonly priority?: number
  readonly parent?: number
  readonly label?: string
  /** Create it ASSIGNED to this host (no scheduler run row, like an admin override). */
  readonly assign?: string
  /** Owner user name; default kojiadmin. */
  readonly owner?: string
  /** The task's weight before a builder sets it (the hub's default is 1.0); for scheduler tests. */
  readonly weight?: number
}

/** A running fake hub. */
export interface FakeHub {
  /** "http(s)://127.0.0.1:PORT/kojihub" */
  readonly url: string
  readonly topdir: string
  readonly state: FakeHubState
  /** make_task as an admin: a FREE (or assigned) task; returns its id. */
  readonly createTask: (method: string, params: ReadonlyArray<XmlRpcValue>, opts?: CreateTaskOptions) => number
  /** cancelTask(id) as an admin: CANCELED, and its children with it. */
  readonly cancelTask: (id: number) => void
  /** Frees a task (FREE, no host), as the hub does on timeouts. */
  readonly freeTask: (id: number) => void
  /** assignTask as an admin (`override` leaves no run row, so the scheduler never takes it back). */
  readonly assignTask: (id: number, host: string, opts?: { readonly force?: boolean; readonly override?: boolean }) => boolean
  /** edit-host --enable/--disable */
  readonly setHostEnabled: (host: string, enabled: boolean) => void
  /** edit-host for arches/capacity, or a forced ready flag. */
  readonly setHost: (host: string, patch: { readonly arches?: string; readonly capacity?: number; readonly ready?: boolean }) => void
  /** Marks a session (and its subsessions) expired, as the renewal timeout does. */
  readonly expireSession: (sessionId: number) => void
  /** ServerOffline (1014) "server is offline" for every request while on. */
  readonly setOffline: (offline: boolean) => void
  /** scheduler.doRun(force=True). */
  readonly runScheduler: () => void
}

interface Prepared {
  readonly core: HubCore
  readonly ownTopdir: boolean
}

const ADMIN_ENV: RequestEnv = {
  remoteIp: "127.0.0.1", path: "/kojihub", query: "", headers: {}, sslClientVerify: undefined, sslClientCN: undefined
}

const setup = (options: FakeHubOptions): Prepared => {
  const ownTopdir = options.topdir === undefined
  const topdir = options.topdir ?? fs.mkdtempSync(path.join(os.tmpdir(), "fakehub-"))
  const sch = options.scheduler ?? {}
  const settings: HubSettings = {
    headerAuth: options.headerAuth ?? true,
    checkCallnum: options.checkCallnum ?? true,
    checkClientIP: options.checkClientIP ?? true,
    sessionRenewalTimeout: options.sessionRenewalTimeout ?? 0,
    maxJobs: sch.maxJobs ?? 15,
    capacityOvercommit: sch.capacityOvercommit ?? 5,
    readyTimeout: sch.readyTimeout ?? 180,
    assignTimeout: sch.assignTimeout ?? 300,
    softRefusalTimeout: sch.softRefusalTimeout ?? 900,
    hostTimeout: sch.hostTimeout ?? 900,
    runInterval: sch.runInterval ?? 60,
    topdir
  }
  const db = new Db()
  const core: HubCore = { db, settings, now: options.now ?? (() => Date.now() / 1000), locks: new Set() }
  const channel = (name: string): number => {
    const c = db.channel(name)
    if (c !== undefined) return c.id
    const id = db.channels.size + 1
    db.channels.set(id, { id, name, enabled: true })
    return id
  }
  channel("default")
  channel("createrepo")
  db.users.set(db.nextval("user"), { id: 1, name: "kojiadmin", password: null, status: 0, admin: true })
  const krbPrincipals = new Map<string, number>()
  for (const h of options.hosts ?? []) {
    const userId = db.nextval("user")
    db.users.set(userId, { id: userId, name: h.name, password: h.password ?? null, status: 0, admin: false })
    for (const p of h.krbPrincipals ?? []) krbPrincipals.set(p, userId)
    const id = db.hosts.size + 1
    db.hosts.set(id, {
      id, userId, name: h.name, arches: h.arches ?? "x86_64", capacity: h.capacity ?? 2.0, enabled: h.enabled ?? true,
      ready: false, taskLoad: 0, updateTs: null, description: null, comment: null,
      channels: (h.channels ?? ["default"]).map(channel), data: null
    })
  }
  for (const u of options.users ?? []) {
    const id = db.nextval("user")
    db.users.set(id, { id, name: u.name, password: u.password ?? null, status: 0, admin: u.admin ?? false })
    for (const p of u.krbPrincipals ?? []) krbPrincipals.set(p, id)
  }
  configureRemoteUser(core, {
    header: options.remoteUserHeader?.toLowerCase(),
    loginCreatesUser: options.loginCreatesUser ?? true,
    krbPrincipals
  })
  return { core, ownTopdir }
}

type Outcome = { readonly value: XmlRpcValue } | { readonly fault: { readonly faultCode: number; readonly faultString: string } }

const toFault = (e: unknown): { readonly faultCode: number; readonly faultString: string } => {
  if (isFault(e)) return { faultCode: e.faultCode, faultString: e.faultString }
  // A bug in the fake: report it as the hub reports a Python exception, and say so on stderr.
  console.error("fake hub: internal error", e)
  return { faultCode: 1, faultString: `<class 'Exception'>: ${e instanceof Error ? e.message : String(e)}` }
}

/** Runs one method in the current transaction (`_dispatch`, with `multiCall` handled inline). */
const callMethod = (ctx: CallContext, name: string, params: ReadonlyArray<XmlRpcValue>, outer: boolean): XmlRpcValue => {
  const isMulti = name === "multiCall" || name === "system.multicall"
  const def = isMulti ? undefined : methods.get(name)
  if (!isMulti && def === undefined) throw new GenericError({ faultString: `Invalid method: ${name}` })
  ctx.method = name
  if (outer) {
    openSession(ctx)
    enforceLock(ctx)
  }
  const { args, kwargs } = splitKwargs(params)
  if (isMulti) {
    const bound = bindArgs({ qualname: "ModXMLRPCRequestHandler.multiCall", method: true, params: [["calls"]] }, args, kwargs)
    if (typeof bound === "string") throw new ParameterError({ faultString: bound })
    return multiCall(ctx, bound.args["calls"] ?? null)
  }
  const bound = bindArgs(def!.sig, args, kwargs)
  if (typeof bound === "string") {
    throw def!.wrapped ? pythonError("TypeError", bound) : new ParameterError({ faultString: bound })
  }
  return def!.run(ctx, bound.args, bound.extra, bound.rest)
}

/** `ModXMLRPCRequestHandler.multiCall`: each call in a savepoint; `[result]` or a fault struct (§1.8). */
const multiCall = (ctx: CallContext, calls: XmlRpcValue): XmlRpcValue => {
  const list = asList(calls)
  if (list === undefined) throw pythonError("TypeError", `'${typeof calls}' object is not iterable`)
  const results: Array<XmlRpcValue> = []
  for (const call of list) {
    const sp = ctx.db.savepoint()
    try {
      if (!isStruct(call)) throw pythonError("TypeError", "list indices must be integers or slices, not str")
      const name = call["methodName"]
      const params = call["params"]
      if (name === undefined) throw pythonError("KeyError", "'methodName'")
      if (params === undefined) throw pythonError("KeyError", "'params'")
      const value = callMethod(ctx, pyStr(name), asList(params) ?? [], false)
      results.push([value])
    } catch (e) {
      ctx.db.rollbackTo(sp)
      const f = toFault(e)
      results.push({ faultCode: f.faultCode, faultString: f.faultString, traceback: ["Traceback (most recent call last):\n", `${f.faultString}\n`] })
    }
  }
  return results
}

/** One XML-RPC request in one transaction, committed as the hub commits (§1.6). */
const dispatch = (core: HubCore, env: RequestEnv, name: string, params: ReadonlyArray<XmlRpcValue>): Outcome => {
  core.db.begin()
  const ctx = new CallContext(core, env, name)
  try {
    const value = callMethod(ctx, name, params, true)
    if (ctx.commitPending) ctx.commit()
    core.db.end()
    return { value }
  } catch (e) {
    core.db.rollback()
    return { fault: toFault(e) }
  }
}

const firstHeader = (req: http.IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

const parseIntOrUndefined = (s: string | undefined): number | undefined => {
  if (s === undefined || !/^\s*-?\d+\s*$/.test(s)) return undefined
  return Number.parseInt(s, 10)
}

/** Session id and callnum as sent, for the call log and `inject` (no validation). */
const peekSession = (req: http.IncomingMessage, query: string): { sessionId: number | undefined; callnum: number | undefined } => {
  const hid = firstHeader(req, "koji-session-id")
  if (hid !== undefined) {
    return {
      sessionId: parseIntOrUndefined(hid),
      callnum: parseIntOrUndefined(firstHeader(req, "koji-session-callnum") ?? firstHeader(req, "koji-callnum"))
    }
  }
  try {
    const q = parseQs(query)
    return { sessionId: parseIntOrUndefined(q.get("session-id")?.[0]), callnum: parseIntOrUndefined(q.get("callnum")?.[0]) }
  } catch {
    return { sessionId: undefined, callnum: undefined }
  }
}

/** mod_wsgi's error for a request body the client did not finish sending. */
const CLIENT_GONE = pythonError("OSError", "request data read error")

const readBody = (req: http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    // A client that went away before the end of its request (killed, possibly while an inject delay
    // held the request) fails the read, as mod_wsgi's does: the caller's finally (an upload's
    // lock) runs instead of waiting forever for an end that never comes.
    const gone = () => reject(CLIENT_GONE)
    if (req.destroyed) return gone()
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
    req.on("close", () => (req.readableEnded ? undefined : gone()))
  })

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const FORBIDDEN = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>403 Forbidden</title>\n" +
  "</head><body>\n<h1>Forbidden</h1>\n<p>You don't have permission to access this resource.</p>\n</body></html>\n"

/** The client certificate as mod_ssl reports it (SSL_CLIENT_VERIFY, SSL_CLIENT_S_DN_CN). */
const peerCert = (socket: Socket): { verify: string | undefined; cn: string | undefined } => {
  if (!("encrypted" in socket)) return { verify: undefined, cn: undefined }
  const ts = socket as tls.TLSSocket
  const cert = ts.getPeerCertificate()
  if (cert === null || cert === undefined || Object.keys(cert).length === 0) return { verify: "NONE", cn: undefined }
  const cnRaw = cert.subject?.CN as string | ReadonlyArray<string> | undefined
  const cn = Array.isArray(cnRaw) ? cnRaw[0] : (cnRaw as string | undefined)
  return { verify: ts.authorized ? "SUCCESS" : `FAILED:${String(ts.authorizationError)}`, cn }
}

/** Apache's renegotiation for the client certificate under /ssllogin; fails under TLS 1.3 (§12). */
const renegotiate = (socket: tls.TLSSocket): Promise<boolean> =>
  new Promise((resolve) => {
    try {
      const started = socket.renegotiate({ requestCert: true, rejectUnauthorized: false }, (err) => resolve(err == null))
      if (started === false) resolve(false)
    } catch {
      resolve(false)
    }
  })

/** Starts a fake hub; the server is closed (and a temp topdir removed) when the scope closes. */
export const startFakeHub = (options: FakeHubOptions = {}): Effect.Effect<FakeHub, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ hub: FakeHub; close: () => Promise<void>; removeTopdir: () => void }>((resume) => {
      const { core, ownTopdir } = setup(options)
      const calls: Array<CallRecord> = []
      const attempts = new Map<string, number>()
      let offline = false
      const sockets = new Set<Socket>()

      const record = (r: Omit<CallRecord, "seq">): void => {
        calls.push({ seq: calls.length + 1, ...r })
      }

      /** The calls of a multiCall as records of their own, each with its answer. */
      const recordInner = (base: Omit<CallRecord, "seq" | "method" | "params">, within: number, list: XmlRpcValue | undefined, answers: XmlRpcValue) => {
        if (!Array.isArray(list) || !Array.isArray(answers)) return
        list.forEach((call, i) => {
          if (!isStruct(call)) return
          const answer = answers[i]
          const params = Array.isArray(call["params"]) ? call["params"] : []
          const outcome = Array.isArray(answer)
            ? { result: answer[0] ?? null }
            : isStruct(answer) ? { fault: { faultCode: Number(answer["faultCode"]), faultString: String(answer["faultString"]) } } : {}
          record({ ...base, method: String(call["methodName"]), params, ...outcome, within })
        })
      }

      const send = (res: http.ServerResponse, status: number, body: string, type: string, extra: Record<string, string> = {}): void => {
        const buf = Buffer.from(body, "utf8")
        res.writeHead(status, {
          "Koji-Version": FAKE_HUB_VERSION, "Content-Length": String(buf.length), "Content-Type": type, ...extra
        })
        res.end(buf)
      }

      const deliver = (res: http.ServerResponse, req: http.IncomingMessage, outcome: Outcome, lost: InjectAction): void => {
        if (lost !== undefined && "afterCommit" in lost) {
          const a = lost.afterCommit
          if ("reset" in a) req.socket.destroy()
          else send(res, a.http, `injected HTTP ${a.http}\n`, "text/plain")
          return
        }
        if ("value" in outcome) send(res, 200, encodeResponse(outcome.value), "text/xml")
        else send(res, 200, encodeFault(outcome.fault.faultCode, outcome.fault.faultString), "text/xml")
      }

      /** Applies `inject`; returns true when the request was answered (or dropped) by it. */
      const applyInject = async (
        req: http.IncomingMessage, res: http.ServerResponse, base: Omit<CallRecord, "seq">
      ): Promise<{ handled: boolean; action: InjectAction }> => {
        if (options.inject === undefined) return { handled: false, action: undefined }
        const key = `${base.method}|${base.sessionId}|${base.callnum}`
        const attempt = (attempts.get(key) ?? 0) + 1
        attempts.set(key, attempt)
        const action = options.inject({ methodName: base.method, sessionId: base.sessionId, callnum: base.callnum, attempt })
        if (action === undefined) return { handled: false, action }
        if ("http" in action) {
          record({ ...base, http: action.http, injected: action })
          send(res, action.http, `injected HTTP ${action.http}\n`, "text/plain")
          return { handled: true, action }
        }
        if ("fault" in action) {
          const [faultCode, faultString] = action.fault
          record({ ...base, fault: { faultCode, faultString }, injected: action })
          send(res, 200, encodeFault(faultCode, faultString), "text/xml")
          return { handled: true, action }
        }
        if ("reset" in action) {
          record({ ...base, injected: action })
          req.socket.destroy()
          return { handled: true, action }
        }
        if ("delayMs" in action) {
          await sleep(action.delayMs)
          return { handled: false, action: undefined }
        }
        return { handled: false, action }
      }

      const env = (req: http.IncomingMessage, urlPath: string, query: string): RequestEnv => {
        const cert = peerCert(req.socket)
        return {
          remoteIp: (req.socket.remoteAddress ?? "").replace(/^::ffff:/, ""),
          path: urlPath, query, headers: req.headers, sslClientVerify: cert.verify, sslClientCN: cert.cn
        }
      }

      const handleUpload = async (req: http.IncomingMessage, res: http.ServerResponse, urlPath: string, query: string): Promise<void> => {
        const peek = peekSession(req, query)
        const base = { method: "rawUpload", ...peek, path: urlPath, query, params: [] }
        const inj = await applyInject(req, res, base)
        if (inj.handled) {
          req.resume()
          return
        }
        const e = env(req, urlPath, query)
        core.db.begin()
        const ctx = new CallContext(core, e, null)
        let plan: ReturnType<typeof beginRawUpload>
        try {
          openSession(ctx)
          enforceLock(ctx)
          plan = beginRawUpload(ctx)
          if (ctx.commitPending) ctx.commit()
          core.db.end()
        } catch (err) {
          core.db.rollback()
          req.resume()
          const fault = toFault(err)
          record({ ...base, fault, ...(inj.action !== undefined ? { injected: inj.action } : {}) })
          deliver(res, req, { fault }, inj.action)
          return
        }
        let outcome: Outcome
        try {
          const body = await readBody(req)
          outcome = { value: finishRawUpload(plan, body) }
        } catch (err) {
          outcome = { fault: toFault(err) }
        } finally {
          core.locks.delete(plan.file)
        }
        record({ ...base, ...("value" in outcome ? { result: outcome.value } : { fault: outcome.fault }), ...(inj.action !== undefined ? { injected: inj.action } : {}) })
        deliver(res, req, outcome, inj.action)
      }

      const handleRpc = async (req: http.IncomingMessage, res: http.ServerResponse, urlPath: string, query: string): Promise<void> => {
        const body = await readBody(req)
        const peek = peekSession(req, query)
        const bad = (msg: string): void => {
          record({ method: "", ...peek, path: urlPath, query, params: [], http: 400 })
          send(res, 400, `Invalid request: ${msg}\n`, "text/plain")
        }
        if (body.length === 0) return bad("Empty request")
        if (body.length > 4194304) return bad("Request too long")
        const decoded = decodeCall(body, { preserveDoubles: true })
        if (Either.isLeft(decoded)) return bad(decoded.left.message)
        const { methodName, params } = decoded.right
        const base = { method: methodName, ...peek, path: urlPath, query, params }
        // With a REMOTE_USER header configured, /ssllogin stands for a GSSAPI location (mod_auth_gssapi), which asks for no certificate.
        if (urlPath.endsWith("/ssllogin") && options.tls !== undefined && options.remoteUserHeader === undefined && "encrypted" in req.socket) {
          const ts = req.socket as tls.TLSSocket
          let ok = peerCert(ts).verify === "SUCCESS"
          if (!ok && options.tls.clientCert === "ssllogin-renegotiate") ok = (await renegotiate(ts)) && peerCert(ts).verify === "SUCCESS"
          if (!ok) {
            record({ ...base, http: 403 })
            send(res, 403, FORBIDDEN, "text/html; charset=iso-8859-1")
            return
          }
        }
        const inj = await applyInject(req, res, base)
        if (inj.handled) return
        const outcome = dispatch(core, env(req, urlPath, query), methodName, params)
        record({ ...base, ...("value" in outcome ? { result: outcome.value } : { fault: outcome.fault }), ...(inj.action !== undefined ? { injected: inj.action } : {}) })
        if (methodName === "multiCall" && "value" in outcome) recordInner(base, calls.length, params[0], outcome.value)
        deliver(res, req, outcome, inj.action)
      }

      const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        const url = new URL(req.url ?? "/", "http://fakehub")
        const urlPath = url.pathname
        const query = url.search.startsWith("?") ? url.search.slice(1) : ""
        const run = async (): Promise<void> => {
          if (req.method !== "POST") {
            req.resume()
            record({ method: req.method ?? "", sessionId: undefined, callnum: undefined, path: urlPath, query, params: [], http: 405 })
            send(res, 405, "Method Not Allowed\nThis is an XML-RPC server. Only POST requests are accepted.\n", "text/plain", { Allow: "POST" })
            return
          }
          if (offline) {
            req.resume()
            record({ method: "", ...peekSession(req, query), path: urlPath, query, params: [], fault: { faultCode: 1014, faultString: "server is offline" } })
            send(res, 200, encodeFault(1014, "server is offline"), "text/xml")
            return
          }
          if (req.headers["content-type"] === "application/octet-stream") await handleUpload(req, res, urlPath, query)
          else await handleRpc(req, res, urlPath, query)
        }
        run().catch((e: unknown) => {
          // Nobody to answer: a client that went away mid-request is no bug of the fake.
          if (e === CLIENT_GONE) return res.destroy()
          console.error("fake hub: request failed", e)
          if (!res.headersSent) send(res, 500, "fake hub internal error\n", "text/plain")
          else res.destroy()
        })
      }

      const server: http.Server | https.Server = options.tls === undefined
        ? http.createServer(onRequest)
        : https.createServer({
          key: options.tls.key, cert: options.tls.cert, ca: options.tls.ca,
          requestCert: options.tls.clientCert === "handshake", rejectUnauthorized: false,
          // As mod_ssl: a renegotiation must not resume the session, or the client skips the
          // CertificateRequest and sends no certificate.
          secureOptions: cryptoConstants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION
        }, onRequest)
      server.keepAliveTimeout = 5000
      const track = (s: Socket): void => {
        sockets.add(s)
        s.on("close", () => sockets.delete(s))
      }
      server.on(options.tls === undefined ? "connection" : "secureConnection", track)

      const withAdmin = <A>(f: (ctx: CallContext) => A): A => {
        core.db.begin()
        const ctx = new CallContext(core, ADMIN_ENV, null)
        ctx.session.loggedIn = true
        ctx.session.userId = 1
        try {
          const a = f(ctx)
          core.db.end()
          return a
        } catch (e) {
          core.db.rollback()
          throw e
        }
      }
      const hostNamed = (name: string): HostRow => {
        const h = core.db.hostByName(name)
        if (h === undefined) throw new Error(`fake hub: no host ${name}`)
        return h
      }
      const workdir = path.join(core.settings.topdir, "work")
      const listUploads = (): Array<UploadedFile> => {
        const out: Array<UploadedFile> = []
        const walk = (dir: string): void => {
          let entries: Array<fs.Dirent>
          try {
            entries = fs.readdirSync(dir, { withFileTypes: true })
          } catch {
            return
          }
          for (const ent of entries) {
            const full = path.join(dir, ent.name)
            if (ent.isDirectory()) walk(full)
            else if (ent.isFile() && ent.name !== ".user") {
              out.push({ path: path.relative(workdir, full), size: fs.statSync(full).size })
            }
          }
        }
        walk(workdir)
        return out.sort((a, b) => a.path.localeCompare(b.path))
      }

      const state: FakeHubState = {
        get users() { return [...core.db.users.values()] },
        get sessions() { return [...core.db.sessions.values()] },
        get hosts() { return [...core.db.hosts.values()] },
        get channels() { return [...core.db.channels.values()] },
        get tasks() { return [...core.db.tasks.values()] },
        get refusals() { return [...core.db.refusals] },
        get runs() { return [...core.db.runs] },
        get schedulerLog() { return [...core.db.schedulerLog] },
        get uploads() { return listUploads() },
        calls,
        session: (id) => core.db.sessions.get(id),
        host: (name) => core.db.hostByName(name),
        task: (id) => core.db.tasks.get(id),
        upload: (relpath) => {
          try {
            return fs.readFileSync(path.join(workdir, relpath))
          } catch {
            return undefined
          }
        },
        taskResult: (id) => withAdmin((ctx) => {
          const t = ctx.db.tasks.get(id)
          if (t === undefined || t.result === null) return null
          try {
            return methods.get("getTaskResult")!.run(ctx, { taskId: id, raise_fault: false }, {}, [])
          } catch (e) {
            return toFault(e)
          }
        })
      }

      server.listen(0, "127.0.0.1", () => {
        // listening on a TCP port, so address() is an AddressInfo, not a pipe name
        const port = (server.address() as AddressInfo).port
        const scheme = options.tls === undefined ? "http" : "https"
        const hub: FakeHub = {
          url: `${scheme}://127.0.0.1:${port}/kojihub`,
          topdir: core.settings.topdir,
          state,
          createTask: (method, params, opts = {}) => withAdmin((ctx) => {
            const o: Parameters<typeof makeTask>[3] = {}
            if (opts.arch !== undefined) o.arch = opts.arch
            if (opts.channel !== undefined) o.channel = opts.channel
            if (opts.priority !== undefined) o.priority = opts.priority
            if (opts.parent !== undefined) o.parent = opts.parent
            if (opts.label !== undefined) o.label = opts.label
            if (opts.assign !== undefined) o.assign = opts.assign
            if (opts.owner !== undefined) o.owner = opts.owner
            const id = makeTask(ctx, method, params, o)
            if (opts.weight !== undefined) ctx.db.tasks.get(id)!.weight = opts.weight
            return id
          }),
          cancelTask: (id) => withAdmin((ctx) => void cancelTaskRow(ctx, id, true)),
          freeTask: (id) => withAdmin((ctx) => freeTaskRow(ctx, id)),
          assignTask: (id, host, opts = {}) =>
            withAdmin((ctx) => assignTask(ctx, id, hostNamed(host).id, opts.force ?? false, opts.override ?? false)),
          setHostEnabled: (host, enabled) => withAdmin(() => { hostNamed(host).enabled = enabled }),
          setHost: (host, patch) => withAdmin(() => {
            const h = hostNamed(host)
            if (patch.arches !== undefined) h.arches = patch.arches
            if (patch.capacity !== undefined) h.capacity = patch.capacity
            if (patch.ready !== undefined) h.ready = patch.ready
          }),
          expireSession: (sessionId) => withAdmin((ctx) => {
            for (const r of ctx.db.sessions.values()) if (r.id === sessionId || r.master === sessionId) r.expired = true
          }),
          setOffline: (o) => {
            offline = o
          },
          runScheduler: () => withAdmin((ctx) => void runScheduler(ctx, true))
        }
        const close = (): Promise<void> =>
          new Promise((done) => {
            server.close(() => done())
            for (const s of sockets) s.destroy()
            server.closeAllConnections()
          })
        const removeTopdir = (): void => {
          if (ownTopdir) fs.rmSync(core.settings.topdir, { recursive: true, force: true })
        }
        resume(Effect.succeed({ hub, close, removeTopdir }))
      })
    }),
    ({ close, removeTopdir }) =>
      Effect.promise(close).pipe(
        Effect.timeout("5 seconds"),
        Effect.tapError(() => Effect.logWarning("fake hub: server did not close within 5 s")),
        Effect.ignore,
        Effect.andThen(Effect.sync(removeTopdir))
      )
  ).pipe(Effect.map(({ hub }) => hub))
