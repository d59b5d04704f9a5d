/**
 * kojid's arch rules (koji-protocol.md §7.1, §7.2, §9 `literal_task_arches`), pure:
 * `BuildTask.getArchList`, `BuildTask.choose_taskarch`, `BaseTaskHandler.find_arch` and
 * `BaseBuildTask.checkHostArch`, over koji's arch vocabulary (src/koji/arch.ts). Randomness is
 * injected so the choices are testable.
 */
import { Either } from "effect"
import { BuildError } from "../koji/faults.js"
import { canonArch } from "../koji/arch.js"
import { multiFnmatch, splitWhitespace } from "../koji/fnmatch.js"
import { pythonTruthy, type XmlRpcValue } from "../hub/xmlrpc.js"

/** The SRPM header fields the arch rules read (each an empty list when unset). */
export interface SrpmArchFields {
  readonly buildArchs: ReadonlyArray<string>
  readonly exclusiveArch: ReadonlyArray<string>
  readonly excludeArch: ReadonlyArray<string>
}

/** No BuildArch, ExclusiveArch or ExcludeArch. */
export const NO_ARCH_FIELDS: SrpmArchFields = { buildArchs: [], exclusiveArch: [], excludeArch: [] }

/** The build tag as `getBuildConfig` returns it (only what the arch rules read). */
export interface TagArchConfig {
  readonly id: number
  readonly name: string
  /** Space-separated; null or "" when the tag has none. */
  readonly arches: string | null
  /** `extra.noarch_arches`. */
  readonly noarchArches?: string | null | undefined
}

/** `BuildTask.handler`'s first check: `arch_override` needs `scratch`. */
export const checkArchOverride = (opts: { readonly scratch?: XmlRpcValue | undefined; readonly arch_override?: XmlRpcValue | undefined }): Either.Either<void, BuildError> =>
  pythonTruthy(opts.arch_override) && !pythonTruthy(opts.scratch)
    ? Either.left(new BuildError({ faultString: "arch_override is only allowed for scratch builds" }))
    : Either.right(undefined)


/**
 * `BuildTask.getArchList`: the tag arches plus the package's `extra_arches`; replaced by
 * BuildArchs; filtered by ExclusiveArch and ExcludeArch (exact strings); `noarch` added when
 * BuildArchs or ExclusiveArch name it and ExcludeArch does not; `arch_override` (scratch only)
 * replaces all of it; then only noarch and arches whose canonArch is a tag arch are kept, in
 * order, without duplicates.
 */
export const buildArchList = (input: {
  readonly tag: TagArchConfig
  readonly extraArches?: string | null | undefined
  readonly header: SrpmArchFields
  readonly scratch?: boolean | undefined
  readonly archOverride?: string | null | undefined
}): Either.Either<ReadonlyArray<string>, BuildError> => {
  const { tag, header } = input
  if (tag.arches === null || tag.arches === "") {
    return Either.left(new BuildError({ faultString: `No arches for tag ${tag.name} [${tag.id}]` }))
  }
  const tagArchlist = splitWhitespace(tag.arches).map(canonArch)
  let archlist: ReadonlyArray<string> = splitWhitespace(
    input.extraArches !== undefined && input.extraArches !== null && input.extraArches !== ""
      ? `${tag.arches} ${input.extraArches}`
      : tag.arches
  )
  if (header.buildArchs.length > 0) archlist = header.buildArchs
  if (header.exclusiveArch.length > 0) archlist = archlist.filter((a) => header.exclusiveArch.includes(a))
  if (header.excludeArch.length > 0) archlist = archlist.filter((a) => !header.excludeArch.includes(a))
  if (!header.excludeArch.includes("noarch") && (header.buildArchs.includes("noarch") || header.exclusiveArch.includes("noarch"))) {
    archlist = [...archlist, "noarch"]
  }
  if (input.scratch === true && input.archOverride !== undefined && input.archOverride !== null && input.archOverride !== "") {
    archlist = splitWhitespace(input.archOverride)
  }
  const kept: Array<string> = []
  for (const a of archlist) {
    if ((a === "noarch" || tagArchlist.includes(canonArch(a))) && !kept.includes(a)) kept.push(a)
  }
  if (kept.length === 0) return Either.left(new BuildError({ faultString: "No matching arches were found" }))
  return Either.right(kept)
}

/** Picks one element; `Math.random` unless a test injects a choice. */
export type Choose = <A>(items: ReadonlyArray<A>) => A

/** A uniform random choice (Python's `random.choice`). */
export const randomChoice: Choose = (items) => items[Math.floor(Math.random() * items.length)]!

