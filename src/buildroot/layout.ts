/**
 * The local side of one buildroot (kojid: `<mockdir>/<name>/{root,result}`): a bounded scratch
 * disk at `<task workdir>/broot` (taskDisk.ts) holding the logs, the result area, the staged SRPM,
 * the BuildRequires package of a round, dnf's files and the task's copy of the root; the files
 * containers write are made beforehand and owned by the container ids that write them (mapped
 * host ids under a user namespace), so no container ever needs a writable host directory it
 * could fill with links for the daemon to follow.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { hostId, hostIdsOf, type IdMap } from "../containers/idmap.js"
import { BuildrootSetupError, type FsError, fsError } from "./errors.js"
import { type TaskDisk, taskDisk } from "./taskDisk.js"

/** The logs of a buildroot in the order kojid uploads them (mock's result dir). */
export const LOG_NAMES = [
  "state.log", "installed_pkgs.log", "hw_info.log", "root.log", "dnf.log", "dnf.rpm.log", "dnf.librepo.log", "mock_output.log", "build.log"
] as const

/** One of the buildroot's own logs. */
export type LogName = (typeof LOG_NAMES)[number]

/** dnf's logs, moved out of the root into the task's logs after each dnf run. */
export const DNF_LOGS = ["dnf.log", "dnf.rpm.log", "dnf.librepo.log"] as const

/**
 * The first directory from `/` down to `dir` that others cannot pass through (no `o+x`), if any:
 * a container in the build user namespace is "others" to the host and must reach its root there.
 */
export const untraversable = (dir: string): string | undefined => {
  let p = path.resolve(dir)
  const chain: Array<string> = []
  for (;;) {
    chain.unshift(p)
    const up = path.dirname(p)
    if (up === p) break
    p = up
  }
  return chain.find((d) => {
    const st = fs.statSync(d, { throwIfNoEntry: false })
    return st !== undefined && (st.mode & 0o001) === 0
  })
}

/** Where a buildroot keeps its files. */
export interface Layout {
  readonly disk: TaskDisk
  readonly base: string
  readonly logs: string
  /** rpmbuild's output (`/result` of the build container), owned by the build user. */
  readonly result: string
  /** The SRPM being built (`/srpm`, read-only to containers). */
  readonly srpm: string
  /** A round's BuildRequires package, copied out of the result area (`/deps`, read-only). */
  readonly deps: string
  /** dnf.conf and the rpmdb listing of the task's root. */
  readonly meta: string
  /** Where the task's copy of the root is mounted. */
  readonly task: string
  /** Space on the task's disk for other task files (an SCM checkout). */
  readonly scratch: string
  readonly logFile: (name: string) => string
}

const mkdirs = (dirs: ReadonlyArray<string>) => Promise.all(dirs.map((d) => fsp.mkdir(d, { recursive: true, mode: 0o755 })))

/** An empty file (existing content kept) owned by `ids`. */
export const ownedFile = async (file: string, ids: { readonly uid: number; readonly gid: number } | undefined, mode = 0o644): Promise<void> => {
  const handle = await fsp.open(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND | fs.constants.O_NOFOLLOW, mode)
  try {
    if (ids !== undefined) await handle.chown(ids.uid, ids.gid)
  } finally {
    await handle.close()
  }
}

/**
 * Makes the layout on a fresh task disk under `workdir`, removed with the scope. `idmap` is the
 * map of the containers that write here; `buildUser` the container user of rpmbuild.
 */
export const makeLayout = (workdir: string, diskMax: number, idmap: IdMap | null, buildUser: string) =>
  Effect.gen(function*() {
    const closed = idmap === null ? undefined : untraversable(workdir)
    if (closed !== undefined) {
      return yield* new BuildrootSetupError({
        message: `the task workdir ${workdir} is out of reach of the build's mapped ids: ${closed} is not traversable by others; ` +
          "chmod o+x it or use a workdir whose parents are (builds run as build_userns ids)"
      })
    }
    const disk = yield* taskDisk(path.join(workdir, "broot"), diskMax)
    const base = disk.dir
    const layout: Layout = {
      disk,
      base,
      logs: path.join(base, "logs"),
      result: path.join(base, "result"),
      srpm: path.join(base, "srpm"),
      deps: path.join(base, "deps"),
      meta: path.join(base, "meta"),
      task: path.join(base, "task"),
      scratch: path.join(base, "scratch"),
      logFile: (name) => path.join(base, "logs", name)
    }
    const dnfRoot = { uid: hostId(idmap, 0), gid: hostId(idmap, 0) }
    const builder = hostIdsOf(idmap, buildUser)
    yield* Effect.tryPromise({
      try: async () => {
        await mkdirs([layout.logs, layout.result, layout.srpm, layout.deps, layout.meta, layout.scratch])
        // The build user writes its results here; nothing else of the disk is writable to it.
        if (builder !== undefined) await fsp.chown(layout.result, builder.uid, builder.gid)
        else await fsp.chmod(layout.result, 0o777)
        for (const n of LOG_NAMES) {
          if (n === "build.log") await ownedFile(layout.logFile(n), builder, builder === undefined ? 0o666 : 0o644)
          else if (n === "root.log" || (DNF_LOGS as ReadonlyArray<string>).includes(n)) await ownedFile(layout.logFile(n), dnfRoot)
        }
        await ownedFile(path.join(layout.meta, "installed.tsv"), dnfRoot)
      },
      catch: (e) => new BuildrootSetupError({ message: `cannot prepare ${base}: ${e instanceof Error ? e.message : String(e)}` })
    })
    return layout
  })

const isoNow = (): string => new Date().toISOString().replace("T", " ").replace("Z", "")

/** What the daemon itself writes into the logs: mock's state lines, its errors, a note in root.log. */
export interface BuildrootLog {
  /** A state line (state.log, and mock_output.log as mock prints it). */
  readonly state: (msg: string) => Effect.Effect<void, FsError>
  /** An error as mock prints it (mock_output.log). */
  readonly error: (msg: string) => Effect.Effect<void, FsError>
  /** A line of our own in root.log. */
  readonly rootNote: (msg: string) => Effect.Effect<void, FsError>
  /** Appends raw text to one of the logs. */
  readonly append: (name: LogName, text: string) => Effect.Effect<void, FsError>
}

/** The log writer of a layout. Only the daemon writes these files (containers get root.log and dnf's as file binds). */
export const buildrootLog = (layout: Layout): BuildrootLog => {
  const append = (name: LogName, text: string) =>
    Effect.try({ try: () => fs.appendFileSync(layout.logFile(name), text), catch: fsError("append to", layout.logFile(name)) })
  return {
    append,
    state: (msg) => Effect.zipRight(append("state.log", `${isoNow()} INFO buildroot: ${msg}\n`), append("mock_output.log", `INFO: ${msg}\n`)),
    error: (msg) => append("mock_output.log", `ERROR: ${msg}\n`),
    rootNote: (msg) => append("root.log", `${isoNow()} INFO: ${msg}\n`)
  }
}
