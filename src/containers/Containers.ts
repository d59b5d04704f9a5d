import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { hostname } from "node:os"
import { Context, Duration, Effect, Fiber, Layer, Scope, Stream } from "effect"
import { AdjutantConfig, effectiveUlimits, podmanSocketPath } from "../config/AdjutantConfig.js"
import { Metrics } from "../metrics/Metrics.js"
import { makeOutputCollector } from "./demux.js"
import { hostLabelFilter } from "./labels.js"
import { Libpod, PodmanError } from "./Libpod.js"
import { makeMemoryContainers, MemoryContainers, type MemoryContainersOptions } from "./MemoryContainers.js"
import type { Container, ContainersService, OwnedContainer, RunOptions } from "./types.js"
import {
  clampUlimits,
  type ContainerSpec,
  type ContainersOptions,
  containerName,
  DEFAULT_ULIMITS,
  mergeUlimits,
  parseProcLimits,
  type ProcLimits,
  selinuxEnabled,
  specProblem,
  toSpecGenerator,
  type Ulimit
} from "./spec.js"

export type { ContainerMount, ContainerSpec, ContainersOptions, Ulimit } from "./spec.js"
export type { ExecOptions, ExecResult } from "./Libpod.js"
export type { Container, ContainersService, OwnedContainer, RunOptions, RunResult } from "./types.js"
export { PodmanError } from "./Libpod.js"
export type { LogFrame } from "./demux.js"

/** Runs task commands in ephemeral podman containers with secure defaults (DESIGN §5). */
export class Containers extends Context.Tag("Containers")<Containers, ContainersService>() {
  /** The real service on `options.socket`; also provides the Libpod client it uses. */
  static layer = (options: ContainersOptions): Layer.Layer<Containers | Libpod> =>
    Layer.effect(Containers, makeContainers(options)).pipe(Layer.provideMerge(Libpod.layer({ socket: options.socket })))

  /** In-memory fake recording every create and removal (see MemoryContainers for its state). */
  static layerMemory = (options?: MemoryContainersOptions): Layer.Layer<Containers | MemoryContainers> =>
    Layer.effectContext(Effect.map(makeMemoryContainers(options), ({ service, state }) =>
      Context.make(Containers, service).pipe(Context.add(MemoryContainers, state))))

  /** The real service configured from `[adjutant]` and kojid's `RLIMIT_*` keys. */
  static layerConfig: Layer.Layer<Containers | Libpod, never, AdjutantConfig> = Layer.unwrapEffect(
    Effect.map(AdjutantConfig, (config) => Containers.layer(containersOptionsFromConfig(config)))
  )
}

/** ContainersOptions from the daemon config; the host label is kojid's `user` or else the machine's host name. */
export const containersOptionsFromConfig = (config: AdjutantConfig["Type"]): ContainersOptions => {
  const a = config.adjutant
  return {
    socket: podmanSocketPath(a),
    hostName: config.kojid.user ?? hostname(),
    ...(a.oci_runtime === "" ? {} : { ociRuntime: a.oci_runtime }),
    defaultLimits: { memory: a.container_memory, pids: a.container_pids, cpus: a.container_cpus },
    ulimits: effectiveUlimits(config).map((u) => ({
      type: u.name,
      soft: u.soft < 0 ? Infinity : u.soft,
      hard: u.hard < 0 ? Infinity : u.hard
    })),
    stopTimeout: a.container_stop_timeout,
    ...(a.cgroup_parent === "" ? {} : { cgroupParent: a.cgroup_parent }),
    ...(a.build_user === "" ? {} : { buildUser: a.build_user }),
    selinux: selinuxEnabled()
  }
}

const readOwnLimits = (): ProcLimits => {
  try {
    return parseProcLimits(readFileSync("/proc/self/limits", "utf8"))
  } catch {
    return new Map()
  }
}

const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024

