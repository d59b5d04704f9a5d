/** The task handlers that run in buildroots, for the daemon's TaskRegistry (main.ts). */
import { Effect } from "effect"
import { buildArchHandler } from "../tasks/buildArch.js"
import type { TaskHandler } from "../tasks/handler.js"
import { rebuildSrpmHandler } from "../tasks/rebuildSRPM.js"
import { Buildroots } from "./Buildroots.js"

/** `buildArch` and `rebuildSRPM` over the Buildroots service. */
export const buildrootHandlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, Buildroots> = Effect.map(
  Buildroots,
  (b) => [buildArchHandler(b), rebuildSrpmHandler(b)]
)
