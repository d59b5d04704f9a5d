/**
 * The repo side of the fake hub (kojihub `repo_init`, `repo_done`, `dist_repo_init`,
 * `HostExports.repoInit/repoDone/distRepoMove`, koji-protocol.md §7.7–7.10): tags with arches,
 * extra and inheritance, builds and rpms (with signature keys), tagging, groups, blocked
 * packages, external repos, repos and dist repos, and the read calls the repo and notification
 * handlers make. repoInit writes the directory the real hub writes under `<topdir>/repos`;
 * repoDone moves the uploaded files into place as the hub does.
 *
 * Tags, repos, rpms, builds, tagging and external repos are the buildroot module's tables
 * (`buildrootTables(topdir)`); the rest lives per topdir too (`repoWorld(hub.topdir)`), so a
 * test fills them directly.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { GenericError, ParameterError } from "../../src/koji/faults.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { canonArch } from "../../src/koji/arch.js"
import { type BuildRow, type BuildrootTables, buildrootTables, type RepoRow, type RpmRow, type TagRow } from "./buildroots.js"
import { type CallContext, asList, dbl, isoTime, pyRepr, pyStr, toInt, truthy } from "./context.js"
import type { MethodDef } from "./methods.js"
import { verifiedHost } from "./sessions.js"
import type { Signature } from "./signature.js"
import { makeTask } from "./tasks.js"

/** Build details the notification and dist-repo calls need beyond the buildroot tables' build row. */
export interface BuildExtra {
  readonly owner: string
  readonly taskId: number | null
  readonly volume: string
  readonly draft: boolean
  readonly creationTs: number
  completionTs: number | null
}

/** A changelog entry of a build. */
export interface ChangelogRow {
  readonly date: string
  readonly author: string
  readonly text: string
}

/**
 * What this module keeps beside the buildroot tables (tags, repos, rpms, builds, tagging and
 * external repos live there, `buildrootTables(topdir)`): inheritance, groups, blocked packages,
 * signature keys, repo options, build details and changelogs.
 */
export interface RepoWorld {
  readonly topdir: string
  readonly tables: BuildrootTables
  /** tag id → direct parent tag ids, in priority order. */
  readonly parents: Map<number, Array<number>>
  /** Groups per tag: group name → package names. */
  readonly groups: Map<number, Map<string, Array<string>>>
  readonly blocked: Map<number, Set<string>>
  /** rpm id → signature keys it has signed copies for. */
  readonly sigkeys: Map<number, Array<string>>
  /** repo id → the opts and custom_opts repoInit stored. */
  readonly repoOpts: Map<number, { readonly opts: XmlRpcStruct; readonly custom: XmlRpcStruct }>
  readonly buildExtra: Map<number, BuildExtra>
  readonly changelogs: Map<number, Array<ChangelogRow>>
}

const worlds = new Map<string, RepoWorld>()

/** The repo tables of the fake hub whose topdir is `topdir` (created empty on first use). */
export const repoWorld = (topdir: string): RepoWorld => {
  let w = worlds.get(topdir)
  if (w === undefined) {
    w = {
      topdir, tables: buildrootTables(topdir), parents: new Map(), groups: new Map(), blocked: new Map(),
      sigkeys: new Map(), repoOpts: new Map(), buildExtra: new Map(), changelogs: new Map()
    }
    worlds.set(topdir, w)
  }
  return w
}

/** Forgets a world (tests call it when their hub goes away). */
export const dropRepoWorld = (topdir: string): void => {
  worlds.delete(topdir)
}

/** A new event id. */
export const nextEvent = (w: RepoWorld): number => ++w.tables.seq.event

/** Tags a build (it becomes the latest of the tag). */
export const tagBuild = (w: RepoWorld, tagId: number, buildId: number): void => {
  const list = w.tables.tagged.get(tagId) ?? []
  w.tables.tagged.set(tagId, [buildId, ...list.filter((b) => b !== buildId)])
  nextEvent(w)
}

