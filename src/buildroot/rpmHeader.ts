/**
 * A reader for the few RPM header fields kojid looks at (`koji.get_header_fields`): the lead, the
 * signature header (for SIGMD5, the payloadhash of koji-protocol.md §5.2) and the main header.
 * Only the first bytes of a package are needed; nothing is decompressed.
 */
import { Effect } from "effect"
import * as fsp from "node:fs/promises"
import { SrpmError } from "./errors.js"

/** RPM header tag numbers used here (rpmtag.h). */
export const RpmTag = {
  NAME: 1000, VERSION: 1001, RELEASE: 1002, EPOCH: 1003, BUILDTIME: 1006, SIZE: 1009,
  DISTRIBUTION: 1010, VENDOR: 1011, PACKAGER: 1015, ARCH: 1022, SOURCERPM: 1044, EXCLUDEARCH: 1059,
  EXCLUSIVEARCH: 1061, BUILDARCHS: 1089, SOURCEPACKAGE: 1106
} as const

/** Signature header tag of the header+payload MD5 (RPMSIGTAG_MD5). */
const SIGTAG_MD5 = 1004

/** The fields kojid reads from a package header. */
export interface RpmHeaderInfo {
  readonly name: string
  readonly version: string
  readonly release: string
  readonly epoch: number | null
  readonly arch: string
  /** `koji.get_header_field(h, 'sourcepackage')`: SOURCEPACKAGE set, or no SOURCERPM. */
  readonly sourcepackage: boolean
  readonly packager: string | null
  readonly vendor: string | null
  readonly distribution: string | null
  readonly sourcerpm: string | null
  readonly size: number | null
  readonly buildtime: number | null
  /** Hex SIGMD5 from the signature header, or null. */
  readonly sigmd5: string | null
  /** `BuildArch:` of the spec (BUILDARCHS), empty when none. */
  readonly buildArchs: ReadonlyArray<string>
  /** `ExclusiveArch:` (EXCLUSIVEARCH), empty when none. */
  readonly exclusiveArch: ReadonlyArray<string>
  /** `ExcludeArch:` (EXCLUDEARCH), empty when none. */
  readonly excludeArch: ReadonlyArray<string>
}

type Value = string | number | Uint8Array | ReadonlyArray<string> | ReadonlyArray<number>

interface Parsed {
  readonly tags: ReadonlyMap<number, Value>
  /** Bytes taken by the header structure (without padding). */
  readonly length: number
}

const HEADER_MAGIC = [0x8e, 0xad, 0xe8, 0x01]

const parseHeader = (buf: Uint8Array, at: number): Parsed | string => {
  if (buf.length < at + 16) return "truncated header"
  for (let i = 0; i < 4; i++) if (buf[at + i] !== HEADER_MAGIC[i]) return "bad header magic"
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const nindex = view.getUint32(at + 8)
  const hsize = view.getUint32(at + 12)
  const store = at + 16 + nindex * 16
  const end = store + hsize
  if (nindex > 65536 || end > buf.length) return "truncated header"
  const tags = new Map<number, Value>()
  const cstr = (p: number): string => {
    let e = p
    while (e < end && buf[e] !== 0) e++
    return Buffer.from(buf.subarray(p, e)).toString("utf8")
  }
  for (let i = 0; i < nindex; i++) {
    const e = at + 16 + i * 16
    const tag = view.getUint32(e)
    const type = view.getUint32(e + 4)
    const offset = store + view.getUint32(e + 8)
    const count = view.getUint32(e + 12)
    if (offset > end) continue
    switch (type) {
      case 4: {
        const out: Array<number> = []
        for (let k = 0; k < count && offset + 4 * k + 4 <= end; k++) out.push(view.getUint32(offset + 4 * k))
        tags.set(tag, count === 1 ? out[0] ?? 0 : out)
        break
      }
      case 5: {
        if (offset + 8 <= end) tags.set(tag, Number(view.getBigUint64(offset)))
        break
      }
      case 6:
      case 9:
        tags.set(tag, cstr(offset))
        break
      case 8: {
        const out: Array<string> = []
        let p = offset
        for (let k = 0; k < count && p < end; k++) {
          const s = cstr(p)
          out.push(s)
          p += Buffer.byteLength(s) + 1
        }
        tags.set(tag, out)
        break
      }
      case 7:
        tags.set(tag, buf.subarray(offset, Math.min(end, offset + count)))
        break
      default:
        break
    }
  }
  return { tags, length: end - at }
}

