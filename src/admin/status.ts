/**
 * `koji-adjutant status`: what the running daemon says about itself on its status endpoint, for
 * a person (or as JSON). Exit status 0 ready, 1 not ready, 3 no daemon answers (systemctl's
 * "not running").
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either } from "effect"
import { FatalReported } from "../daemon/Logging.js"
import type { DaemonStatus } from "../daemon/StatusServer.js"
import { ago, configOption, fetchStatus, loadAdminConfig } from "./common.js"

/** The summary lines of a status. */
export const describeStatus = (s: DaemonStatus, now: number): ReadonlyArray<string> => [
  `koji-adjutant ${s.version}: host ${s.host || "?"} (id ${s.hostId}), pid ${s.pid}, up ${ago(now - s.startTs * 1000)}`,
  s.restartPending
    ? "restart pending: running tasks finish, then the daemon restarts"
    : s.ready === true && s.notReady.length === 0 && s.healthy
    ? "ready: takes tasks"
    : `not ready: ${s.notReady.join("; ") || "the last heartbeat said not ready"}`,
  `tasks: ${s.tasks.length} of ${s.maxjobs} running, load ${s.taskLoad.toFixed(2)}`,
  ...s.tasks.map((t) => `  ${t.id}  ${t.method}`),
  `last heartbeat: ${s.lastHeartbeat === null ? "none yet" : `${ago(now - s.lastHeartbeat)} ago`}${s.healthy ? "" : " (stale: the hub does not get it)"}`
]

/** The `status` subcommand. */
export const statusCommand = Command.make("status", { config: configOption, json: Options.boolean("json") }, ({ config: file, json }) =>
  Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const status = yield* fetchStatus(config)
    if (Either.isLeft(status)) {
      yield* Effect.logError(status.left.message)
      return yield* new FatalReported({ message: status.left.message, exitCode: 3 })
    }
    const s = status.right
    yield* Console.log(json ? JSON.stringify(s, null, 2) : describeStatus(s, Date.now()).join("\n"))
    if (!(s.ready === true && s.notReady.length === 0 && s.healthy)) return yield* new FatalReported({ message: "not ready", exitCode: 1 })
  })
).pipe(Command.withDescription("show what the running daemon does (its status_listen endpoint)"))
