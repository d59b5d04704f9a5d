/**
 * The cache of populated buildroots (DESIGN §5): one directory per key (repo id, arch, group,
 * bootstrap image, dnf.conf + macros, id map) holding `root/`, the rpmdb listing and `meta.json`.
 * A repo id names an immutable package set, so a filled root serves every later task of that repo
 * read-only. Bounded to `max` entries and `maxBytes` bytes by least recent use — over them only
 * while the entries are in use: a fill evicts, and so does the end of a use; entries of repos
 * the hub no longer keeps READY are removed.
 *
 * Several daemons on one machine may share the directory (each its own workdir): everything that
 * decides about an entry is on disk, under file locks (flock.ts) in `.locks/`:
 * - `<key>`: every task using the entry holds it shared for as long as its overlay is mounted — the
 *   kernel's use count; eviction and pruning take it exclusively without waiting, so an entry in
 *   use anywhere is never removed.
 * - `<key>.fill`: one fill per key at a time, whichever process asks.
 * An entry only appears whole: it is filled in `.fill-<key>-<rand>/`, `meta.json` written last,
 * then renamed into place; a removed entry is first renamed to `.trash-…`. So a half-written entry
 * is never used; what a crash leaves (staging dirs whose fill lock is free, trash, entries without
 * meta, entries of an earlier boot whose data was never flushed) is removed by `recover`.
 */
import { Effect, type Scope } from "effect"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { BuildrootSetupError } from "./errors.js"
import { lockFile, lockScoped } from "./flock.js"

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
  /** Bytes the root takes on disk (measured after the fill; 0 until then). */
  readonly bytes?: number
  /** `fill` (dnf here) or `registry` (a buildroot image pulled from `buildroot_registry`). */
  readonly source?: string
  /** The kernel's boot id at the fill; with `synced` false, an entry of another boot may have lost data. */
  readonly bootId?: string
  /** The entry's data was flushed to disk (syncfs) after the fill. */
  readonly synced?: boolean
  /** What other parts record about the entry (the registry's image reference and digest). */
  readonly notes?: Readonly<Record<string, string>>
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
  readonly meta: CacheMeta
}

/** What a fill reports beyond the root it leaves. */
export interface FillResult {
  readonly source?: string
  readonly notes?: Readonly<Record<string, string>>
}

/** One entry as listed, oldest use first. */
export interface ListedEntry {
  readonly key: string
  readonly meta: CacheMeta
  /** Last use (ms since the epoch): meta.json's mtime, touched by every use. */
  readonly used: number
  /** False for an entry without readable meta (a leftover, never used). */
  readonly complete: boolean
}

/** Limits and hooks of a cache. */
export interface CacheOptions {
  /** Entries at most (0 = no caching: every use fills a root of its own). */
  readonly max: number
  /** Bytes at most (0 = no bound). */
  readonly maxBytes?: number
  /**
   * Runs work that must not delay the task that caused it (measuring a new entry, eviction and the
   * removal of evicted roots): the daemon forks it in its own scope; by default it runs in line.
   */
  readonly background?: (work: Effect.Effect<void>) => Effect.Effect<void>
  /**
   * Flush a new entry's data to disk (syncfs) after the fill, so that it survives a power loss;
   * without it, entries of an earlier boot are dropped at start-up.
   */
  readonly flush?: boolean
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))
const fsError = (what: string) => (e: unknown) => new BuildrootSetupError({ message: `buildroot cache: ${what}: ${message(e)}` })

const KEY = /^[A-Za-z0-9_]{1,128}$/

const bootId = (): string => {
  try {
    return fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
  } catch {
    return ""
  }
}

const run = (cmd: string, args: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) =>
    execFile(cmd, [...args], { timeout: 600_000 }, (err, _o, stderr) => (err ? reject(new Error(`${cmd}: ${stderr.trim() || err.message}`)) : resolve())))

/** Bytes a tree takes: allocated blocks, each inode once. */
export const treeBytes = async (top: string): Promise<number> => {
  const seen = new Set<string>()
  let total = 0
  const walk = async (d: string): Promise<void> => {
    const names = await fsp.readdir(d).catch(() => [] as Array<string>)
    for (const n of names) {
      const p = path.join(d, n)
      const st = await fsp.lstat(p).catch(() => undefined)
      if (st === undefined) continue
      const id = `${st.dev}:${st.ino}`
      if (!seen.has(id)) {
        seen.add(id)
        total += st.blocks * 512
      }
      if (st.isDirectory()) await walk(p)
    }
  }
  await walk(top)
  return total
}

