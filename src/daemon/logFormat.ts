/**
 * How a log line looks (`[adjutant] log_format`), the same on every path: the daemon, build-local,
 * check-config, the admin commands and a fatal error.
 *
 * - `kojid` (default), kojid's own layout so the greps of a kojid admin keep working:
 *   `2026-05-12 10:01:02,345 [WARNING] koji.daemon: message (taskId=1234 method=buildArch)` —
 *   local time with milliseconds after a comma (Python's asctime), the Python level name, the
 *   logger `koji.<area>`, the message, then the fiber's annotations (task context first);
 * - `logfmt`: `time=… level=WARNING logger=koji.daemon msg="…" taskId=1234 method=buildArch`;
 * - `json`: one object per line with the same fields.
 *
 * The area is the `area` annotation when a fiber sets one, `task` inside a task (a `taskId`
 * annotation), else the command's own (`daemon`, `build-local`, `check-config`, …). An error
 * cause is one line (its failures' messages) unless the stack is asked for (debug level).
 * A line for the journal (`--fg` under systemd) starts with the syslog priority `<N>` that
 * `journalctl -p` filters on.
 */
import { Cause, HashMap, type LogLevel } from "effect"

/** The three layouts of `[adjutant] log_format`. */
export type LogFormat = "kojid" | "logfmt" | "json"

/** What one line holds, taken from Effect's logger input. */
export interface LogEntry {
  readonly date: Date
  readonly level: LogLevel.LogLevel
  readonly message: unknown
  readonly cause: Cause.Cause<unknown>
  readonly annotations: HashMap.HashMap<string, unknown>
}

/** How entries become text. */
export interface LineOptions {
  readonly format: LogFormat
  /** The area when the entry names none (`daemon`, `build-local`, …). */
  readonly area: string
  /** Render causes with their stack (debug level), else one line. */
  readonly stacks: boolean
  /** Prefix every line with the syslog priority `<N>` (journald's stderr protocol). */
  readonly syslog: boolean
}

/** Python's level names, as kojid writes them. */
export const pythonLevel = (level: LogLevel.LogLevel): string => {
  switch (level._tag) {
    case "Fatal":
      return "CRITICAL"
    case "Error":
      return "ERROR"
    case "Warning":
      return "WARNING"
    case "Info":
      return "INFO"
    default:
      return "DEBUG"
  }
}

/** sd-daemon(3) priorities: `<2>` crit, `<3>` err, `<4>` warning, `<6>` info, `<7>` debug. */
export const syslogPriority = (level: LogLevel.LogLevel): number => {
  switch (level._tag) {
    case "Fatal":
      return 2
    case "Error":
      return 3
    case "Warning":
      return 4
    case "Info":
      return 6
    default:
      return 7
  }
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0")

/** `YYYY-MM-DD HH:MM:SS,mmm` in local time, as Python's logging asctime. */
export const asctime = (d: Date): string =>
  `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())},${pad(d.getMilliseconds(), 3)}`

const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? String(value)
  } catch {
    return String(value)
  }
}

/** A value in a line: strings as they are, errors by their message, the rest as JSON. */
export const valueText = (value: unknown): string =>
  typeof value === "string"
    ? value
    : value instanceof Error
    ? value.message
    : typeof value === "number" || typeof value === "boolean" || typeof value === "bigint"
    ? String(value)
    : value === undefined
    ? ""
    : safeJson(value)

/** The message of an entry: the parts of a multi-part log call joined by a space. */
export const messageText = (message: unknown): string =>
  Array.isArray(message) ? message.map(valueText).join(" ") : valueText(message)

const errorText = (e: unknown): string => {
  if (e instanceof Error) return e.message === "" ? e.name : e.message
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string") return e.message
  return valueText(e)
}

/** A cause in one line (its failures' and defects' messages), or empty when it holds none. */
export const causeLine = (cause: Cause.Cause<unknown>): string => {
  const parts = [...Cause.failures(cause), ...Cause.defects(cause)].map(errorText)
  if (parts.length === 0 && Cause.isInterrupted(cause)) return "interrupted"
  return [...new Set(parts)].join("; ")
}

