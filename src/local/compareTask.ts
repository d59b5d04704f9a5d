/**
 * `build-local --compare-task ID`: the packages of a koji task's buildroot, read anonymously —
 * the hub's buildroot listing (`listBuildroots(taskID=)`, `getBuildrootListing`) of the task or
 * of its subtasks (a `build` task's buildArch and SRPM children), or, for a task whose buildroots
 * are gone from the hub's tables, its `installed_pkgs.log` — and how they differ from the local
 * buildroot's list.
 */
import { Effect } from "effect"
import type { PackageEntry } from "../buildroot/packageList.js"
import type { TaskInfo } from "../hub/schemas.js"
import type { AnonymousHubService } from "./anonymousHub.js"
import { LocalBuildError } from "./errors.js"

/** One package by name, epoch, version, release, arch. */
export interface Pkg {
  readonly name: string
  readonly epoch: number | null
  readonly version: string
  readonly release: string
  readonly arch: string
}

/** The methods whose buildroot is an `srpm-build` one. */
export const SRPM_METHODS: ReadonlySet<string> = new Set(["rebuildSRPM", "buildSRPMFromSCM"])

/** One buildroot (or installed_pkgs.log) of the reference task tree. */
export interface ReferenceBuildroot {
  readonly taskId: number
  readonly method: string
  /** The buildroot's arch; null for a log. */
  readonly arch: string | null
  /** `buildroot N` or `installed_pkgs.log`. */
  readonly source: string
  readonly packages: ReadonlyArray<Pkg>
}

/** A koji task's buildroots, ready to compare with. */
export interface Reference {
  readonly taskId: number
  readonly method: string
  readonly buildroots: ReadonlyArray<ReferenceBuildroot>
}

/**
 * One line of mock's `installed_pkgs.log` (`%{nevra} %{buildtime} %{size} %{pkgid} installed`;
 * the nevra has `E:` before the version when the package has an epoch), or undefined.
 */
export const parseInstalledLine = (line: string): Pkg | undefined => {
  const nevra = line.trim().split(/\s+/)[0] ?? ""
  const dot = nevra.lastIndexOf(".")
  const r = dot < 0 ? -1 : nevra.lastIndexOf("-", dot)
  const v = r < 0 ? -1 : nevra.lastIndexOf("-", r - 1)
  if (dot < 0 || r < 0 || v <= 0) return undefined
  const ev = nevra.slice(v + 1, r)
  const colon = ev.indexOf(":")
  const epoch = colon > 0 && /^\d+$/.test(ev.slice(0, colon)) ? Number(ev.slice(0, colon)) : null
  return {
    name: nevra.slice(0, v),
    epoch,
    version: colon > 0 ? ev.slice(colon + 1) : ev,
    release: nevra.slice(r + 1, dot),
    arch: nevra.slice(dot + 1)
  }
}

/** The packages of an `installed_pkgs.log`. */
export const parseInstalledPkgsLog = (text: string): ReadonlyArray<Pkg> =>
  text.split("\n").flatMap((l) => {
    const p = parseInstalledLine(l)
    return p === undefined ? [] : [p]
  })

/** A package entry as the local hub side recorded it. */
export const pkgOfEntry = (e: PackageEntry): Pkg => ({
  name: String(e["name"]),
  epoch: typeof e["epoch"] === "number" ? e["epoch"] : null,
  version: String(e["version"]),
  release: String(e["release"]),
  arch: String(e["arch"])
})

const evr = (p: Pkg): string => `${p.epoch === null ? "" : `${p.epoch}:`}${p.version}-${p.release}`

/** `name-[epoch:]version-release.arch`. */
export const pkgText = (p: Pkg): string => `${p.name}-${evr(p)}.${p.arch}`

/** How two package lists differ, keyed by name and arch. */
export interface Comparison {
  readonly same: number
  readonly onlyHere: ReadonlyArray<Pkg>
  readonly onlyThere: ReadonlyArray<Pkg>
  readonly differ: ReadonlyArray<{ readonly here: Pkg; readonly there: Pkg }>
}

const byName = (a: Pkg, b: Pkg): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.arch < b.arch ? -1 : a.arch > b.arch ? 1 : 0)

