/**
 * kojid's `createrepo` (CreaterepoTask, koji-protocol.md §7.8): `createrepo_c` — and
 * `mergerepo_c` when the tag has external repos — run in a bootstrap-image container with the
 * hub's topdir mounted read-only and the task workdir writable, no network; the repodata is
 * uploaded to the task directory and the result is `[uploadpath, [files]]`.
 */
import { Deferred, Effect, Exit, Schema, Scope } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { AdjutantConfig, type KojidOptions } from "../config/AdjutantConfig.js"
import { type ContainerMount, Containers } from "../containers/Containers.js"
import type { PodmanError } from "../containers/Libpod.js"
import { GenericError } from "../hub/faults.js"
import { hostApi, type HostApi } from "../hub/HostApi.js"
import type { Session } from "../hub/KojiHub.js"
import { type ExternalRepo } from "../hub/schemas.js"
import { RepoState } from "../koji/states.js"
import { streamLogs, uploadWrapper } from "../hub/Uploads.js"
import { defineHandler, Int, optional, RefuseTask, required, signature, type TaskContext } from "./handler.js"
import { repoPath, taskRelPath } from "../koji/paths.js"

/** What the repo handlers need besides their task context. */
export interface RepoTaskDeps {
  readonly kojid: Pick<
    KojidOptions,
    "topdir" | "createrepo_update" | "createrepo_skip_stat" | "copy_old_repodata" | "distrepo_skip_stat" | "use_createrepo_c"
  >
  /** The image holding createrepo_c and mergerepo_c (`[adjutant] bootstrap_image`). */
  readonly image: string
  readonly containers: Containers["Type"]
}

/** The repo handlers' dependencies taken from the config and the Containers service. */
export const repoTaskDeps: Effect.Effect<RepoTaskDeps, never, AdjutantConfig | Containers> = Effect.gen(function*() {
  const config = yield* AdjutantConfig
  const containers = yield* Containers
  return { kojid: config.kojid, image: config.adjutant.bootstrap_image, containers }
})

/** The marker kojid writes into the repodata of a repo with no content for its arch. */
export const EMPTY_REPO_TEXT = "This repo is empty because its tag has no content for this arch\n"

/** koji.util.format_shell_cmd: the command wrapped at 80 columns with ` \` continuations. */
export const formatShellCmd = (cmd: ReadonlyArray<string>, width = 80): string => {
  const lines: Array<string> = []
  let line = ""
  for (const bit of cmd) {
    if ((line + bit).length > width - 2 && line !== "") {
      lines.push(line)
      line = ""
    }
    line = line === "" ? bit : `${line} ${bit}`
  }
  if (line !== "") lines.push(line)
  return lines.join(" \\\n")
}

/** koji.util.parseStatus for an exit code (-1: killed at the container timeout). */
export const parseStatus = (exitCode: number, prefix: string): string =>
  exitCode < 0 ? `${prefix} was killed by signal 9` : `${prefix} exited with status ${exitCode}`

