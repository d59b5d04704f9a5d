/**
 * The steps of a live buildroot, each over its state record (state.ts): stage the SRPM, rpmbuild
 * with BuildRequires rounds (`build`), `rpmbuild -bs` (`rebuildSrpm`), a command in the root
 * (`run`, runroot), take the packages out (`collect`), and the end of log streaming. Everything
 * the build left is read through results.ts; everything installed goes through dnf.ts.
 */
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import type { ContainerMount, ContainerSpec } from "../containers/Containers.js"
import { hostIdsOf } from "../containers/idmap.js"
import { BuildError } from "../koji/faults.js"
import { cutOf } from "../hub/Uploads.js"
import { readListing, runDnf } from "./dnf.js"
import { BuildLimitExceeded, BuildrootSetupError, type FsError, fsError, logTail, RpmbuildFailed } from "./errors.js"
import { LOG_NAMES, type LogName, ownedFile } from "./layout.js"
import { HostileOutput, quoted, readTail, takeResults, takeRpm } from "./results.js"
import type { BuildrootState } from "./state.js"
import { diskFull } from "./taskDisk.js"
import type { BuildrootRunOptions, BuildrootRunResult, Collected } from "./types.js"

/** rpmbuild's exit code when BuildRequires are missing (§9). */
const MISSING_DEPS = 11
const MAX_DEP_ROUNDS = 8
/** The SRPM under the name the build container sees (`/srpm/…`): fixed, whatever the task called it. */
const STAGED_SRPM = "build.src.rpm"
const STAGED_BUILDREQS = "buildreqs.nosrc.rpm"

/**
 * The build container's script (fixed text; "$1" the SRPM, "$2" the target arch, "$3" the mode):
 * unpack, then `rpmbuild -ba` (or `-bs --nodeps`); on missing BuildRequires, `rpmbuild -br`
 * leaves the round's `*.buildreqs.nosrc.rpm` in /result/buildreqs for the next dnf builddep.
 */
const BUILD_SCRIPT = `set -u
S=$1 T=$2 MODE=$3
top=/builddir/build
rm -rf /result/buildreqs
# The build user owns $top but not its parent (/builddir): empty it rather than remove it.
if [ -d "$top" ]; then find "$top" -mindepth 1 -delete; fi
mkdir -p "$top"
rpm -i --nodeps --define "_topdir $top" "$S" || exit 30
set -- "$top"/SPECS/*.spec
if [ ! -f "$1" ]; then echo "error: No spec file found in $S"; exit 31; fi
if [ $# -gt 1 ]; then echo "error: Multiple spec files found: $*"; exit 32; fi
spec=$1
if [ "$MODE" = srpm ]; then
  exec rpmbuild -bs --nodeps --define "_topdir $top" --define "_srcrpmdir /result" "$spec"
fi
rpmbuild -ba --target "$T" --define "_srcrpmdir /result" --define "_rpmdir /result" "$spec"
rc=$?
if [ $rc -eq ${MISSING_DEPS} ]; then
  # -ba leaves the round's buildreqs.nosrc.rpm beside the results; it is no result.
  rm -f /result/*.buildreqs.nosrc.rpm
  mkdir -p /result/buildreqs
  rpmbuild -br --nodeps --define "_srcrpmdir /result/buildreqs" "$spec" >/dev/null 2>&1
  exit ${MISSING_DEPS}
fi
exit $rc
`

/** The tail of one of the buildroot's logs, for a fault string (the last 64 KiB read, at most). */
const tailOf = (st: BuildrootState, name: LogName) => Effect.map(readTail(st.layout.logFile(name)), (t) => logTail(t))

/** BUILDING, once. */
const setBuilding = (st: BuildrootState) =>
  st.status.building ? Effect.void : Effect.tap(st.hub.setBuildRootState(st.id, "BUILDING"), () => Effect.sync(() => void (st.status.building = true)))

