/**
 * kojid's `createrepo` (CreaterepoTask, koji-protocol.md §7.8): `createrepo_c` — and
 * `mergerepo_c` when the tag has external repos — run in a bootstrap-image container with the
 * hub's topdir mounted read-only and the task workdir writable, no network; the repodata is
 * uploaded to the task directory and the result is `[uploadpath, [files]]`.
 */
import { Effect, Schema } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { type ContainerMount } from "../containers/Containers.js"
import { GenericError } from "../koji/faults.js"
import { hostApi, type HostApi } from "../hub/HostApi.js"
import { type ExternalRepo } from "../hub/schemas.js"
import { RepoState } from "../koji/states.js"
import { type RepoTaskDeps, EMPTY_REPO_TEXT, formatShellCmd, parseStatus, isDir, isFile, fsStep, runLogged, createrepoCommand, roMount, rwMount, copyRepodata, uploadDir, tail } from "./repoCommon.js"
import { defineHandler, Int, optional, required, signature, type TaskContext } from "./handler.js"
import { RefuseTask } from "./errors.js"
import { repoPath, taskRelPath } from "../koji/paths.js"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { Containers } from "../containers/Containers.js"
import type { TaskHandler } from "./handler.js"
import { repoTaskDeps } from "./repoCommon.js"

const OldRepo = Schema.NullOr(Schema.Struct({ id: Schema.Number }, Schema.Record({ key: Schema.String, value: Schema.Unknown })))

interface CreaterepoRun {
  readonly deps: RepoTaskDeps
  readonly ctx: TaskContext
  readonly api: HostApi
  readonly repoId: number
  readonly repodir: string
  readonly outdir: string
  readonly datadir: string
}

const createLocalRepo = (
  r: CreaterepoRun,
  arch: string,
  pkglist: string | null,
  groupdata: string,
  oldrepo: { readonly id: number } | null
) =>
  Effect.gen(function*() {
    const k = r.deps.kojid
    yield* fsStep(`cannot create ${r.outdir}`, () => fsp.mkdir(r.outdir, { recursive: true }))
    const cmd = [...createrepoCommand(k), "-vd", "-o", r.outdir]
    if (pkglist !== null) cmd.push("-i", pkglist)
    if (isFile(groupdata)) cmd.push("-g", groupdata)
    const mounts = [roMount(k.topdir), rwMount(r.ctx.workdir)]
    if (pkglist !== null && oldrepo !== null && k.createrepo_update) {
      // The old repo may belong to an inherited tag: its path comes from its own tag name.
      const old = yield* r.api.repoInfo(oldrepo.id, true)
      const olddatadir = old === null ? undefined : path.join(repoPath(k.topdir, old.id, old.tag_name ?? ""), arch, "repodata")
      if (olddatadir === undefined || !isDir(olddatadir)) {
        yield* Effect.logWarning(`old repodata is missing: ${olddatadir ?? `repo ${oldrepo.id}`}`)
      } else {
        yield* copyRepodata(olddatadir, r.datadir)
        // mergerepo_c rewrites pkgorigins.gz when there are external repos; a stale one must go.
        yield* fsStep("cannot remove old pkgorigins.gz", () => fsp.rm(path.join(r.datadir, "pkgorigins.gz"), { force: true }))
        cmd.push("--update")
        if (k.createrepo_skip_stat) cmd.push("--skip-stat")
      }
    }
    cmd.push(pkglist === null ? r.outdir : r.repodir)
    const { exitCode, output } = yield* runLogged({ deps: r.deps, ctx: r.ctx, cmd, logName: "createrepo.log", mounts })
    if (exitCode !== 0) {
      return yield* new GenericError({
        faultString: `failed to create repo: ${parseStatus(exitCode, formatShellCmd(cmd))}\n${tail(output)}`
      })
    }
  })

