import { Context, Effect, Stream } from "effect"
import type { Container, ContainersService, OwnedContainer, RunOptions, RunResult } from "./types.js"
import { collectOutput, type LogFrame } from "./demux.js"
import { containerLabels } from "./labels.js"
import { type ContainerInspect, type ExecOptions, type ExecResult, PodmanError } from "./Libpod.js"
import { type ContainerSpec, containerName, specProblem } from "./spec.js"

/** What the fake answers for a container's command (run, or start + wait + logs). */
export type RunScript = (spec: ContainerSpec) => RunResult | Effect.Effect<RunResult, PodmanError>

/** What the fake answers for an exec. */
export type ExecScript = (
  spec: ContainerSpec,
  cmd: ReadonlyArray<string>,
  options: ExecOptions | undefined
) => ExecResult | Effect.Effect<ExecResult, PodmanError>

/** Options of the in-memory Containers. */
export interface MemoryContainersOptions {
  readonly hostName?: string
  /** Default: exit 0, no output. */
  readonly run?: RunScript
  /** Default: exit 0, no output. */
  readonly exec?: ExecScript
  /** Tar returned by getArchive(path); default: a 404 PodmanError. */
  readonly archive?: (spec: ContainerSpec, path: string) => Uint8Array | undefined
}

/** Everything the fake saw about one container. */
export interface MemoryContainer {
  readonly id: string
  readonly name: string
  readonly spec: ContainerSpec
  state: "created" | "running" | "exited"
  removed: boolean
  readonly execs: Array<{ readonly cmd: ReadonlyArray<string>; readonly options: ExecOptions | undefined }>
  readonly archivesPut: Array<{ readonly path: string; readonly tar: Uint8Array }>
}

/** The fake's state, for assertions such as "nothing left behind". */
export class MemoryContainers extends Context.Tag("MemoryContainers")<
  MemoryContainers,
  {
    /** Every container created, in order. */
    readonly created: Effect.Effect<ReadonlyArray<MemoryContainer>>
    /** Created and not removed: empty when nothing was left behind. */
    readonly live: Effect.Effect<ReadonlyArray<MemoryContainer>>
    /** Names of the removed containers, in order of removal. */
    readonly removed: Effect.Effect<ReadonlyArray<string>>
  }
>() {}

const frames = (r: RunResult): ReadonlyArray<LogFrame> => [
  ...(r.stdout === "" ? [] : [{ stream: "stdout" as const, data: Buffer.from(r.stdout) }]),
  ...(r.stderr === "" ? [] : [{ stream: "stderr" as const, data: Buffer.from(r.stderr) }])
]

const lift = <A>(v: A | Effect.Effect<A, PodmanError>): Effect.Effect<A, PodmanError> =>
  Effect.isEffect(v) ? v : Effect.succeed(v)

