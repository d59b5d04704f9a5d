/**
 * Python's `fnmatch.fnmatch` on POSIX (case-sensitive), which kojid uses for `allowed_scms`,
 * `canonArch` and `literal_task_arches` (koji-protocol.md §8, §9): `*` matches anything
 * including `/`, `?` one character, `[seq]`/`[!seq]` a set; an unclosed `[` is literal.
 */

const cache = new Map<string, RegExp>()

const escapeRegExp = (c: string): string => c.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&")

/** The JS source of a character set, given the pattern text between `[` and `]` (Python's rules). */
const setSource = (pat: string, start: number, end: number): string => {
  // Python splits on the hyphens that form ranges, then drops ranges whose bounds are reversed.
  let i = start
  let k = pat[i] === "!" ? i + 2 : i + 1
  const chunks: Array<string> = []
  for (;;) {
    k = pat.indexOf("-", k)
    if (k < 0 || k >= end) break
    chunks.push(pat.slice(i, k))
    i = k + 1
    k = k + 3
  }
  const last = pat.slice(i, end)
  if (last !== "") chunks.push(last)
  else if (chunks.length > 0) chunks[chunks.length - 1] += "-"
  for (let c = chunks.length - 1; c > 0; c--) {
    const prev = chunks[c - 1]!
    const cur = chunks[c]!
    if (prev.length > 0 && cur.length > 0 && prev[prev.length - 1]! > cur[0]!) {
      chunks[c - 1] = prev.slice(0, -1) + cur.slice(1)
      chunks.splice(c, 1)
    }
  }
  let negate = false
  if (chunks.length > 0 && chunks[0]!.startsWith("!")) {
    negate = true
    chunks[0] = chunks[0]!.slice(1)
  }
  const literal = (s: string) => [...s].map((ch) => (/[\\\]^-]/.test(ch) ? `\\${ch}` : ch)).join("")
  const body = chunks.map(literal).join("-")
  if (body === "") return negate ? "[^]" : "(?!)"
  return `[${negate ? "^" : ""}${body}]`
}

/** The anchored RegExp for a glob, as `fnmatch.translate` builds it. */
export const globToRegExp = (pattern: string): RegExp => {
  const hit = cache.get(pattern)
  if (hit !== undefined) return hit
  let out = ""
  let i = 0
  const n = pattern.length
  while (i < n) {
    const c = pattern[i]!
    i++
    if (c === "*") {
      while (pattern[i] === "*") i++
      out += "[^]*"
    } else if (c === "?") {
      out += "[^]"
    } else if (c === "[") {
      let j = i
      if (j < n && pattern[j] === "!") j++
      if (j < n && pattern[j] === "]") j++
      while (j < n && pattern[j] !== "]") j++
      if (j >= n) {
        out += "\\["
      } else {
        out += setSource(pattern, i, j)
        i = j + 1
      }
    } else {
      out += escapeRegExp(c)
    }
  }
  const re = new RegExp(`^(?:${out})$`, "u")
  if (cache.size > 1000) cache.clear()
  cache.set(pattern, re)
  return re
}

/** `fnmatch.fnmatch(name, pattern)` with POSIX (no case folding) semantics. */
export const fnmatch = (name: string, pattern: string): boolean => globToRegExp(pattern).test(name)

/** `koji.util.multi_fnmatch`: true if `name` matches any pattern; a string is split on whitespace. */
export const multiFnmatch = (name: string, patterns: string | ReadonlyArray<string>): boolean => {
  const list = typeof patterns === "string" ? splitWhitespace(patterns) : patterns
  return list.some((p) => fnmatch(name, p))
}

/** Python's `str.split()` with no argument: runs of whitespace, no empty items. */
export const splitWhitespace = (s: string): Array<string> => s.split(/\s+/u).filter((w) => w !== "")
