/**
 * sslLogin over real TLS against the fake hub (koji-protocol.md §3.2, §12): the client
 * certificate's CN is the user; with the stock Apache layout the certificate is requested only
 * under /ssllogin by renegotiation, which works under TLS 1.2 and gives 403 under TLS 1.3.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as https from "node:https"
import * as os from "node:os"
import * as path from "node:path"
import type * as tls from "node:tls"
import { decodeResponse, encodeMethodCall, kwargs, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { startFakeHub } from "./FakeHub.js"

interface Pki {
  readonly ca: string
  readonly serverKey: string
  readonly serverCert: string
  readonly clientKey: string
  readonly clientCert: string
}

/** A CA, a server cert for 127.0.0.1 and a client cert with CN=builder1, made with openssl. */
const makePki = (dir: string): Pki => {
  const ossl = (...args: Array<string>) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" })
  ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fake CA")
  fs.writeFileSync(path.join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1\n")
  for (const [name, cn, ext] of [["server", "127.0.0.1", true], ["client", "builder1", false]] as const) {
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`)
    ossl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`,
      "-days", "2", ...(ext ? ["-extfile", "san.ext"] : []))
  }
  const read = (f: string) => fs.readFileSync(path.join(dir, f), "utf8")
  return { ca: read("ca.crt"), serverKey: read("server.key"), serverCert: read("server.crt"), clientKey: read("client.key"), clientCert: read("client.crt") }
}

const pki = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fakehub-pki-"))
    return { dir, pki: makePki(dir) }
  }),
  ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map(({ pki }) => pki))

const post = (
  url: string, p: Pki, method: string, params: ReadonlyArray<XmlRpcValue>, o: { maxVersion?: tls.SecureVersion; cert?: boolean; headers?: Record<string, string> } = {}
): Promise<{ status: number; value?: XmlRpcValue; fault?: { faultCode: number; faultString: string } }> =>
  new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: "POST", ca: p.ca, ...(o.cert === false ? {} : { cert: p.clientCert, key: p.clientKey }),
      ...(o.maxVersion !== undefined ? { maxVersion: o.maxVersion } : {}),
      agent: false, headers: { "Content-Type": "text/xml", ...o.headers }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => {
        const status = res.statusCode ?? 0
        if (status !== 200) return resolve({ status })
        const d = decodeResponse(Buffer.concat(chunks))
        if (Either.isRight(d)) resolve({ status, value: d.right })
        else if ("faultCode" in d.left) resolve({ status, fault: { faultCode: d.left.faultCode, faultString: d.left.faultString } })
        else reject(d.left)
      })
    })
    req.on("error", reject)
    req.end(encodeMethodCall(method, params))
  })

const sinfoOf = (v: XmlRpcValue | undefined) => v as Record<string, XmlRpcValue>

describe("fake hub: TLS and sslLogin", () => {
  it.scoped("handshake mode: sslLogin at /ssllogin logs in the certificate's CN", () =>
    Effect.gen(function*() {
      const p = yield* pki
      const hub = yield* startFakeHub({
        tls: { key: p.serverKey, cert: p.serverCert, ca: p.ca, clientCert: "handshake" }, hosts: [{ name: "builder1" }]
      })
      yield* Effect.promise(async () => {
        const r = await post(`${hub.url}/ssllogin`, p, "sslLogin", [kwargs({ proxyuser: null })])
        const s = sinfoOf(r.value)
        assert.match(s["session-key"] as string, /^2-[A-Za-z0-9]{19}$/)
        const headers = { "Koji-Session-Id": String(s["session-id"]), "Koji-Session-Key": String(s["session-key"]), "Koji-Session-Callnum": "0" }
        assert.isNull((await post(hub.url, p, "exclusiveSession", [kwargs({ force: true })], { headers })).value)
        const id = await post(hub.url, p, "host.getID", [], { headers: { ...headers, "Koji-Session-Callnum": "1" } })
        assert.strictEqual(id.value, 1)
        assert.strictEqual(hub.state.session(s["session-id"] as number)?.authtype, 2)
        // sslLogin away from /ssllogin: the certificate is not checked there
        const elsewhere = await post(hub.url, p, "sslLogin", [])
        assert.deepStrictEqual(elsewhere.fault, { faultCode: 1002, faultString: "could not verify client: NONE" })
        // no certificate at /ssllogin → 403, as Apache answers
        assert.strictEqual((await post(`${hub.url}/ssllogin`, p, "sslLogin", [], { cert: false })).status, 403)
      })
    }))

  it.scoped("ssllogin-renegotiate mode: TLS 1.2 login works, TLS 1.3 gets 403 (§12)", () =>
    Effect.gen(function*() {
      const p = yield* pki
      const hub = yield* startFakeHub({
        tls: { key: p.serverKey, cert: p.serverCert, ca: p.ca, clientCert: "ssllogin-renegotiate" }, hosts: [{ name: "builder1" }]
      })
      yield* Effect.promise(async () => {
        const r12 = await post(`${hub.url}/ssllogin`, p, "sslLogin", [], { maxVersion: "TLSv1.2" })
        assert.strictEqual(r12.status, 200)
        assert.strictEqual(hub.state.session(sinfoOf(r12.value)["session-id"] as number)?.userId, 2)
        const r13 = await post(`${hub.url}/ssllogin`, p, "sslLogin", [], { maxVersion: "TLSv1.3" })
        assert.strictEqual(r13.status, 403)
        // ordinary calls over TLS 1.3 without a client certificate are fine
        assert.strictEqual((await post(hub.url, p, "getAPIVersion", [], { cert: false })).value, 1)
      })
    }))

  it.scoped("an unknown CN becomes a new user that is not a host", () =>
    Effect.gen(function*() {
      const p = yield* pki
      const hub = yield* startFakeHub({ tls: { key: p.serverKey, cert: p.serverCert, ca: p.ca, clientCert: "handshake" } })
      yield* Effect.promise(async () => {
        const s = sinfoOf((await post(`${hub.url}/ssllogin`, p, "sslLogin", [])).value)
        const headers = { "Koji-Session-Id": String(s["session-id"]), "Koji-Session-Key": String(s["session-key"]) }
        const r = await post(hub.url, p, "host.getID", [], { headers })
        assert.deepStrictEqual(r.fault, { faultCode: 1002, faultString: "User 2 is not a host" })
        assert.isDefined(hub.state.users.find((u) => u.name === "builder1"))
      })
    }))
})
