/**
 * What every fake-hub handler gets: the hub (tables, options, clock), the request environment
 * (as mod_wsgi would give it) and the request's session, plus the commit bookkeeping the real hub
 * does with `context.commit_pending` (koji-protocol.md §1.6).
 */
import type { IncomingHttpHeaders } from "node:http"
import { KojiFault } from "../../src/koji/faults.js"
import { Double, isStruct, pythonTruthy, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import type { Db, SessionRow } from "./state.js"

/** Hub settings (hub.conf names in comments). */
export interface HubSettings {
  readonly headerAuth: boolean
  readonly checkCallnum: boolean
  /** CheckClientIP */
  readonly checkClientIP: boolean
  /** SessionRenewalTimeout, in seconds here (the hub takes minutes); 0 = off. */
  readonly sessionRenewalTimeout: number
  readonly maxJobs: number
  readonly capacityOvercommit: number
  readonly readyTimeout: number
  readonly assignTimeout: number
  readonly softRefusalTimeout: number
  readonly hostTimeout: number
  readonly runInterval: number
  /** <topdir>; uploads land in <topdir>/work. */
  readonly topdir: string
}

/** The shared parts of the fake hub that handlers use. */
export interface HubCore {
  readonly db: Db
  readonly settings: HubSettings
  /** Clock in seconds. */
  readonly now: () => number
  /** Files with an exclusive upload lock held (absolute paths). */
  readonly locks: Set<string>
}

/** The request as the WSGI environment shows it. */
export interface RequestEnv {
  readonly remoteIp: string
  /** URL path, e.g. /kojihub or /kojihub/ssllogin. */
  readonly path: string
  /** Raw query string without the '?'. */
  readonly query: string
  readonly headers: IncomingHttpHeaders
  /** SSL_CLIENT_VERIFY: "SUCCESS", "NONE", or undefined on plain http. */
  readonly sslClientVerify: string | undefined
  /** SSL_CLIENT_S_DN_CN */
  readonly sslClientCN: string | undefined
}

/** The request's session as `auth.Session` holds it. */
export interface ReqSession {
  loggedIn: boolean
  id: number | undefined
  key: string | undefined
  master: number | null
  userId: number | undefined
  authtype: number | undefined
  hostip: string | undefined
  exclusive: boolean
  lockerror: string | undefined
  callnum: number | undefined
  /** The session row as it was read at the start of the call (getSessionInfo returns it). */
  data: SessionRow | undefined
}

/** Per-call state. */
export class CallContext {
  /** Set by `openSession`. */
  session: ReqSession = {
    loggedIn: false, id: undefined, key: undefined, master: null, userId: undefined,
    authtype: undefined, hostip: undefined, exclusive: false, lockerror: undefined,
    callnum: undefined, data: undefined
  }
  /** The handler changed data (koji's `context.commit_pending`). */
  commitPending = false
  /** Callnum written after the session's own commit; stored only by a later commit (§1.6). */
  pendingCallnum: { readonly sessionId: number; readonly callnum: number } | undefined
  /** The clock, read once per call. */
  readonly now: number

  constructor(readonly hub: HubCore, readonly env: RequestEnv, public method: string | null) {
    this.now = hub.now()
  }

  get db(): Db {
    return this.hub.db
  }
  get settings(): HubSettings {
    return this.hub.settings
  }

  /** A DML statement ran: the call's changes (and callnum) are committed if it succeeds. */
  dml(): void {
    this.commitPending = true
  }

  /** The handler commits by itself (login, exclusiveSession, logout…): the callnum goes with it. */
  commit(): void {
    const p = this.pendingCallnum
    if (p !== undefined) {
      const row = this.db.sessions.get(p.sessionId)
      if (row !== undefined) row.callnum = p.callnum
    }
    this.db.commit()
  }
}

/** A non-koji exception as the hub reports it: faultCode 1, `"<class 'X'>: msg"` (§1.4). */
export const pythonError = (cls: string, msg: string): KojiFault =>
  new KojiFault({ faultCode: 1, faultString: `<class '${cls}'>: ${msg}` })

/** Python's `repr` of a decoded XML-RPC value, for fault strings. */
export const pyRepr = (v: XmlRpcValue | undefined): string => {
  if (v === undefined || v === null) return "None"
  if (v === true) return "True"
  if (v === false) return "False"
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : pyFloat(v)
  if (typeof v === "bigint") return v.toString()
  if (typeof v === "string") return v.includes("'") && !v.includes('"') ? `"${v}"` : `'${v.replace(/'/g, "\\'")}'`
  if (v instanceof Double) return pyFloat(v.value)
  if (v instanceof Date) return `<DateTime '${v.toISOString()}'>`
  if (v instanceof Uint8Array) return `b'${Buffer.from(v).toString("latin1")}'`
  const list = asList(v)
  if (list !== undefined) return `[${list.map(pyRepr).join(", ")}]`
  if (isStruct(v)) return `{${Object.keys(v).map((k) => `'${k}': ${pyRepr(v[k])}`).join(", ")}}`
  return String(v)
}

/** Python's `str` of a decoded value (strings bare, the rest as repr). */
export const pyStr = (v: XmlRpcValue | undefined): string => (typeof v === "string" ? v : pyRepr(v))

const pyFloat = (x: number): string => (Number.isInteger(x) ? `${x}.0` : String(x))

/** A number argument, unwrapping Double. */
export const asNumber = (v: XmlRpcValue | undefined): number | undefined => {
  if (typeof v === "number") return v
  if (v instanceof Double) return v.value
  if (typeof v === "bigint") return Number(v)
  if (typeof v === "boolean") return v ? 1 : 0
  return undefined
}

/** The elements of an array value, or undefined for anything else. */
export const asList = (v: XmlRpcValue | undefined): ReadonlyArray<XmlRpcValue> | undefined =>
  // Array.isArray does not narrow a union holding a ReadonlyArray, hence the cast.
  Array.isArray(v) ? (v as ReadonlyArray<XmlRpcValue>) : undefined

/** Python truthiness of a decoded value (the wire codec's `pythonTruthy`). */
export const truthy = pythonTruthy

/** `int(v)` as the hub's convert_value(cast=int) does it; a ParameterError otherwise. */
export const toInt = (v: XmlRpcValue | undefined): number | undefined => {
  const n = asNumber(v)
  if (n !== undefined) return Math.trunc(n)
  if (typeof v === "string" && /^\s*[-+]?\d+\s*$/.test(v)) return Number.parseInt(v, 10)
  return undefined
}

/** Python's datetime.isoformat(' ') of an epoch in UTC, as the hub's Marshaller sends datetimes. */
export const isoTime = (ts: number | null): string | null => {
  if (ts === null) return null
  const d = new Date(Math.floor(ts * 1000))
  const micro = Math.round((ts - Math.floor(ts)) * 1e6) % 1e6
  const pad = (n: number, w = 2): string => String(n).padStart(w, "0")
  const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  return `${base}${micro === 0 ? "" : `.${pad(micro, 6)}`}+00:00`
}

/** A float for the wire (always `<double>`), or nil. */
export const dbl = (x: number | null): XmlRpcValue => (x === null ? null : new Double(x))
