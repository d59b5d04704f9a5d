/**
 * What a daemon that died (SIGKILL, OOM, a power cut) leaves on the builder, found and removed:
 * at start-up for the whole host, and before a task's workdir is used again for that task
 * (issue 12 §1). kojid leaves mock chroots and its task directories; we leave more, because a
 * task holds live kernel objects: its containers (conmon keeps them running after the daemon
 * died), the overlay mount of its root (`<task>/broot/task/root`, overlay.ts), the loop-mounted
 * disk under it (`<task>/broot`, taskDisk.ts) with its loop device, the repo proxy's unix socket
 * and the disk image beside it. They go in the only order that works: containers first (they
 * hold the mounts), then every mount under the directory, innermost first, then the loop devices
 * whose backing file is under it, then the files. Each removal is logged.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { Duration, Effect, Either } from "effect"
import { reap, type IsOwned } from "../containers/Reaper.js"

/** One line of /proc/self/mountinfo, the parts recovery needs. */
export interface MountEntry {
  readonly id: number
  readonly mountPoint: string
  readonly fsType: string
  readonly source: string
}

/** A loop device and the file behind it. */
export interface LoopDevice {
  readonly device: string
  readonly backingFile: string
}

/** What one recovery removed (and what it could not). */
export interface RecoveryReport {
  readonly containers: ReadonlyArray<string>
  readonly unmounted: ReadonlyArray<string>
  readonly detached: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
}

// mountinfo escapes space, tab, newline and backslash as octal (proc(5)).
const unescapeOctal = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/** The mounts of a /proc/<pid>/mountinfo text, in its order (parents before children). */
export const parseMountInfo = (text: string): ReadonlyArray<MountEntry> =>
  text.split("\n").flatMap((line) => {
    const fields = line.split(" ")
    const dash = fields.indexOf("-")
    if (fields.length < 10 || dash < 6) return []
    return [{ id: Number(fields[0]), mountPoint: unescapeOctal(fields[4]!), fsType: fields[dash + 1]!, source: unescapeOctal(fields[dash + 2]!) }]
  })

/** True when `p` is strictly below `root`. */
export const isUnder = (p: string, root: string): boolean => {
  const rel = path.relative(path.resolve(root), path.resolve(p))
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel)
}

/** The mounts strictly below any of `roots`, innermost first (deepest path, then the later mount of a stack). */
export const mountsUnder = (mounts: ReadonlyArray<MountEntry>, roots: ReadonlyArray<string>): ReadonlyArray<MountEntry> =>
  mounts
    .map((m, i) => ({ m, i }))
    .filter(({ m }) => roots.some((r) => isUnder(m.mountPoint, r)))
    .sort((a, b) => b.m.mountPoint.split("/").length - a.m.mountPoint.split("/").length || b.i - a.i)
    .map(({ m }) => m)

/** The mounts of this process's mount namespace. */
export const readMounts = (): ReadonlyArray<MountEntry> => {
  try {
    return parseMountInfo(fs.readFileSync("/proc/self/mountinfo", "utf8"))
  } catch {
    return []
  }
}

/** Every attached loop device (from /sys/block/loop*), with its backing file as the kernel names it. */
export const readLoopDevices = (): ReadonlyArray<LoopDevice> => {
  let names: Array<string>
  try {
    names = fs.readdirSync("/sys/block").filter((n) => /^loop\d+$/.test(n))
  } catch {
    return []
  }
  return names.flatMap((n) => {
    try {
      // A deleted image shows as "<path> (deleted)".
      const file = fs.readFileSync(`/sys/block/${n}/loop/backing_file`, "utf8").trim().replace(/ \(deleted\)$/, "")
      return file === "" ? [] : [{ device: `/dev/${n}`, backingFile: file }]
    } catch {
      return []
    }
  })
}

/** The loop devices whose backing file is below any of `roots`. */
export const loopsUnder = (loops: ReadonlyArray<LoopDevice>, roots: ReadonlyArray<string>): ReadonlyArray<LoopDevice> =>
  loops.filter((l) => roots.some((r) => isUnder(l.backingFile, r)))

