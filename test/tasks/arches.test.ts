import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { buildArchList, checkArchOverride, checkHostArch, type Choose, chooseTaskArch, findBuildrootArch } from "../../src/tasks/arches.js"
import { baseArch, canonArch, parseArches } from "../../src/koji/arch.js"

// Expected values derived by running kojid's own code (builder/kojid BuildTask, koji.canonArch,
// koji.arch.getBaseArch, BaseTaskHandler.find_arch, BaseBuildTask.checkHostArch) on each row.
const CANON: Record<string, string> = {"i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "i786": "i386", "athlon": "i386", "geode": "geode", "x86_64": "x86_64", "amd64": "amd64", "ia32e": "x86_64", "ppc": "ppc", "ppc64": "ppc64", "ppc64le": "ppc64le", "ppc64p7": "ppc64", "ppc64iseries": "ppc64", "s390": "s390", "s390x": "s390x", "sparc": "sparc", "sparcv9": "sparc", "sparc64": "sparc64", "sparc64v": "sparc64", "alpha": "alpha", "alphaev6": "alpha", "armv7hl": "armhfp", "armv7hnl": "armhfp", "armv6hl": "armhfp", "armv7l": "arm", "armv5tel": "arm", "arm64": "arm", "aarch64": "aarch64", "riscv64": "riscv64", "noarch": "noarch", "src": "src", "sh4": "sh4", "ia64": "ia64", "loongarch64": "loongarch64"}
const BASE: Record<string, string> = {"i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "i786": "i786", "athlon": "i386", "geode": "i386", "x86_64": "x86_64", "amd64": "x86_64", "ia32e": "x86_64", "ppc": "ppc", "ppc64": "ppc64", "ppc64le": "ppc64le", "ppc64p7": "ppc64", "ppc64iseries": "ppc64", "s390": "s390", "s390x": "s390x", "sparc": "sparc", "sparcv9": "sparc", "sparc64": "sparc", "sparc64v": "sparc", "alpha": "alpha", "alphaev6": "alpha", "armv7hl": "armhfp", "armv7hnl": "armhfp", "armv6hl": "armhfp", "armv7l": "arm", "armv5tel": "arm", "arm64": "arm64", "aarch64": "aarch64", "riscv64": "riscv64", "noarch": "noarch", "src": "src", "sh4": "sh4", "ia64": "ia64", "loongarch64": "loongarch64"}
const ARCHLIST_ROWS = [
  { name: "plain", arches: "x86_64 aarch64", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64", "aarch64"] } },
  { name: "extra", arches: "x86_64", extra: "i686", header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64"] } },
  { name: "extra-not-tag", arches: "x86_64", extra: "ppc64le", header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64"] } },
  { name: "buildarch-noarch", arches: "x86_64 aarch64", extra: null, header: { buildArchs: ["noarch", "noarch"], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["noarch"] } },
  { name: "buildarch-x86", arches: "x86_64 aarch64", extra: null, header: { buildArchs: ["x86_64"], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64"] } },
  { name: "exclusive", arches: "x86_64 aarch64 ppc64le", extra: null, header: { buildArchs: [], exclusiveArch: ["x86_64", "ppc64le"], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64", "ppc64le"] } },
  { name: "exclusive-i686-vs-canon", arches: "i386 x86_64", extra: null, header: { buildArchs: [], exclusiveArch: ["i686", "x86_64"], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64"] } },
  { name: "exclude", arches: "x86_64 aarch64 ppc64le", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: ["ppc64le"] }, scratch: false, archOverride: null, result: { ok: ["x86_64", "aarch64"] } },
  { name: "exclusive-noarch", arches: "x86_64 aarch64", extra: null, header: { buildArchs: [], exclusiveArch: ["noarch", "aarch64"], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["aarch64", "noarch"] } },
  { name: "exclude-noarch", arches: "x86_64", extra: null, header: { buildArchs: ["noarch"], exclusiveArch: [], excludeArch: ["noarch"] }, scratch: false, archOverride: null, result: { error: "No matching arches were found" } },
  { name: "all-excluded", arches: "x86_64", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: ["x86_64"] }, scratch: false, archOverride: null, result: { error: "No matching arches were found" } },
  { name: "exclusive-none", arches: "x86_64", extra: null, header: { buildArchs: [], exclusiveArch: ["s390x"], excludeArch: [] }, scratch: false, archOverride: null, result: { error: "No matching arches were found" } },
  { name: "override-scratch", arches: "x86_64 aarch64 ppc64le", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: true, archOverride: "aarch64 s390x", result: { ok: ["aarch64"] } },
  { name: "override-not-scratch-ignored", arches: "x86_64 aarch64", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: "aarch64", result: { ok: ["x86_64", "aarch64"] } },
  { name: "override-noarch", arches: "x86_64", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: true, archOverride: "noarch", result: { ok: ["noarch"] } },
  { name: "i686-from-i386-tag", arches: "i386", extra: null, header: { buildArchs: ["i686"], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["i686"] } },
  { name: "dupes", arches: "x86_64 x86_64", extra: "x86_64", header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["x86_64"] } },
  { name: "no-tag-arches", arches: "", extra: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, scratch: false, archOverride: null, result: { error: "No arches for tag f40-build [5]" } },
  { name: "buildarch-plus-exclusive-noarch", arches: "x86_64", extra: null, header: { buildArchs: ["x86_64"], exclusiveArch: ["noarch"], excludeArch: [] }, scratch: false, archOverride: null, result: { ok: ["noarch"] } },
]
const CHOOSE_ROWS = [
  { name: "literal", tag: "x86_64 i386", arch: "i686", noarchArches: null, header: null, literal: "i686", result: { ok: ["i686"] } },
  { name: "literal-glob", tag: "x86_64 i386", arch: "i686", noarchArches: null, header: null, literal: "ppc* i*", result: { ok: ["i686"] } },
  { name: "canon", tag: "x86_64 i386", arch: "i686", noarchArches: null, header: null, literal: "", result: { ok: ["i386"] } },
  { name: "canon-armv7hl", tag: "armhfp", arch: "armv7hl", noarchArches: null, header: null, literal: "", result: { ok: ["armhfp"] } },
  { name: "noarch-plain", tag: "x86_64 aarch64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: [] }, literal: "", result: { ok: ["noarch"] } },
  { name: "noarch-srpm-none", tag: "x86_64 aarch64", arch: "noarch", noarchArches: null, header: null, literal: "", result: { ok: ["noarch"] } },
  { name: "noarch-exclusive", tag: "x86_64 aarch64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: ["aarch64"], excludeArch: [] }, literal: "", result: { ok: ["aarch64"] } },
  { name: "noarch-exclusive-all", tag: "x86_64 aarch64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: ["aarch64", "x86_64"], excludeArch: [] }, literal: "", result: { ok: ["noarch"] } },
  { name: "noarch-exclude", tag: "x86_64 aarch64 ppc64le", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: ["x86_64", "ppc64le"] }, literal: "", result: { ok: ["aarch64"] } },
  { name: "noarch-exclude-two-left", tag: "x86_64 aarch64 ppc64le", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: ["ppc64le"] }, literal: "", result: { ok: ["aarch64", "x86_64"] } },
  { name: "noarch-exclude-everything", tag: "x86_64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: [], excludeArch: ["x86_64"] }, literal: "", result: { error: "No valid arches were found. tag ['x86_64'], extra None,exclusive [], exclude ['x86_64']" } },
  { name: "noarch-arches-extra", tag: "x86_64 aarch64", arch: "noarch", noarchArches: "aarch64", header: null, literal: "", result: { ok: ["aarch64"] } },
  { name: "noarch-arches-extra-all", tag: "x86_64 aarch64", arch: "noarch", noarchArches: "aarch64 x86_64", header: null, literal: "", result: { ok: ["noarch"] } },
  { name: "noarch-arches-not-in-tag", tag: "x86_64", arch: "noarch", noarchArches: "s390x", header: null, literal: "", result: { error: "No valid arches were found. tag ['x86_64'], extra 's390x',exclusive [], exclude []" } },
  { name: "noarch-exclusive-i686", tag: "i386 x86_64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: ["i686"], excludeArch: [] }, literal: "", result: { ok: ["i386"] } },
  { name: "noarch-literal", tag: "x86_64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: ["aarch64"], excludeArch: [] }, literal: "noarch", result: { ok: ["noarch"] } },
  { name: "noarch-literal-glob-other", tag: "x86_64 aarch64", arch: "noarch", noarchArches: null, header: { buildArchs: [], exclusiveArch: ["aarch64"], excludeArch: [] }, literal: "x86_64", result: { ok: ["aarch64"] } },
]
const FIND_ROWS = [
  { name: "not-noarch", arch: "x86_64", host: "aarch64", tag: "x86_64", preferred: null, result: { ok: ["x86_64"] } },
  { name: "common-one", arch: "noarch", host: "x86_64 i686", tag: "x86_64 aarch64", preferred: null, result: { ok: ["x86_64"] } },
  { name: "preferred", arch: "noarch", host: "x86_64 aarch64", tag: "x86_64 aarch64", preferred: "aarch64", result: { ok: ["aarch64"] } },
  { name: "preferred-not-common", arch: "noarch", host: "x86_64", tag: "x86_64 aarch64", preferred: "aarch64", result: { ok: ["x86_64"] } },
  { name: "host-i686-tag-i386", arch: "noarch", host: "i686", tag: "i386", preferred: null, result: { ok: ["i386"] } },
  { name: "disjoint", arch: "noarch", host: "ppc64le", tag: "x86_64 aarch64", preferred: null, result: { error: "host builder1 (ppc64le) does not support any arches of tag f40-build (aarch64, x86_64)" } },
  { name: "no-host-arches", arch: "noarch", host: "", tag: "x86_64", preferred: null, result: { error: "No arch list for this host: builder1" } },
  { name: "no-tag-arches", arch: "noarch", host: "x86_64", tag: "", preferred: null, result: { error: "No arch list for tag: f40-build" } },
]
const CHECK_ROWS = [
  { name: "overlap", tag: "x86_64 aarch64", host: "x86_64", result: true },
  { name: "disjoint", tag: "aarch64", host: "x86_64", result: false },
  { name: "tag-i686-host-i386", tag: "i686", host: "i386", result: true },
  { name: "tag-i386-host-i686", tag: "i386", host: "i686 x86_64", result: false },
  { name: "tag-empty", tag: "", host: "x86_64", result: true },
  { name: "tag-none", tag: null, host: "x86_64", result: true },
  { name: "armv7hl-armhfp", tag: "armv7hl", host: "armhfp", result: true },
]

const get = <A, E extends { faultString: string; faultCode: number }>(e: Either.Either<A, E>): { ok: A } | { error: string } =>
  Either.isRight(e) ? { ok: e.right } : { error: e.left.faultString }

/** A choose() that records the candidates and takes the first, so a row can compare the whole set kojid picks from. */
const recorder = () => {
  const seen: Array<ReadonlyArray<string>> = []
  const choose = <A>(items: ReadonlyArray<A>): A => {
    seen.push(items.map(String))
    return items[0]!
  }
  return { seen, choose: choose as Choose }
}

describe("koji.canonArch / koji.arch.getBaseArch", () => {
  for (const [arch, canon] of Object.entries(CANON)) {
    it(`canonArch(${arch}) = ${canon}; getBaseArch = ${BASE[arch]}`, () => {
      assert.strictEqual(canonArch(arch), canon)
      assert.strictEqual(baseArch(arch), BASE[arch])
    })
  }
})

describe("BuildTask.getArchList (kojid builder/kojid)", () => {
  for (const row of ARCHLIST_ROWS) {
    it(`getArchList: ${row.name}`, () => {
      const got = buildArchList({
        tag: { id: 5, name: "f40-build", arches: row.arches },
        extraArches: row.extra,
        header: row.header,
        scratch: row.scratch,
        archOverride: row.archOverride
      })
      assert.deepStrictEqual(get(got), row.result)
      if (Either.isLeft(got)) assert.strictEqual(got.left.faultCode, 1005)
    })
  }

  it("BuildTask.handler: arch_override without scratch is a BuildError", () => {
    const e = checkArchOverride({ arch_override: "x86_64" })
    assert.deepStrictEqual(get(e), { error: "arch_override is only allowed for scratch builds" })
    assert.isTrue(Either.isRight(checkArchOverride({ arch_override: "x86_64", scratch: true })))
    assert.isTrue(Either.isRight(checkArchOverride({ arch_override: "", scratch: false })))
    // Python truthiness, as kojid's `if opts.get('arch_override') and not opts.get('scratch')`.
    assert.isTrue(Either.isRight(checkArchOverride({ arch_override: {}, scratch: false })))
    assert.isTrue(Either.isRight(checkArchOverride({ arch_override: [] })))
    assert.isTrue(Either.isLeft(checkArchOverride({ arch_override: "x86_64", scratch: 0 })))
    assert.isTrue(Either.isLeft(checkArchOverride({ arch_override: "x86_64", scratch: {} })))
  })
})

describe("BuildTask.choose_taskarch (subtask arch; literal_task_arches)", () => {
  for (const row of CHOOSE_ROWS) {
    it(`choose_taskarch: ${row.name}`, () => {
      const r = recorder()
      const got = chooseTaskArch({
        arch: row.arch,
        literalTaskArches: row.literal,
        tag: { id: 5, name: "t", arches: row.tag, noarchArches: row.noarchArches },
        header: row.header,
        choose: r.choose
      })
      const picks = Either.isRight(got) && r.seen.length > 0 ? { ok: [...r.seen[0]!].sort() } : get(Either.map(got, (a) => [a]))
      assert.deepStrictEqual(picks, row.result)
    })
  }
})

describe("BaseTaskHandler.find_arch (buildroot arch for noarch)", () => {
  for (const row of FIND_ROWS) {
    it(`find_arch: ${row.name}`, () => {
      const r = recorder()
      const got = findBuildrootArch({
        arch: row.arch,
        host: { name: "builder1", arches: row.host },
        tag: { id: 5, name: "f40-build", arches: row.tag },
        preferredArch: row.preferred,
        choose: r.choose
      })
      const picks = Either.isRight(got) && r.seen.length > 0 ? { ok: [...r.seen[0]!].sort() } : get(Either.map(got, (a) => [a]))
      assert.deepStrictEqual(picks, row.result)
    })
  }

  it("find_arch picks at random among the common arches (both are reachable)", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      seen.add(Either.getOrThrow(findBuildrootArch({ arch: "noarch", host: { name: "h", arches: "x86_64 aarch64" }, tag: { id: 1, name: "t", arches: "aarch64 x86_64" } })))
    }
    assert.deepStrictEqual([...seen].sort(), ["aarch64", "x86_64"])
  })
})

describe("BaseBuildTask.checkHostArch (buildArch / buildSRPMFromSCM checkHost)", () => {
  for (const row of CHECK_ROWS) {
    it(`checkHostArch: ${row.name} → ${row.result}`, () => {
      assert.strictEqual(checkHostArch(row.tag, row.host), row.result)
    })
  }
})

describe("koji.parse_arches", () => {
  it("splits on commas and spaces; strict only on spaces; refuses other characters", () => {
    assert.deepStrictEqual(Either.getOrThrow(parseArches("x86_64,ppc64le  aarch64")), ["x86_64", "ppc64le", "aarch64"])
    assert.deepStrictEqual(get(parseArches("x86_64,ppc64le", { strict: true })), { error: "Architecture can be only [a-zA-Z0-9_-]" })
    assert.deepStrictEqual(get(parseArches(["x86_64", "i*"])), { error: "Architecture can be only [a-zA-Z0-9_-]" })
  })
})
