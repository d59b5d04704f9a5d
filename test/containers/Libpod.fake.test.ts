import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as http from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Containers } from "../../src/containers/Containers.js"
import { Libpod, PodmanError } from "../../src/containers/Libpod.js"
import { testContainersOptions } from "../support/podman.js"

/** What the fake podman does for each kind of call; records every request. */
interface Behaviour {
  wait: "ok" | "500" | "text500"
  logs: "ok" | "cut"
  remove: "ok" | "500"
}

const ID = "c0ffee".padEnd(64, "0")
let dir: string
let server: http.Server
let socket: string
let behaviour: Behaviour
let calls: Array<string>

const frame = (stream: number, text: string) => {
  const payload = Buffer.from(text)
  const head = Buffer.alloc(8)
  head[0] = stream
  head.writeUInt32BE(payload.length, 4)
  return Buffer.concat([head, payload])
}

const apiError = (res: http.ServerResponse, status: number, message: string) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify({ cause: "fake", message, response: status }))
}

const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
  const url = new URL(req.url ?? "/", "http://d")
  const path = url.pathname.replace("/v4.0.0/libpod", "")
  calls.push(`${req.method} ${path}`)
  req.resume()
  if (path === "/_ping") {
    // Like a server that closed an idle keep-alive connection: a reused socket dies unanswered.
    const served = (req.socket as { served?: number }).served ?? 0
    ;(req.socket as { served?: number }).served = served + 1
    if (served > 0) return req.socket.destroy()
    return res.writeHead(200).end("OK")
  }
  if (req.method === "POST" && path === "/containers/create") {
    res.writeHead(201, { "content-type": "application/json" })
    return res.end(JSON.stringify({ Id: ID, Warnings: [] }))
  }
  if (req.method === "POST" && path.endsWith("/start")) return res.writeHead(204).end()
  if (req.method === "POST" && path.endsWith("/wait")) {
    if (behaviour.wait === "500") return apiError(res, 500, "internal boom while waiting")
    if (behaviour.wait === "text500") return res.writeHead(500, { "content-type": "text/plain" }).end("plain failure text")
    return res.writeHead(200).end("0")
  }
  if (req.method === "GET" && path.endsWith("/logs")) {
    res.writeHead(200, { "content-type": "application/vnd.docker.multiplexed-stream" })
    res.write(frame(1, "first line\n"))
    if (behaviour.logs === "cut") {
      // Half a frame, then the connection dies mid-stream.
      res.write(frame(1, "second line that never completes\n").subarray(0, 12))
      setTimeout(() => res.socket?.destroy(), 20)
      return
    }
    return res.end(frame(2, "warning\n"))
  }
  if (req.method === "POST" && path.endsWith("/kill")) return res.writeHead(204).end()
  if (req.method === "DELETE" && path.startsWith("/containers/")) {
    if (behaviour.remove === "500" && url.searchParams.get("timeout") !== "0") return apiError(res, 500, "removal failed")
    res.writeHead(200, { "content-type": "application/json" })
    return res.end(JSON.stringify([{ Id: ID }]))
  }
  return apiError(res, 404, `fake podman: no route ${req.method} ${path}`)
}

const removals = () => calls.filter((c) => c.startsWith(`DELETE /containers/`))
const layer = () => Containers.layer(testContainersOptions(socket, "fake-host", { stopTimeout: 1 }))
const spec = { image: "localhost/img:1", command: ["true"], role: "test" } as const