/** `mergerepo_c --version` → [major, minor, patch], or undefined when it cannot be read. */
const mergerepoVersion = (r: CreaterepoRun) =>
  r.deps.containers.run({
    image: r.deps.image,
    command: ["/usr/bin/mergerepo_c", "--version"],
    role: "createrepo",
    taskId: r.ctx.taskId,
    readOnlyRoot: true
  }).pipe(
    Effect.map((res) => {
      const m = /^Version: (\d+)\.(\d+)\.(\d+)/.exec(res.stdout.trim())
      return res.exitCode === 0 && m !== null ? [Number(m[1]), Number(m[2]), Number(m[3])] as const : undefined
    }),
    Effect.catchAll((e) => Effect.as(Effect.logWarning("Unable to detect mergerepo_c version", e), undefined))
  )

const atLeast = (v: readonly [number, number, number] | undefined, want: readonly [number, number, number]): boolean => {
  if (v === undefined) return false
  for (let i = 0; i < 3; i++) if (v[i] !== want[i]) return v[i]! > want[i]!
  return true
}

/** A `file://` URL's directory (to mount), or undefined for a remote URL. */
const fileUrlPath = (url: string): string | undefined => {
  if (!url.startsWith("file://")) return undefined
  try {
    return decodeURIComponent(new URL(url).pathname)
  } catch {
    return url.slice("file://".length)
  }
}

/** The mergerepo_c command of kojid's `merge_repos` (mode from the external repos). */
export const mergeCommand = (
  externalRepos: ReadonlyArray<ExternalRepo>,
  arch: string,
  localdir: string,
  outdir: string,
  repodir: string,
  groupdata: string | undefined,
  version: readonly [number, number, number] | undefined
): { readonly cmd: ReadonlyArray<string>; readonly urls: ReadonlyArray<string> } | string => {
  const modes = [...new Set(externalRepos.map((r) => r.merge_mode ?? "koji"))]
  if (modes.length > 1) return `Found multiple merge modes for external repos: ${modes.join(", ")}\n`
  const mode = modes[0] ?? "koji"
  const urls = [`file://${localdir}/`]
  for (const repo of externalRepos) {
    if (repo.arches && !repo.arches.split(/\s+/).includes(arch)) continue
    urls.push(repo.url.replaceAll("$arch", arch))
  }
  let cmd: Array<string>
  if (mode === "simple") {
    if (!atLeast(version, [0, 13, 0])) {
      return `mergerepo_c is not installed or has low version: ${version?.join(".") ?? "None"} (0.13.0 needed for --simple)`
    }
    cmd = ["/usr/bin/mergerepo_c", "--koji", "--simple"]
  } else if (mode === "bare") {
    cmd = ["/usr/bin/mergerepo_c", "--pkgorigins", "--all"]
  } else {
    cmd = ["/usr/bin/mergerepo_c", "--koji"]
  }
  if (mode !== "bare") cmd.push("-b", `${repodir}/blocklist`)
  cmd.push("-a", arch, "-o", outdir)
  if (atLeast(version, [0, 15, 11])) cmd.push("--arch-expand")
  if (groupdata !== undefined) cmd.push("-g", groupdata)
  for (const u of urls) cmd.push("-r", u)
  return { cmd, urls }
}

const mergeRepos = (r: CreaterepoRun, externalRepos: ReadonlyArray<ExternalRepo>, arch: string, groupdata: string) =>
  Effect.gen(function*() {
    const localdir = path.join(r.ctx.workdir, `repo_${r.repoId}_premerge`)
    const version = yield* mergerepoVersion(r)
    const built = mergeCommand(externalRepos, arch, localdir, r.outdir, r.repodir, isFile(groupdata) ? groupdata : undefined, version)
    if (typeof built === "string") return yield* new GenericError({ faultString: built })
    yield* fsStep(`cannot move ${r.outdir}`, () => fsp.rename(r.outdir, localdir))
    yield* fsStep(`cannot create ${r.outdir}`, () => fsp.mkdir(r.outdir, { recursive: true }))
    // Local external repos are read through a read-only bind; remote ones need the network.
    const mounts: Array<ContainerMount> = [roMount(r.deps.kojid.topdir), rwMount(r.ctx.workdir)]
    let remote = false
    for (const u of built.urls.slice(1)) {
      const p = fileUrlPath(u)
      if (p === undefined) remote = true
      else if (!mounts.some((m) => m.destination === p) && !p.startsWith(`${r.deps.kojid.topdir}/`) && isDir(p)) mounts.push(roMount(p))
    }
    const { exitCode, output } = yield* runLogged({
      deps: r.deps,
      ctx: r.ctx,
      cmd: built.cmd,
      logName: "mergerepos.log",
      mounts,
      env: { TMPDIR: r.ctx.workdir },
      network: remote ? "bridge" : "none"
    })
    if (exitCode !== 0) {
      return yield* new GenericError({
        faultString: `failed to merge repos: ${parseStatus(exitCode, formatShellCmd(built.cmd))}\n${tail(output)}`
      })
    }
  })

