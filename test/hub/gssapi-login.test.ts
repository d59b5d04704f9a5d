/**
 * GSSAPI login logic without Kerberos (koji-protocol.md §3.1–3.2): kojid's login order, the
 * principal from `host_principal_format`, the empty-ccache rule, https forcing, and the retry
 * policy of `gssapi_login` (connection drops only, up to max_retries), with a stub token
 * provider against the fake hub over TLS.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { AuthError } from "../../src/koji/faults.js"
import { HubError, LoginError } from "../../src/hub/HubError.js"
import {
  forceHttps, getFqdn, hubService, loginPrincipal, type NegotiateProvider, percentFormat, removeEmptyCcache, selectLoginMethod
} from "../../src/hub/gssapi.js"
import { type HubOptions, hubOptionsFromConfig, KojiHub } from "../../src/hub/KojiHub.js"
import { type InjectAction, startFakeHub } from "../fakehub/FakeHub.js"
import { tempDir, testPki } from "../support/tls.js"

const withHub = <A, E>(options: HubOptions, f: (hub: typeof KojiHub.Service) => Effect.Effect<A, E>) =>
  Effect.scoped(Layer.build(KojiHub.layerWithTransport(options)).pipe(Effect.flatMap((context) => f(Context.get(context, KojiHub)))))

const leftOf = <A, E>(e: Either.Either<A, E>): E => {
  assert.isTrue(Either.isLeft(e), "expected a failure")
  return (e as Either.Left<E, A>).left
}

/** A provider that counts tokens and accepts any answer (the fake hub sends no mutual token). */
const stubProvider = () => {
  const seen: Array<{ principal: string; service: string; keytab: string | undefined }> = []
  const provider: NegotiateProvider = (c) =>
    Effect.sync(() => {
      seen.push({ principal: c.principal, service: c.service, keytab: c.keytab })
      return { token: `token-${seen.length}`, verify: () => Effect.void }
    })
  return { seen, provider }
}

