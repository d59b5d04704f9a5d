/**
 * KojiHub: sessions with the koji hub exactly as kojid's `ClientSession` keeps them
 * (koji-protocol.md §1.5–1.8, §3): login, exclusive lock, header or URL session auth, a callnum
 * that only ever increases, one call in flight per session, renewal on AuthExpired, subsessions,
 * and kojid's retry policy — with one thing kojid lacks: a shared "hub is back" signal. When
 * the hub stops answering, calls wait to retry as kojid's policy says, a probe asks the hub
 * every few seconds whether it answers again, and the first answer after the failure wakes
 * every waiting call at once (and whoever awaits `recovered`, e.g. the daemon loop).
 */
import { Clock, Context, Deferred, Duration, Effect, Either, FiberId, HashSet, Layer, ParseResult, Schema, type Scope } from "effect"
import { type Fault, isFault, ParameterError, ServerOffline } from "../koji/faults.js"
import { AdjutantConfig, type Config } from "../config/AdjutantConfig.js"
import { observeHubCall, observeUpload } from "../metrics/Metrics.js"
import { HubError, LoginError } from "./HubError.js"
import { forceHttps, hubService, krb5Negotiate, loginPrincipal, type NegotiateProvider, removeEmptyCcache, selectLoginMethod } from "./gssapi.js"
import { HubTransport, isConnectionReset, type HubRequest, type TlsVersion, type TransportOptions } from "./HubTransport.js"
import {
  decodeMultiCallResult, decodeResponse, encodeMethodCall, encodeMultiCall, kwargs as kwargsStruct,
  type XmlRpcStruct, type XmlRpcValue
} from "./xmlrpc.js"

/** Session options: kojid.conf names in camelCase, with kojid's defaults (§1.7, §9). */
export interface HubOptions extends TransportOptions {
  readonly user?: string | undefined
  readonly password?: string | undefined
  readonly krbPrincipal?: string | undefined
  readonly hostPrincipalFormat?: string | undefined
  readonly keytab?: string | undefined
  readonly ccache?: string | undefined
  /** kojid default 120. */
  readonly maxRetries?: number | undefined
  /** Seconds; kojid default 60. */
  readonly retryInterval?: number | undefined
  /** kojid default true. */
  readonly offlineRetry?: boolean | undefined
  /** Seconds; kojid default 120. */
  readonly offlineRetryInterval?: number | undefined
  /**
   * Seconds between probes (an anonymous `getAPIVersion`) while calls wait for a hub that stopped
   * answering; default 5, never more than retry_interval; 0 turns the probe off. kojid has no
   * probe: its waiting calls learn that the hub is back only when their own retry_interval ends.
   */
  readonly recoveryProbeInterval?: number | undefined
  /** Retry transport errors of calls made without a session (koji `anon_retry`, default false). */
  readonly anonRetry?: boolean | undefined
  /** kojid `use_fast_upload` (default true): `rawUpload`, else legacy `uploadFile` (§6). */
  readonly useFastUpload?: boolean | undefined
  /** Where GSSAPI login gets its Negotiate tokens; MIT krb5 through the `kerberos` addon unless a test replaces it. */
  readonly negotiate?: NegotiateProvider | undefined
}

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

/** Keyword arguments of a call; `undefined` members are left out. */
export type Kwargs = Readonly<Record<string, XmlRpcValue | undefined>>

