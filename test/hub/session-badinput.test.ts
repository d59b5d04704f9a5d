/**
 * Bad input from the hub (issue 3 "Bad input"): each case gives a typed error naming what was
 * wrong, nothing crashes. A scripted node:http server plays the broken hub.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { KojiFault } from "../../src/koji/faults.js"
import { HubError } from "../../src/hub/HubError.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { HostInfo } from "../../src/hub/schemas.js"
import { encodeFault, encodeResponse } from "../../src/hub/xmlrpc.js"

type Action =
  | { readonly status?: number; readonly body: string | Buffer; readonly headers?: Record<string, string> }
  | { readonly destroy: true }

/** A hub that answers every POST with the next scripted action (the last one repeats). */
const scriptedHub = (actions: ReadonlyArray<Action>) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; requests: Array<{ url: string; body: string; headers: http.IncomingHttpHeaders }>; server: http.Server }>((resume) => {
      const requests: Array<{ url: string; body: string; headers: http.IncomingHttpHeaders }> = []
      const server = http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          requests.push({ url: req.url ?? "", body: Buffer.concat(chunks).toString("utf8"), headers: req.headers })
          const action = actions[Math.min(requests.length - 1, actions.length - 1)]!
          if ("destroy" in action) {
            req.socket.destroy()
            return
          }
          res.writeHead(action.status ?? 200, { "Content-Type": "text/xml", ...action.headers })
          res.end(action.body)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo // listen() on TCP always gives an AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/kojihub`, requests, server }))
      })
    }),
    ({ server }) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

const hubLayer = (url: string) => KojiHub.layerWithTransport({ server: url, maxRetries: 2, retryInterval: 1 })

const anonymousCall = <A>(url: string, f: (hub: typeof KojiHub.Service) => Effect.Effect<A, unknown>) =>
  Effect.gen(function* () {
    const hub = yield* KojiHub
    return yield* Effect.either(f(hub))
  }).pipe(Effect.provide(hubLayer(url)))

const expectHubError = (result: Either.Either<unknown, unknown>): HubError => {
  assert.isTrue(Either.isLeft(result), "expected a failure")
  const error = (result as Either.Left<unknown, unknown>).left
  assert.instanceOf(error, HubError)
  return error as HubError
}

