/**
 * The public shapes of the Buildroots service (DESIGN §5): its options, what a task asks for, and
 * the live buildroot a task gets.
 */
import type { Effect } from "effect"
import type { ContainerMount } from "../containers/Containers.js"
import type { ImageRequest } from "../containers/ImagePolicy.js"
import type { ImageError } from "../containers/Images.js"
import type { IdMap } from "../containers/idmap.js"
import type { PodmanError } from "../containers/Libpod.js"
import type { BuildError } from "../koji/faults.js"
import type { Ref } from "../koji/refs.js"
import type { RepoInfo, TagInfo } from "../hub/schemas.js"
import type { BuildrootRegistryOptions } from "./buildrootImages.js"
import type { BuildrootOptions } from "./config.js"
import type { BuildLimitExceeded, BuildrootSetupError, FsError, RpmbuildFailed } from "./errors.js"
import type { HubSideError } from "./hubSide.js"
import type { HostileOutput, TakenRpm } from "./results.js"

/** Options of the Buildroots service. */
export interface BuildrootsOptions {
  readonly kojid: BuildrootOptions
  /** `[adjutant] buildroot_cache_dir` */
  readonly cacheDir: string
  /** `[adjutant] buildroot_cache_max` (entries; 0 = no cache). */
  readonly cacheMax: number
  /** `[adjutant] buildroot_cache_max_bytes` (0 = no bound beyond the count). */
  readonly cacheMaxBytes?: number
  /** `[adjutant] buildroot_registry` and how to reach it; undefined = no buildroot images. */
  readonly registry?: BuildrootRegistryOptions
  /** `uid:gid` of the build user inside the containers (`[adjutant] build_user`). */
  readonly buildUser: string
  /** `[adjutant] build_userns`: host ids of the containers that run package code; null = host ids. */
  readonly idmap: IdMap | null
  /** `[adjutant] task_disk_max`: bytes of each buildroot's own disk; 0 = none. */
  readonly taskDiskMax: number
  /** `[adjutant] result_max_size`: bytes of packages a task may take out of its build. */
  readonly resultMaxSize: number
  /** `[adjutant] log_max_size`: bytes of each log uploaded (head and tail); 0 = whole. */
  readonly logMaxSize: number
  /** Size of the /builddir tmpfs of the build container (bounds what a build may write). */
  readonly buildTmpfsSize: string
  /** The bootstrap image for a task and its image id (ImagePolicy through Images). */
  readonly resolveImage: (request: ImageRequest) => Effect.Effect<{ readonly image: string; readonly id: string }, ImageError | BuildrootSetupError>
  /** For mock_config.log: the limits the Containers service applies. */
  readonly limitsText: string
}

/** What a task asks for. */
export interface BuildrootRequest {
  readonly taskId: number
  /** The build tag (id or name) as the task got it. */
  readonly tag: Ref
  /** The arch of the buildroot before canonArch (kojid's `arch` argument of BuildRoot). */
  readonly arch: string
  readonly repoId: number
  /** `build` (buildArch) or `srpm-build` (SRPM tasks). */
  readonly installGroup: string
  /** The task's workdir (scratch space; removed after the task). */
  readonly workdir: string
  /** Host network for `run` (runroot's setup_dns); builds never get a network. */
  readonly network?: boolean
  /**
   * Host ids instead of the build user namespace (runroot: `mock --chroot` runs as the host's root
   * and writes to the admin's rw mounts); such a root is cached apart.
   */
  readonly hostIds?: boolean
}

/** Every failure of a buildroot step. */
export type BuildrootFailure = BuildrootSetupError | FsError | RpmbuildFailed | BuildLimitExceeded | HostileOutput | BuildError | HubSideError | PodmanError

/** The packages a build left, checked and copied out (results.ts). */
export interface Collected {
  readonly srpms: ReadonlyArray<TakenRpm>
  readonly rpms: ReadonlyArray<TakenRpm>
  /** Names kojid ignores (neither `.rpm` nor `.log`), for a debug line. */
  readonly unexpected: ReadonlyArray<string>
}

