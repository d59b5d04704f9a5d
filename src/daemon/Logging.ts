/**
 * The daemon's logger, as kojid logs: to `log_file` (kojid: /var/log/kojid.log) always, and to
 * stderr as well with `--fg`; the level from -d / -v / log_level (effectiveLogLevel). Lines are in
 * `[adjutant] log_format` (logFormat.ts: kojid's layout by default) with the fiber's annotations
 * (taskId, method); with `--fg` under systemd each stderr line starts with its syslog priority.
 * The commands that are not the daemon log to stderr in the same format (`stderrLoggerLayer`).
 * A fatal error is one line in the log file and on stderr (`withDaemonLogging`).
 *
 * The file survives rotation as kojid's WatchedFileHandler does: before each line its path is
 * checked, and when the file there is another one (moved away, removed, replaced) it is opened
 * anew; SIGHUP reopens it too (logrotate's postrotate in packaging/koji-adjutant.logrotate). It is
 * opened for appending, so a file truncated in place is written on from its new end, with no hole.
 */
import * as fs from "node:fs"
import { Cause, Effect, FiberRef, HashSet, Layer, Logger, LogLevel, Schema } from "effect"
import { type Config, effectiveLogLevel } from "../config/AdjutantConfig.js"
import { formatEntry, type LineOptions, type LogFormat, stderrIsJournal } from "./logFormat.js"