/** The error for a failed step when the task's disk is full: the limit, named. */
const limitIfFull = (st: BuildrootState, what: string) =>
  Effect.flatMap(diskFull(st.layout.disk), (full) =>
    full
      ? Effect.fail(new BuildLimitExceeded({
        limit: "task_disk_max",
        message: `${what} filled the task's disk: task_disk_max (${st.layout.disk.limit} bytes) was reached; see build.log and root.log`
      }))
      : Effect.void)

/** Copies the SRPM to build (checked as any package a task takes in) to the staged name the container sees. */
export const stageSrpm = (st: BuildrootState, srpm: string) =>
  takeRpm(path.dirname(srpm), path.basename(srpm), st.layout.srpm, {
    kind: "source",
    maxBytes: st.options.taskDiskMax > 0 ? st.options.taskDiskMax : Number.MAX_SAFE_INTEGER,
    limitKey: "task_disk_max"
  }, STAGED_SRPM).pipe(Effect.catchTag("HostileOutput", (e) =>
    Effect.fail(new BuildError({ faultString: `SRPM file ${quoted(path.basename(srpm))} refused: ${e.message}` }))))

/** The build container of one rpmbuild run (no network, no capabilities, read-only root, the build user). */
const buildSpec = (st: BuildrootState, arch: string, mode: "rebuild" | "srpm"): ContainerSpec => ({
  rootfs: { path: st.root, overlay: false },
  readOnlyRoot: true,
  role: "build",
  taskId: st.request.taskId,
  buildrootId: st.id,
  user: st.options.buildUser,
  idmap: st.idmap ?? undefined,
  hostname: st.name.slice(0, 63),
  network: "none",
  env: st.env,
  workDir: "/builddir",
  timeoutSeconds: st.options.kojid.rpmbuild_timeout,
  // Output goes straight into build.log, a single bind-mounted file the build can write but
  // not replace (following podman's log stream costs ~0.3 s per container).
  command: ["/bin/sh", "-c", `exec >>/logs/build.log 2>&1 </dev/null\n${BUILD_SCRIPT}`, "build", `/srpm/${STAGED_SRPM}`, arch, mode],
  mounts: [
    { type: "tmpfs", destination: "/builddir", size: st.options.buildTmpfsSize },
    { type: "bind", source: st.layout.result, destination: "/result", writable: true },
    { type: "bind", source: st.layout.srpm, destination: "/srpm" },
    { type: "bind", source: st.layout.logFile("build.log"), destination: "/logs/build.log", writable: true }
  ]
})

const rpmbuild = (st: BuildrootState, arch: string, mode: "rebuild" | "srpm") =>
  Effect.gen(function*() {
    if (st.status.readyAt === undefined) st.status.readyAt = Date.now()
    yield* st.log.state(`Start: rpmbuild ${mode === "srpm" ? "-bs" : "-ba"} ${STAGED_SRPM}`)
    const r = yield* st.containers.run(buildSpec(st, arch, mode))
    yield* st.log.state(`Finish: rpmbuild (exit ${r.exitCode})`)
    return r.exitCode
  })

/**
 * The BuildRequires package a `%generate_buildrequires` round left: exactly one regular
 * `*.buildreqs.nosrc.rpm` in /result/buildreqs (a real directory), copied out under a fixed name;
 * undefined when the round left none (dnf then reads the SRPM's static BuildRequires).
 */
const roundBuildreqs = (st: BuildrootState) =>
  Effect.gen(function*() {
    const dir = path.join(st.layout.result, "buildreqs")
    const kind = yield* Effect.promise(() => fsp.lstat(dir).then((s) => (s.isDirectory() ? "dir" : "other"), () => "none" as const))
    if (kind === "none") return undefined
    if (kind === "other") return yield* new HostileOutput({ file: "buildreqs", message: "the build replaced /result/buildreqs with something that is not a directory" })
    const names = (yield* Effect.tryPromise({ try: () => fsp.readdir(dir), catch: fsError("list", dir) })).filter((n) => n.endsWith(".nosrc.rpm"))
    if (names.length === 0) return undefined
    if (names.length > 1) return yield* new HostileOutput({ file: "buildreqs", message: `the build left ${names.length} BuildRequires packages: ${names.map(quoted).join(", ")}` })
    yield* takeRpm(dir, names[0]!, st.layout.deps, { kind: "source", maxBytes: st.options.resultMaxSize, limitKey: "result_max_size" }, STAGED_BUILDREQS)
    return `/deps/${STAGED_BUILDREQS}`
  })

