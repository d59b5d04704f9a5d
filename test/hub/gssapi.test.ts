/**
 * GSSAPI login for real (koji-protocol.md §3.1–3.2): a throwaway MIT KDC on loopback, Apache
 * with mod_ssl and mod_auth_gssapi on `/kojihub/ssllogin` as a koji hub front end, passing
 * REMOTE_USER to the fake hub, and koji-adjutant logging in with the host's keytab through the
 * `kerberos` addon. Needs root, apache2, libapache2-mod-auth-gssapi, krb5-kdc, krb5-admin-server
 * and the built addon (scripts/setup-host.sh installs them); without them the tests skip
 * visibly, except under KOJI_ADJUTANT_REQUIRE_PODMAN=1 (CI), where they fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { createRequire } from "node:module"
import { AuthError } from "../../src/koji/faults.js"
import { HubError, LoginError } from "../../src/hub/HubError.js"
import { getFqdn, krb5Negotiate, type NegotiateProvider } from "../../src/hub/gssapi.js"
import { type HubOptions, KojiHub } from "../../src/hub/KojiHub.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { apacheConf, apacheMissing, startApache } from "../support/apache.js"
import { freePort, KDC_BINARIES, startRealm, type TestRealm } from "../support/kdc.js"
import { testPki, type TestPki } from "../support/tls.js"

const REALM = "ADJUTANT.TEST"
const HOST_PRINCIPAL = `compile/builder.adjutant.test@${REALM}`
/** In the keytab and the KDC, unknown to the hub. */
const STRANGER = `compile/stranger.adjutant.test@${REALM}`

const kerberosAddon = (): boolean => {
  try {
    createRequire(import.meta.url)("kerberos")
    return true
  } catch {
    return false
  }
}

const missing: ReadonlyArray<string> = [
  ...apacheMissing(["auth_gssapi"]),
  ...KDC_BINARIES.filter((f) => !fs.existsSync(f)),
  ...(kerberosAddon() ? [] : ["the kerberos npm addon (libkrb5-dev, then npm ci)"]),
  ...(process.getuid?.() === 0 ? [] : ["root"])
]
// CI (scripts/test.sh) sets KOJI_ADJUTANT_REQUIRE_PODMAN: there a missing prerequisite fails.
const required = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"
const skip = missing.length > 0 && !required
const needs = skip ? ` (skipped: missing ${missing.join(", ")})` : " (needs root, apache2 with mod_auth_gssapi, krb5-kdc)"

const apacheGssapiConf = (dir: string, port: number, backendPort: number) => apacheConf({
  dir, port, backendPort,
  modules: ["authn_core", "authz_user", "auth_gssapi"],
  global: "LogLevel info auth_gssapi:debug",
  vhost: `  # Nobody may claim an identity with the header; only the GSSAPI location sets it.
  RequestHeader unset X-Remote-User
  <Location /kojihub/ssllogin>
    AuthType GSSAPI
    AuthName "GSSAPI koji login"
    GssapiCredStore keytab:${dir}/http.keytab
    GssapiAllowedMech krb5
    GssapiSSLonly On
    Require valid-user
    RequestHeader set X-Remote-User "%{REMOTE_USER}s"
  </Location>`
})

/** Apache with the realm's krb5.conf in front of the fake hub; stopped when the scope closes. */
const startGssapiApache = (dir: string, realm: TestRealm, backendPort: number) =>
  Effect.gen(function* () {
    const port = yield* freePort
    // The replay cache lives in our temp dir, writable by Apache's unprivileged workers.
    const rcache = path.join(dir, "rcache")
    fs.mkdirSync(rcache, { mode: 0o1777 })
    fs.chmodSync(rcache, 0o1777)
    yield* startApache(dir, apacheGssapiConf(dir, port, backendPort), port, { ...process.env, KRB5_CONFIG: realm.krb5Conf, KRB5RCACHEDIR: rcache })
    return port
  })

interface Rig {
  readonly dir: string
  readonly realm: TestRealm
  readonly hub: FakeHub
  readonly apachePort: number
  readonly clientKeytab: string
  readonly pki: TestPki
  /** Negotiate tokens sent, in order. */
  readonly tokens: Array<string>
  /** HubOptions for a GSSAPI login through Apache (server deliberately http://: gssapi_login forces https). */
  readonly options: (o?: Partial<HubOptions>) => HubOptions
}

