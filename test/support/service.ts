import { type ChildProcess, spawn } from "node:child_process"
import { rmSync } from "node:fs"

/** Whether `child` exits within `ms`. */
const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done(true)
    const t = setTimeout(() => done(false), ms)
    child.once("exit", () => {
      clearTimeout(t)
      done(true)
    })
  })

/** A server process a test started (podman's API service, docker-registry). */
export interface BackgroundService {
  readonly child: ChildProcess
  /** The last 4000 characters of its stderr, for error messages. */
  readonly stderr: () => string
  /** SIGTERM, then SIGKILL after 5 s; removes `dir`. Also killed if the test process exits. */
  readonly stop: () => Promise<void>
}

/** Starts `command args` in `dir` (its scratch dir, removed by stop) with stderr kept. */
export const startBackgroundService = (command: string, args: ReadonlyArray<string>, dir: string): BackgroundService => {
  const child = spawn(command, args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] })
  let stderr = ""
  child.stderr?.on("data", (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000)
  })
  const killOnExit = () => child.kill("SIGKILL")
  process.once("exit", killOnExit)
  const stop = async () => {
    process.removeListener("exit", killOnExit)
    child.kill("SIGTERM")
    if (!(await exited(child, 5000))) {
      child.kill("SIGKILL")
      await exited(child, 2000)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  return { child, stderr: () => stderr, stop }
}
