/**
 * A real Prometheus (Debian's `prometheus` package, scripts/setup-host.sh installs it) for tests
 * and benches: a scrape config for one target, its own storage and a loopback port, queried
 * through its HTTP API. Stopped (SIGTERM, then SIGKILL) and its files removed with the scope.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Schema, type Scope } from "effect"

/** The Prometheus binary, or undefined when it is not installed. */
export const prometheusBinary = ((): string | undefined => {
  for (const p of ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]) {
    try {
      execFileSync(p, ["--version"], { stdio: "ignore" })
      return p
    } catch {
      // not there
    }
  }
  return undefined
})()

/** A port nothing listens on now (bound, then released). */
export const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = http.createServer()
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const Sample = Schema.Struct({
  metric: Schema.Record({ key: Schema.String, value: Schema.String }),
  value: Schema.Tuple(Schema.Number, Schema.String)
})
const QueryResponse = Schema.parseJson(Schema.Struct({
  status: Schema.String,
  data: Schema.Struct({ resultType: Schema.String, result: Schema.Array(Sample) })
}))
const NamesResponse = Schema.parseJson(Schema.Struct({ status: Schema.String, data: Schema.Array(Schema.String) }))

/** One sample of a query's result vector. */
export type PromSample = typeof Sample.Type

const getText = (url: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString()))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    }).on("error", reject)
  })

/** Starts Prometheus scraping `target` (host:port, /metrics) every `interval`; its API for the scope. */
export const startPrometheus = (target: string, interval = "1s"): Effect.Effect<{
  readonly url: string
  readonly query: (q: string) => Effect.Effect<ReadonlyArray<PromSample>>
  readonly names: Effect.Effect<ReadonlyArray<string>>
}, never, Scope.Scope> =>
  Effect.gen(function*() {
    const binary = prometheusBinary
    if (binary === undefined) return yield* Effect.dieMessage("prometheus is not installed: apt-get install prometheus (scripts/setup-host.sh)")
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-prometheus-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )
    const config = path.join(dir, "prometheus.yml")
    writeFileSync(config, [
      "global:", `  scrape_interval: ${interval}`, `  scrape_timeout: ${interval}`, "scrape_configs:",
      "  - job_name: koji-adjutant", "    static_configs:", `      - targets: ["${target}"]`, ""
    ].join("\n"))
    const port = yield* Effect.promise(freePort)
    const url = `http://127.0.0.1:${port}`
    let output = ""
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(binary, [
          `--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`,
          "--storage.tsdb.retention.time=1h", "--log.level=warn"
        ], { stdio: ["ignore", "pipe", "pipe"] })
        child.stdout?.on("data", (b: Buffer) => (output += b.toString()))
        child.stderr?.on("data", (b: Buffer) => (output += b.toString()))
        return child
      }),
      (child: ChildProcess) =>
        Effect.promise(() => new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          const kill = setTimeout(() => child.kill("SIGKILL"), 10_000)
          child.once("exit", () => {
            clearTimeout(kill)
            resolve()
          })
          child.kill("SIGTERM")
        }))
    )
    for (let i = 0; ; i++) {
      const ready = yield* Effect.promise(() => getText(`${url}/-/ready`).catch(() => ({ status: 0, body: "" })))
      if (ready.status === 200) break
      if (i > 300) return yield* Effect.dieMessage(`prometheus did not get ready on ${url}:\n${output}`)
      yield* Effect.sleep("100 millis")
    }
    const api = (p: string) => Effect.promise(() => getText(`${url}${p}`))
    return {
      url,
      query: (q: string) =>
        Effect.map(api(`/api/v1/query?query=${encodeURIComponent(q)}`), (r) => Schema.decodeUnknownSync(QueryResponse)(r.body).data.result),
      names: Effect.map(api("/api/v1/label/__name__/values"), (r) => Schema.decodeUnknownSync(NamesResponse)(r.body).data)
    }
  })
