/**
 * Tags, repos, rpms and buildroots of the fake hub, with the real hub's rules and fault strings
 * (koji-protocol.md §5.1–5.2; `kojihub.BuildRoot`, `HostExports.newBuildRoot` …): buildroots are
 * owned by a host and a task, `setBuildRootList` only in INIT, `updateBuildRootList` only in
 * BUILDING, EXPIRED is final (expiring again is a no-op), nothing goes back to INIT, and every
 * listed rpm must exist ("No such rpm"). Tests load the offline fixture's manifest with
 * `loadFixture`. The tables are kept per hub (keyed by its topdir) beside the core tables.
 */
import { BuildrootState } from "../../src/koji/states.js"
import { ActionNotAllowed, GenericError, ParameterError } from "../../src/koji/faults.js"
import { Double, isStruct, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type CallContext, dbl, isoTime, pyRepr, pyStr, toInt, truthy } from "./context.js"
import type { MethodDef } from "./methods.js"
import { verifiedHost } from "./sessions.js"
import type { Signature } from "./signature.js"
import { assertHost } from "./tasks.js"

/** A tag with its build config (arches, extra). */
export interface TagRow {
  readonly id: number
  readonly name: string
  arches: string | null
  extra: Record<string, XmlRpcValue>
  locked: boolean
}

/** A repo (koji.REPO_STATES: INIT 0, READY 1, EXPIRED 2, DELETED 3, PROBLEM 4). */
export interface RepoRow {
  readonly id: number
  readonly tagId: number
  state: number
  readonly createEvent: number
  readonly createTs: number
  readonly dist: boolean
  readonly taskId: number | null
}

/** An rpm known to the hub. */
export interface RpmRow {
  readonly id: number
  readonly name: string
  readonly version: string
  readonly release: string
  readonly epoch: number | null
  readonly arch: string
  readonly payloadhash: string
  readonly size: number
  readonly buildtime: number
  readonly buildId: number | null
  readonly externalRepoId: number | null
  readonly draft: boolean
}

/** A build (for listTaggedRPMS's second list). */
export interface BuildRow {
  readonly id: number
  readonly name: string
  readonly version: string
  readonly release: string
  readonly epoch: number | null
  readonly state: number
}

/** A standard buildroot. */
export interface BuildrootRow {
  readonly id: number
  readonly hostId: number
  readonly repoId: number
  readonly arch: string
  readonly taskId: number | null
  state: number
  readonly createEvent: number
  readonly createTs: number
  retireEvent: number | null
  retireTs: number | null
  /** rpm id → is_update */
  readonly listing: Map<number, boolean>
}

/** An external repo of a tag. */
export interface ExternalRepoRow {
  readonly id: number
  readonly name: string
  readonly url: string
  readonly tagId: number
  readonly priority: number
  readonly mergeMode: string
  readonly arches: string | null
}

/** The fake hub's buildroot-related tables. */
export interface BuildrootTables {
  readonly tags: Map<number, TagRow>
  readonly repos: Map<number, RepoRow>
  readonly rpms: Map<number, RpmRow>
  readonly builds: Map<number, BuildRow>
  /** tag id → build ids tagged (latest first). */
  readonly tagged: Map<number, Array<number>>
  readonly externalRepos: Array<ExternalRepoRow>
  readonly buildroots: Map<number, BuildrootRow>
  /** package name → average build duration in seconds. */
  readonly durations: Map<string, number>
  seq: { buildroot: number; event: number; rpm: number; repo: number; tag: number; build: number }
}

const registry = new Map<string, BuildrootTables>()

const emptyTables = (): BuildrootTables => ({
  tags: new Map(), repos: new Map(), rpms: new Map(), builds: new Map(), tagged: new Map(), externalRepos: [],
  buildroots: new Map(), durations: new Map(),
  seq: { buildroot: 0, event: 100, rpm: 0, repo: 0, tag: 0, build: 0 }
})

/** The tables of the hub whose topdir is `topdir` (created on first use). */
export const buildrootTables = (topdir: string): BuildrootTables => {
  let t = registry.get(topdir)
  if (t === undefined) {
    t = emptyTables()
    registry.set(topdir, t)
  }
  return t
}

const tablesOf = (ctx: CallContext): BuildrootTables => buildrootTables(ctx.settings.topdir)

const brStateNames = ["INIT", "WAITING", "BUILDING", "EXPIRED"] as const
const repoStateNames = ["INIT", "READY", "EXPIRED", "DELETED", "PROBLEM"] as const

