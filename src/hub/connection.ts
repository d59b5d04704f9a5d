/**
 * What every session of one KojiHub service shares (koji-protocol.md §1.7): the transport, kojid's
 * retry policy, and whether the hub answers. When a request fails, the hub counts as down until
 * the first answer to a request sent after that failure; waiting calls and `recovered` wake at
 * that answer, and while they wait one of them probes the hub with `getAPIVersion`.
 */
import { Clock, Deferred, Duration, Effect, Either, FiberId } from "effect"
import { type Fault, ServerOffline } from "../koji/faults.js"
import type { HubError, LoginError } from "./HubError.js"
import { HubTransport, type HubRequest, type TransportOptions } from "./HubTransport.js"
import { forceHttps, krb5Negotiate, type NegotiateProvider } from "./gssapi.js"
import { readResponse } from "./wire.js"
import { encodeMethodCall, type XmlRpcValue } from "./xmlrpc.js"

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

/**
 * Whether the hub answers, for all sessions of this service. `sent` numbers the requests;
 * `failedAt` is `sent` when a request last failed, so an answer to a request sent before that
 * failure (a reply that was already on its way) is not taken for the hub's return.
 */
interface HubHealth {
  sent: number
  failedAt: number
  down: boolean
  downSince: number
  back: Deferred.Deferred<void>
  /** Completed when the hub is found down (then replaced): what `recovered` waits for first. */
  fell: Deferred.Deferred<void>
  waiting: number
}

/** The shared state of one KojiHub service's sessions. */
export interface HubConnection {
  readonly options: HubOptions
  readonly transport: HubTransport["Type"]
  readonly baseUrl: string
  /** gssapi_login switches the client to https for the login and every later call (§3.2). */
  readonly gssapiBaseUrl: string
  readonly negotiate: NegotiateProvider
  readonly maxRetries: number
  readonly retryInterval: Duration.Duration
  readonly offlineRetry: boolean
  readonly offlineRetryInterval: Duration.Duration
  readonly probing: boolean
  readonly probeInterval: Duration.Duration
  readonly probeRequest: HubRequest
  /** One probe permit: one probe goes out however many calls wait. */
  readonly probeSlot: Effect.Semaphore
  readonly health: HubHealth
}

/** The connection of a new service over the current HubTransport. */
export const makeConnection = (options: HubOptions) =>
  Effect.gen(function* () {
    const transport = yield* HubTransport
    const baseUrl = transport.baseUrl
    const connection: HubConnection = {
      options,
      transport,
      baseUrl,
      gssapiBaseUrl: forceHttps(baseUrl),
      negotiate: options.negotiate ?? krb5Negotiate,
      maxRetries: options.maxRetries ?? 120,
      retryInterval: Duration.seconds(options.retryInterval ?? 60),
      offlineRetry: options.offlineRetry ?? true,
      offlineRetryInterval: Duration.seconds(options.offlineRetryInterval ?? 120),
      probing: (options.recoveryProbeInterval ?? 5) > 0,
      probeInterval: Duration.millis(Math.max(50, 1000 * Math.min(options.recoveryProbeInterval ?? 5, options.retryInterval ?? 60))),
      probeRequest: {
        method: "getAPIVersion",
        url: baseUrl,
        headers: {},
        body: new TextEncoder().encode(encodeMethodCall("getAPIVersion", [])),
        contentType: "text/xml",
        timeout: Duration.seconds(Math.min(30, options.timeout ?? 30))
      },
      probeSlot: yield* Effect.makeSemaphore(1),
      health: { sent: 0, failedAt: 0, down: false, downSince: 0, back: Deferred.unsafeMake<void>(FiberId.none), fell: Deferred.unsafeMake<void>(FiberId.none), waiting: 0 }
    }
    return connection
  })

/** Sends one request and decodes its answer; `resends` counts the transport's immediate re-sends after a reset. */
export const sendAndRead = (c: HubConnection, request: HubRequest, resends?: { count: number }) =>
  c.transport.send(request).pipe(Effect.flatMap((response) => {
    if (response.resent && resends !== undefined) resends.count++
    return readResponse(request.method, response.body)
  }))

/**
 * The probe: while the hub is down, `getAPIVersion` every probeInterval. It runs in the wait
 * of whoever holds the one probe permit, so one probe goes out however many calls wait, it
 * needs no fiber of its own, and when its holder stops waiting another waiter takes it over.
 */