describe("hub client: bad input from the hub", () => {
  it.live("truncated XML is a Parse error naming the method", () =>
    Effect.scoped(Effect.gen(function* () {
      const full = encodeResponse({ id: 1, name: "x" })
      const hub = yield* scriptedHub([{ body: full.slice(0, full.length - 40) }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.call("getTaskInfo", [1])))
      assert.strictEqual(error.reason, "Parse")
      assert.match(error.message, /^getTaskInfo: response is not XML-RPC/)
      assert.strictEqual(hub.requests.length, 1, "anonymous calls are not retried (anon_retry off)")
    })))

  it.live("a non-XML 200 names the start of the body", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ body: "<html><body>Proxy error</body></html>", headers: { "Content-Type": "text/html" } }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.call("getTaskInfo", [1])))
      assert.strictEqual(error.reason, "Parse")
      assert.include(error.message, "starts with '<html>")
    })))

  it.live("HTTP 502 is an Http error with status, method and URL", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ status: 502, body: "bad gateway", headers: { "Content-Type": "text/plain" } }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.call("host.openTask", [7])))
      assert.strictEqual(error.reason, "Http")
      assert.strictEqual(error.status, 502)
      assert.include(error.message, `host.openTask: HTTP 502 Bad Gateway from ${hub.url}`)
    })))

  it.live("HTTP 400 is an Http error too", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ status: 400, body: "Bad Request", headers: { "Content-Type": "text/plain" } }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.call("echo", ["x"])))
      assert.strictEqual(error.status, 400)
    })))

  it.live("a hub that closes the connection gives a Connection error after one immediate re-send", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ destroy: true }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.call("getTaskInfo", [1])))
      assert.strictEqual(error.reason, "Connection")
      assert.include(error.message, "getTaskInfo: connection to")
      assert.strictEqual(hub.requests.length, 2, "koji re-sends once on a dropped connection (§1.1)")
      assert.strictEqual(hub.requests[0]!.body, hub.requests[1]!.body, "identical bytes")
    })))

  it.live("a dropped connection followed by an answer succeeds", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ destroy: true }, { body: encodeResponse(["OK"]) }])
      const result = yield* anonymousCall(hub.url, (h) => h.anonymous.call("echo", ["OK"]))
      assert.deepStrictEqual(result, Either.right(["OK"]))
    })))

  it.live("an unknown fault code stays a KojiFault keeping the code", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ body: encodeFault(4242, "something odd") }])
      const result = yield* anonymousCall(hub.url, (h) => h.anonymous.call("echo", []))
      assert.isTrue(Either.isLeft(result))
      const fault = (result as Either.Left<unknown, unknown>).left
      assert.instanceOf(fault, KojiFault)
      assert.strictEqual((fault as KojiFault).faultCode, 4242)
      assert.strictEqual((fault as KojiFault).faultString, "something odd")
    })))

  it.live("a wrong value type is a Decode error naming the field", () =>
    Effect.scoped(Effect.gen(function* () {
      const host = { id: 1, user_id: 2, name: "b1", ready: true, task_load: 0, arches: "x86_64", capacity: "2.0", enabled: true }
      const hub = yield* scriptedHub([{ body: encodeResponse(host) }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.callAs(HostInfo, "host.getHost")))
      assert.strictEqual(error.reason, "Decode")
      assert.match(error.message, /^host\.getHost: field capacity: Expected number, actual "2\.0"/)
    })))

  it.live("gzip and deflate responses are decoded", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([
        { body: zlib.gzipSync(encodeResponse("zipped")), headers: { "Content-Encoding": "gzip" } },
        { body: zlib.deflateSync(encodeResponse("deflated")), headers: { "Content-Encoding": "deflate" } }
      ])
      const first = yield* anonymousCall(hub.url, (h) => h.anonymous.call("echo", []))
      const second = yield* anonymousCall(hub.url, (h) => h.anonymous.call("echo", []))
      assert.deepStrictEqual(first, Either.right("zipped"))
      assert.deepStrictEqual(second, Either.right("deflated"))
      assert.strictEqual(hub.requests[0]!.headers["accept-encoding"], "gzip, deflate")
      assert.strictEqual(hub.requests[0]!.headers["user-agent"], "koji/1")
      assert.strictEqual(hub.requests[0]!.headers["content-type"], "text/xml")
      assert.strictEqual(hub.requests[0]!.headers["content-length"], String(Buffer.byteLength(hub.requests[0]!.body)))
    })))

  it.live("a garbled gzip body is a Parse error", () =>
    Effect.scoped(Effect.gen(function* () {
      const hub = yield* scriptedHub([{ body: Buffer.from("not gzip at all"), headers: { "Content-Encoding": "gzip" } }])
      const error = expectHubError(yield* anonymousCall(hub.url, (h) => h.anonymous.call("echo", [])))
      assert.strictEqual(error.reason, "Parse")
      assert.include(error.message, "gzip")
    })))

  it.live("a hub that never answers times out with a Timeout error", () =>
    Effect.scoped(Effect.gen(function* () {
      const server = yield* Effect.acquireRelease(
        Effect.async<http.Server>((resume) => {
          const s = http.createServer(() => { /* never answers */ })
          s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
        }),
        (s) => Effect.sync(() => { s.closeAllConnections(); s.close() })
      )
      const { port } = server.address() as AddressInfo // TCP listener
      const result = yield* Effect.gen(function* () {
        const hub = yield* KojiHub
        return yield* Effect.either(hub.anonymous.call("echo", []))
      }).pipe(Effect.provide(KojiHub.layerWithTransport({ server: `http://127.0.0.1:${port}/kojihub`, timeout: 0.3 })))
      const error = expectHubError(result)
      assert.strictEqual(error.reason, "Timeout")
      assert.include(error.message, "echo: no answer from")
    })))
})
