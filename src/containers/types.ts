/** The Containers service's shapes (Containers.ts is the tag and the podman layer, MemoryContainers.ts the fake). */
import type { Effect, Scope, Stream } from "effect"
import type { LogFrame } from "./demux.js"
import type { ContainerInspect, ExecOptions, ExecResult, PodmanError } from "./Libpod.js"
import type { ContainerSpec } from "./spec.js"

/** A created container, removed when the scope that created it closes. */
export interface Container {
  readonly id: string
  readonly name: string
  /** Fails when the runtime cannot start it (a failed start must not be mistaken for exit 0). */
  readonly start: Effect.Effect<void, PodmanError>
  /** The exit code once it stopped; -1 when podman killed it at `timeoutSeconds`. */
  readonly wait: Effect.Effect<number, PodmanError>
  /** stdout/stderr frames; with `follow` the stream ends when the container exits. */
  readonly logs: (options?: { readonly follow?: boolean }) => Stream.Stream<LogFrame, PodmanError>
  readonly exec: (cmd: ReadonlyArray<string>, options?: ExecOptions) => Effect.Effect<ExecResult, PodmanError>
  /** Extracts a tar into `path` (created if missing; files owned by the container's user, notes §5.2). */
  readonly putArchive: (path: string, tar: Uint8Array) => Effect.Effect<void, PodmanError>
  /** `path` (file or directory) as a tar. */
  readonly getArchive: (path: string) => Effect.Effect<Uint8Array, PodmanError>
  /** SIGTERM, then SIGKILL after `timeoutSeconds` (default: the configured stop timeout). */
  readonly stop: (timeoutSeconds?: number) => Effect.Effect<void, PodmanError>
  readonly kill: (signal?: string) => Effect.Effect<void, PodmanError>
  readonly inspect: Effect.Effect<ContainerInspect, PodmanError>
}

/** Exit code and the whole output of a command run to completion. */
export interface RunResult extends ExecResult {}

/** Options of `Containers.run`. */
export interface RunOptions {
  /** Called with each output frame as it is produced (follows the logs live). */
  readonly onOutput?: ((frame: LogFrame) => Effect.Effect<void>) | undefined
  /** Bytes of stdout and of stderr kept in the result, the last ones (default 16 MiB each). */
  readonly maxOutputBytes?: number | undefined
  /** Fetch stdout/stderr only when the exit code is not 0 (they are empty otherwise); no effect with `onOutput`. */
  readonly outputOnFailureOnly?: boolean | undefined
  /**
   * Remove the container when this scope closes instead of before `run` returns, so that the
   * caller can overlap the removal with its own work (e.g. a parallel scope).
   */
  readonly removeWith?: Scope.Scope | undefined
}

/** A container of this host as podman lists it. */
export interface OwnedContainer {
  readonly id: string
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  /** podman's state: created, running, exited, … */
  readonly state: string
}

/** Runs task commands in ephemeral podman containers with secure defaults (DESIGN §5). */
export interface ContainersService {
    /** The `io.koji.adjutant.host` label value of this daemon. */
    readonly hostName: string
    /** Creates (not starts) a container; it is removed — stop, kill, DELETE, bounded — when the scope closes. */
    readonly create: (spec: ContainerSpec) => Effect.Effect<Container, PodmanError, Scope.Scope>
    /** create + start + wait + collect output + remove. */
    readonly run: (spec: ContainerSpec, options?: RunOptions) => Effect.Effect<RunResult, PodmanError>
    /** Every container labelled with this host, whatever its state. */
    readonly listOwned: () => Effect.Effect<ReadonlyArray<OwnedContainer>, PodmanError>
    /** Force-removes a container now (no stop grace period); false if it did not exist. */
    readonly remove: (idOrName: string) => Effect.Effect<boolean, PodmanError>
  }
