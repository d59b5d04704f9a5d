/**
 * Handlers keyed by method name (kojid's `TaskManager.handlers`, koji-protocol.md §4.1). The
 * method list it reports is what `host.updateHost(..., data={methods})` sends every cycle.
 */
import { Context, Layer } from "effect"
import { genericHandlers } from "./generic.js"
import type { TaskHandler } from "./handler.js"

/** The registered task handlers. */
export interface TaskRegistryService {
  /** The handler of a method, if one is registered. */
  readonly get: (method: string) => TaskHandler | undefined
  /** Every method served, in registration order (the `methods` of updateHost's data). */
  readonly methods: ReadonlyArray<string>
}

/** Builds a registry; a later handler for the same method replaces an earlier one (as kojid). */
export const makeRegistry = (handlers: ReadonlyArray<TaskHandler>): TaskRegistryService => {
  const byMethod = new Map<string, TaskHandler>()
  for (const h of handlers) for (const m of h.methods) byMethod.set(m, h)
  return { get: (method) => byMethod.get(method), methods: [...byMethod.keys()] }
}

/** The task handlers this daemon serves. */
export class TaskRegistry extends Context.Tag("TaskRegistry")<TaskRegistry, TaskRegistryService>() {
  /** The generic handlers plus `extra` (the build handler families add theirs here in main.ts). */
  static layer(extra: ReadonlyArray<TaskHandler> = []): Layer.Layer<TaskRegistry> {
    return Layer.succeed(TaskRegistry, makeRegistry([...genericHandlers, ...extra]))
  }

  /** Exactly these handlers (tests). */
  static layerTest(handlers: ReadonlyArray<TaskHandler>): Layer.Layer<TaskRegistry> {
    return Layer.succeed(TaskRegistry, makeRegistry(handlers))
  }
}
