/**
 * Builds in the fake hub (koji-protocol.md §7.1, §7.5, §10 item 12): `host.initBuild`,
 * `host.completeBuild` with the import checks of `kojihub.import_build` / `import_rpm` (paths
 * under work, SRPM a source package matching the initBuild N-V-R-E and task, file names equal to
 * their headers' NVRA, brmap ids real buildroots, noarch duplicates identical),
 * `host.failBuild`, `host.moveBuildToScratch`, `host.tagBuild` (tag policy, package list, tag
 * access, completeness) and `host.tagNotification` (a tagNotification task when the tag has
 * recipients), plus the reads `getBuild`, `listBuilds`, `listTagged`, `getChannel`.
 * Every method checks everything before it changes anything, so a fault leaves no trace (these
 * tables are outside the core tables' transactions).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { ActionNotAllowed, BuildError, GenericError, TagError } from "../../src/koji/faults.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { parseRpmHeader, type RpmHeaderInfo } from "../../src/buildroot/rpmHeader.js"
import type { BuildRow } from "./buildroots.js"
import { repoWorld } from "./newrepo.js"
import { type CallContext, asList, isoTime, pyRepr, pyStr, toInt, truthy } from "./context.js"
import type { MethodDef } from "./methods.js"
import { checkPolicy, policyMethods } from "./policies.js"
import { repoRequestMethods } from "./repoRequests.js"
import { verifiedHost } from "./sessions.js"
import type { Signature } from "./signature.js"
import { assertHost, makeTask, taskCancelHooks } from "./tasks.js"
import { BuildState, stateName } from "../../src/koji/states.js"
import {
  type BuildMeta, type BuildWorld, buildWorld, findTag, lookupPackageId, newEvent, strictTag, targetMethods, worldOf
} from "./targets.js"

export { BuildState }

const buildStateName = (s: number): string => stateName(BuildState, s)

const nvrOf = (b: { readonly name: string; readonly version: string; readonly release: string }): string =>
  `${b.name}-${b.version}-${b.release}`

/** `get_build` as the hub returns it. */
export const buildStruct = (ctx: CallContext, w: BuildWorld, b: BuildRow): XmlRpcStruct => {
  // Builds a newRepo/notification test made through newrepo.ts carry their details there.
  const x = repoWorld(ctx.settings.topdir).buildExtra.get(b.id)
  const m: BuildMeta | undefined = w.buildMeta.get(b.id) ?? (x === undefined ? undefined : {
    taskId: x.taskId, ownerId: ctx.db.userByName(x.owner)?.id ?? 1, source: null, extra: null, draft: x.draft,
    startTs: x.creationTs, completionTs: x.completionTs, creationEvent: 0
  })
  const owner = m === undefined ? 1 : m.ownerId
  const pkgId = lookupPackageId(w, b.name)
  return {
    build_id: b.id, cg_id: null, completion_time: isoTime(m?.completionTs ?? null), completion_ts: m?.completionTs ?? null,
    creation_event_id: m?.creationEvent ?? null, creation_time: isoTime(m?.startTs ?? null), creation_ts: m?.startTs ?? null,
    draft: m?.draft ?? false, epoch: b.epoch, extra: m?.extra ?? null, id: b.id, name: b.name, nvr: nvrOf(b),
    owner_id: owner, owner_name: ctx.db.users.get(owner)?.name ?? null, package_id: pkgId, package_name: b.name,
    promoter_id: null, promoter_name: null, promotion_time: null, promotion_ts: null, release: b.release,
    source: m?.source ?? null, start_time: isoTime(m?.startTs ?? null), start_ts: m?.startTs ?? null, state: b.state,
    task_id: m?.taskId ?? null, version: b.version, volume_id: 0, volume_name: "DEFAULT", cg_name: null
  }
}

