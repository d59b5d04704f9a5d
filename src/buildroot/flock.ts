/**
 * Advisory file locks between processes (the buildroot cache shared by several daemons on one
 * machine): the kernel's flock(2), which Node does not expose, applied through util-linux
 * `flock(1)` to a descriptor the daemon opened and hands to it. flock locks belong to the open
 * file description, not to the process that called flock(2): once `flock -x 3` has exited, the
 * lock stays with the daemon's own descriptor until the daemon closes it — or dies, SIGKILL
 * included, when the kernel closes it. So there is no stale lock to detect and break, no process
 * id to trust (daemons in containers have their own pid namespaces) and no heartbeat; a lock costs
 * one short child process. A shared lock per user of a file is also a use count the kernel keeps:
 * an exclusive try (`-n`) fails while any holder lives.
 */
import { Effect, type Scope } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import { BuildrootSetupError } from "./errors.js"

/** How a lock is held: `shared` with other shared holders, or `exclusive`. */
export type LockMode = "shared" | "exclusive"

/** A held lock; `release` closes the descriptor (the kernel drops the lock with it). */
export interface HeldLock {
  readonly file: string
  readonly mode: LockMode
  /** Removes the lock file (while holding it exclusively), then releases. */
  readonly unlinkAndRelease: Effect.Effect<void>
  readonly release: Effect.Effect<void>
}

/** flock's exit code for "held elsewhere" with -n (EX_TEMPFAIL), apart from its own errors. */
const CONFLICT = 75

const lockError = (file: string, why: string) =>
  new BuildrootSetupError({ message: `buildroot cache: cannot lock ${file}: ${why}` })

/** Runs `flock MODE [-n] 3` on the open handle: true when locked, false on a conflict (only with `wait: false`). */
const flockOn = (handle: fsp.FileHandle, file: string, mode: LockMode, wait: boolean) =>
  Effect.async<boolean, BuildrootSetupError>((resume) => {
    const args = [mode === "shared" ? "-s" : "-x", ...(wait ? [] : ["-n", "-E", String(CONFLICT)]), "3"]
    let stderr = ""
    const child = spawn("flock", args, { stdio: ["ignore", "ignore", "pipe", handle.fd] })
    child.stderr?.on("data", (b: Buffer) => void (stderr += b.toString()))
    child.once("error", (e) =>
      resume(Effect.fail(lockError(file, `${e.message}; the flock program (util-linux) is needed`))))
    child.once("exit", (code, signal) => {
      if (code === 0) resume(Effect.succeed(true))
      else if (code === CONFLICT && !wait) resume(Effect.succeed(false))
      else resume(Effect.fail(lockError(file, `flock exited with ${code ?? signal}: ${stderr.trim()}`)))
    })
    // Interrupted while waiting: the child dies; whatever it took goes with the descriptor, closed by the caller.
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

const sameFile = async (handle: fsp.FileHandle, file: string): Promise<boolean> => {
  const [held, named] = await Promise.all([handle.stat(), fsp.stat(file).catch(() => undefined)])
  return named !== undefined && named.ino === held.ino && named.dev === held.dev
}

/**
 * Locks `file` (created 0600 if missing) in `mode` for the life of the scope; waits unless `wait`
 * is false, in which case `undefined` says another holder has it. Only the wait is interruptible:
 * a lock once taken is always released with the scope. A lock file may be removed by whoever holds
 * it exclusively (`unlinkAndRelease`): a lock obtained on a file no longer at that path is dropped
 * and taken again on the new one.
 */
export const lockFile = (file: string, mode: LockMode, wait = true): Effect.Effect<HeldLock | undefined, BuildrootSetupError, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      for (let attempt = 0; attempt < 100; attempt++) {
        const handle = yield* Effect.tryPromise({
          try: () => fsp.open(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600),
          catch: (e) => lockError(file, e instanceof Error ? e.message : String(e))
        })
        const close = Effect.promise(() => handle.close().catch(() => undefined))
        const locked = yield* restore(flockOn(handle, file, mode, wait)).pipe(
          Effect.onExit((exit) => (exit._tag === "Success" && exit.value ? Effect.void : close))
        )
        if (!locked) return undefined
        if (!(yield* Effect.promise(() => sameFile(handle, file)))) {
          yield* close
          continue
        }
        yield* Effect.addFinalizer(() => close)
        const held: HeldLock = {
          file,
          mode,
          release: close,
          unlinkAndRelease: Effect.promise(() => fsp.rm(file, { force: true })).pipe(Effect.zipRight(close))
        }
        return held
      }
      return yield* Effect.fail(lockError(file, "the lock file keeps being replaced"))
    })
  )

/** `lockFile`, waiting, for the life of the scope. */
export const lockScoped = (file: string, mode: LockMode): Effect.Effect<HeldLock, BuildrootSetupError, Scope.Scope> =>
  Effect.flatMap(lockFile(file, mode, true), (held) => (held === undefined ? Effect.fail(lockError(file, "not taken")) : Effect.succeed(held)))
