/**
 * A logged-in session as kojid's `ClientSession` keeps it (koji-protocol.md §1.5–1.6, §3.5–3.6):
 * header or URL auth, a callnum that only ever increases, one call in flight, renewal on
 * AuthExpired, subsessions, and a logout that never fails. Also the calls made without a session.
 */
import { Duration, Effect, Either, Schema } from "effect"
import { type Fault, ParameterError } from "../koji/faults.js"
import { observeHubCall, observeUpload } from "../metrics/Metrics.js"
import type { HubError } from "./HubError.js"
import type { HubRequest } from "./HubTransport.js"
import { type HubConnection, sendAndRead, withRetries } from "./connection.js"
import { loginCall, type LoginMethod, sessionBaseUrl } from "./login.js"
import {
  type BatchCall, decodeAs, interruptibleCall, type Kwargs, multiCallResult, SessionInfo, toBatch, withKwargs, xmlRequest
} from "./wire.js"
import { encodeMethodCall, type XmlRpcValue } from "./xmlrpc.js"

/** Arguments of one `rawUpload` chunk (§6.1). */
export interface RawUploadArgs {
  /** Directory relative to `<topdir>/work`, e.g. `tasks/1234/51234`. */
  readonly path: string
  readonly name: string
  /** Byte offset; -1 appends. */
  readonly offset: number
  readonly data: Uint8Array
  readonly overwrite?: boolean | undefined
  readonly volume?: string | undefined
  /** Digest the hub computes over the chunk; `adler32` by default, `""` for none. */
  readonly verify?: "adler32" | "md5" | "sha256" | "" | undefined
}

/** The hub's answer to `rawUpload`. */
export const RawUploadResult = Schema.Struct({
  size: Schema.Number,
  fileverify: Schema.String,
  offset: Schema.Number,
  hexdigest: Schema.optional(Schema.String)
})

/** The hub's answer to `rawUpload`, plus how many attempts the chunk took (>1 means a retry). */
export interface RawUploadReply extends Schema.Schema.Type<typeof RawUploadResult> {
  readonly attempts: number
}

/** Calls that need no login. */
export interface AnonymousSession {
  readonly call: (method: string, params?: ReadonlyArray<XmlRpcValue>, kwargs?: Kwargs) => Effect.Effect<XmlRpcValue, Fault | HubError>
  readonly callAs: <A, I>(schema: Schema.Schema<A, I>, method: string, params?: ReadonlyArray<XmlRpcValue>, kwargs?: Kwargs) => Effect.Effect<A, Fault | HubError>
  readonly multiCall: (calls: ReadonlyArray<BatchCall>) => Effect.Effect<ReadonlyArray<Either.Either<XmlRpcValue, Fault>>, Fault | HubError>
}

/** A logged-in hub session (or subsession). Calls on one session run one at a time. */
export interface Session extends AnonymousSession {
  readonly sessionId: number
  /** kojid `use_fast_upload`: uploads use `rawUpload` (true) or legacy `uploadFile`. */
  readonly useFastUpload: boolean
  /** The next callnum this session will send (for tests and logs). */
  readonly nextCallnum: Effect.Effect<number>
  /** One chunk of a fast upload (§6.1); counts against the callnum like any call. */
  readonly rawUpload: (args: RawUploadArgs) => Effect.Effect<RawUploadReply, Fault | HubError>
  /** A new subsession of the same user (kojid: one per task), with its own callnum. */
  readonly subsession: Effect.Effect<Session, Fault | HubError>
  /** Closes this session and its subsessions; never fails (logs). */
  readonly logout: Effect.Effect<void>
  /** Closes one subsession of this session. */
  readonly logoutChild: (sessionId: number) => Effect.Effect<void, Fault | HubError>
}

/** A fresh login's session, whose exclusive lock `login` notes once it holds it. */
export interface LoginSession extends Session {
  readonly markExclusive: () => void
}

