/**
 * kojid's command line (koji-protocol.md §9, `kojid:get_options`) as @effect/cli options, and
 * the `check-config` command that validates a config and prints the effective values.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import {
  DEFAULT_CONFIG_FILE,
  loadConfig,
  renderEffectiveConfig,
  type CommandLineFlags,
  type ConfigEnv
} from "./AdjutantConfig.js"

const text = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), Options.optional)
const integer = (name: string, description: string) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.optional)
const flag = (name: string, description: string) => Options.boolean(name).pipe(Options.withDescription(description))

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/** kojid's options; the result holds only what was given (booleans always), ready for `loadConfig`. */
export const kojidOptions: Options.Options<Partial<CommandLineFlags>> = Options.all({
  config: Options.text("config").pipe(
    Options.withAlias("c"),
    Options.withDescription("use alternate configuration file (or directory of *.conf)"),
    Options.withDefault(DEFAULT_CONFIG_FILE)
  ),
  user: text("user", "specify user"),
  password: text("password", "specify password"),
  fg: flag("fg", "run in foreground").pipe(Options.withAlias("f")),
  force_lock: flag("force-lock", "force lock for exclusive session"),
  verbose: flag("verbose", "show verbose output").pipe(Options.withAlias("v")),
  debug: flag("debug", "show debug output").pipe(Options.withAlias("d")),
  debug_task: flag("debug-task", "enable debug output for tasks"),
  debug_xmlrpc: flag("debug-xmlrpc", "show xmlrpc debug output"),
  skip_main: flag("skip-main", "don't actually run main"),
  maxjobs: integer("maxjobs", "Specify maxjobs"),
  minspace: integer("minspace", "Specify minspace"),
  sleeptime: integer("sleeptime", "Specify the polling interval"),
  admin_emails: text("admin-emails", "Comma-separated addresses to send error notices to."),
  topdir: text("topdir", "Specify topdir"),
  topurl: text("topurl", "Specify topurl"),
  workdir: text("workdir", "Specify workdir"),
  chroot_tmpdir: text("chroot-tmpdir", "Specify tmpdir in buildroot"),
  pluginpath: text("pluginpath", "Specify plugin search path"),
  plugin: Options.text("plugin").pipe(Options.withDescription("Load specified plugin (repeatable)"), Options.repeated),
  mockdir: text("mockdir", "Specify mockdir"),
  mockuser: text("mockuser", "User to run mock as"),
  server: text("server", "url of XMLRPC server").pipe(Options.withAlias("s"))
}).pipe(
  Options.map((o): Partial<CommandLineFlags> => {
    const flags: Partial<Mutable<CommandLineFlags>> = {
      config: o.config,
      fg: o.fg,
      force_lock: o.force_lock,
      verbose: o.verbose,
      debug: o.debug,
      debug_task: o.debug_task,
      debug_xmlrpc: o.debug_xmlrpc,
      skip_main: o.skip_main
    }
    const put = <K extends keyof CommandLineFlags>(key: K, value: Option.Option<CommandLineFlags[K]>) => {
      if (Option.isSome(value)) flags[key] = value.value
    }
    put("user", o.user)
    put("password", o.password)
    put("maxjobs", o.maxjobs)
    put("minspace", o.minspace)
    put("sleeptime", o.sleeptime)
    put("admin_emails", o.admin_emails)
    put("topdir", o.topdir)
    put("topurl", o.topurl)
    put("workdir", o.workdir)
    put("chroot_tmpdir", o.chroot_tmpdir)
    put("pluginpath", o.pluginpath)
    put("mockdir", o.mockdir)
    put("mockuser", o.mockuser)
    put("server", o.server)
    if (o.plugin.length > 0) flags.plugin = o.plugin
    return flags
  })
)

/** Loads the config as the daemon would and prints it (secrets redacted); prints the error to stderr and fails on a bad one. */
export const checkConfig = (flags: Partial<CommandLineFlags>, env: Partial<ConfigEnv> = {}) =>
  loadConfig(flags.config ?? DEFAULT_CONFIG_FILE, flags, env).pipe(
    Effect.tapError((error) => Console.error(`check-config: ${error.message}`)),
    Effect.flatMap((config) => Console.log(renderEffectiveConfig(config).trimEnd()))
  )

/** `koji-adjutant check-config [-c FILE] [kojid flags]`: validate a kojid.conf and print the effective values. */
export const checkConfigCommand = Command.make("check-config", { flags: kojidOptions }, ({ flags }) =>
  checkConfig(flags)
).pipe(Command.withDescription("validate a kojid.conf and print the effective configuration (secrets redacted)"))
