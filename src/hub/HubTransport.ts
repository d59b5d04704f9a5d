/**
 * HubTransport: the HTTP(S) connection pools to the koji hub (koji-protocol.md §1.1, §12).
 *
 * Two keep-alive agent pools (node http/https, made by NodeHttpClient.makeAgent): one for
 * ordinary calls, with the configured TLS versions, and one for the login call only, capped at
 * `login_tls_max_version` (TLSv1.2 by default). The stock koji Apache config requests the client
 * certificate only under `/kojihub/ssllogin`; under TLS 1.3 that is post-handshake auth, which
 * Node cannot do, so the hub answers 403 (§12). Under TLS 1.2 Apache renegotiates instead,
 * which Node supports.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Context, Duration, Effect, Layer } from "effect"
import { constants as cryptoConstants } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import { type AgentOptions as HttpsAgentOptions, request as httpsRequest } from "node:https"
import type * as tls from "node:tls"
import * as zlib from "node:zlib"
import { HubError } from "./HubError.js"

/** TLS protocol version names as node and kojid.conf spell them. */
export type TlsVersion = "TLSv1" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3"

/** What the transport needs: kojid's `server`, `cert`, `serverca`, `no_ssl_verify`, `timeout`, plus the adjutant TLS keys. */
export interface TransportOptions {
  /** The hub URL, e.g. `https://hub.example.com/kojihub`. */
  readonly server: string
  /** PEM file holding the client certificate and its key (kojid `cert`); ignored when missing. */
  readonly cert?: string | undefined
  /** CA bundle to verify the hub with (kojid `serverca`); system CAs when unset. */
  readonly serverca?: string | undefined
  /** kojid `no_ssl_verify`. */
  readonly noSslVerify?: boolean | undefined
  /** Seconds per request (kojid `timeout`); koji's default is 12 h. */
  readonly timeout?: number | undefined
  /** Seconds for the login request (koji's `auth_timeout`, 60). */
  readonly loginTimeout?: number | undefined
  readonly tlsMinVersion?: TlsVersion | undefined
  readonly tlsMaxVersion?: TlsVersion | undefined
  /** Cap for the login connection; TLSv1.2 unless the hub asks for the cert in the first handshake. */
  readonly loginTlsMaxVersion?: TlsVersion | undefined
}

/** One HTTP POST to the hub. */
export interface HubRequest {
  /** The koji method, for error messages. */
  readonly method: string
  /** Absolute URL without query. */
  readonly url: string
  readonly query?: ReadonlyArray<readonly [string, string]> | undefined
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array
  readonly contentType: "text/xml" | "application/octet-stream"
  /** Send on the login pool (TLS cap, login timeout). */
  readonly login?: boolean | undefined
  /** Overrides the pool's timeout for this request (the recovery probe's short bound). */
  readonly timeout?: Duration.DurationInput | undefined
}

/** A 2xx answer of the hub, body already decompressed. */
export interface HubResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array
  /** True when the request went out twice: the first connection was reset and it was re-sent at once (§1.1). */
  readonly resent: boolean
}

/** Default request timeout of koji's client (`DEFAULT_REQUEST_TIMEOUT`, 12 h). */
export const DEFAULT_REQUEST_TIMEOUT = 43200
/** Default login timeout of koji's client (`DEFAULT_AUTH_TIMEOUT`). */
export const DEFAULT_AUTH_TIMEOUT = 60

/** The transport service. */
export interface HubTransportService {
  /** The hub base URL (no trailing slash). */
  readonly baseUrl: string
  /** True when a client certificate file was loaded (kojid then logs in with `sslLogin`). */
  readonly hasClientCert: boolean
  /**
   * One POST; non-2xx is `HubError("Http")`; a reset kept-alive connection is re-sent once at once
   * (§1.1). Each request is bounded by its timeout wherever it runs, even in an uninterruptible
   * region (a scope's release, a shutdown in `onInterrupt`): the wait for the answer is interruptible.
   */
  readonly send: (request: HubRequest) => Effect.Effect<HubResponse, HubError>
}

/** The hub connection pools. */
export class HubTransport extends Context.Tag("HubTransport")<HubTransport, HubTransportService>() {
  /** Production layer from explicit options. */
  static readonly layer = (options: TransportOptions): Layer.Layer<HubTransport, HubError> =>
    Layer.scoped(HubTransport, make(options))
}

