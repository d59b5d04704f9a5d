import { existsSync } from "node:fs"
import { type IdMap, idMappings } from "./idmap.js"
import { containerLabels } from "./labels.js"

/** A bind mount (read-only unless `writable`) or a tmpfs. */
export type ContainerMount =
  | { readonly type: "bind"; readonly source: string; readonly destination: string; readonly writable?: boolean | undefined }
  | { readonly type: "tmpfs"; readonly destination: string; readonly size?: string | undefined }

/** What a caller asks for; everything not asked for gets the secure default. */
export interface ContainerSpec {
  /** The image, e.g. localhost/koji-adjutant-bootstrap:<hash>; exclusive with `rootfs`. */
  readonly image?: string | undefined
  /** A root file system directory (a buildroot); `overlay` keeps it pristine (notes §9). */
  readonly rootfs?: { readonly path: string; readonly overlay: boolean } | undefined
  readonly command: ReadonlyArray<string>
  /** Label `.role`: build, buildroot, scm, createrepo, runroot, test. */
  readonly role: string
  readonly taskId?: number | undefined
  readonly buildrootId?: number | undefined
  readonly name?: string | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  /** `uid[:gid]` or a user name of the image; defaults to the configured build user for role "build". */
  readonly user?: string | undefined
  readonly workDir?: string | undefined
  readonly hostname?: string | undefined
  readonly mounts?: ReadonlyArray<ContainerMount> | undefined
  /** Default "none": no network at all. */
  readonly network?: "none" | "bridge" | "host" | undefined
  /** Capabilities to keep; every other one is dropped (default: none kept). */
  readonly capAdd?: ReadonlyArray<string> | undefined
  /** Read-only root; /tmp and /var/tmp then get a tmpfs unless mounted (rpmbuild needs /var/tmp, notes §3). */
  readonly readOnlyRoot?: boolean | undefined
  /** Overrides the configured default limits. */
  readonly limits?: { readonly memory?: number | undefined; readonly pids?: number | undefined; readonly cpus?: number | undefined } | undefined
  /** Hard wall-clock limit: podman SIGKILLs the container even if the daemon is gone (exit code -1). */
  readonly timeoutSeconds?: number | undefined
  /** catatonit as PID 1 (default true): signals reach the command and stop is fast. */
  readonly init?: boolean | undefined
  /** Run in a user namespace mapping container ids onto this host range (package code; see idmap.ts). */
  readonly idmap?: IdMap | undefined
}

/** One resource limit, with podman's short lowercase name (`nofile`, not `RLIMIT_NOFILE`: notes §5.2). */
export interface Ulimit {
  readonly type: string
  readonly soft: number
  readonly hard: number
}

/** Memory (bytes), pids and cpus applied to every container unless its spec overrides them; 0 = unlimited. */
export interface ContainerLimits {
  readonly memory: number
  readonly pids: number
  readonly cpus: number
}

/** Configuration of the Containers service. */
export interface ContainersOptions {
  /**
   * The podman API socket. Root: /run/podman/podman.sock. Rootless podman works by pointing this at
   * the user's socket ($XDG_RUNTIME_DIR/podman/podman.sock, or /tmp/podman-run-<uid>/… without
   * logind); there memory/pids/cpu limits are silently ignored on cgroup v1 (notes §1.4).
   */
  readonly socket: string
  /** Value of the `io.koji.adjutant.host` label: the koji host name. */
  readonly hostName: string
  /** OCI runtime name (runc, crun); podman's configured default when absent. */
  readonly ociRuntime?: string | undefined
  readonly defaultLimits: ContainerLimits
  /** Merged over DEFAULT_ULIMITS, then clamped to what the daemon may set. */
  readonly ulimits: ReadonlyArray<Ulimit>
  /** Seconds between SIGTERM and SIGKILL when a container is stopped. */
  readonly stopTimeout: number
  readonly cgroupParent?: string | undefined
  /** User for role "build" containers when the spec names none (e.g. "1000:1000"). */
  readonly buildUser?: string | undefined
  /**
   * SELinux is enabled on the host (`selinuxEnabled`): every container runs with `label=disable`.
   * Their binds include trees that must never be relabeled — topdir (often NFS), the buildroot
   * cache every task shares, scm_credentials_dir, runroot's mounts — and a confined container
   * could read none of them without it; the builds stay bounded by the user namespace, dropped
   * capabilities, no-new-privileges and read-only binds, as mock's builds are unconfined too.
   */
  readonly selinux?: boolean | undefined
}