/** `createrepo` (CreaterepoTask, 1.5): `handler(repo_id, arch, oldrepo)` → `[uploadpath, [files]]`. */
export const createrepoHandler = (deps: RepoTaskDeps) =>
  defineHandler({
    name: "CreaterepoTask",
    methods: ["createrepo"],
    weight: 1.5,
    signature: signature("CreaterepoTask.handler", {
      repo_id: required(Int),
      arch: required(Schema.String),
      oldrepo: optional(OldRepo, null)
    }),
    run: ({ repo_id, arch, oldrepo }, ctx) =>
      Effect.gen(function*() {
        const topdir = deps.kojid.topdir
        const api = hostApi(ctx.session)
        const rinfo = yield* api.repoInfo(repo_id, true)
        if (rinfo === null) return yield* new GenericError({ faultString: `No such repo: ${repo_id}` })
        if (rinfo.state !== RepoState.INIT) {
          return yield* new GenericError({ faultString: `Repo ${rinfo.id} not in INIT state (got ${rinfo.state})` })
        }
        const toprepodir = repoPath(topdir, repo_id, rinfo.tag_name ?? "")
        const repodir = path.join(toprepodir, arch)
        if (!isDir(repodir)) {
          const top = path.join(topdir, "repos")
          if (!isDir(top)) return yield* new RefuseTask({ message: `No access to repos dir ${top}` })
          return yield* new GenericError({ faultString: `Repo directory missing: ${repodir}` })
        }
        const groupdata = path.join(toprepodir, "groups", "comps.xml")
        const outdir = path.join(ctx.workdir, "repo")
        const r: CreaterepoRun = { deps, ctx, api, repoId: rinfo.id, repodir, outdir, datadir: path.join(outdir, "repodata") }
        const pkglistPath = path.join(repodir, "pkglist")
        const size = yield* fsStep(`cannot read ${pkglistPath}`, () => fsp.stat(pkglistPath).then((s) => s.size))
        const pkglist = size === 0 ? null : pkglistPath
        yield* createLocalRepo(r, arch, pkglist, groupdata, oldrepo)
        const external = yield* api.getExternalRepoList(rinfo.tag_id ?? rinfo.tag_name ?? repo_id, rinfo.create_event)
        if (external.length > 0) {
          yield* mergeRepos(r, external, arch, groupdata)
        } else if (pkglist === null) {
          yield* fsStep("cannot write EMPTY_REPO", () => fsp.writeFile(path.join(r.datadir, "EMPTY_REPO"), EMPTY_REPO_TEXT))
        }
        // kojid reads these for its postCreateRepo callback; kept so the call sequence matches (§13).
        // (kojid sends event before strict here, unlike its other getTag calls.)
        yield* api.getTag(rinfo.tag_id ?? repo_id, { event: rinfo.create_event, strict: true })
        yield* api.getTaskInfo(ctx.taskId, { request: true, strict: true })
        const uploadpath = taskRelPath(ctx.taskId)
        const files = yield* uploadDir(ctx.session, r.datadir, uploadpath)
        return [uploadpath, files]
      })
  })

/** The `createrepo` handler, with kojid.conf's repo options and the Containers service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, AdjutantConfig | Containers> =
  Effect.map(repoTaskDeps, (deps) => [createrepoHandler(deps)])
