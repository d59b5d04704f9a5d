/** DaemonOptions from the effective configuration (kojid.conf, `[adjutant]`, command line). */
import { Duration } from "effect"
import type { Config } from "../config/AdjutantConfig.js"
import type { DaemonOptions } from "./TaskManager.js"

/** The daemon options kojid would use for this config. */
export const daemonOptionsFromConfig = (config: Config): DaemonOptions => ({
  sleeptime: Duration.seconds(config.kojid.sleeptime),
  maxjobs: config.kojid.maxjobs,
  forceLock: config.flags.force_lock,
  runner: {
    workdir: config.kojid.workdir,
    taskTimeout: config.adjutant.task_timeout,
    // A missed alert costs at most four cycles.
    waitPoll: Duration.seconds(Math.max(4 * config.kojid.sleeptime, 1))
  },
  // kojid's cleanupTask gives a task up to ~8 s to die; container removal needs the stop timeout more.
  shutdownTimeout: Duration.seconds(config.adjutant.container_stop_timeout + 30),
  shutdownCallTimeout: Duration.seconds(30),
  batchHubCalls: config.adjutant.batch_hub_calls,
  leftoverRoots: [config.adjutant.buildroot_cache_dir],
  reaperInterval: Duration.seconds(config.adjutant.reaper_interval),
  ...(config.adjutant.status_listen === "" ? {} : { statusListen: config.adjutant.status_listen })
})
