/**
 * An INI reader with the semantics of Python's `configparser.RawConfigParser` as kojid uses it
 * (`koji.read_config_files(..., raw=True)`, koji-protocol.md §9): `key = value` or `key: value`
 * split at the first delimiter, whole-line comments starting with `#` or `;` (no inline
 * comments), indented continuation lines joined with "\n", blank lines kept inside a value and
 * trailing ones dropped, option names lowercased, section names case-sensitive, `[DEFAULT]`
 * kept apart, duplicate options or sections inside one file rejected, no interpolation.
 */
import { Either } from "effect"

/** One option as read: its value and where it was written. */
export interface IniEntry {
  readonly value: string
  readonly file: string
  readonly line: number
}

/** One section: its options in file order, and where its first header was. */
export interface IniSection {
  readonly name: string
  readonly file: string
  readonly line: number
  readonly entries: Map<string, IniEntry>
}

/** What was read from one or more files; later files override earlier ones (as configparser). */
export interface IniDocument {
  readonly defaults: Map<string, IniEntry>
  readonly sections: Map<string, IniSection>
}

/** Why a text is not INI as configparser reads it. */
export interface IniProblem {
  readonly file: string
  readonly line: number
  readonly section?: string
  readonly key?: string
  readonly message: string
}

/** An empty document to read files into. */
export const emptyIniDocument = (): IniDocument => ({ defaults: new Map(), sections: new Map() })

const DEFAULT_SECTION = "DEFAULT"
const SECTION_HEADER = /^\[(.+)\]/
const OPTION_LINE = /^(.*?)\s*([=:])\s*(.*)$/

/** Python's str.strip() for the whitespace configparser meets in practice. */
const strip = (s: string): string => s.replace(/^\s+|\s+$/g, "")

interface Pending {
  readonly entries: Map<string, IniEntry>
  readonly key: string
  readonly lines: Array<string>
  readonly file: string
  readonly line: number
}

/**
 * Reads one file's text into `doc` (mutating it), as `RawConfigParser.read` does for one file.
 * Fails with the first problem; configparser would collect bad lines and raise at the end, but
 * kojid stops on the exception either way.
 */
export const readIniInto = (
  doc: IniDocument,
  text: string,
  file: string
): Either.Either<void, IniProblem> => {
  const seenSections = new Set<string>()
  const seenOptions = new Map<string, number>()
  let current: { readonly name: string; readonly entries: Map<string, IniEntry> } | undefined
  let pending: Pending | undefined
  let indentLevel = 0

  const flush = () => {
    if (pending !== undefined) {
      pending.entries.set(pending.key, {
        value: pending.lines.join("\n").replace(/\s+$/, ""),
        file: pending.file,
        line: pending.line
      })
    }
  }

  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/)
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop()
  for (let index = 0; index < lines.length; index++) {
    const raw = lines[index] ?? ""
    const lineNo = index + 1
    const stripped = strip(raw)
    const isComment = stripped.startsWith("#") || stripped.startsWith(";")
    if (isComment || stripped === "") {
      // configparser keeps blank lines inside a multi-line value, but not comment lines.
      if (!isComment && pending !== undefined) pending.lines.push("")
      continue
    }
    const firstNonSpace = raw.search(/\S/)
    const indent = firstNonSpace < 0 ? 0 : firstNonSpace
    if (pending !== undefined && indent > indentLevel) {
      pending.lines.push(stripped)
      continue
    }
    indentLevel = indent
    const header = SECTION_HEADER.exec(stripped)
    if (header !== null) {
      flush()
      pending = undefined
      const name = header[1] ?? ""
      if (name === DEFAULT_SECTION) {
        current = { name, entries: doc.defaults }
        continue
      }
      if (seenSections.has(name)) {
        return Either.left({
          file,
          line: lineNo,
          section: name,
          message: `section [${name}] appears twice in ${file} (line ${lineNo})`
        })
      }
      seenSections.add(name)
      let section = doc.sections.get(name)
      if (section === undefined) {
        section = { name, file, line: lineNo, entries: new Map() }
        doc.sections.set(name, section)
      }
      current = section
      continue
    }
    if (current === undefined) {
      return Either.left({
        file,
        line: lineNo,
        message: `${file} has no section header before line ${lineNo}: ${JSON.stringify(raw)}`
      })
    }
    const option = OPTION_LINE.exec(stripped)
    const rawKey = option === null ? "" : (option[1] ?? "").replace(/\s+$/, "")
    if (option === null || rawKey === "") {
      return Either.left({
        file,
        line: lineNo,
        section: current.name,
        message: `cannot parse line ${lineNo} of ${file} (expected "key = value"): ${JSON.stringify(raw)}`
      })
    }
    flush()
    const key = rawKey.toLowerCase()
    const seenKey = `${current.name}\u0000${key}`
    const earlier = seenOptions.get(seenKey)
    if (earlier !== undefined) {
      pending = undefined
      return Either.left({
        file,
        line: lineNo,
        section: current.name,
        key,
        message:
          `option ${key} in section [${current.name}] of ${file} is set twice ` +
          `(lines ${earlier} and ${lineNo})`
      })
    }
    seenOptions.set(seenKey, lineNo)
    pending = { entries: current.entries, key, lines: [option[3] ?? ""], file, line: lineNo }
  }
  flush()
  return Either.void
}