/** One call of a multiCall batch. */
export interface BatchCall {
  readonly method: string
  readonly params?: ReadonlyArray<XmlRpcValue> | undefined
  readonly kwargs?: Kwargs | undefined
}

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
export class KojiHub extends Context.Tag("koji-adjutant/KojiHub")<KojiHub, KojiHubService>() {
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

/**
 * Runs a hub call interruptibly wherever it runs, so a caller's `Effect.timeout` bounds it even
 * in an uninterruptible region (a scope's acquire or release, a shutdown in `onInterrupt`:
 * `timeout` runs it in a fiber of its own). The one exception is a fiber that is already being
 * interrupted: there an interruptible region would end the call before it starts, so it runs to
 * its end, each request still bounded by the transport's timeout.
 */
const interruptibleCall = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.descriptorWith((fiber) => (HashSet.size(fiber.interruptors) > 0 ? self : Effect.interruptible(self)))

/** `sinfo` as the login calls return it (§1.5). */
const SessionInfo = Schema.Struct({
  "session-id": Schema.Number,
  "session-key": Schema.String,
  "header-auth": Schema.optional(Schema.Boolean)
})
type SessionInfo = typeof SessionInfo.Type

/** Formats a Schema parse error as "field a.b: expected …". */
export const formatParseError = (method: string, error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const parts = issues.slice(0, 3).map((i) =>
    i.path.length === 0 ? i.message : `field ${i.path.map(String).join(".")}: ${i.message}`
  )
  return `${method}: ${parts.join("; ")}${issues.length > 3 ? ` (and ${issues.length - 3} more)` : ""}`
}

/** Decodes a hub value with a Schema; a mismatch is `HubError("Decode")` naming the field. */
export const decodeAs = <A, I>(schema: Schema.Schema<A, I>, method: string) => (value: XmlRpcValue): Effect.Effect<A, HubError> =>
  Schema.decodeUnknown(schema)(value).pipe(
    Effect.mapError((error) => new HubError({ reason: "Decode", method, message: formatParseError(method, error) }))
  )

const withKwargs = (params: ReadonlyArray<XmlRpcValue> | undefined, kw: Kwargs | undefined): ReadonlyArray<XmlRpcValue> => {
  const base = params ?? []
  if (kw === undefined) return base
  const present: Record<string, XmlRpcValue> = {}
  for (const [k, v] of Object.entries(kw)) if (v !== undefined) present[k] = v
  // koji's encode_args adds the keyword struct only when there are keywords (§1.3).
  return Object.keys(present).length === 0 ? base : [...base, kwargsStruct(present as XmlRpcStruct)]
}

const textStart = (body: Uint8Array): string =>
  new TextDecoder().decode(body.subarray(0, 40)).replace(/\s+/g, " ").trim()

/** Decodes a 200 body into the value or the fault; parse failures become `HubError("Parse")`. */
const readResponse = (method: string, body: Uint8Array): Effect.Effect<Either.Either<XmlRpcValue, Fault>, HubError> => {
  const decoded = decodeResponse(body)
  if (Either.isRight(decoded)) return Effect.succeed(Either.right(decoded.right))
  const error = decoded.left
  if (isFault(error)) return Effect.succeed(Either.left(error))
  return Effect.fail(
    new HubError({
      reason: "Parse",
      method,
      message: `${method}: response is not XML-RPC (starts with '${textStart(body)}'): ${error.message}`
    })
  )
}

type LoginMethod = "sslLogin" | "login" | "gssapi"

interface SessionState {
  sessionId: number
  key: string
  headerAuth: boolean
  callnum: number
  exclusive: boolean
  loggedIn: boolean
}

/** A renewal's session credentials, in headers or the query as the session's other calls. */
interface RenewAuth {
  readonly state: SessionState
  readonly headers: Record<string, string>
  readonly query: ReadonlyArray<readonly [string, string]>
}

/** Builds the service. */
export const make = (options: HubOptions) =>
  Effect.gen(function* () {
    const transport = yield* HubTransport
    const maxRetries = options.maxRetries ?? 120
    const retryInterval = Duration.seconds(options.retryInterval ?? 60)
    const offlineRetry = options.offlineRetry ?? true
    const offlineRetryInterval = Duration.seconds(options.offlineRetryInterval ?? 120)
    const probing = (options.recoveryProbeInterval ?? 5) > 0
    const probeInterval = Duration.millis(Math.max(50, 1000 * Math.min(options.recoveryProbeInterval ?? 5, options.retryInterval ?? 60)))
    const probeTimeout = Duration.seconds(Math.min(30, options.timeout ?? 30))
    const baseUrl = transport.baseUrl
    // gssapi_login switches the client to https for the login and every later call (§3.2).
    const gssapiBaseUrl = forceHttps(baseUrl)
    const negotiate = options.negotiate ?? krb5Negotiate
    const sessionBaseUrl = (loginMethod: LoginMethod): string => (loginMethod === "gssapi" ? gssapiBaseUrl : baseUrl)

    /**
     * Whether the hub answers, for all sessions of this service. `sent` numbers the requests;
     * `failedAt` is `sent` when a request last failed, so an answer to a request sent before that
     * failure (a reply that was already on its way) is not taken for the hub's return.
     */
    const health = {
      sent: 0,
      failedAt: 0,
      down: false,
      downSince: 0,
      back: Deferred.unsafeMake<void>(FiberId.none),
      waiting: 0
    }

    const probeRequest: HubRequest = {
      method: "getAPIVersion",
      url: baseUrl,
      headers: {},
      body: new TextEncoder().encode(encodeMethodCall("getAPIVersion", [])),
      contentType: "text/xml",
      timeout: probeTimeout
    }

    /**
     * The probe: while the hub is down, `getAPIVersion` every probeInterval. It runs in the wait
     * of whoever holds the one probe permit, so one probe goes out however many calls wait, it
     * needs no fiber of its own, and when its holder stops waiting another waiter takes it over.
     */
    const probeSlot = yield* Effect.makeSemaphore(1)
    const probeLoop: Effect.Effect<never> = probeSlot.withPermits(1)(Effect.forever(Effect.gen(function* () {
      yield* Effect.sleep(probeInterval)
      if (!health.down) return
      const probe = yield* Effect.either(observed(sendAndRead(probeRequest)))
      if (Either.isLeft(probe)) yield* Effect.logDebug(`hub probe: ${probe.left.message}`)
    })))

    const hubFailed: Effect.Effect<void> = Effect.map(Clock.currentTimeMillis, (now) => {
      if (!health.down) {
        health.down = true
        health.downSince = now
      }
      health.failedAt = health.sent
    })

    const hubAnswered = (serial: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!health.down || serial <= health.failedAt) return Effect.void
        health.down = false
        const back = health.back
        health.back = Deferred.unsafeMake<void>(FiberId.none)
        const waiting = health.waiting
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.zipRight(
            Deferred.succeed(back, undefined),
            Effect.logInfo(`the hub answers again after ${Duration.format(Duration.millis(now - health.downSince))}` +
              (waiting > 0 ? `; ${waiting} waiting ${waiting === 1 ? "call retries" : "calls retry"} now` : ""))
          ))
      })

    /** One request, with what it tells about the hub's health noted. */
    const observed = <E extends HubError | LoginError>(
      attempt: Effect.Effect<Either.Either<XmlRpcValue, Fault>, E>
    ): Effect.Effect<Either.Either<XmlRpcValue, Fault>, E> =>
      Effect.suspend(() => {
        const serial = ++health.sent
        return Effect.tapBoth(attempt, {
          onSuccess: (outcome) => (Either.isLeft(outcome) && outcome.left instanceof ServerOffline ? hubFailed : hubAnswered(serial)),
          onFailure: (error) => (error._tag === "HubError" && error.reason !== "Certificate" ? hubFailed : Effect.void)
        })
      })

    /**
     * Waits for the hub's return (the `back` of now), taking its turn at probing, at most `limit`.
     * Each side runs interruptible in a fiber of its own, so the race ends at once even when the
     * waiting call is not interruptible (a release after an interrupt).
     */
    const awaitBack = (limit: Duration.Duration | undefined, onlyWhileDown: boolean): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (onlyWhileDown && !health.down) return Effect.void
        const back = Effect.interruptible(Deferred.await(health.back))
        const sides: Array<Effect.Effect<void>> = [back]
        if (probing) sides.push(Effect.interruptible(probeLoop))
        if (limit !== undefined) sides.push(Effect.interruptible(Effect.sleep(limit)))
        health.waiting++
        return Effect.raceAll(sides).pipe(Effect.ensuring(Effect.sync(() => {
          health.waiting--
        })))
      })

    /**
     * A retry's wait: `interval` at most (kojid's retry_interval or offline_retry_interval), over
     * at once when the hub answers again; no wait when it already has since this call failed.
     */
    const retryPause = (interval: Duration.Duration): Effect.Effect<void> => awaitBack(interval, true)

    const recovered: Effect.Effect<void> = awaitBack(undefined, false)

    /**
     * kojid's retry loop (`ClientSession._callMethod`, §1.7): faults are final except ServerOffline
     * with offline_retry (sleep, reset the counter, forever); transport errors are retried up to
     * max_retries, the first retry at once and later ones after retry_interval; certificate
     * errors and calls without a session are not retried. Every wait ends early when the hub
     * answers again (`retryPause`); each retry still counts against max_retries.
     */
    const withRetries = <E extends HubError | LoginError>(
      method: string,
      callnum: number | undefined,
      retry: boolean,
      attempt: Effect.Effect<Either.Either<XmlRpcValue, Fault>, E>
    ): Effect.Effect<{ readonly value: XmlRpcValue; readonly attempts: number }, Fault | E> =>
      Effect.gen(function* () {
        let tries = 0
        let attempts = 0
        while (true) {
          tries++
          attempts++
          const result = yield* Effect.either(observed(attempt))
          if (Either.isRight(result)) {
            const outcome = result.right
            if (Either.isRight(outcome)) return { value: outcome.right, attempts }
            const fault = outcome.left
            if (fault instanceof ServerOffline && offlineRetry) {
              yield* Effect.logWarning(`hub offline (${fault.faultString}); retrying ${method} in ${Duration.format(offlineRetryInterval)}`)
              yield* retryPause(offlineRetryInterval)
              tries = 0
              continue
            }
            return yield* Effect.fail(fault)
          }
          const error = result.left
          if (error._tag === "LoginError" || error.reason === "Certificate" || !retry || tries > maxRetries) return yield* Effect.fail(error)
          yield* Effect.logWarning(`Try #${tries} for call ${callnum ?? "-"} (${method}) failed: ${error.message}`)
          if (tries > 1) yield* retryPause(retryInterval)
        }
      })

    const xmlRequest = (url: string, method: string, params: ReadonlyArray<XmlRpcValue>, headers: Record<string, string>, query: ReadonlyArray<readonly [string, string]> | undefined, login: boolean): HubRequest => ({
      method,
      url,
      query,
      headers,
      body: new TextEncoder().encode(encodeMethodCall(method, params)),
      contentType: "text/xml",
      login
    })

    const sendAndRead = (request: HubRequest, resends?: { count: number }) =>
      transport.send(request).pipe(Effect.flatMap((response) => {
        if (response.resent && resends !== undefined) resends.count++
        return readResponse(request.method, response.body)
      }))

    const multiCallResult = (method: string) => (value: XmlRpcValue) => {
      const decoded = decodeMultiCallResult(value)
      return Either.isRight(decoded)
        ? Effect.succeed(decoded.right)
        : Effect.fail(new HubError({ reason: "Decode", method, message: `${method}: ${decoded.left.message}` }))
    }

    const toBatch = (calls: ReadonlyArray<BatchCall>) =>
      encodeMultiCall(calls.map((c) => ({ methodName: c.method, params: withKwargs(c.params, c.kwargs) })))

    const anonymousCall = (method: string, params?: ReadonlyArray<XmlRpcValue>, kw?: Kwargs) => {
      const request = xmlRequest(baseUrl, method, withKwargs(params, kw), {}, undefined, false)
      return interruptibleCall(withRetries(method, undefined, options.anonRetry === true, sendAndRead(request))).pipe(Effect.map((r) => r.value), observeHubCall(method))
    }

    const anonymous: AnonymousSession = {
      call: (method, params, kw) => anonymousCall(method, params, kw).pipe(Effect.withSpan("KojiHub.call", { attributes: { method } })),
      callAs: (schema, method, params, kw) => anonymousCall(method, params, kw).pipe(Effect.flatMap(decodeAs(schema, method))),
      multiCall: (calls) => anonymousCall("multiCall", toBatch(calls)).pipe(Effect.flatMap(multiCallResult("multiCall")))
    }

    /** The login call itself, fresh or as a renewal (§3.2, §3.3, §3.5). */
    const loginCall = (
      loginMethod: LoginMethod,
      renew: RenewAuth | undefined
    ): Effect.Effect<SessionInfo, Fault | HubError | LoginError> => {
      if (loginMethod === "gssapi") return gssapiLoginCall(renew)
      const kw: Record<string, XmlRpcValue | undefined> = loginMethod === "sslLogin" ? { proxyuser: null } : { opts: null }
      if (renew !== undefined) {
        kw["renew"] = true
        kw["exclusive"] = renew.state.exclusive
      }
      const positional: ReadonlyArray<XmlRpcValue> = loginMethod === "login" ? [options.user ?? "", options.password ?? ""] : []
      const url = loginMethod === "sslLogin" ? `${baseUrl}/ssllogin` : baseUrl
      const request = xmlRequest(url, loginMethod, withKwargs(positional, kw), renew?.headers ?? {}, renew?.query, loginMethod === "sslLogin")
      // Not logged in while this runs, so koji does not retry it (anon_retry is off, §1.7).
      return interruptibleCall(withRetries(loginMethod, undefined, false, sendAndRead(request))).pipe(
        Effect.mapError((error): Fault | HubError | LoginError =>
          error._tag === "HubError" && error.reason === "Http" && error.status === 403 && loginMethod === "sslLogin"
            ? new LoginError({
              method: "sslLogin",
              message: `${error.message} — the hub did not receive a client certificate on ${url}. The stock koji ` +
                `Apache config asks for it only there; under TLS 1.3 that is post-handshake auth, which Node cannot ` +
                `do (koji-protocol.md §12). Keep login_tls_max_version = TLSv1.2 (now ${options.loginTlsMaxVersion ?? "TLSv1.2"}) ` +
                `or make Apache request the certificate in the initial handshake.`
            })
            : error
        ),
        Effect.flatMap(({ value }): Effect.Effect<SessionInfo, HubError | LoginError> =>
          value === null || value === false
            ? Effect.fail(new LoginError({ method: loginMethod, message: `${loginMethod}: the hub returned no session` }))
            : decodeAs(SessionInfo, loginMethod)(value)
        )
      )
    }

    /**
     * `gssapi_login` (§3.2): `sslLogin` at `<https base>/ssllogin` with a fresh Negotiate token per
     * request (the server's replay cache rejects a reused one), the server's mutual-auth token
     * checked as requests-gssapi does, and only connection drops retried: up to max_retries
     * tries, retry_interval apart. A KDC that cannot be reached fails at once, as in kojid.
     */
    const gssapiLoginCall = (
      renew: RenewAuth | undefined
    ): Effect.Effect<SessionInfo, Fault | HubError | LoginError> =>
      interruptibleCall(Effect.gen(function* () {
        const principal = yield* loginPrincipal(options.krbPrincipal, options.hostPrincipalFormat)
        const url = `${gssapiBaseUrl}/ssllogin`
        const credentials = { principal, keytab: options.keytab, ccache: options.ccache, service: hubService(gssapiBaseUrl) }
        const kw: Record<string, XmlRpcValue> = { proxyuser: null }
        if (renew !== undefined) {
          kw["renew"] = true
          kw["exclusive"] = renew.state.exclusive
        }
        const body = new TextEncoder().encode(encodeMethodCall("sslLogin", withKwargs([], kw)))
        const attempt = Effect.gen(function* () {
          const context = yield* negotiate(credentials)
          const response = yield* transport.send({
            method: "sslLogin",
            url,
            query: renew?.query,
            headers: { ...renew?.headers, Authorization: `Negotiate ${context.token}` },
            body,
            contentType: "text/xml",
            login: true
          })
          yield* context.verify(/^\s*Negotiate\s+(\S+)/i.exec(response.headers["www-authenticate"] ?? "")?.[1])
          return yield* readResponse("sslLogin", response.body)
        })
        const maxTries = Math.max(1, maxRetries)
        for (let tries = 1; ; tries++) {
          const result = yield* Effect.either(withRetries("sslLogin", undefined, false, attempt))
          if (Either.isRight(result)) {
            const { value } = result.right
            if (value === null || value === false) {
              return yield* Effect.fail(new LoginError({ method: "gssapi", message: `sslLogin as ${principal}: the hub returned no session` }))
            }
            return yield* decodeAs(SessionInfo, "sslLogin")(value)
          }
          const error = result.left
          if (error._tag === "HubError" && isConnectionReset(error) && tries < maxTries) {
            yield* Effect.logInfo(`Try #${tries} for call sslLogin (GSSAPI) failed: ${error.message}`)
            yield* retryPause(retryInterval)
            continue
          }
          if (error._tag === "HubError" && error.reason === "Http" && error.status === 401) {
            return yield* Effect.fail(new LoginError({
              method: "gssapi",
              message: `GSSAPI login as ${principal} refused: ${error.message}. The web server did not accept the ` +
                `Kerberos ticket for ${credentials.service}: check its keytab (GssapiCredStore) and that the hub URL's ` +
                `host name is the one in its HTTP/ principal. See https://docs.pagure.org/koji/kerberos_gssapi_debug/`
            }))
          }
          return yield* Effect.fail(error)
        }
      }))

    const makeSession = (loginMethod: LoginMethod, sinfo: SessionInfo): Effect.Effect<Session & { readonly markExclusive: () => void }> =>
      Effect.gen(function* () {
        const lock = yield* Effect.makeSemaphore(1)
        const base = sessionBaseUrl(loginMethod)
        const state: SessionState = {
          sessionId: sinfo["session-id"],
          key: sinfo["session-key"],
          headerAuth: sinfo["header-auth"] === true,
          callnum: 0,
          exclusive: false,
          loggedIn: true
        }

        /** Takes the next callnum: copied into the request, then incremented, once per logical call (§1.6). */
        const auth = (): { headers: Record<string, string>; query: Array<readonly [string, string]>; callnum: number } => {
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


        const renew = (expired: Fault) => Effect.gen(function* () {
          yield* Effect.logInfo(`session ${state.sessionId} expired; renewing with ${loginMethod}`)
          // The renewal names the session as every call does: headers, or the URL on a hub without header-auth (§1.5).
          const { headers, query } = auth()
          const fresh = yield* loginCall(loginMethod, { state, headers, query }).pipe(
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
        const once = (build: (a: ReturnType<typeof auth>) => HubRequest) =>
          Effect.suspend(() => {
            const a = auth()
            const request = build(a)
            const resends = { count: 0 }
            return withRetries(request.method, a.callnum, true, sendAndRead(request, resends)).pipe(
              Effect.map((r) => ({ value: r.value, attempts: r.attempts + resends.count }))
            )
          })

        /** One call with renewal on AuthExpired and then exactly one more try (§3.5). */
        const serialized = (build: (a: ReturnType<typeof auth>) => HubRequest) =>
          interruptibleCall(lock.withPermits(1)(
            once(build).pipe(
              Effect.catchIf(
                (e): e is Fault => e._tag === "AuthExpired",
                (expired) => renew(expired).pipe(Effect.zipRight(once(build)))
              )
            )
          ))

        const callRaw = (method: string, params?: ReadonlyArray<XmlRpcValue>, kw?: Kwargs) => {
          const encodedParams = withKwargs(params, kw)
          const body = new TextEncoder().encode(encodeMethodCall(method, encodedParams))
          return serialized((a) => ({
            method,
            url: base,
            query: a.query,
            headers: a.headers,
            body,
            contentType: "text/xml"
          }))
        }

        const call = (method: string, params?: ReadonlyArray<XmlRpcValue>, kw?: Kwargs) =>
          callRaw(method, params, kw).pipe(
            Effect.map((r) => r.value),
            observeHubCall(method),
            Effect.withSpan("KojiHub.call", { attributes: { method, sessionId: state.sessionId } })
          )

        const rawUpload = (args: RawUploadArgs) => {
          const query: Array<readonly [string, string]> = [
            ["filename", args.name],
            ["filepath", args.path],
            ["fileverify", args.verify ?? "adler32"],
            ["offset", String(args.offset)]
          ]
          if (args.overwrite === true) query.push(["overwrite", "1"])
          if (args.volume !== undefined) query.push(["volume", args.volume])
          return serialized((a) => ({
            method: "rawUpload",
            url: base,
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

        const logout: Effect.Effect<void> = Effect.gen(function* () {
          if (!state.loggedIn) return
          // koji sends logout once, without the retry loop (ClientSession.logout, §3.6).
          const sendLogout = (kw: Kwargs | undefined) =>
            lock.withPermits(1)(
              Effect.suspend(() => {
                const a = auth()
                return sendAndRead({
                  method: "logout",
                  url: base,
                  query: a.query,
                  headers: a.headers,
                  body: new TextEncoder().encode(encodeMethodCall("logout", withKwargs([], kw))),
                  contentType: "text/xml"
                })
              })
            )
          const first = yield* sendLogout({ session_id: null })
          const outcome = Either.isLeft(first) && first.left instanceof ParameterError
            ? yield* sendLogout(undefined) // hubs older than 1.31 reject the session_id keyword
            : first
          if (Either.isLeft(outcome) && outcome.left._tag !== "AuthExpired") {
            yield* Effect.logWarning(`logout of session ${state.sessionId}: ${outcome.left.message}`)
          }
          state.loggedIn = false
        }).pipe(
          Effect.catchAll((e) => Effect.logWarning(`logout of session ${state.sessionId} failed: ${e.message}`)),
          // logout is used as a scope release, which runs uninterruptibly: keep the bound effective.
          Effect.interruptible,
          Effect.timeout(Duration.seconds(30)),
          Effect.catchAll(() => Effect.logWarning(`logout of session ${state.sessionId} timed out`)),
          Effect.withSpan("KojiHub.logout")
        )

        const session: Session & { readonly markExclusive: () => void } = {
          sessionId: state.sessionId,
          useFastUpload: options.useFastUpload ?? true,
          nextCallnum: Effect.sync(() => state.callnum),
          call,
          callAs: (schema, method, params, kw) => call(method, params, kw).pipe(Effect.flatMap(decodeAs(schema, method))),
          multiCall: (calls) => call("multiCall", toBatch(calls)).pipe(Effect.flatMap(multiCallResult("multiCall"))),
          rawUpload,
          subsession: call("subsession").pipe(
            Effect.flatMap(decodeAs(SessionInfo, "subsession")),
            Effect.flatMap((sub) => makeSession(loginMethod, sub)),
            Effect.map((sub): Session => sub),
            Effect.withSpan("KojiHub.subsession")
          ),
          logout,
          logoutChild: (sessionId) => call("logoutChild", [sessionId]).pipe(Effect.asVoid),
          markExclusive: () => {
            state.exclusive = true
          }
        }
        return session
      })

    const login = Effect.fn("KojiHub.login")(function* (force: boolean) {
      const loginMethod: LoginMethod = selectLoginMethod(transport.hasClientCert, options.user)
      // kojid deletes an empty ccache before its first login; MIT krb5 cannot use it (§3.1).
      if (loginMethod === "gssapi") yield* removeEmptyCcache(options.ccache)
      const sinfo = yield* loginCall(loginMethod, undefined)
      const session = yield* makeSession(loginMethod, sinfo)
      yield* Effect.annotateCurrentSpan({ sessionId: session.sessionId, loginMethod })
      // A builder must take the exclusive lock before any other call (§3.4); without it the
      // session is useless, so it is closed again rather than left open on the hub. The hub does
      // not whitelist exclusiveSession for retries: a lost reply makes the retry a RetryError,
      // but the first send committed the lock, and taking it twice would be harmless anyway.
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
      return session as Session
    })

    return KojiHub.of({
      login,
      loginScoped: (force) => Effect.acquireRelease(login(force), (s) => s.logout),
      anonymous,
      recovered
    })
  })

/** The TLS version type, re-exported for config code. */
export type { TlsVersion }