/**
 * `BuildTask.choose_taskarch`: the `arch` of a buildArch/SRPM subtask. Arches matching a
 * `literal_task_arches` glob are kept as they are; others become their canonArch. For noarch:
 * with ExclusiveArch/ExcludeArch from the SRPM (none for the SRPM subtask) or the tag's
 * `extra.noarch_arches`, the canonical tag arches (or noarch_arches ∩ tag arches) are
 * filtered; when that removed some, one of the rest is picked at random, else noarch stays.
 */
export const chooseTaskArch = (input: {
  readonly arch: string
  readonly literalTaskArches: string
  readonly tag: TagArchConfig
  /** The SRPM's fields; null for the SRPM subtask itself (kojid passes srpm=None). */
  readonly header: Pick<SrpmArchFields, "exclusiveArch" | "excludeArch"> | null
  readonly choose?: Choose | undefined
}): Either.Either<string, BuildError> => {
  const { arch, tag } = input
  if (multiFnmatch(arch, input.literalTaskArches)) return Either.right(arch)
  if (arch !== "noarch") return Either.right(canonArch(arch))
  const exclusive = (input.header?.exclusiveArch ?? []).map(canonArch)
  const exclude = (input.header?.excludeArch ?? []).map(canonArch)
  const noarchArches = tag.noarchArches ?? ""
  if (exclusive.length === 0 && exclude.length === 0 && noarchArches === "") return Either.right("noarch")
  const tagArches = splitWhitespace(tag.arches ?? "").map(canonArch)
  let archlist =
    noarchArches !== "" ? splitWhitespace(noarchArches).map(canonArch).filter((a) => tagArches.includes(a)) : [...tagArches]
  if (exclusive.length > 0) archlist = archlist.filter((a) => exclusive.includes(a))
  if (exclude.length > 0) archlist = archlist.filter((a) => !exclude.includes(a))
  if (archlist.length === 0) {
    return Either.left(
      new BuildError({
        faultString:
          `No valid arches were found. tag ${pyList(tagArches)}, extra ${noarchArches === "" ? "None" : `'${noarchArches}'`},` +
          `exclusive ${pyList(exclusive)}, exclude ${pyList(exclude)}`
      })
    )
  }
  const sameSet = new Set(archlist).size === new Set(tagArches).size && archlist.every((a) => tagArches.includes(a))
  return Either.right(sameSet ? "noarch" : (input.choose ?? randomChoice)(archlist))
}

/** Python's repr of a list of strings, as kojid's messages show them. */
const pyList = (items: ReadonlyArray<string>): string => `[${items.map((i) => `'${i}'`).join(", ")}]`

/**
 * `BaseTaskHandler.find_arch`: the buildroot arch of a task. Non-noarch arches are used as
 * they are; for noarch, a canonical arch both host and tag support, the preferred one (the
 * task's own `arch`, set by choose_taskarch) when it is among them, else a random one.
 */
export const findBuildrootArch = (input: {
  readonly arch: string
  readonly host: { readonly name: string; readonly arches: string | null }
  readonly tag: TagArchConfig
  readonly preferredArch?: string | null | undefined
  readonly choose?: Choose | undefined
}): Either.Either<string, BuildError> => {
  const { arch, host, tag } = input
  if (arch !== "noarch") return Either.right(arch)
  if (host.arches === null || host.arches === "") {
    return Either.left(new BuildError({ faultString: `No arch list for this host: ${host.name}` }))
  }
  if (tag.arches === null || tag.arches === "") {
    return Either.left(new BuildError({ faultString: `No arch list for tag: ${tag.name}` }))
  }
  const hostArches = [...new Set(splitWhitespace(host.arches).map(canonArch))]
  const tagArches = [...new Set(splitWhitespace(tag.arches).map(canonArch))]
  const common = hostArches.filter((a) => tagArches.includes(a))
  if (common.length === 0) {
    return Either.left(
      new BuildError({
        faultString:
          `host ${host.name} (${[...hostArches].sort().join(", ")}) does not support any arches ` +
          `of tag ${tag.name} (${[...tagArches].sort().join(", ")})`
      })
    )
  }
  const preferred = input.preferredArch
  if (preferred !== undefined && preferred !== null && preferred !== "" && common.includes(preferred)) return Either.right(preferred)
  return Either.right((input.choose ?? randomChoice)(common))
}

/**
 * `BaseBuildTask.checkHostArch` (buildArch and buildSRPMFromSCM `checkHost`): false only when
 * the tag has arches and none of their canonArch is among the host's arches as listed (the
 * host's are not canonicalised). A tag without arches passes: the task fails later instead.
 */
export const checkHostArch = (tagArches: string | null | undefined, hostArches: string): boolean => {
  if (tagArches === undefined || tagArches === null || tagArches === "") return true
  const host = splitWhitespace(hostArches)
  return splitWhitespace(tagArches).some((a) => host.includes(canonArch(a)))
}