/** KDC, keytabs, fake hub with REMOTE_USER trusted, Apache in front; KRB5_CONFIG set for this process. */
const rig = Effect.gen(function* () {
  if (missing.length > 0) return yield* Effect.die(new Error(`GSSAPI test prerequisites missing: ${missing.join(", ")} (run scripts/setup-host.sh as root)`))
  const pki = yield* testPki([])
  const dir = pki.dir
  fs.chmodSync(dir, 0o755)
  fs.writeFileSync(path.join(dir, "server.crt"), pki.serverCertPem)
  fs.writeFileSync(path.join(dir, "server.key"), pki.serverKeyPem)
  const realm = yield* startRealm(dir, REALM)
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const old = process.env["KRB5_CONFIG"]
      process.env["KRB5_CONFIG"] = realm.krb5Conf
      return old
    }),
    (old) => Effect.sync(() => {
      if (old === undefined) delete process.env["KRB5_CONFIG"]
      else process.env["KRB5_CONFIG"] = old
    })
  )
  realm.addPrincipal("HTTP/localhost")
  realm.addPrincipal(HOST_PRINCIPAL)
  realm.addPrincipal(STRANGER)
  realm.keytab(path.join(dir, "http.keytab"), ["HTTP/localhost"])
  const clientKeytab = path.join(dir, "kojid.keytab")
  realm.keytab(clientKeytab, [HOST_PRINCIPAL, STRANGER])
  const hub = yield* startFakeHub({
    hosts: [{ name: "builder.adjutant.test", krbPrincipals: [HOST_PRINCIPAL] }],
    remoteUserHeader: "X-Remote-User",
    loginCreatesUser: false
  })
  const apachePort = yield* startGssapiApache(dir, realm, Number(new URL(hub.url).port))
  const tokens: Array<string> = []
  const negotiate: NegotiateProvider = (c) => krb5Negotiate(c).pipe(Effect.tap((ctx) => Effect.sync(() => tokens.push(ctx.token))))
  const options = (o: Partial<HubOptions> = {}): HubOptions => ({
    server: `http://localhost:${apachePort}/kojihub`,
    serverca: pki.caFile,
    hostPrincipalFormat: `compile/%s@${REALM}`,
    krbPrincipal: HOST_PRINCIPAL,
    keytab: clientKeytab,
    ccache: `FILE:${path.join(dir, "kojid.ccache")}`,
    maxRetries: 3,
    retryInterval: 0,
    negotiate,
    ...o
  })
  const result: Rig = { dir, realm, hub, apachePort, clientKeytab, pki, tokens, options }
  return result
})

const withHub = <A, E>(options: HubOptions, f: (hub: typeof KojiHub.Service) => Effect.Effect<A, E>) =>
  Effect.scoped(Layer.build(KojiHub.layerWithTransport(options)).pipe(Effect.flatMap((context) => f(Context.get(context, KojiHub)))))

const leftOf = <A, E>(e: Either.Either<A, E>): E => {
  assert.isTrue(Either.isLeft(e), "expected a failure")
  return (e as Either.Left<E, A>).left
}