const certificateCodes = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "CERT_REVOKED", "ERR_TLS_CERT_ALTNAME_INVALID",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_GET_ISSUER_CERT", "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED", "CERT_REJECTED", "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED", "ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED",
  "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN", "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
  "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"
])

/** Removes the session key from a URL before it goes into a message (koji `_sanitize_url`). */
export const sanitizeUrl = (url: string): string =>
  url.replace(/session-id=\d+/g, "session-id=XXXXX").replace(/session-key=[^&]+/g, "session-key=XXXXX")

const errnoOf = (cause: unknown): { code?: string; message: string } => {
  let current: unknown = cause
  for (let depth = 0; depth < 4 && current !== null && typeof current === "object"; depth++) {
    const code = "code" in current && typeof current.code === "string" ? current.code : undefined
    if (code !== undefined) {
      const message = "message" in current && typeof current.message === "string" ? current.message : code
      return { code, message }
    }
    current = "cause" in current ? current.cause : undefined
  }
  return { message: cause instanceof Error ? cause.message : String(cause) }
}

const fromNodeError = (method: string, url: string, cause: unknown): HubError => {
  const { code, message } = errnoOf(cause)
  const where = sanitizeUrl(url)
  if (code !== undefined && certificateCodes.has(code)) {
    return new HubError({ reason: "Certificate", method, message: `${method}: TLS certificate error with ${where}: ${code} ${message}` })
  }
  const suffix = code !== undefined && !message.includes(code) ? ` (${code})` : ""
  return new HubError({
    reason: "Connection",
    method,
    message: `${method}: connection to ${where} failed: ${message}${suffix}`
  })
}

/** True for the errors koji re-sends once at once on a new connection (`is_conn_error`, §1.1). */
export const isConnectionReset = (error: HubError): boolean =>
  error.reason === "Connection" && /ECONNRESET|ECONNABORTED|EPIPE|socket hang up|aborted|closed/i.test(error.message)