/** Adds a build and its rpms to the buildroot tables (ids chosen by the caller). */
export const addBuild = (
  w: RepoWorld,
  build: { readonly id: number; readonly name: string; readonly version: string; readonly release: string; readonly epoch?: number | null; readonly state?: number } & Partial<BuildExtra>,
  rpms: ReadonlyArray<{ readonly id: number; readonly arch: string; readonly name?: string; readonly payloadhash?: string; readonly size?: number; readonly sigkeys?: ReadonlyArray<string> }>
): void => {
  const t = w.tables
  t.builds.set(build.id, { id: build.id, name: build.name, version: build.version, release: build.release, epoch: build.epoch ?? null, state: build.state ?? 1 })
  w.buildExtra.set(build.id, {
    owner: build.owner ?? "kojiadmin", taskId: build.taskId ?? null, volume: build.volume ?? "DEFAULT", draft: build.draft ?? false,
    creationTs: build.creationTs ?? 1795564800, completionTs: build.completionTs ?? 1795564860
  })
  for (const r of rpms) {
    t.rpms.set(r.id, {
      id: r.id, name: r.name ?? build.name, version: build.version, release: build.release, epoch: build.epoch ?? null, arch: r.arch,
      payloadhash: r.payloadhash ?? "0".repeat(32), size: r.size ?? 0, buildtime: 1795564800, buildId: build.id, externalRepoId: null, draft: false
    })
    if (r.sigkeys !== undefined) w.sigkeys.set(r.id, [...r.sigkeys])
    t.seq.rpm = Math.max(t.seq.rpm, r.id)
  }
  t.seq.build = Math.max(t.seq.build, build.id)
}

/** Attaches an external repo to a tag. */
export const addExternalRepo = (
  w: RepoWorld,
  repo: { readonly tagId: number; readonly name: string; readonly url: string; readonly mergeMode?: "koji" | "simple" | "bare"; readonly arches?: string | null }
): void => {
  const t = w.tables
  t.externalRepos.push({
    id: t.externalRepos.length + 1, name: repo.name, url: repo.url, tagId: repo.tagId,
    priority: 5 * (t.externalRepos.filter((e) => e.tagId === repo.tagId).length + 1), mergeMode: repo.mergeMode ?? "koji",
    arches: repo.arches ?? null
  })
  nextEvent(w)
}

/** `koji.pathinfo.build(build)` relative to the topdir. */
export const buildRelDir = (b: { readonly name: string; readonly version: string; readonly release: string }, volume = "DEFAULT"): string =>
  `${volume === "DEFAULT" ? "" : `vol/${volume}/`}packages/${b.name}/${b.version}/${b.release}`

/** `koji.pathinfo.rpm(rpminfo)`. */
export const rpmRelPath = (r: { readonly name: string; readonly version: string; readonly release: string; readonly arch: string }): string =>
  `${r.arch}/${r.name}-${r.version}-${r.release}.${r.arch}.rpm`

// ---------------------------------------------------------------------------------------------
// Rows → structs

const buildStruct = (w: RepoWorld, b: BuildRow): XmlRpcStruct => {
  const x = w.buildExtra.get(b.id)
  const created = x?.creationTs ?? 1795564800
  const completed = x === undefined ? created : x.completionTs
  return {
    build_id: b.id, cg_id: null, cg_name: null, completion_time: isoTime(completed), completion_ts: dbl(completed),
    creation_event_id: 1, creation_time: isoTime(created), creation_ts: dbl(created), draft: x?.draft ?? false,
    epoch: b.epoch, extra: null, id: b.id, name: b.name, nvr: `${b.name}-${b.version}-${b.release}`, owner_id: 1,
    owner_name: x?.owner ?? "kojiadmin", package_id: b.id, package_name: b.name, release: b.release, source: null,
    start_time: isoTime(created), start_ts: dbl(created), state: b.state, task_id: x?.taskId ?? null, version: b.version,
    volume_id: 0, volume_name: x?.volume ?? "DEFAULT"
  }
}

const rpmStruct = (r: RpmRow, sigkey?: string): XmlRpcStruct => ({
  arch: r.arch, build_id: r.buildId, buildroot_id: null, buildtime: r.buildtime, draft: r.draft, epoch: r.epoch,
  extra: null, id: r.id, metadata_only: false, name: r.name, payloadhash: r.payloadhash, release: r.release,
  size: r.size, version: r.version, ...(sigkey === undefined ? {} : { sigkey })
})

// ---------------------------------------------------------------------------------------------
// Lookups

/** A tag by id, name, or a struct with id or name. */
export const findTag = (w: RepoWorld, info: XmlRpcValue | undefined): TagRow | undefined => {
  if (isStruct(info)) return findTag(w, info["id"] ?? info["name"])
  if (typeof info === "number") return w.tables.tags.get(info)
  if (typeof info === "string") {
    for (const t of w.tables.tags.values()) if (t.name === info) return t
    if (/^\d+$/.test(info)) return w.tables.tags.get(Number(info))
  }
  return undefined
}

const strictTag = (w: RepoWorld, info: XmlRpcValue | undefined): TagRow => {
  const t = findTag(w, info)
  if (t === undefined) throw new GenericError({ faultString: `No such tagInfo: ${pyRepr(info ?? null)}` })
  return t
}