const incompleteMeta = (key: string): CacheMeta => ({ key, repoId: -1, tagName: "", brArch: "", installGroup: "", image: "", imageId: "", created: 0 })

/** A cache's settings: its directory, its bounds and its hooks. */
interface Cache {
  readonly dir: string
  readonly max: number
  readonly maxBytes: number
  readonly background: (work: Effect.Effect<void>) => Effect.Effect<void>
  readonly flush: boolean
  /** `.locks/` under dir. */
  readonly locks: string
  /** The kernel's boot id now. */
  readonly thisBoot: string
}

type Fill<E> = (staging: string) => Effect.Effect<FillResult | void, E>

const useLock = (c: Cache, key: string) => path.join(c.locks, key)
const fillLock = (c: Cache, key: string) => path.join(c.locks, `${key}.fill`)
const metaLock = (c: Cache, key: string) => path.join(c.locks, `${key}.meta`)
const entryDir = (c: Cache, key: string) => path.join(c.dir, key)
const unique = () => `${process.pid}-${randomBytes(4).toString("hex")}`
const readdir = (d: string) => Effect.promise(() => fsp.readdir(d).catch(() => [] as Array<string>))

const ensureDirs = (c: Cache) =>
  Effect.tryPromise({
    try: () => fsp.mkdir(c.locks, { recursive: true, mode: 0o700 }),
    catch: fsError(`creating ${c.dir}`)
  })

const readMeta = (c: Cache, key: string): Promise<CacheMeta | undefined> =>
  fsp.readFile(path.join(entryDir(c, key), "meta.json"), "utf8").then((t) => JSON.parse(t) as CacheMeta, () => undefined)

/** The complete entry `key`, its use recorded; undefined when there is none. */
const readEntry = (c: Cache, key: string, warm: boolean) =>
  Effect.promise(async (): Promise<CacheEntry | undefined> => {
    const d = entryDir(c, key)
    try {
      const [meta, installed, root] = await Promise.all([readMeta(c, key), fsp.readFile(path.join(d, "installed.tsv"), "utf8"), fsp.lstat(path.join(d, "root"))])
      if (meta === undefined || meta.key !== key || !root.isDirectory()) return undefined
      const now = new Date()
      await fsp.utimes(path.join(d, "meta.json"), now, now)
      return { key, dir: d, root: path.join(d, "root"), installed, warm, meta }
    } catch {
      return undefined
    }
  })

/** Removes a directory tree (bounded; failures logged: a leftover is only disk space). */
const removeDir = (d: string) =>
  Effect.promise(() => fsp.rm(d, { recursive: true, force: true })).pipe(
    Effect.timeout("300 seconds"),
    Effect.catchAllCause((cause) => Effect.logWarning(`buildroot cache: could not remove ${d}`, cause))
  )

/** Moves `name` out of the way (atomic), to be removed by `emptyTrash`. */
const toTrash = (c: Cache, name: string) =>
  Effect.promise(() => fsp.rename(path.join(c.dir, name), path.join(c.dir, `.trash-${name.replace(/^\./, "")}-${unique()}`)).then(() => true, () => false))

/** Removes the lock files of keys that have no entry and that no process holds. */
const sweepLocks = (c: Cache) =>
  Effect.gen(function*() {
    for (const n of yield* readdir(c.locks)) {
      const key = /^([A-Za-z0-9_]+)(?:\.[a-z]+)?$/.exec(n)?.[1]
      if (key === undefined || fs.existsSync(entryDir(c, key))) continue
      yield* Effect.scoped(Effect.flatMap(lockFile(path.join(c.locks, n), "exclusive", false), (held) => (held === undefined ? Effect.void : held.unlinkAndRelease))).pipe(
        // A lock file left over costs nothing; the next sweep tries again.
        Effect.catchAll((e) => Effect.logDebug(e.message))
      )
    }
  })

const emptyTrash = (c: Cache) =>
  Effect.gen(function*() {
    for (const n of yield* readdir(c.dir)) if (n.startsWith(".trash-")) yield* removeDir(path.join(c.dir, n))
    yield* sweepLocks(c)
  })