/** A round's missing BuildRequires into the task root (`dnf builddep`, argv only). */
const installBuildDeps = (st: BuildrootState, arch: string) =>
  Effect.gen(function*() {
    const nosrc = yield* roundBuildreqs(st).pipe(Effect.ensuring(removeQuietly(path.join(st.layout.result, "buildreqs"))))
    const target = nosrc ?? `/srpm/${STAGED_SRPM}`
    yield* st.log.state(`Start: dnf builddep ${path.basename(target)}`)
    const rc = yield* runDnf(st.containers, st.dnf, st.root, path.join(st.layout.meta, "installed.tsv"), ["builddep", target], [
      { type: "bind", source: st.layout.deps, destination: "/deps" },
      { type: "bind", source: st.layout.srpm, destination: "/srpm" }
    ]).pipe(Effect.ensuring(removeQuietly(path.join(st.layout.deps, STAGED_BUILDREQS))))
    yield* st.log.state(`Finish: dnf builddep (exit ${rc})`)
    if (rc !== 0) {
      yield* st.log.error(`Command failed: dnf builddep ${path.basename(target)} (exit ${rc}); see root.log`)
      yield* limitIfFull(st, "dnf builddep")
      const tail = yield* tailOf(st, "root.log")
      return yield* new RpmbuildFailed({
        message: `error building package (arch ${arch}), dnf builddep exited with status ${rc}; see root.log for more information\n${tail}`,
        exitCode: rc,
        logTail: tail
      })
    }
    st.status.installed = yield* readListing(path.join(st.layout.meta, "installed.tsv"))
  })

const removeQuietly = (p: string) => Effect.promise(() => fsp.rm(p, { recursive: true, force: true }).catch(() => undefined))

/** `mock --rebuild`: BUILDING, rpmbuild with BuildRequires rounds, updateBuildRootList; failure → EXPIRED. */
export const build = (st: BuildrootState, srpm: string, arch: string) =>
  Effect.gen(function*() {
    yield* setBuilding(st)
    yield* stageSrpm(st, srpm)
    const rounds = Effect.gen(function*() {
      for (let round = 0; ; round++) {
        const rc = yield* rpmbuild(st, arch, "rebuild")
        if (rc !== MISSING_DEPS || round >= MAX_DEP_ROUNDS) return rc
        yield* installBuildDeps(st, arch)
      }
    })
    const rc = yield* Effect.exit(rounds)
    yield* removeQuietly(path.join(st.layout.result, "buildreqs"))
    yield* st.hub.updateBuildRootList(st.id, yield* st.hub.packageList(st.status.installed, st.listRepo))
    if (Exit.isFailure(rc)) {
      yield* st.expire
      return yield* Exit.failCause(rc.cause)
    }
    if (rc.value !== 0) {
      yield* st.expire
      const why = rc.value === -1
        ? `rpmbuild was killed after rpmbuild_timeout (${st.options.kojid.rpmbuild_timeout} s)`
        : `rpmbuild exited with status ${rc.value}`
      yield* st.log.error(`Command failed: rpmbuild ${path.basename(srpm)}: ${why}; see build.log`)
      yield* limitIfFull(st, "the build")
      const tail = yield* tailOf(st, "build.log")
      return yield* new RpmbuildFailed({
        message: `error building package (arch ${arch}), ${why}; see build.log for more information\n${tail}`,
        exitCode: rc.value,
        logTail: tail
      })
    }
  })