/** The tag's ancestors, nearest first, with depth (`readFullInheritance`). */
export const inheritance = (w: RepoWorld, tagId: number): Array<{ readonly tag: TagRow; readonly depth: number; readonly childId: number; readonly priority: number }> => {
  const out: Array<{ tag: TagRow; depth: number; childId: number; priority: number }> = []
  const seen = new Set<number>([tagId])
  let level: Array<number> = [tagId]
  for (let depth = 1; level.length > 0; depth++) {
    const next: Array<number> = []
    for (const id of level) {
      ;(w.parents.get(id) ?? []).forEach((parentId, i) => {
        if (seen.has(parentId)) return
        seen.add(parentId)
        const tag = w.tables.tags.get(parentId)
        if (tag === undefined) return
        out.push({ tag, depth, childId: id, priority: i * 10 })
        next.push(parentId)
      })
    }
    level = next
  }
  return out
}

const tagChain = (w: RepoWorld, tagId: number, inherit: boolean): Array<number> =>
  inherit ? [tagId, ...inheritance(w, tagId).map((l) => l.tag.id)] : [tagId]

/** The complete builds tagged in a tag, latest first (inherited, latest per package, like readTaggedBuilds). */
export const taggedBuilds = (w: RepoWorld, tagId: number, opts: { readonly inherit?: boolean; readonly latest?: boolean } = {}): Array<BuildRow> => {
  const out: Array<BuildRow> = []
  const seenPkg = new Set<string>()
  for (const tid of tagChain(w, tagId, opts.inherit ?? false)) {
    for (const id of w.tables.tagged.get(tid) ?? []) {
      const b = w.tables.builds.get(id)
      if (b === undefined || b.state !== 1) continue
      if (opts.latest === true && seenPkg.has(b.name)) continue
      seenPkg.add(b.name)
      out.push(b)
    }
  }
  return out
}

const rpmsOf = (w: RepoWorld, buildId: number): Array<RpmRow> =>
  [...w.tables.rpms.values()].filter((r) => r.buildId === buildId).sort((x, y) => x.id - y.id)

const blockedIn = (w: RepoWorld, tagId: number): Array<string> => {
  const out = new Set<string>()
  for (const tid of tagChain(w, tagId, true)) for (const n of w.blocked.get(tid) ?? []) out.add(n)
  return [...out].sort()
}

const groupsOf = (w: RepoWorld, tagId: number): Map<string, Array<string>> => {
  const out = new Map<string, Array<string>>()
  for (const tid of [...tagChain(w, tagId, true)].reverse()) for (const [g, pkgs] of w.groups.get(tid) ?? []) out.set(g, [...pkgs])
  return out
}

/** `koji.generate_comps(groups, expand_groups=True)` for plain mandatory package lists. */
export const generateComps = (groups: ReadonlyMap<string, ReadonlyArray<string>>): string => {
  const parts = [
    '<?xml version="1.0"?>\n<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">\n\n' +
      "<!-- Auto-generated by the build system -->\n<comps>\n"
  ]
  for (const name of [...groups.keys()].sort()) {
    parts.push(
      `  <group>\n    <id>${name}</id>\n    <name>${name}</name>\n    <description>None</description>\n` +
        "    <default>false</default>\n    <uservisible>true</uservisible>\n    <packagelist>\n"
    )
    for (const p of [...groups.get(name)!].sort()) parts.push(`      <packagereq type="mandatory">${p}</packagereq>\n`)
    parts.push("    </packagelist>\n  </group>\n")
  }
  parts.push("</comps>\n")
  return parts.join("")
}

const isDebuginfo = (name: string): boolean =>
  name.endsWith("-debuginfo") || name.endsWith("-debugsource") || name.includes("-debuginfo-")

const volumeOf = (w: RepoWorld, buildId: number): string => w.buildExtra.get(buildId)?.volume ?? "DEFAULT"

// ---------------------------------------------------------------------------------------------
// Hub operations

