/**
 * koji client profiles, read as the koji CLI reads them (`koji.read_config` and `cli/koji`
 * `get_options`): the files `/etc/koji.conf.d/*.conf`, `/etc/koji.conf`, then
 * `~/.koji/config.d/*.conf`, `~/.koji/config` (or the `-c FILE` given instead of the two user
 * entries), in that order, later ones winning; a directory contributes its `*.conf` files in name
 * order. Each INI section is a profile (`[koji]` is the CLI's default, after its program name).
 *
 * The files are read by Python's `ConfigParser` (not the raw one): `%(name)s` references to
 * options of the same section or `[DEFAULT]` are expanded and `%%` is a literal `%`; a lone `%`
 * is an error. Options koji does not know are ignored, as koji ignores them. Values are typed as
 * koji types them (`getboolean` / `int()`); `cert` and `serverca` default to
 * `~/.koji/client.crt` / `~/.koji/serverca.crt` when those exist, else "". `topdir`, `cert` and
 * `serverca` get `~` expanded as `os.path.expanduser` does. An obsolete `pkgurl` gives `topurl`
 * with `/packages` stripped when `topurl` is unset.
 *
 * One deliberate difference: koji keeps `no_ssl_verify` as a string, so any non-empty value —
 * even `False` — turns TLS verification off. Here it is a boolean (`getboolean`), so
 * `no_ssl_verify = False` keeps verification on.
 */