/** Every entry with its meta and last use, oldest first (incomplete ones count as oldest). */
const list = (c: Cache) =>
  Effect.promise(async () => {
    const names = await fsp.readdir(c.dir).catch(() => [] as Array<string>)
    const out: Array<ListedEntry> = []
    for (const n of names) {
      if (n.startsWith(".") || !KEY.test(n)) continue
      const metaFile = path.join(c.dir, n, "meta.json")
      const [meta, st] = await Promise.all([readMeta(c, n), fsp.stat(metaFile).catch(() => undefined)])
      if (meta !== undefined && st !== undefined) out.push({ key: n, meta, used: st.mtimeMs, complete: true })
      else out.push({ key: n, meta: incompleteMeta(n), used: 0, complete: false })
    }
    return out.sort((a, b) => a.used - b.used)
  })

/**
 * Removes entry `key` if no one uses it (an exclusive try of its use lock); true when removed.
 * The root itself is deleted later (`emptyTrash`), outside every lock.
 */
const removeIfUnused = (c: Cache, key: string, why: string) =>
  Effect.scoped(Effect.gen(function*() {
    const held = yield* lockFile(useLock(c, key), "exclusive", false)
    if (held === undefined) return false
    const moved = yield* toTrash(c, key)
    if (moved) yield* Effect.logInfo(`buildroot cache: removing ${key}: ${why}`)
    yield* held.unlinkAndRelease
    return moved
  }))

/** Whether any process uses `key` now. */
const busy = (c: Cache, key: string) =>
  Effect.scoped(Effect.map(lockFile(useLock(c, key), "exclusive", false), (held) => held === undefined))

/** Read-modify-write of an entry's meta.json, one writer at a time. */
const updateMeta = (c: Cache, key: string, patch: (meta: CacheMeta) => CacheMeta) =>
  Effect.scoped(Effect.gen(function*() {
    yield* lockScoped(metaLock(c, key), "exclusive")
    yield* Effect.tryPromise({
      try: async () => {
        const meta = await readMeta(c, key)
        if (meta === undefined) return
        const tmp = path.join(entryDir(c, key), `.meta.json.${unique()}`)
        await fsp.writeFile(tmp, JSON.stringify(patch(meta), null, 1))
        await fsp.rename(tmp, path.join(entryDir(c, key), "meta.json"))
      },
      catch: fsError(`updating the meta of ${key}`)
    })
  }))

/** Whether `count` entries of `bytes` bytes exceed the cache's bounds. */
const overBounds = (c: Cache, count: number, bytes: number) => count > c.max || (c.maxBytes > 0 && bytes > c.maxBytes)

const bytesOf = (entries: ReadonlyArray<ListedEntry>) => entries.reduce((acc, e) => acc + (e.meta.bytes ?? 0), 0)

/** Drops least recently used entries of `entries` (as listed) beyond the bounds that no process uses. */
const evictListed = (c: Cache, entries: ReadonlyArray<ListedEntry>) =>
  Effect.gen(function*() {
    let count = entries.length
    let bytes = bytesOf(entries)
    for (const e of entries) {
      if (!overBounds(c, count, bytes)) break
      const why = e.complete
        ? `evicted (repo ${e.meta.repoId} ${e.meta.tagName}/${e.meta.brArch}, ${count} entries, ${bytes} bytes)`
        : "incomplete entry"
      if (yield* removeIfUnused(c, e.key, why)) {
        count--
        bytes -= e.meta.bytes ?? 0
      }
    }
    yield* emptyTrash(c)
  })

/** Drops least recently used entries beyond `max` entries or `maxBytes` bytes that no process uses. */
const evict = (c: Cache) => Effect.flatMap(list(c), (entries) => evictListed(c, entries))

/**
 * Entry `key` in use for the life of the scope: its use lock held shared. When the use ends and
 * the cache is over its bounds, eviction runs (off the task's path): a fill's own eviction skips
 * entries in use, here or in another process, so without this a cache could stay over its bounds
 * once every user has gone. Within the bounds, nothing more is done (no trash or lock sweep).
 */
const useScoped = (c: Cache, key: string) =>
  Effect.gen(function*() {
    // Added first, so it runs after the lock below is released (finalizers run in reverse).
    yield* Effect.addFinalizer(() =>
      c.background(Effect.flatMap(list(c), (entries) => (overBounds(c, entries.length, bytesOf(entries)) ? evictListed(c, entries) : Effect.void)).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("buildroot cache: eviction after a use", cause))
      )))
    yield* lockScoped(useLock(c, key), "shared")
  })

