/**
 * Login against the fake hub (koji-protocol.md §3, §12): client certificate over real TLS,
 * the stock-Apache "certificate only under /ssllogin" setup (needs the TLS 1.2 cap), password
 * login, the exclusive lock and stealing it with force.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { AuthError, AuthLockError } from "../../src/koji/faults.js"
import { HubError, LoginError } from "../../src/hub/HubError.js"
import { type HubOptions, KojiHub } from "../../src/hub/KojiHub.js"
import { startFakeHub } from "../fakehub/FakeHub.js"
import { testPki } from "../support/tls.js"

/** A KojiHub whose transport lives as long as the test's scope (sessions outlive the call). */
const withHub = <A, E>(options: HubOptions, f: (hub: typeof KojiHub.Service) => Effect.Effect<A, E>) =>
  Layer.build(KojiHub.layerWithTransport(options)).pipe(
    Effect.flatMap((context) => f(Context.get(context, KojiHub)))
  )

describe("hub login", () => {
  it.scoped("sslLogin with a client certificate over TLS, then exclusiveSession(force) and echo", () =>
    Effect.gen(function* () {
      const pki = yield* testPki(["builder1"])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" },
        hosts: [{ name: "builder1" }]
      })
      const session = yield* withHub({ server: hub.url, cert: pki.clientFiles["builder1"], serverca: pki.caFile }, (h) => h.login(true))
      const methods = hub.state.calls.map((c) => c.method)
      assert.deepStrictEqual(methods, ["sslLogin", "exclusiveSession", "echo"])
      assert.strictEqual(hub.state.calls[0]!.path, "/kojihub/ssllogin")
      assert.deepStrictEqual(hub.state.calls.map((c) => c.callnum), [undefined, 0, 1])
      assert.strictEqual(yield* session.nextCallnum, 2)
      const row = hub.state.session(session.sessionId)
      assert.isDefined(row)
      assert.isTrue(row!.exclusive === true)
    }))

  it.scoped("stock Apache setup (cert asked only under /ssllogin): login works with the default TLS 1.2 cap", () =>
    Effect.gen(function* () {
      const pki = yield* testPki(["builder1"])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "ssllogin-renegotiate" },
        hosts: [{ name: "builder1" }]
      })
      const result = yield* withHub({ server: hub.url, cert: pki.clientFiles["builder1"], serverca: pki.caFile }, (h) =>
        Effect.flatMap(h.login(true), (s) => s.call("host.getID")))
      assert.strictEqual(typeof result, "number")
    }))

  it.scoped("the same setup with login_tls_max_version = TLSv1.3 fails with a clear LoginError", () =>
    Effect.gen(function* () {
      const pki = yield* testPki(["builder1"])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "ssllogin-renegotiate" },
        hosts: [{ name: "builder1" }]
      })
      const result = yield* Effect.either(withHub(
        { server: hub.url, cert: pki.clientFiles["builder1"], serverca: pki.caFile, loginTlsMaxVersion: "TLSv1.3", tlsMaxVersion: "TLSv1.3" },
        (h) => h.login(true)
      ))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<unknown, unknown>).left
      assert.instanceOf(error, LoginError)
      assert.include((error as LoginError).message, "HTTP 403")
      assert.include((error as LoginError).message, "login_tls_max_version")
      assert.include((error as LoginError).message, "TLSv1.3")
    }))

  it.scoped("a hub certificate from an unknown CA is a Certificate error", () =>
    Effect.gen(function* () {
      const pki = yield* testPki(["builder1"])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" },
        hosts: [{ name: "builder1" }]
      })
      const result = yield* Effect.either(withHub({ server: hub.url, cert: pki.clientFiles["builder1"], serverca: pki.otherCaFile }, (h) => h.login(true)))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<unknown, unknown>).left
      assert.instanceOf(error, HubError)
      assert.strictEqual((error as HubError).reason, "Certificate")
      assert.strictEqual(hub.state.calls.length, 0, "nothing reached the hub")
    }))

  it.scoped("password login goes to the base URL with login(user, password, opts=None)", () =>
    Effect.gen(function* () {
      const hub = yield* startFakeHub({ hosts: [{ name: "builder1", password: "secret" }] })
      const session = yield* withHub({ server: hub.url, user: "builder1", password: "secret" }, (h) => h.login(false))
      const login = hub.state.calls[0]!
      assert.strictEqual(login.method, "login")
      assert.strictEqual(login.path, "/kojihub")
      assert.deepStrictEqual(login.params, ["builder1", "secret", { opts: null, __starstar: true }])
      assert.deepStrictEqual(hub.state.calls[1]!.params, [{ force: false, __starstar: true }])
      assert.isTrue(hub.state.session(session.sessionId)!.exclusive === true)
    }))

  it.scoped("no cert and no user: GSSAPI is tried; without Kerberos credentials a LoginError and nothing sent", () =>
    Effect.gen(function* () {
      const hub = yield* startFakeHub({})
      const result = yield* Effect.either(withHub({ server: hub.url, cert: "/nonexistent/client.crt" }, (h) => h.login(true)))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<unknown, unknown>).left
      assert.instanceOf(error, LoginError)
      assert.strictEqual((error as LoginError).method, "gssapi")
      assert.include((error as LoginError).message, "Kerberos")
      assert.strictEqual(hub.state.calls.length, 0)
    }))

  it.scoped("exclusive lock: a second login without force gets 1006; with force it steals the lock and closes the first session (its calls fail 1002, as on the real hub §3.4)", () =>
    Effect.gen(function* () {
      const hub = yield* startFakeHub({ hosts: [{ name: "builder1", password: "pw" }] })
      const options: HubOptions = { server: hub.url, user: "builder1", password: "pw" }
      const first = yield* withHub(options, (h) => h.login(false))
      assert.strictEqual(yield* first.call("host.getID"), hub.state.host("builder1")!.id)

      const refused = yield* Effect.either(withHub(options, (h) => h.login(false)))
      assert.isTrue(Either.isLeft(refused))
      const lockFault = (refused as Either.Left<unknown, unknown>).left
      assert.isTrue(lockFault instanceof AuthLockError, `expected AuthLockError, got ${String(lockFault)}`)
      assert.strictEqual((lockFault as AuthLockError).faultCode, 1006)

      const second = yield* withHub(options, (h) => h.login(true))
      assert.notStrictEqual(second.sessionId, first.sessionId)
      assert.strictEqual(yield* second.call("host.getID"), hub.state.host("builder1")!.id)
      const stale = yield* Effect.either(first.call("host.getID"))
      assert.isTrue(Either.isLeft(stale))
      const fault = (stale as Either.Left<unknown, unknown>).left
      assert.isTrue(fault instanceof AuthError, `expected AuthError, got ${String(fault)}`)
      assert.strictEqual((fault as AuthError).faultString, "Invalid session or bad credentials")
    }))

  it.scoped("KojiHub.layerConfig takes server, user/password and retry options from kojid.conf", () =>
    Effect.gen(function* () {
      const hub = yield* startFakeHub({ hosts: [{ name: "builder1", password: "pw" }] })
      const config = AdjutantConfig.layerTest({ kojid: { server: hub.url, user: "builder1", password: "pw", cert: null } })
      const context = yield* Layer.build(KojiHub.layerConfig.pipe(Layer.provide(config)))
      const session = yield* Context.get(context, KojiHub).login(true)
      assert.isTrue(session.useFastUpload)
      assert.deepStrictEqual(hub.state.calls.map((c) => c.method), ["login", "exclusiveSession", "echo"])
    }))
})