import { Effect, Either, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { emptyIniDocument, type IniDocument, type IniEntry, readIniInto } from "../config/ini.js"
import { parsePythonBool, parsePythonInt } from "../config/values.js"

/** The options of a koji client profile, with koji's names (`read_config`'s `config_defaults`). */
export const KojiClientOptions = Schema.Struct({
  server: Schema.String,
  weburl: Schema.String,
  topurl: Schema.NullOr(Schema.String),
  pkgurl: Schema.NullOr(Schema.String),
  topdir: Schema.String,
  max_retries: Schema.Number,
  retry_interval: Schema.Number,
  anon_retry: Schema.Boolean,
  offline_retry: Schema.Boolean,
  offline_retry_interval: Schema.Number,
  timeout: Schema.Number,
  auth_timeout: Schema.Number,
  use_fast_upload: Schema.Boolean,
  upload_blocksize: Schema.Number,
  poll_interval: Schema.Number,
  principal: Schema.NullOr(Schema.String),
  keytab: Schema.NullOr(Schema.String),
  /** Path of the client certificate; "" when none (after koji's `~/.koji/client.crt` default). */
  cert: Schema.String,
  /** Path of the hub's CA; "" when none (after koji's `~/.koji/serverca.crt` default). */
  serverca: Schema.String,
  no_ssl_verify: Schema.Boolean,
  authtype: Schema.NullOr(Schema.String),
  debug: Schema.Boolean,
  debug_xmlrpc: Schema.Boolean,
  pyver: Schema.NullOr(Schema.Number),
  plugin_paths: Schema.NullOr(Schema.String),
  force_auth: Schema.Boolean
})
/** The options of a koji client profile. */
export type KojiClientOptions = typeof KojiClientOptions.Type

/** koji's defaults (`read_config`), before the cert/serverca defaults are looked up. */
export const kojiClientDefaults: Readonly<Record<keyof KojiClientOptions, string | number | boolean | null>> = {
  server: "http://localhost/kojihub",
  weburl: "http://localhost/koji",
  topurl: null,
  pkgurl: null,
  topdir: "/mnt/koji",
  max_retries: 30,
  retry_interval: 20,
  anon_retry: false,
  offline_retry: false,
  offline_retry_interval: 20,
  timeout: 60 * 60 * 12,
  auth_timeout: 60,
  use_fast_upload: true,
  upload_blocksize: 1048576,
  poll_interval: 6,
  principal: null,
  keytab: null,
  cert: null,
  serverca: null,
  no_ssl_verify: false,
  authtype: null,
  debug: false,
  debug_xmlrpc: false,
  pyver: null,
  plugin_paths: null,
  force_auth: false
}

const BOOLEAN_OPTIONS: ReadonlySet<string> = new Set([
  "anon_retry", "offline_retry", "use_fast_upload", "debug", "debug_xmlrpc", "force_auth", "no_ssl_verify"
])
const INTEGER_OPTIONS: ReadonlySet<string> = new Set([
  "max_retries", "retry_interval", "offline_retry_interval", "poll_interval", "timeout", "auth_timeout",
  "upload_blocksize", "pyver"
])
const isKnownOption = (name: string): name is keyof KojiClientOptions => Object.hasOwn(kojiClientDefaults, name)

/** A profile as the koji CLI would use it. */
export interface KojiProfile extends KojiClientOptions {
  /** The profile (section) name. */
  readonly profile: string
  /** False when the profile was not required and no file has it: koji's defaults plus the overrides. */
  readonly found: boolean
  /** The files that were read, in order. */
  readonly files: ReadonlyArray<string>
  /** What the koji CLI would warn about (the obsolete `pkgurl`). */
  readonly warnings: ReadonlyArray<string>
}

/** One entry of koji's config list: a file, or a directory whose `*.conf` files are read. */
export interface KojiConfigPath {
  readonly path: string
  /** `-c FILE`: it must exist (and, as a directory, hold a `*.conf`), as koji's `strict`. */
  readonly strict?: boolean | undefined
}

/** Why a koji client configuration cannot be used. */
export const KojiConfigErrorReason = Schema.Literal("MissingProfile", "BadFile", "BadValue")

/** A koji client configuration problem; the message is one line naming the profile, file, key or line. */
export class KojiConfigError extends Schema.TaggedError<KojiConfigError>()("KojiConfigError", {
  reason: KojiConfigErrorReason,
  profile: Schema.String,
  file: Schema.optional(Schema.String),
  key: Schema.optional(Schema.String),
  line: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** What to read: the profile, koji's config list, the home directory for `~`. */
export interface KojiProfileRequest {
  /** The profile name; the koji CLI's default is its program name, `koji`. */
  readonly profile: string
  /** koji's config list in order (see `kojiConfigPaths`). */
  readonly paths: ReadonlyArray<KojiConfigPath>
  /** The home directory `~` stands for (`$HOME`, else the passwd entry, as Python's expanduser). */
  readonly home: string
  /** The home of another user, for `~user/…` (`pwd.getpwnam`); default: `/etc/passwd`. Unknown users leave the path as it is. */
  readonly userHome?: ((name: string) => string | undefined) | undefined
  /** Command-line values, which win over the files as in the koji CLI (`-s/--server`, `--topurl`, …). */
  readonly overrides?: Partial<KojiClientOptions> | undefined
  /** A profile no file has is an error (koji's behaviour, the default); else koji's defaults are used. */
  readonly required?: boolean | undefined
}

/** The home directory of `name` from `/etc/passwd`, or undefined. */
export const passwdHome = (name: string, passwdFile = "/etc/passwd"): string | undefined => {
  let text: string
  try {
    text = fs.readFileSync(passwdFile, "utf8")
  } catch {
    return undefined
  }
  for (const line of text.split("\n")) {
    const fields = line.split(":")
    if (fields.length >= 7 && fields[0] === name) return fields[5]
  }
  return undefined
}

/** Python's `os.path.expanduser` on POSIX, with `home` for `~`. */
export const expandUser = (p: string, home: string, userHome: (name: string) => string | undefined = passwdHome): string => {
  if (!p.startsWith("~")) return p
  const slash = p.indexOf("/", 1)
  const end = slash < 0 ? p.length : slash
  const base = end === 1 ? home : userHome(p.slice(1, end))
  if (base === undefined) return p
  return `${base.replace(/\/+$/, "")}${p.slice(end)}` || "/"
}

/**
 * koji's config list (`read_config`): `/etc/koji.conf.d`, `/etc/koji.conf`, then
 * `~/.koji/config.d`, `~/.koji/config` — or, with `-c FILE`, that file (strict) instead of the
 * two user entries. `etc` moves the system part (for tests).
 */
export const kojiConfigPaths = (
  home: string,
  options: { readonly configFile?: string | undefined; readonly etc?: string | undefined; readonly userHome?: ((name: string) => string | undefined) | undefined } = {}
): ReadonlyArray<KojiConfigPath> => {
  const etc = options.etc ?? "/etc"
  const system: ReadonlyArray<KojiConfigPath> = [{ path: path.join(etc, "koji.conf.d") }, { path: path.join(etc, "koji.conf") }]
  if (options.configFile !== undefined) {
    return [...system, { path: expandUser(options.configFile, home, options.userHome), strict: true }]
  }
  return [
    ...system,
    { path: expandUser("~/.koji/config.d", home, options.userHome) },
    { path: expandUser("~/.koji/config", home, options.userHome) }
  ]
}

/** Python's `sorted()` order of str: by code point (JS's default sort compares UTF-16 units). */
const byCodePoint = (a: string, b: string): number => {
  const x = Array.from(a, (c) => c.codePointAt(0) ?? 0)
  const y = Array.from(b, (c) => c.codePointAt(0) ?? 0)
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return x.length - y.length
}

const causeText = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The files koji reads for one entry (`read_config_files` / `config_directory_contents`). */
const filesOf = (entry: KojiConfigPath, profile: string): Either.Either<ReadonlyArray<string>, KojiConfigError> => {
  const bad = (message: string) => Either.left(new KojiConfigError({ reason: "BadFile", profile, file: entry.path, message }))
  const stat = (p: string): fs.Stats | undefined => {
    try {
      return fs.statSync(p)
    } catch {
      return undefined
    }
  }
  const st = stat(entry.path)
  if (st?.isDirectory() === true) {
    let names: Array<string>
    try {
      names = fs.readdirSync(entry.path)
    } catch (cause) {
      return bad(`cannot list koji config directory ${entry.path}: ${causeText(cause)}`)
    }
    const files: Array<string> = []
    for (const name of names.filter((n) => n.endsWith(".conf")).sort(byCodePoint)) {
      const file = path.join(entry.path, name)
      if (stat(file)?.isFile() === true) files.push(file)
      else if (entry.strict === true) return bad(`Config file ${file} can't be opened.`)
    }
    if (files.length === 0 && entry.strict === true) return bad(`No config files found in directory: ${entry.path}`)
    return Either.right(files)
  }
  if (st?.isFile() === true) return Either.right([entry.path])
  if (entry.strict === true) return bad(`Config file ${entry.path} can't be opened.`)
  return Either.right([])
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Reads koji's config list into one document, as `ConfigParser.read(files, encoding="utf8")`. */
const readDocument = (
  paths: ReadonlyArray<KojiConfigPath>,
  profile: string
): Either.Either<{ readonly doc: IniDocument; readonly files: ReadonlyArray<string> }, KojiConfigError> =>
  Either.gen(function*() {
    const doc = emptyIniDocument()
    const read: Array<string> = []
    for (const entry of paths) {
      for (const file of yield* filesOf(entry, profile)) {
        let bytes: Buffer
        try {
          bytes = fs.readFileSync(file)
        } catch {
          // ConfigParser.read skips a file it cannot open (koji checked only that it exists).
          continue
        }
        let text: string
        try {
          text = utf8.decode(bytes)
        } catch {
          return yield* Either.left(new KojiConfigError({ reason: "BadFile", profile, file, message: `koji config ${file} is not UTF-8 text` }))
        }
        const parsed = readIniInto(doc, text, file)
        if (Either.isLeft(parsed)) {
          const p = parsed.left
          return yield* Either.left(new KojiConfigError({
            reason: "BadFile", profile, file: p.file, line: p.line, message: `koji config: ${p.message}`,
            ...(p.key === undefined ? {} : { key: p.key })
          }))
        }
        read.push(file)
      }
    }
    return { doc, files: read }
  })

/** Python's configparser `MAX_INTERPOLATION_DEPTH`. */
const MAX_INTERPOLATION_DEPTH = 10
const REFERENCE = /^%\(([^)]+)\)s/

/**
 * `BasicInterpolation.before_get`: `%%` → `%`, `%(name)s` → the (interpolated) value of `name`
 * in the section or `[DEFAULT]`; anything else after `%` is an error, as is a missing name or
 * a chain deeper than 10.
 */
const interpolate = (
  value: string,
  vars: ReadonlyMap<string, IniEntry>,
  depth: number
): Either.Either<string, string> => {
  if (depth > MAX_INTERPOLATION_DEPTH) return Either.left("interpolation is nested too deeply (a reference loop?)")
  let out = ""
  let rest = value
  while (rest !== "") {
    const p = rest.indexOf("%")
    if (p < 0) return Either.right(out + rest)
    out += rest.slice(0, p)
    rest = rest.slice(p)
    const next = rest.slice(1, 2)
    if (next === "%") {
      out += "%"
      rest = rest.slice(2)
    } else if (next === "(") {
      const m = REFERENCE.exec(rest)
      if (m === null) return Either.left(`bad interpolation variable reference ${JSON.stringify(rest)}`)
      const name = (m[1] ?? "").toLowerCase()
      rest = rest.slice(m[0].length)
      const target = vars.get(name)
      if (target === undefined) return Either.left(`refers to %(${name})s, which is not set in the profile or [DEFAULT]`)
      if (target.value.includes("%")) {
        const inner = interpolate(target.value, vars, depth + 1)
        if (Either.isLeft(inner)) return inner
        out += inner.right
      } else {
        out += target.value
      }
    } else {
      return Either.left(`'%' must be followed by '%' or '(' (write %% for a literal %), found ${JSON.stringify(rest)}`)
    }
  }
  return Either.right(out)
}

const where = (entry: IniEntry) => `${entry.file}, line ${entry.line}`

/** One option's value as koji types it. */
const typed = (name: keyof KojiClientOptions, text: string): Either.Either<string | number | boolean, string> => {
  if (BOOLEAN_OPTIONS.has(name)) return parsePythonBool(text)
  if (INTEGER_OPTIONS.has(name)) {
    const hint = /\s[;#]/.test(text) ? " (koji config files have no inline comments)" : ""
    return Either.mapLeft(parsePythonInt(text), () => `must be a valid integer, got ${JSON.stringify(text)}${hint}`)
  }
  return Either.right(text)
}

/** koji's list of profile names for a message: the sections of the files read. */
const profileList = (doc: IniDocument): string =>
  doc.sections.size === 0 ? "none" : [...doc.sections.keys()].map((s) => `[${s}]`).join(", ")

/**
 * The profile's options from already-read files (koji's `read_config` after `read_config_files`),
 * then the CLI's overrides, `~` expansion and `pkgurl` handling (`get_options`).
 */
const resolveProfile = (
  request: KojiProfileRequest,
  doc: IniDocument,
  files: ReadonlyArray<string>
): Either.Either<KojiProfile, KojiConfigError> =>
  Either.gen(function*() {
    const { profile, home } = request
    const userHome = request.userHome ?? ((name: string) => passwdHome(name))
    const result: Record<string, unknown> = { ...kojiClientDefaults }
    const section = doc.sections.get(profile)
    if (section === undefined && request.required !== false) {
      const read = files.length === 0
        ? `no koji config file found (looked in ${request.paths.map((p) => p.path).join(", ")})`
        : `read ${files.join(", ")}; profiles there: ${profileList(doc)}`
      return yield* Either.left(new KojiConfigError({
        reason: "MissingProfile", profile, message: `no configuration for koji profile name: ${profile} (${read})`
      }))
    }
    if (section !== undefined) {
      // ConfigParser.items(profile): [DEFAULT] options, overridden by the section's, every one interpolated.
      const vars = new Map<string, IniEntry>([...doc.defaults, ...section.entries])
      for (const [name, entry] of vars) {
        const value = interpolate(entry.value, vars, 1)
        if (Either.isLeft(value)) {
          return yield* Either.left(new KojiConfigError({
            reason: "BadValue", profile, file: entry.file, key: name, line: entry.line,
            message: `value of ${name} in koji profile [${profile}] ${value.left} (${where(entry)})`
          }))
        }
        if (!isKnownOption(name)) continue
        const v = typed(name, value.right)
        if (Either.isLeft(v)) {
          return yield* Either.left(new KojiConfigError({
            reason: "BadValue", profile, file: entry.file, key: name, line: entry.line,
            message: `value for ${name} config option ${v.left} in koji profile [${profile}] (${where(entry)})`
          }))
        }
        result[name] = v.right
      }
    }
    for (const [name, fallback] of [["cert", "~/.koji/client.crt"], ["serverca", "~/.koji/serverca.crt"]] as const) {
      const value = result[name]
      if (typeof value === "string") result[name] = expandUser(value, home, userHome)
      else {
        const file = expandUser(fallback, home, userHome)
        result[name] = fs.existsSync(file) ? file : ""
      }
    }
    for (const [name, value] of Object.entries(request.overrides ?? {})) {
      if (value !== undefined && value !== null) result[name] = value
    }
    for (const name of ["topdir", "cert", "serverca"] as const) {
      const value = result[name]
      if (typeof value === "string") result[name] = expandUser(value, home, userHome)
    }
    const warnings: Array<string> = []
    const pkgurl = result["pkgurl"]
    if (typeof pkgurl === "string" && pkgurl !== "") {
      const topurl = result["topurl"]
      if (typeof topurl === "string" && topurl !== "") warnings.push("Warning: the pkgurl option is obsolete")
      else {
        const suggest = pkgurl.replace(/\/packages\/?$/, "")
        if (suggest !== pkgurl) {
          warnings.push(`Warning: the pkgurl option is obsolete, using topurl=${JSON.stringify(suggest)}`)
          result["topurl"] = suggest
        } else {
          warnings.push("Warning: The pkgurl option is obsolete, please use topurl instead")
        }
      }
    }
    const options = yield* Schema.decodeUnknownEither(KojiClientOptions)(result).pipe(
      Either.mapLeft((e) => new KojiConfigError({ reason: "BadValue", profile, message: `koji profile [${profile}]: ${e.message.split("\n")[0]}` }))
    )
    return { ...options, profile, found: section !== undefined, files, warnings }
  })

/** Reads a koji client profile as the koji CLI does (see the module comment). */
export const readKojiProfile = (request: KojiProfileRequest): Effect.Effect<KojiProfile, KojiConfigError> =>
  Effect.suspend(() =>
    Either.flatMap(readDocument(request.paths, request.profile), ({ doc, files }) => resolveProfile(request, doc, files))
  ).pipe(Effect.withSpan("kojiProfile.read", { attributes: { profile: request.profile } }))
