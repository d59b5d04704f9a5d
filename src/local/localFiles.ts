/** Files and directories of a local build: the input SRPM, the result directory, scratch workdirs. */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { LocalBuildError } from "./errors.js"

/** The machine's arch as rpm names it. */
export const hostArch = (): string => {
  const a = os.arch()
  return a === "x64" ? "x86_64" : a === "arm64" ? "aarch64" : a === "ia32" ? "i386" : a
}

/** An error's text for a one-line message. */
export const why = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** The errno code of a Node error, if any. */
export const codeOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

/** The SRPM must be a readable regular file. */
export const checkSrpm = (srpm: string) =>
  Effect.tryPromise({
    try: async () => {
      const st = await fsp.stat(srpm)
      if (!st.isFile()) throw new Error("not a regular file")
      await fsp.access(srpm, fs.constants.R_OK)
    },
    catch: (e) => new LocalBuildError({ message: `cannot read the SRPM ${srpm}: ${codeOf(e) === "ENOENT" ? "no such file" : why(e)}` })
  })

/** The result directory, made if missing; it must be a writable directory. */
export const checkResultDir = (dir: string) =>
  Effect.tryPromise({
    try: async () => {
      await fsp.mkdir(dir, { recursive: true })
      if (!(await fsp.stat(dir)).isDirectory()) throw new Error("not a directory")
      await fsp.access(dir, fs.constants.W_OK)
    },
    catch: (e) => {
      const code = codeOf(e)
      const reason = code === "EEXIST" || code === "ENOTDIR" ? "a file is in the way" : code === "EACCES" ? "permission denied" : why(e)
      return new LocalBuildError({ message: `cannot use the result directory ${dir}: ${reason}` })
    }
  })

/** A scratch directory for one buildroot, removed with the scope. */
export const scopedWorkdir = Effect.acquireRelease(
  // Traversable (0711): the build's containers run as a mapped uid and must reach their root.
  Effect.promise(() => fsp.mkdtemp(path.join(os.tmpdir(), "koji-adjutant-local-")).then(async (d) => (await fsp.chmod(d, 0o711), d))),
  (d) => Effect.promise(() => fsp.rm(d, { recursive: true, force: true }))
)