describe("GSSAPI login selection and policy", () => {
  it("kojid's order: cert, then user, then GSSAPI", () => {
    assert.strictEqual(selectLoginMethod(true, "builder1"), "sslLogin")
    assert.strictEqual(selectLoginMethod(false, "builder1"), "login")
    assert.strictEqual(selectLoginMethod(false, ""), "gssapi")
    assert.strictEqual(selectLoginMethod(false, undefined), "gssapi")
  })

  it("host_principal_format is applied as Python's % with one %s", () => {
    assert.strictEqual(percentFormat("compile/%s@EXAMPLE.COM", "b1.example.com"), "compile/b1.example.com@EXAMPLE.COM")
    assert.strictEqual(percentFormat("100%%/%s", "x"), "100%/x")
    assert.strictEqual(hubService("https://koji.example.com:8443/kojihub"), "HTTP@koji.example.com")
    assert.strictEqual(forceHttps("http://koji.example.com/kojihub"), "https://koji.example.com/kojihub")
    assert.strictEqual(forceHttps("https://koji.example.com/kojihub"), "https://koji.example.com/kojihub")
  })

  it.effect("krb_principal wins; otherwise host_principal_format % getfqdn()", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* loginPrincipal("me@R", "compile/%s@X"), "me@R")
      const fqdn = yield* getFqdn
      assert.isAbove(fqdn.length, 0)
      assert.strictEqual(yield* loginPrincipal(undefined, "compile/%s@X"), `compile/${fqdn}@X`)
      assert.strictEqual(yield* loginPrincipal("", undefined), `compile/${fqdn}@EXAMPLE.COM`)
    }))

  it.scoped("an empty ccache file is deleted, a full one is kept (FILE: prefix allowed)", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-ccache-")
      const empty = path.join(dir, "empty")
      const full = path.join(dir, "full")
      fs.writeFileSync(empty, "")
      fs.writeFileSync(full, "x")
      yield* removeEmptyCcache(`FILE:${empty}`)
      yield* removeEmptyCcache(full)
      yield* removeEmptyCcache(path.join(dir, "missing"))
      assert.isFalse(fs.existsSync(empty))
      assert.isTrue(fs.existsSync(full))
    }))

  it.scoped("kojid.conf keys reach HubOptions: krb_principal, host_principal_format, keytab, ccache", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-krbconf-")
      const file = path.join(dir, "kojid.conf")
      fs.writeFileSync(file, [
        "[kojid]", "server = https://hub.example.com/kojihub", "topurl = https://hub.example.com/kojifiles", "krb_principal = compile/b1@EX.COM",
        "host_principal_format = compile/%s@EX.COM", "keytab = /etc/kojid/b1.keytab", "ccache = /var/tmp/b1.ccache", ""
      ].join("\n"))
      const config = yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerFile(file))
      const o = hubOptionsFromConfig(config)
      assert.strictEqual(o.krbPrincipal, "compile/b1@EX.COM")
      assert.strictEqual(o.hostPrincipalFormat, "compile/%s@EX.COM")
      assert.strictEqual(o.keytab, "/etc/kojid/b1.keytab")
      assert.strictEqual(o.ccache, "/var/tmp/b1.ccache")
    }))

  it.scoped("no cert and no user: GSSAPI sslLogin on https://…/ssllogin with a Negotiate token (http:// forced to https)", () =>
    Effect.gen(function* () {
      const pki = yield* testPki([])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" },
        remoteUserHeader: "X-Remote-User"
      })
      const { seen, provider } = stubProvider()
      const server = hub.url.replace("https://127.0.0.1", "http://localhost")
      const error = leftOf(yield* Effect.either(withHub(
        { server, serverca: pki.caFile, cert: "/nonexistent/client.crt", krbPrincipal: "compile/b1@EX.COM", keytab: "/k", negotiate: provider },
        (h) => h.login(true)
      )))
      // No front end sets REMOTE_USER here, and there is no certificate: the hub refuses as it does then.
      assert.instanceOf(error, AuthError)
      assert.deepStrictEqual(seen, [{ principal: "compile/b1@EX.COM", service: "HTTP@localhost", keytab: "/k" }])
      const calls = hub.state.calls.filter((c) => c.method === "sslLogin")
      assert.strictEqual(calls.length, 1)
      assert.strictEqual(calls[0]!.path, "/kojihub/ssllogin")
    }))

  it.scoped("connection drops are retried up to max_retries with a fresh token each time", () =>
    Effect.gen(function* () {
      const pki = yield* testPki([])
      let resets = 0
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" },
        remoteUserHeader: "X-Remote-User",
        inject: (req): InjectAction => (req.methodName === "sslLogin" && resets++ < 4 ? { reset: true } : undefined)
      })
      const { seen, provider } = stubProvider()
      const options: HubOptions = {
        server: hub.url, serverca: pki.caFile, krbPrincipal: "compile/b1@EX.COM", negotiate: provider, maxRetries: 5, retryInterval: 0
      }
      // Each try is sent twice by the transport (koji re-sends a dropped request once at once):
      // 4 resets are two failed tries; the third reaches the hub.
      const error = leftOf(yield* Effect.either(withHub(options, (h) => h.login(true))))
      assert.instanceOf(error, AuthError)
      assert.strictEqual(seen.length, 3)
      assert.strictEqual(hub.state.calls.filter((c) => c.method === "sslLogin").length, 5)
    }))

  it.scoped("connection drops stop after max_retries tries: the last HubError surfaces", () =>
    Effect.gen(function* () {
      const pki = yield* testPki([])
      const hub = yield* startFakeHub({
        tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" },
        remoteUserHeader: "X-Remote-User",
        inject: (req): InjectAction => (req.methodName === "sslLogin" ? { reset: true } : undefined)
      })
      const { seen, provider } = stubProvider()
      const error = leftOf(yield* Effect.either(withHub(
        { server: hub.url, serverca: pki.caFile, krbPrincipal: "p@R", negotiate: provider, maxRetries: 3, retryInterval: 0 },
        (h) => h.login(true)
      )))
      assert.instanceOf(error, HubError)
      assert.strictEqual((error as HubError).reason, "Connection")
      assert.strictEqual(seen.length, 3)
    }))

  it.scoped("a refused connection (hub down) is not retried, as in kojid (is_conn_error is false for it)", () =>
    Effect.gen(function* () {
      const port = yield* Effect.async<number>((resume) => {
        const s = net.createServer()
        s.listen(0, "127.0.0.1", () => {
          const { port } = s.address() as net.AddressInfo // a TCP listener's address is AddressInfo
          s.close(() => resume(Effect.succeed(port)))
        })
      })
      const { seen, provider } = stubProvider()
      const error = leftOf(yield* Effect.either(withHub(
        { server: `https://127.0.0.1:${port}/kojihub`, krbPrincipal: "p@R", negotiate: provider, maxRetries: 5, retryInterval: 30 },
        (h) => h.login(true)
      )))
      assert.instanceOf(error, HubError)
      assert.include((error as HubError).message, "ECONNREFUSED")
      assert.strictEqual(seen.length, 1)
    }))

  it.scoped("a failing token provider is a LoginError and nothing is sent", () =>
    Effect.gen(function* () {
      const hub = yield* startFakeHub({})
      const failing: NegotiateProvider = (c) => Effect.fail(new LoginError({ method: "gssapi", message: `no creds for ${c.principal}` }))
      const error = leftOf(yield* Effect.either(withHub({ server: hub.url, krbPrincipal: "p@R", negotiate: failing }, (h) => h.login(true))))
      assert.instanceOf(error, LoginError)
      assert.strictEqual((error as LoginError).message, "no creds for p@R")
      assert.strictEqual(hub.state.calls.length, 0)
    }))
})
