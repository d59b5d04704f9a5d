/**
 * kojid's arch rules (koji-protocol.md §7.1, §7.2, §9 `literal_task_arches`), pure:
 * `koji.canonArch`, `koji.arch.getBaseArch`, `BuildTask.getArchList`, `BuildTask.choose_taskarch`,
 * `BaseTaskHandler.find_arch` and `BaseBuildTask.checkHostArch`. Randomness is injected so
 * the choices are testable.
 */
import { Either } from "effect"
import { BuildError, GenericError } from "../hub/faults.js"
import { fnmatch, multiFnmatch, splitWhitespace } from "../scm/fnmatch.js"
import { pythonTruthy, type XmlRpcValue } from "../hub/xmlrpc.js"

/** `koji.canonArch`: i?86/athlon → i386, ia32e → x86_64, ppc64* → ppc64 (but ppc64le), sparc64*, sparc*, alpha*, arm*h* → armhfp, arm* → arm. */
export const canonArch = (arch: string): string => {
  if (fnmatch(arch, "i?86") || arch === "athlon") return "i386"
  if (arch === "ia32e") return "x86_64"
  if (fnmatch(arch, "ppc64le")) return "ppc64le"
  if (fnmatch(arch, "ppc64*")) return "ppc64"
  if (fnmatch(arch, "sparc64*")) return "sparc64"
  if (fnmatch(arch, "sparc*")) return "sparc"
  if (fnmatch(arch, "alpha*")) return "alpha"
  if (fnmatch(arch, "arm*h*")) return "armhfp"
  if (fnmatch(arch, "arm*")) return "arm"
  return arch
}

/** koji/arch.py `arches`: each arch → the next compatible one, ending at noarch. */
const ARCH_PARENT: Readonly<Record<string, string>> = {
  athlon: "i686",
  i686: "i586",
  geode: "i686",
  i586: "i486",
  i486: "i386",
  i386: "noarch",
  x86_64: "athlon",
  amd64: "x86_64",
  ia32e: "x86_64",
  ppc64le: "noarch",
  ppc64p7: "ppc64",
  ppc64pseries: "ppc64",
  ppc64iseries: "ppc64",
  ppc64: "ppc",
  ppc: "noarch",
  s390x: "s390",
  s390: "noarch",
  sparc64v: "sparcv9v",
  sparc64: "sparcv9",
  sparcv9v: "sparcv9",
  sparcv9: "sparcv8",
  sparcv8: "sparc",
  sparc: "noarch",
  alphaev7: "alphaev68",
  alphaev68: "alphaev67",
  alphaev67: "alphaev6",
  alphaev6: "alphapca56",
  alphapca56: "alphaev56",
  alphaev56: "alphaev5",
  alphaev5: "alphaev45",
  alphaev45: "alphaev4",
  alphaev4: "alpha",
  alpha: "noarch",
  armv7l: "armv6l",
  armv6l: "armv5tejl",
  armv5tejl: "armv5tel",
  armv5tel: "noarch",
  armv7hnl: "armv7hl",
  armv7hl: "armv6hl",
  armv6hl: "noarch",
  arm64: "noarch",
  sh4a: "sh4",
  sh4: "noarch",
  sh3: "noarch",
  ia64: "noarch"
}

/** koji/arch.py `multilibArches` keys (ppc64 native is best). */
const MULTILIB = new Set(["x86_64", "sparc64v", "sparc64", "ppc64", "s390x"])

const isMultiLibArch = (arch: string): boolean => {
  const parent = ARCH_PARENT[arch]
  return parent !== undefined && (MULTILIB.has(arch) || MULTILIB.has(parent))
}

/** `koji.arch.getBaseArch`: i686 → i386, amd64 → x86_64, armv7hl → armhfp, …; unknown arches (aarch64, riscv64) unchanged. */
export const baseArch = (arch: string): string => {
  if (!Object.hasOwn(ARCH_PARENT, arch)) return arch
  if (arch.startsWith("sparc64")) return "sparc"
  if (arch === "ppc64le") return "ppc64le"
  if (arch.startsWith("arm64")) return "arm64"
  if (arch.startsWith("armv6h") || arch.startsWith("armv7h")) return "armhfp"
  if (arch.startsWith("arm")) return "arm"
  if (isMultiLibArch(arch)) return MULTILIB.has(arch) ? arch : ARCH_PARENT[arch]!
  let base = arch
  let next = ARCH_PARENT[base]!
  while (next !== "noarch") {
    base = next
    next = ARCH_PARENT[base]!
  }
  return base
}

/** `koji.parse_arches(..., to_list=True)`: comma- or space-separated (space only when strict); only `[a-zA-Z0-9_-]`. */
export const parseArches = (arches: string | ReadonlyArray<string>, options?: { readonly strict?: boolean }): Either.Either<ReadonlyArray<string>, GenericError> => {
  const list = typeof arches === "string" ? splitWhitespace(options?.strict === true ? arches : arches.replace(/,/g, " ")) : arches
  return list.every((a) => /^[a-zA-Z0-9_-]*$/.test(a))
    ? Either.right(list)
    : Either.left(new GenericError({ faultString: "Architecture can be only [a-zA-Z0-9_-]" }))
}

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
