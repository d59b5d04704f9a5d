/**
 * The build side of the fake hub, part 1: build targets, package lists, events and the per-hub
 * "build world" the other build files share (koji-protocol.md §7.1). Tags, repos, rpms, builds
 * and buildroots themselves are the tables of `buildroots.ts`; this file adds what the build
 * handlers need beside them. Everything is kept per hub, keyed by its topdir, so a test fills
 * it with the admin helpers below.
 */
import { GenericError } from "../../src/koji/faults.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { buildrootTables, type BuildrootTables, type TagRow } from "./buildroots.js"
import { type CallContext, pyRepr, toInt, truthy } from "./context.js"
import type { MethodDef } from "./methods.js"
import type { Signature } from "./signature.js"

/** A build target. */
export interface TargetRow {
  readonly id: number
  readonly name: string
  readonly buildTag: number
  readonly destTag: number
}

/** A package in a tag's package list. */
export interface PackageListRow {
  readonly tagId: number
  readonly packageId: number
  readonly name: string
  blocked: boolean
  extraArches: string | null
  readonly ownerId: number
}

/** What `build` adds to a build row of `buildroots.ts` (owner, task, source, times). */
export interface BuildMeta {
  readonly taskId: number | null
  readonly ownerId: number
  source: string | null
  extra: Record<string, XmlRpcValue> | null
  draft: boolean
  readonly startTs: number
  completionTs: number | null
  readonly creationEvent: number
}

/** One tagging (tag_listing row). */
export interface TagListingRow {
  readonly tagId: number
  readonly buildId: number
  readonly createEvent: number
  revokeEvent: number | null
}

/** A policy rule a test sets: an action string ("allow", "deny [reason]") or a function of the data. */
export type PolicyRule = string | ((data: Readonly<Record<string, XmlRpcValue>>) => string | null)

/** A repo request (repo_queue row). */
export interface RepoRequestRow {
  readonly id: number
  readonly ownerId: number | null
  priority: number
  readonly tagId: number
  readonly atEvent: number | null
  readonly minEvent: number | null
  readonly opts: Record<string, XmlRpcValue>
  active: boolean
  taskId: number | null
  taskState: number | null
  repoId: number | null
  tries: number
  readonly createTs: number
}

/** A tagNotification the hub was asked for (whether or not it made a task). */
export interface TagNotificationRecord {
  readonly isSuccessful: boolean
  readonly tagId: number | null
  readonly fromId: number | null
  readonly buildId: number
  readonly userId: number | null
  readonly ignoreSuccess: boolean
  readonly failureMsg: string
  /** The tagNotification task made, or null when there were no recipients / success was ignored. */
  readonly taskId: number | null
}

/** The build world of one fake hub. */
export interface BuildWorld {
  readonly tables: BuildrootTables
  readonly targets: Map<number, TargetRow>
  /** `${tagId}/${name}` → row */
  readonly packages: Map<string, PackageListRow>
  readonly packageIds: Map<string, number>
  readonly buildMeta: Map<number, BuildMeta>
  readonly tagListing: Array<TagListingRow>
  /** Event id → epoch seconds. */
  readonly eventTs: Map<number, number>
  readonly policies: Map<string, PolicyRule>
  /** Every policy check: name, data, result. */
  readonly policyLog: Array<{ readonly name: string; readonly data: Readonly<Record<string, XmlRpcValue>>; readonly allowed: boolean }>
  readonly requests: Map<number, RepoRequestRow>
  /** Tag id → the permission name tagging needs (tag `perm`). */
  readonly tagPerms: Map<number, string>
  /** User id → permission names. */
  readonly userPerms: Map<number, Set<string>>
  /** Tag id → mail recipients of tag notifications. */
  readonly notificationRecipients: Map<number, ReadonlyArray<string>>
  readonly tagNotifications: Array<TagNotificationRecord>
  /** Completed imports, for tests. */
  readonly imports: Array<{ readonly buildId: number; readonly srpm: string; readonly rpms: ReadonlyArray<string>; readonly brmap: Readonly<Record<string, XmlRpcValue>>; readonly logs: XmlRpcValue }>
  seq: { target: number; pkg: number; request: number }
}

const worlds = new Map<string, BuildWorld>()

