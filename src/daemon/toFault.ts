/**
 * The one mapping from a failed task to the fault `host.failTask` reports (DESIGN.md §4,
 * koji-protocol.md §4.5): koji faults as they are; every other error of a task (`TaskError`)
 * by the rule below — what a kojid would report for the same situation — checked exhaustive by
 * the compiler; defects (bugs) faultCode 1 with the cause's text, as kojid reports a Python
 * traceback.
 */
import { Cause, Option } from "effect"
import { isFault } from "../koji/faults.js"
import { faultFor } from "../scm/url.js"
import type { TaskError } from "../tasks/errors.js"

/** A fault as failTask sends it. */
export interface FaultStruct {
  readonly faultCode: number
  readonly faultString: string
}

const fault = (faultCode: number, faultString: string): FaultStruct => ({ faultCode, faultString })

/** The fault for one failure of a task. */
export const faultOfError = (e: TaskError): FaultStruct => {
  if (isFault(e)) return fault(e.faultCode, e.faultString)
  switch (e._tag) {
    // Build failures: kojid raises koji.BuildError when mock/rpmbuild fails (§7.2), for a bad or
    // missing SRPM, for results it cannot use, and for a build over a limit of ours.
    case "RpmbuildFailed":
    case "SrpmError":
    case "HostileOutput":
    case "BuildLimitExceeded":
      return fault(1005, e.message)
    // SCM: GenericError for a bad URL, a password in it or a bad commit hash; BuildError for the rest (§8).
    case "ScmError": {
      const f = faultFor(e)
      return fault(f.faultCode, f.faultString)
    }
    // Buildroot problems: kojid raises BuildrootError when mock cannot init; the container engine
    // and the bootstrap image stand where mock's chroot stood.
    case "BuildrootSetupError":
    case "FsError":
    case "PodmanError":
    case "ImageError":
      return fault(1012, e.message)
    // kojid's uploadWrapper raises GenericError when the hub's digest/size disagree; kojid's own
    // wait timeouts are GenericErrors too.
    case "UploadError":
    case "TaskTimeout":
      return fault(1000, e.message)
    // Bad configuration found while running a task (runroot.conf, kojid.conf).
    case "ConfigError":
    case "RunrootConfigError":
      return fault(1021, e.message)
    // A task session that cannot log in.
    case "LoginError":
      return fault(1002, e.message)
    // Not koji errors: kojid's handler sees a requests/smtplib exception and reports faultCode 1
    // with its text (here without a traceback).
    case "HubError":
    case "XmlRpcParseError":
      return fault(1, e.message)
    case "MailError":
      return fault(1, `${e._tag}: ${e.message}`)
    // koji.tasks control flow reaches failTask only if a caller forgot to handle it: kojid would
    // report the raised exception.
    case "RefuseTask":
    case "ServerExit":
    case "ServerRestart":
      return fault(1, `${e._tag}: ${e.message}`)
    default: {
      // The compiler knows every member above; a value outside the union is a bug, as a defect is.
      const other: never = e
      return fault(1, `unexpected failure: ${String(other)}`)
    }
  }
}

/** The fault `host.failTask` reports for a task that ended with `cause` (not for interruption). */
export const toFault = (cause: Cause.Cause<TaskError>): FaultStruct => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return faultOfError(failure.value)
  // Defects: faultCode 1 with the cause's text, as kojid sends `traceback.format_exception`.
  return fault(1, Cause.pretty(cause))
}