/** catatonit's message when the command itself cannot be executed (init: true). */
const PID1_EXEC_FAILED = /^ERROR \(catatonit:\d+\): failed to exec pid1: (.*)$/m

/** Seconds allowed for a forced DELETE beyond the stop timeout before escalating to SIGKILL. */
const REMOVE_GRACE = Duration.seconds(15)

/** What the service's steps share: the client, the options and the ulimits every container gets. */
interface Podman {
  readonly libpod: Libpod["Type"]
  readonly options: ContainersOptions
  readonly ulimits: ReadonlyArray<Ulimit>
}

/** The configured ulimits, lowered to what this process may grant (each lowering warned about). */
const grantableUlimits = (options: ContainersOptions) =>
  Effect.gen(function* () {
    const wanted = mergeUlimits(DEFAULT_ULIMITS, options.ulimits)
    const ulimits: ReadonlyArray<Ulimit> = clampUlimits(wanted, readOwnLimits())
    for (const u of ulimits) {
      const w = wanted.find((x) => x.type === u.type)
      if (w !== undefined && (w.soft !== u.soft || w.hard !== u.hard)) {
        yield* Effect.logWarning(
          `container ulimit ${u.type}=${w.soft}:${w.hard} lowered to ${u.soft}:${u.hard}: ` +
            "raising a hard limit needs CAP_SYS_RESOURCE (podman caps nproc at 32768)"
        )
      }
    }
    return ulimits
  })

const removeNow = (p: Podman, id: string) => p.libpod.remove(id, { force: true, timeoutSeconds: 0, volumes: true })

/** Never fails; bounded: DELETE with the stop timeout, then SIGKILL + DELETE timeout 0. */
const release = (p: Podman, id: string, name: string) =>
  Effect.gen(function* () {
    const first = yield* p.libpod.remove(id, { force: true, timeoutSeconds: p.options.stopTimeout, volumes: true }).pipe(
      Effect.interruptible,
      Effect.timeout(Duration.sum(Duration.seconds(p.options.stopTimeout), REMOVE_GRACE)),
      Effect.either
    )
    if (first._tag === "Right") {
      yield* Effect.logDebug("container removed")
      return
    }
    yield* Effect.logWarning("container removal failed, killing it", first.left)
    yield* p.libpod.kill(id, "SIGKILL").pipe(Effect.interruptible, Effect.timeout(REMOVE_GRACE), Effect.ignore)
    const second = yield* removeNow(p, id).pipe(Effect.interruptible, Effect.timeout(REMOVE_GRACE), Effect.either)
    if (second._tag === "Left") {
      yield* Effect.logError("container left behind; the reaper removes it at the next pass", second.left)
    }
  }).pipe(Effect.annotateLogs({ container: name, containerId: id.slice(0, 12) }))

// Calls address the container by its (unique) name so that errors name it readably.
const makeContainer = ({ libpod, options }: Podman, id: string, name: string): Container => ({
  id,
  name,
  start: libpod.start(name),
  wait: libpod.wait(name),
  logs: (o) => libpod.logs(name, o),
  exec: (cmd, o) => libpod.exec(name, cmd, o),
  putArchive: (path, tar) => libpod.putArchive(name, path, tar),
  getArchive: (path) => libpod.getArchive(name, path),
  stop: (timeout) => libpod.stop(name, timeout ?? options.stopTimeout),
  kill: (signal) => libpod.kill(name, signal),
  inspect: libpod.inspect(name)
})

const create = (p: Podman) =>
  Effect.fn("Containers.create")(function* (spec: ContainerSpec) {
    const name = containerName(spec, randomBytes(4).toString("hex"))
    const problem = specProblem(spec)
    if (problem !== undefined) {
      return yield* new PodmanError({ operation: "container.create", target: name, message: `invalid container spec for ${name}: ${problem}` })
    }
    const generator = toSpecGenerator(spec, p.options, name, p.ulimits)
    const id = yield* Effect.acquireRelease(
      p.libpod.containerCreate(generator).pipe(
        // A transport failure may come after podman created it: remove by name, which we chose.
        Effect.tapError((e) => (e.status === undefined ? removeNow(p, name).pipe(Effect.ignore) : Effect.void))
      ),
      (id) => release(p, id, name)
    )
    yield* Effect.annotateCurrentSpan({ container: name })
    return makeContainer(p, id, name)
  })

