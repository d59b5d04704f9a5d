/**
 * `koji-adjutant containers list|reap`: the podman containers labelled with this host (the
 * daemon's `hostName`: kojid.conf's `user`, else the machine's name), through the daemon's own
 * Containers service and Reaper.
 *
 * `reap` beside a running daemon removes only what no running task owns. Which tasks run comes
 * from the daemon itself (`/status` on status_listen) when it answers; else from the hub, asked
 * anonymously: a task the hub has OPEN on this host may be running here, so its containers stay.
 * When neither answers, `reap` refuses. Containers without a task label (build-local's, tests')
 * are never reaped here.
 */
import { Command } from "@effect/cli"
import { Console, Effect, Either } from "effect"
import type { Config } from "../config/AdjutantConfig.js"
import { Containers, containersOptionsFromConfig } from "../containers/Containers.js"
import { ownerOf } from "../containers/labels.js"
import { type IsOwned, reap } from "../containers/Reaper.js"
import { hostApi } from "../hub/HostApi.js"
import { hubOptionsFromConfig, KojiHub } from "../hub/KojiHub.js"
import { TaskState } from "../koji/states.js"
import { AdminError, configOption, fetchStatus, loadAdminConfig, printTable, reported } from "./common.js"

const podmanFailed = (e: { readonly message: string }) => new AdminError({ message: e.message })

/** Owned when the task label names a task the daemon runs; containers without one are kept. */
export const ownedByRunning = (running: ReadonlySet<number>): IsOwned => (labels) => {
  const taskId = ownerOf(labels)?.taskId
  return taskId === undefined || running.has(taskId)
}

/** Owned when the hub has the container's task OPEN on this host (anonymous calls). */
const ownedOnHub = (config: Config, hostName: string) =>
  Effect.gen(function*() {
    const api = hostApi((yield* KojiHub).anonymous)
    const host = yield* api.getHostById(hostName)
    if (host === null) return yield* new AdminError({ message: `containers reap: the hub has no host ${hostName}` })
    const isOwned: IsOwned = (labels) => {
      const taskId = ownerOf(labels)?.taskId
      if (taskId === undefined) return true
      return api.getTaskInfo(taskId).pipe(
        Effect.map((t) => t !== null && t.state === TaskState.OPEN && t.host_id === host.id),
        // A task the hub cannot tell about now is kept: reaping a live build is worse than a leftover.
        Effect.orElseSucceed(() => true)
      )
    }
    return isOwned
  }).pipe(
    Effect.provide(KojiHub.layerWithTransport({ ...hubOptionsFromConfig(config), timeout: 30, maxRetries: 0, recoveryProbeInterval: 0 })),
    Effect.mapError((e) => (e._tag === "AdminError" ? e : new AdminError({ message: `containers reap: cannot ask the hub which tasks run here: ${e.message}` })))
  )

const listCommand = Command.make("list", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const found = yield* Effect.flatMap(Containers, (c) => c.listOwned()).pipe(
      Effect.provide(Containers.layer(containersOptionsFromConfig(config))),
      Effect.mapError(podmanFailed)
    )
    yield* Console.log(`${found.length} container${found.length === 1 ? "" : "s"} of host ${containersOptionsFromConfig(config).hostName}`)
    if (found.length === 0) return
    yield* printTable(["NAME", "STATE", "TASK", "ROLE", "BUILDROOT"], found.map((c) => {
      const owner = ownerOf(c.labels)
      return [c.name, c.state, owner?.taskId === undefined ? "-" : String(owner.taskId), owner?.role ?? "-", owner?.buildrootId === undefined ? "-" : String(owner.buildrootId)]
    }))
  }))
).pipe(Command.withDescription("list the containers of this host"))

const reapCommand = Command.make("reap", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const options = containersOptionsFromConfig(config)
    const status = yield* fetchStatus(config)
    let isOwned: IsOwned
    if (Either.isRight(status)) {
      isOwned = ownedByRunning(new Set(status.right.tasks.map((t) => t.id)))
      yield* Console.log(`the daemon runs ${status.right.tasks.length} task${status.right.tasks.length === 1 ? "" : "s"}: their containers stay`)
    } else {
      const fromHub = yield* Effect.either(ownedOnHub(config, options.hostName))
      if (Either.isLeft(fromHub)) {
        return yield* new AdminError({
          message: `${fromHub.left.message}; and ${status.left.message}. Nothing removed: set status_listen, or make the hub reachable`
        })
      }
      isOwned = fromHub.right
      yield* Console.log("no daemon status: containers of tasks the hub has OPEN on this host stay")
    }
    const result = yield* reap(isOwned).pipe(Effect.provide(Containers.layer(options)), Effect.mapError(podmanFailed))
    for (const name of result.removed) yield* Console.log(`removed ${name}`)
    yield* Console.log(`${result.removed.length} removed, ${result.kept} kept${result.failed.length > 0 ? `, ${result.failed.length} could not be removed` : ""}`)
    if (result.failed.length > 0) return yield* new AdminError({ message: `could not remove ${result.failed.join(", ")}` })
  }))
).pipe(Command.withDescription("remove this host's containers no running task owns"))

/** The `containers` subcommand. */
export const containersCommand = Command.make("containers").pipe(
  Command.withDescription("list this host's containers, or reap the ones no running task owns"),
  Command.withSubcommands([listCommand, reapCommand])
)