const run = (cmd: string, args: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${stderr.trim() || err.message}`))
      else resolve()
    })
  })

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Unmounts one mount point: plainly, else lazily (a process of the dead daemon's may still hold it). */
const unmountOne = (m: MountEntry) =>
  Effect.promise(async (): Promise<Either.Either<string, string>> => {
    try {
      await run("umount", [m.mountPoint])
      return Either.right(`${m.mountPoint} (${m.fsType})`)
    } catch (first) {
      try {
        await run("umount", ["-l", m.mountPoint])
        return Either.right(`${m.mountPoint} (${m.fsType}, lazily: ${message(first)})`)
      } catch (second) {
        // A mount gone meanwhile (its parent unmounted with it) is no failure.
        if (!readMounts().some((x) => x.mountPoint === m.mountPoint)) return Either.right(`${m.mountPoint} (${m.fsType}, gone with its parent)`)
        return Either.left(`umount ${m.mountPoint}: ${message(second)}`)
      }
    }
  })

const detachOne = (l: LoopDevice) =>
  Effect.promise(async (): Promise<Either.Either<string, string>> => {
    try {
      await run("losetup", ["-d", l.device])
      return Either.right(`${l.device} (${l.backingFile})`)
    } catch (e) {
      // Mounted with -o loop, the device clears itself once its last mount is gone.
      if (!readLoopDevices().some((x) => x.device === l.device && x.backingFile === l.backingFile)) return Either.right(`${l.device} (${l.backingFile}, cleared)`)
      return Either.left(`losetup -d ${l.device}: ${message(e)}`)
    }
  })

const loopsGone = async (roots: ReadonlyArray<string>, ms: number): Promise<boolean> => {
  const deadline = Date.now() + ms
  while (loopsUnder(readLoopDevices(), roots).length > 0) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 50))
  }
  return true
}

/**
 * Removes every mount below `roots` (innermost first) and every loop device backed by a file
 * below them, logging each; never fails (what could not be removed is in `failed`).
 */
export const releaseMountsUnder = Effect.fnUntraced(function*(roots: ReadonlyArray<string>) {
  const unmounted: Array<string> = []
  const detached: Array<string> = []
  const failed: Array<string> = []
  for (const m of mountsUnder(readMounts(), roots)) {
    const r = yield* unmountOne(m)
    if (Either.isRight(r)) {
      unmounted.push(r.right)
      yield* Effect.logInfo(`recovery: unmounted ${r.right}`)
    } else {
      failed.push(r.left)
      yield* Effect.logError(`recovery: could not unmount: ${r.left}`)
    }
  }
  const loops = loopsUnder(readLoopDevices(), roots)
  for (const l of loops) {
    const r = yield* detachOne(l)
    if (Either.isRight(r)) {
      detached.push(r.right)
      yield* Effect.logInfo(`recovery: detached loop device ${r.right}`)
    } else {
      failed.push(r.left)
      yield* Effect.logError(`recovery: could not detach: ${r.left}`)
    }
  }
  // The kernel clears a loop device after its last mount in the background: wait for it (bounded).
  if (loops.length > 0) yield* Effect.promise(() => loopsGone(roots, 5_000))
  return { unmounted, detached, failed }
})

const removeTree = (dir: string) =>
  Effect.promise(() => fsp.rm(dir, { recursive: true, force: true }).then(() => Either.right(dir), (e: unknown) => Either.left(`rm ${dir}: ${message(e)}`)))

/**
 * Removes `dir` (a task's workdir) with whatever an earlier run of the task left mounted there:
 * its mounts and loop devices are released first. Fails with the reason when something stays.
 */
export const removeTaskDir = Effect.fnUntraced(function*(dir: string) {
  const released = yield* releaseMountsUnder([dir])
  if (released.unmounted.length > 0 || released.detached.length > 0) {
    yield* Effect.logWarning(`${dir} held the mounts of an earlier run: released ${released.unmounted.length} mounts, ${released.detached.length} loop devices`)
  }
  const removed = yield* removeTree(dir)
  if (Either.isLeft(removed)) return yield* Effect.fail(removed.left)
  if (released.failed.length > 0) return yield* Effect.fail(released.failed.join("; "))
})

/**
 * `dir` empty and unused (removeTaskDir, then made again); fails with the reason. A task's first
 * run finds no directory, and nothing can be mounted below a path that does not exist: the
 * scan of the mount table and the loop devices is for a directory an earlier run left.
 */
export const clearTaskDir = (dir: string): Effect.Effect<string, string> =>
  Effect.gen(function*() {
    if (yield* Effect.promise(() => fsp.lstat(dir).then(() => true, () => false))) yield* removeTaskDir(dir)
    return yield* Effect.tryPromise({ try: () => fsp.mkdir(dir, { recursive: true }).then(() => dir), catch: (e) => `mkdir ${dir}: ${message(e)}` })
  })

/** Where a daemon's leftovers can be. */
export interface RecoveryOptions {
  /** kojid's `workdir`: task directories are `<workdir>/tasks/<n>/<id>`. */
  readonly workdir: string
  /** More directories whose mounts and loop devices are this daemon's (the buildroot cache). */
  readonly otherRoots?: ReadonlyArray<string>
}

const readdirOr = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

/** The task directories (`tasks/<n>/<id>`) and start-up probe directories under the workdir. */
export const staleDirs = (workdir: string): ReadonlyArray<string> => {
  const tasks = path.join(workdir, "tasks")
  const taskDirs = readdirOr(tasks).flatMap((n) => readdirOr(path.join(tasks, n)).map((id) => path.join(tasks, n, id)))
  const probes = readdirOr(workdir).filter((n) => n.startsWith(".adjutant-propagation-")).map((n) => path.join(workdir, n))
  return [...taskDirs, ...probes]
}

/**
 * Start-up recovery (no task of this process runs yet): every container labelled with this host
 * that `isOwned` does not claim, then every mount and loop device under the workdir and
 * `otherRoots`, then the task directories. A podman that does not answer is logged, and its
 * containers are left to the reaper pass that runs when it is back. Never fails.
 */
export const recoverHost = Effect.fn("Recovery.recoverHost")(function*(options: RecoveryOptions, isOwned: IsOwned = () => false) {
  const started = Date.now()
  // A podman that hangs must not keep the daemon from its hub: bounded.
  const reaped = yield* Effect.either(reap(isOwned).pipe(Effect.timeoutFail({ duration: Duration.minutes(2), onTimeout: () => ({ message: "podman did not answer within 2 minutes" }) })))
  const containers = Either.isRight(reaped) ? reaped.right.removed : []
  const failed: Array<string> = []
  if (Either.isLeft(reaped)) {
    failed.push(`containers: ${reaped.left.message}`)
    yield* Effect.logWarning(`recovery: could not list this host's containers (removed once podman answers): ${reaped.left.message}`)
  } else {
    failed.push(...reaped.right.failed.map((n) => `container ${n}`))
  }
  const released = yield* releaseMountsUnder([options.workdir, ...(options.otherRoots ?? [])])
  failed.push(...released.failed)
  const removed: Array<string> = []
  for (const dir of staleDirs(options.workdir)) {
    const r = yield* removeTree(dir)
    if (Either.isRight(r)) {
      removed.push(dir)
      yield* Effect.logInfo(`recovery: removed ${dir}`)
    } else {
      failed.push(r.left)
      yield* Effect.logError(`recovery: could not remove: ${r.left}`)
    }
  }
  const report: RecoveryReport = { containers, unmounted: released.unmounted, detached: released.detached, removed, failed }
  const found = containers.length + released.unmounted.length + released.detached.length + removed.length
  if (found > 0 || failed.length > 0) {
    yield* Effect.logWarning(
      `recovery: an earlier process of this host left ${containers.length} containers, ${released.unmounted.length} mounts, ` +
        `${released.detached.length} loop devices, ${removed.length} directories: removed in ${Date.now() - started} ms` +
        (failed.length > 0 ? `; ${failed.length} could not be removed` : "")
    )
  }
  return report
})
