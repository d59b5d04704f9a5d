/**
 * The command line's top level: the logger every command starts with (stderr, in the config's
 * `log_format`), and what happens to a failure no command handled. A bad command line was printed
 * by @effect/cli already (exit 2, argparse's status, no JSON dump); a failure a command logged
 * itself (`FatalReported`) only sets exit status 1; anything else is one line on stderr — and, for
 * the daemon, in its log file too, found in kojid.conf even when that file does not parse — with
 * its stack only at debug level.
 */
import { ValidationError } from "@effect/cli"
import { Cause, Effect, Either, type Layer, LogLevel, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { DEFAULT_CONFIG_FILE, defaultAdjutantOptions, loadConfig } from "../config/AdjutantConfig.js"
import { emptyIniDocument, readIniInto } from "../config/ini.js"
import { FatalReported, journalStderr, stderrLoggerLayer } from "../daemon/Logging.js"
import { entryOf, formatEntry, type LogFormat } from "../daemon/logFormat.js"
import type { Invocation } from "./help.js"

/** Where and how lines go before (or without) a daemon's logger. */
export interface EarlyLogSettings {
  readonly format: LogFormat
  /** The daemon's `log_file` (empty: none). */
  readonly logFile: string
}

const isFormat = (v: string | undefined): v is LogFormat => v === "kojid" || v === "logfmt" || v === "json"

/** The raw `[adjutant]` values of a config path (a file or a directory of *.conf), as far as it reads. */
const rawAdjutant = (configPath: string): Map<string, string> => {
  const out = new Map<string, string>()
  try {
    const files = fs.statSync(configPath).isDirectory()
      ? fs.readdirSync(configPath).filter((n) => n.endsWith(".conf")).sort().map((n) => path.join(configPath, n))
      : [configPath]
    const doc = emptyIniDocument()
    for (const file of files) readIniInto(doc, fs.readFileSync(file, "utf8"), file)
    for (const [k, e] of doc.sections.get("adjutant")?.entries ?? []) out.set(k, e.value)
  } catch {
    // No file, or not one we can read: the defaults apply, as for a missing kojid.conf.
  }
  return out
}

/** `log_format` and `log_file` of the config the command line names: loaded when it is valid, else read as far as it goes. */
export const earlyLogSettings = (invocation: Invocation): EarlyLogSettings => {
  const file = invocation.config ?? DEFAULT_CONFIG_FILE
  const loaded = Effect.runSync(Effect.either(loadConfig(file)))
  if (Either.isRight(loaded)) return { format: loaded.right.adjutant.log_format, logFile: loaded.right.adjutant.log_file }
  const raw = rawAdjutant(file)
  const format = raw.get("log_format")
  const logFile = raw.get("log_file")
  return {
    format: isFormat(format) ? format : defaultAdjutantOptions.log_format,
    logFile: logFile !== undefined && (logFile === "" || path.isAbsolute(logFile)) ? logFile : defaultAdjutantOptions.log_file
  }
}

/** The level a command logs at before its config says otherwise. */
const levelOf = (invocation: Invocation): LogLevel.LogLevel =>
  invocation.debug ? LogLevel.Debug : invocation.command === "" && !invocation.verbose ? LogLevel.Warning : LogLevel.Info

/** The logger every command starts with: stderr, the config's format, the command's area. */
export const commandLogger = (invocation: Invocation, settings: EarlyLogSettings): Layer.Layer<never> =>
  stderrLoggerLayer({ format: settings.format, area: invocation.command === "" ? "daemon" : invocation.command, level: levelOf(invocation) })

/** Appends a line to the log file; a file that cannot be written is left alone (stderr has the line). */
const appendLog = (file: string, line: string): void => {
  try {
    fs.appendFileSync(file, `${line}\n`, { mode: 0o644 })
  } catch {
    // The same line is on stderr; a log file we cannot open is reported by the daemon's logger when it runs.
  }
}

/** The line a failure no command handled becomes, in the config's format (with the syslog prefix, and without). */
export const fatalLines = (cause: Cause.Cause<unknown>, invocation: Invocation, settings: EarlyLogSettings): { readonly journal: string; readonly plain: string } => {
  const entry = entryOf(LogLevel.Fatal, "", cause)
  const options = { format: settings.format, area: invocation.command === "" ? "daemon" : invocation.command, stacks: invocation.debug, syslog: false }
  return { journal: formatEntry(entry, { ...options, syslog: true }), plain: formatEntry(entry, options) }
}

/** The exit status of a failed command, after reporting what is still unreported. */
export const reportFailure = (
  cause: Cause.Cause<unknown>,
  invocation: Invocation,
  settings: EarlyLogSettings,
  exitCodeOf: (error: unknown) => number | undefined = () => undefined
): number => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    if (ValidationError.isValidationError(e)) return 2
    if (e instanceof FatalReported) return e.exitCode ?? 1
    const code = exitCodeOf(e)
    if (code !== undefined) return code
  }
  const lines = fatalLines(cause, invocation, settings)
  process.stderr.write(`${journalStderr() ? lines.journal : lines.plain}\n`)
  if (invocation.command === "" && settings.logFile !== "") appendLog(settings.logFile, lines.plain)
  return 1
}

/**
 * Runs a command line's effect with the command logger, and turns its failure into an exit
 * status (`process.exitCode`), reported once. Interruption passes through (SIGINT/SIGTERM).
 */
export const topLevel = (invocation: Invocation, exitCodeOf?: (error: unknown) => number | undefined) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<void, never, R> => {
    const settings = earlyLogSettings(invocation)
    return self.pipe(
      Effect.asVoid,
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.interrupt
          : Effect.sync(() => {
            process.exitCode = reportFailure(cause, invocation, settings, exitCodeOf)
          })
      ),
      Effect.provide(commandLogger(invocation, settings))
    )
  }
