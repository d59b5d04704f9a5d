/**
 * The runroot plugin's config (`/etc/kojid/plugins/runroot.conf`, koji `plugins/builder/runroot.py`
 * `_read_config`) and its mount rules: `[paths]` default_mounts, safe_roots and path_subs,
 * `[pathN]` sections (mountpoint, path, fstype, options) in numeric order, `[runroot]`
 * internal_dev_setup; a requested mount must lie under a safe root, is rewritten by the path
 * substitutions, and is resolved through the `[pathN]` whose mountpoint it starts with.
 */
import { Either, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { emptyIniDocument, type IniDocument, readIniInto } from "../config/ini.js"
import { GenericError } from "../koji/faults.js"

/** One `[pathN]` section. */
export interface RunrootPath {
  readonly mountpoint: string
  readonly path: string
  readonly fstype: string
  readonly options: string
}

/** The parsed runroot.conf. */
export interface RunrootConfig {
  readonly defaultMounts: ReadonlyArray<string>
  readonly safeRoots: ReadonlyArray<string>
  readonly pathSubs: ReadonlyArray<readonly [string, string]>
  readonly paths: ReadonlyArray<RunrootPath>
  readonly internalDevSetup: boolean | null
}

/** runroot.conf is unreadable or wrong ("bad config: …" as the plugin says). */
export class RunrootConfigError extends Schema.TaggedError<RunrootConfigError>()("RunrootConfigError", {
  file: Schema.String,
  message: Schema.String
}) {}

/** The config when the file is missing: nothing may be mounted. */
export const emptyRunrootConfig: RunrootConfig = { defaultMounts: [], safeRoots: [], pathSubs: [], paths: [], internalDevSetup: null }

const pyBool = (v: string): boolean | undefined => {
  const s = v.trim().toLowerCase()
  if (["1", "yes", "true", "on"].includes(s)) return true
  if (["0", "no", "false", "off"].includes(s)) return false
  return undefined
}

/** Parses runroot.conf text as the plugin does. */
export const parseRunrootConfig = (text: string, file: string): Either.Either<RunrootConfig, RunrootConfigError> => {
  const doc: IniDocument = emptyIniDocument()
  const read = readIniInto(doc, text, file)
  if (Either.isLeft(read)) return Either.left(new RunrootConfigError({ file, message: `${file}:${read.left.line}: ${read.left.message}` }))
  const get = (section: string, key: string): string | undefined =>
    doc.sections.get(section)?.entries.get(key)?.value ?? (doc.sections.has(section) ? doc.defaults.get(key)?.value : undefined)
  const fail = (message: string) => Either.left(new RunrootConfigError({ file, message }))

  let internalDevSetup: boolean | null = null
  const ids = get("runroot", "internal_dev_setup")
  if (ids !== undefined) {
    const b = pyBool(ids)
    if (b === undefined) return fail(`Not a boolean: ${ids}`)
    internalDevSetup = b
  }
  const list = (v: string | undefined) => (v === undefined ? [] : v.split(","))
  const defaultMounts = list(get("paths", "default_mounts"))
  const safeRoots = list(get("paths", "safe_roots"))
  const pathSubs: Array<readonly [string, string]> = []
  for (const raw of (get("paths", "path_subs") ?? "").split("\n")) {
    const line = raw.trim()
    if (line === "") continue
    const sub = line.split(",")
    if (sub.length !== 2) return fail(`bad runroot substitution: ${JSON.stringify(sub)}`)
    pathSubs.push([sub[0]!, sub[1]!])
  }
  // Order matters: a path may be mounted inside another one's mountpoint.
  const sections = [...doc.sections.keys()].filter((s) => /^path\d+/.test(s)).sort((a, b) => Number.parseInt(a.slice(4), 10) - Number.parseInt(b.slice(4), 10))
  const paths: Array<RunrootPath> = []
  for (const s of sections) {
    const mountpoint = get(s, "mountpoint")
    const p = get(s, "path")
    const fstype = get(s, "fstype")
    const options = get(s, "options")
    if (mountpoint === undefined || p === undefined || fstype === undefined || options === undefined) {
      return fail(`bad config: missing options in ${s} section`)
    }
    paths.push({ mountpoint, path: p, fstype, options })
  }
  for (const p of [...defaultMounts, ...safeRoots, ...pathSubs.map((x) => x[0])]) {
    if (!p.startsWith("/")) {
      return fail(`bad config: all paths (default_mounts, safe_roots, path_subs) needs to be absolute: ${p}`)
    }
  }
  return Either.right({ defaultMounts, safeRoots, pathSubs, paths, internalDevSetup })
}

/**
 * Why the runroot plugin cannot run with `file`: missing (the plugin would allow no mount at all,
 * so the daemon refuses to load it rather than fail every runroot task later), unreadable or
 * invalid. Undefined when it is usable.
 */
export const runrootConfigProblem = (file: string): string | undefined => {
  if (!fs.existsSync(file)) return `runroot plugin: ${file} does not exist (set [adjutant] runroot_config, or install the plugin's runroot.conf)`
  const rc = readRunrootConfig(file)
  return Either.isLeft(rc) ? `runroot plugin: ${rc.left.message}` : undefined
}

/** Reads the config file; a missing file is an empty config (no mounts allowed), as the plugin's reader. */
export const readRunrootConfig = (file: string): Either.Either<RunrootConfig, RunrootConfigError> => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    if (e instanceof Error && "code" in e && e.code === "ENOENT") return Either.right(emptyRunrootConfig)
    return Either.left(new RunrootConfigError({ file, message: `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}` }))
  }
  return parseRunrootConfig(text, file)
}

