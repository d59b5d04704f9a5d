/**
 * The `[adjutant] status_listen` endpoint: what kojid never had — a builder an admin or a
 * monitor can ask directly. `GET /status` is the daemon's state as JSON (version, host, readiness
 * and why not, load, running tasks, last heartbeat); `GET /healthz` is 200 while heartbeats reach
 * the hub and 503 once the last one is older than three cycles; `GET /metrics` is the Prometheus
 * text exposition (src/metrics/Metrics.ts). Read-only, no secrets; bind it to loopback or a
 * management network.
 */
import { Effect, Either, Runtime, Schema, type Scope } from "effect"
import * as http from "node:http"
import { parseHostPort } from "../config/values.js"
import type { MetricsPage } from "../metrics/Metrics.js"

/** What the daemon loop knows of itself (TaskManager's part of `/status`). */
export const StatusSnapshot = Schema.Struct({
  host: Schema.String,
  hostId: Schema.Number,
  pid: Schema.Number,
  /** When this daemon run logged in (unix seconds). */
  startTs: Schema.Number,
  /** The last readiness sent with host.updateHost (null before the first heartbeat). */
  ready: Schema.NullOr(Schema.Boolean),
  /** Why the last readiness check said no (empty when ready): kojid's reasons, as logged. */
  notReady: Schema.Array(Schema.String),
  taskLoad: Schema.Number,
  maxjobs: Schema.Number,
  restartPending: Schema.Boolean,
  /** Unix milliseconds of the last heartbeat the hub accepted (null before the first). */
  lastHeartbeat: Schema.NullOr(Schema.Number),
  tasks: Schema.Array(Schema.Struct({ id: Schema.Number, method: Schema.String }))
})
/** What the daemon loop knows of itself. */
export type StatusSnapshot = typeof StatusSnapshot.Type

/** What `GET /status` answers: the loop's snapshot with the version and the heartbeat's health. */
export const DaemonStatus = Schema.Struct({
  /** The running code's version (package.json's, read at start: after an upgrade, the new one once restarted). */
  version: Schema.String,
  /** The Node.js running it (`process.version`). */
  node: Schema.String,
  ...StatusSnapshot.fields,
  /** False once the last accepted heartbeat is older than three cycles (what /healthz answers). */
  healthy: Schema.Boolean
})
/** What `GET /status` answers. */
export type DaemonStatus = typeof DaemonStatus.Type


/** The status endpoint could not be started. */
export class StatusServerError extends Schema.TaggedError<StatusServerError>()("StatusServerError", {
  listen: Schema.String,
  message: Schema.String
}) {}

/**
 * Serves `/status`, `/healthz` and (when given) `/metrics` on `listen` (host:port) for the life
 * of the scope. `healthy` decides `/healthz`; each is read per request.
 */
export const serveStatus = (
  listen: string,
  snapshot: Effect.Effect<DaemonStatus>,
  healthy: Effect.Effect<boolean>,
  metrics?: Effect.Effect<MetricsPage>
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
      } else if (url === "/metrics" && metrics !== undefined) {
        run(metrics).then((m) => send(200, m.contentType, m.body), () => send(500, "text/plain", "error\n"))
      } else {
        send(404, "text/plain", `not found: try /status, /healthz${metrics === undefined ? "" : " or /metrics"}\n`)
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
    yield* Effect.logInfo(`status endpoint listening on ${hp.right.host}:${port} (/status, /healthz${metrics === undefined ? "" : ", /metrics"})`)
    return { port }
  })
