/**
 * The daemon's Prometheus metrics, served as `GET /metrics` on `[adjutant] status_listen`.
 *
 * Built on `prom-client` (the Node.js Prometheus client, Apache-2.0, two small dependencies): it
 * writes the text exposition format (escaping, histogram buckets, HELP/TYPE) that Prometheus
 * parses, so none of it is hand-written here. Effect's own Metric module was the other candidate;
 * it has no Prometheus exporter of its own, and the one path to one (@effect/opentelemetry with
 * the OpenTelemetry SDK and its Prometheus exporter) brings a dozen packages for the same text.
 * Each daemon run has a registry of its own, so a restart in place starts from zero as a new
 * process would.
 *
 * The service is a `Context.Reference`: code outside a daemon run (build-local, tests without a
 * daemon) gets the no-op default and never needs to provide it. A daemon run provides one to
 * everything it runs; the hooks read it from the fiber's context:
 * - `hubCall` around every logical hub call (KojiHub), with its retries: calls by method and
 *   result, their seconds, and how many are in flight (the watchdog's "waiting for the hub");
 * - `uploaded` for every rawUpload chunk the hub accepted;
 * - `task` around each task (TaskRunner): count by method and result, duration;
 * - `container` for each container run, `cache` for each buildroot, `reaped` for each orphan.
 * The gauges (ready, why not, tasks running, last heartbeat) are read from the daemon's status
 * when Prometheus scrapes.
 */
import { Context, Effect, Exit } from "effect"
import { performance } from "node:perf_hooks"
import * as Prom from "prom-client"

/** A `/metrics` page: the body and its content type. */
export interface MetricsPage {
  readonly contentType: string
  readonly body: string
}

/** What a page reads of the daemon's `/status` (src/daemon/StatusServer.ts DaemonStatus). */
export interface ObservedStatus {
  readonly ready: boolean | null
  readonly healthy: boolean
  readonly notReady: ReadonlyArray<string>
  readonly tasks: ReadonlyArray<{ readonly method: string }>
  readonly lastHeartbeat: number | null
}

/** `koji_adjutant_not_ready_reason` label values: each readiness reason falls in one. */
export const NOT_READY_REASONS = ["starting", "hub", "disabled", "capacity", "maxjobs", "disk", "load", "image", "restart", "other"] as const
export type NotReadyReason = (typeof NOT_READY_REASONS)[number]

/** The label of a not-ready reason as TaskManager, Readiness and the daemon word it. */
export const notReadyReason = (text: string): NotReadyReason =>
  /^Host is disabled/.test(text)
    ? "disabled"
    : /exceeds capacity/.test(text)
    ? "capacity"
    : /^Full queue/.test(text)
    ? "maxjobs"
    : /^(Insufficient disk space|Cannot check free space)/.test(text)
    ? "disk"
    : /^Load average/.test(text)
    ? "load"
    : /^No configured image/.test(text)
    ? "image"
    : /^Pending restart/.test(text)
    ? "restart"
    : /^(starting|no heartbeat)/i.test(text)
    ? "starting"
    : /heartbeat|hub/i.test(text)
    ? "hub"
    : "other"

/** How a container run ended, for `koji_adjutant_containers_total{result}`. */
export type ContainerResult = "success" | "failure" | "error"