const decompress = (method: string, encoding: string | undefined, body: Uint8Array): Effect.Effect<Uint8Array, HubError> =>
  Effect.try({
    try: () => {
      switch ((encoding ?? "identity").trim().toLowerCase()) {
        case "gzip":
        case "x-gzip":
          return new Uint8Array(zlib.gunzipSync(body))
        case "deflate":
          return new Uint8Array(zlib.inflateSync(body))
        case "br":
          return new Uint8Array(zlib.brotliDecompressSync(body))
        default:
          return body
      }
    },
    catch: (cause) =>
      new HubError({
        reason: "Parse",
        method,
        message: `${method}: cannot decode ${encoding} response body: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  })

const readPem = (what: string, path: string): Effect.Effect<string, HubError> =>
  Effect.try({
    try: () => fs.readFileSync(path, "utf8"),
    catch: (cause) =>
      new HubError({
        reason: "Certificate",
        method: "transport",
        message: `cannot read ${what} ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  })

/** Builds the two pools; a `cert` path that does not exist means "no client cert" as in kojid §3.1. */
export const make = (options: TransportOptions) =>
  Effect.gen(function* () {
    const baseUrl = options.server.replace(/\/+$/, "")
    const certPath = options.cert !== undefined && options.cert !== "" && fs.existsSync(options.cert) ? options.cert : undefined
    const certPem = certPath === undefined ? undefined : yield* readPem("client certificate", certPath)
    const caPem = options.serverca !== undefined && options.serverca !== "" ? yield* readPem("server CA", options.serverca) : undefined
    const tlsOptions = (maxVersion: TlsVersion | undefined, login: boolean): HttpsAgentOptions => {
      const o: HttpsAgentOptions & tls.SecureContextOptions = { keepAlive: true }
      if (login) {
        // The certificate is asked for by renegotiation (§12); a server that resumes the session
        // from a ticket in that renegotiation never sends CertificateRequest, so offer none.
        o.secureOptions = cryptoConstants.SSL_OP_NO_TICKET
        o.maxCachedSessions = 0
      }
      if (certPem !== undefined) {
        // kojid's `cert` is one PEM file with both the certificate and its private key.
        o.cert = certPem
        o.key = certPem
      }
      if (caPem !== undefined) o.ca = caPem
      o.rejectUnauthorized = options.noSslVerify !== true
      if (options.tlsMinVersion !== undefined) o.minVersion = options.tlsMinVersion
      if (maxVersion !== undefined) o.maxVersion = maxVersion
      return o
    }
    const loginMax = options.loginTlsMaxVersion ?? "TLSv1.2"
    const callAgent = yield* NodeHttpClient.makeAgent(tlsOptions(options.tlsMaxVersion, false))
    const loginAgent = yield* NodeHttpClient.makeAgent(tlsOptions(loginMax, true))
    const callTimeout = Duration.seconds(options.timeout ?? DEFAULT_REQUEST_TIMEOUT)
    const loginTimeout = Duration.seconds(options.loginTimeout ?? DEFAULT_AUTH_TIMEOUT)

    const sendOnce = (request: HubRequest, resent: boolean): Effect.Effect<HubResponse, HubError> => {
      const fullUrl = request.query === undefined || request.query.length === 0
        ? request.url
        : `${request.url}?${new URLSearchParams(request.query.map(([k, v]): [string, string] => [k, v])).toString()}`
      const agent = request.login === true ? loginAgent : callAgent
      const headers = {
        ...request.headers,
        "User-Agent": "koji/1",
        "Accept-Encoding": "gzip, deflate",
        "Content-Type": request.contentType,
        "Content-Length": String(request.body.length)
      }
      const timeout = request.timeout !== undefined ? Duration.decode(request.timeout) : request.login === true ? loginTimeout : callTimeout
      // Straight on node's http over the pooled agents: the HttpClient pipeline (request and
      // response wrappers, a fiber and scope per request) cost more per hub call than the call.
      return Effect.async<{ readonly response: http.IncomingMessage; readonly raw: Uint8Array }, unknown>((resume) => {
        const url = new URL(fullUrl)
        const options = { method: "POST", headers }
        const nodeRequest = url.protocol === "https:"
          ? httpsRequest(url, { ...options, agent: agent.https })
          : http.request(url, { ...options, agent: agent.http })
        nodeRequest.on("error", (cause) => resume(Effect.fail(cause)))
        nodeRequest.on("response", (response) => {
          const chunks: Array<Buffer> = []
          response.on("data", (chunk: Buffer) => chunks.push(chunk))
          response.on("error", (cause) => resume(Effect.fail(cause)))
          response.on("end", () => resume(Effect.succeed({ response, raw: new Uint8Array(Buffer.concat(chunks)) })))
        })
        nodeRequest.end(request.body)
        return Effect.sync(() => nodeRequest.destroy())
      }).pipe(
        // The timeout below runs this in a fiber of its own, which no interruption is pending on;
        // interruptible there, the timeout cuts a hung request even when the caller is in an
        // uninterruptible region (login as a scope's acquire, shutdown calls in onInterrupt).
        Effect.interruptible,
        Effect.mapError((cause) => fromNodeError(request.method, fullUrl, cause)),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new HubError({
              reason: "Timeout",
              method: request.method,
              message: `${request.method}: no answer from ${sanitizeUrl(fullUrl)} within ${Duration.format(timeout)}`
            })
        }),
        Effect.flatMap(({ response, raw }) => {
          const headers: Record<string, string> = {}
          for (const [k, v] of Object.entries(response.headers)) {
            if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v
          }
          const status = response.statusCode ?? 0
          if (status < 200 || status > 299) {
            const text = new TextDecoder().decode(raw.subarray(0, 200)).replace(/\s+/g, " ").trim()
            return Effect.fail(
              new HubError({
                reason: "Http",
                method: request.method,
                status,
                message: `${request.method}: HTTP ${status} ${http.STATUS_CODES[status] ?? ""} from ${sanitizeUrl(fullUrl)}${text === "" ? "" : `: ${text}`}`
              })
            )
          }
          return decompress(request.method, headers["content-encoding"], raw).pipe(
            Effect.map((body): HubResponse => ({ status, headers, body, resent }))
          )
        })
      )
    }

    const send = (request: HubRequest): Effect.Effect<HubResponse, HubError> =>
      sendOnce(request, false).pipe(
        Effect.catchIf(isConnectionReset, (error) =>
          // koji re-sends the identical request once, at once, on a fresh connection (§1.1, §13).
          Effect.logDebug(`re-sending after connection error: ${error.message}`).pipe(
            Effect.zipRight(sendOnce(request, true))
          ))
      )

    return HubTransport.of({ baseUrl, hasClientCert: certPem !== undefined, send })
  })