/** True when `p` is a directory (following symlinks). */
export const isDir = (p: string): boolean => {
  try {
    return fs.statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** True when `p` is a regular file (following symlinks). */
export const isFile = (p: string): boolean => {
  try {
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

const fsError = (what: string) => (cause: unknown) =>
  new GenericError({ faultString: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

/** A file-system step as an Effect failing with GenericError. */
export const fsStep = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, GenericError> =>
  Effect.tryPromise({ try: f, catch: fsError(what) })

/** The error lines of a log (else its last lines), for a fault message a person can act on. */
const tail = (text: string, lines = 5): string => {
  const all = text.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "")
  const errors = all.filter((l) => /error|cannot|can't|no such|failed|invalid/i.test(l) && !/^Pool finished/.test(l))
  return (errors.length > 0 ? errors : all).slice(-lines).join("\n")
}

/** Options of `runLogged`. */
export interface RunLoggedOptions {
  readonly deps: RepoTaskDeps
  readonly ctx: TaskContext
  readonly cmd: ReadonlyArray<string>
  /** Log file name in the workdir and on the hub (`createrepo.log`). */
  readonly logName: string
  readonly mounts: ReadonlyArray<ContainerMount>
  readonly env?: Readonly<Record<string, string>>
  readonly network?: "none" | "bridge"
}

/**
 * kojid's `log_output(..., logerror=True)`: runs `cmd` in a container, the log starting with
 * `$ cmd` and holding stdout and stderr, streamed to the task directory while it runs.
 * The command writes the log itself (a shell redirect into the writable workdir): following
 * the container's output through the API would cost more than createrepo_c's own work on a
 * small repo (scripts/bench/createrepo). Returns the exit code and the log text once the log
 * is on the hub. On success the container is removed in the background, overlapping what the
 * task does next (the repodata uploads); the task's scope waits for the removal, so the task
 * still ends with no container left.
 */
export const runLogged = (o: RunLoggedOptions): Effect.Effect<{ readonly exitCode: number; readonly output: string }, GenericError | PodmanError, Scope.Scope> =>
  Effect.gen(function*() {
    const containerScope = yield* Scope.make()
    const removal = yield* Deferred.make<void>()
    // Runs when the task's scope closes: the background removal is awaited, or done now if it never started.
    let removing = false
    yield* Effect.addFinalizer((exit) => Effect.suspend(() => removing ? Deferred.await(removal) : Scope.close(containerScope, exit)))
    const ran = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
      const logfile = path.join(o.ctx.workdir, o.logName)
      yield* fsStep(`cannot write ${logfile}`, () => fsp.appendFile(logfile, `$ ${o.cmd.join(" ")}\n`))
      // The final flush runs when this inner scope closes, before the log is read back.
      yield* streamLogs(o.ctx.session, [{ local: logfile, remote: o.logName }], taskRelPath(o.ctx.taskId))
      const result = yield* o.deps.containers.run(
        {
          image: o.deps.image,
          command: ["/bin/sh", "-c", 'log=$1; shift; exec "$@" >> "$log" 2>&1', "sh", logfile, ...o.cmd],
          role: "createrepo",
          taskId: o.ctx.taskId,
          mounts: o.mounts,
          network: o.network ?? "none",
          ...(o.env === undefined ? {} : { env: o.env })
        },
        // stdout/stderr hold only what the shell itself said: wanted for a failure message only.
        { maxOutputBytes: 64 * 1024, outputOnFailureOnly: true, removeWith: containerScope }
      )
      // The container has exited: its removal need not hold up the log flush.
      // Flag and fork in one uninterruptible step: the finalizer must never await a removal that never started.
      yield* Effect.uninterruptible(Effect.suspend(() => {
        removing = true
        return Effect.forkDaemon(Effect.ensuring(Scope.close(containerScope, Exit.void), Deferred.succeed(removal, undefined)))
      }))
      return { result, logfile }
    })))
    if (Exit.isFailure(ran)) {
      yield* Scope.close(containerScope, ran)
      return yield* Effect.failCause(ran.cause)
    }
    const { result, logfile } = ran.value
    const logged = yield* fsStep(`cannot read ${logfile}`, () => fsp.readFile(logfile, "utf8"))
    // Anything the shell itself said (the command could not be run) is not in the log.
    return { exitCode: result.exitCode, output: `${logged.slice(-65536)}${result.stdout}${result.stderr}` }
  })

/**
 * kojid's repo tool per `use_createrepo_c`: createrepo_c with `--error-exit-val`, else the old
 * Python `createrepo` (which the image must then have; merges always use mergerepo_c, as kojid
 * on Python 3 does).
 */
export const createrepoCommand = (kojid: { readonly use_createrepo_c: boolean }): ReadonlyArray<string> =>
  kojid.use_createrepo_c ? ["/usr/bin/createrepo_c", "--error-exit-val"] : ["/usr/bin/createrepo"]

/** Read-only bind of a host path at the same path in the container. */
export const roMount = (p: string): ContainerMount => ({ type: "bind", source: p, destination: p })
/** Writable bind of a host path at the same path in the container. */
export const rwMount = (p: string): ContainerMount => ({ type: "bind", source: p, destination: p, writable: true })

/** Copies a repodata directory, as shutil.copytree (plain files only: repodata holds nothing else). */
export const copyRepodata = (from: string, to: string): Effect.Effect<void, GenericError> =>
  fsStep(`cannot copy ${from} to ${to}`, () => fsp.cp(from, to, { recursive: true, errorOnExist: true, force: false }))

/** Uploads every file of `dir` to the task directory (kojid's loop over os.listdir); returns the names. */
export const uploadDir = (session: Session, dir: string, uploadpath: string) =>
  Effect.gen(function*() {
    const files = yield* fsStep(`cannot list ${dir}`, () => fsp.readdir(dir))
    for (const f of files) yield* uploadWrapper(session, path.join(dir, f), uploadpath, f)
    return files
  })

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
