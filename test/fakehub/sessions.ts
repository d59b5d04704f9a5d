/**
 * Sessions as `kojihub/auth.py` keeps them (koji-protocol.md §1.5–1.6, §3): header and URL
 * session identification, client-IP binding, renewal timeout, callnum checks, exclusive locks,
 * login/sslLogin/renewal, subsessions and logout, and `Host()` verification for `host.*`.
 */
import { randomInt } from "node:crypto"
import {
  ActionNotAllowed, AuthError, AuthExpired, AuthLockError, GenericError, RetryError, SequenceError
} from "../../src/koji/faults.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type CallContext, dbl, type HubCore, isoTime, pythonError, pyRepr, truthy } from "./context.js"
import { AuthType, type HostRow, type SessionRow } from "./state.js"

/** Methods a repeated callnum may re-run (auth.RetryWhitelist). */
export const RetryWhitelist: ReadonlyArray<string> = [
  "host.taskWait", "host.taskUnwait", "host.taskSetWait", "host.updateHost",
  "host.setBuildRootState", "repoExpire", "repoDelete", "repoProblem"
]

const AUTH_METHODS: ReadonlyArray<string> = ["login", "sslLogin"]

/** How the fake hub learns REMOTE_USER and maps Kerberos principals (hub.conf and `user_krb_principals`). */
export interface RemoteUserAuth {
  /** Request header (lower case) taken as mod_wsgi's REMOTE_USER; undefined = never (the default). */
  readonly header: string | undefined
  /** hub.conf LoginCreatesUser (default True). */
  readonly loginCreatesUser: boolean
  /** `user_krb_principals`: principal → user id. */
  readonly krbPrincipals: Map<string, number>
}

const remoteUserAuth = new WeakMap<HubCore, RemoteUserAuth>()
const defaultAuth = (): RemoteUserAuth => ({ header: undefined, loginCreatesUser: true, krbPrincipals: new Map() })

/** Sets a hub's REMOTE_USER header, LoginCreatesUser and principal table (FakeHub setup). */
export const configureRemoteUser = (core: HubCore, auth: RemoteUserAuth): void => {
  remoteUserAuth.set(core, auth)
}

const authOf = (ctx: CallContext): RemoteUserAuth => {
  let auth = remoteUserAuth.get(ctx.hub)
  if (auth === undefined) {
    auth = defaultAuth()
    remoteUserAuth.set(ctx.hub, auth)
  }
  return auth
}

/** REMOTE_USER as the web server set it; Apache's `%{REMOTE_USER}s` of an unauthenticated request is "(null)". */
const remoteUser = (ctx: CallContext): string | undefined => {
  const name = authOf(ctx).header
  if (name === undefined) return undefined
  const v = header(ctx, name)
  return v === undefined || v === "" || v === "(null)" ? undefined : v
}

/** Python's `parse_qs(qs, strict_parsing=True)`. */
export const parseQs = (qs: string): Map<string, Array<string>> => {
  const out = new Map<string, Array<string>>()
  for (const field of qs.split(/[&;]/)) {
    if (field === "") continue
    const eq = field.indexOf("=")
    if (eq < 0) throw pythonError("ValueError", `bad query field: ${pyRepr(field)}`)
    const dec = (s: string): string => decodeURIComponent(s.replace(/\+/g, " "))
    const k = dec(field.slice(0, eq))
    const v = dec(field.slice(eq + 1))
    if (v === "") continue
    const list = out.get(k) ?? []
    list.push(v)
    out.set(k, list)
  }
  return out
}

const header = (ctx: CallContext, name: string): string | undefined => {
  const v = ctx.env.headers[name]
  return Array.isArray(v) ? v[0] : v
}

const pyInt = (s: string): number => {
  if (!/^\s*[-+]?\d+\s*$/.test(s)) {
    throw pythonError("ValueError", `invalid literal for int() with base 10: ${pyRepr(s)}`)
  }
  return Number.parseInt(s, 10)
}

/** The client IP the session is bound to (`Session.get_remote_ip`). */
export const remoteIp = (ctx: CallContext, override?: string): string => {
  if (!ctx.settings.checkClientIP) return "-"
  if (override !== undefined) return override
  return ctx.env.remoteIp
}