/** Starts the container and waits for its end, collecting its output (followed live with `onOutput`). */
const startAndCollect = (c: Container, runOptions: RunOptions | undefined) =>
  Effect.gen(function* () {
    yield* c.start
    const onOutput = runOptions?.onOutput
    const collector = makeOutputCollector(runOptions?.maxOutputBytes ?? DEFAULT_MAX_OUTPUT)
    let exitCode: number
    if (onOutput === undefined) {
      exitCode = yield* c.wait
      if (exitCode !== 0 || runOptions?.outputOnFailureOnly !== true) {
        yield* Stream.runForEach(c.logs(), (f) => Effect.sync(() => collector.push(f)))
      }
    } else {
      const follower = yield* c.logs({ follow: true }).pipe(
        Stream.runForEach((f) => {
          collector.push(f)
          return onOutput(f)
        }),
        Effect.fork
      )
      exitCode = yield* c.wait
      yield* Fiber.join(follower)
    }
    return { exitCode, output: collector.output() }
  })

const run = (create: ContainersService["create"]) =>
  Effect.fn("Containers.run")(function* (spec: ContainerSpec, runOptions?: RunOptions) {
    const removeWith = runOptions?.removeWith
    const inScope = <A, E>(body: Effect.Effect<A, E, Scope.Scope>): Effect.Effect<A, E> =>
      removeWith === undefined ? Effect.scoped(body) : Scope.extend(body, removeWith)
    return yield* inScope(
      Effect.gen(function* () {
        const c = yield* create(spec)
        const { exitCode, output } = yield* startAndCollect(c, runOptions)
        const execFailure = exitCode !== 0 ? PID1_EXEC_FAILED.exec(output.stderr) : null
        if (execFailure !== null) {
          return yield* new PodmanError({
            operation: "container.start",
            target: c.name,
            message:
              `command ${JSON.stringify(spec.command[0])} cannot be executed in ` +
              `${spec.image ?? spec.rootfs?.path}: ${execFailure[1]}`
          })
        }
        return { exitCode, ...output }
      })
    ).pipe(
      Effect.tapBoth({
        onFailure: () => Effect.flatMap(Metrics, (m) => Effect.sync(() => m.container("error"))),
        onSuccess: (r) => Effect.flatMap(Metrics, (m) => Effect.sync(() => m.container(r.exitCode === 0 ? "success" : "failure")))
      })
    )
  })

const listOwned = (p: Podman) =>
  Effect.fn("Containers.listOwned")(function* () {
    const found = yield* p.libpod.list([hostLabelFilter(p.options.hostName)])
    return found.map(
      (c): OwnedContainer => ({ id: c.Id, name: c.Names?.[0] ?? c.Id, labels: c.Labels ?? {}, state: c.State })
    )
  })

/** Builds the Containers service over Libpod. */
export const makeContainers = Effect.fnUntraced(function* (options: ContainersOptions) {
  const p: Podman = { libpod: yield* Libpod, options, ulimits: yield* grantableUlimits(options) }
  if (options.selinux === true) yield* Effect.logInfo("SELinux is enabled: containers run with label=disable (README: SELinux)")
  const createContainer = create(p)
  return Containers.of({
    hostName: options.hostName,
    create: createContainer,
    run: run(createContainer),
    listOwned: listOwned(p),
    remove: Effect.fn("Containers.remove")(function* (idOrName: string) {
      return yield* removeNow(p, idOrName)
    })
  })
})
