/**
 * KojiHub: sessions with the koji hub exactly as kojid's `ClientSession` keeps them
 * (koji-protocol.md §1.5–1.8, §3): login, exclusive lock, header or URL session auth, a callnum
 * that only ever increases, one call in flight per session, renewal on AuthExpired, subsessions,
 * and kojid's retry policy — with one thing kojid lacks: a shared "hub is back" signal. When
 * the hub stops answering, calls wait to retry as kojid's policy says, a probe asks the hub
 * every few seconds whether it answers again, and the first answer after the failure wakes
 * every waiting call at once (and whoever awaits `recovered`, e.g. the daemon loop).
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { Fault } from "../koji/faults.js"
import { AdjutantConfig, type Config } from "../config/AdjutantConfig.js"
import { type HubConnection, type HubOptions, makeConnection, recovered } from "./connection.js"
import { HubError, type LoginError } from "./HubError.js"
import { removeEmptyCcache, selectLoginMethod } from "./gssapi.js"
import { HubTransport, type TlsVersion } from "./HubTransport.js"
import { loginCall, type LoginMethod } from "./login.js"
import { type AnonymousSession, anonymousSession, makeSession, type Session } from "./session.js"

export type { HubOptions } from "./connection.js"
export type { AnonymousSession, RawUploadArgs, RawUploadReply, Session } from "./session.js"
export { RawUploadResult } from "./session.js"
export type { BatchCall, Kwargs } from "./wire.js"
export { decodeAs, formatParseError } from "./wire.js"

/** HubOptions from the effective kojid.conf (`[kojid]` + `[adjutant]` TLS keys). */
export const hubOptionsFromConfig = (config: Config): HubOptions => {
  const k = config.kojid
  const orUndefined = (s: string | null): string | undefined => (s === null || s === "" ? undefined : s)
  return {
    server: k.server,
    cert: orUndefined(k.cert),
    serverca: orUndefined(k.serverca),
    noSslVerify: k.no_ssl_verify,
    timeout: k.timeout ?? undefined,
    tlsMinVersion: config.adjutant.tls_min_version,
    tlsMaxVersion: config.adjutant.tls_max_version,
    loginTlsMaxVersion: config.adjutant.login_tls_max_version,
    user: orUndefined(k.user),
    password: orUndefined(k.password),
    krbPrincipal: orUndefined(k.krb_principal),
    hostPrincipalFormat: k.host_principal_format,
    keytab: k.keytab,
    ccache: k.ccache,
    maxRetries: k.max_retries,
    retryInterval: k.retry_interval,
    offlineRetry: k.offline_retry,
    offlineRetryInterval: k.offline_retry_interval,
    useFastUpload: k.use_fast_upload
  }
}

/** The session service. */
export interface KojiHubService {
  /** Logs in as kojid does (§3.1), then `exclusiveSession(force)` and `echo("OK")`. */
  readonly login: (force: boolean) => Effect.Effect<Session, Fault | HubError | LoginError>
  /** Like `login`, with `logout` when the scope closes. */
  readonly loginScoped: (force: boolean) => Effect.Effect<Session, Fault | HubError | LoginError, Scope.Scope>
  /** Calls without a session. */
  readonly anonymous: AnonymousSession
  /**
   * Completes at the next "hub is back": the first answer of the hub (a value or a fault other
   * than ServerOffline) to a request sent after a call failed with a connection error, an HTTP
   * error, a timeout, an unreadable answer or ServerOffline. Never completes while the hub keeps
   * answering. Calls waiting to retry wake at the same moment; whoever awaits this takes its turn
   * at probing while the hub is down. The daemon loop races its idle pause with it to send its
   * heartbeat at once.
   */
  readonly recovered: Effect.Effect<void>
}