/** The calls made without a session; transport errors retried only with `anon_retry`. */
export const anonymousSession = (c: HubConnection): AnonymousSession => {
  const anonymousCall = (method: string, params?: ReadonlyArray<XmlRpcValue>, kw?: Kwargs) => {
    const request = xmlRequest(c.baseUrl, method, withKwargs(params, kw), {}, undefined, false)
    return interruptibleCall(withRetries(c, method, undefined, c.options.anonRetry === true, sendAndRead(c, request))).pipe(Effect.map((r) => r.value), observeHubCall(method))
  }
  return {
    call: (method, params, kw) => anonymousCall(method, params, kw).pipe(Effect.withSpan("KojiHub.call", { attributes: { method } })),
    callAs: (schema, method, params, kw) => anonymousCall(method, params, kw).pipe(Effect.flatMap(decodeAs(schema, method))),
    multiCall: (calls) => anonymousCall("multiCall", toBatch(calls)).pipe(Effect.flatMap(multiCallResult("multiCall")))
  }
}

/** The mutable half of a session. */
interface SessionState {
  sessionId: number
  key: string
  headerAuth: boolean
  callnum: number
  exclusive: boolean
  loggedIn: boolean
}

/** One live session: what it was opened with and what changes while it lives. */
interface LiveSession {
  readonly connection: HubConnection
  readonly loginMethod: LoginMethod
  /** One call in flight per session. */
  readonly lock: Effect.Semaphore
  readonly base: string
  readonly state: SessionState
}

/** A session's credentials for one request, with the callnum it takes. */
interface CallAuth {
  readonly headers: Record<string, string>
  readonly query: Array<readonly [string, string]>
  readonly callnum: number
}

/** Takes the next callnum: copied into the request, then incremented, once per logical call (§1.6). */
const auth = (s: LiveSession): CallAuth => {
  const state = s.state
  const callnum = state.callnum
  state.callnum += 1
  if (state.headerAuth) {
    return {
      headers: {
        "Koji-Session-Id": String(state.sessionId),
        "Koji-Session-Key": state.key,
        "Koji-Session-Callnum": String(callnum)
      },
      query: [],
      callnum
    }
  }
  return {
    headers: {},
    query: [["session-id", String(state.sessionId)], ["session-key", state.key], ["callnum", String(callnum)]],
    callnum
  }
}

const renew = (s: LiveSession, expired: Fault) => Effect.gen(function* () {
  const state = s.state
  yield* Effect.logInfo(`session ${state.sessionId} expired; renewing with ${s.loginMethod}`)
  // The renewal names the session as every call does: headers, or the URL on a hub without header-auth (§1.5).
  const { headers, query } = auth(s)
  const fresh = yield* loginCall(s.connection, s.loginMethod, { exclusive: state.exclusive, headers, query }).pipe(
    // A renewal that yields no session leaves the session expired: the caller sees AuthExpired (§3.5).
    Effect.catchTag("LoginError", (e) =>
      Effect.logError(`renewal of session ${state.sessionId} failed: ${e.message}`).pipe(
        Effect.zipRight(Effect.fail(expired))
      ))
  )
  // The hub keeps the session id and issues a new key; the callnum is NOT reset (§1.6 pitfall).
  state.key = fresh["session-key"]
  if (fresh["header-auth"] === true) state.headerAuth = true
})

/**
 * Runs one logical call: fresh callnum, retries re-send the identical bytes (§1.6).
 * `attempts` counts the sends, the transport's immediate re-send after a reset included.
 */
const once = (s: LiveSession, build: (a: CallAuth) => HubRequest) =>
  Effect.suspend(() => {
    const a = auth(s)
    const request = build(a)
    const resends = { count: 0 }
    return withRetries(s.connection, request.method, a.callnum, true, sendAndRead(s.connection, request, resends)).pipe(
      Effect.map((r) => ({ value: r.value, attempts: r.attempts + resends.count }))
    )
  })

/** One call with renewal on AuthExpired and then exactly one more try (§3.5). */
const serialized = (s: LiveSession, build: (a: CallAuth) => HubRequest) =>
  interruptibleCall(s.lock.withPermits(1)(
    once(s, build).pipe(
      Effect.catchIf(
        (e): e is Fault => e._tag === "AuthExpired",
        (expired) => renew(s, expired).pipe(Effect.zipRight(once(s, build)))
      )
    )
  ))

const call = (s: LiveSession, method: string, params?: ReadonlyArray<XmlRpcValue>, kw?: Kwargs) => {
  const body = new TextEncoder().encode(encodeMethodCall(method, withKwargs(params, kw)))
  return serialized(s, (a) => ({
    method,
    url: s.base,
    query: a.query,
    headers: a.headers,
    body,
    contentType: "text/xml"
  })).pipe(
    Effect.map((r) => r.value),
    observeHubCall(method),
    Effect.withSpan("KojiHub.call", { attributes: { method, sessionId: s.state.sessionId } })
  )
}