/** `log_file` kept open, and reopened when it is not the file at its path any more. */
export interface WatchedLogFile {
  /** Appends one line (or several) to the file at the path now; false when it cannot be written. */
  readonly write: (text: string) => boolean
  /** Closes and opens the path again (SIGHUP). */
  readonly reopen: () => void
  readonly close: () => void
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Opens `file` for appending; undefined (after a note on stderr) when it cannot be opened. */
export const openWatchedLogFile = (file: string): WatchedLogFile | undefined => {
  let fd: number | undefined
  let dev = 0
  let ino = 0
  /** The last problem reported on stderr, so a lasting one is reported once. */
  let reported = ""
  const report = (text: string): void => {
    if (text === reported) return
    reported = text
    process.stderr.write(`koji-adjutant: ${text}\n`)
  }
  const close = (): void => {
    if (fd === undefined) return
    try {
      fs.closeSync(fd)
    } catch {
      // Closing a descriptor we own fails only when it is already closed: nothing is lost.
    }
    fd = undefined
  }
  const open = (): boolean => {
    close()
    try {
      fd = fs.openSync(file, "a", 0o644)
      const st = fs.fstatSync(fd)
      dev = st.dev
      ino = st.ino
      reported = ""
      return true
    } catch (e) {
      report(`cannot open log file ${file}: ${message(e)}; logging to stderr`)
      return false
    }
  }
  /** True when the path still names the open file (logrotate has not moved or removed it). */
  const current = (): boolean => {
    if (fd === undefined) return false
    try {
      const st = fs.statSync(file, { throwIfNoEntry: false })
      return st !== undefined && st.dev === dev && st.ino === ino
    } catch {
      return false
    }
  }
  if (!open()) return undefined
  return {
    write: (text) => {
      if (!current()) open()
      const target = fd
      if (target === undefined) return false
      try {
        fs.writeSync(target, text)
        return true
      } catch (e) {
        report(`cannot write log file ${file}: ${message(e)}`)
        return false
      }
    },
    reopen: () => {
      open()
    },
    close
  }
}

/** Where and how the lines of a logger go. */
export interface LogSink {
  readonly format: LogFormat
  /** The area of lines that name none (`daemon`, `build-local`, …). */
  readonly area: string
  readonly level: LogLevel.LogLevel
  /** Every line to stderr (else only fatal ones, and those the file cannot take). */
  readonly stderr: boolean
  /** Prefix stderr lines with their syslog priority (stderr is the journal). */
  readonly syslog: boolean
  readonly file?: WatchedLogFile | undefined
}

/** A logger writing each entry as one formatted line (or a few, for a stack at debug level). */
export const lineLogger = (sink: LogSink): Logger.Logger<unknown, void> => {
  const stacks = LogLevel.lessThanEqual(sink.level, LogLevel.Debug)
  const plain: LineOptions = { format: sink.format, area: sink.area, stacks, syslog: false }
  const journal: LineOptions = { ...plain, syslog: sink.syslog }
  return Logger.make(({ annotations, cause, date, logLevel, message }) => {
    const entry = { annotations, cause, date, level: logLevel, message }
    const line = formatEntry(entry, plain)
    // A line the file cannot take goes to stderr rather than nowhere; a fatal one goes to both.
    const written = sink.file !== undefined && sink.file.write(`${line}\n`)
    if (sink.stderr || !written || logLevel._tag === "Fatal") {
      process.stderr.write(`${sink.syslog ? formatEntry(entry, journal) : line}\n`)
    }
  })
}

/** The loggers these layers installed, so a daemon's logger replaces the command's rather than joining it. */
const ours = new WeakSet<Logger.Logger<unknown, void>>()

/** The logger (in place of Effect's default one and any of ours) and its minimum level, as a layer. */
const sinkLayer = (sink: LogSink): Layer.Layer<never> => {
  const logger = lineLogger(sink)
  ours.add(logger)
  return Layer.merge(
    Layer.scopedDiscard(Effect.locallyScopedWith(FiberRef.currentLoggers, (set) =>
      HashSet.add(HashSet.filter(set, (l) => l !== Logger.defaultLogger && !ours.has(l)), logger))),
    Logger.minimumLogLevel(sink.level)
  )
}

/** Whether stderr is the journal (for the `<N>` priority prefix). */
export const journalStderr = (env: Readonly<Record<string, string | undefined>> = process.env): boolean => {
  let st: fs.Stats | undefined
  try {
    st = fs.fstatSync(2)
  } catch {
    st = undefined
  }
  return stderrIsJournal(env, st)
}

/**
 * The logger layer for a daemon run. It also owns SIGHUP for the run's life: reopen the log file
 * (without a handler Node's default action for SIGHUP would end the daemon).
 */
export const loggerLayer = (config: Config, area = "daemon"): Layer.Layer<never> =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const file = config.adjutant.log_file === "" ? undefined : yield* Effect.acquireRelease(
        Effect.sync(() => openWatchedLogFile(config.adjutant.log_file)),
        (f) => Effect.sync(() => f?.close())
      )
      const onHangup = (): void => file?.reopen()
      yield* Effect.acquireRelease(
        Effect.sync(() => process.on("SIGHUP", onHangup)),
        () => Effect.sync(() => process.off("SIGHUP", onHangup))
      )
      const toStderr = config.flags.fg || file === undefined
      return sinkLayer({
        format: config.adjutant.log_format,
        area,
        level: effectiveLogLevel(config),
        stderr: toStderr,
        syslog: journalStderr(),
        file
      })
    })
  )

/** The logger of a command that is not the daemon: stderr only, in the config's format. */
export const stderrLoggerLayer = (options: { readonly format: LogFormat; readonly area: string; readonly level: LogLevel.LogLevel }): Layer.Layer<never> =>
  sinkLayer({ ...options, stderr: true, syslog: false })

/** A failure that was logged already (or needs no words, e.g. `status` of a host not ready): only the exit status is left to set, 1 unless told. */
export class FatalReported extends Schema.TaggedError<FatalReported>()("FatalReported", {
  message: Schema.String,
  exitCode: Schema.optional(Schema.Number)
}) {}

/**
 * Runs a daemon with its logger, and logs a failure that ends it as one CRITICAL line (kojid
 * logs an uncaught exception so) to the log file and stderr, its stack only at debug level.
 */
export const withDaemonLogging = (config: Config) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, FatalReported, R> =>
  Effect.zipRight(
    config.flags.debug_mock ? Effect.logWarning("--debug-mock is kojid's switch for mock's debug output: there is no mock here; ignored") : Effect.void,
    self
  ).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Effect.zipRight(Effect.logFatal(cause), Effect.fail(new FatalReported({ message: Cause.pretty(cause) })))
    ),
    Effect.provide(loggerLayer(config))
  )
