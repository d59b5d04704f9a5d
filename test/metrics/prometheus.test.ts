/**
 * Prometheus metrics (issue 14 §5) as an admin's Prometheus sees them: a real Prometheus scrapes
 * a running daemon's `GET /metrics` every second, and the values are read back through its HTTP
 * API — every metric name the issue lists, with the values the daemon's work gives them.
 * /status says the version and why the host is not ready.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Ref, Schema } from "effect"
import * as http from "node:http"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Readiness } from "../../src/daemon/Readiness.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { DaemonStatus } from "../../src/daemon/StatusServer.js"
import { version } from "../../src/version.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { daemonLayer, fakeHub, testOptions } from "../daemon/harness.js"
import { freePort, type PromSample, prometheusBinary, startPrometheus } from "../support/prometheus.js"
import { until } from "../support/notifySocket.js"

/** Every metric name issue 14 lists (histograms by their base name). */
export const METRIC_NAMES = [
  "koji_adjutant_build_info",
  "koji_adjutant_ready",
  "koji_adjutant_not_ready_reason",
  "koji_adjutant_tasks_running",
  "koji_adjutant_tasks_total",
  "koji_adjutant_task_duration_seconds",
  "koji_adjutant_buildroot_cache_total",
  "koji_adjutant_buildroot_fill_seconds",
  "koji_adjutant_containers_total",
  "koji_adjutant_reaped_total",
  "koji_adjutant_hub_calls_total",
  "koji_adjutant_hub_call_seconds",
  "koji_adjutant_upload_bytes_total",
  "koji_adjutant_last_heartbeat_timestamp_seconds"
] as const

const get = (port: number, p: string) =>
  Effect.promise(() => new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: p }, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString()))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }))
    }).on("error", reject)
  }))

/** The shipped Grafana dashboard: its panels' PromQL. */
const Dashboard = Schema.parseJson(Schema.Struct({
  panels: Schema.Array(Schema.Struct({
    title: Schema.String,
    targets: Schema.optional(Schema.Array(Schema.Struct({ expr: Schema.String })))
  }))
}))
const dashboardQueries = (): ReadonlyArray<{ readonly title: string; readonly expr: string }> =>
  Schema.decodeUnknownSync(Dashboard)(readFileSync(path.join(import.meta.dirname, "../../examples/grafana-dashboard.json"), "utf8"))
    .panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })))
/** A dashboard expression as Grafana sends it: every builder, a 1-minute rate window. */
const asSent = (expr: string): string => expr.replaceAll("$instance", ".*").replaceAll("$__rate_interval", "1m")

const value = (samples: ReadonlyArray<PromSample>, labels: Record<string, string> = {}): number | undefined => {
  const s = samples.find((x) => Object.entries(labels).every(([k, v]) => x.metric[k] === v))
  return s === undefined ? undefined : Number(s.value[1])
}