/** `auth.Session.__init__`: identifies the caller's session and checks it. */
export const openSession = (ctx: CallContext): void => {
  const s = ctx.session
  let callnumRaw: string | undefined
  const headerId = ctx.settings.headerAuth ? header(ctx, "koji-session-id") : undefined
  if (headerId !== undefined) {
    s.id = pyInt(headerId)
    const key = header(ctx, "koji-session-key")
    if (key === undefined) throw pythonError("KeyError", "'HTTP_KOJI_SESSION_KEY'")
    s.key = key
    callnumRaw = header(ctx, "koji-session-callnum") ?? header(ctx, "koji-callnum")
    if (callnumRaw !== undefined) pyInt(callnumRaw)
  } else {
    if (ctx.env.query === "") return
    const args = parseQs(ctx.env.query)
    const id = args.get("session-id")?.[0]
    const key = args.get("session-key")?.[0]
    if (id === undefined) throw new AuthError({ faultString: "'session-id' not specified in session args" })
    if (key === undefined) throw new AuthError({ faultString: "'session-key' not specified in session args" })
    s.id = pyInt(id)
    s.key = key
    callnumRaw = args.get("callnum")?.[0]
  }
  const hostip = remoteIp(ctx)
  const row = ctx.db.sessions.get(s.id)
  if (row === undefined || row.key !== s.key || row.hostip !== hostip || row.closed) {
    throw new AuthError({ faultString: "Invalid session or bad credentials" })
  }
  const data: SessionRow = { ...row }
  const timeout = ctx.settings.sessionRenewalTimeout
  if (!data.expired && timeout !== 0 && ctx.now > (data.renewTs ?? data.startTs) + timeout) {
    data.expired = true
    for (const r of ctx.db.sessions.values()) if (r.id === row.id || r.master === row.id) r.expired = true
    ctx.commit()
  }
  if (data.expired && !AUTH_METHODS.includes(ctx.method ?? "")) {
    throw new AuthExpired({ faultString: `session "${s.id}" has expired` })
  }
  let callnum: number | undefined
  if (callnumRaw !== undefined && ctx.settings.checkCallnum) {
    if (!/^\s*[-+]?\d+\s*$/.test(callnumRaw)) {
      throw new AuthError({ faultString: `Invalid callnum: ${pyRepr(callnumRaw)}` })
    }
    callnum = Number.parseInt(callnumRaw, 10)
    const last = data.callnum
    if (last !== null) {
      if (last > callnum) throw new SequenceError({ faultString: `${last} > ${callnum} (session ${s.id})` })
      if (last === callnum && !RetryWhitelist.includes(ctx.method ?? "")) {
        throw new RetryError({
          faultString: `unable to retry call ${callnum} (method ${ctx.method ?? "None"}) for session ${s.id}`
        })
      }
    }
  }
  if (data.expired) return
  const user = ctx.db.users.get(data.userId)!
  if (user.status !== 0) throw new AuthError({ faultString: `logins by ${user.name} are not allowed` })
  if (data.exclusive) {
    s.exclusive = true
  } else {
    const excl = [...ctx.db.sessions.values()].find((r) => r.userId === data.userId && r.exclusive && !r.closed)
    if (excl !== undefined) {
      if (excl.id === data.master) s.exclusive = true
      else s.lockerror = "User locked by another session"
    }
  }
  row.updateTs = ctx.now
  ctx.commit()
  if (callnum !== undefined) ctx.pendingCallnum = { sessionId: row.id, callnum }
  s.hostip = hostip
  s.callnum = callnum
  s.userId = data.userId
  s.authtype = data.authtype
  s.master = data.master
  s.data = data
  s.loggedIn = true
}

/** `check_session` after `openSession`: the exclusive lock of another session (§3.4). */
export const enforceLock = (ctx: CallContext): void => {
  const lock = ctx.session.lockerror
  if (lock !== undefined && !["exclusiveSession", "login", "logout"].includes(ctx.method ?? "")) {
    throw new AuthLockError({ faultString: lock })
  }
}

const ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

const sinfo = (ctx: CallContext, id: number, key: string): XmlRpcValue =>
  ctx.settings.headerAuth
    ? { "session-id": id, "session-key": key, "header-auth": true }
    : { "session-id": id, "session-key": key }

/** `Session.createSession`: a new session, a subsession, or a renewed key for the same id. */
const createSession = (
  ctx: CallContext, userId: number, hostip: string, authtype: number, master: number | null, renew: boolean
): XmlRpcValue => {
  let key = `${userId}-`
  for (let i = 0; i < 19; i++) key += ALNUM[randomInt(ALNUM.length)]
  const s = ctx.session
  let id: number
  if (renew && s.id !== undefined) {
    id = s.id
    s.key = key
    if (s.master !== null) {
      const m = ctx.db.sessions.get(s.master)
      if (m === undefined || m.closed) return null
    }
    const row = ctx.db.sessions.get(id)!
    row.key = key
    row.expired = false
    row.updateTs = ctx.now
    row.renewTs = ctx.now
  } else {
    id = ctx.db.nextval("session")
    ctx.db.sessions.set(id, {
      id, userId, key, hostip, authtype, master, exclusive: false, expired: false, closed: false,
      callnum: null, startTs: ctx.now, updateTs: ctx.now, renewTs: null
    })
  }
  ctx.dml()
  ctx.commit()
  return sinfo(ctx, id, key)
}

