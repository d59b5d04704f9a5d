/**
 * kojid's `newRepo` (NewRepoTask, koji-protocol.md §7.7): `host.repoInit`, the arches from the
 * repo directory the hub wrote, an old repo to update from, unchanged arches cloned when
 * `copy_old_repodata` allows it, one `createrepo` subtask per other arch, `host.repoDone`, and
 * the result `[repo_id, event_id]`.
 */
import { TagRefOrInfo } from "../koji/refs.js"
import { Effect, Schema } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { ParameterError, GenericError } from "../koji/faults.js"
import { hostApi, type HostApi } from "../hub/HostApi.js"
import * as S from "../hub/schemas.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"
import { copyRepodata, fsStep, isDir, isFile, type RepoTaskDeps, uploadDir, repoTaskDeps } from "./repoCommon.js"
import { repoPath } from "../koji/paths.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskContext, type TaskHandler } from "./handler.js"
import { RefuseTask } from "./errors.js"
import { taskRelPath } from "../koji/paths.js"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { Containers } from "../containers/Containers.js"

const RepoOpts = Schema.NullOr(Schema.Record({ key: Schema.String, value: AnyValue }))
const RepoJson = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** An old repo to update from: its raw struct (handed to createrepo as kojid does) and its path. */
interface OldRepo {
  readonly info: XmlRpcStruct
  readonly id: number
  readonly tagId: number
  readonly createEvent: number
  readonly path: string
}

/** Python truthiness of a legacy boolean option. */
const pyBool = (v: XmlRpcValue): boolean =>
  !(v === null || v === false || v === 0 || v === "" || (Array.isArray(v) && v.length === 0))

const readJson = (file: string) =>
  fsp.readFile(file, "utf8").then((t) => Schema.decodeUnknownSync(RepoJson)(JSON.parse(t)))

const sameFile = async (a: string, b: string): Promise<boolean> => {
  const [x, y] = await Promise.all([fsp.readFile(a), fsp.readFile(b)])
  return x.equals(y)
}

const oldRepoOf = (raw: XmlRpcValue, tagId: number, tagName: string, topdir: string): OldRepo | undefined => {
  if (!isStruct(raw)) return undefined
  const id = Number(raw["id"])
  const createEvent = Number(raw["create_event"])
  return { info: { ...raw, tag_id: tagId }, id, tagId, createEvent, path: repoPath(topdir, id, tagName) }
}

/** kojid's `get_old_repo`: the tag's own repo, else `repo.oldrepo_hint` tags, else the nearest inherited parent's. */
const getOldRepo = (api: HostApi, tinfo: S.TagInfo, deps: RepoTaskDeps) =>
  Effect.gen(function*() {
    if (!deps.kojid.createrepo_update) return undefined
    const topdir = deps.kojid.topdir
    const own = yield* api.getRepoStruct(tinfo.id)
    if (own !== null) return oldRepoOf(own, tinfo.id, tinfo.name, topdir)
    const hintValue = tinfo.extra?.["repo.oldrepo_hint"]
    const hints: ReadonlyArray<XmlRpcValue> = hintValue === undefined ? [] : Array.isArray(hintValue) ? hintValue : [hintValue]
    for (const hint of hints) {
      if (typeof hint !== "string" && typeof hint !== "number") continue
      const reftag = yield* api.getTag(hint, { strict: false })
      if (reftag === null) {
        yield* Effect.logWarning(`oldrepo_hint refers to invalid tag: ${String(hint)}`)
        continue
      }
      const repo = yield* api.getRepoStruct(reftag.id)
      if (repo !== null) return oldRepoOf(repo, reftag.id, reftag.name, topdir)
    }
    const parents = yield* api.getFullInheritance(tinfo.id)
    const byDepth = [...parents].sort((a, b) => (a.currdepth ?? 0) - (b.currdepth ?? 0))
    for (const link of byDepth) {
      const repo = yield* api.getRepoStruct(link.parent_id)
      if (repo !== null) {
        const parent = yield* api.getTag(link.parent_id)
        if (parent !== null) return oldRepoOf(repo, parent.id, parent.name, topdir)
      }
    }
    return undefined
  })