/** `get_build(info)`: by id, N-V-R string, or `{name, version, release}` struct. */
export const findBuild = (w: BuildWorld, info: XmlRpcValue | undefined): BuildRow | undefined => {
  if (typeof info === "number") return w.tables.builds.get(info)
  let want: { name: string; version: string; release: string } | undefined
  if (typeof info === "string") {
    const r = info.lastIndexOf("-")
    const v = r < 0 ? -1 : info.lastIndexOf("-", r - 1)
    if (v < 0) return undefined
    want = { name: info.slice(0, v), version: info.slice(v + 1, r), release: info.slice(r + 1) }
  } else if (isStruct(info)) {
    if (typeof info["id"] === "number") return w.tables.builds.get(info["id"])
    want = { name: pyStr(info["name"]), version: pyStr(info["version"]), release: pyStr(info["release"]) }
  }
  if (want === undefined) return undefined
  for (const b of w.tables.builds.values()) {
    if (b.name === want.name && b.version === want.version && b.release === want.release) return b
  }
  return undefined
}

const strictBuild = (w: BuildWorld, info: XmlRpcValue | undefined): BuildRow => {
  const b = findBuild(w, info)
  if (b === undefined) throw new GenericError({ faultString: `No such build: ${pyRepr(info ?? null)}` })
  return b
}

const setBuildState = (w: BuildWorld, b: BuildRow, state: number): BuildRow => {
  const row = { ...b, state }
  w.tables.builds.set(b.id, row)
  return row
}

// kojihub Task.cancel: "cancel associated builds (only if state is 'BUILDING')".
taskCancelHooks.push((ctx, taskId) => {
  const w = worldOf(ctx)
  for (const b of [...w.tables.builds.values()]) {
    if (b.state === BuildState.BUILDING && w.buildMeta.get(b.id)?.taskId === taskId) setBuildState(w, b, BuildState.CANCELED)
  }
})

// ---------------------------------------------------------------------------------------------
// Import checks

const workdir = (ctx: CallContext): string => path.join(ctx.settings.topdir, "work")

/** `<topdir>/work/<relpath>`; a path that is absolute or climbs out of work is refused. */
const workFile = (ctx: CallContext, relpath: XmlRpcValue | undefined): string => {
  if (typeof relpath !== "string") throw new GenericError({ faultString: `Invalid type for value '${pyRepr(relpath ?? null)}': ${typeof relpath}, expected type <class 'str'>` })
  const base = workdir(ctx)
  const full = path.resolve(base, relpath)
  if (relpath.startsWith("/") || !full.startsWith(`${base}${path.sep}`)) {
    throw new GenericError({ faultString: `No such file: ${base}/${relpath} (not under work/)` })
  }
  if (!fs.existsSync(full)) throw new GenericError({ faultString: `No such file: ${base}/${relpath}` })
  return full
}

const header = (file: string): RpmHeaderInfo => {
  let buf: Buffer
  try {
    buf = fs.readFileSync(file)
  } catch (e) {
    throw new GenericError({ faultString: `Error reading rpm header: ${file}: ${String(e)}` })
  }
  const h = parseRpmHeader(buf)
  if (typeof h === "string") throw new GenericError({ faultString: `Error reading header of ${file}: ${h}` })
  return h
}

/** The header fields rpmdiff compares (ignoring size, digests and times, as `ignore='S5TN'`). */
const diffKey = (h: RpmHeaderInfo): string =>
  JSON.stringify([h.name, h.version, h.release, h.epoch, h.arch, h.sourcerpm, h.packager, h.vendor, h.distribution])

/** `check_noarch_rpms`: noarch duplicates must be identical; returns the rpms without them. */
const checkNoarchRpms = (ctx: CallContext, rpms: ReadonlyArray<string>): Array<string> => {
  const result: Array<string> = []
  const byName = new Map<string, Array<string>>()
  for (const rel of rpms) {
    if (rel.endsWith(".noarch.rpm")) {
      const base = path.basename(rel)
      const list = byName.get(base)
      if (list !== undefined) list.push(rel)
      else {
        byName.set(base, [rel])
        result.push(rel)
      }
    } else result.push(rel)
  }
  for (const [base, list] of byName) {
    if (list.length < 2) continue
    const first = diffKey(header(path.join(workdir(ctx), list[0]!)))
    for (const other of list.slice(1)) {
      const k = diffKey(header(path.join(workdir(ctx), other)))
      if (k !== first) {
        throw new BuildError({
          faultString: `The following noarch package built differently on different architectures: ${base}\nrpmdiff output was:\n${first}\n${k}`
        })
      }
    }
  }
  return result
}

