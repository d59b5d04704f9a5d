/** The daemon loop's options, and how kojid.conf and the command line make them. */
import { Duration } from "effect"
import type { Config } from "../config/AdjutantConfig.js"
import type { RunnerOptions } from "./TaskRunner.js"

/** The daemon's options (from kojid.conf and the command line; see `daemonOptionsFromConfig`). */
export interface DaemonOptions {
  /** kojid `sleeptime`: pause after a cycle that took no task. */
  readonly sleeptime: Duration.Duration
  /**
   * After an idle cycle, a local task event (a subtask created, a task ended) starts the next
   * cycle at once instead of after `sleeptime`, but no sooner than this after the previous
   * cycle started. Default: `defaultWakeGap(sleeptime)`.
   */
  readonly wakeGap?: Duration.Duration
  readonly maxjobs: number
  /** `--force-lock`: `exclusiveSession(force)` at login. */
  readonly forceLock: boolean
  readonly runner: RunnerOptions
  /** Bound on interrupting the task fibers at shutdown (containers are removed meanwhile). */
  readonly shutdownTimeout: Duration.Duration
  /** Bound on each hub call made while shutting down. */
  readonly shutdownCallTimeout: Duration.Duration
  /**
   * Send the calls of each cycle step in one `multiCall` ([host.getHostTasks, host.getHost,
   * logoutChild of ended tasks], [host.updateHost, host.getTasks], [host.openTask,
   * host.setTaskWeight]): same calls, same order, same session, half the round trips (§1.8);
   * false gives kojid's exact one-call-per-request traffic (koji-captures/kojid/idle).
   */
  readonly batchHubCalls: boolean
  /** `[adjutant] reaper_interval`: time between passes removing containers no running task owns (0: only at start). */
  readonly reaperInterval?: Duration.Duration
  /** Directories besides the workdir whose mounts a killed daemon may have left (the buildroot cache); see Recovery.ts. */
  readonly leftoverRoots?: ReadonlyArray<string>
  /** `[adjutant] status_listen` (host:port): serve /status and /healthz there; unset = none. */
  readonly statusListen?: string
}

/** The least time between two cycle starts when a wake-up starts the second: sleeptime/10, at most 1 s. */
export const defaultWakeGap = (sleeptime: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.millis(Duration.toMillis(sleeptime) / 10), Duration.seconds(1))

/** How a daemon run ended. */
export type DaemonResult =
  | { readonly _tag: "Restart" }
  | { readonly _tag: "Exit"; readonly code: number }

/** The daemon options kojid would use for this config. */
export const daemonOptionsFromConfig = (config: Config): DaemonOptions => ({
  sleeptime: Duration.seconds(config.kojid.sleeptime),
  maxjobs: config.kojid.maxjobs,
  forceLock: config.flags.force_lock,
  runner: {
    workdir: config.kojid.workdir,
    taskTimeout: config.adjutant.task_timeout,
    // A missed alert costs at most four cycles.
    waitPoll: Duration.seconds(Math.max(4 * config.kojid.sleeptime, 1)),
    disks: { paths: [config.kojid.workdir, config.adjutant.buildroot_cache_dir], minspaceMB: config.kojid.minspace }
  },
  // kojid's cleanupTask gives a task up to ~8 s to die; container removal needs the stop timeout more.
  shutdownTimeout: Duration.seconds(config.adjutant.container_stop_timeout + 30),
  shutdownCallTimeout: Duration.seconds(30),
  batchHubCalls: config.adjutant.batch_hub_calls,
  leftoverRoots: [config.adjutant.buildroot_cache_dir],
  reaperInterval: Duration.seconds(config.adjutant.reaper_interval),
  ...(config.adjutant.status_listen === "" ? {} : { statusListen: config.adjutant.status_listen })
})