// ---------------------------------------------------------------------------------------------
// Admin helpers for tests

/** The subset of the offline fixture's `fixture.json` the fake hub serves. */
export interface FixtureManifest {
  readonly tag: { readonly id: number; readonly name: string; readonly arches: string }
  readonly repo: { readonly id: number; readonly tag_id: number; readonly state: number; readonly create_event: number; readonly dist?: boolean }
  readonly builds: ReadonlyArray<{ readonly id: number; readonly name: string; readonly version: string; readonly release: string; readonly epoch: number | null; readonly state: number }>
  readonly rpms: ReadonlyArray<{
    readonly id: number; readonly name: string; readonly version: string; readonly release: string; readonly epoch: number | null
    readonly arch: string; readonly payloadhash: string; readonly size: number; readonly buildtime: number
    readonly build_id: number | null; readonly draft?: boolean
  }>
}

/** Loads the fixture's tag, repo, builds and rpms (ids as in the manifest) into the hub at `topdir`. */
export const loadFixture = (topdir: string, manifest: FixtureManifest, patch: { readonly tagExtra?: Record<string, XmlRpcValue> } = {}): void => {
  const t = buildrootTables(topdir)
  t.tags.set(manifest.tag.id, { id: manifest.tag.id, name: manifest.tag.name, arches: manifest.tag.arches, extra: { ...patch.tagExtra }, locked: false })
  t.repos.set(manifest.repo.id, {
    id: manifest.repo.id, tagId: manifest.repo.tag_id, state: manifest.repo.state, createEvent: manifest.repo.create_event,
    createTs: 1795564800, dist: manifest.repo.dist ?? false, taskId: null
  })
  for (const b of manifest.builds) t.builds.set(b.id, { id: b.id, name: b.name, version: b.version, release: b.release, epoch: b.epoch, state: b.state })
  t.tagged.set(manifest.tag.id, manifest.builds.map((b) => b.id))
  for (const r of manifest.rpms) {
    t.rpms.set(r.id, {
      id: r.id, name: r.name, version: r.version, release: r.release, epoch: r.epoch, arch: r.arch, payloadhash: r.payloadhash,
      size: r.size, buildtime: r.buildtime, buildId: r.build_id, externalRepoId: null, draft: r.draft ?? false
    })
  }
  t.seq.tag = Math.max(t.seq.tag, manifest.tag.id)
  t.seq.repo = Math.max(t.seq.repo, manifest.repo.id)
  t.seq.rpm = Math.max(t.seq.rpm, ...manifest.rpms.map((r) => r.id))
  t.seq.build = Math.max(t.seq.build, ...manifest.builds.map((b) => b.id))
}

/** Adds a tag; returns its id. */
export const addTag = (topdir: string, name: string, arches: string | null, extra: Record<string, XmlRpcValue> = {}): number => {
  const t = buildrootTables(topdir)
  const id = ++t.seq.tag
  t.tags.set(id, { id, name, arches, extra, locked: false })
  return id
}

/** Adds a repo of `tagId` in `state` (default READY); returns its id. */
export const addRepo = (topdir: string, tagId: number, state = 1): number => {
  const t = buildrootTables(topdir)
  const id = ++t.seq.repo
  t.repos.set(id, { id, tagId, state, createEvent: ++t.seq.event, createTs: Date.now() / 1000, dist: false, taskId: null })
  return id
}

/** Sets a repo's state (kojira's expire/delete). */
export const setRepoState = (topdir: string, repoId: number, state: number): void => {
  const r = buildrootTables(topdir).repos.get(repoId)
  if (r !== undefined) r.state = state
}

/** Sets what getAverageBuildDuration answers for a package. */
export const setAverageBuildDuration = (topdir: string, pkg: string, seconds: number): void => {
  buildrootTables(topdir).durations.set(pkg, seconds)
}

/** Registers an external repo of a tag. */
export const addExternalRepo = (topdir: string, tagId: number, name: string, url: string): number => {
  const t = buildrootTables(topdir)
  const id = t.externalRepos.length + 1
  t.externalRepos.push({ id, name, url, tagId, priority: 5, mergeMode: "koji", arches: null })
  return id
}

// ---------------------------------------------------------------------------------------------
// Lookups

