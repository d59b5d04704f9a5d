/**
 * `koji-adjutant cache list|prune|clear`: the buildroot cache of kojid.conf's
 * `[adjutant] buildroot_cache_dir`, through the cache's own functions (src/buildroot/cache.ts).
 *
 * Safe beside running daemons, any number of them sharing the directory: "in use" is the cache's
 * own use lock (`busy`: a daemon holds it shared for as long as a task has the entry mounted, or a
 * push reads it), whatever process or mount namespace holds it; every removal is the cache's
 * `removeIfUnused`, which takes that lock exclusively without waiting and renames the entry away
 * under it, so an entry a task picks at the same moment is either kept or never seen by the task.
 * `prune` first removes what crashed processes left (the cache's `recover`, as a daemon's start
 * does).
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either, Logger, LogLevel } from "effect"
import { existsSync } from "node:fs"
import { type BuildrootCache, makeCache } from "../buildroot/cache.js"
import type { Config } from "../config/AdjutantConfig.js"
import { formatByteSize } from "../config/values.js"
import { hostApi } from "../hub/HostApi.js"
import { hubOptionsFromConfig, KojiHub } from "../hub/KojiHub.js"
import { RepoState } from "../koji/states.js"
import { AdminError, ago, configOption, loadAdminConfig, printTable, reported } from "./common.js"

/** The cache of the config, quiet (this command reports what it does). */
const openCache = (config: Config) =>
  makeCache(config.adjutant.buildroot_cache_dir, config.adjutant.buildroot_cache_max, { maxBytes: config.adjutant.buildroot_cache_max_bytes })

const quietly = <A, E, R>(self: Effect.Effect<A, E, R>) => self.pipe(Logger.withMinimumLogLevel(LogLevel.Warning))

const cacheError = (e: { readonly message: string }) => new AdminError({ message: e.message })

/** The keys some process uses now (their use locks held). */
const busyKeys = (cache: BuildrootCache, keys: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const busy = new Set<string>()
    for (const k of keys) if (yield* cache.busy(k)) busy.add(k)
    return busy as ReadonlySet<string>
  }).pipe(Effect.mapError(cacheError))

type Listed = Effect.Effect.Success<BuildrootCache["list"]>[number]

/**
 * Which entries `prune` removes, oldest first, none of those in use: unreadable ones, those the
 * hub says are stale, and the least recently used beyond `max` entries or `maxBytes` bytes (0: no
 * bound) — the daemon's eviction rule.
 */
export const pruneSelection = (
  entries: ReadonlyArray<Listed>,
  busy: ReadonlySet<string>,
  limits: { readonly max: number; readonly maxBytes: number },
  stale: ReadonlySet<string>
): ReadonlyMap<string, string> => {
  const out = new Map<string, string>()
  let count = entries.length
  let bytes = entries.reduce((acc, e) => acc + (e.meta.bytes ?? 0), 0)
  for (const e of entries) {
    if (busy.has(e.key)) continue
    if (!e.complete || e.meta.repoId < 0) out.set(e.key, "unreadable entry (left by a crash)")
    else if (stale.has(e.key)) out.set(e.key, `repo ${e.meta.repoId} is no longer READY on the hub`)
    else if (count > limits.max) out.set(e.key, `beyond buildroot_cache_max = ${limits.max}, least recently used`)
    else if (limits.maxBytes > 0 && bytes > limits.maxBytes) out.set(e.key, `beyond buildroot_cache_max_bytes = ${formatByteSize(limits.maxBytes)}, least recently used`)
    else continue
    count--
    bytes -= e.meta.bytes ?? 0
  }
  return out
}

/** Entries whose repo the hub no longer keeps READY (asked anonymously, as the daemon's cold fills do). */
const staleOnHub = (config: Config, entries: ReadonlyArray<Listed>) =>
  Effect.gen(function*() {
    const api = hostApi((yield* KojiHub).anonymous)
    const stale = new Set<string>()
    for (const e of entries) {
      if (e.meta.repoId < 0) continue
      const repo = yield* api.repoInfo(e.meta.repoId)
      if (repo === null || repo.state === RepoState.DELETED || repo.state === RepoState.PROBLEM || repo.state === RepoState.EXPIRED) stale.add(e.key)
    }
    return stale
  }).pipe(
    Effect.provide(KojiHub.layerWithTransport({ ...hubOptionsFromConfig(config), timeout: 30, maxRetries: 0, recoveryProbeInterval: 0 })),
    Effect.either
  )

