/**
 * The daemon's logger, as kojid logs: to `log_file` (kojid: /var/log/kojid.log) always, and to
 * stderr as well with `--fg`; the level from -d / -v / log_level (effectiveLogLevel). Lines are
 * logfmt with the fiber's annotations (taskId, method).
 */
import { createWriteStream, type WriteStream } from "node:fs"
import { Effect, Layer, Logger } from "effect"
import { type Config, effectiveLogLevel } from "../config/AdjutantConfig.js"

const openLogFile = (file: string) =>
  Effect.acquireRelease(
    Effect.async<WriteStream | undefined>((resume) => {
      const stream = createWriteStream(file, { flags: "a" })
      stream.once("open", () => resume(Effect.succeed(stream)))
      stream.once("error", (e) => {
        process.stderr.write(`koji-adjutant: cannot open log file ${file}: ${e.message}; logging to stderr\n`)
        resume(Effect.succeed(undefined))
      })
    }),
    (stream) =>
      stream === undefined
        ? Effect.void
        : Effect.async<void>((resume) => {
          stream.end(() => resume(Effect.void))
        })
  )

/** The logger layer for a daemon run. */
export const loggerLayer = (config: Config): Layer.Layer<never> =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const file = config.adjutant.log_file === "" ? undefined : yield* openLogFile(config.adjutant.log_file)
      const toStderr = config.flags.fg || file === undefined
      const logger = Logger.map(Logger.logfmtLogger, (line) => {
        const text = `${line}\n`
        if (file !== undefined) file.write(text)
        if (toStderr) process.stderr.write(text)
      })
      return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(effectiveLogLevel(config)))
    })
  )