/**
 * kojid's `check_repo`: the old repo can be cloned as a whole only when its repo.json flags
 * and comps equal the new one's and neither side has external repos. kojid compares the old
 * flags with its call kwargs (always false); the new repo.json is what that meant.
 */
const checkRepo = (api: HostApi, old: OldRepo, newPath: string, tagId: number, eventId: number) =>
  Effect.gen(function*() {
    if (!isDir(old.path)) {
      yield* Effect.logDebug(`Source repo doesn't exist ${old.path}`)
      return false
    }
    const jsons = yield* Effect.either(fsStep("repo.json", () =>
      Promise.all([readJson(path.join(old.path, "repo.json")), readJson(path.join(newPath, "repo.json"))])
    ))
    if (jsons._tag === "Left") {
      yield* Effect.logDebug(`Can't open repo.json for repo ${old.id}`)
      return false
    }
    const [a, b] = jsons.right
    for (const key of ["with_debuginfo", "with_src", "with_separate_src"]) {
      if ((a[key] ?? false) !== (b[key] ?? false)) return false
    }
    const srcComps = path.join(old.path, "groups/comps.xml")
    const dstComps = path.join(newPath, "groups/comps.xml")
    if (isFile(srcComps) !== isFile(dstComps)) {
      yield* Effect.logDebug("Comps exists only in one repo")
      return false
    }
    if (isFile(srcComps) && !(yield* fsStep("comps", () => sameFile(srcComps, dstComps)))) {
      yield* Effect.logDebug("Comps differs")
      return false
    }
    if ((yield* api.getExternalRepoList(old.tagId, old.createEvent)).length > 0) {
      yield* Effect.logDebug("Source repo use external repos")
      return false
    }
    if ((yield* api.getExternalRepoList(tagId, eventId)).length > 0) {
      yield* Effect.logDebug("Destination repo use external repos")
      return false
    }
    yield* Effect.logDebug("Repo test passed")
    return true
  })

/** kojid's `check_arch_repo`: the arch's pkglist and blocklist exist on both sides and are identical. */
const checkArchRepo = (oldPath: string, newPath: string, arch: string) =>
  Effect.gen(function*() {
    for (const name of ["blocklist", "pkglist"]) {
      const a = path.join(oldPath, arch, name)
      const b = path.join(newPath, arch, name)
      if (!isFile(a) || !isFile(b)) return false
      if (!(yield* fsStep(name, () => sameFile(a, b)))) return false
    }
    return true
  })

/**
 * kojid's `copy_arch_repo`: the old arch repodata uploaded as this task's output. Each arch
 * goes to its own subdirectory: kojid puts every arch into the task directory itself, where a
 * second arch's repomd.xml would replace the first one's.
 */
const copyArchRepo = (ctx: TaskContext, old: OldRepo, arch: string) => {
  const dst = path.join(ctx.workdir, arch, "repodata")
  const src = path.join(old.path, arch, "repodata")
  const uploadpath = `${taskRelPath(ctx.taskId)}/${arch}`
  return Effect.gen(function*() {
    yield* Effect.logDebug(`Copying repodata ${src} to ${dst}`)
    if (isDir(src)) yield* copyRepodata(src, dst)
    const files = yield* uploadDir(ctx.session, dst, uploadpath)
    return [uploadpath, files] as const
  }).pipe(
    Effect.catchAll((e) =>
      Effect.gen(function*() {
        yield* Effect.logWarning(`Copying repo ${old.id} failed`, e)
        yield* Effect.promise(() => fsp.rm(dst, { recursive: true, force: true }))
        return undefined
      })
    )
  )
}