/** The build world of the hub whose topdir is `topdir` (created on first use). */
export const buildWorld = (topdir: string): BuildWorld => {
  let w = worlds.get(topdir)
  if (w === undefined) {
    w = {
      tables: buildrootTables(topdir), targets: new Map(), packages: new Map(), packageIds: new Map(), buildMeta: new Map(),
      tagListing: [], eventTs: new Map(), policies: new Map(), policyLog: [], requests: new Map(), tagPerms: new Map(),
      userPerms: new Map(), notificationRecipients: new Map(), tagNotifications: [], imports: [],
      seq: { target: 0, pkg: 0, request: 0 }
    }
    worlds.set(topdir, w)
  }
  return w
}

/** The world of the hub serving this call. */
export const worldOf = (ctx: CallContext): BuildWorld => buildWorld(ctx.settings.topdir)

/** A new event (the hub's event id sequence), stamped with `ts`. */
export const newEvent = (w: BuildWorld, ts: number): number => {
  const id = ++w.tables.seq.event
  w.eventTs.set(id, ts)
  return id
}

/** The tag row for an id, a name, or a `{id}`/`{name}` struct; undefined when there is none. */
export const findTag = (w: BuildWorld, info: XmlRpcValue | undefined): TagRow | undefined => {
  if (typeof info === "number") return w.tables.tags.get(info)
  if (typeof info === "string") {
    for (const t of w.tables.tags.values()) if (t.name === info) return t
    return undefined
  }
  if (info !== null && typeof info === "object" && !Array.isArray(info) && !(info instanceof Uint8Array) && !(info instanceof Date)) {
    const s = info as Record<string, XmlRpcValue>
    if (s["id"] !== undefined) return findTag(w, s["id"])
    if (s["name"] !== undefined) return findTag(w, s["name"])
  }
  return undefined
}

/** `get_tag(info, strict=True)`. */
export const strictTag = (w: BuildWorld, info: XmlRpcValue | undefined): TagRow => {
  const t = findTag(w, info)
  if (t === undefined) throw new GenericError({ faultString: `No such tagInfo: ${pyRepr(info ?? null)}` })
  return t
}

/** The last event at which `tagId` changed (its creation event 1 when it never did). */
export const tagLastChange = (w: BuildWorld, tagId: number): number => {
  let last = 1
  for (const l of w.tagListing) {
    if (l.tagId !== tagId) continue
    last = Math.max(last, l.createEvent, l.revokeEvent ?? 0)
  }
  return last
}

// ---------------------------------------------------------------------------------------------
// Admin helpers for tests

/** Adds a build target; returns its id. */
export const addTarget = (topdir: string, name: string, buildTag: number, destTag: number): number => {
  const w = buildWorld(topdir)
  const id = ++w.seq.target
  w.targets.set(id, { id, name, buildTag, destTag })
  return id
}

/** Adds (or updates) a package in a tag's package list; returns the package id. */
export const addPackage = (
  topdir: string, tagId: number, name: string, opts: { readonly blocked?: boolean; readonly extraArches?: string | null; readonly ownerId?: number } = {}
): number => {
  const w = buildWorld(topdir)
  let pkgId = w.packageIds.get(name)
  if (pkgId === undefined) {
    pkgId = ++w.seq.pkg
    w.packageIds.set(name, pkgId)
  }
  w.packages.set(`${tagId}/${name}`, {
    tagId, packageId: pkgId, name, blocked: opts.blocked ?? false, extraArches: opts.extraArches ?? null, ownerId: opts.ownerId ?? 1
  })
  return pkgId
}

/** Makes tagging into `tagId` need permission `perm` (tag `perm_id`). */
export const setTagPerm = (topdir: string, tagId: number, perm: string): void => {
  buildWorld(topdir).tagPerms.set(tagId, perm)
}

/** Sets the recipients of tag notifications for a tag (a notification task is made when there are some). */
export const setNotificationRecipients = (topdir: string, tagId: number, recipients: ReadonlyArray<string>): void => {
  buildWorld(topdir).notificationRecipients.set(tagId, recipients)
}