/** A mount as `_get_path_params` gives it: source, mountpoint, fstype, options. */
export interface ResolvedMount {
  readonly source: string
  readonly mountpoint: string
  readonly fstype: string
  readonly options: ReadonlyArray<string>
}

/** `_get_path_params(path, rw)`: the `[pathN]` whose mountpoint `p` starts with; `ro` becomes `rw` when asked. */
export const pathParams = (config: RunrootConfig, p: string, rw = false): Either.Either<ResolvedMount, GenericError> => {
  const entry = config.paths.find((m) => p.startsWith(m.mountpoint))
  if (entry === undefined) return Either.left(new GenericError({ faultString: "bad config: missing corresponding mountpoint" }))
  const options = entry.options.split(",").map((o) => (rw && o === "ro" ? "rw" : o))
  let rel = p.slice(entry.mountpoint.length)
  if (rel.startsWith("/")) rel = rel.slice(1)
  return Either.right({ source: rel === "" ? entry.path : path.join(entry.path, rel), mountpoint: p, fstype: entry.fstype, options })
}

/** Python's os.path.normpath for absolute paths. */
const normpath = (p: string): string => {
  const n = path.posix.normalize(p)
  return n.length > 1 ? n.replace(/\/+$/, "") : n
}

/**
 * `do_extra_mounts`: each requested mount must start with a safe root (after normpath, no
 * `/../`), is rewritten by path_subs, and is resolved read-write through `[pathN]`.
 */
export const extraMounts = (config: RunrootConfig, mounts: ReadonlyArray<string>): Either.Either<ReadonlyArray<ResolvedMount>, GenericError> => {
  const out: Array<ResolvedMount> = []
  for (const requested of mounts) {
    let mount = normpath(requested)
    if (!config.safeRoots.some((root) => mount.startsWith(root)) || mount.includes("/../")) {
      return Either.left(new GenericError({ faultString: `read-write mount point is not safe: ${mount}` }))
    }
    for (const [rep, sub] of config.pathSubs) mount = mount.replaceAll(rep, sub)
    const resolved = pathParams(config, mount, true)
    if (Either.isLeft(resolved)) return Either.left(resolved.left)
    out.push(resolved.right)
  }
  return Either.right(out)
}

/** `default_mounts` resolved read-only (as configured). */
export const defaultMounts = (config: RunrootConfig): Either.Either<ReadonlyArray<ResolvedMount>, GenericError> =>
  Either.all(config.defaultMounts.map((m) => pathParams(config, m)))

/** A bind mount a container can get, from a resolved mount (`do_mounts`' checks: absolute mountpoint, bind source exists, no `bg`). */
export const toBind = (m: ResolvedMount): Either.Either<{ readonly source: string; readonly destination: string; readonly writable: boolean }, GenericError> => {
  if (!m.mountpoint.startsWith("/")) return Either.left(new GenericError({ faultString: `invalid mount point: ${m.mountpoint}` }))
  if (m.options.includes("bg")) return Either.left(new GenericError({ faultString: "bad config: background mount not allowed" }))
  if (!m.options.includes("bind")) {
    // A container gets bind mounts only; other file systems must be mounted on the host and bound.
    return Either.left(new GenericError({ faultString: `Unable to mount ${m.mountpoint}: fstype ${m.fstype} is not supported, only bind mounts` }))
  }
  let isDir = false
  try {
    isDir = fs.statSync(m.source).isDirectory()
  } catch {
    isDir = false
  }
  if (!isDir) return Either.left(new GenericError({ faultString: `No such directory or mount: ${m.source}` }))
  return Either.right({ source: m.source, destination: m.mountpoint, writable: m.options.includes("rw") })
}