const str = (tags: ReadonlyMap<number, Value>, tag: number): string | null => {
  const v = tags.get(tag)
  if (typeof v === "string") return v
  if (Array.isArray(v) && typeof v[0] === "string") return v[0]
  return null
}
const num = (tags: ReadonlyMap<number, Value>, tag: number): number | null => {
  const v = tags.get(tag)
  if (typeof v === "number") return v
  if (Array.isArray(v) && typeof v[0] === "number") return v[0]
  return null
}
const list = (tags: ReadonlyMap<number, Value>, tag: number): ReadonlyArray<string> => {
  const v = tags.get(tag)
  if (typeof v === "string") return [v]
  return Array.isArray(v) && v.every((x): x is string => typeof x === "string") ? v : []
}

/** Parses the lead and headers from the first bytes of a package; a string says what is wrong. */
export const parseRpmHeader = (buf: Uint8Array): RpmHeaderInfo | string => {
  if (buf.length < 96 || buf[0] !== 0xed || buf[1] !== 0xab || buf[2] !== 0xee || buf[3] !== 0xdb) return "not an RPM file (bad lead)"
  const sig = parseHeader(buf, 96)
  if (typeof sig === "string") return `bad signature header: ${sig}`
  const mainAt = 96 + sig.length + ((8 - (sig.length % 8)) % 8)
  const main = parseHeader(buf, mainAt)
  if (typeof main === "string") return `bad header: ${main}`
  const t = main.tags
  const name = str(t, RpmTag.NAME)
  const version = str(t, RpmTag.VERSION)
  const release = str(t, RpmTag.RELEASE)
  if (name === null || version === null || release === null) return "header has no name, version or release"
  const md5 = sig.tags.get(SIGTAG_MD5)
  const sourcerpm = str(t, RpmTag.SOURCERPM)
  return {
    name, version, release,
    epoch: num(t, RpmTag.EPOCH),
    arch: str(t, RpmTag.ARCH) ?? "",
    // rpm sets SOURCEPACKAGE on source packages; one with SOURCERPM is binary whatever its lead says.
    sourcepackage: t.has(RpmTag.SOURCEPACKAGE) || sourcerpm === null,
    packager: str(t, RpmTag.PACKAGER),
    vendor: str(t, RpmTag.VENDOR),
    distribution: str(t, RpmTag.DISTRIBUTION),
    sourcerpm,
    size: num(t, RpmTag.SIZE),
    buildtime: num(t, RpmTag.BUILDTIME),
    sigmd5: md5 instanceof Uint8Array ? Buffer.from(md5).toString("hex") : null,
    buildArchs: list(t, RpmTag.BUILDARCHS),
    exclusiveArch: list(t, RpmTag.EXCLUSIVEARCH),
    excludeArch: list(t, RpmTag.EXCLUDEARCH)
  }
}

/** Reads the header of a package file (at most the first 4 MiB). */
export const readRpmHeader = (file: string): Effect.Effect<RpmHeaderInfo, SrpmError> =>
  Effect.tryPromise({
    try: async () => {
      const h = await fsp.open(file, "r")
      try {
        const buf = new Uint8Array(4 * 1024 * 1024)
        const { bytesRead } = await h.read(buf, 0, buf.length, 0)
        return buf.subarray(0, bytesRead)
      } finally {
        await h.close()
      }
    },
    catch: (e) => new SrpmError({ message: `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}` })
  }).pipe(
    Effect.flatMap((buf) => {
      const r = parseRpmHeader(buf)
      return typeof r === "string" ? Effect.fail(new SrpmError({ message: `${file}: ${r}` })) : Effect.succeed(r)
    })
  )