describe("Containers against a misbehaving fake podman", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "koji-adjutant-fakepodman-"))
    socket = join(dir, "podman.sock")
    server = http.createServer(handle)
    await new Promise<void>((ok) => server.listen(socket, ok))
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((ok) => server.close(ok))
    rmSync(dir, { recursive: true, force: true })
  })
  const reset = (b: Partial<Behaviour>) =>
    Effect.sync(() => {
      behaviour = { wait: "ok", logs: "ok", remove: "ok", ...b }
      calls = []
    })

  it.live("a 500 from wait is a PodmanError with podman's message, and the container is still removed", () =>
    Effect.gen(function* () {
      yield* reset({ wait: "500" })
      const e = yield* Effect.flip(Effect.flatMap(Containers, (c) => c.run(spec)))
      assert.instanceOf(e, PodmanError)
      assert.strictEqual(e.operation, "container.wait")
      assert.strictEqual(e.status, 500)
      assert.match(e.target ?? "", /^kojiadj-test-[0-9a-f]{8}$/)
      assert.include(e.message, "internal boom while waiting")
      assert.lengthOf(removals(), 1)
    }).pipe(Effect.provide(layer())))

  it.live("a non-JSON error body is kept as the message", () =>
    Effect.gen(function* () {
      yield* reset({ wait: "text500" })
      const e = yield* Effect.flip(Effect.flatMap(Containers, (c) => c.run(spec)))
      assert.include(e.message, "plain failure text")
      assert.lengthOf(removals(), 1)
    }).pipe(Effect.provide(layer())))

  it.live("a log stream cut mid-frame fails with PodmanError and nothing is left behind", () =>
    Effect.gen(function* () {
      yield* reset({ logs: "cut" })
      const containers = yield* Containers
      const seen: Array<string> = []
      const e = yield* Effect.flip(
        containers.run(spec, { onOutput: (f) => Effect.sync(() => seen.push(Buffer.from(f.data).toString())) })
      )
      assert.strictEqual(e.operation, "container.logs")
      assert.deepStrictEqual(seen, ["first line\n"])
      assert.lengthOf(removals(), 1)
      yield* reset({ logs: "cut" })
      const e2 = yield* Effect.flip(
        Effect.scoped(Effect.flatMap(containers.create(spec), (c) => Stream.runCollect(c.logs({ follow: true }))))
      )
      assert.strictEqual(e2.operation, "container.logs")
      assert.lengthOf(removals(), 1)
    }).pipe(Effect.provide(layer())))

  it.live("a failing removal escalates to SIGKILL and DELETE timeout=0, and never fails the caller", () =>
    Effect.gen(function* () {
      yield* reset({ remove: "500" })
      const r = yield* Effect.flatMap(Containers, (c) => c.run(spec))
      assert.deepStrictEqual(r, { exitCode: 0, stdout: "first line\n", stderr: "warning\n" })
      assert.deepStrictEqual(
        calls.slice(-3).map((c) => c.replace(/kojiadj-test-[0-9a-f]{8}/, "NAME")),
        [`DELETE /containers/${ID}`, `POST /containers/${ID}/kill`, `DELETE /containers/${ID}`]
      )
    }).pipe(Effect.provide(layer())))

  it.live("a stale socket file (service killed) is refused with the socket named and how to start the service", () =>
    Effect.gen(function* () {
      const stale = join(dir, "stale.sock")
      // Bound, never listening: what a SIGKILLed podman service leaves behind (notes §7).
      execFileSync("python3", ["-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`])
      const e = yield* Effect.flip(
        Effect.flatMap(Containers, (c) => c.run(spec)).pipe(Effect.provide(Containers.layer(testContainersOptions(stale, "fake-host"))))
      )
      assert.strictEqual(e.operation, "container.create")
      assert.include(e.message, `${stale} (ECONNREFUSED)`)
      assert.include(e.message, `podman system service --time=0 unix://${stale}`)
    }))

  it.live("a pooled connection the server dropped is retried once on a fresh one", () =>
    Effect.gen(function* () {
      yield* reset({})
      const libpod = yield* Libpod
      yield* libpod.ping
      yield* libpod.ping
      yield* libpod.ping
      assert.deepStrictEqual(calls, ["GET /_ping", "GET /_ping", "GET /_ping", "GET /_ping", "GET /_ping"])
    }).pipe(Effect.provide(Libpod.layer({ socket }))))
})
