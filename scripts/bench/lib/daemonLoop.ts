// The daemon loop as the daemon benches run it in a child process: src/daemon/TaskManager.ts
// (compiled with the bench) with the generic handlers and in-memory Containers against a hub URL, sleeptime 50 ms (the
// measure is our overhead, not kojid.conf's whole-second sleeptime), maxjobs 10, with the
// production heap settings of dist/main.js. Usage, in the child:
//   await runDaemonLoop(hubUrl, host, password, workdir, LogLevel.Warning[, "127.0.0.1:PORT"])
// With a status address the loop serves /status, /healthz and /metrics there, as status_listen does.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Duration, Effect, Layer, type LogLevel } from "effect"

/** Runs the loop until SIGTERM (NodeRuntime.runMain interrupts it). */
export const runDaemonLoop = async (hubUrl: string, host: string, password: string, workdir: string, logLevel: LogLevel.LogLevel, statusListen?: string) => {
  // As dist/main.js does before loading anything.
  ;(await import("node:v8")).setFlagsFromString("--optimize-for-size")
  const { Containers } = await import("../../../src/containers/Containers.js")
  const { Readiness } = await import("../../../src/daemon/Readiness.js")
  const { runDaemon } = await import("../../../src/daemon/Daemon.js")
  const { KojiHub } = await import("../../../src/hub/KojiHub.js")
  const { TaskRegistry } = await import("../../../src/tasks/TaskRegistry.js")
  const { genericHandlers } = await import("../../../src/tasks/generic.js")
  const { HubFileTree } = await import("../../../src/koji/paths.js")
  const { Logger } = await import("effect")
  const layer = Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hubUrl, user: host, password, maxRetries: 3, retryInterval: 1 }),
    TaskRegistry.layerTest(genericHandlers),
    Readiness.layerAlways,
    HubFileTree.layer({ topurls: [], topdir: workdir }),
    Containers.layerMemory({ hostName: host }),
    Logger.minimumLogLevel(logLevel)
  )
  Effect.scoped(runDaemon({
    sleeptime: Duration.millis(50),
    maxjobs: 10,
    forceLock: true,
    runner: { workdir, taskTimeout: 0, waitPoll: Duration.seconds(5) },
    shutdownTimeout: Duration.seconds(10),
    shutdownCallTimeout: Duration.seconds(5),
    batchHubCalls: true,
    ...(statusListen === undefined || statusListen === "" ? {} : { statusListen })
  })).pipe(Effect.provide(layer), NodeRuntime.runMain)
}
