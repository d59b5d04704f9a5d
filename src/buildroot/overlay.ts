/**
 * A task's writable view of a cached buildroot: an overlay mount (lower = the cached root,
 * upper = the task's own directory), so BuildRequires installed for one task never reach the
 * cache and the cached root stays pristine (DESIGN §5). When the kernel refuses the mount (no
 * CAP_SYS_ADMIN), the root is copied instead (`cp -a --reflink=auto`), which is slower but equal.
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { BuildrootSetupError } from "./errors.js"

const exec = (cmd: string, args: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 600_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${stderr.trim() || err.message}`))
      else resolve()
    })
  })

/** How the task root was made. */
export type TaskRootKind = "overlay" | "copy"

/**
 * Mounts (or copies) `lower` as a writable root under `dir`; undone when the scope closes. `owner`
 * owns the root directory (the user namespace's root, so that its dnf can write there).
 */
export const taskRoot = (lower: string, dir: string, owner?: { readonly uid: number; readonly gid: number }) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async (): Promise<{ readonly root: string; readonly kind: TaskRootKind }> => {
        const upper = path.join(dir, "upper")
        const work = path.join(dir, "work")
        const root = path.join(dir, "root")
        await Promise.all([upper, work, root].map((d) => fsp.mkdir(d, { recursive: true })))
        // The merged root takes its owner and mode from the upper directory's.
        const top = await fsp.stat(lower)
        await fsp.chmod(upper, top.mode & 0o7777)
        if (owner !== undefined) await fsp.chown(upper, owner.uid, owner.gid)
        try {
          await exec("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${work}`, root])
          return { root, kind: "overlay" }
        } catch {
          await exec("cp", ["-a", "--reflink=auto", `${lower}/.`, root])
          return { root, kind: "copy" }
        }
      },
      catch: (e) => new BuildrootSetupError({ message: `cannot prepare the task's buildroot from ${lower}: ${e instanceof Error ? e.message : String(e)}` })
    }),
    ({ root, kind }) =>
      Effect.promise(async () => {
        if (kind === "overlay") {
          await exec("umount", [root]).catch(() => exec("umount", ["-l", root]))
        }
        await fsp.rm(dir, { recursive: true, force: true })
      }).pipe(
        Effect.timeout("120 seconds"),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not remove task buildroot ${dir}`, cause))
      )
  )