/** `repo_init(tag, task_id, event, opts)`: the INIT repo row and its directory; returns [repo_id, event_id]. */
export const repoInit = (ctx: CallContext, w: RepoWorld, tagInfo: XmlRpcValue, taskId: number | null, event: number | null, override: XmlRpcValue): [number, number] => {
  const t = w.tables
  const tinfo = strictTag(w, tagInfo)
  const opts: Record<string, XmlRpcValue> = { src: false, debuginfo: false, separate_src: false, maven: false }
  const custom: Record<string, XmlRpcValue> = {}
  const tagOpts = tinfo.extra["repo.opts"]
  if (isStruct(tagOpts)) Object.assign(opts, tagOpts)
  if (isStruct(override)) {
    for (const [k, v] of Object.entries(override)) {
      if (!(k in opts)) throw new ParameterError({ faultString: `Invalid repo option: ${k}` })
      if (opts[k] !== truthy(v)) custom[k] = truthy(v)
      opts[k] = truthy(v)
    }
  }
  const repoArches = new Set<string>()
  if (opts["separate_src"] === true) repoArches.add("src")
  for (const a of (tinfo.arches ?? "").split(/\s+/).filter((x) => x !== "")) {
    const c = canonArch(a)
    if (c !== "src" && c !== "noarch") repoArches.add(c)
  }
  const id = ++t.seq.repo
  const eventId = event ?? t.seq.event
  t.repos.set(id, { id, tagId: tinfo.id, state: 0, createEvent: eventId, createTs: ctx.now, dist: false, taskId })
  w.repoOpts.set(id, { opts: { ...opts }, custom })
  ctx.dml()
  const latest = tinfo.extra["repo_include_all"] !== true
  const builds = taggedBuilds(w, tinfo.id, { inherit: true, latest })
  const repodir = path.join(w.topdir, "repos", tinfo.name, String(id))
  if (fs.existsSync(repodir)) throw new GenericError({ faultString: `[Errno 17] File exists: '${repodir}'` })
  fs.mkdirSync(path.join(repodir, "groups"), { recursive: true })
  fs.writeFileSync(path.join(repodir, "groups", "comps.xml"), generateComps(groupsOf(w, tinfo.id)))
  const repoJson = {
    id, tag: tinfo.name, tag_id: tinfo.id, task_id: taskId, event_id: eventId, opts, custom_opts: custom,
    with_src: opts["src"], with_separate_src: opts["separate_src"], with_debuginfo: opts["debuginfo"]
  }
  fs.writeFileSync(path.join(repodir, "repo.json"), JSON.stringify(repoJson, null, 2))
  const pkglist = new Map<string, Array<string>>()
  const rpmlist = new Map<string, Array<string>>()
  for (const arch of repoArches) {
    const archdir = path.join(repodir, arch)
    fs.mkdirSync(archdir, { recursive: true })
    fs.symlinkSync(path.relative(archdir, w.topdir), path.join(archdir, "toplink"))
    pkglist.set(arch, [])
    rpmlist.set(arch, [])
  }
  const add = (arch: string, line: string, json: string) => {
    pkglist.get(arch)?.push(line)
    rpmlist.get(arch)?.push(json)
  }
  for (const b of builds) {
    for (const r of rpmsOf(w, b.id)) {
      if (opts["debuginfo"] !== true && isDebuginfo(r.name)) continue
      const line = `toplink/${buildRelDir(b, volumeOf(w, b.id))}/${rpmRelPath(r)}\n`
      const json = `${JSON.stringify(rpmStruct(r))}\n`
      if (r.arch === "src") {
        if (opts["src"] === true) for (const a of repoArches) add(a, line, json)
        if (opts["separate_src"] === true) add("src", line, json)
      } else if (r.arch === "noarch") {
        for (const a of repoArches) if (a !== "src") add(a, line, json)
      } else if (repoArches.has(canonArch(r.arch))) {
        add(canonArch(r.arch), line, json)
      }
    }
  }
  const blocks = blockedIn(w, tinfo.id)
  for (const arch of repoArches) {
    fs.writeFileSync(path.join(repodir, arch, "pkglist"), pkglist.get(arch)!.join(""))
    fs.writeFileSync(path.join(repodir, arch, "rpmlist.jsonl"), rpmlist.get(arch)!.join(""))
    fs.writeFileSync(path.join(repodir, arch, "blocklist"), blocks.map((b) => `${b}\n`).join(""))
  }
  return [id, eventId]
}

const strictRepo = (w: RepoWorld, repoId: XmlRpcValue | undefined): RepoRow => {
  const id = toInt(repoId)
  const r = id === undefined ? undefined : w.tables.repos.get(id)
  if (r === undefined) throw new GenericError({ faultString: "query returned no rows" })
  return r
}

/** `safer_move`: refuses to replace an existing file, as the hub does. */
const saferMove = (src: string, dst: string): void => {
  if (fs.existsSync(dst)) throw new GenericError({ faultString: `Destination exists: ${dst}` })
  fs.renameSync(src, dst)
}

