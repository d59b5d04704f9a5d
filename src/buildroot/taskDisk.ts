/**
 * The bounded scratch disk of a buildroot (issue: hostile packages get nothing): everything a
 * build can write to the host — its results, its logs, the BuildRequires installed into its copy
 * of the root, an SCM checkout — lives on a file system of its own, an ext4 image of
 * `[adjutant] task_disk_max` bytes loop-mounted nosuid,nodev at the buildroot's directory. A full
 * disk is ENOSPC inside the build, never on the host. The image is sparse: it costs only what
 * the build wrote, and goes with the task.
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import { BuildrootSetupError } from "./errors.js"

/** A buildroot's scratch disk. */
export interface TaskDisk {
  /** The mount point (or plain directory when unbounded). */
  readonly dir: string
  /** Its size in bytes; 0 = unbounded (`task_disk_max = 0`). */
  readonly limit: number
}

const run = (cmd: string, args: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 120_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${stderr.trim() || err.message}`))
      else resolve()
    })
  })

/** The image file beside the mount point. */
export const diskImageOf = (dir: string): string => `${dir}.img`

// Whether the disk is gone decides, not umount's status: in a container (a writable
// /run/mount/utab that records the `loop` option) umount unmounts, then fails to detach the loop
// device the kernel already auto-cleared, and exits 32 ("filesystem was unmounted, but …").
const unmount = async (dir: string): Promise<void> => {
  await run("umount", [dir])
    .catch(() => (isMountPoint(dir) ? run("umount", ["-l", dir]) : undefined))
    .catch((e: unknown) => {
      if (isMountPoint(dir)) throw e
    })
}

/**
 * `dir` as a fresh file system of `limit` bytes (or a plain directory for 0), removed with the
 * scope: unmounted (lazily if busy), the image deleted.
 */
export const taskDisk = (dir: string, limit: number) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async (): Promise<TaskDisk> => {
        // 0711: containers in the build user namespace must pass through to their root and mounts.
        await fsp.mkdir(dir, { recursive: true, mode: 0o711 })
        if (limit <= 0) return { dir, limit: 0 }
        const image = diskImageOf(dir)
        const handle = await fsp.open(image, "w", 0o600)
        try {
          await handle.truncate(limit)
        } finally {
          await handle.close()
        }
        // No journal (the disk dies with the task), no reserved blocks, inode tables initialised lazily:
        // a few tens of milliseconds whatever the size.
        await run("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", "-m", "0", image])
        await run("mount", ["-o", "loop,nosuid,nodev", image, dir])
        await fsp.chmod(dir, 0o711)
        await fsp.rm(`${dir}/lost+found`, { recursive: true, force: true })
        return { dir, limit }
      },
      catch: (e) =>
        new BuildrootSetupError({
          message: `cannot make the task's disk at ${dir} (task_disk_max = ${limit} bytes): ` +
            `${e instanceof Error ? e.message : String(e)}; it needs mkfs.ext4 and loop mounts (root), or task_disk_max = 0`
        })
    }),
    (disk) =>
      Effect.promise(async () => {
        if (disk.limit > 0) {
          await unmount(disk.dir)
          await fsp.rm(diskImageOf(disk.dir), { force: true })
        }
        await fsp.rm(disk.dir, { recursive: true, force: true })
      }).pipe(
        Effect.timeout("120 seconds"),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not remove the task disk ${disk.dir}`, cause))
      )
  )

/** True when the disk is bounded and (almost) full: what a failed command's ENOSPC looks like from outside. */
export const diskFull = (disk: TaskDisk): Effect.Effect<boolean> =>
  disk.limit <= 0
    ? Effect.succeed(false)
    : Effect.promise(() =>
      fsp.statfs(disk.dir).then((s) => s.bavail * s.bsize < 4 * 1024 * 1024, () => false)
    )

/** True when `dir` is a mount point (its device differs from its parent's). */
export const isMountPoint = (dir: string): boolean => {
  try {
    return fs.statSync(dir).dev !== fs.statSync(`${dir}/..`).dev
  } catch {
    return false
  }
}
