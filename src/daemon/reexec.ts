/**
 * A restart that loads new code, as kojid's `os.execv(sys.argv[0], sys.argv)`: the daemon's
 * process becomes a fresh node with the same arguments and environment (NOTIFY_SOCKET and the
 * rest). The PID stays — systemd's MainPID, what `koji restart-hosts` and SIGUSR1 users expect —
 * and nothing of the old run survives but stdin, stdout and stderr: dist/, node_modules and node
 * itself are loaded from disk again, so an upgraded package runs its new code. The caller runs
 * this after the old run's scope has closed (its containers removed, its session logged out).
 */
import { Effect } from "effect"
import { accessSync, constants } from "node:fs"

/** What to exec: the executable, its argv (argv[0] included) and its environment. */
export interface ProcessImage {
  readonly file: string
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
}

/** execve(2); on success it does not return. */
export type Execve = (file: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) => void

/** This process as it was started: node, node's own options, the script and its arguments, the environment. */
export const currentImage = (): ProcessImage => ({
  file: process.execPath,
  args: [process.argv0, ...process.execArgv, ...process.argv.slice(1)],
  env: Object.fromEntries(Object.entries(process.env).flatMap(([k, v]) => (v === undefined ? [] : [[k, v] as const])))
})

/** Node's process.execve (22.15 and later), or undefined on an older Node. */
export const nodeExecve = (): Execve | undefined => {
  const execve = process.execve
  return execve === undefined ? undefined : (file, args, env) => execve.call(process, file, args, env)
}

/**
 * Replaces this process with `image` through `execve` (the daemon passes nodeExecve(); there is
 * no default, so a caller passing undefined never execs by accident). Returns only when that
 * cannot be done, with the reason (the caller then restarts within this process, as before): a
 * Node without process.execve, or an executable that is gone or not executable (an upgrade that
 * moved node). That is checked first because Node 24 aborts the process when execve(2) fails.
 */
export const reexec = (image: ProcessImage, execve: Execve | undefined): Effect.Effect<string> =>
  Effect.gen(function*() {
    if (execve === undefined) return `Node ${process.version} has no process.execve (22.15 and later have it)`
    const usable = yield* Effect.try({
      try: () => accessSync(image.file, constants.X_OK),
      catch: (e) => (e instanceof Error ? e.message : String(e))
    }).pipe(Effect.either)
    if (usable._tag === "Left") return `cannot exec ${image.file}: ${usable.left}`
    yield* Effect.logWarning(`Restarting: exec ${image.args.join(" ")} (pid ${process.pid} stays)`)
    return yield* Effect.try({
      try: () => {
        execve(image.file, image.args, image.env)
        return `exec ${image.file} returned`
      },
      catch: (e) => `exec ${image.file} failed: ${e instanceof Error ? e.message : String(e)}`
    }).pipe(Effect.merge)
  })