/** After a fill, off the task's path: the entry's size, its data flushed to disk, then eviction. */
const settle = (c: Cache, key: string) =>
  Effect.gen(function*() {
    const bytes = yield* Effect.promise(() => treeBytes(path.join(entryDir(c, key), "root")))
    const synced = c.flush && (yield* Effect.promise(() => run("sync", ["-f", entryDir(c, key)]).then(() => true, () => false)))
    yield* updateMeta(c, key, (m) => ({ ...m, bytes, synced }))
    yield* evict(c)
  }).pipe(Effect.catchAllCause((cause) => Effect.logWarning(`buildroot cache: after filling ${key}`, cause)))

/** Fills `key` into a staging directory and renames it into place (the caller holds its fill lock). */
const fillEntry = <E>(c: Cache, key: string, meta: Omit<CacheMeta, "key" | "created">, fill: Fill<E>) =>
  Effect.gen(function*() {
    const staging = path.join(c.dir, `.fill-${key}-${unique()}`)
    yield* Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => fsp.mkdir(staging, { recursive: true }), catch: fsError("staging") }),
      () =>
        Effect.gen(function*() {
          const result = (yield* fill(staging)) ?? {}
          const full: CacheMeta = {
            ...meta, key, created: Date.now() / 1000, bytes: 0, source: result.source ?? "fill", bootId: c.thisBoot, synced: false,
            ...(result.notes === undefined ? {} : { notes: result.notes })
          }
          yield* Effect.tryPromise({
            try: () => fsp.writeFile(path.join(staging, "meta.json"), JSON.stringify(full, null, 1)),
            catch: fsError(`storing ${key}`)
          })
          // A leftover without meta (never used) goes first; the rename is the commit.
          yield* toTrash(c, key)
          yield* Effect.tryPromise({ try: () => fsp.rename(staging, entryDir(c, key)), catch: fsError(`storing ${key}`) })
        }),
      () => removeDir(staging)
    )
  })

/** A one-off root (the cache is off), removed with the scope; its lock tells `recover` it is in use. */
const oneOff = <E>(c: Cache, key: string, fill: Fill<E>) =>
  Effect.gen(function*() {
    const id = unique()
    const staging = path.join(c.dir, `.once-${id}`)
    const held = yield* lockScoped(path.join(c.locks, `.once-${id}`), "exclusive")
    yield* Effect.addFinalizer(() => held.unlinkAndRelease)
    yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fsp.mkdir(staging, { recursive: true }), catch: fsError("staging") }),
      () => removeDir(staging)
    )
    yield* fill(staging)
    const installed = yield* Effect.tryPromise({ try: () => fsp.readFile(path.join(staging, "installed.tsv"), "utf8"), catch: fsError("listing") })
    return { key, dir: staging, root: path.join(staging, "root"), installed, warm: false, meta: { ...incompleteMeta(key), created: Date.now() / 1000 } }
  })

/**
 * A root for `key`, filled by `fill(stagingDir)` when missing (it must leave `root/` and
 * `installed.tsv` there). The entry is in use (its use lock held shared) until the scope closes.
 */
const acquire = <E>(c: Cache, key: string, meta: Omit<CacheMeta, "key" | "created">, fill: Fill<E>): Effect.Effect<CacheEntry, E | BuildrootSetupError, Scope.Scope> =>
  Effect.gen(function*() {
    if (!KEY.test(key)) return yield* new BuildrootSetupError({ message: `buildroot cache: invalid key ${JSON.stringify(key)}` })
    yield* ensureDirs(c)
    if (c.max <= 0) return yield* oneOff(c, key, fill)
    yield* useScoped(c, key)
    const cached = yield* readEntry(c, key, true)
    if (cached !== undefined) return cached
    const filled = yield* Effect.scoped(Effect.gen(function*() {
      const held = yield* lockScoped(fillLock(c, key), "exclusive")
      // Filled by another task (here or in another daemon) while this one waited for the lock.
      const other = yield* readEntry(c, key, true)
      if (other !== undefined) return other
      yield* fillEntry(c, key, meta, fill)
      yield* held.unlinkAndRelease
      return undefined
    }))
    if (filled !== undefined) return filled
    const made = yield* readEntry(c, key, false)
    if (made === undefined) return yield* new BuildrootSetupError({ message: `buildroot cache: entry ${key} vanished after the fill` })
    yield* c.background(settle(c, key))
    return made
  })

/** Removes unused entries for which `stale(meta)` says the repo is gone or no longer READY. */
const prune = <E>(c: Cache, stale: (meta: CacheMeta) => Effect.Effect<boolean, E>) =>
  Effect.gen(function*() {
    const removed: Array<ListedEntry> = []
    for (const e of yield* list(c)) {
      const gone = yield* stale(e.meta).pipe(Effect.catchAll((err) => Effect.as(Effect.logDebug("repo check failed", err), false)))
      if (gone && (yield* removeIfUnused(c, e.key, `repo ${e.meta.repoId} is no longer current`))) removed.push(e)
    }
    yield* c.background(emptyTrash(c))
    return removed
  })

