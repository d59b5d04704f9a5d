/**
 * The one mapping from a failed task to the fault `host.failTask` reports (DESIGN.md §4,
 * koji-protocol.md §4.5): koji faults as they are; domain errors by the table below (what a
 * kojid would report for the same situation); anything else — defects and errors nobody mapped
 * — faultCode 1 with the cause's text, as kojid reports a Python traceback.
 */
import { Cause, Option } from "effect"
import { isFault } from "../hub/faults.js"
import { faultFor, ScmError } from "../scm/url.js"

/** A fault as failTask sends it. */
export interface FaultStruct {
  readonly faultCode: number
  readonly faultString: string
}

/** A domain error's fault: its code and why kojid would report that code. */
export interface FaultRule {
  readonly faultCode: number
  readonly why: string
}

/**
 * Domain error `_tag` → fault. Each row says which kojid situation it stands for; the test
 * checks every row.
 */
export const domainFaultTable: Readonly<Record<string, FaultRule>> = {
  // Build failures: kojid raises koji.BuildError when mock/rpmbuild fails (§7.2).
  RpmbuildFailed: { faultCode: 1005, why: "mock --rebuild failed → BuildError" },
  BuildFailed: { faultCode: 1005, why: "a build step failed → BuildError" },
  SrpmError: { faultCode: 1005, why: "bad or missing SRPM → BuildError" },
  // What a build left broke the rules for its output (not a regular file, a bad name or header):
  // the build failed, as kojid fails a build whose results it cannot use.
  HostileOutput: { faultCode: 1005, why: "unusable build output → BuildError" },
  // A build hit a limit of what it may take of the host (disk, result size): the build failed.
  BuildLimitExceeded: { faultCode: 1005, why: "build over a configured limit → BuildError" },
  // SCM checkout and SCM policy: kojid's SCM class raises BuildError for both (§8). An ScmError
  // with its reason goes through `faultFor` instead: GenericError for a bad URL, a password in
  // the URL or a bad commit hash; this row only covers one that lost its reason.
  ScmError: { faultCode: 1005, why: "checkout failed or SCM not allowed → BuildError" },
  // Buildroot problems: kojid raises BuildrootError for repo state and mock init failures (§5).
  BuildrootSetupError: { faultCode: 1012, why: "buildroot could not be populated → BuildrootError" },
  BuildrootError: { faultCode: 1012, why: "buildroot problem → BuildrootError" },
  // The container engine stands where mock's chroot stood: failing to create, start or remove a
  // container is what a failed `mock --init` is for kojid.
  PodmanError: { faultCode: 1012, why: "container engine failed (mock init equivalent) → BuildrootError" },
  ImageError: { faultCode: 1012, why: "bootstrap image unavailable → BuildrootError" },
  // Policy denials: host.assertPolicy raises ActionNotAllowed.
  PolicyDenied: { faultCode: 1004, why: "policy denial → ActionNotAllowed" },
  // Uploads: kojid's uploadWrapper raises GenericError when the hub's digest/size disagree.
  UploadError: { faultCode: 1000, why: "upload rejected or corrupted → GenericError" },
  // Our per-task limit ([adjutant] task_timeout) — kojid's own wait timeout is a GenericError.
  TaskTimeout: { faultCode: 1000, why: "task exceeded task_timeout → GenericError (as wait timeouts)" },
  // Configuration problems found while running a task.
  ConfigError: { faultCode: 1021, why: "bad configuration → ConfigurationError" },
  // Login failures of a task session.
  LoginError: { faultCode: 1002, why: "authentication failed → AuthError" },
  // Transport failures after kojid's retries: kojid's handler sees a requests exception, which
  // is not a koji error, so it reports faultCode 1 with the text (here without a traceback).
  HubError: { faultCode: 1, why: "hub unreachable after retries → code 1 (non-koji exception)" },
  XmlRpcParseError: { faultCode: 1, why: "hub sent an unreadable document → code 1 (non-koji exception)" }
}

const messageOf = (e: unknown): string => {
  if (e instanceof Error) return e.message
  if (typeof e === "object" && e !== null && "message" in e && typeof e.message === "string") return e.message
  return String(e)
}

const tagOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "_tag" in e && typeof e._tag === "string" ? e._tag : undefined

/** The fault for one failure value (a typed error of a task). */
export const faultOfError = (e: unknown): FaultStruct => {
  if (isFault(e)) return { faultCode: e.faultCode, faultString: e.faultString }
  if (e instanceof ScmError) {
    const f = faultFor(e)
    return { faultCode: f.faultCode, faultString: f.faultString }
  }
  const tag = tagOf(e)
  const rule = tag === undefined ? undefined : domainFaultTable[tag]
  if (rule !== undefined) return { faultCode: rule.faultCode, faultString: messageOf(e) }
  // An error nobody mapped is a bug of ours: report it as kojid reports a non-koji exception.
  const text = e instanceof Error && e.stack !== undefined ? e.stack : `${tag ?? "Error"}: ${messageOf(e)}`
  return { faultCode: 1, faultString: text }
}

/** The fault `host.failTask` reports for a task that ended with `cause` (not for interruption). */
export const toFault = (cause: Cause.Cause<unknown>): FaultStruct => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return faultOfError(failure.value)
  // Defects: faultCode 1 with the cause's text, as kojid sends `traceback.format_exception`.
  return { faultCode: 1, faultString: Cause.pretty(cause) }
}
