#!/usr/bin/env node
/**
 * `koji-adjutant`: kojid's command line. Without a subcommand it is the build daemon
 * (DESIGN.md §1, §3); `check-config` validates a kojid.conf. The only place that assembles the
 * layer graph.
 */
import { setFlagsFromString } from "node:v8"
import { invocationOf, renderHelp } from "./cli/help.js"

// The command line as far as which command runs and whether help is asked (no dependencies).
const invocation = invocationOf(process.argv.slice(2))

// `--help` is ours (src/cli/help.ts): plain text, every flag described, printed before anything
// else is loaded.
if (invocation.help) {
  process.stdout.write(renderHelp(invocation.command))
  process.exit(0)
}

// V8 sizes its heaps for throughput by default; a daemon that mostly waits on the hub does not
// need that, and this keeps its peak RSS about a third lower (measured by the daemon-overhead
// bench). It must be set before the modules below are loaded, hence the dynamic imports. Only the
// daemon gets it: the commands (build-local, check-config, the admin commands) are short-lived,
// and the smaller heap costs them about 0.2 s of garbage collection while the modules load.
if (invocation.command === "") setFlagsFromString("--optimize-for-size")

const { Command } = await import("@effect/cli")
const { defaultTeardown } = await import("@effect/platform/Runtime")
const NodeContext = await import("@effect/platform-node/NodeContext")
const NodeRuntime = await import("@effect/platform-node/NodeRuntime")
const { Effect, Layer } = await import("effect")
const { AdjutantConfig } = await import("./config/AdjutantConfig.js")
const { checkConfigCommand, kojidOptions } = await import("./cli/commandLine.js")
const { Containers } = await import("./containers/Containers.js")
const { withDaemonLogging } = await import("./daemon/Logging.js")
const { topLevel } = await import("./cli/fatal.js")
const { adminCommands } = await import("./admin/commands.js")
const { daemonOptionsFromConfig } = await import("./daemon/options.js")
const { Readiness } = await import("./daemon/Readiness.js")
const { SdNotify } = await import("./daemon/SdNotify.js")
const { runDaemon } = await import("./daemon/Daemon.js")
const { checkHostPaths, hostPathsOptions } = await import("./daemon/hostPaths.js")
const { KojiHub } = await import("./hub/KojiHub.js")
const { TaskRegistry } = await import("./tasks/TaskRegistry.js")
const { HubFileTree } = await import("./koji/paths.js")
const { Buildroots } = await import("./buildroot/Buildroots.js")
const { Images } = await import("./containers/Images.js")
const { Mailer } = await import("./mail/Mailer.js")
const { Scm } = await import("./scm/Scm.js")
const { buildLocalCommand } = await import("./local/buildLocal.js")
const { currentImage, nodeExecve, reexec } = await import("./daemon/reexec.js")
const { runningVersion, version } = await import("./version.js")

type CommandLineFlags = import("./config/AdjutantConfig.js").CommandLineFlags
type DaemonResult = import("./daemon/options.js").DaemonResult

/** A daemon run ended with a non-zero exit code (kojid: "Session expired", "Authentication error"). */
class DaemonExit extends Error {
  constructor(readonly code: number) {
    super(`koji-adjutant exiting with status ${code}`)
  }
}

/**
 * One daemon run with a freshly read config and freshly built services. A restart (SIGUSR1 or
 * a `restart` task) execs a fresh node in this process once the run's services are released
 * (containers removed, session logged out), as kojid re-execs itself: same PID, same argv and
 * environment, and the installed code loaded anew. Where that cannot be done (a Node without
 * process.execve, node moved away) the run is repeated in this process instead, which re-reads
 * the config and logs in again but keeps the code already loaded.
 */
const runOnce = (flags: Partial<CommandLineFlags>): import("effect").Effect.Effect<DaemonResult, unknown> =>
  Effect.gen(function*() {
    const config = yield* AdjutantConfig
    if (config.flags.skip_main) return { _tag: "Exit", code: 0 } as const
    // Issue 16 — in a container, the paths the host's podman binds must be the host's same paths: checked before login.
    const inContainer = process.env["KOJI_ADJUTANT_CONTAINER"]
    return yield* Effect.logInfo(`${runningVersion()} starting`).pipe(
      Effect.zipRight(checkHostPaths(hostPathsOptions(config, inContainer))),
      Effect.zipRight(Effect.scoped(runDaemon(daemonOptionsFromConfig(config)))),
      Effect.provide(
        Layer.mergeAll(
          KojiHub.layerConfig, TaskRegistry.layerConfig, Readiness.layerConfig, SdNotify.layer,
          HubFileTree.layer({ topurls: config.kojid.topurls, topdir: config.kojid.topdir })
        ).pipe(
          Layer.provideMerge(Layer.mergeAll(Buildroots.layerConfig, Mailer.layerConfig, Scm.layerConfig)),
          Layer.provideMerge(Images.layerConfig),
          Layer.provideMerge(Containers.layerConfig)
        )
      ),
      Effect.tap((result) =>
        result._tag === "Restart"
          ? Effect.flatMap(reexec(currentImage(), nodeExecve()), (why) => Effect.logWarning(`Restarting in this process, with the code already loaded: ${why}`))
          : Effect.void
      ),
      withDaemonLogging(config)
    )
  }).pipe(Effect.provide(AdjutantConfig.layer(flags)))

/** The daemon: run, restart when asked (runOnce execs; a run repeats here only when it could not), exit with kojid's status. */
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
  Command.withSubcommands([checkConfigCommand, buildLocalCommand, ...adminCommands])
)

const cli = Command.run(root, { name: "koji-adjutant", version })

// Every failure is reported once, in the configured log format (src/cli/fatal.ts), with no
// pretty logger or JSON dump. Exit explicitly once the program is done: kept-alive hub
// connections or a podman socket must not hold a finished daemon (kojid calls sys.exit too). A
// command that set `process.exitCode` (build-local: 1 after printing its error, 130 after an
// interrupt) exits with it.
cli(process.argv).pipe(
  topLevel(invocation, (e) => (e instanceof DaemonExit ? e.code : undefined)),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disablePrettyLogger: true,
    disableErrorReporting: true,
    teardown: (exit, onExit) =>
      defaultTeardown(exit, (code) => {
        const set = typeof process.exitCode === "number" ? process.exitCode : 0
        const final = code !== 0 ? code : set
        onExit(final)
        process.exit(final)
      })
  })
)
