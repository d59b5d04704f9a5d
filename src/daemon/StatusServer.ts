/**
 * The `[adjutant] status_listen` endpoint: what kojid never had — a builder an admin or a
 * monitor can ask directly. `GET /status` is the daemon's state as JSON (host, version,
 * readiness, load, running tasks, last heartbeat); `GET /healthz` is 200 while heartbeats reach
 * the hub and 503 once the last one is older than three cycles. Read-only, no secrets; bind it
 * to loopback or a management network.
 */
import { Effect, Either, Runtime, Schema, type Scope } from "effect"
import * as http from "node:http"
import { parseHostPort } from "../config/values.js"

/** What `/status` reports. */
export interface StatusSnapshot {
  readonly host: string
  readonly hostId: number
  readonly pid: number
  /** The running code's version (package.json's, read at start: after an upgrade, the new one only once restarted). */
  readonly version: string
  /** The Node.js running it (`process.version`). */
  readonly node: string
  /** When this daemon run logged in (unix seconds). */
  readonly startTs: number
  /** The last readiness sent with host.updateHost (null before the first heartbeat). */
  readonly ready: boolean | null
  readonly taskLoad: number
  readonly maxjobs: number
  readonly restartPending: boolean
  /** Unix milliseconds of the last heartbeat the hub accepted (null before the first). */
  readonly lastHeartbeat: number | null
  readonly tasks: ReadonlyArray<{ readonly id: number; readonly method: string }>
}

/** The status endpoint could not be started. */
export class StatusServerError extends Schema.TaggedError<StatusServerError>()("StatusServerError", {
  listen: Schema.String,
  message: Schema.String
}) {}

/**
 * Serves `/status` and `/healthz` on `listen` (host:port) for the life of the scope.
 * `healthy` decides `/healthz`; both are read per request.
 */
export const serveStatus = (
  listen: string,
  snapshot: Effect.Effect<StatusSnapshot>,
  healthy: Effect.Effect<boolean>
): Effect.Effect<{ readonly port: number }, StatusServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const hp = parseHostPort(listen, true)
    if (Either.isLeft(hp)) return yield* new StatusServerError({ listen, message: `status_listen ${hp.left}` })
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const server = http.createServer((req, res) => {
      const url = (req.url ?? "/").split("?")[0]
      const send = (status: number, type: string, body: string) => {
        res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" })
        res.end(body)
      }
      if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "only GET\n")
      if (url === "/status") {
        run(snapshot).then((s) => send(200, "application/json", `${JSON.stringify(s, null, 2)}\n`), () => send(500, "text/plain", "error\n"))
      } else if (url === "/healthz") {
        run(healthy).then((ok) => (ok ? send(200, "text/plain", "ok\n") : send(503, "text/plain", "heartbeat stale\n")), () => send(500, "text/plain", "error\n"))
      } else {
        send(404, "text/plain", "not found: try /status or /healthz\n")
      }
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number, StatusServerError>((resume) => {
        const onError = (e: Error) => resume(Effect.fail(new StatusServerError({ listen, message: `cannot listen on ${listen}: ${e.message}` })))
        server.once("error", onError)
        server.listen(hp.right.port ?? 0, hp.right.host, () => {
          server.off("error", onError)
          const addr = server.address()
          resume(Effect.succeed(typeof addr === "object" && addr !== null ? addr.port : hp.right.port ?? 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    yield* Effect.logInfo(`status endpoint listening on ${hp.right.host}:${port} (/status, /healthz)`)
    return { port }
  })
