/**
 * The daemon's logger, as kojid logs: to `log_file` (kojid: /var/log/kojid.log) always, and to
 * stderr as well with `--fg`; the level from -d / -v / log_level (effectiveLogLevel). Lines are
 * logfmt with the fiber's annotations (taskId, method).
 *
 * The file survives rotation as kojid's WatchedFileHandler does: before each line its path is
 * checked, and when the file there is another one (moved away, removed, replaced) it is opened
 * anew; SIGHUP reopens it too (logrotate's postrotate in packaging/koji-adjutant.logrotate). It is
 * opened for appending, so a file truncated in place is written on from its new end, with no hole.
 */
import * as fs from "node:fs"
import { Effect, Layer, Logger } from "effect"
import { type Config, effectiveLogLevel } from "../config/AdjutantConfig.js"

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

/**
 * The logger layer for a daemon run. It also owns SIGHUP for the run's life: reopen the log file
 * (without a handler Node's default action for SIGHUP would end the daemon).
 */
export const loggerLayer = (config: Config): Layer.Layer<never> =>
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
      const logger = Logger.map(Logger.logfmtLogger, (line) => {
        const text = `${line}\n`
        // A line the file cannot take goes to stderr rather than nowhere.
        const written = file !== undefined && file.write(text)
        if (toStderr || !written) process.stderr.write(text)
      })
      return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(effectiveLogLevel(config)))
    })
  )
