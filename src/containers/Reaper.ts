import { Effect } from "effect"
import { Metrics } from "../metrics/Metrics.js"
import { Containers } from "./Containers.js"
import { ownerOf } from "./labels.js"

/** Whether a running task of this daemon owns a container, judged by its labels. */
export type IsOwned = (labels: Readonly<Record<string, string>>) => boolean | Effect.Effect<boolean>

/** What one reaper pass did. */
export interface ReapResult {
  /** Names of the containers removed. */
  readonly removed: ReadonlyArray<string>
  /** How many of this host's containers a running task owns. */
  readonly kept: number
  /** Names of orphans that could not be removed (retried at the next pass). */
  readonly failed: ReadonlyArray<string>
}

/** An IsOwned for a set of running task ids: a container is owned when its task label is in it. */
export const ownedByTasks =
  (taskIds: ReadonlySet<number>): IsOwned =>
  (labels) => {
    const taskId = ownerOf(labels)?.taskId
    return taskId !== undefined && taskIds.has(taskId)
  }

/**
 * One pass: lists the containers labelled with this host and force-removes (no grace period)
 * every one no running task owns, logging each. Orphans come from a crash of an earlier
 * daemon: conmon keeps containers alive after their client dies (notes §7).
 */
export const reap = Effect.fn("Reaper.reap")(function* (isOwned: IsOwned) {
  const containers = yield* Containers
  const found = yield* containers.listOwned()
  const removed: Array<string> = []
  const failed: Array<string> = []
  let kept = 0
  for (const c of found) {
    const verdict = isOwned(c.labels)
    if (typeof verdict === "boolean" ? verdict : yield* verdict) {
      kept++
      continue
    }
    const owner = ownerOf(c.labels)
    const done = yield* Effect.either(containers.remove(c.id))
    const log = Effect.annotateLogs({ container: c.name, state: c.state, taskId: owner?.taskId ?? "", role: owner?.role ?? "" })
    if (done._tag === "Right") {
      removed.push(c.name)
      yield* Effect.flatMap(Metrics, (m) => Effect.sync(() => m.reaped(owner?.role ?? "unknown")))
      yield* Effect.logInfo("removed orphan container").pipe(log)
    } else {
      failed.push(c.name)
      yield* Effect.logError("could not remove orphan container", done.left).pipe(log)
    }
  }
  return { removed, kept, failed } satisfies ReapResult
})
