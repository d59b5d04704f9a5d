/**
 * Value parsers for kojid.conf options. Each returns the value or a reason (without key or
 * file: the caller names those). The integer and boolean rules are Python's, because kojid
 * reads its options with `int()` and `ConfigParser.getboolean` (koji-protocol.md §9).
 */
import { Either } from "effect"

/** Python `int(str)`: optional sign, decimal digits, single underscores between digits. */
export const parsePythonInt = (text: string): Either.Either<number, string> => {
  const s = text.trim()
  if (!/^[+-]?\d+(_\d+)*$/.test(s)) {
    const hint = /\s[;#]/.test(s) ? " (kojid.conf has no inline comments)" : ""
    return Either.left(`must be a valid integer, got ${JSON.stringify(text)}${hint}`)
  }
  const n = Number(s.replace(/_/g, ""))
  return Number.isSafeInteger(n)
    ? Either.right(n)
    : Either.left(`integer ${JSON.stringify(text)} is too large`)
}

const TRUE_WORDS = new Set(["1", "yes", "true", "on"])
const FALSE_WORDS = new Set(["0", "no", "false", "off"])

/** `ConfigParser.getboolean`: 1/yes/true/on and 0/no/false/off, any case, nothing else. */
export const parsePythonBool = (text: string): Either.Either<boolean, string> => {
  const s = text.toLowerCase()
  if (TRUE_WORDS.has(s)) return Either.right(true)
  if (FALSE_WORDS.has(s)) return Either.right(false)
  return Either.left(
    `must be a boolean (1/yes/true/on or 0/no/false/off), got ${JSON.stringify(text)}`
  )
}

/** Python `str.split()`: words separated by any whitespace, none empty. */
export const splitWords = (text: string): ReadonlyArray<string> =>
  text.split(/\s+/).filter((w) => w !== "")

/** An integer that must not be negative. */
export const parseNonNegativeInt = (text: string): Either.Either<number, string> =>
  Either.flatMap(parsePythonInt(text), (n) =>
    n < 0 ? Either.left(`must be 0 or more, got ${n}`) : Either.right(n)
  )

/** A decimal number ≥ 0 (e.g. CPUs "1.5"). */
export const parseNonNegativeFloat = (text: string): Either.Either<number, string> => {
  const s = text.trim()
  if (!/^\+?(\d+(\.\d*)?|\.\d+)$/.test(s)) {
    return Either.left(`must be a number of 0 or more, got ${JSON.stringify(text)}`)
  }
  return Either.right(Number(s))
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** A byte size as podman takes it: digits with an optional k/m/g/t suffix (binary, any case, optional "b"). */
export const parseByteSize = (text: string): Either.Either<number, string> => {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim())
  if (m === null) {
    return Either.left(`must be a size like 512m or 4g, got ${JSON.stringify(text)}`)
  }
  const unit = SIZE_UNITS[(m[2] ?? "").toLowerCase()] ?? 1
  const n = Number(m[1]) * unit
  return Number.isSafeInteger(n) ? Either.right(n) : Either.left(`size ${JSON.stringify(text)} is too large`)
}

/** Renders a byte size back with the largest exact binary suffix. */
export const formatByteSize = (n: number): string => {
  if (n === 0) return "0"
  for (const [suffix, unit] of [["t", 1024 ** 4], ["g", 1024 ** 3], ["m", 1024 ** 2], ["k", 1024]] as const) {
    if (n % unit === 0) return `${n / unit}${suffix}`
  }
  return String(n)
}

/** A resource limit value: a non-negative integer, or -1 for unlimited (RLIM_INFINITY). */
export const parseLimitValue = (text: string): Either.Either<number, string> =>
  Either.flatMap(parsePythonInt(text), (n) =>
    n < -1 ? Either.left(`limit must be 0 or more (or -1 for unlimited), got ${n}`) : Either.right(n)
  )

/** Whether soft ≤ hard, -1 meaning unlimited. */
export const limitWithin = (soft: number, hard: number): boolean =>
  hard === -1 || (soft !== -1 && soft <= hard)

/** `host` or `host:port` or `[v6]:port`; returns the text when valid. */
export const parseHostPort = (
  text: string,
  portRequired: boolean
): Either.Either<{ readonly host: string; readonly port: number | null }, string> => {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d+))?$/.exec(text)
  if (m === null) return Either.left(`must be host${portRequired ? ":port" : "[:port]"}, got ${JSON.stringify(text)}`)
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "")
  if (m[2] === undefined) {
    return portRequired ? Either.left(`needs a port (host:port), got ${JSON.stringify(text)}`) : Either.right({ host, port: null })
  }
  const port = Number(m[2])
  return port > 65535 ? Either.left(`port ${port} is out of range`) : Either.right({ host, port })
}

/** A contiguous map of container ids 0…size-1 onto host ids base…base+size-1. */
export interface IdMap {
  readonly base: number
  readonly size: number
}

/** The largest uid the kernel hands out (4294967294; (uid_t)-1 is "no uid"). */
const MAX_UID = 4294967294

/** Parses `BASE:SIZE` (or `none` → null); the map must cover uid 65534 (nobody) and fit below 2^32-1. */
export const parseIdMap = (raw: string): IdMap | null | string => {
  if (raw === "none") return null
  const m = /^(\d+):(\d+)$/.exec(raw)
  if (m === null) return `must be BASE:SIZE (host uid base and count) or none, got ${JSON.stringify(raw)}`
  const base = Number(m[1])
  const size = Number(m[2])
  if (base < 1) return `base must be at least 1: host root (0) is never mapped, got ${base}`
  if (size < 65536) return `size must be at least 65536 so that nobody (65534) is mapped, got ${size}`
  if (base + size - 1 > MAX_UID) return `base + size - 1 must be at most ${MAX_UID}, got ${base + size - 1}`
  return { base, size }
}

/** `BASE:SIZE` or `none`. */
export const formatIdMap = (map: IdMap | null): string => (map === null ? "none" : `${map.base}:${map.size}`)