/** kojid's `rebuild_srpm`: `rpmbuild -bs --nodeps` of the SRPM's single spec. */
export const rebuildSrpm = (st: BuildrootState, srpm: string) =>
  Effect.gen(function*() {
    yield* setBuilding(st)
    yield* stageSrpm(st, srpm)
    const rc = yield* rpmbuild(st, "noarch", "srpm")
    if (rc === 31) return yield* new BuildError({ faultString: "No spec file found" })
    if (rc === 32) {
      const tail = yield* tailOf(st, "build.log")
      return yield* new BuildError({ faultString: `Multiple spec files found: ${tail.split("\n").slice(-1)[0] ?? ""}` })
    }
    if (rc !== 0) {
      yield* st.log.error(`Command failed: rpmbuild -bs ${path.basename(srpm)} (exit ${rc}); see build.log`)
      yield* st.expire
      yield* limitIfFull(st, "the SRPM build")
      const tail = yield* tailOf(st, "build.log")
      return yield* new BuildError({ faultString: `error building srpm, rpmbuild exited with status ${rc}; see build.log for more information\n${tail}` })
    }
  })

/** The packages rpmbuild left, checked and copied out within `result_max_size`. */
export const collect = (st: BuildrootState, options: { readonly outDir: string; readonly arches?: ReadonlySet<string> }): Effect.Effect<Collected, HostileOutput | FsError> =>
  takeResults(st.layout.result, options.outDir, { arches: options.arches, maxBytes: st.options.resultMaxSize, limitKey: "result_max_size" })

/** `mock --install`: packages into this task's copy of the root, then updateBuildRootList as kojid's runroot does. */
const installPackages = (st: BuildrootState, packages: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    yield* st.log.state(`Start: dnf install ${packages.map(quoted).join(" ")}`)
    const listing = path.join(st.layout.meta, "installed.tsv")
    const rc = yield* runDnf(st.containers, st.dnf, st.root, listing, ["install", "--", ...packages])
    yield* st.log.state(`Finish: dnf install (exit ${rc})`)
    if (rc === 0) st.status.installed = yield* readListing(listing)
    // kojid updates the list whether or not the install worked, then fails (runroot.py).
    yield* st.hub.updateBuildRootList(st.id, yield* st.hub.packageList(st.status.installed, st.listRepo))
    if (rc !== 0) {
      yield* st.log.error(`Command failed: dnf install (exit ${rc}); see root.log`)
      const tail = yield* tailOf(st, "root.log")
      return yield* new BuildrootSetupError({
        message: `${["--install", ...packages].join(" ")} exited with status ${rc}; see root.log for more information\n${tail}`,
        logTail: tail
      })
    }
  })

/** True when a component of `rel` below `root` is a symlink (or cannot be read). */
const hasSymlink = async (root: string, rel: string): Promise<boolean> => {
  let p = root
  for (const part of rel.split(path.sep)) {
    p = path.join(p, part)
    const st = await fsp.lstat(p).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? null : "error" as const))
    if (st === null) return false
    if (st === "error" || st.isSymbolicLink()) return true
  }
  return false
}

/** Makes the mount points of `mounts` in the task root that it lacks (a file for a file bind); never through a link. */
const mountPoints = (root: string, mounts: ReadonlyArray<ContainerMount>) =>
  Effect.tryPromise({
    try: async () => {
      for (const m of mounts) {
        const target = path.join(root, m.destination)
        const rel = path.relative(root, target)
        if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) throw new Error(`mount point outside the root: ${m.destination}`)
        // A symlink on the way could point out of the root: podman resolves those inside the root itself.
        if (await hasSymlink(root, rel)) continue
        const isFile = m.type === "bind" && (await fsp.stat(m.source).then((st) => !st.isDirectory(), () => false))
        if (isFile) {
          await fsp.mkdir(path.dirname(target), { recursive: true })
          await fsp.writeFile(target, "", { flag: "a" })
        } else {
          await fsp.mkdir(target, { recursive: true })
        }
      }
    },
    catch: (e) => new BuildrootSetupError({ message: `cannot make the mount points: ${e instanceof Error ? e.message : String(e)}` })
  })