/** Removes each of `keys` unless a process uses it at that moment; the keys removed and those kept. */
const removeEntries = (cache: BuildrootCache, keys: ReadonlyMap<string, string>) =>
  quietly(Effect.gen(function*() {
    const removed = new Map<string, string>()
    const kept: Array<string> = []
    for (const [key, why] of keys) {
      if (yield* cache.removeIfUnused(key, why)) removed.set(key, why)
      else kept.push(key)
    }
    yield* cache.emptyTrash
    return { removed, kept }
  })).pipe(Effect.mapError(cacheError))

const listCommand = Command.make("list", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const cache = openCache(config)
    const entries = yield* cache.list
    const busy = yield* busyKeys(cache, entries.map((e) => e.key))
    const now = Date.now()
    const bytes = entries.reduce((acc, e) => acc + (e.meta.bytes ?? 0), 0)
    const maxBytes = cache.limits.maxBytes > 0 ? ` (at most ${formatByteSize(cache.limits.maxBytes)})` : ""
    yield* Console.log(`${cache.dir}: ${entries.length} of at most ${cache.limits.max} entries, ${formatByteSize(bytes)}${maxBytes}, ${busy.size} in use`)
    if (entries.length === 0) return
    yield* printTable(
      ["KEY", "REPO", "TAG", "ARCH", "GROUP", "IMAGE", "SOURCE", "SIZE", "CREATED", "USED", "IN USE"],
      [...entries].reverse().map((e) => [
        e.key.slice(0, 16), String(e.meta.repoId), e.meta.tagName, e.meta.brArch, e.meta.installGroup, e.meta.image,
        e.complete ? e.meta.source ?? "fill" : "-", e.meta.bytes === undefined || e.meta.bytes === 0 ? "-" : formatByteSize(e.meta.bytes),
        e.meta.created > 0 ? `${ago(now - e.meta.created * 1000)} ago` : "-", e.used > 0 ? `${ago(now - e.used)} ago` : "-",
        busy.has(e.key) ? "yes" : "-"
      ])
    )
  }))
).pipe(Command.withDescription("list the cached buildroots"))

const pruneCommand = Command.make("prune", { config: configOption, offline: Options.boolean("offline") }, ({ config: file, offline }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const cache = openCache(config)
    // recover creates the directory: only where a daemon made it.
    const recovered = existsSync(cache.dir) ? yield* quietly(cache.recover).pipe(Effect.mapError(cacheError)) : { removed: [] }
    for (const name of recovered.removed) yield* Console.log(`removed ${name}: left half-written by a process that died`)
    const entries = yield* cache.list
    const busy = yield* busyKeys(cache, entries.map((e) => e.key))
    let stale: ReadonlySet<string> = new Set()
    if (!offline && entries.length > 0) {
      const asked = yield* staleOnHub(config, entries.filter((e) => !busy.has(e.key)))
      if (Either.isLeft(asked)) yield* Effect.logWarning(`cannot ask the hub which repos are current (${asked.left.message}); pruning by size only`)
      else stale = asked.right
    }
    const { removed, kept } = yield* removeEntries(cache, pruneSelection(entries, busy, cache.limits, stale))
    for (const [key, why] of removed) yield* Console.log(`removed ${key}: ${why}`)
    const inUse = busy.size + kept.length
    yield* Console.log(`${cache.dir}: ${entries.length - removed.size} entries left${inUse > 0 ? `, ${inUse} in use by running tasks (kept)` : ""}`)
  }))
).pipe(Command.withDescription("remove cached buildroots beyond buildroot_cache_max(_bytes), those of repos no longer current, and crash leftovers"))

const clearCommand = Command.make("clear", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const cache = openCache(config)
    const entries = yield* cache.list
    const busy = yield* busyKeys(cache, entries.map((e) => e.key))
    if (busy.size > 0) {
      return yield* new AdminError({
        message: `cache clear: ${busy.size} cached buildroot${busy.size === 1 ? " is" : "s are"} in use by running tasks (${[...busy].slice(0, 3).join(", ")}); ` +
          "nothing removed. Wait for them, stop the daemons, or use cache prune (which keeps entries in use)"
      })
    }
    const { removed, kept } = yield* removeEntries(cache, new Map(entries.map((e) => [e.key, "clear"])))
    yield* Console.log(`${cache.dir}: removed ${removed.size} cached buildroot${removed.size === 1 ? "" : "s"}`)
    if (kept.length > 0) {
      return yield* new AdminError({ message: `cache clear: ${kept.join(", ")} came into use meanwhile and ${kept.length === 1 ? "was" : "were"} kept` })
    }
  }))
).pipe(Command.withDescription("remove every cached buildroot (refused while a task uses one)"))

/** The `cache` subcommand. */
export const cacheCommand = Command.make("cache").pipe(
  Command.withDescription("list, prune or clear the buildroot cache"),
  Command.withSubcommands([listCommand, pruneCommand, clearCommand])
)
