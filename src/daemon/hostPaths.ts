/**
 * The start-time path check of a daemon that runs in a container (issue 16). Every bind mount the
 * daemon asks podman for is resolved by the host's podman, in the host's file system: the workdir,
 * the buildroot cache, the topdir, the SCM credentials must therefore be the same paths inside the
 * container and on the host (same-path volumes, `-v /var/tmp/koji:/var/tmp/koji`), and the loop
 * and overlay mounts the daemon makes below its workdir must reach the host (`:rshared` on a
 * shared host mount). A translation option was the alternative; same paths were chosen because
 * they keep every path the daemon logs, writes into a container spec or passes to `mount` one
 * and the same string, with nothing to translate and so nothing to translate wrongly.
 *
 * The check asks the host's podman itself, through the socket the daemon uses: it finds this
 * container (`/run/.containerenv`, else the podman or docker bind of /etc/hostname in
 * /proc/self/mountinfo, else the host name), inspects its Mounts and compares each path's
 * Source with its Destination; then it mounts a tmpfs below the workdir and lets the host's
 * podman look for a file on it (a created, never started container of this same image with the
 * workdir bound), which proves that mounts made here are seen there. A mismatch stops the
 * daemon before it logs in, with one message per path that says what to change.
 *
 * Whether to check: KOJI_ADJUTANT_CONTAINER=yes (the image sets it) always checks, and a daemon
 * that is no container of that podman fails; `no` never checks; unset (`auto`) checks when
 * /run/.containerenv or /.dockerenv exists, and only warns when the podman has no such container
 * (sandboxes and CI runners carry /.dockerenv while the daemon runs beside their podman).
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import * as fsp from "node:fs/promises"
import { hostname } from "node:os"
import * as path from "node:path"
import { Effect, Option, Schema } from "effect"
import type { Config } from "../config/AdjutantConfig.js"
import { podmanSocketPath } from "../config/AdjutantConfig.js"
import { makeLibpod, type PodmanError } from "../containers/Libpod.js"

/** The daemon runs in a container whose volumes do not give the host's podman the daemon's paths. */
export class HostPathsError extends Schema.TaggedError<HostPathsError>()("HostPathsError", {
  message: Schema.String,
  problems: Schema.Array(Schema.String)
}) {}

/** A path of the daemon that the host's podman must see at the same place. */
export interface HostPath {
  /** The config key it comes from, for messages. */
  readonly key: string
  readonly path: string
  /** "error": podman binds it into containers; "warning": only the daemon itself uses it. */
  readonly severity: "error" | "warning"
  /** The daemon mounts task disks and task roots below it: the volume needs shared propagation. */
  readonly mountsBelow?: boolean
  /** Skipped (with a note) when it does not exist in the container. */
  readonly optional?: boolean
  /** What follows when it is on no volume (default: the host's podman would bind the host's own path). */
  readonly consequence?: string
}

/** Whether to run the check: "auto" detects a container; "yes"/"no" say so. */
export type InContainer = "auto" | "yes" | "no"

/** Inputs of the check. */
export interface HostPathsOptions {
  /** The podman API socket (a path). */
  readonly socket: string
  readonly paths: ReadonlyArray<HostPath>
  readonly inContainer: InContainer
}

/** One entry of the Mounts of a libpod container inspect. */
export const InspectMount = Schema.Struct({
  Type: Schema.String,
  Source: Schema.String,
  Destination: Schema.String,
  RW: Schema.optional(Schema.Boolean),
  Propagation: Schema.optional(Schema.String)
})
/** One entry of the Mounts of a libpod container inspect. */
export type InspectMount = typeof InspectMount.Type

const OwnInspect = Schema.Struct({
  Id: Schema.String,
  Name: Schema.String,
  Image: Schema.String,
  Mounts: Schema.NullishOr(Schema.Array(InspectMount))
})

/** `KEY="value"` lines of podman's /run/.containerenv (filled only for --privileged containers). */
export const parseContainerEnv = (text: string): Readonly<Record<string, string>> => {
  const out: Record<string, string> = {}
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)="?(.*?)"?$/.exec(line.trim())
    if (m !== null && m[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2]
  }
  return out
}

