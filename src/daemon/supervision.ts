/**
 * What a daemon run tells the world about itself: systemd (`Type=notify`: READY=1, STATUS=,
 * WATCHDOG=1, STOPPING=1 through SdNotify), the status endpoint and the metrics.
 *
 * READY=1 goes once the hub accepted the first heartbeat after login (what `systemctl start`
 * waits for), followed by a STATUS= line whenever the one-line summary changes. The watchdog:
 * WATCHDOG=1 goes at the end of a cycle (at most every quarter of WatchdogSec) and, from a fiber
 * of its own, every half WatchdogSec as long as the daemon is not wedged — so a cycle held up by
 * a hub outage (a call waiting in kojid's retries for minutes or hours) keeps the daemon alive.
 * **Wedged** means: the loop has been inside one cycle for longer than WatchdogSec while no hub
 * call is in flight or waiting to retry — it is stuck on something local (a podman call that
 * never returns, a deadlock), which a restart cures. A blocked event loop needs no rule: then
 * the fiber cannot run and WATCHDOG=1 stops by itself. STOPPING=1 goes when the daemon begins
 * to shut down.
 */
import { Clock, Duration, Effect, Option, type Scope } from "effect"
import type { MetricsService } from "../metrics/Metrics.js"
import { version } from "../version.js"
import { SdNotify } from "./SdNotify.js"
import type { DaemonStatus } from "./StatusServer.js"
import type { TaskManagerApi } from "./TaskManager.js"

/** Where the loop is: inside a cycle since when (ms), or between cycles. */
export interface LoopProgress {
  inCycleSince: number | undefined
}

/** The loop's part: mark a cycle's start and end, say when it stops. */
export interface LoopHooks {
  readonly cycleStarted: Effect.Effect<void>
  readonly cycleEnded: Effect.Effect<void>
  readonly stopping: (why: string) => Effect.Effect<void>
}

/** The reason shown while the hub has accepted no heartbeat for too long. */
const staleReason = (lastHeartbeat: number | null, now: number): string =>
  lastHeartbeat === null ? "starting: no heartbeat accepted by the hub yet" : `no heartbeat accepted by the hub for ${Math.round((now - lastHeartbeat) / 1000)} s`

/** `/status`: the loop's snapshot, the version, and whether heartbeats reach the hub (else why not). */
export const daemonStatus = (tm: TaskManagerApi): Effect.Effect<DaemonStatus> =>
  Effect.gen(function*() {
    const s = yield* tm.status
    const healthy = yield* tm.healthy
    const now = yield* Clock.currentTimeMillis
    const notReady = healthy ? s.notReady : [staleReason(s.lastHeartbeat, now), ...s.notReady]
    return { version, node: process.version, ...s, notReady, healthy }
  })

/** The one-line summary systemd shows (`systemctl status`): readiness or why not, and the tasks. */
export const statusLine = (s: DaemonStatus): string => {
  const tasks = `${s.tasks.length} of ${s.maxjobs} task${s.maxjobs === 1 ? "" : "s"} running` +
    (s.tasks.length === 0 ? "" : ` (${s.tasks.slice(0, 4).map((t) => `${t.method} ${t.id}`).join(", ")}${s.tasks.length > 4 ? ", …" : ""})`)
  const state = s.restartPending
    ? "restart pending"
    : s.notReady.length === 0 && s.ready === true
    ? "ready"
    : `not ready: ${s.notReady.join("; ") || "host not ready"}`
  return `${state}; ${tasks}`
}

/**
 * Starts the systemd side of a daemon run for the life of the scope (the watchdog fiber) and
 * returns the loop's hooks. Without NOTIFY_SOCKET every notification is a no-op.
 */
export const superviseRun = (tm: TaskManagerApi, metrics: MetricsService): Effect.Effect<LoopHooks, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sd = yield* SdNotify
    const progress: LoopProgress = { inCycleSince: undefined }
    let readySent = false
    let lastStatus = ""
    let lastPing = 0
    let wedgedSince: number | undefined
    let stopping = false
    const timeout = Option.map(sd.watchdogTimeout, Duration.toMillis)
    const interval = Option.map(sd.watchdogInterval, Duration.toMillis)

    const wedged = (now: number): boolean =>
      Option.isSome(timeout) && progress.inCycleSince !== undefined && now - progress.inCycleSince > timeout.value &&
      metrics.hubCallsInFlight() === 0

    const ping = (now: number) => Effect.zipRight(Effect.sync(() => void (lastPing = now)), sd.watchdog)

    /** The watchdog's own beat, every half WatchdogSec once ready, unless the loop is wedged. */
    const beat = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (!readySent || stopping) return
      if (!wedged(now)) {
        if (wedgedSince !== undefined) yield* Effect.logWarning("the daemon loop moves again; WATCHDOG=1 resumes")
        wedgedSince = undefined
        return yield* ping(now)
      }
      if (wedgedSince === undefined) {
        wedgedSince = now
        yield* Effect.logError(
          `the daemon loop has been in one cycle for ${Math.round((now - (progress.inCycleSince ?? now)) / 1000)} s with no hub call ` +
            "in flight: it is wedged; WATCHDOG=1 stops, so systemd restarts the daemon"
        )
      }
    })
    if (Option.isSome(interval)) {
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(interval.value)), beat)))
    }

    const cycleEnded = Effect.gen(function*() {
      progress.inCycleSince = undefined
      if (stopping) return
      const s = yield* daemonStatus(tm)
      if (!readySent && s.lastHeartbeat !== null) {
        readySent = true
        yield* Effect.logInfo("ready: the hub accepted the first heartbeat")
        yield* sd.ready
      }
      if (!readySent) return
      const line = statusLine(s)
      if (line !== lastStatus) {
        lastStatus = line
        yield* sd.status(line)
      }
      const now = yield* Clock.currentTimeMillis
      if (Option.isSome(interval) && now - lastPing >= interval.value / 2) yield* ping(now)
    })

    return {
      cycleStarted: Effect.map(Clock.currentTimeMillis, (now) => void (progress.inCycleSince = now)),
      cycleEnded,
      stopping: (why) =>
        Effect.suspend(() => {
          stopping = true
          return Effect.zipRight(sd.stopping, sd.status(`stopping: ${why}`))
        })
    }
  })