const stringList = (v: XmlRpcValue | undefined, what: string): Array<string> => {
  const l = asList(v)
  if (l === undefined) throw new GenericError({ faultString: `Invalid type for value '${pyRepr(v ?? null)}': expected list (${what})` })
  return l.map((x) => pyStr(x))
}

/** The hub's import of a finished build (`import_build` + `import_rpm`); returns the checked plan. */
const checkImport = (
  ctx: CallContext, w: BuildWorld, taskId: number, buildId: XmlRpcValue | undefined, srpmArg: XmlRpcValue | undefined,
  rpmsArg: XmlRpcValue | undefined, brmapArg: XmlRpcValue | undefined
) => {
  const brmap = brmapArg === null || brmapArg === undefined ? {} : brmapArg
  if (!isStruct(brmap)) throw new GenericError({ faultString: `Invalid type for value '${pyRepr(brmap)}': expected dict` })
  if (typeof srpmArg !== "string") throw new GenericError({ faultString: `Invalid type for value '${pyRepr(srpmArg ?? null)}': expected str` })
  const rpmsAll = stringList(rpmsArg, "rpms")
  const files = new Map<string, string>()
  for (const rel of [srpmArg, ...rpmsAll]) files.set(rel, workFile(ctx, rel))
  const rpms = checkNoarchRpms(ctx, rpmsAll)
  for (const v of Object.values(brmap)) {
    const id = toInt(v)
    if (id === undefined || !w.tables.buildroots.has(id)) throw new GenericError({ faultString: `no buildroot with ID: ${pyStr(v)}` })
  }
  const srpmFile = files.get(srpmArg)!
  const sh = header(srpmFile)
  if (!sh.sourcepackage) throw new GenericError({ faultString: `not a source package: ${srpmFile}` })
  const binfo = strictBuild(w, buildId)
  const meta = w.buildMeta.get(binfo.id)
  const rpmSide: Record<string, XmlRpcValue> = { name: sh.name, version: sh.version, release: sh.release, epoch: sh.epoch, task_id: taskId }
  const buildSide: Record<string, XmlRpcValue> = {
    name: binfo.name, version: binfo.version, release: binfo.release, epoch: binfo.epoch, task_id: meta?.taskId ?? null
  }
  for (const key of ["name", "version", "release", "epoch", "task_id"]) {
    if (rpmSide[key] !== buildSide[key]) {
      throw new GenericError({
        faultString: `Unable to complete build: ${key} mismatch (build: ${pyStr(buildSide[key] ?? null)}, rpm: ${pyStr(rpmSide[key] ?? null)})`
      })
    }
  }
  if (binfo.state !== BuildState.BUILDING) {
    throw new GenericError({ faultString: `Unable to complete build: state is ${buildStateName(binfo.state)}` })
  }
  const srpmName = `${nvrOf(binfo)}.src.rpm`
  const headers: Array<{ readonly rel: string; readonly h: RpmHeaderInfo }> = []
  for (const rel of [srpmArg, ...rpms]) {
    const file = files.get(rel)!
    const h = rel === srpmArg ? sh : header(file)
    const arch = h.sourcepackage ? "src" : h.arch
    const expected = `${h.name}-${h.version}-${h.release}.${arch}.rpm`
    const base = path.basename(file)
    if (base !== expected) throw new GenericError({ faultString: `bad filename: ${base} (expected ${expected})` })
    if (!h.sourcepackage) {
      if (h.sourcerpm !== srpmName) throw new GenericError({ faultString: `srpm mismatch for ${file}: ${h.sourcerpm} (expected ${srpmName})` })
    } else if (base !== srpmName) {
      throw new GenericError({ faultString: `srpm mismatch for ${file}: ${base} (expected ${srpmName})` })
    }
    headers.push({ rel, h })
  }
  return { binfo, brmap, rpms, headers }
}

/** kojihub's host-call prologue: `Host().verify()`, then `Task(task_id).assertHost(host.id)`; the task id. */
const hostTask = (ctx: CallContext, taskIdArg: XmlRpcValue | undefined): number => {
  const host = verifiedHost(ctx)
  const taskId = toInt(taskIdArg) ?? -1
  assertHost(ctx, taskId, host.id)
  return taskId
}

const taskOwner = (ctx: CallContext, taskId: number): number => ctx.db.tasks.get(taskId)?.owner ?? 1