/**
 * The container id in /proc/self/mountinfo: podman binds /etc/hostname, /etc/hosts,
 * /etc/resolv.conf and /run/.containerenv from `…/overlay-containers/<id>/userdata/`, docker from
 * `…/containers/<id>/`; the mount's root field keeps that host path.
 */
export const containerIdFromMountinfo = (text: string): string | undefined => {
  for (const line of text.split("\n")) {
    const fields = line.split(" ")
    const root = fields[3] ?? ""
    const target = fields[4] ?? ""
    if (!["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/run/.containerenv"].includes(target)) continue
    const m = /\/(?:overlay-containers\/([0-9a-f]{64})\/userdata|containers\/([0-9a-f]{64}))\/[^/]+$/.exec(root)
    const id = m?.[1] ?? m?.[2]
    if (id !== undefined) return id
  }
  return undefined
}

/** `p` as octal-escaped in mountinfo (space, tab, newline, backslash). */
const unescapeMountinfo = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/** True when the mount at `target` in this mountinfo text is in a shared peer group. */
export const isSharedMount = (text: string, target: string): boolean | undefined => {
  let found: boolean | undefined
  for (const line of text.split("\n")) {
    const fields = line.split(" ")
    if (fields.length < 7 || unescapeMountinfo(fields[4] ?? "") !== target) continue
    const sep = fields.indexOf("-")
    found = fields.slice(6, sep < 0 ? undefined : sep).some((f) => f.startsWith("shared:"))
  }
  return found
}

const within = (p: string, dir: string): boolean => dir === "/" || p === dir || p.startsWith(`${dir}/`)

/** The volume that holds `p` (the deepest destination at or above it) and where `p` is on the host. */
export const resolveOnHost = (
  mounts: ReadonlyArray<InspectMount>,
  p: string
): { readonly mount: InspectMount; readonly hostPath: string } | undefined => {
  const target = path.resolve(p)
  let best: InspectMount | undefined
  for (const m of mounts) {
    const dest = path.resolve(m.Destination)
    if (within(target, dest) && (best === undefined || dest.length > path.resolve(best.Destination).length)) best = m
  }
  if (best === undefined) return undefined
  const rest = path.relative(path.resolve(best.Destination), target)
  return { mount: best, hostPath: rest === "" ? best.Source : path.join(best.Source, rest) }
}

const volumeOf = (m: InspectMount): string => `${m.Type === "volume" ? "named volume at " : ""}${m.Source}:${m.Destination}`
const flag = (p: string, mountsBelow: boolean): string => `-v ${p}:${p}${mountsBelow ? ":rshared" : ""}`

/** What is wrong with each path, from this container's Mounts; `exists` says whether a path exists here. */
export const checkPaths = (
  mounts: ReadonlyArray<InspectMount>,
  paths: ReadonlyArray<HostPath>,
  exists: (p: string) => boolean
): { readonly errors: ReadonlyArray<string>; readonly warnings: ReadonlyArray<string> } => {
  const errors: Array<string> = []
  const warnings: Array<string> = []
  for (const hp of paths) {
    const out = hp.severity === "error" ? errors : warnings
    const below = hp.mountsBelow === true
    if (hp.optional === true && !exists(hp.path)) {
      warnings.push(`${hp.key} ${hp.path} does not exist in this container: tasks that need it will fail; mount it with ${flag(hp.path, below)}`)
      continue
    }
    const resolved = resolveOnHost(mounts, hp.path)
    if (resolved === undefined) {
      out.push(
        `${hp.key} ${hp.path} is not on a volume of this container, so ` +
          `${hp.consequence ?? `the host's podman would use the host's own ${hp.path}, not the daemon's`}: ` +
          `run the container with ${flag(hp.path, below)} (the same path inside and outside)`
      )
      continue
    }
    const { hostPath, mount } = resolved
    if (hostPath !== path.resolve(hp.path)) {
      out.push(
        `${hp.key} ${hp.path} is ${hostPath} on the host (volume ${volumeOf(mount)}): the host's podman binds host paths, ` +
          `so mount it at the same path: ${flag(hostPath, below)} with ${hp.key} = ${hostPath}, or ${flag(hp.path, below)}`
      )
      continue
    }
    if (below && !["shared", "rshared"].includes(mount.Propagation ?? "")) {
      out.push(
        `${hp.key} ${hp.path} is on the volume ${volumeOf(mount)} with ${mount.Propagation ?? "private"} propagation: the task disks and ` +
          `buildroots the daemon mounts below it would not reach the host's podman; add :rshared (${flag(mount.Destination, true)})`
      )
    }
  }
  return { errors, warnings }
}