/** Compares the local buildroot's packages (`here`) with the reference's (`there`). */
export const comparePackages = (here: ReadonlyArray<Pkg>, there: ReadonlyArray<Pkg>): Comparison => {
  const key = (p: Pkg) => `${p.name}.${p.arch}`
  const theirs = new Map(there.map((p) => [key(p), p]))
  const ours = new Map(here.map((p) => [key(p), p]))
  let same = 0
  const onlyHere: Array<Pkg> = []
  const differ: Array<{ readonly here: Pkg; readonly there: Pkg }> = []
  for (const p of ours.values()) {
    const t = theirs.get(key(p))
    if (t === undefined) onlyHere.push(p)
    else if (evr(t) !== evr(p)) differ.push({ here: p, there: t })
    else same++
  }
  const onlyThere = [...theirs.values()].filter((p) => !ours.has(key(p)))
  return {
    same,
    onlyHere: onlyHere.sort(byName),
    onlyThere: onlyThere.sort(byName),
    differ: differ.sort((a, b) => byName(a.here, b.here))
  }
}

/** The comparison as lines for the terminal. */
export const comparisonLines = (what: string, c: Comparison): ReadonlyArray<string> => {
  const n = c.onlyHere.length + c.onlyThere.length + c.differ.length
  if (n === 0) return [`same packages as ${what} (${c.same})`]
  return [
    `compared with ${what}: ${c.same} the same, ${n} different`,
    ...c.differ.map((d) => `  differs:    ${d.here.name}.${d.here.arch} ${evr(d.here)} here, ${evr(d.there)} there`),
    ...c.onlyHere.map((p) => `  only here:  ${pkgText(p)}`),
    ...c.onlyThere.map((p) => `  only there: ${pkgText(p)}`)
  ]
}

/** The buildroots of one task: the hub's listing of each, else its installed_pkgs.log. */
const buildrootsOfTask = (client: AnonymousHubService, task: TaskInfo) =>
  Effect.gen(function*() {
    const brs = yield* client.listTaskBuildroots(task.id)
    if (brs.length > 0) {
      return yield* Effect.forEach(brs, (br) =>
        Effect.map(client.getBuildrootListing(br.id), (listing): ReferenceBuildroot => ({
          taskId: task.id, method: task.method, arch: br.arch ?? null, source: `buildroot ${br.id}`,
          packages: listing.map((r) => ({ name: r.name, epoch: r.epoch, version: r.version, release: r.release, arch: r.arch }))
        })))
    }
    const output = yield* client.listTaskOutput(task.id)
    if (!output.includes("installed_pkgs.log")) return []
    const text = Buffer.from(yield* client.readTaskOutput(task.id, "installed_pkgs.log")).toString("utf8")
    return [{ taskId: task.id, method: task.method, arch: null, source: "installed_pkgs.log", packages: parseInstalledPkgsLog(text) }]
  })

/** Reads task `taskId` and its subtasks' buildroots from the hub (before the build, so a bad id fails at once). */
export const loadReference = (client: AnonymousHubService, taskId: number) =>
  Effect.gen(function*() {
    const task = yield* client.getTaskInfo(taskId)
    if (task === null) return yield* new LocalBuildError({ message: `--compare-task ${taskId}: the koji hub at ${client.server} has no such task` })
    const children = yield* client.getTaskChildren(taskId)
    const buildroots = (yield* Effect.forEach([task, ...children], (t) => buildrootsOfTask(client, t))).flat()
    if (buildroots.length === 0) {
      return yield* new LocalBuildError({
        message: `--compare-task ${taskId}: task ${taskId} (${task.method}) and its subtasks have no buildroot listing or installed_pkgs.log on the hub`
      })
    }
    return { taskId, method: task.method, buildroots } satisfies Reference
  })

/**
 * The reference buildroot matching a local one: an SRPM task's for the `srpm-build` buildroot, a
 * buildArch's (of the same arch when there are several) for the `build` one; undefined when the
 * task tree has none of that kind.
 */
export const pickReference = (ref: Reference, kind: "srpm-build" | "build", brArch: string): ReferenceBuildroot | undefined => {
  const ofKind = ref.buildroots.filter((b) => (kind === "srpm-build" ? SRPM_METHODS.has(b.method) : !SRPM_METHODS.has(b.method)))
  return ofKind.find((b) => b.arch === brArch) ?? ofKind[0]
}
