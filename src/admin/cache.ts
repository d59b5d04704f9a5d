/**
 * `koji-adjutant cache list|prune|clear`: the buildroot cache of kojid.conf's
 * `[adjutant] buildroot_cache_dir`, through the cache's own functions (src/buildroot/cache.ts:
 * `list`, and `prune` for every removal).
 *
 * Safe beside a running daemon: an entry a task uses is overlay-mounted as that task's root
 * (src/buildroot/overlay.ts), so the mount table says which entries are held, whichever process
 * holds them; `prune` never removes those and `clear` refuses while there are any. A task that
 * picks an entry in the moment between that look and the removal can still lose it (it then
 * fails and the hub gives it to a builder again); on-disk use counts in the cache itself close
 * that window.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Either, Logger, LogLevel } from "effect"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { type CacheMeta, makeCache } from "../buildroot/cache.js"
import type { Config } from "../config/AdjutantConfig.js"
import { hostApi } from "../hub/HostApi.js"
import { hubOptionsFromConfig, KojiHub } from "../hub/KojiHub.js"
import { RepoState } from "../koji/states.js"
import { AdminError, ago, configOption, loadAdminConfig, printTable, reported } from "./common.js"

/** mountinfo's octal escapes (`\040` for a space) undone. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))

/** The cache keys some overlay mount in `mountinfo` has as its lower directory. */
export const heldKeys = (cacheDir: string, mountinfo: string): ReadonlySet<string> => {
  const base = path.resolve(cacheDir) + "/"
  const held = new Set<string>()
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ")
    if (sep < 0) continue
    const [fstype, , superOptions = ""] = line.slice(sep + 3).split(" ")
    if (fstype !== "overlay") continue
    const lower = superOptions.split(",").find((o) => o.startsWith("lowerdir="))
    if (lower === undefined) continue
    for (const dir of unescape(lower.slice("lowerdir=".length)).split(":")) {
      if (dir.startsWith(base)) held.add(dir.slice(base.length).split("/")[0] ?? "")
    }
  }
  held.delete("")
  return held
}

/** The entries held now, read from this process's mount table (the daemon's, on the same host). */
const heldNow = (cacheDir: string): ReadonlySet<string> => {
  try {
    return heldKeys(cacheDir, readFileSync("/proc/self/mountinfo", "utf8"))
  } catch {
    return new Set()
  }
}

type Listed = Effect.Effect.Success<ReturnType<typeof makeCache>["list"]>[number]

/** Which entries `prune` removes: unheld ones beyond `max` (oldest first), and unheld ones the hub says are stale. */
export const pruneSelection = (
  entries: ReadonlyArray<Listed>,
  held: ReadonlySet<string>,
  max: number,
  stale: ReadonlySet<string>
): ReadonlyMap<string, string> => {
  const out = new Map<string, string>()
  let excess = entries.length - max
  for (const e of entries) {
    if (held.has(e.key)) continue
    if (e.meta.repoId < 0) out.set(e.key, "unreadable entry (left by a crash)")
    else if (stale.has(e.key)) out.set(e.key, `repo ${e.meta.repoId} is no longer READY on the hub`)
    else if (excess > 0) out.set(e.key, `beyond buildroot_cache_max = ${max}, least recently used`)
    else continue
    excess--
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

/** Removes exactly `keys` through the cache's own prune (quietly: this command reports them). */
const removeEntries = (config: Config, keys: ReadonlyMap<string, string>) =>
  makeCache(config.adjutant.buildroot_cache_dir, config.adjutant.buildroot_cache_max)
    .prune((meta: CacheMeta) => Effect.succeed(keys.has(meta.key)))
    .pipe(Logger.withMinimumLogLevel(LogLevel.Warning), Effect.mapError((e) => new AdminError({ message: e.message })))

const listCommand = Command.make("list", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const dir = config.adjutant.buildroot_cache_dir
    const cache = makeCache(dir, config.adjutant.buildroot_cache_max)
    const entries = yield* cache.list
    const held = heldNow(dir)
    const now = Date.now()
    yield* Console.log(`${dir}: ${entries.length} of at most ${config.adjutant.buildroot_cache_max} entries, ${held.size} in use`)
    if (entries.length === 0) return
    yield* printTable(
      ["KEY", "REPO", "TAG", "ARCH", "GROUP", "IMAGE", "CREATED", "USED", "IN USE"],
      [...entries].reverse().map((e) => [
        e.key.slice(0, 16), String(e.meta.repoId), e.meta.tagName, e.meta.brArch, e.meta.installGroup, e.meta.image,
        e.meta.created > 0 ? `${ago(now - e.meta.created * 1000)} ago` : "-", e.used > 0 ? `${ago(now - e.used)} ago` : "-",
        held.has(e.key) ? "yes" : "-"
      ])
    )
  }))
).pipe(Command.withDescription("list the cached buildroots"))

const pruneCommand = Command.make("prune", { config: configOption, offline: Options.boolean("offline") }, ({ config: file, offline }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const dir = config.adjutant.buildroot_cache_dir
    const entries = yield* makeCache(dir, config.adjutant.buildroot_cache_max).list
    const held = heldNow(dir)
    let stale: ReadonlySet<string> = new Set()
    if (!offline && entries.length > 0) {
      const asked = yield* staleOnHub(config, entries.filter((e) => !held.has(e.key)))
      if (Either.isLeft(asked)) yield* Effect.logWarning(`cannot ask the hub which repos are current (${asked.left.message}); pruning by size only`)
      else stale = asked.right
    }
    const remove = pruneSelection(entries, held, config.adjutant.buildroot_cache_max, stale)
    yield* removeEntries(config, remove)
    for (const [key, why] of remove) yield* Console.log(`removed ${key}: ${why}`)
    yield* Console.log(`${dir}: ${entries.length - remove.size} entries left${held.size > 0 ? `, ${held.size} in use by running tasks (kept)` : ""}`)
  }))
).pipe(Command.withDescription("remove cached buildroots beyond buildroot_cache_max and those of repos no longer current"))

const clearCommand = Command.make("clear", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const dir = config.adjutant.buildroot_cache_dir
    const entries = yield* makeCache(dir, config.adjutant.buildroot_cache_max).list
    const held = heldNow(dir)
    if (held.size > 0) {
      return yield* new AdminError({
        message: `cache clear: ${held.size} cached buildroot${held.size === 1 ? " is" : "s are"} in use by running tasks (${[...held].slice(0, 3).join(", ")}); ` +
          "nothing removed. Wait for them, stop the daemon, or use cache prune (which keeps entries in use)"
      })
    }
    yield* removeEntries(config, new Map(entries.map((e) => [e.key, "clear"])))
    yield* Console.log(`${dir}: removed ${entries.length} cached buildroot${entries.length === 1 ? "" : "s"}`)
  }))
).pipe(Command.withDescription("remove every cached buildroot (refused while a task uses one)"))

/** The `cache` subcommand. */
export const cacheCommand = Command.make("cache").pipe(
  Command.withDescription("list, prune or clear the buildroot cache"),
  Command.withSubcommands([listCommand, pruneCommand, clearCommand])
)