/** The SpecGenerator JSON sent to POST /libpod/containers/create (notes §5.2). Unknown fields are silently ignored by podman, so this type is the guard. */
export interface SpecGenerator {
  readonly name: string
  readonly image?: string
  readonly rootfs?: string
  readonly rootfs_overlay?: boolean
  readonly command: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  readonly labels: Readonly<Record<string, string>>
  readonly user?: string
  readonly work_dir?: string
  readonly hostname?: string
  readonly init: boolean
  readonly timeout?: number
  readonly stop_timeout: number
  readonly mounts: ReadonlyArray<{ readonly destination: string; readonly type: "bind" | "tmpfs"; readonly source: string; readonly options: ReadonlyArray<string> }>
  readonly netns: { readonly nsmode: "none" | "bridge" | "host" }
  readonly resource_limits: {
    readonly memory?: { readonly limit: number; readonly swap: number }
    readonly pids?: { readonly limit: number }
    readonly cpu?: { readonly quota: number; readonly period: number }
  }
  readonly r_limits: ReadonlyArray<Ulimit>
  readonly privileged: false
  readonly cap_drop: ReadonlyArray<string>
  readonly cap_add: ReadonlyArray<string>
  readonly no_new_privileges: true
  readonly read_only_filesystem: boolean
  readonly oci_runtime?: string
  readonly cgroup_parent?: string
  readonly userns?: { readonly nsmode: "private" }
  /** `label=…` options; `disable` runs the container without SELinux separation. */
  readonly selinux_opts?: ReadonlyArray<string>
  /** OCI annotations; `io.podman.annotations.label` is what `podman inspect` shows as `label=…` in SecurityOpt. */
  readonly annotations?: Readonly<Record<string, string>>
  readonly idmappings?: {
    readonly UIDMap: ReadonlyArray<{ readonly container_id: number; readonly host_id: number; readonly size: number }>
    readonly GIDMap: ReadonlyArray<{ readonly container_id: number; readonly host_id: number; readonly size: number }>
  }
}

/**
 * Work without CAP_SYS_RESOURCE: podman's own default (1048576) exceeds the hard limits and
 * runc then fails with EPERM; both nofile and nproc must be set (notes §1.2).
 */
export const DEFAULT_ULIMITS: ReadonlyArray<Ulimit> = [
  { type: "nofile", soft: 4096, hard: 4096 },
  { type: "nproc", soft: 4096, hard: 4096 }
]

/** podman lowers its own nproc to 32768, and runc inherits that hard limit (notes §1.2). */
export const PODMAN_NPROC_MAX = 32768

/** `RLIMIT_NOFILE` → `nofile` (kojid's config keys → podman's names). */
export const rlimitName = (resource: string): string => resource.replace(/^RLIMIT_/i, "").toLowerCase()

/** Later entries replace earlier ones of the same type. */
export const mergeUlimits = (...lists: ReadonlyArray<ReadonlyArray<Ulimit>>): ReadonlyArray<Ulimit> => {
  const byType = new Map<string, Ulimit>()
  for (const list of lists) for (const u of list) byType.set(rlimitName(u.type), { ...u, type: rlimitName(u.type) })
  return [...byType.values()]
}

/** A hard or soft limit of a process; Infinity is "unlimited". */
export type ProcLimits = ReadonlyMap<string, { readonly soft: number; readonly hard: number }>