/**
 * Why we think we run in a container: told so (`yes`, which the image sets), or podman's
 * /run/.containerenv or docker's /.dockerenv (`auto`); undefined when not.
 */
export const containerMarker = (inContainer: InContainer): string | undefined =>
  inContainer === "yes"
    ? "KOJI_ADJUTANT_CONTAINER=yes"
    : inContainer === "no"
    ? undefined
    : ["/run/.containerenv", "/.dockerenv"].find((f) => existsSync(f))

const readText = (file: string): string => {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

const run = (cmd: string, args: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${stderr.trim() || err.message}`))
      else resolve()
    })
  })

const fail = (problems: ReadonlyArray<string>) =>
  new HostPathsError({
    message: `koji-adjutant runs in a container, and the host's podman would not see its paths:\n  - ${problems.join("\n  - ")}\n` +
      `(README "Run in a container"; KOJI_ADJUTANT_CONTAINER=no skips this check)`,
    problems
  })

const podmanProblem = (what: string) => (e: PodmanError) => fail([`${what}: ${e.message}`])

/**
 * Asks the host's podman whether a file on a tmpfs mounted below `workdir` here is visible there:
 * `true` it is, `false` it is not, `undefined` when this container cannot mount (warned).
 */
const mountsReachHost = (libpod: Effect.Effect.Success<ReturnType<typeof makeLibpod>>, image: string, workdir: string) =>
  Effect.gen(function*() {
    const tag = randomBytes(6).toString("hex")
    const probe = path.join(workdir, `.adjutant-propagation-${tag}`)
    const mounted = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        try {
          await fsp.mkdir(probe, { mode: 0o700 })
          await run("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", probe])
          await fsp.writeFile(path.join(probe, "marker"), tag)
          return { ok: true as const }
        } catch (e) {
          return { ok: false as const, why: e instanceof Error ? e.message : String(e) }
        }
      }),
      () =>
        Effect.promise(async () => {
          await run("umount", [probe]).catch(() => undefined)
          await fsp.rmdir(probe).catch(() => undefined)
        })
    )
    if (!mounted.ok) {
      yield* Effect.logWarning(
        `cannot mount below the workdir to test that the host sees such mounts (${mounted.why}): task disks need ` +
          `CAP_SYS_ADMIN, CAP_MKNOD, /dev/loop-control and the device rule "b 7:* rwm" (or task_disk_max = 0)`
      )
      return undefined
    }
    const name = `koji-adjutant-pathcheck-${tag}`
    yield* Effect.acquireRelease(
      libpod.request({
        operation: "container.create",
        target: name,
        method: "POST",
        path: "/containers/create",
        json: {
          name,
          image,
          command: ["/bin/true"],
          labels: { "io.koji.adjutant.pathcheck": "1" },
          mounts: [{ type: "bind", source: workdir, destination: workdir, options: ["rbind", "ro"] }]
        }
      }),
      () =>
        libpod.remove(name, { force: true, timeoutSeconds: 0 }).pipe(
          Effect.catchAll((e) => Effect.logWarning(`could not remove the path-check container ${name}: ${e.message}`))
        )
    )
    // podman copies out of a container that is not running from the host side: the bind's source as the host sees it.
    const res = yield* libpod.request({
      operation: "container.archive",
      target: name,
      method: "GET",
      path: `/containers/${name}/archive`,
      query: { path: path.join(probe, "marker") },
      allowStatus: [404]
    })
    return res.status === 200
  }).pipe(Effect.scoped)