const getTagRow = (ctx: CallContext, info: XmlRpcValue | undefined, strict: boolean): TagRow | undefined => {
  const t = tablesOf(ctx)
  let row: TagRow | undefined
  if (typeof info === "number") row = t.tags.get(info)
  else if (typeof info === "string") row = [...t.tags.values()].find((r) => r.name === info) ?? (/^\d+$/.test(info) ? t.tags.get(Number(info)) : undefined)
  else if (isStruct(info)) row = getTagRow(ctx, info["id"] ?? info["name"], false)
  else throw new ParameterError({ faultString: `Invalid type for tagInfo: ${typeof info}` })
  if (row === undefined && strict) throw new GenericError({ faultString: `No such tagInfo: ${pyRepr(info ?? null)}` })
  return row
}

const tagInfo = (row: TagRow, event: number | null): XmlRpcStruct => ({
  arches: row.arches,
  id: row.id,
  locked: row.locked,
  maven_include_all: false,
  maven_support: false,
  name: row.name,
  perm: null,
  perm_id: null,
  extra: { ...row.extra },
  query_event: event
})

const repoInfo = (ctx: CallContext, r: RepoRow): XmlRpcStruct => {
  const tag = tablesOf(ctx).tags.get(r.tagId)
  return {
    begin_event: null,
    begin_ts: null,
    create_event: r.createEvent,
    create_ts: dbl(r.createTs),
    creation_time: isoTime(r.createTs),
    creation_ts: dbl(r.createTs),
    custom_opts: {},
    dist: r.dist,
    end_event: null,
    end_ts: null,
    id: r.id,
    opts: { src: false, maven: false, debuginfo: false, separate_src: false },
    state: r.state,
    state_time: isoTime(r.createTs),
    state_ts: dbl(r.createTs),
    tag_id: r.tagId,
    tag_name: tag?.name ?? null,
    task_id: r.taskId,
    task_state: r.taskId === null ? null : 2
  }
}

const brInfo = (ctx: CallContext, br: BuildrootRow): XmlRpcStruct => {
  const t = tablesOf(ctx)
  const repo = t.repos.get(br.repoId)
  const tag = repo === undefined ? undefined : t.tags.get(repo.tagId)
  const host = ctx.db.hosts.get(br.hostId)
  return {
    id: br.id, br_type: 0, cg_id: null, cg_name: null, cg_version: null, container_arch: br.arch, arch: br.arch,
    container_type: "chroot", host_os: null, host_arch: null, extra: null, state: br.state, task_id: br.taskId,
    host_id: br.hostId, host_name: host?.name ?? null, repo_id: br.repoId, repo_state: repo?.state ?? null,
    tag_id: tag?.id ?? null, tag_name: tag?.name ?? null, create_event_id: br.createEvent,
    create_event_time: isoTime(br.createTs), create_ts: dbl(br.createTs), retire_event_id: br.retireEvent,
    retire_event_time: isoTime(br.retireTs), retire_ts: dbl(br.retireTs),
    repo_create_event_id: repo?.createEvent ?? null, repo_create_event_time: repo === undefined ? null : isoTime(repo.createTs)
  }
}

const loadBuildroot = (ctx: CallContext, v: XmlRpcValue | undefined): BuildrootRow => {
  const id = toInt(v)
  if (id === undefined) throw new ParameterError({ faultString: `Invalid type for value ${pyRepr(v ?? null)}` })
  const br = tablesOf(ctx).buildroots.get(id)
  if (br === undefined) throw new GenericError({ faultString: `no buildroot with ID: ${id}` })
  return br
}

/** `get_rpm(entry, strict=True)`: by id, else by name-version-release-arch. */
const getRpm = (ctx: CallContext, entry: XmlRpcStruct): RpmRow => {
  const t = tablesOf(ctx)
  const id = entry["id"]
  const data: XmlRpcStruct = { ...entry }
  let found: RpmRow | undefined
  if (id !== undefined && id !== null) found = t.rpms.get(toInt(id) ?? -1)
  else {
    found = [...t.rpms.values()].find((r) =>
      r.name === entry["name"] && r.version === entry["version"] && r.release === entry["release"] && r.arch === entry["arch"])
  }
  if (found === undefined) throw new GenericError({ faultString: `No such rpm: ${pyRepr(data)}` })
  return found
}

