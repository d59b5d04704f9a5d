/**
 * Domain errors of buildroots and builds. `toFault` (src/daemon/toFault.ts) maps them by tag:
 * `BuildrootSetupError` → BuildrootError 1012, `RpmbuildFailed` → BuildError 1005; the
 * `message` is the fault string, worded as kojid's (koji-protocol.md §5.1, §7.2).
 */
import { Schema } from "effect"

/** The buildroot could not be populated (kojid: "could not init mock buildroot, …"). */
export class BuildrootSetupError extends Schema.TaggedError<BuildrootSetupError>()("BuildrootSetupError", {
  message: Schema.String,
  /** The last lines of root.log, also part of `message`. */
  logTail: Schema.optional(Schema.String)
}) {}

/** rpmbuild failed in the buildroot (kojid: "error building package (arch X), mock exited with status 10; …"). */
export class RpmbuildFailed extends Schema.TaggedError<RpmbuildFailed>()("RpmbuildFailed", {
  message: Schema.String,
  exitCode: Schema.Number,
  /** The last lines of build.log, also part of `message`. */
  logTail: Schema.optional(Schema.String)
}) {}

/** The SRPM of a task is missing or is not a usable source package (kojid raises BuildError). */
export class SrpmError extends Schema.TaggedError<SrpmError>()("SrpmError", {
  message: Schema.String
}) {}

/** The last `lines` non-empty lines of a log text, for fault strings a packager can act on. */
export const logTail = (text: string, lines = 20, maxChars = 4000): string => {
  const all = text.split("\n").filter((l) => l.trim() !== "")
  const tail = all.slice(-lines).join("\n")
  return tail.length > maxChars ? tail.slice(tail.length - maxChars) : tail
}

/** A build hit a limit that bounds what it may take of the host (`task_disk_max`, `result_max_size`, …). */
export class BuildLimitExceeded extends Schema.TaggedError<BuildLimitExceeded>()("BuildLimitExceeded", {
  /** The `[adjutant]` key of the limit. */
  limit: Schema.String,
  message: Schema.String
}) {}

/** A file-system operation of the daemon's own failed (a full disk, a permission): the path and the errno code. */
export class FsError extends Schema.TaggedError<FsError>()("FsError", {
  /** What was being done, e.g. "write", "create directory". */
  op: Schema.String,
  path: Schema.String,
  /** The errno code (ENOSPC, EACCES, …) when there is one. */
  code: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/** The FsError of a failed `op` on `path`. */
export const fsError = (op: string, path: string) => (e: unknown): FsError => {
  const code = typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined
  const why = code === "ENOSPC" ? "no space left on device" : code === "EACCES" || code === "EPERM" ? "permission denied" : e instanceof Error ? e.message : String(e)
  return new FsError({ op, path, ...(code === undefined ? {} : { code }), message: `cannot ${op} ${path}: ${why}` })
}
