/**
 * GSSAPI (Kerberos/SPNEGO) credentials for kojid's `gssapi_login` (koji-protocol.md §3.1–3.2):
 * the login choice, the principal, the empty-ccache rule, and one Negotiate token per login
 * request from MIT krb5 through the optional `kerberos` npm addon, with the client keytab taken
 * from `KRB5_CLIENT_KTNAME` and the ccache from `KRB5CCNAME` as python-gssapi takes them.
 */
import { Effect } from "effect"
import * as dns from "node:dns/promises"
import * as fs from "node:fs"
import * as os from "node:os"
import { LoginError } from "./HubError.js"

/** How kojid logs in (§3.1): certificate, then user/password, then GSSAPI. */
export type LoginChoice = "sslLogin" | "login" | "gssapi"

/** kojid's login order (§3.1): a loaded client cert, else a configured user, else GSSAPI. */
export const selectLoginMethod = (hasClientCert: boolean, user: string | undefined): LoginChoice =>
  hasClientCert ? "sslLogin" : user !== undefined && user !== "" ? "login" : "gssapi"

/** Python's `fmt % value` for a format with one `%s` (and `%%` escapes), as kojid formats `host_principal_format`. */
export const percentFormat = (format: string, value: string): string => {
  let used = false
  return format.replace(/%(%|s)/g, (_m, c: string) => {
    if (c === "%") return "%"
    if (used) return "%s"
    used = true
    return value
  })
}

/** `socket.getfqdn()`: the host name, or the first dotted name the resolver gives for it. */
export const getFqdn: Effect.Effect<string> = Effect.promise(async () => {
  const name = os.hostname()
  if (name.includes(".")) return name
  try {
    const { address } = await dns.lookup(name)
    const { hostname } = await dns.lookupService(address, 0)
    return hostname.includes(".") ? hostname : name
  } catch {
    return name
  }
})

/** The principal kojid logs in as: `krb_principal`, or `host_principal_format % getfqdn()` (§3.1). */
export const loginPrincipal = (krbPrincipal: string | undefined, hostPrincipalFormat: string | undefined): Effect.Effect<string> =>
  krbPrincipal !== undefined && krbPrincipal !== ""
    ? Effect.succeed(krbPrincipal)
    : Effect.map(getFqdn, (fqdn) => percentFormat(hostPrincipalFormat ?? "compile/%s@EXAMPLE.COM", fqdn))

/** kojid deletes an empty ccache file before logging in: MIT krb5 cannot use it (§3.1). */
export const removeEmptyCcache = (ccache: string | undefined): Effect.Effect<void> =>
  Effect.sync(() => {
    if (ccache === undefined || ccache === "") return
    const file = ccache.startsWith("FILE:") ? ccache.slice(5) : ccache
    try {
      if (fs.statSync(file).size === 0) fs.unlinkSync(file)
    } catch {
      // missing or not a plain file: nothing to do, as in kojid
    }
  })

/** The GSSAPI service of the hub, as requests-gssapi names it: `HTTP@<host of the hub URL>`. */
export const hubService = (url: string): string => `HTTP@${new URL(url).hostname}`