const hostBuildroot = (ctx: CallContext, a: Readonly<Record<string, XmlRpcValue>>): BuildrootRow => {
  const host = verifiedHost(ctx)
  const taskId = a["task_id"]
  if (taskId !== undefined && taskId !== null) assertHost(ctx, toInt(taskId) ?? -1, host.id)
  const br = loadBuildroot(ctx, a["brootid"])
  if (br.hostId !== host.id) throw new ActionNotAllowed({ faultString: `Host ${host.id} not owner of buildroot ${br.id}` })
  if (taskId !== undefined && taskId !== null && toInt(taskId) !== br.taskId) {
    throw new ActionNotAllowed({ faultString: `Task ${pyStr(taskId)} does not have lock on buildroot ${br.id}` })
  }
  return br
}

const setList = (ctx: CallContext, br: BuildrootRow, list: XmlRpcValue | undefined, update: boolean): void => {
  const want = update ? BuildrootState.BUILDING : BuildrootState.INIT
  if (br.state !== want) throw new GenericError({ faultString: `buildroot ${br.id} in wrong state ${br.state}` })
  if (!Array.isArray(list)) throw new GenericError({ faultString: "rpmlist must be a list" })
  const ids: Array<number> = []
  for (const entry of list as ReadonlyArray<XmlRpcValue>) {
    if (!isStruct(entry)) throw new GenericError({ faultString: `Invalid type for rpminfo: ${typeof entry}` })
    if (truthy(entry["location"])) {
      // add_external_rpm: created when missing (the fake keeps it simple: match by NVRA or add).
      const t = tablesOf(ctx)
      const found = [...t.rpms.values()].find((r) =>
        r.name === entry["name"] && r.version === entry["version"] && r.release === entry["release"] && r.arch === entry["arch"])
      if (found !== undefined) {
        if (found.payloadhash !== entry["payloadhash"]) {
          throw new GenericError({ faultString: `hash changed for external rpm: ${pyStr(entry["name"])}-${pyStr(entry["version"])}-${pyStr(entry["release"])}.${pyStr(entry["arch"])}` })
        }
        ids.push(found.id)
      } else {
        const id = ++t.seq.rpm
        t.rpms.set(id, {
          id, name: pyStr(entry["name"]), version: pyStr(entry["version"]), release: pyStr(entry["release"]),
          epoch: typeof entry["epoch"] === "number" ? entry["epoch"] : null, arch: pyStr(entry["arch"]),
          payloadhash: pyStr(entry["payloadhash"]), size: toInt(entry["size"]) ?? 0, buildtime: toInt(entry["buildtime"]) ?? 0,
          buildId: null, externalRepoId: toInt(entry["location"]) ?? 0, draft: false
        })
        ids.push(id)
      }
      continue
    }
    ids.push(getRpm(ctx, entry).id)
  }
  for (const id of ids.sort((x, y) => x - y)) {
    if (update && br.listing.has(id)) continue
    br.listing.set(id, update)
  }
  ctx.dml()
}

const setState = (ctx: CallContext, br: BuildrootRow, stateArg: XmlRpcValue | undefined): void => {
  let state: number
  if (typeof stateArg === "string") {
    const i = brStateNames.indexOf(stateArg as (typeof brStateNames)[number])
    if (i < 0) throw new GenericError({ faultString: `KeyError: ${pyRepr(stateArg)}` })
    state = i
  } else {
    state = toInt(stateArg) ?? -1
    if (state < 0 || state > 3) throw new GenericError({ faultString: `KeyError: ${pyRepr(stateArg ?? null)}` })
  }
  if (state === BuildrootState.INIT) throw new GenericError({ faultString: "Cannot change buildroot state to INIT" })
  if (br.state === BuildrootState.EXPIRED) {
    if (state === BuildrootState.EXPIRED) return
    throw new GenericError({ faultString: `buildroot ${br.id} is EXPIRED` })
  }
  br.state = state
  if (state === BuildrootState.EXPIRED) {
    br.retireEvent = ++tablesOf(ctx).seq.event
    br.retireTs = ctx.now
  }
  ctx.dml()
}

// ---------------------------------------------------------------------------------------------
// Methods

const root = (name: string, params: Signature["params"], more: Partial<Signature> = {}): Signature => ({
  qualname: `RootExports.${name}`, method: true, params, ...more
})
const host = (name: string, params: Signature["params"]): Signature => ({ qualname: `HostExports.${name}`, method: true, params })
const fn = (qualname: string, params: Signature["params"]): Signature => ({ qualname, method: false, params })

const eventOf = (v: XmlRpcValue | undefined): number | null => (v === undefined || v === null ? null : toInt(v) ?? null)