/** Koji hub sessions. */
export class KojiHub extends Context.Tag("KojiHub")<KojiHub, KojiHubService>() {
  /** Sessions over an existing HubTransport. */
  static readonly layer = (options: HubOptions): Layer.Layer<KojiHub, never, HubTransport> =>
    Layer.effect(KojiHub, make(options))
  /** Sessions and their transport from the same options. */
  static readonly layerWithTransport = (options: HubOptions): Layer.Layer<KojiHub | HubTransport, HubError> =>
    Layer.provideMerge(KojiHub.layer(options), HubTransport.layer(options))
  /** Sessions and transport configured from AdjutantConfig (kojid.conf). */
  static readonly layerConfig: Layer.Layer<KojiHub | HubTransport, HubError, AdjutantConfig> = Layer.unwrapEffect(
    Effect.map(AdjutantConfig, (config) => KojiHub.layerWithTransport(hubOptionsFromConfig(config)))
  )
}

/** Maps RetryError (1009: the hub already committed this callnum) to success, for calls whose effect is idempotent in intent: `host.closeTask`, `host.failTask`, `host.setTaskWeight`, `host.freeTasks`. The reply of the first attempt was lost, but the hub did the work (§1.6). */
export const doneOnRetry = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A | void, Exclude<E, { readonly _tag: "RetryError" }>, R> =>
  Effect.catchIf(
    self,
    (e): e is Extract<E, { readonly _tag: "RetryError" }> =>
      typeof e === "object" && e !== null && "_tag" in e && e._tag === "RetryError",
    (e) => Effect.logInfo(`RetryError treated as done: ${String((e as { faultString?: unknown }).faultString)}`)
  ) as Effect.Effect<A | void, Exclude<E, { readonly _tag: "RetryError" }>, R> // catchIf cannot narrow the error union by tag itself

/** Builds the service. */
export const make = (options: HubOptions) =>
  Effect.map(makeConnection(options), (connection) => {
    const login = Effect.fn("KojiHub.login")(function* (force: boolean) {
      return yield* loginExclusive(connection, force)
    })
    return KojiHub.of({
      login,
      loginScoped: (force) => Effect.acquireRelease(login(force), (s) => s.logout),
      anonymous: anonymousSession(connection),
      recovered: recovered(connection)
    })
  })

/**
 * A login as kojid's (§3.1): the session, then the exclusive lock and `echo("OK")`. A builder
 * must take the exclusive lock before any other call (§3.4); without it the session is useless,
 * so it is closed again rather than left open on the hub.
 */
const loginExclusive = (connection: HubConnection, force: boolean) =>
  Effect.gen(function* () {
    const loginMethod: LoginMethod = selectLoginMethod(connection.transport.hasClientCert, connection.options.user)
    // kojid deletes an empty ccache before its first login; MIT krb5 cannot use it (§3.1).
    if (loginMethod === "gssapi") yield* removeEmptyCcache(connection.options.ccache)
    const sinfo = yield* loginCall(connection, loginMethod, undefined)
    const session = yield* makeSession(connection, loginMethod, sinfo)
    yield* Effect.annotateCurrentSpan({ sessionId: session.sessionId, loginMethod })
    // The hub does not whitelist exclusiveSession for retries: a lost reply makes the retry a
    // RetryError, but the first send committed the lock, and taking it twice would be harmless anyway.
    yield* doneOnRetry(session.call("exclusiveSession", [], { force })).pipe(Effect.tapError(() => session.logout))
    session.markExclusive()
    const echo = yield* session.call("echo", ["OK"])
    if (!Array.isArray(echo) || echo.length !== 1 || echo[0] !== "OK") {
      yield* session.logout
      return yield* Effect.fail(
        new HubError({ reason: "Decode", method: "echo", message: `echo: expected ["OK"], got ${JSON.stringify(echo, (_k, v) => typeof v === "bigint" ? String(v) : v)}` })
      )
    }
    yield* Effect.logInfo(`logged in with ${loginMethod}, session ${session.sessionId}`)
    const loggedIn: Session = session
    return loggedIn
  })

/** The TLS version type, re-exported for config code. */
export type { TlsVersion }