describe("metrics", () => {
  it.scopedLive("a real Prometheus scrapes /metrics of a running daemon: every listed name, real values", () =>
    Effect.gen(function*() {
      assert.isDefined(prometheusBinary, "prometheus is not installed (scripts/setup-host.sh installs Debian's package)")
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-metrics-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const hub = yield* fakeHub()
      const port = yield* Effect.promise(freePort)
      const reasons = yield* Ref.make<ReadonlyArray<string>>([])
      yield* Effect.forkScoped(Effect.scoped(runDaemon(testOptions(dir, { sleeptime: Duration.millis(300), statusListen: `127.0.0.1:${port}` }))).pipe(
        Effect.provide(daemonLayer(hub, undefined, Layer.effect(Readiness, Effect.succeed({ check: Ref.get(reasons) }))))
      ))
      const done = [hub.createTask("sleep", [0]), hub.createTask("sleep", [0])]
      const long = hub.createTask("sleep", [60])
      yield* until(() => done.every((t) => hub.state.task(t)?.state === TaskState.CLOSED) && hub.state.task(long)?.state === TaskState.OPEN, "tasks run", 30_000)

      const page = yield* get(port, "/metrics")
      assert.strictEqual(page.status, 200)
      assert.match(page.type, /^text\/plain; version=0\.0\.4/)
      for (const name of METRIC_NAMES) assert.match(page.body, new RegExp(`^# TYPE ${name} `, "m"), `${name} missing from /metrics`)

      const prom = yield* startPrometheus(`127.0.0.1:${port}`)
      let names: ReadonlyArray<string> = []
      for (let i = 0; i < 100 && !METRIC_NAMES.every((n) => names.some((x) => x === n || x === `${n}_bucket`)); i++) {
        yield* Effect.sleep("200 millis")
        names = yield* prom.names
      }
      for (const name of METRIC_NAMES) assert.isTrue(names.some((x) => x === name || x === `${name}_bucket`), `Prometheus has no ${name}: ${names.join(", ")}`)

      const q = prom.query
      assert.strictEqual(value(yield* q("up"), { job: "koji-adjutant" }), 1)
      assert.strictEqual(value(yield* q("koji_adjutant_build_info"), { version: version }), 1)
      assert.strictEqual(value(yield* q("koji_adjutant_ready")), 1)
      assert.strictEqual(value(yield* q('koji_adjutant_tasks_total{method="sleep",result="closed"}')), 2)
      assert.strictEqual(value(yield* q('koji_adjutant_tasks_running{method="sleep"}')), 1)
      assert.strictEqual(value(yield* q('koji_adjutant_task_duration_seconds_count{method="sleep"}')), 2)
      assert.strictEqual(value(yield* q('koji_adjutant_hub_calls_total{method="host.closeTask",result="ok"}')), 2)
      assert.isAbove(value(yield* q('koji_adjutant_hub_call_seconds_count{method="multiCall"}')) ?? 0, 0)
      const beat = value(yield* q("koji_adjutant_last_heartbeat_timestamp_seconds")) ?? 0
      assert.isTrue(Math.abs(beat - Date.now() / 1000) < 30, `last heartbeat ${beat}`)
      assert.strictEqual(value(yield* q('koji_adjutant_buildroot_cache_total{result="hit"}')), 0)
      assert.strictEqual(value(yield* q("koji_adjutant_upload_bytes_total")), 0)

      // Not ready: the reason reaches /status, the gauge and (per reason) the reason metric.
      yield* Ref.set(reasons, ["Insufficient disk space at /var/tmp/koji: 10 MB, 8192 MB required"])
      let notReady = 0
      for (let i = 0; i < 100 && notReady !== 1; i++) {
        yield* Effect.sleep("200 millis")
        notReady = value(yield* q('koji_adjutant_not_ready_reason{reason="disk"}')) ?? 0
      }
      assert.strictEqual(notReady, 1)
      assert.strictEqual(value(yield* q("koji_adjutant_ready")), 0)
      assert.strictEqual(value(yield* q('koji_adjutant_not_ready_reason{reason="image"}')), 0)
      const status = Schema.decodeUnknownSync(Schema.parseJson(DaemonStatus))((yield* get(port, "/status")).body)
      assert.strictEqual(status.version, version)
      assert.deepStrictEqual(status.notReady, ["Insufficient disk space at /var/tmp/koji: 10 MB, 8192 MB required"])
      assert.isTrue(status.healthy)

      // The Grafana dashboard in examples/: every metric has a panel, and every panel's query is
      // PromQL this Prometheus accepts; those that need no rate window already show this daemon.
      const queries = dashboardQueries()
      for (const name of METRIC_NAMES) assert.isTrue(queries.some((x) => x.expr.includes(name)), `no dashboard panel shows ${name}`)
      for (const { expr, title } of queries) {
        const res = yield* Effect.promise(() => fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(asSent(expr))}`))
        const body = yield* Effect.promise(() => res.text())
        assert.strictEqual(res.status, 200, `${title}: ${expr}: ${body}`)
        assert.match(body, /"status":"success"/, title)
      }
      const shown = (title: string) =>
        Effect.forEach(queries.filter((x) => x.title === title), (x) => q(asSent(x.expr)))
      assert.deepStrictEqual((yield* shown("Ready")).flat().map((x) => x.value[1]), ["0"])
      assert.deepStrictEqual((yield* shown("Not ready because")).flat().map((x) => x.metric["reason"]), ["disk"])
      assert.deepStrictEqual((yield* shown("Version")).flat().map((x) => x.metric["version"]), [version])
      assert.deepStrictEqual((yield* shown("Tasks running")).flat().map((x) => [x.metric["method"], x.value[1]]), [["sleep", "1"]])
      const sinceBeat = Number((yield* shown("Since last heartbeat")).flat()[0]?.value[1])
      assert.isTrue(sinceBeat >= 0 && sinceBeat < 30, `since last heartbeat: ${sinceBeat}`)
    }), 120_000)
})
