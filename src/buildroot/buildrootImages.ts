/**
 * The registry side of the buildroot cache (issue 15, README "A fleet of builders"): before a fill,
 * the root is looked for in `buildroot_registry` and, when its image is there and passes every
 * check, unpacked into the fill's staging directory instead of running dnf; after a task that
 * filled a root with dnf, the root is pushed in the background (never delaying a task; one push
 * at a time per daemon, one per key across the daemons sharing the cache). A failed pull or push
 * is logged and costs nothing but the fill it did not save. When the cache drops a root because
 * the hub deleted its repo, its image is deleted from the registry too (the host that notices
 * does it); blobs are freed by the registry's own garbage collection.
 */
import { Effect, type Scope } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import type { IdMap } from "../containers/idmap.js"
import type { BuildrootCache, CacheEntry } from "./cache.js"
import { makeRegistryClient, type RegistryClient } from "./ociRegistry.js"
import { pullRoot, pushRoot, type RootIdentity } from "./rootImage.js"

/** Where buildroot images live and how to reach the registry. */
export interface BuildrootRegistryOptions {
  /** `host[:port]/namespace` (`[adjutant] buildroot_registry`). */
  readonly namespace: string
  /** `[adjutant] registry_auth_file` ("" = anonymous). */
  readonly authFile: string
  /** The registry is in `insecure_registries`: no TLS verification, plain HTTP allowed. */
  readonly insecure: boolean
  /** CA certificates of registries (default /etc/containers/certs.d). */
  readonly certsDir?: string
}

/** What a pull attempt came to. */
export type PullOutcome =
  | { readonly _tag: "Pulled"; readonly reference: string; readonly digest: string; readonly layerBytes: number; readonly seconds: number; readonly packages: number }
  | { readonly _tag: "Missing"; readonly reference: string }
  | { readonly _tag: "Refused"; readonly reference: string; readonly why: string }

/** The registry of the buildroot cache. */
export interface BuildrootImages {
  /** `<registry>/<namespace>/buildroot:<key>`. */
  readonly reference: (key: string) => string
  /**
   * Pulls the image of `identity` into `staging/root` and lists its rpmdb into
   * `staging/installed.tsv` with `listRpmdb`, which must name the same packages as the image's
   * label. On any failure `staging` is left without a root.
   */
  readonly pull: <E extends { readonly message: string }>(
    identity: RootIdentity,
    staging: string,
    idmap: IdMap | null,
    listRpmdb: (root: string, listing: string) => Effect.Effect<number, E>
  ) => Effect.Effect<PullOutcome>
  /** Pushes entry `key` after the caller's scope, in the background, unless it is there already. */
  readonly pushLater: (entry: CacheEntry, identity: RootIdentity, idmap: IdMap | null) => Effect.Effect<void, never, Scope.Scope>
  /** Deletes the image of `key` (its repo is gone); logged, never failing. */
  readonly remove: (key: string) => Effect.Effect<void>
}

/** The rpmdb listing lines, sorted, for comparing two listings. */
const lines = (text: string): ReadonlyArray<string> => text.split("\n").filter((l) => l.trim() !== "").sort()

/** The registry side over `cache`; background work goes to `background`. */
export const makeBuildrootImages = (
  options: BuildrootRegistryOptions,
  cache: BuildrootCache,
  background: (work: Effect.Effect<void>) => Effect.Effect<void>
): Effect.Effect<BuildrootImages, never, Scope.Scope> =>
  Effect.gen(function*() {
    const slash = options.namespace.indexOf("/")
    const registry = options.namespace.slice(0, slash)
    const repository = `${options.namespace.slice(slash + 1)}/buildroot`
    const client: RegistryClient = yield* Effect.acquireRelease(
      Effect.sync(() => makeRegistryClient({ registry, authFile: options.authFile, insecure: options.insecure, ...(options.certsDir === undefined ? {} : { certsDir: options.certsDir }) })),
      (c) => c.close
    )
    const pushes = yield* Effect.makeSemaphore(1)
    const reference = (key: string) => `${registry}/${repository}:${key}`

    const pull: BuildrootImages["pull"] = (identity, staging, idmap, listRpmdb) => {
      const root = path.join(staging, "root")
      const ref = reference(identity.key)
      const discard = Effect.promise(() => fsp.rm(root, { recursive: true, force: true }))
      return Effect.gen(function*() {
        const t0 = Date.now()
        const got = yield* Effect.scoped(pullRoot(client, repository, identity, root, idmap))
        if (got === undefined) return { _tag: "Missing", reference: ref } as const
        const rc = yield* listRpmdb(root, path.join(staging, "installed.tsv"))
        if (rc !== 0) return { _tag: "Refused", reference: ref, why: `listing its rpmdb failed (exit ${rc})` } as const
        const listed = yield* Effect.promise(() => fsp.readFile(path.join(staging, "installed.tsv"), "utf8"))
        const [mine, theirs] = [lines(listed), lines(got.packages)]
        if (mine.length !== theirs.length || mine.some((l, i) => l !== theirs[i])) {
          return { _tag: "Refused", reference: ref, why: `its rpmdb lists ${mine.length} packages that differ from the ${theirs.length} its label records` } as const
        }
        return { _tag: "Pulled", reference: ref, digest: got.digest, layerBytes: got.layerBytes, seconds: (Date.now() - t0) / 1000, packages: mine.length } as const
      }).pipe(
        Effect.catchAll((e) => Effect.succeed({ _tag: "Refused", reference: ref, why: e.message } as const)),
        Effect.tap((o) => (o._tag === "Pulled" ? Effect.void : discard))
      )
    }

    const push = (entry: CacheEntry, identity: RootIdentity, idmap: IdMap | null) =>
      Effect.scoped(Effect.gen(function*() {
        const held = yield* cache.hold(entry.key)
        if (held === undefined || held.meta.notes?.["pushed"] !== undefined) return
        // One push of a key at a time among the daemons sharing the cache.
        if (!(yield* cache.claim(entry.key, "push"))) return
        const ref = reference(identity.key)
        const there = yield* client.getManifest(repository, identity.key)
        if (there !== undefined) {
          yield* cache.annotate(entry.key, { pushed: there.digest, image: ref })
          return
        }
        const t0 = Date.now()
        const done = yield* pushRoot(client, repository, held.root, idmap, identity, {
          packages: held.installed,
          bootstrapImage: `${held.meta.image} (${held.meta.imageId})`
        }, cache.dir)
        yield* cache.annotate(entry.key, { pushed: done.digest, image: ref })
        yield* Effect.logInfo(`pushed buildroot image ${ref}@${done.digest} (${done.bytes} bytes) in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      })).pipe(
        Effect.catchAll((e) => Effect.logWarning(`could not push the buildroot image ${reference(identity.key)}; builds are unaffected and the next task using the root tries again: ${e.message}`)),
        pushes.withPermits(1)
      )

    const pushLater: BuildrootImages["pushLater"] = (entry, identity, idmap) =>
      Effect.addFinalizer(() => background(push(entry, identity, idmap)))

    const remove: BuildrootImages["remove"] = (key) =>
      Effect.gen(function*() {
        const there = yield* client.getManifest(repository, key)
        if (there === undefined) return
        if (yield* client.deleteManifest(repository, there.digest)) yield* Effect.logInfo(`deleted buildroot image ${reference(key)}@${there.digest}: its repo is gone`)
      }).pipe(Effect.catchAll((e) => Effect.logWarning(`could not delete the buildroot image ${reference(key)}: ${e.message}`)))

    return { reference, pull, pushLater, remove }
  })