/** kojid's `gssapi_login` always talks https to the hub. */
export const forceHttps = (url: string): string => url.replace(/^http:\/\//i, "https://")

/** What one login request needs to authenticate. */
export interface GssapiCredentials {
  readonly principal: string
  readonly keytab?: string | undefined
  readonly ccache?: string | undefined
  /** `HTTP@host`. */
  readonly service: string
}

/** One SPNEGO exchange: the token to send, and a check of the server's answer token (mutual auth). */
export interface NegotiateContext {
  /** Base64 token for `Authorization: Negotiate <token>`. */
  readonly token: string
  /** Verifies the token of the server's `WWW-Authenticate: Negotiate <token>` on the hub's answer (undefined: none sent). */
  readonly verify: (serverToken: string | undefined) => Effect.Effect<void, LoginError>
}

/** Makes a fresh Negotiate context per login request; replaceable in tests. */
export type NegotiateProvider = (credentials: GssapiCredentials) => Effect.Effect<NegotiateContext, LoginError>

/** The slice of the `kerberos` addon's API used here. */
interface KerberosClient {
  step(challenge: string): Promise<string>
}
interface KerberosModule {
  initializeClient(service: string, options: { principal?: string; mechOID?: number; flags?: number }): Promise<KerberosClient>
  readonly GSS_MECH_OID_SPNEGO: number
  readonly GSS_C_MUTUAL_FLAG: number
  readonly GSS_C_SEQUENCE_FLAG: number
}

const isKerberosModule = (m: unknown): m is KerberosModule =>
  typeof m === "object" && m !== null && "initializeClient" in m && typeof m.initializeClient === "function" &&
  "GSS_MECH_OID_SPNEGO" in m && typeof m.GSS_MECH_OID_SPNEGO === "number"

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The addon, loaded on first use so the daemon runs without it until GSSAPI login is needed. */
const loadKerberos: Effect.Effect<KerberosModule, LoginError> = Effect.cached(
  Effect.tryPromise({
    // A variable specifier keeps tsc from requiring type declarations the package does not ship.
    try: async () => {
      const name = "kerberos"
      const m: unknown = await import(name)
      const mod = typeof m === "object" && m !== null && "default" in m ? m.default : m
      if (!isKerberosModule(mod)) throw new Error("the module does not export initializeClient")
      return mod
    },
    catch: (cause) =>
      new LoginError({
        method: "gssapi",
        message: `GSSAPI/Kerberos login needs the optional npm package "kerberos", which could not be loaded ` +
          `(${messageOf(cause)}). Install MIT krb5's headers (Debian: apt-get install libkrb5-dev; Fedora: ` +
          `krb5-devel) and python3, make and g++, then run npm install (or npm rebuild kerberos) in the ` +
          `koji-adjutant directory; or configure cert = <PEM with certificate and key> or user/password instead.`
      })
  })
).pipe(Effect.runSync)

/** Runs `f` with `KRB5_CLIENT_KTNAME`/`KRB5CCNAME` set as kojid sets them, restoring them afterwards. */
const withKrbEnv = <A>(credentials: GssapiCredentials, f: () => Promise<A>): Promise<A> => {
  const saved: Array<readonly [string, string | undefined]> = []
  const set = (key: string, value: string | undefined) => {
    if (value === undefined || value === "") return
    saved.push([key, process.env[key]])
    process.env[key] = value
  }
  set("KRB5_CLIENT_KTNAME", credentials.keytab)
  set("KRB5CCNAME", credentials.ccache)
  return f().finally(() => {
    for (const [key, old] of saved.reverse()) {
      if (old === undefined) delete process.env[key]
      else process.env[key] = old
    }
  })
}

const describeCredentials = (c: GssapiCredentials): string =>
  `principal ${c.principal}, keytab ${c.keytab ?? "(default)"}, ccache ${c.ccache ?? "(default)"}`

/** The production provider: MIT krb5 via the `kerberos` addon, SPNEGO with mutual authentication. */
export const krb5Negotiate: NegotiateProvider = (credentials) =>
  Effect.gen(function* () {
    const krb = yield* loadKerberos
    const fail = (what: string) => (cause: unknown) =>
      new LoginError({
        method: "gssapi",
        message: `GSSAPI (Kerberos) login as ${credentials.principal} failed: ${what}: ${messageOf(cause)} ` +
          `(${describeCredentials(credentials)}, service ${credentials.service}). Check that the keytab holds ` +
          `this principal (klist -k ${credentials.keytab ?? "<keytab>"}), that the KDC is reachable, and that ` +
          `the hub's ${credentials.service.replace("@", "/")} principal exists.`
      })
    const client = yield* Effect.tryPromise({
      try: () => withKrbEnv(credentials, () =>
        krb.initializeClient(credentials.service, {
          principal: credentials.principal,
          mechOID: krb.GSS_MECH_OID_SPNEGO,
          flags: krb.GSS_C_MUTUAL_FLAG | krb.GSS_C_SEQUENCE_FLAG
        })),
      catch: fail("cannot get credentials for the principal from the keytab")
    })
    const token = yield* Effect.tryPromise({
      try: () => withKrbEnv(credentials, () => client.step("")),
      catch: fail(`cannot get a ticket for ${credentials.service}`)
    })
    const verify = (serverToken: string | undefined): Effect.Effect<void, LoginError> =>
      serverToken === undefined
        ? Effect.fail(new LoginError({
          method: "gssapi",
          message: `GSSAPI (Kerberos) login as ${credentials.principal}: the hub answered without a mutual-authentication ` +
            `token (no "WWW-Authenticate: Negotiate ..." header), so it is not authenticated; requests-gssapi, which ` +
            `kojid uses, requires it too. Is Apache's mod_auth_gssapi in front of /ssllogin?`
        }))
        : Effect.tryPromise({
          try: () => withKrbEnv(credentials, () => client.step(serverToken)),
          catch: fail("the hub's mutual-authentication token does not verify")
        }).pipe(Effect.asVoid)
    return { token, verify }
  }).pipe(Effect.withSpan("gssapi.negotiate", { attributes: { principal: credentials.principal, service: credentials.service } }))
