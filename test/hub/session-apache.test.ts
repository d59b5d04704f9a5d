/**
 * Real Apache with mod_ssl in front of a tiny backend, configured as the stock koji hub is
 * (koji-protocol.md §12): TLS 1.2 and 1.3 enabled, `SSLVerifyClient require` only in
 * `<Location /kojihub/ssllogin>`, the certificate's verify result and CN passed on as headers.
 * Proves that the TLS 1.2 cap of the login pool is what makes Node's login work, and that
 * without it Apache answers 403. Needs apache2 (`apt-get install apache2`); skipped visibly without.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { LoginError } from "../../src/hub/HubError.js"
import { type HubOptions, KojiHub } from "../../src/hub/KojiHub.js"
import { decodeCall, encodeResponse } from "../../src/hub/xmlrpc.js"
import { apacheConf, apacheMissing, startApache } from "../support/apache.js"
import { freePort } from "../support/kdc.js"
import { testPki } from "../support/tls.js"

const haveApache = apacheMissing([]).length === 0

/** The backend behind Apache: a hub that trusts Apache's verify/CN headers, as mod_wsgi's environment. */
const backend = (port: number, seen: Array<{ path: string; verify: string | undefined; cn: string | undefined }>) =>
  Effect.acquireRelease(
    Effect.async<http.Server>((resume) => {
      const server = http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          const verify = req.headers["x-client-verify"] as string | undefined
          const cn = req.headers["x-client-cn"] as string | undefined
          seen.push({ path: req.url ?? "", verify, cn })
          const call = decodeCall(Buffer.concat(chunks))
          const method = Either.isRight(call) ? call.right.methodName : ""
          const value = method === "sslLogin"
            ? (verify === "SUCCESS" && cn === "builder1" ? { "session-id": 7, "session-key": "3-abcdefghijklmnopqrs", "header-auth": true } : null)
            : method === "echo" ? ["OK"] : null
          res.writeHead(200, { "Content-Type": "text/xml" })
          res.end(encodeResponse(value))
        })
      })
      server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => { server.closeAllConnections(); server.close() })
  )

/** The stock koji hub's TLS front end: the client certificate required only under /kojihub/ssllogin. */
const stockKojiConf = (dir: string, port: number, backendPort: number, pki: { caFile: string }) => apacheConf({
  dir, port, backendPort,
  vhost: `  SSLCACertificateFile ${pki.caFile}
  SSLVerifyClient none
  <Location /kojihub/ssllogin>
    SSLVerifyClient require
    SSLVerifyDepth 10
    SSLOptions +StdEnvVars
  </Location>
  RequestHeader set X-Client-Verify "%{SSL_CLIENT_VERIFY}s"
  RequestHeader set X-Client-CN "%{SSL_CLIENT_S_DN_CN}s"`
})

describe("login through real Apache with the stock koji ssllogin config", () => {
  it.skipIf(!haveApache)("TLS 1.2 login cap works; TLS 1.3 gets 403 and a clear LoginError (needs apache2)", () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const pki = yield* testPki(["builder1"])
      const dir = pki.dir
      fs.chmodSync(dir, 0o755)
      fs.writeFileSync(path.join(dir, "server.crt"), pki.serverCertPem)
      fs.writeFileSync(path.join(dir, "server.key"), pki.serverKeyPem)
      const port = yield* freePort
      const backendPort = yield* freePort
      const seen: Array<{ path: string; verify: string | undefined; cn: string | undefined }> = []
      yield* backend(backendPort, seen)
      yield* startApache(dir, stockKojiConf(dir, port, backendPort, pki), port)
      const options: HubOptions = { server: `https://127.0.0.1:${port}/kojihub`, cert: pki.clientFiles["builder1"], serverca: pki.caFile }
      const login = (o: HubOptions) =>
        Layer.build(KojiHub.layerWithTransport(o)).pipe(Effect.flatMap((c) => Context.get(c, KojiHub).login(true)))

      const session = yield* login({ ...options, tlsMaxVersion: "TLSv1.3" })
      assert.strictEqual(session.sessionId, 7)
      assert.deepStrictEqual(seen.map((s) => [s.path, s.verify, s.cn]).slice(0, 1), [["/kojihub/ssllogin", "SUCCESS", "builder1"]])

      const refused = yield* Effect.either(login({ ...options, loginTlsMaxVersion: "TLSv1.3", tlsMaxVersion: "TLSv1.3" }))
      assert.isTrue(Either.isLeft(refused))
      const error = (refused as Either.Left<unknown, unknown>).left
      assert.isTrue(error instanceof LoginError, String(error))
      assert.include((error as LoginError).message, "HTTP 403")
      assert.include((error as LoginError).message, "login_tls_max_version")
    }))), 60_000)
})
