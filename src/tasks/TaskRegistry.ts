/**
 * Handlers keyed by method name (kojid's `TaskManager.handlers`, koji-protocol.md §4.1). The
 * registry is the list of the task modules: each `src/tasks/<family>.ts` exports `handlers`, an
 * effect building that family's handlers from the services it uses; plugins (kojid.conf
 * `plugin`) are modules of the same shape. The method list is what `host.updateHost(...,
 * data={methods})` sends every cycle.
 */
import { Context, Effect, Layer } from "effect"
import type { Buildroots } from "../buildroot/Buildroots.js"
import { AdjutantConfig, ConfigError } from "../config/AdjutantConfig.js"
import type { Containers } from "../containers/Containers.js"
import type { Mailer } from "../mail/Mailer.js"
import type { RunrootConfigError } from "../runroot/config.js"
import type { Scm } from "../scm/Scm.js"
import * as build from "./build.js"
import * as buildArch from "./buildArch.js"
import * as buildSRPMFromSCM from "./buildSRPMFromSCM.js"
import * as chainbuild from "./chainbuild.js"
import * as createrepo from "./createrepo.js"
import * as distRepo from "./distRepo.js"
import * as generic from "./generic.js"
import type { TaskHandler } from "./handler.js"
import * as newRepo from "./newRepo.js"
import * as notifications from "./notifications.js"
import * as rebuildSRPM from "./rebuildSRPM.js"
import * as runroot from "./runroot.js"
import * as tagBuild from "./tagBuild.js"
import * as waitrepo from "./waitrepo.js"

/** The registered task handlers. */
export interface TaskRegistryService {
  /** The handler of a method, if one is registered. */
  readonly get: (method: string) => TaskHandler | undefined
  /** Every method served, in registration order (the `methods` of updateHost's data). */
  readonly methods: ReadonlyArray<string>
}

/** A task module's `handlers`: its family's handlers, built from the services they use. */
export type TaskModule<E = never, R = never> = Effect.Effect<ReadonlyArray<TaskHandler>, E, R>

/** Builds a registry; a later handler for the same method replaces an earlier one (as kojid). */
export const makeRegistry = (handlers: ReadonlyArray<TaskHandler>): TaskRegistryService => {
  const byMethod = new Map<string, TaskHandler>()
  for (const h of handlers) for (const m of h.methods) byMethod.set(m, h)
  return { get: (method) => byMethod.get(method), methods: [...byMethod.keys()] }
}

/** kojid's built-in handler families. */
export const builtinModules = [
  generic.handlers,
  build.handlers,
  buildArch.handlers,
  rebuildSRPM.handlers,
  buildSRPMFromSCM.handlers,
  tagBuild.handlers,
  chainbuild.handlers,
  waitrepo.handlers,
  newRepo.handlers,
  createrepo.handlers,
  distRepo.handlers,
  notifications.handlers
] as const

/** The koji builder plugins this daemon has, by their kojid.conf `plugin` name. */
export const pluginModules: Readonly<Record<string, TaskModule<RunrootConfigError, AdjutantConfig | Buildroots>>> = {
  runroot: runroot.handlers
}

/** The services the daemon's handlers are built from. */
export type HandlerServices = AdjutantConfig | Buildroots | Scm | Containers | Mailer

/** The task handlers this daemon serves. */
export class TaskRegistry extends Context.Tag("TaskRegistry")<TaskRegistry, TaskRegistryService>() {
  /**
   * Every built-in family plus the plugins kojid.conf names; an unknown plugin is an error, as
   * kojid refuses to start without a plugin it was told to load.
   */
  static layerConfig: Layer.Layer<TaskRegistry, ConfigError | RunrootConfigError, HandlerServices> = Layer.effect(
    TaskRegistry,
    Effect.gen(function*() {
      const config = yield* AdjutantConfig
      const lists: Array<ReadonlyArray<TaskHandler>> = [...yield* Effect.all(builtinModules)]
      for (const name of config.kojid.plugin) {
        const plugin = pluginModules[name]
        if (plugin === undefined) {
          return yield* new ConfigError({
            file: config.file,
            section: "kojid",
            key: "plugin",
            message: `plugin ${JSON.stringify(name)} not found: koji-adjutant has ${Object.keys(pluginModules).join(", ")}`
          })
        }
        lists.push(yield* plugin)
      }
      return makeRegistry(lists.flat())
    })
  )

  /** The handlers of these modules. */
  static layerModules = <E, R>(modules: ReadonlyArray<TaskModule<E, R>>): Layer.Layer<TaskRegistry, E, R> =>
    Layer.effect(TaskRegistry, Effect.map(Effect.all(modules), (lists) => makeRegistry(lists.flat())))

  /** Exactly these handlers (tests). */
  static layerTest(handlers: ReadonlyArray<TaskHandler>): Layer.Layer<TaskRegistry> {
    return Layer.succeed(TaskRegistry, makeRegistry(handlers))
  }
}