/** The fake hub methods of this module, to spread into the method registry. */
export const buildrootMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["repoInfo", {
    sig: fn("repo_info", [["repo_id"], ["strict", false]]),
    run: (ctx, a) => {
      const id = toInt(a["repo_id"])
      const r = id === undefined ? undefined : tablesOf(ctx).repos.get(id)
      if (r === undefined) {
        if (truthy(a["strict"])) throw new GenericError({ faultString: "query returned no rows" })
        return null
      }
      return repoInfo(ctx, r)
    }
  }],
  ["getRepo", {
    sig: root("getRepo", [["tag"], ["state", null], ["event", null], ["dist", false], ["min_event", null]]),
    run: (ctx, a) => {
      const tag = getTagRow(ctx, a["tag"], true)!
      const state = a["state"] === null || a["state"] === undefined ? 1 : toInt(a["state"])
      const repos = [...tablesOf(ctx).repos.values()].filter((r) => r.tagId === tag.id && r.state === state).sort((x, y) => y.id - x.id)
      return repos[0] === undefined ? null : repoInfo(ctx, repos[0])
    }
  }],
  ["repo.get", {
    sig: fn("get_repo", [["tag"], ["min_event", null], ["at_event", null], ["opts", null]]),
    run: (ctx, a) => {
      // repos.get_repo: the newest READY non-dist repo, at at_event or from min_event on, whose
      // opts hold the requested ones (fake repos have koji's default opts, all false, no custom ones).
      const tag = getTagRow(ctx, a["tag"], true)!
      const minEvent = eventOf(a["min_event"])
      const atEvent = eventOf(a["at_event"])
      const opts = a["opts"] ?? null
      if (opts !== null && !isStruct(opts)) throw new ParameterError({ faultString: "Repo opts must be a dictionary" })
      const wanted = opts === null ? [] : Object.entries(opts)
      for (const [key] of wanted) {
        if (!["src", "debuginfo", "separate_src", "maven"].includes(key)) throw new ParameterError({ faultString: `Invalid repo option: ${key}` })
      }
      const repos = [...tablesOf(ctx).repos.values()]
        .filter((r) => r.tagId === tag.id && !r.dist && r.state === 1)
        .filter((r) => (atEvent !== null ? r.createEvent === atEvent : minEvent === null || r.createEvent >= minEvent))
        .filter(() => wanted.every(([, v]) => !truthy(v)))
        .sort((x, y) => y.createEvent - x.createEvent)
      return repos[0] === undefined ? null : repoInfo(ctx, repos[0])
    }
  }],
  ["getTag", {
    sig: root("getTag", [["tagInfo"], ["strict", false], ["event", null], ["blocked", false]]),
    run: (ctx, a) => {
      const row = getTagRow(ctx, a["tagInfo"], truthy(a["strict"]))
      return row === undefined ? null : tagInfo(row, eventOf(a["event"]))
    }
  }],
  ["getBuildConfig", {
    sig: root("getBuildConfig", [["tag"], ["event", null]]),
    run: (ctx, a) => {
      const row = getTagRow(ctx, a["tag"], true)!
      return { ...tagInfo(row, eventOf(a["event"])), config_inheritance: { extra: {}, arches: null } }
    }
  }],
  ["getExternalRepoList", {
    sig: root("getExternalRepoList", [["tag_info"], ["event", null]]),
    run: (ctx, a) => {
      const row = getTagRow(ctx, a["tag_info"], true)!
      return tablesOf(ctx).externalRepos.filter((e) => e.tagId === row.id).map((e) => ({
        external_repo_id: e.id, external_repo_name: e.name, url: e.url, priority: e.priority, merge_mode: e.mergeMode,
        arches: e.arches, tag_id: row.id, tag_name: row.name
      }))
    }
  }],
  ["getAverageBuildDuration", {
    sig: root("getAverageBuildDuration", [["package"], ["age", null]]),
    run: (ctx, a) => {
      const d = tablesOf(ctx).durations.get(pyStr(a["package"]))
      return d === undefined ? null : new Double(d)
    }
  }],
  ["listBuildroots", {
    sig: fn("query_buildroots", [
      ["hostID", null], ["tagID", null], ["state", null], ["rpmID", null], ["archiveID", null], ["taskID", null],
      ["buildrootID", null], ["repoID", null], ["queryOpts", null]
    ]),
    run: (ctx, a) => {
      const pick = (v: XmlRpcValue | undefined): ReadonlyArray<number> | null =>
        v === undefined || v === null ? null : Array.isArray(v) ? (v as ReadonlyArray<XmlRpcValue>).map((x) => toInt(x) ?? -1) : [toInt(v) ?? -1]
      const ids = pick(a["buildrootID"])
      const hostId = a["hostID"] === null || a["hostID"] === undefined ? null : toInt(a["hostID"])
      const states = pick(a["state"])
      const taskId = a["taskID"] === null || a["taskID"] === undefined ? null : toInt(a["taskID"])
      const repoId = a["repoID"] === null || a["repoID"] === undefined ? null : toInt(a["repoID"])
      return [...tablesOf(ctx).buildroots.values()]
        .filter((br) => (ids === null || ids.includes(br.id)) && (hostId === null || br.hostId === hostId) &&
          (states === null || states.includes(br.state)) && (taskId === null || br.taskId === taskId) &&
          (repoId === null || br.repoId === repoId))
        .map((br) => brInfo(ctx, br))
    }
  }],
  ["getBuildroot", {
    sig: root("getBuildroot", [["buildrootID"], ["strict", false]]),
    run: (ctx, a) => {
      const br = tablesOf(ctx).buildroots.get(toInt(a["buildrootID"]) ?? -1)
      if (br === undefined) {
        if (truthy(a["strict"])) throw new GenericError({ faultString: `No such buildroot: ${pyRepr(a["buildrootID"] ?? null)}` })
        return null
      }
      return brInfo(ctx, br)
    }
  }],
  ["getBuildrootListing", {
    sig: root("getBuildrootListing", [["id"]]),
    run: (ctx, a) => {
      const br = loadBuildroot(ctx, a["id"])
      const t = tablesOf(ctx)
      return [...br.listing.entries()].map(([rpmId, isUpdate]) => {
        const r = t.rpms.get(rpmId)!
        return { rpm_id: rpmId, is_update: isUpdate, name: r.name, version: r.version, release: r.release, epoch: r.epoch, arch: r.arch, build_id: r.buildId, draft: r.draft, external_repo_id: r.externalRepoId ?? 0, external_repo_name: r.externalRepoId === null ? "INTERNAL" : String(r.externalRepoId) }
      })
    }
  }],
  ["host.newBuildRoot", {
    sig: host("newBuildRoot", [["repo"], ["arch"], ["task_id", null]]),
    run: (ctx, a) => {
      const h = verifiedHost(ctx)
      const taskId = a["task_id"] === undefined || a["task_id"] === null ? null : toInt(a["task_id"]) ?? -1
      if (taskId !== null) assertHost(ctx, taskId, h.id)
      const arch = a["arch"]
      if (arch !== null && (typeof arch !== "string" || !/^[a-zA-Z0-9_-]*$/.test(arch))) {
        throw new GenericError({ faultString: `Invalid arch: ${pyStr(arch ?? null)}` })
      }
      const t = tablesOf(ctx)
      const repoId = toInt(a["repo"]) ?? -1
      if (!t.repos.has(repoId)) throw new GenericError({ faultString: `insert or update on table "standard_buildroot" violates foreign key constraint (repo ${repoId})` })
      const id = ++t.seq.buildroot
      t.buildroots.set(id, {
        id, hostId: h.id, repoId, arch: arch ?? "", taskId, state: BuildrootState.INIT, createEvent: ++t.seq.event, createTs: ctx.now,
        retireEvent: null, retireTs: null, listing: new Map()
      })
      ctx.dml()
      return id
    }
  }],
  ["host.setBuildRootState", {
    sig: host("setBuildRootState", [["brootid"], ["state"], ["task_id", null]]),
    run: (ctx, a) => (setState(ctx, hostBuildroot(ctx, a), a["state"]), null)
  }],
  ["host.setBuildRootList", {
    sig: host("setBuildRootList", [["brootid"], ["rpmlist"], ["task_id", null]]),
    run: (ctx, a) => (setList(ctx, hostBuildroot(ctx, a), a["rpmlist"], false), null)
  }],
  ["host.updateBuildRootList", {
    sig: host("updateBuildRootList", [["brootid"], ["rpmlist"], ["task_id", null]]),
    run: (ctx, a) => (setList(ctx, hostBuildroot(ctx, a), a["rpmlist"], true), null)
  }]
]

/** A buildroot row's state name (for test messages). */
export const brStateName = (s: number): string => brStateNames[s] ?? String(s)
/** A repo state name. */
export const repoStateName = (s: number): string => repoStateNames[s] ?? String(s)