/** The in-memory Containers service and its recorded state (`Containers.layerMemory` provides both). */
export const makeMemoryContainers = (options: MemoryContainersOptions = {}) => {
  const hostName = options.hostName ?? "memory-host"
  const runScript: RunScript = options.run ?? (() => ({ exitCode: 0, stdout: "", stderr: "" }))
  const execScript: ExecScript = options.exec ?? (() => ({ exitCode: 0, stdout: "", stderr: "" }))
  const make = Effect.sync(() => {
    const all: Array<MemoryContainer> = []
    const removedNames: Array<string> = []
    let counter = 0

    const find = (idOrName: string) => all.find((c) => !c.removed && (c.id === idOrName || c.name === idOrName))
    const markRemoved = (c: MemoryContainer) => {
      if (c.removed) return false
      c.removed = true
      c.state = "exited"
      removedNames.push(c.name)
      return true
    }
    const gone = (operation: string, c: MemoryContainer) =>
      new PodmanError({ operation, target: c.name, status: 404, message: `${operation} ${c.name} failed: no such container` })
    const alive = (operation: string, c: MemoryContainer) =>
      Effect.suspend(() => (c.removed ? Effect.fail(gone(operation, c)) : Effect.void))

    const handle = (c: MemoryContainer): Container => {
      let result: RunResult | undefined
      let killedWith: number | undefined
      const outcome = Effect.suspend(() =>
        result !== undefined ? Effect.succeed(result) : Effect.tap(lift(runScript(c.spec)), (r) => Effect.sync(() => (result = r)))
      )
      return {
        id: c.id,
        name: c.name,
        start: Effect.zipRight(alive("container.start", c), Effect.sync(() => void (c.state = "running"))),
        wait: Effect.zipRight(
          alive("container.wait", c),
          Effect.map(outcome, (r) => {
            c.state = "exited"
            return killedWith ?? r.exitCode
          })
        ),
        logs: () => Stream.unwrap(Effect.map(outcome, (r) => Stream.fromIterable(frames(r)))),
        exec: (cmd, o) =>
          Effect.zipRight(
            alive("container.exec", c),
            Effect.suspend(() => {
              c.execs.push({ cmd, options: o })
              return lift(execScript(c.spec, cmd, o))
            })
          ),
        putArchive: (path, tar) => Effect.zipRight(alive("container.putArchive", c), Effect.sync(() => void c.archivesPut.push({ path, tar }))),
        getArchive: (path) =>
          Effect.suspend(() => {
            const tar = options.archive?.(c.spec, path)
            return tar === undefined
              ? Effect.fail(new PodmanError({ operation: "container.getArchive", target: `${c.name}:${path}`, status: 404, message: `no such file ${path} in ${c.name}` }))
              : Effect.succeed(tar)
          }),
        stop: () => Effect.sync(() => void (c.state = "exited")),
        kill: () =>
          Effect.sync(() => {
            killedWith = 137
            c.state = "exited"
          }),
        inspect: Effect.sync(
          (): ContainerInspect => ({
            Id: c.id,
            Name: c.name,
            State: { Status: c.state, Running: c.state === "running", ExitCode: killedWith ?? result?.exitCode ?? 0 },
            Config: { Labels: containerLabels(hostName, c.spec) }
          })
        )
      }
    }

    const create = (spec: ContainerSpec) =>
      Effect.gen(function* () {
        const problem = specProblem(spec)
        if (problem !== undefined) {
          return yield* new PodmanError({ operation: "container.create", message: `invalid container spec: ${problem}` })
        }
        const c = yield* Effect.acquireRelease(
          Effect.sync(() => {
            counter++
            const id = counter.toString(16).padStart(64, "0")
            const record: MemoryContainer = {
              id,
              name: containerName(spec, counter.toString(16).padStart(8, "0")),
              spec,
              state: "created",
              removed: false,
              execs: [],
              archivesPut: []
            }
            all.push(record)
            return record
          }),
          (c) => Effect.sync(() => markRemoved(c))
        )
        return handle(c)
      })

    const run = (spec: ContainerSpec, runOptions?: RunOptions) =>
      Effect.scoped(
        Effect.gen(function* () {
          const c = yield* create(spec)
          yield* c.start
          const exitCode = yield* c.wait
          const output = yield* Stream.runCollect(c.logs())
          if (runOptions?.onOutput !== undefined) yield* Effect.forEach(output, runOptions.onOutput, { discard: true })
          return { exitCode, ...collectOutput(output) }
        })
      )

    const listOwned = () =>
      Effect.sync(() =>
        all
          .filter((c) => !c.removed)
          .map((c): OwnedContainer => ({ id: c.id, name: c.name, labels: containerLabels(hostName, c.spec), state: c.state }))
      )

    const remove = (idOrName: string) =>
      Effect.sync(() => {
        const c = find(idOrName)
        return c === undefined ? false : markRemoved(c)
      })

    const state = MemoryContainers.of({
      created: Effect.sync(() => [...all]),
      live: Effect.sync(() => all.filter((c) => !c.removed)),
      removed: Effect.sync(() => [...removedNames])
    })
    const service: ContainersService = { hostName, create, run, listOwned, remove }
    return { service, state }
  })
  return make
}