/** Moves a file under work to `dest` and leaves a symlink behind (`move_and_symlink`). */
const moveAndSymlink = (src: string, dest: string): void => {
  fs.mkdirSync(path.dirname(dest), { recursive: true })
  fs.renameSync(src, dest)
  fs.symlinkSync(dest, src)
}

// ---------------------------------------------------------------------------------------------
// Admin helpers for tests

/** Adds a COMPLETE build (for tagging and listTagged tests); returns its id. */
export const addBuild = (
  topdir: string, nvr: { readonly name: string; readonly version: string; readonly release: string; readonly epoch?: number | null },
  state: number = BuildState.COMPLETE,
  taskId: number | null = null
): number => {
  const w = buildWorld(topdir)
  const id = ++w.tables.seq.build
  w.tables.builds.set(id, { id, name: nvr.name, version: nvr.version, release: nvr.release, epoch: nvr.epoch ?? null, state })
  w.buildMeta.set(id, {
    taskId, ownerId: 1, source: null, extra: null, draft: false, startTs: Date.now() / 1000, completionTs: null,
    creationEvent: newEvent(w, Date.now() / 1000)
  })
  lookupPackageId(w, nvr.name)
  return id
}

/** Tags a build as an admin would (no checks); returns the tag event. */
export const tagBuildAdmin = (topdir: string, tagId: number, buildId: number): number => {
  const w = buildWorld(topdir)
  const ev = newEvent(w, Date.now() / 1000)
  w.tagListing.push({ tagId, buildId, createEvent: ev, revokeEvent: null })
  const list = w.tables.tagged.get(tagId) ?? []
  w.tables.tagged.set(tagId, [buildId, ...list.filter((b) => b !== buildId)])
  return ev
}

/** The builds tagged into a tag (latest first). */
export const taggedBuilds = (topdir: string, tagId: number): ReadonlyArray<number> => buildWorld(topdir).tables.tagged.get(tagId) ?? []

// ---------------------------------------------------------------------------------------------
// Methods

const host = (name: string, params: Signature["params"]): Signature => ({ qualname: `HostExports.${name}`, method: true, params })
const root = (name: string, params: Signature["params"]): Signature => ({ qualname: `RootExports.${name}`, method: true, params })

const taggedAt = (w: BuildWorld, tagId: number, event: number | null): Array<number> => {
  const current = w.tables.tagged.get(tagId) ?? []
  if (event === null) return current
  return current.filter((b) => {
    const rows = w.tagListing.filter((l) => l.tagId === tagId && l.buildId === b)
    // Builds loaded with the fixture carry no tag_listing row: tagged from the start.
    if (rows.length === 0) return true
    return rows.some((l) => l.createEvent <= event && (l.revokeEvent === null || l.revokeEvent > event))
  })
}