/** Does nothing outside a container; in one, fails with HostPathsError naming every path the host would not see. */
export const checkHostPaths = (options: HostPathsOptions): Effect.Effect<void, HostPathsError> =>
  Effect.gen(function*() {
    const marker = containerMarker(options.inContainer)
    if (marker === undefined) return
    const libpod = yield* makeLibpod({ socket: options.socket })
    const env = parseContainerEnv(readText("/run/.containerenv"))
    const id = env["id"] ?? containerIdFromMountinfo(readText("/proc/self/mountinfo")) ?? hostname()
    const found = yield* libpod.request({ operation: "container.inspect", target: id, method: "GET", path: `/containers/${encodeURIComponent(id)}/json` }).pipe(
      Effect.either
    )
    if (found._tag === "Left" && options.inContainer === "auto") {
      // A marker file alone is weak evidence (sandboxes and CI runners carry /.dockerenv): a daemon
      // that is no container of this podman runs beside it, as on a host. The image says "yes".
      yield* Effect.logWarning(
        `${marker} says this may be a container, but the podman behind ${options.socket} has no container ${id} ` +
          `(${found.left.message}): the container path check is skipped (KOJI_ADJUTANT_CONTAINER=yes requires it, =no silences this)`
      )
      return
    }
    const own = yield* (found._tag === "Left" ? Effect.fail(found.left) : Effect.succeed(found.right)).pipe(
      Effect.mapError(podmanProblem(
        `cannot find this container (${id}) in the podman behind ${options.socket}; the daemon must run in a container of that podman`
      )),
      Effect.flatMap((res) => Schema.decodeUnknown(Schema.parseJson(OwnInspect))(Buffer.from(res.body).toString("utf8"))),
      Effect.mapError((e) => e._tag === "HostPathsError" ? e : fail([`unexpected inspect answer from podman: ${e.message}`]))
    )
    yield* Effect.logInfo(`running in container ${own.Name} (${own.Id.slice(0, 12)}); checking that the host's podman sees its paths`)
    const { errors, warnings } = checkPaths(own.Mounts ?? [], options.paths, (p) => existsSync(p))
    for (const w of warnings) yield* Effect.logWarning(w)
    if (errors.length > 0) return yield* fail(errors)
    for (const hp of options.paths.filter((p) => p.mountsBelow === true && existsSync(p.path))) {
      const seen = yield* mountsReachHost(libpod, own.Image, path.resolve(hp.path)).pipe(
        Effect.mapError(podmanProblem(`cannot test with the host's podman that mounts below ${hp.key} ${hp.path} reach it`))
      )
      if (seen === false) {
        const shared = isSharedMount(readText("/proc/self/mountinfo"), path.resolve(hp.path))
        return yield* fail([
          `mounts the daemon makes below ${hp.key} ${hp.path} do not reach the host's podman` +
            `${shared === true ? " (the volume is rshared here, but its host directory is not on a shared mount)" : ""}: ` +
            `make the host directory a shared mount (systemd hosts share / already; else ` +
            `"mount --bind ${hp.path} ${hp.path} && mount --make-shared ${hp.path}" on the host) and mount it with ${flag(hp.path, true)}`
        ])
      }
    }
  }).pipe(Effect.scoped)

/** The paths of a daemon config that the host's podman resolves (and the log file, warned about only). */
export const hostPathsOf = (config: Config): ReadonlyArray<HostPath> => {
  const k = config.kojid
  const a = config.adjutant
  return [
    { key: "workdir", path: k.workdir, severity: "error", mountsBelow: true },
    { key: "buildroot_cache_dir", path: a.buildroot_cache_dir, severity: "error" },
    { key: "topdir", path: k.topdir, severity: "error", optional: true },
    ...(k.scm_credentials_dir === null || k.scm_credentials_dir === "" ? [] : [{ key: "scm_credentials_dir", path: k.scm_credentials_dir, severity: "error" as const }]),
    ...(a.log_file === "" ? [] : [{
      key: "log_file directory",
      path: path.dirname(a.log_file),
      severity: "warning" as const,
      consequence: "the log lives only in this container and goes with it"
    }])
  ]
}

/** Options of the check for a daemon config; `inContainer` from KOJI_ADJUTANT_CONTAINER (auto, yes, no). */
export const hostPathsOptions = (config: Config, inContainer: string | undefined): HostPathsOptions => ({
  socket: podmanSocketPath(config.adjutant),
  paths: hostPathsOf(config),
  inContainer: Option.getOrElse(
    Option.liftPredicate(inContainer?.trim().toLowerCase() ?? "auto", (v): v is InContainer => v === "yes" || v === "no" || v === "auto"),
    (): InContainer => "auto"
  )
})
