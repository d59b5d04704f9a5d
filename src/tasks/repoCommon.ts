/**
 * What the repo handlers (newRepo, createrepo, distRepo/createdistrepo) share: their
 * dependencies, `createrepo_c`/`mergerepo_c` run in a bootstrap-image container with kojid's
 * log, kojid's status and command formatting, and the file helpers of repo directories.
 */
import { Deferred, Effect, Exit, Scope } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { AdjutantConfig, type KojidOptions } from "../config/AdjutantConfig.js"
import { type ContainerMount, Containers } from "../containers/Containers.js"
import type { PodmanError } from "../containers/Libpod.js"
import { GenericError } from "../koji/faults.js"
import { taskRelPath } from "../koji/paths.js"
import type { Session } from "../hub/KojiHub.js"
import { streamLogs, uploadWrapper } from "../hub/Uploads.js"
import type { TaskContext } from "./handler.js"

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
export const tail = (text: string, lines = 5): string => {
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

