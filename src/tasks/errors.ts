/**
 * Every way a task handler can fail (DESIGN.md §4): koji faults as the hub or kojid raises them,
 * the domain errors of the services handlers use, and the control flow of koji.tasks
 * (RefuseTask, ServerExit, ServerRestart). `daemon/toFault.ts` maps each to the fault a kojid
 * would report, exhaustively; anything outside this union is a defect (fault 1).
 */
import { Schema } from "effect"
import type { BuildLimitExceeded, BuildrootSetupError, FsError, RpmbuildFailed, SrpmError } from "../buildroot/errors.js"
import type { HostileOutput } from "../buildroot/results.js"
import type { ConfigError } from "../config/AdjutantConfig.js"
import type { ImageError } from "../containers/Images.js"
import type { PodmanError } from "../containers/Libpod.js"
import type { Fault } from "../koji/faults.js"
import type { HubError, LoginError } from "../hub/HubError.js"
import type { UploadError } from "../hub/Uploads.js"
import type { XmlRpcParseError } from "../hub/xmlrpc.js"
import type { MailError } from "../mail/Mailer.js"
import type { RunrootConfigError } from "../runroot/config.js"
import type { ScmError } from "../scm/url.js"

// ---------------------------------------------------------------------------------------------
// Control flow a handler can raise (koji.tasks.RefuseTask / ServerExit / ServerRestart, §2)

/** The handler refuses the task: the daemon calls `host.refuseTask(id, soft=True, msg)` (§4.5). */
export class RefuseTask extends Schema.TaggedError<RefuseTask>()("RefuseTask", {
  message: Schema.String
}) {}

/** The daemon must exit cleanly (the `shutdown` task; koji.tasks.ServerExit). */
export class ServerExit extends Schema.TaggedError<ServerExit>()("ServerExit", {}) {}

/** The daemon must restart; a task raising it is freed, not failed (koji.tasks.ServerRestart, §4.5). */
export class ServerRestart extends Schema.TaggedError<ServerRestart>()("ServerRestart", {}) {}

/** A task ran longer than `[adjutant] task_timeout`. */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  taskId: Schema.Number,
  seconds: Schema.Number
}) {
  override get message(): string {
    return `Task ${this.taskId} timed out after ${this.seconds} seconds`
  }
}

/** What the build, buildroot and SCM steps fail with besides koji faults. */
export type DomainError =
  | BuildrootSetupError
  | RpmbuildFailed
  | SrpmError
  | HostileOutput
  | BuildLimitExceeded
  | FsError
  | ScmError
  | PodmanError
  | ImageError
  | UploadError
  | MailError
  | ConfigError
  | RunrootConfigError
  | TaskTimeout

/** What reaching the hub fails with. */
export type HubFailure = Fault | HubError | LoginError | XmlRpcParseError

/** koji.tasks' control flow a handler can raise (not failures: the daemon reacts to each). */
export type TaskControl = RefuseTask | ServerExit | ServerRestart

/** Every typed failure of a task handler. */
export type TaskError = HubFailure | DomainError | TaskControl
