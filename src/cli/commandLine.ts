/**
 * kojid's command line (koji-protocol.md §9, `kojid:get_options`) as @effect/cli options, and
 * the `check-config` command that validates a config, prints the effective values and, with
 * `--probe`, tries what the daemon would use. The help text of every flag is in src/cli/help.ts.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { FatalReported } from "../daemon/Logging.js"
import {
  DEFAULT_CONFIG_FILE,
  loadConfig,
  renderEffectiveConfig,
  type CommandLineFlags,
  type ConfigEnv
} from "../config/AdjutantConfig.js"
import { runProbes, startupProblems } from "./checks.js"

const text = (name: string) => Options.text(name).pipe(Options.optional)
const integer = (name: string) => Options.integer(name).pipe(Options.optional)
const flag = (name: string) => Options.boolean(name)

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/** Every kojid option; descriptions live in src/cli/help.ts, which the CLI prints for --help. */
const kojidSpecs = {
  config: Options.text("config").pipe(Options.withAlias("c"), Options.withDefault(DEFAULT_CONFIG_FILE)),
  user: text("user"),
  password: text("password"),
  fg: flag("fg").pipe(Options.withAlias("f")),
  force_lock: flag("force-lock"),
  verbose: flag("verbose").pipe(Options.withAlias("v")),
  debug: flag("debug").pipe(Options.withAlias("d")),
  debug_task: flag("debug-task"),
  debug_xmlrpc: flag("debug-xmlrpc"),
  debug_mock: flag("debug-mock"),
  skip_main: flag("skip-main"),
  maxjobs: integer("maxjobs"),
  minspace: integer("minspace"),
  sleeptime: integer("sleeptime"),
  admin_emails: text("admin-emails"),
  topdir: text("topdir"),
  topurl: text("topurl"),
  workdir: text("workdir"),
  chroot_tmpdir: text("chroot-tmpdir"),
  pluginpath: text("pluginpath"),
  plugin: Options.text("plugin").pipe(Options.repeated),
  mockdir: text("mockdir"),
  mockuser: text("mockuser"),
  server: text("server").pipe(Options.withAlias("s"))
}

type OptionValue<T> = T extends Options.Options<infer A> ? A : never
type RawFlags = { readonly [K in keyof typeof kojidSpecs]: OptionValue<(typeof kojidSpecs)[K]> }

const BOOLEAN_FLAGS = ["fg", "force_lock", "verbose", "debug", "debug_task", "debug_xmlrpc", "debug_mock", "skip_main"] as const
const VALUE_FLAGS = [
  "user", "password", "maxjobs", "minspace", "sleeptime", "admin_emails", "topdir", "topurl", "workdir",
  "chroot_tmpdir", "pluginpath", "mockdir", "mockuser", "server"
] as const

/** The given options as `loadConfig` takes them: only what was given (booleans when the command has them). */
const toFlags = (o: Partial<RawFlags>): Partial<CommandLineFlags> => {
  const flags: Partial<Mutable<CommandLineFlags>> = {}
  if (o.config !== undefined) flags.config = o.config
  for (const key of BOOLEAN_FLAGS) {
    const value = o[key]
    if (value !== undefined) flags[key] = value
  }
  const put = <K extends (typeof VALUE_FLAGS)[number]>(key: K, value: Option.Option<CommandLineFlags[K]> | undefined) => {
    if (value !== undefined && Option.isSome(value)) flags[key] = value.value
  }
  for (const key of VALUE_FLAGS) put(key, o[key])
  if (o.plugin !== undefined && o.plugin.length > 0) flags.plugin = o.plugin
  return flags
}

/** kojid's options; the result holds only what was given (booleans always), ready for `loadConfig`. */
export const kojidOptions: Options.Options<Partial<CommandLineFlags>> = Options.all(kojidSpecs).pipe(Options.map(toFlags))

/** The options that change what the config file says (check-config and the admin commands take these, not the daemon's switches). */
export const configOptions: Options.Options<Partial<CommandLineFlags>> = Options.all({
  config: kojidSpecs.config,
  user: kojidSpecs.user,
  password: kojidSpecs.password,
  verbose: kojidSpecs.verbose,
  debug: kojidSpecs.debug,
  maxjobs: kojidSpecs.maxjobs,
  minspace: kojidSpecs.minspace,
  sleeptime: kojidSpecs.sleeptime,
  admin_emails: kojidSpecs.admin_emails,
  topdir: kojidSpecs.topdir,
  topurl: kojidSpecs.topurl,
  workdir: kojidSpecs.workdir,
  chroot_tmpdir: kojidSpecs.chroot_tmpdir,
  pluginpath: kojidSpecs.pluginpath,
  plugin: kojidSpecs.plugin,
  mockdir: kojidSpecs.mockdir,
  mockuser: kojidSpecs.mockuser,
  server: kojidSpecs.server
}).pipe(Options.map(toFlags))

/** Options of one check-config run. */
export interface CheckConfigOptions {
  /** Also try the podman socket, the images, topdir/topurl and an anonymous hub call. */
  readonly probe: boolean
  /** Where loading looks at files (tests). */
  readonly env?: Partial<ConfigEnv> | undefined
}

/**
 * Loads the config as the daemon would, checks what the daemon checks at start (plugins,
 * runroot.conf, cert and CA files, the build id range), prints the effective values, and with
 * `probe` a checklist of the services the daemon uses. A problem is logged and fails the command.
 */
export const checkConfig = (flags: Partial<CommandLineFlags>, options: CheckConfigOptions = { probe: false }) =>
  Effect.gen(function*() {
    const config = yield* loadConfig(flags.config ?? DEFAULT_CONFIG_FILE, flags, options.env ?? {}).pipe(
      Effect.tapError((error) => Effect.logError(error.message)),
      Effect.mapError((error) => new FatalReported({ message: error.message }))
    )
    yield* Console.log(renderEffectiveConfig(config).trimEnd())
    const problems = yield* startupProblems(config)
    for (const problem of problems) yield* Effect.logError(problem)
    const failedProbes = options.probe ? yield* runProbes(config) : 0
    if (problems.length > 0 || failedProbes > 0) {
      const what = [
        ...(problems.length > 0 ? [`${problems.length} problem${problems.length === 1 ? "" : "s"} the daemon would refuse to start with`] : []),
        ...(failedProbes > 0 ? [`${failedProbes} failed probe${failedProbes === 1 ? "" : "s"}`] : [])
      ].join(" and ")
      return yield* new FatalReported({ message: `${config.file}: ${what}` })
    }
  })

/** `koji-adjutant check-config [-c FILE] [--probe] [config flags]`. */
export const checkConfigCommand = Command.make(
  "check-config",
  { flags: configOptions, probe: Options.boolean("probe") },
  ({ flags, probe }) => checkConfig(flags, { probe })
).pipe(Command.withDescription("validate a kojid.conf as the daemon would and print the effective configuration"))
