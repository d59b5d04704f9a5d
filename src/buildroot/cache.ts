/**
 * The cache of populated buildroots (DESIGN §5): one directory per key (repo id, arch, group,
 * bootstrap image, dnf.conf + macros) holding `root/` and the rpmdb listing. A repo id names an
 * immutable package set, so a filled root can serve every later task of that repo read-only.
 * Filled once per key at a time (a semaphore per key), reference counted while tasks use it,
 * bounded to `max` entries by least recent use, and entries of repos the hub no longer keeps
 * READY are removed.
 */
import { Effect, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { BuildrootSetupError } from "./errors.js"

/** What is recorded beside a cached root. */
export interface CacheMeta {
  readonly key: string
  readonly repoId: number
  readonly tagName: string
  readonly brArch: string
  readonly installGroup: string
  readonly image: string
  readonly imageId: string
  readonly created: number
}

/** A usable root: cached (`cached: true`) or a one-off fill when the cache is off. */
export interface CacheEntry {
  readonly key: string
  readonly dir: string
  readonly root: string
  /** The rpmdb listing made right after the fill. */
  readonly installed: string
  /** False when this task filled it (cold), true when it was already there (warm). */
  readonly warm: boolean
}

const fsError = (what: string) => (e: unknown) =>
  new BuildrootSetupError({ message: `buildroot cache: ${what}: ${e instanceof Error ? e.message : String(e)}` })

const readEntry = (dir: string, key: string, warm: boolean) =>
  Effect.tryPromise({
    try: async (): Promise<CacheEntry | undefined> => {
      const d = path.join(dir, key)
      try {
        const installed = await fsp.readFile(path.join(d, "installed.tsv"), "utf8")
        await fsp.access(path.join(d, "meta.json"))
        const now = new Date()
        await fsp.utimes(path.join(d, "meta.json"), now, now)
        return { key, dir: d, root: path.join(d, "root"), installed, warm }
      } catch {
        return undefined
      }
    },
    catch: fsError(`reading ${key}`)
  })

const removeDir = (d: string) =>
  Effect.promise(() => fsp.rm(d, { recursive: true, force: true })).pipe(
    Effect.timeout("300 seconds"),
    Effect.catchAllCause((cause) => Effect.logWarning(`buildroot cache: could not remove ${d}`, cause))
  )

/** Every entry with its meta and last use, oldest first. */
const listEntries = (dir: string) => Effect.tryPromise({
  try: async () => {
    const names = await fsp.readdir(dir).catch(() => [] as Array<string>)
    const out: Array<{ readonly key: string; readonly meta: CacheMeta; readonly used: number }> = []
    for (const n of names) {
      if (n.startsWith(".")) continue
      try {
        const metaFile = path.join(dir, n, "meta.json")
        const [text, st] = await Promise.all([fsp.readFile(metaFile, "utf8"), fsp.stat(metaFile)])
        out.push({ key: n, meta: JSON.parse(text) as CacheMeta, used: st.mtimeMs })
      } catch {
        // An entry without readable meta is a leftover of a crash: it is never used, remove it.
        out.push({ key: n, meta: { key: n, repoId: -1, tagName: "", brArch: "", installGroup: "", image: "", imageId: "", created: 0 }, used: 0 })
      }
    }
    return out.sort((a, b) => a.used - b.used)
  },
  catch: fsError("listing")
})

/** The buildroot cache under `dir`, holding at most `max` entries (0 = no caching). */
export const makeCache = (dir: string, max: number) => {
  const inUse = new Map<string, number>()
  const fillLocks = new Map<string, Effect.Semaphore>()

  const lockFor = (key: string) =>
    Effect.gen(function* () {
      const found = fillLocks.get(key)
      if (found !== undefined) return found
      const sem = yield* Effect.makeSemaphore(1)
      fillLocks.set(key, sem)
      return sem
    })

  const list = listEntries(dir)

  /** Drops least recently used entries beyond `max` that no task uses. */
  const evict = Effect.gen(function* () {
    const entries = yield* list
    let excess = entries.length - max
    for (const e of entries) {
      if (excess <= 0) break
      if ((inUse.get(e.key) ?? 0) > 0) continue
      yield* Effect.logInfo(`buildroot cache: evicting ${e.key} (repo ${e.meta.repoId} ${e.meta.tagName}/${e.meta.brArch})`)
      yield* removeDir(path.join(dir, e.key))
      excess--
    }
  })

  /**
   * A root for `key`, filled by `fill(stagingDir)` when missing (it must leave `root/` and
   * `installed.tsv` there). The entry is marked in use until the scope closes.
   */
  const acquire = <E>(
    key: string,
    meta: Omit<CacheMeta, "key" | "created">,
    fill: (staging: string) => Effect.Effect<void, E>
  ): Effect.Effect<CacheEntry, E | BuildrootSetupError, Scope.Scope> =>
    Effect.gen(function* () {
      yield* Effect.tryPromise({ try: () => fsp.mkdir(dir, { recursive: true }), catch: fsError(`creating ${dir}`) })
      const staging = path.join(dir, `.fill-${key}-${randomBytes(4).toString("hex")}`)
      if (max <= 0) {
        // No caching: a one-off root, removed with the scope.
        yield* Effect.acquireRelease(
          Effect.tryPromise({ try: () => fsp.mkdir(staging, { recursive: true }), catch: fsError("staging") }),
          () => removeDir(staging)
        )
        yield* fill(staging)
        const installed = yield* Effect.tryPromise({ try: () => fsp.readFile(path.join(staging, "installed.tsv"), "utf8"), catch: fsError("listing") })
        return { key, dir: staging, root: path.join(staging, "root"), installed, warm: false }
      }
      const sem = yield* lockFor(key)
      const entry = yield* sem.withPermits(1)(
        Effect.gen(function* () {
          const cached = yield* readEntry(dir, key, true)
          if (cached !== undefined) return cached
          yield* Effect.acquireUseRelease(
            Effect.tryPromise({ try: () => fsp.mkdir(staging, { recursive: true }), catch: fsError("staging") }),
            () =>
              Effect.gen(function* () {
                yield* fill(staging)
                const full: CacheMeta = { ...meta, key, created: Date.now() / 1000 }
                yield* Effect.tryPromise({
                  try: async () => {
                    await fsp.writeFile(path.join(staging, "meta.json"), JSON.stringify(full, null, 1))
                    await fsp.rm(path.join(dir, key), { recursive: true, force: true })
                    await fsp.rename(staging, path.join(dir, key))
                  },
                  catch: fsError(`storing ${key}`)
                })
              }),
            () => removeDir(staging)
          )
          const made = yield* readEntry(dir, key, false)
          if (made === undefined) return yield* new BuildrootSetupError({ message: `buildroot cache: entry ${key} vanished after the fill` })
          return made
        })
      )
      yield* Effect.acquireRelease(
        Effect.sync(() => inUse.set(key, (inUse.get(key) ?? 0) + 1)),
        () => Effect.sync(() => inUse.set(key, (inUse.get(key) ?? 1) - 1))
      )
      if (!entry.warm) yield* evict
      return entry
    })

  /** Removes unused entries for which `stale(meta)` says the repo is gone or no longer READY. */
  const prune = <E>(stale: (meta: CacheMeta) => Effect.Effect<boolean, E>) =>
    Effect.gen(function* () {
      for (const e of yield* list) {
        if ((inUse.get(e.key) ?? 0) > 0) continue
        const gone = yield* stale(e.meta).pipe(Effect.catchAll((err) => Effect.as(Effect.logDebug("repo check failed", err), false)))
        if (gone) {
          yield* Effect.logInfo(`buildroot cache: removing ${e.key}: repo ${e.meta.repoId} is no longer current`)
          yield* removeDir(path.join(dir, e.key))
        }
      }
    })

  return { acquire, prune, list, evict, inUse: (key: string) => inUse.get(key) ?? 0 }
}

/** The cache object. */
export type BuildrootCache = ReturnType<typeof makeCache>