/** `newRepo` (NewRepoTask, 0.1): `handler(tag, event=None, src=None, debuginfo=None, separate_src=None, opts=None)`. */
export const newRepoHandler = (deps: RepoTaskDeps) =>
  defineHandler({
    name: "NewRepoTask",
    methods: ["newRepo"],
    weight: 0.1,
    signature: signature("NewRepoTask.handler", {
      tag: required(TagRefOrInfo),
      event: optional(Schema.NullOr(Schema.Int), null),
      src: optional(AnyValue, null),
      debuginfo: optional(AnyValue, null),
      separate_src: optional(AnyValue, null),
      opts: optional(RepoOpts, null)
    }),
    run: (p, ctx) =>
      Effect.gen(function*() {
        const topdir = deps.kojid.topdir
        const api = hostApi(ctx.session)
        const tinfo = yield* api.getTag(p.tag, { strict: true, event: p.event })
        if (tinfo === null) return yield* new GenericError({ faultString: `No such tagInfo: ${JSON.stringify(p.tag)}` })
        const legacy: Record<string, XmlRpcValue> = {}
        if (p.src !== null) legacy["src"] = pyBool(p.src)
        if (p.debuginfo !== null) legacy["debuginfo"] = pyBool(p.debuginfo)
        if (p.separate_src !== null) legacy["separate_src"] = pyBool(p.separate_src)
        let opts: XmlRpcStruct | null = p.opts
        if (Object.keys(legacy).length > 0) {
          if (opts !== null) {
            return yield* new ParameterError({ faultString: "opts parameter cannot be combined with legacy options" })
          }
          yield* Effect.logWarning(
            "The src, debuginfo, and separate_src parameters for newRepo tasks are deprecated. Use the opts parameter."
          )
          opts = legacy
        }
        const topRepos = path.join(topdir, "repos")
        if (!isDir(topRepos)) return yield* new RefuseTask({ message: `No access to repos dir ${topRepos}` })

        const [repoId, eventId] = yield* api.repoInit(tinfo.id, { opts, taskId: ctx.taskId, event: p.event })

        const newPath = repoPath(topdir, repoId, tinfo.name)
        if (!isDir(newPath)) return yield* new GenericError({ faultString: `Repo directory missing: ${newPath}` })
        const entries = yield* fsStep(`cannot list ${newPath}`, () => fsp.readdir(newPath))
        const arches = entries.filter((fn) => fn !== "groups" && isFile(path.join(newPath, fn, "pkglist"))).sort()

        const old = yield* getOldRepo(api, tinfo, deps)
        const clonable = deps.kojid.copy_old_repodata && old !== undefined
          ? yield* checkRepo(api, old, newPath, tinfo.id, eventId)
          : false

        const data: Record<string, XmlRpcValue> = {}
        const cloned: Array<string> = []
        const subtasks = new Map<string, number>()
        for (const arch of arches) {
          if (clonable && old !== undefined && (yield* checkArchRepo(old.path, newPath, arch))) {
            const result = yield* copyArchRepo(ctx, old, arch)
            if (result !== undefined) {
              data[arch] = [result[0], result[1]]
              cloned.push(arch)
              continue
            }
          }
          const id = yield* ctx.subtask("createrepo", [repoId, arch, old?.info ?? null], { label: arch, arch: "noarch" })
          subtasks.set(arch, id)
        }
        if (subtasks.size > 0) {
          const results = yield* ctx.wait([...subtasks.values()], { all: true, failany: true })
          for (const [arch, id] of subtasks) data[arch] = results.get(id) ?? null
        }
        const repoJsonUpdates = cloned.length > 0 && old !== undefined
          ? { repoJsonUpdates: { cloned_from_repo_id: old.id, cloned_archs: cloned } }
          : {}
        yield* api.repoDone(repoId, data, repoJsonUpdates)
        return [repoId, eventId]
      })
  })

/** The `newRepo` handler, with kojid.conf's repo options and the Containers service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, AdjutantConfig | Containers> =
  Effect.map(repoTaskDeps, (deps) => [newRepoHandler(deps)])