/** `HostExports.repoDone`: the uploaded files into each arch's repodata (`*pkglist` into the arch dir), READY, `latest`. */
export const repoDone = (ctx: CallContext, w: RepoWorld, repoId: XmlRpcValue, data: XmlRpcValue, expire: boolean, updates: XmlRpcValue): void => {
  const r = strictRepo(w, repoId)
  if (!isStruct(data)) throw new ParameterError({ faultString: `Invalid type for value '${pyStr(data)}': ${typeof data}` })
  if (r.state !== 0) throw new GenericError({ faultString: `Repo ${r.id} not in INIT state (got ${r.state})` })
  const tag = w.tables.tags.get(r.tagId)!
  const repodir = path.join(w.topdir, "repos", tag.name, String(r.id))
  const workdir = path.join(w.topdir, "work")
  if (isStruct(updates) && Object.keys(updates).length > 0) {
    const file = path.join(repodir, "repo.json")
    const json: Record<string, unknown> = JSON.parse(fs.readFileSync(file, "utf8"))
    Object.assign(json, updates)
    fs.writeFileSync(file, JSON.stringify(json, null, 2))
  }
  if (!r.dist) {
    for (const [arch, entry] of Object.entries(data)) {
      const pair = asList(entry)
      const files = asList(pair?.[1])
      if (pair === undefined || files === undefined) throw new GenericError({ faultString: `bad repo data for ${arch}: ${pyStr(entry)}` })
      const archdir = path.join(repodir, canonArch(arch))
      if (!fs.existsSync(archdir)) throw new GenericError({ faultString: `Repo arch directory missing: ${archdir}` })
      const datadir = path.join(archdir, "repodata")
      fs.mkdirSync(datadir, { recursive: true })
      for (const f of files) {
        const fn = pyStr(f)
        const src = path.join(workdir, pyStr(pair[0]), fn)
        const dst = fn.endsWith("pkglist") ? path.join(archdir, fn) : path.join(datadir, fn)
        if (!fs.existsSync(src)) throw new GenericError({ faultString: `uploaded file missing: ${src}` })
        saferMove(src, dst)
      }
    }
  }
  r.state = expire ? 2 : 1
  ctx.dml()
  if (!expire) {
    // repos.symlink_if_latest: the newest READY repo of the tag is `latest`.
    const newest = [...w.tables.repos.values()].filter((x) => x.tagId === r.tagId && x.dist === r.dist && x.state === 1)
      .sort((a, b) => b.createEvent - a.createEvent || b.id - a.id)[0]
    if (newest?.id === r.id) {
      const link = path.join(w.topdir, r.dist ? "repos-dist" : "repos", tag.name, "latest")
      fs.rmSync(link, { force: true })
      fs.symlinkSync(String(r.id), link)
    }
  }
}

/** `dist_repo_init(tag, keys, task_opts)` → [repo_id, event] (tests call it directly as an admin would through `distRepo`). */
export const distRepoInit = (w: RepoWorld, now: number, tagInfo: XmlRpcValue, keys: XmlRpcValue, taskOpts: XmlRpcStruct): [number, number] => {
  const t = w.tables
  const tinfo = strictTag(w, tagInfo)
  if (asList(keys) === undefined) throw new ParameterError({ faultString: `Invalid type for value '${pyStr(keys)}': ${typeof keys}` })
  const arches = [...new Set((asList(taskOpts["arch"]) ?? []).map((a) => canonArch(pyStr(a))))]
  const event = toInt(taskOpts["event"]) ?? t.seq.event
  const id = ++t.seq.repo
  t.repos.set(id, { id, tagId: tinfo.id, state: 0, createEvent: event, createTs: now, dist: true, taskId: null })
  const repodir = path.join(w.topdir, "repos-dist", tinfo.name, String(id))
  fs.mkdirSync(repodir, { recursive: true })
  for (const a of arches) fs.mkdirSync(path.join(repodir, a), { recursive: true })
  if (typeof taskOpts["comps"] === "string") {
    fs.mkdirSync(path.join(repodir, "groups"), { recursive: true })
    fs.copyFileSync(path.join(w.topdir, "work", taskOpts["comps"]), path.join(repodir, "groups", "comps.xml"))
  }
  const info = { id, tag: tinfo.name, tag_id: tinfo.id, keys, volume: null, task_opts: taskOpts }
  fs.writeFileSync(path.join(repodir, "repo.json"), JSON.stringify(info, null, 2))
  return [id, event]
}

