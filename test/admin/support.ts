/** Runs an admin command in this process as the CLI would, capturing what it prints and logs. */
import { Command } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, Effect, Exit, LogLevel, Option } from "effect"
import { vi } from "vitest"
import { FatalReported, stderrLoggerLayer } from "../../src/daemon/Logging.js"

/** What one run printed, and its exit status as the CLI would set it. */
export interface AdminRun {
  readonly stdout: string
  readonly stderr: string
  readonly status: number
}

/** `koji-adjutant <args>` for one admin command, in process. */
export const runAdmin = <N extends string, R, E, A>(command: Command.Command<N, R, E, A>, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const err: Array<string> = []
    const log = vi.spyOn(console, "log").mockImplementation((...a: Array<unknown>) => void out.push(a.join(" ")))
    const write = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      err.push(String(chunk))
      return true
    })
    const exit = yield* Effect.exit(Command.run(command, { name: "koji-adjutant", version: "test" })(["node", "koji-adjutant", ...args])).pipe(
      Effect.provide(stderrLoggerLayer({ format: "kojid", area: "admin", level: LogLevel.Info })),
      Effect.ensuring(Effect.sync(() => {
        log.mockRestore()
        write.mockRestore()
      }))
    )
    const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
    const status = Exit.isSuccess(exit)
      ? 0
      : Option.isSome(failure) && failure.value instanceof FatalReported
      ? failure.value.exitCode ?? 1
      : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
      ? 130
      : 99
    if (status === 99 && Exit.isFailure(exit)) err.push(Cause.pretty(exit.cause))
    return { stdout: out.join("\n"), stderr: err.join(""), status } satisfies AdminRun
  }).pipe(Effect.provide(NodeContext.layer))