const PROC_LIMIT_NAMES: Readonly<Record<string, string>> = {
  "Max cpu time": "cpu",
  "Max file size": "fsize",
  "Max data size": "data",
  "Max stack size": "stack",
  "Max core file size": "core",
  "Max resident set": "rss",
  "Max processes": "nproc",
  "Max open files": "nofile",
  "Max locked memory": "memlock",
  "Max address space": "as",
  "Max file locks": "locks",
  "Max pending signals": "sigpending",
  "Max msgqueue size": "msgqueue",
  "Max nice priority": "nice",
  "Max realtime priority": "rtprio",
  "Max realtime timeout": "rttime"
}

/** Parses the text of /proc/<pid>/limits. */
export const parseProcLimits = (text: string): ProcLimits => {
  const out = new Map<string, { soft: number; hard: number }>()
  for (const line of text.split("\n")) {
    const m = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line)
    const name = m === null ? undefined : PROC_LIMIT_NAMES[m[1]!]
    if (m === null || name === undefined) continue
    const num = (s: string) => (s === "unlimited" ? Infinity : Number(s))
    out.set(name, { soft: num(m[2]!), hard: num(m[3]!) })
  }
  return out
}

/**
 * Lowers every limit to what a process without CAP_SYS_RESOURCE may set: hard ≤ the daemon's
 * own hard limit (podman's service runs with ours), nproc ≤ 32768, soft ≤ hard.
 */
export const clampUlimits = (ulimits: ReadonlyArray<Ulimit>, host: ProcLimits): ReadonlyArray<Ulimit> =>
  ulimits.map((u) => {
    const hostHard = host.get(u.type)?.hard ?? Infinity
    const hard = Math.min(u.hard, hostHard, u.type === "nproc" ? PODMAN_NPROC_MAX : Infinity)
    return { type: u.type, soft: Math.min(u.soft, hard), hard }
  })

/** Go decodes r_limits into uint64: "unlimited" cannot be sent, and the largest exact JSON integer acts as it. */
const toWire = (n: number) => (Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER)

/** `sys_chroot`, `SYS_CHROOT` and `CAP_SYS_CHROOT` all name CAP_SYS_CHROOT. */
export const capabilityName = (cap: string): string => {
  const upper = cap.trim().toUpperCase()
  return upper.startsWith("CAP_") ? upper : `CAP_${upper}`
}

/** Why a spec cannot be created, or undefined when it is well formed. */
export const specProblem = (spec: ContainerSpec): string | undefined => {
  if ((spec.image === undefined) === (spec.rootfs === undefined)) return "exactly one of image and rootfs must be given"
  if (spec.command.length === 0) return "the command is empty"
  const dests = (spec.mounts ?? []).map((m) => m.destination)
  const dup = dests.find((d, i) => dests.indexOf(d) !== i)
  if (dup !== undefined) return `two mounts on ${dup}`
  return undefined
}

const tmpfs = (destination: string, size: string | undefined) => ({
  destination,
  type: "tmpfs" as const,
  source: "tmpfs",
  options: ["rw", ...(size === undefined ? [] : [`size=${size}`]), "mode=1777"]
})

/** Default size of the /tmp and /var/tmp tmpfs given to a read-only root. */
export const DEFAULT_TMPFS_SIZE = "1g"

/**
 * The SpecGenerator for `spec` with the secure defaults: never privileged, every capability
 * dropped but `capAdd`, no_new_privileges, no network, read-only binds, limits, labels, init.
 * `ulimits` are already merged and clamped.
 */