/** The container of `run`: root in a writable root, or the build user as for rpmbuild. */
const runSpec = (st: BuildrootState, o: BuildrootRunOptions, logName: string, mounts: ReadonlyArray<ContainerMount>): ContainerSpec => ({
  rootfs: { path: st.root, overlay: false },
  // The build user gets the rpmbuild container's read-only root; root writes into the task's own copy.
  readOnlyRoot: o.user === "build",
  role: o.role ?? (o.user === "root" ? "runroot" : "build"),
  taskId: st.request.taskId,
  buildrootId: st.id,
  user: o.user === "root" ? "0:0" : st.options.buildUser,
  idmap: st.idmap ?? undefined,
  hostname: st.name.slice(0, 63),
  network: (o.network ?? st.request.network === true) ? "host" : "none",
  env: st.env,
  workDir: "/builddir",
  ...(o.timeoutSeconds === undefined ? {} : { timeoutSeconds: o.timeoutSeconds }),
  command: ["/bin/sh", "-c", `exec >>"/logs/$0" 2>&1 </dev/null\nexec "$@"`, logName, ...o.command],
  mounts
})

/** kojid's `mock --install` + `mock --chroot`: a command in this task's copy of the root. */
export const run = (st: BuildrootState, o: BuildrootRunOptions, streamRunLog: (local: string, remote: string) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const logName = path.basename(o.log)
    const log = st.layout.logFile(logName)
    yield* setBuilding(st)
    if (o.installPackages !== undefined && o.installPackages.length > 0) yield* installPackages(st, o.installPackages)
    const user = o.user === "build" ? hostIdsOf(st.idmap, st.options.buildUser) : hostIdsOf(st.idmap, "0:0")
    yield* Effect.tryPromise({
      try: () => ownedFile(log, user),
      catch: (e) => new BuildrootSetupError({ message: `cannot create ${logName}: ${String(e)}` })
    })
    if (!st.status.runLogs.includes(logName) && !(LOG_NAMES as ReadonlyArray<string>).includes(logName)) {
      st.status.runLogs.push(logName)
      if (!st.status.logsFinished) yield* streamRunLog(log, logName)
    }
    const mounts: ReadonlyArray<ContainerMount> = [
      ...(o.user === "build" ? [{ type: "tmpfs" as const, destination: "/builddir", size: st.options.buildTmpfsSize }] : []),
      { type: "bind", source: log, destination: `/logs/${logName}`, writable: true },
      ...o.mounts
    ]
    yield* mountPoints(st.root, mounts)
    yield* st.log.state(`Start: ${o.command.map(quoted).join(" ")}`)
    const r = yield* st.containers.run(runSpec(st, o, logName, mounts), { outputOnFailureOnly: true })
    yield* st.log.state(`Finish: ${quoted(o.command[0] ?? "")} (exit ${r.exitCode})`)
    return { exitCode: r.exitCode, logFile: log, rootdir: st.root, stray: `${r.stdout}${r.stderr}` } satisfies BuildrootRunResult
  })

/** The logs to report: mock_config.log, the buildroot's logs that exist (dnf's only when dnf ran here), then run logs. */
export const reportedLogs = (st: BuildrootState): ReadonlyArray<string> => {
  const present = LOG_NAMES.filter((n) => {
    const size = fs.statSync(st.layout.logFile(n), { throwIfNoEntry: false })?.size
    return size !== undefined && (size > 0 || !n.startsWith("dnf."))
  })
  return ["mock_config.log", ...present, ...st.status.runLogs]
}

/** Logs longer than `log_max_size`: only their head and tail reached the hub. */
export const truncatedLogs = (st: BuildrootState): ReadonlyArray<string> =>
  [...LOG_NAMES, ...st.status.runLogs].filter((n) => {
    const size = fs.statSync(st.layout.logFile(n), { throwIfNoEntry: false })?.size ?? 0
    return cutOf(size, st.options.logMaxSize) !== undefined
  })

/** Closes the log streaming scope once (the final flush). */
export const finishLogs = (st: BuildrootState, logScope: Scope.CloseableScope) =>
  Effect.gen(function*() {
    if (!st.status.logsFinished) {
      st.status.logsFinished = true
      yield* Scope.close(logScope, Exit.void)
    }
    return reportedLogs(st)
  })