const checkLoginAllowed = (ctx: CallContext, userId: number): void => {
  const user = ctx.db.users.get(userId)
  if (user === undefined) throw new AuthError({ faultString: `invalid user_id: ${userId}` })
  if (user.status !== 0) throw new AuthError({ faultString: `logins by ${user.name} are not allowed` })
}

/** `Session.makeExclusive(force)` (§3.4). */
export const makeExclusive = (ctx: CallContext, force: boolean): void => {
  const s = ctx.session
  if (s.master !== null) throw new GenericError({ faultString: "subsessions cannot become exclusive" })
  if (s.exclusive) throw new GenericError({ faultString: "session is already exclusive" })
  // The query does not leave out the caller's own row: renewing an exclusive session with
  // exclusive=True therefore fails on the real hub too (auth.py:makeExclusive).
  const excl = [...ctx.db.sessions.values()].find((r) => r.userId === s.userId && !r.closed && r.exclusive)
  if (excl !== undefined) {
    if (!force) throw new AuthLockError({ faultString: "Cannot get exclusive session" })
    excl.expired = true
    excl.exclusive = false
    excl.closed = true
  }
  const own = s.id === undefined ? undefined : ctx.db.sessions.get(s.id)
  if (own !== undefined) own.exclusive = true
  ctx.dml()
  ctx.commit()
}

/** `Session.makeShared()`. */
export const makeShared = (ctx: CallContext): void => {
  const own = ctx.session.id === undefined ? undefined : ctx.db.sessions.get(ctx.session.id)
  if (own !== undefined) own.exclusive = false
  ctx.dml()
  ctx.commit()
}

/** `Session.login(user, password, opts=None, renew=False, exclusive=False)` (§3.3). */
export const login = (
  ctx: CallContext, user: XmlRpcValue, password: XmlRpcValue, opts: XmlRpcValue, renew: XmlRpcValue,
  exclusive: XmlRpcValue
): XmlRpcValue => {
  if (typeof password !== "string" || password.length === 0) {
    throw new AuthError({ faultString: "invalid username or password" })
  }
  if (ctx.session.loggedIn) throw new AuthError({ faultString: "Already logged in" })
  const hostipOpt = isStruct(opts) && typeof opts["hostip"] === "string" ? opts["hostip"] : undefined
  const hostip = remoteIp(ctx, hostipOpt)
  const row = [...ctx.db.users.values()].find((u) => u.name === user && u.password === password)
  if (row === undefined) throw new AuthError({ faultString: "invalid username or password" })
  checkLoginAllowed(ctx, row.id)
  const info = createSession(ctx, row.id, hostip, AuthType.NORMAL, null, truthy(renew))
  if (info !== null && truthy(exclusive) && !ctx.session.exclusive) makeExclusive(ctx, false)
  ctx.commit()
  return info
}

/** `Session.sslLogin(proxyuser=None, proxyauthtype=None, renew=False, exclusive=None)` (§3.2). */
export const sslLogin = (
  ctx: CallContext, proxyuser: XmlRpcValue, renew: XmlRpcValue, exclusive: XmlRpcValue
): XmlRpcValue => {
  if (ctx.session.loggedIn) throw new AuthError({ faultString: "Already logged in" })
  const auth = authOf(ctx)
  // REMOTE_USER (mod_auth_gssapi) wins over the client certificate; it is a principal (§3.2).
  const principal = remoteUser(ctx)
  let username: string
  let authtype: number
  if (principal !== undefined) {
    username = principal
    authtype = AuthType.GSSAPI
  } else {
    const verify = ctx.env.path.endsWith("/ssllogin") ? ctx.env.sslClientVerify : ctx.env.sslClientVerify && "NONE"
    if (verify !== "SUCCESS") throw new AuthError({ faultString: `could not verify client: ${verify ?? "None"}` })
    const cn = ctx.env.sslClientCN
    if (cn === undefined || cn === "") {
      throw new AuthError({ faultString: "unable to get user information (CN) from client certificate" })
    }
    username = cn
    authtype = AuthType.SSL
  }
  if (truthy(proxyuser)) throw new AuthError({ faultString: `${username} is not authorized to login other users` })
  const byKrb = authtype === AuthType.GSSAPI && username.includes("@")
  let userId = byKrb ? auth.krbPrincipals.get(username) : ctx.db.userByName(username)?.id
  if (userId === undefined) {
    if (!auth.loginCreatesUser) throw new AuthError({ faultString: `Unknown user: ${username}` })
    // LoginCreatesUser makes a NORMAL user (named the principal up to '@',
    // createUserFromKerberos); it is not a host until add-host.
    const name = byKrb ? username.slice(0, username.indexOf("@")) : username
    userId = ctx.db.userByName(name)?.id
    if (userId === undefined) {
      userId = ctx.db.nextval("user")
      ctx.db.users.set(userId, { id: userId, name, password: null, status: 0, admin: false })
    }
    if (byKrb) auth.krbPrincipals.set(username, userId)
    ctx.dml()
    ctx.commit()
  }
  checkLoginAllowed(ctx, userId)
  const info = createSession(ctx, userId, remoteIp(ctx), authtype, null, truthy(renew))
  if (info !== null && truthy(exclusive) && !ctx.session.exclusive) makeExclusive(ctx, false)
  return info
}