describe("GSSAPI login through Apache mod_auth_gssapi and a real KDC", () => {
  it.skipIf(skip)(`keytab login: authtype GSSAPI, the host's user, exclusive, subsession, renewal with a fresh token${needs}`, () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const r = yield* rig
      // kojid deletes an empty ccache before logging in; MIT krb5 could not use it.
      const ccacheFile = path.join(r.dir, "kojid.ccache")
      fs.writeFileSync(ccacheFile, "")
      yield* withHub(r.options(), (h) => Effect.gen(function* () {
        const session = yield* h.login(true)
        const row = r.hub.state.session(session.sessionId)!
        assert.strictEqual(row.authtype, 3, "authtype GSSAPI")
        assert.isTrue(row.exclusive, "exclusiveSession(force) took the lock")
        assert.strictEqual(r.hub.state.users.find((u) => u.id === row.userId)?.name, "builder.adjutant.test")
        const login = r.hub.state.calls.find((c) => c.method === "sslLogin")!
        assert.strictEqual(login.path, "/kojihub/ssllogin")
        assert.deepStrictEqual(login.params, [{ proxyuser: null, __starstar: true }])
        assert.isAbove(fs.statSync(ccacheFile).size, 0, "the ccache now holds the tickets")
        const me = (yield* session.call("getLoggedInUser")) as Record<string, unknown>
        assert.strictEqual(me["name"], "builder.adjutant.test")
        assert.deepStrictEqual(me["krb_principals"], [HOST_PRINCIPAL])
        // Only a verified host session in exclusive mode may call host.*.
        assert.strictEqual((yield* session.call("host.getID")), r.hub.state.host("builder.adjutant.test")!.id)

        const sub = yield* session.subsession
        const subRow = r.hub.state.session(sub.sessionId)!
        assert.strictEqual(subRow.master, session.sessionId)
        assert.strictEqual(subRow.authtype, 3)
        assert.strictEqual((yield* sub.call("host.getID")), r.hub.state.host("builder.adjutant.test")!.id)

        // Renewal: the hub expires the session; the next call renews it with a new token.
        assert.strictEqual(r.tokens.length, 1)
        r.hub.expireSession(session.sessionId)
        const echoed = yield* session.call("echo", ["again"])
        assert.deepStrictEqual(echoed, ["again"])
        assert.strictEqual(r.tokens.length, 2)
        assert.notStrictEqual(r.tokens[1], r.tokens[0], "a fresh Negotiate token per login request")
        const renewal = r.hub.state.calls.filter((c) => c.method === "sslLogin")[1]!
        assert.deepStrictEqual(renewal.params, [{ proxyuser: null, renew: true, exclusive: true, __starstar: true }])
        assert.strictEqual(renewal.sessionId, session.sessionId)
        const renewed = r.hub.state.session(session.sessionId)!
        assert.isFalse(renewed.expired)
        assert.isNotNull(renewed.renewTs)
        // The subsession was expired with its master and renews the same way.
        assert.deepStrictEqual(yield* sub.call("echo", ["sub"]), ["sub"])
        assert.strictEqual(r.tokens.length, 3)
        yield* sub.logout
        yield* session.logout
      }))
    }))), 90_000)

  it.skipIf(skip)(`a principal not in the keytab: a LoginError naming it and the keytab, nothing sent${needs}`, () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const r = yield* rig
      const wrong = `compile/elsewhere.adjutant.test@${REALM}`
      const error = leftOf(yield* Effect.either(withHub(r.options({ krbPrincipal: wrong }), (h) => h.login(true))))
      assert.instanceOf(error, LoginError)
      assert.strictEqual((error as LoginError).method, "gssapi")
      assert.include((error as LoginError).message, wrong)
      assert.include((error as LoginError).message, r.clientKeytab)
      assert.strictEqual(r.hub.state.calls.length, 0)
    }))), 60_000)

  it.skipIf(skip)(`host_principal_format when krb_principal is unset; a principal the hub does not know gets the hub's AuthError${needs}`, () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const r = yield* rig
      // krb_principal unset: the principal is host_principal_format % getfqdn() (§3.1).
      const fqdn = yield* getFqdn
      const error = leftOf(yield* Effect.either(withHub(r.options({ krbPrincipal: undefined }), (h) => h.login(true))))
      assert.instanceOf(error, LoginError)
      assert.include((error as LoginError).message, `compile/${fqdn}@${REALM}`)
      // The stranger's Kerberos login is fine; the hub (LoginCreatesUser off) refuses it.
      const refused = leftOf(yield* Effect.either(withHub(r.options({ krbPrincipal: STRANGER }), (h) => h.login(true))))
      assert.instanceOf(refused, AuthError)
      assert.strictEqual((refused as AuthError).faultString, `Unknown user: ${STRANGER}`)
      const login = r.hub.state.calls.filter((c) => c.method === "sslLogin")
      assert.strictEqual(login.length, 1, "refused once, not retried")
    }))), 60_000)

  it.skipIf(skip)(`a token Apache does not accept: 401 becomes a LoginError that says so, not retried${needs}`, () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const r = yield* rig
      // A well-formed SPNEGO wrapper around garbage, as a stale service key would look to Apache.
      const forged: NegotiateProvider = () =>
        Effect.succeed({ token: Buffer.from("not a kerberos token").toString("base64"), verify: () => Effect.void })
      const error = leftOf(yield* Effect.either(withHub(r.options({ negotiate: forged }), (h) => h.login(true))))
      assert.instanceOf(error, LoginError)
      assert.include((error as LoginError).message, "HTTP 401")
      assert.include((error as LoginError).message, HOST_PRINCIPAL)
      assert.strictEqual(r.hub.state.calls.length, 0, "Apache refused it before the hub")
    }))), 60_000)

  it.skipIf(skip)(`KDC down: a clear LoginError at once, not retried (kojid retries connection drops only)${needs}`, () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const r = yield* rig
      yield* r.realm.stop
      const started = Date.now()
      // A fresh ccache: no tickets cached from earlier logins.
      const error = leftOf(yield* Effect.either(withHub(r.options({ ccache: `FILE:${path.join(r.dir, "fresh.ccache")}`, maxRetries: 5, retryInterval: 5 }), (h) => h.login(true))))
      assert.instanceOf(error, LoginError)
      assert.include((error as LoginError).message, HOST_PRINCIPAL)
      assert.match((error as LoginError).message, /KDC/)
      assert.isBelow(Date.now() - started, 5_000, "no retry_interval sleep")
      assert.strictEqual(r.hub.state.calls.length, 0)
      // The Apache in front is still fine: the error is not a HubError.
      assert.notInstanceOf(error, HubError)
    }))), 60_000)
})