export const toSpecGenerator = (
  spec: ContainerSpec,
  options: Omit<ContainersOptions, "socket" | "ulimits">,
  name: string,
  ulimits: ReadonlyArray<Ulimit>
): SpecGenerator => {
  const mounts: Array<SpecGenerator["mounts"][number]> = (spec.mounts ?? []).map((m) =>
    m.type === "bind"
      ? { destination: m.destination, type: "bind", source: m.source, options: ["rbind", m.writable === true ? "rw" : "ro"] }
      : tmpfs(m.destination, m.size ?? DEFAULT_TMPFS_SIZE)
  )
  const readOnly = spec.readOnlyRoot === true
  if (readOnly) {
    // read_only_filesystem does not add the tmpfs mounts the CLI's --read-only does (notes §5.2).
    for (const d of ["/tmp", "/var/tmp"]) if (!mounts.some((m) => m.destination === d)) mounts.push(tmpfs(d, DEFAULT_TMPFS_SIZE))
  }
  const memory = spec.limits?.memory ?? options.defaultLimits.memory
  const pids = spec.limits?.pids ?? options.defaultLimits.pids
  const cpus = spec.limits?.cpus ?? options.defaultLimits.cpus
  const user = spec.user ?? (spec.role === "build" ? options.buildUser : undefined)
  return {
    name,
    ...(spec.image !== undefined ? { image: spec.image } : {}),
    ...(spec.rootfs !== undefined ? { rootfs: spec.rootfs.path, rootfs_overlay: spec.rootfs.overlay } : {}),
    command: spec.command,
    ...(spec.env !== undefined ? { env: spec.env } : {}),
    labels: containerLabels(options.hostName, spec),
    ...(user !== undefined ? { user } : {}),
    ...(spec.workDir !== undefined ? { work_dir: spec.workDir } : {}),
    ...(spec.hostname !== undefined ? { hostname: spec.hostname } : {}),
    init: spec.init ?? true,
    ...(spec.timeoutSeconds !== undefined ? { timeout: Math.max(1, Math.ceil(spec.timeoutSeconds)) } : {}),
    stop_timeout: options.stopTimeout,
    mounts,
    netns: { nsmode: spec.network ?? "none" },
    resource_limits: {
      ...(memory > 0 ? { memory: { limit: memory, swap: memory } } : {}),
      ...(pids > 0 ? { pids: { limit: pids } } : {}),
      ...(cpus > 0 ? { cpu: { quota: Math.round(cpus * 100_000), period: 100_000 } } : {})
    },
    r_limits: ulimits
      .filter((u) => Number.isFinite(u.soft) || Number.isFinite(u.hard))
      .map((u) => ({ type: u.type, soft: toWire(u.soft), hard: toWire(u.hard) })),
    privileged: false,
    cap_drop: ["ALL"],
    cap_add: (spec.capAdd ?? []).map(capabilityName),
    no_new_privileges: true,
    read_only_filesystem: readOnly,
    ...(options.ociRuntime !== undefined ? { oci_runtime: options.ociRuntime } : {}),
    ...(options.cgroupParent !== undefined ? { cgroup_parent: options.cgroupParent } : {}),
    // The annotation is what `podman run --security-opt label=disable` records beside the option:
    // without it `podman inspect` on the builder would not show why the container is unconfined.
    ...(options.selinux === true ? { selinux_opts: ["disable"], annotations: { "io.podman.annotations.label": "disable" } } : {}),
    ...(spec.idmap !== undefined ? idMappings(spec.idmap) : {})
  }
}

/** A podman-valid unique name: `kojiadj-<role>[-t<task>]-<random>`. */
export const containerName = (spec: ContainerSpec, random: string): string =>
  spec.name ??
  `kojiadj-${spec.role.replace(/[^a-zA-Z0-9_.-]/g, "_")}${spec.taskId === undefined ? "" : `-t${spec.taskId}`}-${random}`

/**
 * Whether SELinux is enabled (enforcing or permissive) on the host whose file system is at
 * `root`: libselinux's test, selinuxfs mounted with a policy loaded (`/sys/fs/selinux/enforce`).
 */
export const selinuxEnabled = (root = "/"): boolean => existsSync(`${root.replace(/\/+$/, "")}/sys/fs/selinux/enforce`)