/** `Session.logout(session_id=None)` (§3.6). */
export const logout = (ctx: CallContext, sessionId: XmlRpcValue): void => {
  const s = ctx.session
  if (!s.loggedIn) throw new AuthError({ faultString: "Not logged in" })
  let target = s.id!
  if (truthy(sessionId)) {
    const other = typeof sessionId === "number" ? ctx.db.sessions.get(sessionId) : undefined
    const admin = ctx.db.users.get(s.userId!)?.admin === true
    if (!admin && (other === undefined || other.userId !== s.userId)) {
      if (other === undefined) throw new GenericError({ faultString: "query returned no rows" })
      throw new ActionNotAllowed({ faultString: "only admins or owner may logout other session" })
    }
    target = sessionId as number
  }
  for (const r of ctx.db.sessions.values()) {
    if (r.id === target || r.master === target) {
      r.expired = true
      r.exclusive = false
      r.closed = true
    }
  }
  ctx.dml()
  ctx.commit()
  if (!truthy(sessionId)) s.loggedIn = false
}

/** `Session.logoutChild(session_id)`: closes one subsession of the caller; nil even if it is gone. */
export const logoutChild = (ctx: CallContext, sessionId: XmlRpcValue): void => {
  const s = ctx.session
  if (!s.loggedIn) throw new AuthError({ faultString: "Not logged in" })
  const r = typeof sessionId === "number" ? ctx.db.sessions.get(sessionId) : undefined
  if (r !== undefined && r.master === s.id) {
    r.expired = true
    r.exclusive = false
    r.closed = true
  }
  ctx.dml()
  ctx.commit()
}

/** `Session.subsession()`. */
export const subsession = (ctx: CallContext): XmlRpcValue => {
  const s = ctx.session
  if (!s.loggedIn) throw new AuthError({ faultString: "Not logged in" })
  return createSession(ctx, s.userId!, s.hostip!, s.authtype!, s.master ?? s.id!, false)
}

/** The session row as `getSessionInfo` returns it. */
export const sessionInfo = (row: SessionRow): XmlRpcStruct => ({
  authtype: row.authtype,
  callnum: row.callnum,
  exclusive: row.exclusive ? true : null,
  expired: row.expired,
  master: row.master,
  renew_time: isoTime(row.renewTs),
  renew_ts: dbl(row.renewTs),
  start_time: isoTime(row.startTs),
  start_ts: dbl(row.startTs),
  update_time: isoTime(row.updateTs),
  update_ts: dbl(row.updateTs),
  user_id: row.userId
})

/** `getSessionInfo(details=False, user_id=None)`. */
export const getSessionInfo = (ctx: CallContext, details: XmlRpcValue): XmlRpcValue => {
  const s = ctx.session
  if (!s.loggedIn || s.data === undefined) return null
  const info = sessionInfo(s.data)
  if (truthy(details)) return { ...info, hostip: s.data.hostip, id: s.data.id }
  return info
}

/** `getLoggedInUser()`. */
export const getLoggedInUser = (ctx: CallContext): XmlRpcValue => {
  const s = ctx.session
  if (!s.loggedIn) return null
  const u = ctx.db.users.get(s.userId!)!
  const principals = [...authOf(ctx).krbPrincipals].filter(([, id]) => id === u.id).map(([p]) => p)
  return {
    id: u.id, name: u.name, status: u.status, usertype: ctx.db.hostByUser(u.id) ? 1 : 0,
    krb_principals: principals, authtype: s.authtype ?? null, krb_principal: principals[0] ?? null
  }
}

/** `Host()` + `Host.verify()`: the caller's host row, for every `host.*` method (§3.4). */
export const verifiedHost = (ctx: CallContext): HostRow => {
  const s = ctx.session
  const host = s.loggedIn ? ctx.db.hostByUser(s.userId) : undefined
  if (host === undefined) {
    if (s.loggedIn) throw new AuthError({ faultString: `User ${s.userId} is not a host` })
    throw new AuthError({ faultString: "Not logged-in" })
  }
  if (!s.exclusive) throw new AuthError({ faultString: "This method requires an exclusive session" })
  return host
}

/** `Session.assertLogin()`. */
export const assertLogin = (ctx: CallContext): void => {
  if (!ctx.session.loggedIn) throw new ActionNotAllowed({ faultString: "you must be logged in for this operation" })
}