/** A live buildroot of one task. */
export interface Buildroot {
  readonly id: number
  readonly name: string
  readonly repo: RepoInfo
  readonly config: TagInfo
  readonly brArch: string
  /** True when the root came from the cache. */
  readonly warm: boolean
  /** `<mockdir>/<name>/result`: where kojid's mock would have put the results (kojid's fault texts name it). */
  readonly mockResultDir: string
  /** A directory on the buildroot's bounded disk for other files of the task (an SCM checkout). */
  readonly scratchDir: string
  /** `mock --rebuild <srpm> --target <arch>`: BUILDING, the build with BuildRequires rounds, updateBuildRootList; failure → EXPIRED + BuildError. */
  readonly build: (srpm: string, arch: string) => Effect.Effect<void, BuildrootFailure>
  /** kojid's `rebuild_srpm`: unpack the SRPM and `rpmbuild -bs --nodeps` its single spec. */
  readonly rebuildSrpm: (srpm: string) => Effect.Effect<void, BuildrootFailure>
  /**
   * The packages rpmbuild left, each checked (results.ts) and copied into `outDir` (mode 0644),
   * within `result_max_size`; binary packages must be of `arches` when given.
   */
  readonly collect: (options: { readonly outDir: string; readonly arches?: ReadonlySet<string> }) => Effect.Effect<Collected, HostileOutput | FsError>
  /** Stops log streaming (final flush) and returns every log name uploaded, kojid's `broot.logs`. */
  readonly finishLogs: Effect.Effect<ReadonlyArray<string>>
  /** Logs cut at `log_max_size` (their head and tail were uploaded); known after `finishLogs`. */
  readonly truncatedLogs: Effect.Effect<ReadonlyArray<string>>
  /** `host.setBuildRootState(id, 'EXPIRED')` (once; also done when the scope closes). */
  readonly expire: Effect.Effect<void, HubSideError>
  /** Milliseconds from open to the first rpmbuild start (for the benchmark). */
  readonly readyMs: () => number | undefined
  /**
   * kojid's `mock --install` + `mock --chroot`: BUILDING, the extra packages installed into this
   * task's copy of the root (then updateBuildRootList), and the command run in that copy.
   */
  readonly run: (options: BuildrootRunOptions) => Effect.Effect<BuildrootRunResult, BuildrootFailure>
}

/** What `Buildroot.run` runs. */
export interface BuildrootRunOptions {
  /** argv in the root; stdin is /dev/null, stdout and stderr go to the log `log`. */
  readonly command: ReadonlyArray<string>
  /** `root` (runroot: `mock --chroot` runs as root, in a writable root) or the build user (read-only root, tmpfs /builddir as for rpmbuild). */
  readonly user: "root" | "build"
  /** Extra mounts; missing mount points are made in the task's copy of the root. */
  readonly mounts: ReadonlyArray<ContainerMount>
  /** Host network (kojid's setup_dns); default: the buildroot request's `network`. */
  readonly network?: boolean
  /** Installed first with dnf into the task's copy (never into the cached root), as `mock --install`. */
  readonly installPackages?: ReadonlyArray<string>
  /** Name of the log the output goes to, streamed into the task directory under that name (`runroot.log`). */
  readonly log: string
  /** Container label role (default `runroot` for root, `build` for the build user). */
  readonly role?: string
  /** Hard wall-clock limit of the command (none by default, as kojid's `mock --chroot`). */
  readonly timeoutSeconds?: number
}

/** How `Buildroot.run` ended. */
export interface BuildrootRunResult {
  /** The command's exit code; -1 when it was killed at `timeoutSeconds`. */
  readonly exitCode: number
  /** Host path of the log. */
  readonly logFile: string
  /** Host path of the task's copy of the root (kojid's `rootdir()`), there until the buildroot's scope closes. */
  readonly rootdir: string
  /** What the container printed outside the log (the shell's own errors); only on failure. */
  readonly stray: string
}
