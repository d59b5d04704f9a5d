#!/usr/bin/env node
/**
 * `koji-adjutant`: kojid's command line. Without a subcommand it is the build daemon
 * (DESIGN.md §1, §3); `check-config` validates a kojid.conf. The only place that assembles the
 * layer graph.
 */
import { Command } from "@effect/cli"
import { defaultTeardown } from "@effect/platform/Runtime"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { AdjutantConfig, type CommandLineFlags } from "./config/AdjutantConfig.js"
import { checkConfigCommand, kojidOptions } from "./config/cli.js"
import { Containers } from "./containers/Containers.js"
import { loggerLayer } from "./daemon/Logging.js"
import { daemonOptionsFromConfig } from "./daemon/options.js"
import { Readiness } from "./daemon/Readiness.js"
import { type DaemonResult, runDaemon } from "./daemon/TaskManager.js"
import { KojiHub } from "./hub/KojiHub.js"
import { TaskRegistry } from "./tasks/TaskRegistry.js"

/** A daemon run ended with a non-zero exit code (kojid: "Session expired", "Authentication error"). */
class DaemonExit extends Error {
  constructor(readonly code: number) {
    super(`koji-adjutant exiting with status ${code}`)
  }
}

/**
 * One daemon run with a freshly read config and freshly built services. A restart (SIGUSR1 or
 * a `restart` task) runs it again in this process: Node cannot exec(2) itself, and a replacement
 * process would change the PID systemd tracks; rebuilding the whole layer graph re-reads the
 * config and logs in again, which is what kojid's re-exec achieves.
 */
const runOnce = (flags: Partial<CommandLineFlags>): Effect.Effect<DaemonResult, unknown> =>
  Effect.gen(function*() {
    const config = yield* AdjutantConfig
    if (config.flags.skip_main) return { _tag: "Exit", code: 0 } as const
    return yield* Effect.scoped(runDaemon(daemonOptionsFromConfig(config))).pipe(
      Effect.provide(
        Layer.mergeAll(KojiHub.layerConfig, TaskRegistry.layer(), Readiness.layerConfig, Containers.layerConfig)
      ),
      Effect.provide(loggerLayer(config))
    )
  }).pipe(Effect.provide(AdjutantConfig.layer(flags)))

/** The daemon: run, restart in place when asked, exit with kojid's status. */
const daemon = (flags: Partial<CommandLineFlags>) =>
  Effect.gen(function*() {
    for (;;) {
      const result = yield* runOnce(flags)
      if (result._tag === "Restart") continue
      if (result.code !== 0) return yield* Effect.fail(new DaemonExit(result.code))
      return
    }
  })

const root = Command.make("koji-adjutant", { flags: kojidOptions }, ({ flags }) => daemon(flags)).pipe(
  Command.withDescription("koji build daemon (a kojid replacement running tasks in podman containers)"),
  Command.withSubcommands([checkConfigCommand])
)

const cli = Command.run(root, { name: "koji-adjutant", version: "0.1.0" })

// Exit explicitly once the program is done: kept-alive hub connections or a podman socket must
// not hold a finished daemon (kojid calls sys.exit too).
cli(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ teardown: (exit, onExit) => defaultTeardown(exit, (code) => {
    onExit(code)
    process.exit(code)
  }) })
)
