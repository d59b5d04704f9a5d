/**
 * koji's arch vocabulary (koji/arch.py and koji/__init__.py): `canonArch`, `getBaseArch`,
 * `isMultiLibArch`, `parse_arches`. Pure.
 */
import { Either } from "effect"
import { GenericError } from "./faults.js"
import { fnmatch, splitWhitespace } from "./fnmatch.js"

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

/** `koji.arch.isMultiLibArch`: a 64-bit arch with a 32-bit compatible one (x86_64, ppc64, s390x, sparc64…). */
export const isMultiLibArch = (arch: string): boolean => {
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