/** `HostExports.distRepoMove`: the uploaded files (repo_manifest) into the arch dir, rpms linked under Packages/. */
export const distRepoMove = (w: RepoWorld, repoId: XmlRpcValue, uploadpath: string, arch: string): void => {
  const r = strictRepo(w, repoId)
  const tag = w.tables.tags.get(r.tagId)!
  const workdir = path.join(w.topdir, "work")
  const archdir = path.join(w.topdir, "repos-dist", tag.name, String(r.id), canonArch(arch))
  if (!fs.existsSync(archdir)) throw new GenericError({ faultString: `Repo arch directory missing: ${archdir}` })
  if (r.state !== 0) throw new GenericError({ faultString: `Repo is in state: ${["INIT", "READY", "EXPIRED", "DELETED", "PROBLEM"][r.state]}` })
  const manifestFile = path.join(workdir, uploadpath, "repo_manifest")
  if (!fs.existsSync(manifestFile)) throw new GenericError({ faultString: "Missing repo manifest" })
  const files: ReadonlyArray<string> = JSON.parse(fs.readFileSync(manifestFile, "utf8"))
  const pkgsFile = path.join(workdir, uploadpath, "kojipkgs")
  if (!fs.existsSync(pkgsFile)) throw new GenericError({ faultString: "Missing kojipkgs file" })
  const kojipkgs: Record<string, Record<string, unknown>> = JSON.parse(fs.readFileSync(pkgsFile, "utf8"))
  const moves: Array<[string, string]> = []
  for (const rel of files) {
    const src = path.join(workdir, uploadpath, rel)
    if (!fs.existsSync(src)) throw new GenericError({ faultString: `uploaded file missing: ${src}` })
    moves.push([src, path.join(archdir, rel)])
  }
  const links: Array<[string, string]> = []
  for (const [bnp, info] of Object.entries(kojipkgs)) {
    const row = w.tables.rpms.get(Number(info["id"]))
    if (row === undefined || row.buildId === null) throw new GenericError({ faultString: `No such rpm: ${String(info["id"])}` })
    const fields: Record<string, unknown> = {
      name: row.name, version: row.version, release: row.release, arch: row.arch, epoch: row.epoch, size: row.size,
      payloadhash: row.payloadhash, build_id: row.buildId
    }
    for (const [key, value] of Object.entries(fields)) {
      if (info[key] !== value) throw new GenericError({ faultString: `kojipkgs entry does not match db: file ${bnp}, key ${key}` })
    }
    const build = w.tables.builds.get(row.buildId)!
    const sigkey = typeof info["sigkey"] === "string" ? info["sigkey"] : ""
    const rel = sigkey === "" ? rpmRelPath(row) : `data/signed/${sigkey}/${rpmRelPath(row)}`
    links.push([path.join(w.topdir, buildRelDir(build, volumeOf(w, build.id)), rel), path.join(archdir, "Packages", bnp[0]!.toLowerCase(), bnp)])
  }
  for (const [src, dst] of moves) {
    fs.mkdirSync(path.dirname(dst), { recursive: true })
    saferMove(src, dst)
  }
  for (const [src, dst] of links) {
    fs.mkdirSync(path.dirname(dst), { recursive: true })
    if (fs.existsSync(dst)) throw new GenericError({ faultString: `File already in repo: ${dst}` })
    try {
      fs.linkSync(src, dst)
    } catch {
      fs.copyFileSync(src, dst)
    }
  }
}