/** A cause with its stacks (debug level); empty when it holds nothing. */
export const causeWithStack = (cause: Cause.Cause<unknown>): string =>
  Cause.isEmpty(cause) ? "" : Cause.pretty(cause, { renderErrorCause: true })

/** The keys of the fiber's annotations, task context first. */
const orderedAnnotations = (annotations: HashMap.HashMap<string, unknown>): ReadonlyArray<readonly [string, string]> => {
  const all = [...HashMap.toEntries(annotations)].filter(([k]) => k !== "area").map(([k, v]) => [k, valueText(v)] as const)
  const rank = (k: string) => (k === "taskId" ? 0 : k === "method" ? 1 : 2)
  return all.filter(([, v]) => v !== "").sort((a, b) => rank(a[0]) - rank(b[0]))
}

/** The area an entry belongs to. */
const areaOf = (entry: LogEntry, fallback: string): string => {
  const area = HashMap.get(entry.annotations, "area")
  if (area._tag === "Some" && typeof area.value === "string" && area.value !== "") return area.value
  return HashMap.has(entry.annotations, "taskId") ? "task" : fallback
}

/** A logfmt value: bare when it can be, else a JSON string (which escapes newlines and quotes). */
const logfmtValue = (v: string): string => (v !== "" && /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v))

/** The text of one entry (several lines only in `kojid` format, for a multi-line message or a stack). */
export const formatEntry = (entry: LogEntry, options: LineOptions): string => {
  const level = pythonLevel(entry.level)
  const logger = `koji.${areaOf(entry, options.area)}`
  const said = messageText(entry.message)
  const fullError = options.stacks ? causeWithStack(entry.cause) : causeLine(entry.cause)
  // A line that only carries an error (a fatal one) has the error as its message.
  const message = said === "" ? fullError : said
  const error = said === "" ? "" : fullError
  const context = orderedAnnotations(entry.annotations)
  let text: string
  switch (options.format) {
    case "json": {
      const fields: Record<string, string> = { time: entry.date.toISOString(), level, logger, message }
      if (error !== "") fields["error"] = error
      for (const [k, v] of context) if (!(k in fields)) fields[k] = v
      text = JSON.stringify(fields)
      break
    }
    case "logfmt": {
      const pairs: Array<readonly [string, string]> = [["time", entry.date.toISOString()], ["level", level], ["logger", logger], ["msg", message]]
      if (error !== "") pairs.push(["error", error])
      text = [...pairs, ...context].map(([k, v]) => `${k}=${logfmtValue(v)}`).join(" ")
      break
    }
    default: {
      const withError = error === "" ? message : message === "" ? error : options.stacks ? `${message}\n${error}` : `${message}: ${error}`
      const suffix = context.length === 0 ? "" : ` (${context.map(([k, v]) => `${k}=${v}`).join(" ")})`
      text = `${asctime(entry.date)} [${level}] ${logger}: ${withError}${suffix}`
    }
  }
  if (!options.syslog) return text
  const prefix = `<${syslogPriority(entry.level)}>`
  return text.split("\n").map((line) => prefix + line).join("\n")
}

/** An entry made from parts (for lines written outside a logger: a fatal error before one exists). */
export const entryOf = (level: LogLevel.LogLevel, message: string, cause: Cause.Cause<unknown> = Cause.empty, annotations: Record<string, string> = {}): LogEntry => ({
  date: new Date(),
  level,
  message,
  cause,
  annotations: HashMap.fromIterable(Object.entries(annotations))
})

/** Whether stderr is the journal: `JOURNAL_STREAM` names its device and inode (systemd.exec(5)), or, on systemd before 232, `INVOCATION_ID` alone. */
export const stderrIsJournal = (
  env: Readonly<Record<string, string | undefined>>,
  stderrStat: { readonly dev: number; readonly ino: number } | undefined
): boolean => {
  const stream = env["JOURNAL_STREAM"]
  if (stream !== undefined && stream !== "") {
    const m = /^(\d+):(\d+)$/.exec(stream)
    return m !== null && stderrStat !== undefined && Number(m[1]) === stderrStat.dev && Number(m[2]) === stderrStat.ino
  }
  return env["INVOCATION_ID"] !== undefined && env["INVOCATION_ID"] !== ""
}