const packageId = (w: BuildWorld, name: string): number => {
  let id = w.packageIds.get(name)
  if (id === undefined) {
    id = ++w.seq.pkg
    w.packageIds.set(name, id)
  }
  return id
}

/** The id of a package (created as the hub's `new_package` does when it is new). */
export const lookupPackageId = packageId

// ---------------------------------------------------------------------------------------------
// Methods

const root = (name: string, params: Signature["params"]): Signature => ({ qualname: `RootExports.${name}`, method: true, params })
const fn = (qualname: string, params: Signature["params"]): Signature => ({ qualname, method: false, params })

const targetStruct = (w: BuildWorld, t: TargetRow): Record<string, XmlRpcValue> => ({
  build_tag: t.buildTag,
  build_tag_name: w.tables.tags.get(t.buildTag)?.name ?? null,
  dest_tag: t.destTag,
  dest_tag_name: w.tables.tags.get(t.destTag)?.name ?? null,
  id: t.id,
  name: t.name
})

const findTarget = (w: BuildWorld, info: XmlRpcValue | undefined): TargetRow | undefined => {
  for (const t of w.targets.values()) {
    if ((typeof info === "number" && t.id === info) || (typeof info === "string" && t.name === info)) return t
  }
  return undefined
}

/** Targets, package config, events: the read calls `build` and `waitrepo` make. */
export const targetMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["getBuildTarget", {
    sig: fn("get_build_target", [["info"], ["event", null], ["strict", false]]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const t = findTarget(w, a["info"])
      if (t === undefined) {
        if (truthy(a["strict"])) throw new GenericError({ faultString: `No such build target: ${String(a["info"])}` })
        return null
      }
      return targetStruct(w, t)
    }
  }],
  ["getPackageConfig", {
    sig: root("getPackageConfig", [["tag"], ["pkg"], ["event", null]]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const tag = findTag(w, a["tag"])
      if (tag === undefined) return null
      const name = typeof a["pkg"] === "number"
        ? [...w.packageIds.entries()].find(([, id]) => id === a["pkg"])?.[0]
        : String(a["pkg"])
      const row = name === undefined ? undefined : w.packages.get(`${tag.id}/${name}`)
      if (row === undefined) return null
      return {
        blocked: row.blocked, extra_arches: row.extraArches, owner_id: row.ownerId,
        owner_name: ctx.db.users.get(row.ownerId)?.name ?? null, package_id: row.packageId, package_name: row.name,
        tag_id: tag.id, tag_name: tag.name
      }
    }
  }],
  ["getLastEvent", {
    sig: root("getLastEvent", [["before", null], ["strict", true]]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const before = a["before"]
      let best: number | null = null
      const ids = [...w.eventTs.keys()]
      if (!ids.includes(w.tables.seq.event)) w.eventTs.set(w.tables.seq.event, ctx.now)
      for (const [id, ts] of w.eventTs) {
        if (before !== null && before !== undefined && !(ts < Number(before))) continue
        if (best === null || id > best) best = id
      }
      if (best === null) {
        if (truthy(a["strict"])) throw new GenericError({ faultString: "Unable to find event" })
        return null
      }
      return { id: best, ts: w.eventTs.get(best) ?? ctx.now }
    }
  }],
  ["tagLastChangeEvent", {
    sig: root("tagLastChangeEvent", [["tag"], ["inherit", true]]),
    run: (ctx, a) => tagLastChange(worldOf(ctx), strictTag(worldOf(ctx), a["tag"]).id)
  }],
  ["tagFirstChangeEvent", {
    sig: root("tagFirstChangeEvent", [["tag"], ["after", null], ["inherit", true]]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const tag = strictTag(w, a["tag"])
      const after = a["after"] === null || a["after"] === undefined ? null : toInt(a["after"])
      if (a["after"] !== null && a["after"] !== undefined && after === undefined) {
        throw new GenericError({ faultString: `Invalid value for after: ${pyRepr(a["after"])}` })
      }
      let first: number | null = null
      for (const l of w.tagListing) {
        if (l.tagId !== tag.id) continue
        for (const ev of [l.createEvent, l.revokeEvent]) {
          if (ev === null || (after !== null && after !== undefined && ev <= after)) continue
          if (first === null || ev < first) first = ev
        }
      }
      return first
    }
  }]
]
