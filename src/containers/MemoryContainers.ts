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

/** One fake service: its scripts and everything it recorded. */
interface Fake {
  readonly hostName: string
  readonly runScript: RunScript
  readonly execScript: ExecScript
  readonly options: MemoryContainersOptions
  readonly all: Array<MemoryContainer>
  readonly removedNames: Array<string>
  counter: number
}

const find = (f: Fake, idOrName: string) => f.all.find((c) => !c.removed && (c.id === idOrName || c.name === idOrName))

const markRemoved = (f: Fake, c: MemoryContainer) => {
  if (c.removed) return false
  c.removed = true
  c.state = "exited"
  f.removedNames.push(c.name)
  return true
}

const gone = (operation: string, c: MemoryContainer) =>
  new PodmanError({ operation, target: c.name, status: 404, message: `${operation} ${c.name} failed: no such container` })

const alive = (operation: string, c: MemoryContainer) =>
  Effect.suspend(() => (c.removed ? Effect.fail(gone(operation, c)) : Effect.void))

const noSuchFile = (c: MemoryContainer, path: string) =>
  new PodmanError({ operation: "container.getArchive", target: `${c.name}:${path}`, status: 404, message: `no such file ${path} in ${c.name}` })

const handle = (f: Fake, c: MemoryContainer): Container => {
  let result: RunResult | undefined
  let killedWith: number | undefined
  const outcome = Effect.suspend(() =>
    result !== undefined ? Effect.succeed(result) : Effect.tap(lift(f.runScript(c.spec)), (r) => Effect.sync(() => (result = r)))
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
          return lift(f.execScript(c.spec, cmd, o))
        })
      ),
    putArchive: (path, tar) => Effect.zipRight(alive("container.putArchive", c), Effect.sync(() => void c.archivesPut.push({ path, tar }))),
    getArchive: (path) =>
      Effect.suspend(() => {
        const tar = f.options.archive?.(c.spec, path)
        return tar === undefined ? Effect.fail(noSuchFile(c, path)) : Effect.succeed(tar)
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
        Config: { Labels: containerLabels(f.hostName, c.spec) }
      })
    )
  }
}

const create = (f: Fake, spec: ContainerSpec) =>
  Effect.gen(function* () {
    const problem = specProblem(spec)
    if (problem !== undefined) {
      return yield* new PodmanError({ operation: "container.create", message: `invalid container spec: ${problem}` })
    }
    const c = yield* Effect.acquireRelease(
      Effect.sync(() => {
        f.counter++
        const id = f.counter.toString(16).padStart(64, "0")
        const record: MemoryContainer = {
          id,
          name: containerName(spec, f.counter.toString(16).padStart(8, "0")),
          spec,
          state: "created",
          removed: false,
          execs: [],
          archivesPut: []
        }
        f.all.push(record)
        return record
      }),
      (c) => Effect.sync(() => markRemoved(f, c))
    )
    return handle(f, c)
  })

const run = (f: Fake, spec: ContainerSpec, runOptions?: RunOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const c = yield* create(f, spec)
      yield* c.start
      const exitCode = yield* c.wait
      const output = yield* Stream.runCollect(c.logs())
      if (runOptions?.onOutput !== undefined) yield* Effect.forEach(output, runOptions.onOutput, { discard: true })
      return { exitCode, ...collectOutput(output) }
    })
  )

/** The in-memory Containers service and its recorded state (`Containers.layerMemory` provides both). */
export const makeMemoryContainers = (options: MemoryContainersOptions = {}) =>
  Effect.sync(() => {
    const f: Fake = {
      hostName: options.hostName ?? "memory-host",
      runScript: options.run ?? (() => ({ exitCode: 0, stdout: "", stderr: "" })),
      execScript: options.exec ?? (() => ({ exitCode: 0, stdout: "", stderr: "" })),
      options,
      all: [],
      removedNames: [],
      counter: 0
    }
    const state = MemoryContainers.of({
      created: Effect.sync(() => [...f.all]),
      live: Effect.sync(() => f.all.filter((c) => !c.removed)),
      removed: Effect.sync(() => [...f.removedNames])
    })
    const service: ContainersService = {
      hostName: f.hostName,
      create: (spec) => create(f, spec),
      run: (spec, runOptions) => run(f, spec, runOptions),
      listOwned: () =>
        Effect.sync(() =>
          f.all
            .filter((c) => !c.removed)
            .map((c): OwnedContainer => ({ id: c.id, name: c.name, labels: containerLabels(f.hostName, c.spec), state: c.state }))
        ),
      remove: (idOrName) =>
        Effect.sync(() => {
          const c = find(f, idOrName)
          return c === undefined ? false : markRemoved(f, c)
        })
    }
    return { service, state }
  })