/** `listTaskOutput(task, all_volumes=)`: the files under the task's work directory. */
export const listTaskOutput = (topdir: string, taskId: number, allVolumes: boolean): XmlRpcValue => {
  const dir = path.join(topdir, "work", "tasks", String(taskId % 10000), String(taskId))
  const out: Array<string> = []
  const walk = (d: string, rel: string): void => {
    let ents: Array<fs.Dirent>
    try {
      ents = fs.readdirSync(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of ents) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`
      if (e.isDirectory()) walk(path.join(d, e.name), r)
      else if (e.name !== ".user") out.push(r)
    }
  }
  walk(dir, "")
  out.sort()
  if (!allVolumes) return out
  return Object.fromEntries(out.map((f) => [f, ["DEFAULT"]]))
}

/** `downloadTaskOutput(taskID, fileName, offset=, size=, volume=)`: a block of a task's file, base64 in a string. */
const downloadTaskOutput = (topdir: string, a: Readonly<Record<string, XmlRpcValue>>): XmlRpcValue => {
  const size = toInt(a["size"])
  if (size === undefined) throw new ParameterError({ faultString: `Invalid value for size: ${pyRepr(a["size"])}` })
  const volume = a["volume"] ?? null
  if (volume !== null && volume !== "" && volume !== "DEFAULT") throw new GenericError({ faultString: `No such volume: ${pyRepr(volume)}` })
  const fileName = pyStr(a["fileName"])
  if (fileName.includes("..")) throw new GenericError({ faultString: `Invalid file name: ${fileName}` })
  const taskId = toInt(a["taskID"]) ?? 0
  const file = path.normalize(path.join(topdir, "work", "tasks", String(taskId % 10000), String(taskId), fileName))
  let data: Buffer
  try {
    if (!fs.statSync(file).isFile()) throw new Error("not a file")
    data = fs.readFileSync(file)
  } catch {
    throw new GenericError({ faultString: `no file "${fileName}" output by task ${taskId}` })
  }
  const offset = toInt(a["offset"]) ?? 0
  const from = offset > 0 ? Math.min(offset, data.length) : offset < 0 ? Math.max(0, data.length + offset) : 0
  const block = size < 0 ? data.subarray(from) : data.subarray(from, from + size)
  return block.toString("base64")
}

// ---------------------------------------------------------------------------------------------
// Method table

const root = (name: string, params: Signature["params"], more: Partial<Signature> = {}): Signature => ({
  qualname: `RootExports.${name}`, method: true, params, ...more
})
const host = (name: string, params: Signature["params"]): Signature => ({ qualname: `HostExports.${name}`, method: true, params })
const W = (ctx: CallContext): RepoWorld => repoWorld(ctx.settings.topdir)
const optEvent = (v: XmlRpcValue | undefined): number | null => (v === undefined || v === null ? null : toInt(v) ?? null)

/** listTaggedRPMS with `arch`, `rpmsigs` (one entry per signature key), `latest` and `inherit`. */
const listTaggedRPMS = (ctx: CallContext, a: Readonly<Record<string, XmlRpcValue>>): XmlRpcValue => {
  const w = W(ctx)
  const tag = strictTag(w, a["tag"])
  const builds = taggedBuilds(w, tag.id, { inherit: truthy(a["inherit"]), latest: truthy(a["latest"]) })
  const archFilter = a["arch"] === null || a["arch"] === undefined ? undefined : asList(a["arch"])?.map(pyStr) ?? [pyStr(a["arch"])]
  const rpms: Array<XmlRpcValue> = []
  for (const b of builds) {
    for (const r of rpmsOf(w, b.id)) {
      if (archFilter !== undefined && !archFilter.includes(r.arch)) continue
      const base = { tag_id: tag.id, tag_name: tag.name }
      // The unsigned copy is listed with sigkey "" (rpmsigs gives one row per signature).
      if (truthy(a["rpmsigs"])) for (const k of ["", ...(w.sigkeys.get(r.id) ?? [])]) rpms.push({ ...rpmStruct(r, k), ...base })
      else rpms.push({ ...rpmStruct(r), ...base })
    }
  }
  return [rpms, builds.map((b) => ({ ...buildStruct(w, b), tag_id: tag.id, tag_name: tag.name }))]
}

/** The repo and notification methods, to spread into the fake hub's method table (after buildrootMethods). */
export const newrepoMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["getFullInheritance", {
    sig: root("getFullInheritance", [["tag"], ["event", null], ["reverse", false]]),
    run: (ctx, a) => {
      const w = W(ctx)
      const t = strictTag(w, a["tag"])
      return inheritance(w, t.id).map((l) => ({
        child_id: l.childId, currdepth: l.depth, filter: [], intransitive: false, maxdepth: null, name: l.tag.name,
        nextdepth: null, noconfig: false, parent_id: l.tag.id, pkg_filter: "", priority: l.priority
      }))
    }
  }],
  ["listTaggedRPMS", {
    sig: root("listTaggedRPMS", [
      ["tag"], ["event", null], ["inherit", false], ["latest", false], ["package", null], ["arch", null],
      ["rpmsigs", false], ["owner", null], ["type", null], ["extra", true], ["draft", null]
    ]),
    run: (ctx, a) => listTaggedRPMS(ctx, a)
  }],
  ["getUser", {
    sig: root("getUser", [["userInfo", null], ["strict", false], ["krb_princs", true], ["groups", false]]),
    run: (ctx, a) => {
      const info = a["userInfo"]
      const u = typeof info === "number" ? ctx.db.users.get(info) : ctx.db.userByName(pyStr(info ?? null))
      if (u === undefined) return null
      return { id: u.id, krb_principals: [], name: u.name, status: u.status, usertype: 0 }
    }
  }],
  ["getChangelogEntries", {
    sig: root("getChangelogEntries", [
      ["buildID", null], ["taskID", null], ["filepath", null], ["author", null], ["before", null], ["after", null],
      ["queryOpts", null], ["strict", false]
    ]),
    run: (ctx, a) => {
      const w = W(ctx)
      const id = toInt(a["buildID"])
      const entries = id === undefined ? [] : w.changelogs.get(id) ?? []
      const q = a["queryOpts"]
      const limit = isStruct(q) ? toInt(q["limit"]) : undefined
      return entries.slice(0, limit ?? entries.length).map((e) => ({ author: e.author, date: e.date, text: e.text }))
    }
  }],
  ["listTaskOutput", {
    sig: root("listTaskOutput", [["taskID"], ["stat", false], ["all_volumes", false], ["strict", false]]),
    run: (ctx, a) => listTaskOutput(ctx.settings.topdir, toInt(a["taskID"]) ?? 0, truthy(a["all_volumes"]))
  }],
  ["downloadTaskOutput", {
    sig: root("downloadTaskOutput", [["taskID"], ["fileName"], ["offset", 0], ["size", -1], ["volume", null]]),
    run: (ctx, a) => downloadTaskOutput(ctx.settings.topdir, a)
  }],
  ["getHost", {
    sig: root("getHost", [["hostInfo"], ["strict", false], ["event", null]]),
    run: (ctx, a) => {
      const info = a["hostInfo"]
      const h = typeof info === "number" ? ctx.db.hosts.get(info) : ctx.db.hostByName(pyStr(info ?? null))
      if (h === undefined) return null
      return {
        arches: h.arches, capacity: h.capacity, comment: h.comment, description: h.description, enabled: h.enabled,
        id: h.id, name: h.name, ready: h.ready, task_load: h.taskLoad, user_id: h.userId
      }
    }
  }],
  ["distRepo", {
    sig: root("distRepo", [["tag"], ["keys"]], { varkw: true }),
    run: (ctx, a, extra) => {
      const w = W(ctx)
      const taskOpts: Record<string, XmlRpcValue> = {
        arch: [], comps: null, delta: [], event: null, inherit: false, latest: false, multilib: false,
        split_debuginfo: false, skip_missing_signatures: false, allow_missing_signatures: false, ...extra
      }
      if (asList(taskOpts["arch"])?.length === 0) {
        taskOpts["arch"] = (strictTag(w, a["tag"]).arches ?? "").split(/\s+/).filter((x) => x !== "")
      }
      const [repoId, event] = distRepoInit(w, ctx.now, a["tag"]!, a["keys"]!, taskOpts)
      ctx.dml()
      taskOpts["event"] = event
      return makeTask(ctx, "distRepo", [a["tag"]!, repoId, a["keys"]!, taskOpts], { priority: 15, channel: "createrepo" })
    }
  }],
  ["host.repoInit", {
    sig: host("repoInit", [["tag"], ["task_id", null], ["event", null], ["opts", null]]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      return repoInit(ctx, W(ctx), a["tag"]!, toInt(a["task_id"]) ?? null, optEvent(a["event"]), a["opts"]!)
    }
  }],
  ["host.repoDone", {
    sig: host("repoDone", [["repo_id"], ["data"], ["expire", false], ["repo_json_updates", null]]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      repoDone(ctx, W(ctx), a["repo_id"]!, a["data"]!, truthy(a["expire"]), a["repo_json_updates"]!)
      return null
    }
  }],
  ["host.distRepoMove", {
    sig: host("distRepoMove", [["repo_id"], ["uploadpath"], ["arch"]]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      distRepoMove(W(ctx), a["repo_id"]!, pyStr(a["uploadpath"]!), pyStr(a["arch"]!))
      return null
    }
  }]
]

/** `buildNotification` params as the hub's `build_notification` makes the task: `[recipients, build, target, weburl]`. */
export const buildNotificationParams = (
  w: RepoWorld, recipients: ReadonlyArray<string>, buildId: number, target: XmlRpcStruct | null, weburl: string
): ReadonlyArray<XmlRpcValue> => {
  const b = w.tables.builds.get(buildId)
  if (b === undefined) throw new Error(`fake hub: no build ${buildId}`)
  return [[...recipients], buildStruct(w, b), target, weburl]
}

/** `tagNotification` params as the hub's `tag_notification` makes the task. */
export const tagNotificationParams = (
  recipients: ReadonlyArray<string>, isSuccessful: boolean, tagId: number | null, fromId: number | null, buildId: number,
  userId: number, ignoreSuccess = false, failureMsg = ""
): ReadonlyArray<XmlRpcValue> => [[...recipients], isSuccessful, tagId, fromId, buildId, userId, ignoreSuccess, failureMsg]