/** The hooks and the page. */
export interface MetricsService {
  /** Whether a registry backs it (a daemon run with status_listen). */
  readonly exported: boolean
  /** Wraps one logical hub call (all its attempts). */
  readonly hubCall: <A, E, R>(method: string, self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Hub calls running now, waits for retries included. */
  readonly hubCallsInFlight: () => number
  /** Bytes the hub accepted in one upload chunk. */
  readonly uploaded: (bytes: number) => void
  /** Wraps one task run; its value is the outcome (closed, failed, …), an interruption is "canceled". */
  readonly task: <A extends string, E, R>(method: string, self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly container: (result: ContainerResult) => void
  /** One buildroot: from the cache (hit) or filled (miss, with the fill's seconds). */
  readonly cache: (hit: boolean, fillSeconds?: number) => void
  /** An orphan the reaper removed; `kind` is its role (build, buildroot, scm, …). */
  readonly reaped: (kind: string) => void
  /** The Prometheus text, gauges read from `status` first. */
  readonly page: (status: ObservedStatus) => Effect.Effect<MetricsPage>
}

const outcomeOf = <E>(exit: Exit.Exit<unknown, E>): string => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (typeof failure === "object" && failure !== null && "faultCode" in failure && "_tag" in failure && typeof failure._tag === "string") return failure._tag
  return exit.cause._tag === "Interrupt" ? "interrupted" : "error"
}

/** The metrics of one daemon run; `exported` false keeps only the in-flight count (no registry). */
export const makeMetrics = (options: { readonly exported: boolean; readonly version: string }): MetricsService => {
  let inFlight = 0
  const track = <A, E, R>(self: Effect.Effect<A, E, R>, done: (exit: Exit.Exit<A, E>, seconds: number) => void): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const t0 = performance.now()
      return Effect.onExit(self, (exit) => Effect.sync(() => done(exit, (performance.now() - t0) / 1000)))
    })
  if (!options.exported) {
    return {
      exported: false,
      hubCall: (_method, self) =>
        Effect.suspend(() => {
          inFlight++
          return Effect.ensuring(self, Effect.sync(() => void inFlight--))
        }),
      hubCallsInFlight: () => inFlight,
      uploaded: () => undefined,
      task: (_method, self) => self,
      container: () => undefined,
      cache: () => undefined,
      reaped: () => undefined,
      page: () => Effect.succeed({ contentType: "text/plain", body: "" })
    }
  }
  const registry = new Prom.Registry()
  const registers = [registry]
  const buildInfo = new Prom.Gauge({ name: "koji_adjutant_build_info", help: "The running version (always 1).", labelNames: ["version", "node"], registers })
  buildInfo.set({ version: options.version, node: process.versions.node }, 1)
  const ready = new Prom.Gauge({ name: "koji_adjutant_ready", help: "1 when the daemon takes tasks (its last heartbeat said ready and is recent), else 0.", registers })
  const notReady = new Prom.Gauge({ name: "koji_adjutant_not_ready_reason", help: "1 for each reason the daemon takes no task now.", labelNames: ["reason"], registers })
  const running = new Prom.Gauge({ name: "koji_adjutant_tasks_running", help: "Tasks running now, by method.", labelNames: ["method"], registers })
  const tasks = new Prom.Counter({ name: "koji_adjutant_tasks_total", help: "Tasks ended, by method and result (closed, failed, refused, freed, canceled, unreported, exit).", labelNames: ["method", "result"], registers })
  const taskSeconds = new Prom.Histogram({
    name: "koji_adjutant_task_duration_seconds", help: "Seconds from a task's start here to its report.", labelNames: ["method"], registers,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400]
  })
  const cache = new Prom.Counter({ name: "koji_adjutant_buildroot_cache_total", help: "Buildroots taken from the cache (hit) or filled (miss).", labelNames: ["result"], registers })
  const fill = new Prom.Histogram({ name: "koji_adjutant_buildroot_fill_seconds", help: "Seconds to fill a buildroot that was not cached.", registers, buckets: [5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600] })
  const containers = new Prom.Counter({ name: "koji_adjutant_containers_total", help: "Containers run, by result (success: exit 0, failure: another exit status, error: podman failed).", labelNames: ["result"], registers })
  const reaped = new Prom.Counter({ name: "koji_adjutant_reaped_total", help: "Orphan containers removed, by role.", labelNames: ["kind"], registers })
  const hubCalls = new Prom.Counter({ name: "koji_adjutant_hub_calls_total", help: "Hub calls (with their retries), by method and result (ok, a koji fault name, error).", labelNames: ["method", "result"], registers })
  const hubSeconds = new Prom.Histogram({
    name: "koji_adjutant_hub_call_seconds", help: "Seconds of a hub call, its retries included.", labelNames: ["method"], registers,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]
  })
  const uploaded = new Prom.Counter({ name: "koji_adjutant_upload_bytes_total", help: "Bytes uploaded to the hub (rawUpload chunks it accepted).", registers })
  const lastBeat = new Prom.Gauge({ name: "koji_adjutant_last_heartbeat_timestamp_seconds", help: "Unix time of the last heartbeat the hub accepted (0: none yet).", registers })
  for (const result of ["hit", "miss"]) cache.inc({ result }, 0)
  for (const result of ["success", "failure", "error"]) containers.inc({ result }, 0)
  for (const kind of ["build", "buildroot", "scm", "createrepo", "runroot"]) reaped.inc({ kind }, 0)

  return {
    exported: true,
    hubCall: (method, self) =>
      Effect.suspend(() => {
        inFlight++
        return track(self, (exit, seconds) => {
          inFlight--
          hubCalls.inc({ method, result: outcomeOf(exit) })
          hubSeconds.observe({ method }, seconds)
        })
      }),
    hubCallsInFlight: () => inFlight,
    uploaded: (bytes) => uploaded.inc(bytes),
    task: (method, self) =>
      track(self, (exit, seconds) => {
        tasks.inc({ method, result: Exit.isSuccess(exit) ? exit.value : Exit.isInterrupted(exit) ? "canceled" : "error" })
        taskSeconds.observe({ method }, seconds)
      }),
    container: (result) => containers.inc({ result }),
    cache: (hit, fillSeconds) => {
      cache.inc({ result: hit ? "hit" : "miss" })
      if (!hit && fillSeconds !== undefined) fill.observe(fillSeconds)
    },
    reaped: (kind) => reaped.inc({ kind }),
    page: (status) =>
      Effect.promise(async () => {
        const reasons = new Set(status.notReady.map(notReadyReason))
        ready.set(status.ready === true && status.healthy && reasons.size === 0 ? 1 : 0)
        for (const reason of NOT_READY_REASONS) notReady.set({ reason }, reasons.has(reason) ? 1 : 0)
        running.reset()
        const byMethod = new Map<string, number>()
        for (const t of status.tasks) byMethod.set(t.method, (byMethod.get(t.method) ?? 0) + 1)
        for (const [method, n] of byMethod) running.set({ method }, n)
        lastBeat.set(status.lastHeartbeat === null ? 0 : status.lastHeartbeat / 1000)
        return { contentType: registry.contentType, body: await registry.metrics() }
      })
  }
}

/** The metrics of the daemon run the fiber belongs to; outside one, hooks that do nothing. */
export class Metrics extends Context.Reference<Metrics>()("koji-adjutant/Metrics", {
  defaultValue: (): MetricsService => noMetrics
}) {}

const noMetrics: MetricsService = {
  exported: false,
  hubCall: (_method, self) => self,
  hubCallsInFlight: () => 0,
  uploaded: () => undefined,
  task: (_method, self) => self,
  container: () => undefined,
  cache: () => undefined,
  reaped: () => undefined,
  page: () => Effect.succeed({ contentType: "text/plain", body: "" })
}

/** KojiHub's hook: one logical hub call of `method`, observed by the daemon run's metrics. */
export const observeHubCall = (method: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Metrics, (m) => m.hubCall(method, self))

/** KojiHub's hook for a rawUpload chunk: a hub call, and its bytes once the hub accepted them. */
export const observeUpload = (bytes: number) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Metrics, (m) => Effect.tap(m.hubCall("rawUpload", self), () => Effect.sync(() => m.uploaded(bytes))))