/**
 * Entry `key` in use for the life of the scope (its use lock held shared), for work beside the
 * tasks (a push); undefined when there is no such entry.
 */
const hold = (c: Cache, key: string) =>
  Effect.gen(function*() {
    if (!KEY.test(key) || c.max <= 0) return undefined
    yield* useScoped(c, key)
    return yield* readEntry(c, key, true)
  })

/** Takes the exclusive lock `<key>.<purpose>` for the scope if no one holds it; false when someone does. */
const claim = (c: Cache, key: string, purpose: string) =>
  Effect.map(lockFile(path.join(c.locks, `${key}.${purpose}`), "exclusive", false), (held) => held !== undefined)

/** Staging directories no process is filling and one-off roots no process holds, moved to the trash. */
const recoverStaging = (c: Cache) =>
  Effect.gen(function*() {
    const removed: Array<string> = []
    for (const n of yield* readdir(c.dir)) {
      const fill = /^\.fill-([A-Za-z0-9_]+)-\d+-[0-9a-f]+$/.exec(n)
      const once = /^\.once-(\d+-[0-9a-f]+)$/.exec(n)
      const lock = fill !== null ? fillLock(c, fill[1]!) : once !== null ? path.join(c.locks, `.once-${once[1]}`) : undefined
      if (lock === undefined) continue
      const free = yield* Effect.scoped(Effect.map(lockFile(lock, "exclusive", false), (held) => held !== undefined))
      if (free && (yield* toTrash(c, n))) removed.push(n)
    }
    return removed
  })

/**
 * What crashed processes left: staging directories no process is filling, roots of the cache-off
 * mode no process holds, trash, entries without meta, and entries of an earlier boot whose data
 * was never flushed (their files may be empty after a power loss). Run at start-up; safe while
 * other daemons use the directory.
 */
const recover = (c: Cache) =>
  Effect.gen(function*() {
    yield* ensureDirs(c)
    const removed = yield* recoverStaging(c)
    for (const e of yield* list(c)) {
      const unflushed = e.complete && e.meta.synced !== true && e.meta.bootId !== undefined && e.meta.bootId !== c.thisBoot
      if (!e.complete || unflushed) {
        if (yield* removeIfUnused(c, e.key, e.complete ? "filled before a restart of the machine and never flushed to disk" : "incomplete entry")) removed.push(e.key)
      }
    }
    const trash = (yield* readdir(c.dir)).filter((n) => n.startsWith(".trash-"))
    yield* emptyTrash(c)
    if (removed.length > 0) yield* Effect.logInfo(`buildroot cache: removed what an earlier process left half-written: ${removed.join(", ")}`)
    return { removed, trash: trash.length }
  })

/** The buildroot cache under `dir` (see the module comment). */
export const makeCache = (dir: string, max: number, options: Omit<CacheOptions, "max"> = {}) => {
  const c: Cache = {
    dir, max, maxBytes: options.maxBytes ?? 0, background: options.background ?? ((work) => work), flush: options.flush === true,
    locks: path.join(dir, ".locks"), thisBoot: bootId()
  }
  return {
    dir,
    acquire: <E>(key: string, meta: Omit<CacheMeta, "key" | "created">, fill: Fill<E>) => acquire(c, key, meta, fill),
    prune: <E>(stale: (meta: CacheMeta) => Effect.Effect<boolean, E>) => prune(c, stale),
    list: list(c),
    evict: evict(c),
    busy: (key: string) => busy(c, key),
    removeIfUnused: (key: string, why: string) => removeIfUnused(c, key, why),
    /** Deletes the roots removed entries left in the trash (outside every lock) and unused lock files. */
    emptyTrash: emptyTrash(c),
    /** Records `notes` (merged) in the meta of entry `key`. */
    annotate: (key: string, notes: Readonly<Record<string, string>>) => updateMeta(c, key, (m) => ({ ...m, notes: { ...m.notes, ...notes } })),
    recover: recover(c),
    hold: (key: string) => hold(c, key),
    claim: (key: string, purpose: string) => claim(c, key, purpose),
    limits: { max, maxBytes: c.maxBytes }
  }
}

/** The cache object. */
export type BuildrootCache = ReturnType<typeof makeCache>