const rawUpload = (s: LiveSession, args: RawUploadArgs) => {
  const query: Array<readonly [string, string]> = [
    ["filename", args.name],
    ["filepath", args.path],
    ["fileverify", args.verify ?? "adler32"],
    ["offset", String(args.offset)]
  ]
  if (args.overwrite === true) query.push(["overwrite", "1"])
  if (args.volume !== undefined) query.push(["volume", args.volume])
  return serialized(s, (a) => ({
    method: "rawUpload",
    url: s.base,
    query: [...query, ...a.query],
    headers: a.headers,
    body: args.data,
    contentType: "application/octet-stream"
  })).pipe(
    Effect.flatMap(({ value, attempts }) =>
      decodeAs(RawUploadResult, "rawUpload")(value).pipe(Effect.map((r): RawUploadReply => ({ ...r, attempts })))
    ),
    observeUpload(args.data.length),
    Effect.withSpan("KojiHub.rawUpload", { attributes: { path: args.path, name: args.name, offset: args.offset } })
  )
}

/** koji sends logout once, without the retry loop (ClientSession.logout, §3.6). */
const sendLogout = (s: LiveSession, kw: Kwargs | undefined) =>
  s.lock.withPermits(1)(
    Effect.suspend(() => {
      const a = auth(s)
      return sendAndRead(s.connection, {
        method: "logout",
        url: s.base,
        query: a.query,
        headers: a.headers,
        body: new TextEncoder().encode(encodeMethodCall("logout", withKwargs([], kw))),
        contentType: "text/xml"
      })
    })
  )

const logout = (s: LiveSession): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (!s.state.loggedIn) return
    const first = yield* sendLogout(s, { session_id: null })
    const outcome = Either.isLeft(first) && first.left instanceof ParameterError
      ? yield* sendLogout(s, undefined) // hubs older than 1.31 reject the session_id keyword
      : first
    if (Either.isLeft(outcome) && outcome.left._tag !== "AuthExpired") {
      yield* Effect.logWarning(`logout of session ${s.state.sessionId}: ${outcome.left.message}`)
    }
    s.state.loggedIn = false
  }).pipe(
    Effect.catchAll((e) => Effect.logWarning(`logout of session ${s.state.sessionId} failed: ${e.message}`)),
    // logout is used as a scope release, which runs uninterruptibly: keep the bound effective.
    Effect.interruptible,
    Effect.timeout(Duration.seconds(30)),
    Effect.catchAll(() => Effect.logWarning(`logout of session ${s.state.sessionId} timed out`)),
    Effect.withSpan("KojiHub.logout")
  )

/** The session a login (or `subsession`) returned. */
export const makeSession = (c: HubConnection, loginMethod: LoginMethod, sinfo: SessionInfo): Effect.Effect<LoginSession> =>
  Effect.gen(function* () {
    const s: LiveSession = {
      connection: c,
      loginMethod,
      lock: yield* Effect.makeSemaphore(1),
      base: sessionBaseUrl(c, loginMethod),
      state: {
        sessionId: sinfo["session-id"],
        key: sinfo["session-key"],
        headerAuth: sinfo["header-auth"] === true,
        callnum: 0,
        exclusive: false,
        loggedIn: true
      }
    }
    return {
      sessionId: s.state.sessionId,
      useFastUpload: c.options.useFastUpload ?? true,
      nextCallnum: Effect.sync(() => s.state.callnum),
      call: (method, params, kw) => call(s, method, params, kw),
      callAs: (schema, method, params, kw) => call(s, method, params, kw).pipe(Effect.flatMap(decodeAs(schema, method))),
      multiCall: (calls) => call(s, "multiCall", toBatch(calls)).pipe(Effect.flatMap(multiCallResult("multiCall"))),
      rawUpload: (args) => rawUpload(s, args),
      subsession: call(s, "subsession").pipe(
        Effect.flatMap(decodeAs(SessionInfo, "subsession")),
        Effect.flatMap((sub) => makeSession(c, loginMethod, sub)),
        Effect.map((sub): Session => sub),
        Effect.withSpan("KojiHub.subsession")
      ),
      logout: logout(s),
      logoutChild: (sessionId) => call(s, "logoutChild", [sessionId]).pipe(Effect.asVoid),
      markExclusive: () => {
        s.state.exclusive = true
      }
    }
  })
