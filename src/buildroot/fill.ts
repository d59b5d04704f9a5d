/**
 * A buildroot's root from the cache, or filled cold (kojid's `mock --init`): taken from the
 * registry's buildroot image when there is a good one (buildrootImages.ts), else installed by dnf
 * into a fresh root. What a cold fill notices about other repos prunes the cache and the registry.
 */
import { Effect } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import type { Containers } from "../containers/Containers.js"
import { hostId, type IdMap } from "../containers/idmap.js"
import { RepoState } from "../koji/states.js"
import type { BuildrootImages } from "./buildrootImages.js"
import type { BuildrootCache } from "./cache.js"
import { type Dnf, listRoot, runDnf } from "./dnf.js"
import { BuildrootSetupError, logTail } from "./errors.js"
import type { BuildrootHub } from "./hubSide.js"
import { type BuildrootLog, type Layout, ownedFile } from "./layout.js"
import { readTail } from "./results.js"
import type { RootIdentity } from "./rootImage.js"

/** What a fill or a reuse of the cached root needs. */
export interface FillContext {
  readonly cache: BuildrootCache
  readonly images: BuildrootImages | undefined
  readonly containers: Containers["Type"]
  readonly dnf: Dnf
  readonly log: BuildrootLog
  readonly layout: Layout
  /** The cache key (with the host's id map). */
  readonly key: string
  /** What the root is, for the registry (its key without the id map). */
  readonly identity: RootIdentity
  readonly macrosText: string
  readonly idmap: IdMap | null
}

/**
 * The cached root for the key, or a cold one: from the registry's buildroot image when there is a
 * good one, else a dnf fill. A root filled here is pushed after the task.
 */
export const fillOrReuse = (c: FillContext, meta: Parameters<BuildrootCache["acquire"]>[1]) =>
  Effect.gen(function* () {
    const entry = yield* c.cache.acquire(c.key, meta, (staging) => fillStaging(c, staging))
    if (c.images !== undefined && entry.meta.source === "fill" && entry.meta.notes?.["pushed"] === undefined) {
      yield* c.images.pushLater(entry, c.identity, c.idmap)
    }
    return entry
  })

const fillStaging = (c: FillContext, staging: string) =>
  Effect.gen(function* () {
    const pulled = c.images === undefined ? undefined : yield* pullInto(c, c.images, staging)
    if (pulled !== undefined) return { source: "registry", notes: { imageKey: c.identity.key, image: pulled.reference, pulled: pulled.digest } }
    yield* dnfFill(c, staging)
    return { source: "fill", notes: { imageKey: c.identity.key } }
  })

/** The root from the registry into `staging`, logged in root.log and state.log; undefined when it must be filled. */
const pullInto = (c: FillContext, images: BuildrootImages, staging: string) =>
  Effect.gen(function* () {
    const ref = images.reference(c.identity.key)
    const owner = { uid: hostId(c.idmap, 0), gid: hostId(c.idmap, 0) }
    const listing = path.join(staging, "installed.tsv")
    yield* Effect.tryPromise({
      try: () => ownedFile(listing, owner),
      catch: (e) => new BuildrootSetupError({ message: `cannot prepare the fill in ${staging}: ${String(e)}` })
    })
    yield* c.log.state(`Start: buildroot image ${ref}`)
    const outcome = yield* images.pull(c.identity, staging, c.idmap, (root, file) => listRoot(c.containers, c.dnf, root, file))
    if (outcome._tag === "Pulled") {
      yield* c.log.rootNote(
        `taking the buildroot from the registry: ${ref}@${outcome.digest}, ${outcome.layerBytes} bytes in ${outcome.seconds.toFixed(1)} s; ` +
          `manifest and layer digests, labels (key, repo, tag, arch, group) and the rpmdb (${outcome.packages} packages, as the image's label lists) checked; dnf not run`
      )
      yield* c.log.state(`Finish: buildroot image ${ref}@${outcome.digest} (pulled, verified)`)
      yield* Effect.logInfo(`buildroot ${c.identity.tagName}/${c.identity.brArch} @${c.identity.installGroup} taken from ${ref}@${outcome.digest}`)
      return outcome
    }
    const why = outcome._tag === "Missing" ? "not in the registry" : `refused: ${outcome.why}`
    yield* c.log.rootNote(`buildroot image ${ref} ${why}; filling with dnf`)
    yield* c.log.state(`Finish: buildroot image ${ref} (${outcome._tag === "Missing" ? "not in the registry" : "refused"})`)
    if (outcome._tag === "Refused") yield* Effect.logWarning(`buildroot image ${ref} ${why}; filling with dnf`)
    return undefined
  })

/**
 * A cold fill: `dnf install @group` into a fresh root owned by the namespace's root, finished
 * inside the same container (macros file, mount points, no dnf cache): the daemon never writes
 * into a root whose links a package could have planted.
 */
const dnfFill = (c: FillContext, staging: string) =>
  Effect.gen(function* () {
    const root = path.join(staging, "root")
    const listing = path.join(staging, "installed.tsv")
    const macros = path.join(c.layout.meta, "macros.koji")
    const owner = { uid: hostId(c.idmap, 0), gid: hostId(c.idmap, 0) }
    const group = c.identity.installGroup
    yield* Effect.tryPromise({
      try: async () => {
        await fsp.mkdir(root, { recursive: true, mode: 0o755 })
        await fsp.chown(root, owner.uid, owner.gid)
        await ownedFile(listing, owner)
        await fsp.writeFile(macros, c.macrosText, { mode: 0o644 })
      },
      catch: (e) => new BuildrootSetupError({ message: `cannot prepare the fill in ${staging}: ${String(e)}` })
    })
    yield* c.log.state(`Start: installing minimal buildroot with dnf (install @${group})`)
    const rc = yield* runDnf(c.containers, c.dnf, root, listing, ["install", `@${group}`], [
      { type: "bind", source: macros, destination: "/koji/macros.koji" }
    ], true)
    if (rc !== 0) {
      yield* c.log.error(`Command failed: dnf install @${group} (exit ${rc}); see root.log`)
      const tail = logTail(yield* readTail(c.layout.logFile("root.log")))
      return yield* new BuildrootSetupError({
        message: `could not init buildroot, dnf exited with status ${rc}; see root.log for more information\n${tail}`,
        logTail: tail
      })
    }
    yield* c.log.state("Finish: installing minimal buildroot with dnf")
  })

/**
 * Roots of repos the hub no longer keeps READY leave the cache (checked on cold fills only); the
 * images of repos the hub deleted (or marked PROBLEM) leave the registry too, in the background.
 */
export const pruneStale = (
  cache: BuildrootCache, images: BuildrootImages | undefined, hub: BuildrootHub, current: number,
  background: (work: Effect.Effect<void>) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const gone = new Set<number>()
    const removed = yield* cache.prune((meta) =>
      meta.repoId === current || meta.repoId < 0
        ? Effect.succeed(meta.repoId < 0)
        : Effect.map(hub.repoState(meta.repoId), (s) => {
          if (s === null || s === RepoState.DELETED || s === RepoState.PROBLEM) gone.add(meta.repoId)
          return s === null || s === RepoState.DELETED || s === RepoState.PROBLEM || s === RepoState.EXPIRED
        }))
    const keys = removed.filter((e) => gone.has(e.meta.repoId)).map((e) => e.meta.notes?.["imageKey"]).filter((k): k is string => k !== undefined)
    if (images !== undefined && keys.length > 0) yield* background(Effect.forEach(keys, images.remove, { discard: true }))
  })