const buildMethodsOwn: ReadonlyArray<readonly [string, MethodDef]> = [
  ["getBuild", {
    sig: root("getBuild", [["buildInfo"], ["strict", false]]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const b = findBuild(w, a["buildInfo"])
      if (b === undefined) {
        if (truthy(a["strict"])) throw new GenericError({ faultString: `No such build: ${pyRepr(a["buildInfo"] ?? null)}` })
        return null
      }
      return buildStruct(ctx, w, b)
    }
  }],
  ["listBuilds", {
    sig: root("listBuilds", [
      ["packageID", null], ["userID", null], ["taskID", null], ["prefix", null], ["state", null], ["volumeID", null],
      ["source", null], ["createdBefore", null], ["createdAfter", null], ["completeBefore", null], ["completeAfter", null],
      ["type", null], ["typeInfo", null], ["queryOpts", null], ["pattern", null], ["cgID", null], ["draft", null]
    ]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const out: Array<XmlRpcValue> = []
      for (const b of w.tables.builds.values()) {
        const m = w.buildMeta.get(b.id)
        if (a["taskID"] !== null && (m?.taskId ?? null) !== toInt(a["taskID"])) continue
        if (a["state"] !== null && b.state !== toInt(a["state"])) continue
        if (a["prefix"] !== null && !b.name.startsWith(pyStr(a["prefix"]))) continue
        out.push(buildStruct(ctx, w, b))
      }
      return out
    }
  }],
  ["listTagged", {
    sig: root("listTagged", [
      ["tag"], ["event", null], ["inherit", false], ["prefix", null], ["latest", false], ["package", null], ["owner", null],
      ["type", null], ["strict", true], ["extra", false], ["draft", null]
    ]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const tag = strictTag(w, a["tag"])
      const event = a["event"] === null ? null : toInt(a["event"]) ?? null
      const out: Array<XmlRpcValue> = []
      for (const id of taggedAt(w, tag.id, event)) {
        const b = w.tables.builds.get(id)
        if (b === undefined) continue
        if (a["package"] !== null && b.name !== pyStr(a["package"])) continue
        if (a["prefix"] !== null && !b.name.startsWith(pyStr(a["prefix"]))) continue
        out.push({ ...buildStruct(ctx, w, b), tag_id: tag.id, tag_name: tag.name })
      }
      return out
    }
  }],
  ["getChannel", {
    sig: root("getChannel", [["channelInfo"], ["strict", false]]),
    run: (ctx, a) => {
      const info = a["channelInfo"]
      const c = typeof info === "number" || typeof info === "string" ? ctx.db.channel(info) : undefined
      if (c === undefined) {
        if (truthy(a["strict"])) throw new GenericError({ faultString: `No such channel: ${pyStr(info ?? null)}` })
        return null
      }
      return { comment: null, description: null, enabled: c.enabled, id: c.id, name: c.name }
    }
  }],
  ["host.initBuild", {
    sig: host("initBuild", [["data"]]),
    run: (ctx, a) => {
      const hostRow = verifiedHost(ctx)
      const data = a["data"]
      if (!isStruct(data)) throw new GenericError({ faultString: "data must be a dict" })
      const taskId = toInt(data["task_id"])
      if (taskId === undefined) throw new GenericError({ faultString: `Invalid task id: ${pyRepr(data["task_id"] ?? null)}` })
      assertHost(ctx, taskId, hostRow.id)
      const w = worldOf(ctx)
      const name = data["name"]
      if (typeof name !== "string" || name === "") throw new GenericError({ faultString: "No name or package id provided for build" })
      for (const f of ["version", "release", "epoch"]) {
        if (!(f in data)) throw new GenericError({ faultString: `No ${f} value for build` })
      }
      const nvr = { name, version: pyStr(data["version"]), release: pyStr(data["release"]) }
      const old = findBuild(w, nvr)
      if (old !== undefined) {
        const oldTask = w.buildMeta.get(old.id)?.taskId ?? null
        if (old.state === BuildState.BUILDING && oldTask === taskId) return old.id
        if (old.state === BuildState.BUILDING) throw new GenericError({ faultString: `Build already in progress (task ${oldTask})` })
        if (old.state !== BuildState.FAILED && old.state !== BuildState.CANCELED) {
          throw new GenericError({ faultString: `Build already exists (id=${old.id}, state=${buildStateName(old.state)}): ${pyRepr(data)}` })
        }
      }
      const epoch = data["epoch"] === null ? null : toInt(data["epoch"]) ?? null
      const id = old?.id ?? ++w.tables.seq.build
      w.tables.builds.set(id, { id, ...nvr, epoch, state: BuildState.BUILDING })
      w.buildMeta.set(id, {
        taskId, ownerId: taskOwner(ctx, taskId), source: typeof data["source"] === "string" ? data["source"] : null,
        extra: isStruct(data["extra"]) ? { ...data["extra"] } : null, draft: truthy(data["draft"]), startTs: ctx.now,
        completionTs: null, creationEvent: newEvent(w, ctx.now)
      })
      lookupPackageId(w, name)
      return id
    }
  }],
  ["host.completeBuild", {
    sig: host("completeBuild", [["task_id"], ["build_id"], ["srpm"], ["rpms"], ["brmap", null], ["logs", null]]),
    run: (ctx, a) => {
      const taskId = hostTask(ctx, a["task_id"])
      const w = worldOf(ctx)
      const plan = checkImport(ctx, w, taskId, a["build_id"], a["srpm"], a["rpms"], a["brmap"])
      const binfo = setBuildState(w, plan.binfo, BuildState.COMPLETE)
      const meta = w.buildMeta.get(binfo.id)
      if (meta !== undefined) meta.completionTs = ctx.now
      for (const { h } of plan.headers) {
        const id = ++w.tables.seq.rpm
        w.tables.rpms.set(id, {
          id, name: h.name, version: h.version, release: h.release, epoch: h.epoch, arch: h.sourcepackage ? "src" : h.arch,
          payloadhash: h.sigmd5 ?? "", size: h.size ?? 0, buildtime: h.buildtime ?? 0, buildId: binfo.id, externalRepoId: null,
          draft: false
        })
      }
      w.imports.push({ buildId: binfo.id, srpm: pyStr(a["srpm"] ?? null), rpms: plan.rpms, brmap: plan.brmap, logs: a["logs"] ?? null })
      return buildStruct(ctx, w, binfo)
    }
  }],
  ["host.failBuild", {
    sig: host("failBuild", [["task_id"], ["build_id"]]),
    run: (ctx, a) => {
      hostTask(ctx, a["task_id"])
      const w = worldOf(ctx)
      const b = strictBuild(w, a["build_id"])
      const meta = w.buildMeta.get(b.id)
      if (b.state !== BuildState.BUILDING) {
        throw new GenericError({ faultString: `cannot update build ${b.id}, state: ${buildStateName(b.state)}` })
      }
      if (meta?.completionTs !== null && meta?.completionTs !== undefined) {
        throw new GenericError({ faultString: `cannot update build ${b.id}, completed at ${isoTime(meta.completionTs)}` })
      }
      setBuildState(w, b, BuildState.FAILED)
      if (meta !== undefined) meta.completionTs = ctx.now
      return null
    }
  }],
  ["host.moveBuildToScratch", {
    sig: host("moveBuildToScratch", [["task_id"], ["srpm"], ["rpms"], ["logs", null]]),
    run: (ctx, a) => {
      const taskId = hostTask(ctx, a["task_id"])
      const srpm = a["srpm"]
      const all = [srpm ?? null, ...stringList(a["rpms"], "rpms")]
      const files = all.map((rel) => workFile(ctx, rel))
      const rpms = checkNoarchRpms(ctx, stringList(a["rpms"], "rpms"))
      const logs = a["logs"]
      const logFiles: Array<readonly [string, string]> = []
      if (isStruct(logs)) {
        for (const [key, list] of Object.entries(logs)) for (const rel of stringList(list, "logs")) logFiles.push([key, workFile(ctx, rel)])
      }
      const user = ctx.db.users.get(taskOwner(ctx, taskId))?.name ?? "kojiadmin"
      const dir = path.join(ctx.settings.topdir, "scratch", user, `task_${taskId}`)
      const keep = new Set([pyStr(srpm ?? null), ...rpms])
      all.forEach((rel, i) => {
        if (keep.has(pyStr(rel))) moveAndSymlink(files[i]!, path.join(dir, path.basename(files[i]!)))
      })
      for (const [key, file] of logFiles) {
        moveAndSymlink(file, path.join(dir, key === "" ? "logs" : path.join("logs", key), path.basename(file)))
      }
      return null
    }
  }],
  ["host.tagBuild", {
    sig: host("tagBuild", [["task_id"], ["tag"], ["build"], ["force", false], ["fromtag", null]]),
    run: (ctx, a) => {
      const taskId = hostTask(ctx, a["task_id"])
      const w = worldOf(ctx)
      const build = strictBuild(w, a["build"])
      const tag = strictTag(w, a["tag"])
      const userId = taskOwner(ctx, taskId)
      const force = truthy(a["force"])
      let fromtag = a["fromtag"] ?? null
      if (truthy(fromtag) && typeof fromtag !== "string") fromtag = strictTag(w, fromtag).name
      checkPolicy(ctx, "tag", {
        tag: a["tag"] ?? null, build: buildStruct(ctx, w, build), fromtag, user_id: userId,
        operation: fromtag === null ? "tag" : "move"
      }, "deny", !force || ctx.db.users.get(userId)?.admin !== true)
      const pkg = w.packages.get(`${tag.id}/${build.name}`)
      const isAdmin = ctx.db.users.get(userId)?.admin === true
      if (pkg === undefined || pkg.blocked) {
        const msg = pkg === undefined ? `Package ${build.name} not in list for ${pyStr(a["tag"] ?? null)}` : `Package ${build.name} blocked in ${pyStr(a["tag"] ?? null)}`
        if (!(force && isAdmin)) throw new TagError({ faultString: msg })
      }
      const perm = w.tagPerms.get(tag.id)
      const perms = w.userPerms.get(userId) ?? new Set<string>()
      let denied: string | null = null
      if (tag.locked) denied = "tag is locked"
      else if (perm !== undefined && !perms.has(perm)) denied = `tag requires ${perm} permission`
      if (denied !== null && !(isAdmin && force)) throw new ActionNotAllowed({ faultString: denied })
      if (build.state !== BuildState.COMPLETE) {
        throw new TagError({ faultString: `build ${nvrOf(build)} not complete: state ${buildStateName(build.state)}` })
      }
      const current = w.tables.tagged.get(tag.id) ?? []
      if (current.includes(build.id) && !force) {
        throw new TagError({ faultString: `build ${nvrOf(build)} already tagged (${tag.name})` })
      }
      const from = fromtag === null ? undefined : findTag(w, fromtag)
      if (fromtag !== null && (from === undefined || !(w.tables.tagged.get(from.id) ?? []).includes(build.id))) {
        throw new TagError({ faultString: `build ${nvrOf(build)} not in tag ${pyStr(fromtag)}` })
      }
      if (pkg === undefined || pkg.blocked) {
        const id = lookupPackageId(w, build.name)
        w.packages.set(`${tag.id}/${build.name}`, { tagId: tag.id, packageId: id, name: build.name, blocked: false, extraArches: null, ownerId: userId })
      }
      const ev = newEvent(w, ctx.now)
      if (from !== undefined) {
        w.tables.tagged.set(from.id, (w.tables.tagged.get(from.id) ?? []).filter((b) => b !== build.id))
        for (const l of w.tagListing) if (l.tagId === from.id && l.buildId === build.id && l.revokeEvent === null) l.revokeEvent = ev
      }
      for (const l of w.tagListing) if (l.tagId === tag.id && l.buildId === build.id && l.revokeEvent === null) l.revokeEvent = ev
      w.tagListing.push({ tagId: tag.id, buildId: build.id, createEvent: ev, revokeEvent: null })
      w.tables.tagged.set(tag.id, [build.id, ...current.filter((b) => b !== build.id)])
      return null
    }
  }],
  ["host.tagNotification", {
    sig: host("tagNotification", [
      ["is_successful"], ["tag_id"], ["from_id"], ["build_id"], ["user_id"], ["ignore_success", false], ["failure_msg", ""]
    ]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      const w = worldOf(ctx)
      const buildId = toInt(a["build_id"]) ?? -1
      const build = findBuild(w, a["build_id"])
      const recipients: Array<string> = []
      for (const key of ["tag_id", "from_id"]) {
        const t = a[key] === null ? undefined : findTag(w, a[key])
        if (t !== undefined) for (const r of w.notificationRecipients.get(t.id) ?? []) if (!recipients.includes(r)) recipients.push(r)
      }
      const success = truthy(a["is_successful"])
      const ignore = truthy(a["ignore_success"])
      let taskId: number | null = null
      if (build !== undefined && recipients.length > 0 && !(success && ignore)) {
        taskId = makeTask(ctx, "tagNotification", [
          recipients, a["is_successful"] ?? null, a["tag_id"] ?? null, a["from_id"] ?? null, a["build_id"] ?? null,
          a["user_id"] ?? null, a["ignore_success"] ?? null, a["failure_msg"] ?? ""
        ], {})
      }
      w.tagNotifications.push({
        isSuccessful: success, tagId: a["tag_id"] === null ? null : toInt(a["tag_id"]) ?? null,
        fromId: a["from_id"] === null ? null : toInt(a["from_id"]) ?? null, buildId,
        userId: a["user_id"] === null ? null : toInt(a["user_id"]) ?? null, ignoreSuccess: ignore,
        failureMsg: pyStr(a["failure_msg"] ?? ""), taskId
      })
      return null
    }
  }]
]

/** Every build-side fake-hub method: targets, events, policies, repo requests and builds. */
export const buildMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ...targetMethods,
  ...policyMethods,
  ...repoRequestMethods,
  ...buildMethodsOwn
]
