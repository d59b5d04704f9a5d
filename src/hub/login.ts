/**
 * The login calls as kojid makes them (koji-protocol.md §3.1–3.3, §3.5): `sslLogin` with a client
 * certificate, `login` with a password, or GSSAPI (`sslLogin` with a Negotiate token), fresh or
 * as the renewal of an expired session.
 */
import { Effect, Either } from "effect"
import type { Fault } from "../koji/faults.js"
import { HubError, LoginError } from "./HubError.js"
import { type HubConnection, retryPause, sendAndRead, withRetries } from "./connection.js"
import { type GssapiCredentials, hubService, loginPrincipal } from "./gssapi.js"
import { isConnectionReset } from "./HubTransport.js"
import { decodeAs, interruptibleCall, readResponse, SessionInfo, withKwargs, xmlRequest } from "./wire.js"
import { encodeMethodCall, type XmlRpcValue } from "./xmlrpc.js"

/** How a session logs in. */
export type LoginMethod = "sslLogin" | "login" | "gssapi"

/** A renewal's session credentials, in headers or the query as the session's other calls. */
export interface RenewAuth {
  /** The expiring session holds the exclusive lock (the renewal keeps it). */
  readonly exclusive: boolean
  readonly headers: Record<string, string>
  readonly query: ReadonlyArray<readonly [string, string]>
}

/** The base URL of a session's calls: https after a GSSAPI login. */
export const sessionBaseUrl = (c: HubConnection, loginMethod: LoginMethod): string =>
  loginMethod === "gssapi" ? c.gssapiBaseUrl : c.baseUrl

const renewKwargs = (kw: Record<string, XmlRpcValue | undefined>, renew: RenewAuth | undefined) => {
  if (renew !== undefined) {
    kw["renew"] = true
    kw["exclusive"] = renew.exclusive
  }
  return kw
}

/** The hub's 403 on `sslLogin`, explained: usually the client certificate lost to TLS 1.3. */
const noCertificate = (c: HubConnection, url: string, error: HubError) =>
  new LoginError({
    method: "sslLogin",
    message: `${error.message} — the hub did not receive a client certificate on ${url}. The stock koji ` +
      `Apache config asks for it only there; under TLS 1.3 that is post-handshake auth, which Node cannot ` +
      `do (koji-protocol.md §12). Keep login_tls_max_version = TLSv1.2 (now ${c.options.loginTlsMaxVersion ?? "TLSv1.2"}) ` +
      `or make Apache request the certificate in the initial handshake.`
  })

/** The login call itself, fresh or as a renewal (§3.2, §3.3, §3.5). */
export const loginCall = (
  c: HubConnection,
  loginMethod: LoginMethod,
  renew: RenewAuth | undefined
): Effect.Effect<SessionInfo, Fault | HubError | LoginError> => {
  if (loginMethod === "gssapi") return gssapiLoginCall(c, renew)
  const kw = renewKwargs(loginMethod === "sslLogin" ? { proxyuser: null } : { opts: null }, renew)
  const positional: ReadonlyArray<XmlRpcValue> = loginMethod === "login" ? [c.options.user ?? "", c.options.password ?? ""] : []
  const url = loginMethod === "sslLogin" ? `${c.baseUrl}/ssllogin` : c.baseUrl
  const request = xmlRequest(url, loginMethod, withKwargs(positional, kw), renew?.headers ?? {}, renew?.query, loginMethod === "sslLogin")
  // Not logged in while this runs, so koji does not retry it (anon_retry is off, §1.7).
  return interruptibleCall(withRetries(c, loginMethod, undefined, false, sendAndRead(c, request))).pipe(
    Effect.mapError((error): Fault | HubError | LoginError =>
      error._tag === "HubError" && error.reason === "Http" && error.status === 403 && loginMethod === "sslLogin"
        ? noCertificate(c, url, error)
        : error
    ),
    Effect.flatMap(({ value }): Effect.Effect<SessionInfo, HubError | LoginError> =>
      value === null || value === false
        ? Effect.fail(new LoginError({ method: loginMethod, message: `${loginMethod}: the hub returned no session` }))
        : decodeAs(SessionInfo, loginMethod)(value)
    )
  )
}

/** One `sslLogin` request with a fresh Negotiate token, the server's mutual-auth token checked. */
const gssapiAttempt = (c: HubConnection, credentials: GssapiCredentials, renew: RenewAuth | undefined) => {
  const url = `${c.gssapiBaseUrl}/ssllogin`
  const body = new TextEncoder().encode(encodeMethodCall("sslLogin", withKwargs([], renewKwargs({ proxyuser: null }, renew))))
  return Effect.gen(function* () {
    const context = yield* c.negotiate(credentials)
    const response = yield* c.transport.send({
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
}

/** The web server's 401 to a GSSAPI login, explained. */
const ticketRefused = (credentials: GssapiCredentials, error: HubError) =>
  new LoginError({
    method: "gssapi",
    message: `GSSAPI login as ${credentials.principal} refused: ${error.message}. The web server did not accept the ` +
      `Kerberos ticket for ${credentials.service}: check its keytab (GssapiCredStore) and that the hub URL's ` +
      `host name is the one in its HTTP/ principal. See https://docs.pagure.org/koji/kerberos_gssapi_debug/`
  })

/**
 * `gssapi_login` (§3.2): `sslLogin` at `<https base>/ssllogin` with a fresh Negotiate token per
 * request (the server's replay cache rejects a reused one), the server's mutual-auth token
 * checked as requests-gssapi does, and only connection drops retried: up to max_retries
 * tries, retry_interval apart. A KDC that cannot be reached fails at once, as in kojid.
 */
const gssapiLoginCall = (
  c: HubConnection,
  renew: RenewAuth | undefined
): Effect.Effect<SessionInfo, Fault | HubError | LoginError> =>
  interruptibleCall(Effect.gen(function* () {
    const principal = yield* loginPrincipal(c.options.krbPrincipal, c.options.hostPrincipalFormat)
    const credentials = { principal, keytab: c.options.keytab, ccache: c.options.ccache, service: hubService(c.gssapiBaseUrl) }
    const attempt = gssapiAttempt(c, credentials, renew)
    const maxTries = Math.max(1, c.maxRetries)
    for (let tries = 1; ; tries++) {
      const result = yield* Effect.either(withRetries(c, "sslLogin", undefined, false, attempt))
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
        yield* retryPause(c, c.retryInterval)
        continue
      }
      if (error._tag === "HubError" && error.reason === "Http" && error.status === 401) {
        return yield* Effect.fail(ticketRefused(credentials, error))
      }
      return yield* Effect.fail(error)
    }
  }))