const probeLoop = (c: HubConnection): Effect.Effect<never> =>
  c.probeSlot.withPermits(1)(Effect.forever(Effect.gen(function* () {
    yield* Effect.sleep(c.probeInterval)
    if (!c.health.down) return
    const probe = yield* Effect.either(observed(c, sendAndRead(c, c.probeRequest)))
    if (Either.isLeft(probe)) yield* Effect.logDebug(`hub probe: ${probe.left.message}`)
  })))

const hubFailed = (c: HubConnection): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    c.health.failedAt = c.health.sent
    if (c.health.down) return Effect.void
    c.health.down = true
    c.health.downSince = now
    const fell = c.health.fell
    c.health.fell = Deferred.unsafeMake<void>(FiberId.none)
    return Deferred.succeed(fell, undefined)
  })

const hubAnswered = (c: HubConnection, serial: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    const health = c.health
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
  c: HubConnection,
  attempt: Effect.Effect<Either.Either<XmlRpcValue, Fault>, E>
): Effect.Effect<Either.Either<XmlRpcValue, Fault>, E> =>
  Effect.suspend(() => {
    const serial = ++c.health.sent
    return Effect.tapBoth(attempt, {
      onSuccess: (outcome) => (Either.isLeft(outcome) && outcome.left instanceof ServerOffline ? hubFailed(c) : hubAnswered(c, serial)),
      onFailure: (error) => (error._tag === "HubError" && error.reason !== "Certificate" ? hubFailed(c) : Effect.void)
    })
  })

/**
 * Waits for the hub's return (the `back` of now), taking its turn at probing, at most `limit`.
 * Each side runs interruptible in a fiber of its own, so the race ends at once even when the
 * waiting call is not interruptible (a release after an interrupt).
 */
const awaitBack = (c: HubConnection, limit: Duration.Duration | undefined, onlyWhileDown: boolean): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (onlyWhileDown && !c.health.down) return Effect.void
    const back = Effect.interruptible(Deferred.await(c.health.back))
    const sides: Array<Effect.Effect<void>> = [back]
    if (c.probing) sides.push(Effect.interruptible(probeLoop(c)))
    if (limit !== undefined) sides.push(Effect.interruptible(Effect.sleep(limit)))
    c.health.waiting++
    return Effect.raceAll(sides).pipe(Effect.ensuring(Effect.sync(() => {
      c.health.waiting--
    })))
  })

/**
 * A retry's wait: `interval` at most (kojid's retry_interval or offline_retry_interval), over
 * at once when the hub answers again; no wait when it already has since this call failed.
 */
export const retryPause = (c: HubConnection, interval: Duration.Duration): Effect.Effect<void> => awaitBack(c, interval, true)

/**
 * Completes at the next "hub is back" (KojiHubService.recovered): waits for the hub to be found
 * down (no probing, no wake-ups while it answers), then for its return.
 */
export const recovered = (c: HubConnection): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.suspend(() => (c.health.down ? Effect.void : Deferred.await(c.health.fell))),
    awaitBack(c, undefined, true)
  )

/**
 * kojid's retry loop (`ClientSession._callMethod`, §1.7): faults are final except ServerOffline
 * with offline_retry (sleep, reset the counter, forever); transport errors are retried up to
 * max_retries, the first retry at once and later ones after retry_interval; certificate
 * errors and calls without a session are not retried. Every wait ends early when the hub
 * answers again (`retryPause`); each retry still counts against max_retries.
 */
export const withRetries = <E extends HubError | LoginError>(
  c: HubConnection,
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
      const result = yield* Effect.either(observed(c, attempt))
      if (Either.isRight(result)) {
        const outcome = result.right
        if (Either.isRight(outcome)) return { value: outcome.right, attempts }
        const fault = outcome.left
        if (fault instanceof ServerOffline && c.offlineRetry) {
          yield* Effect.logWarning(`hub offline (${fault.faultString}); retrying ${method} in ${Duration.format(c.offlineRetryInterval)}`)
          yield* retryPause(c, c.offlineRetryInterval)
          tries = 0
          continue
        }
        return yield* Effect.fail(fault)
      }
      const error = result.left
      if (error._tag === "LoginError" || error.reason === "Certificate" || !retry || tries > c.maxRetries) return yield* Effect.fail(error)
      yield* Effect.logWarning(`Try #${tries} for call ${callnum ?? "-"} (${method}) failed: ${error.message}`)
      if (tries > 1) yield* retryPause(c, c.retryInterval)
    }
  })
