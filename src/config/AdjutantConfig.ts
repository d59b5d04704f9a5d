/**
 * The configuration: `/etc/kojid/kojid.conf` read as kojid's `get_options` reads it (section
 * `[kojid]`, same keys, types and defaults, koji-protocol.md §9) plus the `[adjutant]` section
 * for what kojid never had (podman, images, container limits, TLS, status server).
 *
 * Where we follow kojid although it surprises:
 * - only `[kojid]` (and our `[adjutant]`) may appear: kojid quits on any other section;
 * - a missing config file is not an error by itself (kojid reads it non-strictly), but then
 *   `server` and `topurl` must come from the command line;
 * - a directory as config path reads its `*.conf` files in name order, later ones winning;
 * - `plugin` and `plugins` are the same option: whichever comes later wins (kojid assigns
 *   both to `options.plugin`); `--plugin` on the command line replaces the file's list;
 * - `topurl` may hold several URLs: `topurl` is the first, `topurls` all of them, as kojid.
 * Where we are stricter than kojid (it would crash later or silently ignore):
 * - a bad boolean names the key (kojid dies with a traceback), `log_level` must be a Python
 *   logging level name (kojid quits at start), `server` and each `topurl` must be URLs;
 * - `RLIMIT_*` must name a Linux resource and hold "soft [hard]" integers ≥ 0 (or -1 =
 *   unlimited) with soft ≤ hard (kojid logs and skips a bad one);
 * - `mock_bootstrap_image` is a boolean (kojid keeps the raw string, so "False" was true).
 */
import { Context, Either, Effect, Layer, LogLevel, Schema } from "effect"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { emptyIniDocument, readIniInto, type IniDocument, type IniEntry } from "./ini.js"
import {
  formatByteSize,
  formatIdMap,
  type IdMap,
  limitWithin,
  parseByteSize,
  parseHostPort,
  parseIdMap,
  parseLimitValue,
  parseNonNegativeFloat,
  parseNonNegativeInt,
  parsePythonBool,
  parsePythonInt,
  splitWords
} from "./values.js"

/** Where kojid looks for its config when `-c` is not given. */
export const DEFAULT_CONFIG_FILE = "/etc/kojid/kojid.conf"

/** A process resource limit from an `RLIMIT_*` key; -1 means unlimited; hard null = keep the current hard limit. */
export interface Rlimit {
  readonly resource: string
  readonly soft: number
  readonly hard: number | null
}

/** Every `[kojid]` option of koji-protocol.md §9, with kojid's names, types and defaults. */
export interface KojidOptions {
  readonly sleeptime: number
  readonly maxjobs: number
  readonly buildroot_basic_cleanup_delay: number
  readonly buildroot_final_cleanup_delay: number
  readonly literal_task_arches: string
  readonly minspace: number
  readonly admin_emails: string | null
  readonly log_level: string | null
  readonly topdir: string
  /** The first URL of `topurl` (kojid replaces the option by its first word). */
  readonly topurl: string
  /** Every URL of `topurl`, space separated in the file. */
  readonly topurls: ReadonlyArray<string>
  readonly workdir: string
  readonly chroot_tmpdir: string
  readonly pluginpath: string
  readonly plugin: ReadonlyArray<string>
  readonly mockdir: string
  readonly mockuser: string
  readonly packager: string
  readonly vendor: string
  readonly distribution: string
  readonly mockhost: string
  readonly smtphost: string
  readonly smtp_user: string | null
  readonly smtp_pass: string | null
  readonly from_addr: string
  readonly krb_principal: string | null
  readonly host_principal_format: string
  readonly keytab: string
  readonly ccache: string
  readonly server: string
  readonly user: string | null
  readonly password: string | null
  readonly retry_interval: number
  readonly max_retries: number
  readonly offline_retry: boolean
  readonly offline_retry_interval: number
  readonly log_timestamps: boolean
  readonly timeout: number | null
  readonly no_ssl_verify: boolean
  readonly use_fast_upload: boolean
  readonly use_createrepo_c: boolean
  readonly createrepo_skip_stat: boolean
  readonly createrepo_update: boolean
  readonly distrepo_skip_stat: boolean
  readonly copy_old_repodata: boolean
  readonly mock_bootstrap_image: boolean
  readonly pkgurl: string | null
  readonly allowed_scms: string
  readonly allowed_scms_use_config: boolean
  readonly allowed_scms_use_policy: boolean
  readonly scm_credentials_dir: string | null
  readonly support_rpm_source_layout: boolean
  readonly yum_proxy: string | null
  readonly maven_repo_ignore: string
  readonly failed_buildroot_lifetime: number
  readonly rpmbuild_timeout: number
  readonly oz_install_timeout: number
  readonly xz_options: string
  readonly task_avail_delay: number
  readonly cert: string | null
  readonly serverca: string | null
  readonly allow_noverifyssl: boolean
  readonly allow_password_in_scm_url: boolean
  readonly build_arch_can_fail: boolean
  readonly rlimits: ReadonlyArray<Rlimit>
}

/** One `image_rules` line: tasks whose build tag matches `tag` (and arch matches `arch`) use `image`. */
export interface ImageRule {
  readonly tag: string
  readonly arch: string | null
  readonly image: string
}

/** A container ulimit as podman takes it (`name=soft:hard`); -1 means unlimited. */
export interface Ulimit {
  readonly name: string
  readonly soft: number
  readonly hard: number
}

/** TLS protocol versions as Node's `tls` names them. */
export type TlsVersion = "TLSv1" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3"

/** The `[adjutant]` section: what kojid never had. See examples/kojid.conf for each key. */
export interface AdjutantOptions {
  /** Always in `unix:///path` form (a plain path in the file is accepted). */
  readonly podman_socket: string
  readonly oci_runtime: "runc" | "crun" | ""
  readonly rootless: boolean
  readonly bootstrap_image: string
  readonly image_rules: ReadonlyArray<ImageRule>
  readonly pull_policy: "missing" | "always" | "never"
  readonly registry_auth_file: string
  readonly insecure_registries: ReadonlyArray<string>
  readonly image_refresh_interval: number
  readonly image_gc: boolean
  /** Bytes; 0 = unlimited. */
  readonly container_memory: number
  readonly container_pids: number
  readonly container_cpus: number
  readonly container_stop_timeout: number
  readonly default_ulimits: ReadonlyArray<Ulimit>
  readonly cgroup_parent: string
  readonly build_user: string
  /** Host id range of containers that run package code (null: `none`, host ids). */
  readonly build_userns: IdMap | null
  /** Bytes of each buildroot's scratch disk (results, logs, BuildRequires, checkout); 0 = unbounded. */
  readonly task_disk_max: number
  /** Bytes (apparent size) of all packages a task may take out of its build. */
  readonly result_max_size: number
  /** Bytes of each log that reach the hub (head and tail kept); 0 = all. */
  readonly log_max_size: number
  readonly reaper_interval: number
  readonly login_tls_max_version: TlsVersion
  readonly tls_max_version: TlsVersion
  readonly tls_min_version: TlsVersion
  readonly buildroot_cache_dir: string
  readonly buildroot_cache_max: number
  /** Bytes the buildroot cache may hold (0 = no bound beyond the entry count). */
  readonly buildroot_cache_max_bytes: number
  /** `host[:port]/namespace` where filled roots are pushed as images and looked for before a fill; "" = off. */
  readonly buildroot_registry: string
  readonly status_listen: string
  readonly log_file: string
  /** Layout of every log line: kojid's (default), logfmt or JSON (src/daemon/logFormat.ts). */
  readonly log_format: "kojid" | "logfmt" | "json"
  readonly task_timeout: number
  readonly runroot_config: string
  /** Network of SCM checkout containers. */
  readonly scm_network: "bridge" | "host" | "none"
  /** Seconds one checkout (or source_cmd) container may run. */
  readonly scm_timeout: number
  /** Where the image service remembers what it pulled (for GC across restarts). */
  readonly image_state_file: string
  /** Seconds one image pull may take. */
  readonly image_pull_timeout: number
  /** False = the daemon sends exactly kojid's call sequence (no multiCall batching). */
  readonly batch_hub_calls: boolean
  /** podman's storage directory, checked against `minspace` with the workdir. */
  readonly podman_storage: string
}

/** kojid's command-line options (`kojid --help`), all optional; set ones override the file. */
export interface CommandLineFlags extends RuntimeFlags {
  readonly config: string
  readonly user: string
  readonly password: string
  readonly maxjobs: number
  readonly minspace: number
  readonly sleeptime: number
  readonly admin_emails: string
  readonly topdir: string
  readonly topurl: string
  readonly workdir: string
  readonly chroot_tmpdir: string
  readonly pluginpath: string
  readonly plugin: ReadonlyArray<string>
  readonly mockdir: string
  readonly mockuser: string
  readonly server: string
}

/** The command-line switches that exist only on the command line. */
export interface RuntimeFlags {
  readonly fg: boolean
  readonly force_lock: boolean
  readonly verbose: boolean
  readonly debug: boolean
  readonly debug_task: boolean
  readonly debug_xmlrpc: boolean
  /** kojid's `--debug-mock`: accepted and ignored (no mock here). */
  readonly debug_mock: boolean
  readonly skip_main: boolean
}

/** The effective configuration, read once at start. */
export interface Config {
  readonly kojid: KojidOptions
  readonly adjutant: AdjutantOptions
  readonly flags: RuntimeFlags
  /** The config path it was read from (a file or a directory of `*.conf`). */
  readonly file: string
}

/** A config file that kojid would refuse (or that we refuse); the message names the key and the file. */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  key: Schema.optional(Schema.String),
  section: Schema.optional(Schema.String),
  line: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** kojid's defaults (`get_options`); `server` and `topurl` have none and are required. */
export const defaultKojidOptions: KojidOptions = {
  sleeptime: 15,
  maxjobs: 10,
  buildroot_basic_cleanup_delay: 120,
  buildroot_final_cleanup_delay: 86400,
  literal_task_arches: "",
  minspace: 8192,
  admin_emails: null,
  log_level: null,
  topdir: "/mnt/koji",
  topurl: "",
  topurls: [],
  workdir: "/var/tmp/koji",
  chroot_tmpdir: "/chroot_tmpdir",
  pluginpath: "/usr/lib/koji-builder-plugins",
  plugin: [],
  mockdir: "/var/lib/mock",
  mockuser: "kojibuilder",
  packager: "Koji",
  vendor: "Koji",
  distribution: "Koji",
  mockhost: "koji-linux-gnu",
  smtphost: "example.com",
  smtp_user: null,
  smtp_pass: null,
  from_addr: "Koji Build System <buildsys@example.com>",
  krb_principal: null,
  host_principal_format: "compile/%s@EXAMPLE.COM",
  keytab: "/etc/kojid/kojid.keytab",
  ccache: "/var/tmp/kojid.ccache",
  server: "",
  user: null,
  password: null,
  retry_interval: 60,
  max_retries: 120,
  offline_retry: true,
  offline_retry_interval: 120,
  log_timestamps: false,
  timeout: null,
  no_ssl_verify: false,
  use_fast_upload: true,
  use_createrepo_c: true,
  createrepo_skip_stat: true,
  createrepo_update: true,
  distrepo_skip_stat: false,
  copy_old_repodata: false,
  mock_bootstrap_image: false,
  pkgurl: null,
  allowed_scms: "",
  allowed_scms_use_config: true,
  allowed_scms_use_policy: false,
  scm_credentials_dir: null,
  support_rpm_source_layout: true,
  yum_proxy: null,
  maven_repo_ignore:
    "*.md5 *.sha1 maven-metadata*.xml _maven.repositories _remote.repositories " +
    "resolver-status.properties *.lastUpdated",
  failed_buildroot_lifetime: 14400,
  rpmbuild_timeout: 86400,
  oz_install_timeout: 0,
  xz_options: "-z6T0",
  task_avail_delay: 300,
  cert: null,
  serverca: null,
  allow_noverifyssl: false,
  allow_password_in_scm_url: false,
  build_arch_can_fail: false,
  rlimits: []
}

/** Defaults of the `[adjutant]` section. */
export const defaultAdjutantOptions: AdjutantOptions = {
  podman_socket: "unix:///run/podman/podman.sock",
  oci_runtime: "runc",
  rootless: false,
  bootstrap_image: "localhost/koji-adjutant-bootstrap:latest",
  image_rules: [],
  pull_policy: "missing",
  registry_auth_file: "",
  insecure_registries: [],
  image_refresh_interval: 86400,
  image_gc: true,
  container_memory: 4 * 1024 ** 3,
  container_pids: 4096,
  container_cpus: 0,
  container_stop_timeout: 10,
  default_ulimits: [
    { name: "nofile", soft: 4096, hard: 4096 },
    { name: "nproc", soft: 4096, hard: 4096 }
  ],
  cgroup_parent: "",
  build_user: "1000:1000",
  build_userns: { base: 2000000000, size: 65536 },
  task_disk_max: 20 * 1024 ** 3,
  result_max_size: 10 * 1024 ** 3,
  log_max_size: 256 * 1024 ** 2,
  reaper_interval: 300,
  login_tls_max_version: "TLSv1.2",
  tls_max_version: "TLSv1.3",
  tls_min_version: "TLSv1.2",
  buildroot_cache_dir: "/var/lib/koji-adjutant/buildroots",
  buildroot_cache_max: 20,
  buildroot_cache_max_bytes: 0,
  buildroot_registry: "",
  status_listen: "",
  log_file: "/var/log/kojid.log",
  log_format: "kojid",
  task_timeout: 0,
  runroot_config: "/etc/kojid/plugins/runroot.conf",
  scm_network: "bridge",
  scm_timeout: 3600,
  image_state_file: "/var/lib/koji-adjutant/images.json",
  image_pull_timeout: 1800,
  batch_hub_calls: true,
  podman_storage: "/var/lib/containers/storage"
}

const defaultRuntimeFlags: RuntimeFlags = {
  fg: false,
  force_lock: false,
  verbose: false,
  debug: false,
  debug_task: false,
  debug_xmlrpc: false,
  debug_mock: false,
  skip_main: false
}

/** What loading may look at outside the text: injectable so tests need not touch /etc. */
export interface ConfigEnv {
  readonly exists: (path: string) => boolean
  /** kojid uses this `cert` when none is configured and the file exists. */
  readonly defaultCert: string
  /** kojid uses this `serverca` when none is configured and the file exists. */
  readonly defaultServerca: string
}

const defaultEnv: ConfigEnv = {
  exists: existsSync,
  defaultCert: "/etc/kojid/client.crt",
  defaultServerca: "/etc/kojid/serverca.crt"
}

// ---------------------------------------------------------------------------------------------
// [kojid]

type Scalar = Exclude<keyof KojidOptions, "plugin" | "topurls" | "rlimits">
type KindOf<V> = [V] extends [boolean] ? "bool" : [V] extends [number | null] ? "int" : "str"

/** How kojid reads each key: its int list, its bool list, the rest as raw strings (§9). */
const KOJID_KINDS: { readonly [K in Scalar]: KindOf<KojidOptions[K]> } = {
  sleeptime: "int",
  maxjobs: "int",
  buildroot_basic_cleanup_delay: "int",
  buildroot_final_cleanup_delay: "int",
  literal_task_arches: "str",
  minspace: "int",
  admin_emails: "str",
  log_level: "str",
  topdir: "str",
  topurl: "str",
  workdir: "str",
  chroot_tmpdir: "str",
  pluginpath: "str",
  mockdir: "str",
  mockuser: "str",
  packager: "str",
  vendor: "str",
  distribution: "str",
  mockhost: "str",
  smtphost: "str",
  smtp_user: "str",
  smtp_pass: "str",
  from_addr: "str",
  krb_principal: "str",
  host_principal_format: "str",
  keytab: "str",
  ccache: "str",
  server: "str",
  user: "str",
  password: "str",
  retry_interval: "int",
  max_retries: "int",
  offline_retry: "bool",
  offline_retry_interval: "int",
  log_timestamps: "bool",
  timeout: "int",
  no_ssl_verify: "bool",
  use_fast_upload: "bool",
  use_createrepo_c: "bool",
  createrepo_skip_stat: "bool",
  createrepo_update: "bool",
  distrepo_skip_stat: "bool",
  copy_old_repodata: "bool",
  mock_bootstrap_image: "bool",
  pkgurl: "str",
  allowed_scms: "str",
  allowed_scms_use_config: "bool",
  allowed_scms_use_policy: "bool",
  scm_credentials_dir: "str",
  support_rpm_source_layout: "bool",
  yum_proxy: "str",
  maven_repo_ignore: "str",
  failed_buildroot_lifetime: "int",
  rpmbuild_timeout: "int",
  oz_install_timeout: "int",
  xz_options: "str",
  task_avail_delay: "int",
  cert: "str",
  serverca: "str",
  allow_noverifyssl: "bool",
  allow_password_in_scm_url: "bool",
  build_arch_can_fail: "bool"
}

/** Linux resources Python's `resource` module knows; kojid's `RLIMIT_*` keys name one of them. */
const RLIMIT_RESOURCES = new Set([
  "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
  "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
  "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK"
])

/** Python logging level names that `getattr(logging, name)` turns into a level. */
const PYTHON_LOG_LEVELS: Record<string, LogLevel.LogLevel> = {
  NOTSET: LogLevel.All,
  DEBUG: LogLevel.Debug,
  INFO: LogLevel.Info,
  WARN: LogLevel.Warning,
  WARNING: LogLevel.Warning,
  ERROR: LogLevel.Error,
  CRITICAL: LogLevel.Fatal,
  FATAL: LogLevel.Fatal
}

const isScalarKey = (key: string): key is Scalar => Object.prototype.hasOwnProperty.call(KOJID_KINDS, key)

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

// The kind table above is checked against KojidOptions, so the value handed here always has
// the key's type; the generic only lets one setter serve every key.
const setOption = <T, K extends keyof T>(target: Mutable<T>, key: K, value: T[K]): void => {
  target[key] = value
}

const where = (file: string, line?: number) => (line === undefined ? file : `${file}, line ${line}`)

/** A ConfigError about `key` of `section`, at the entry's file and line. */
const entryError = (section: string, key: string, entry: IniEntry, message: string) =>
  new ConfigError({ file: entry.file, section, key, line: entry.line, message })

const optionError = (section: string, key: string, entry: IniEntry, reason: string) =>
  entryError(section, key, entry, `value for ${key} option ${reason} ([${section}] of ${where(entry.file, entry.line)})`)

const parseRlimit = (key: string, entry: IniEntry): Either.Either<Rlimit | null, ConfigError> => {
  const resource = key.toUpperCase()
  if (!RLIMIT_RESOURCES.has(resource)) {
    return Either.left(
      entryError("kojid", key, entry,
        `unknown resource limit ${resource} ([kojid] of ${where(entry.file, entry.line)}); ` +
          `known: ${[...RLIMIT_RESOURCES].join(" ")}`)
    )
  }
  const words = splitWords(entry.value)
  // kojid's setup_rlimits skips an empty RLIMIT_* value.
  if (words.length === 0) return Either.right(null)
  if (words.length > 2) {
    return Either.left(optionError("kojid", resource, entry, `must be "soft [hard]", got ${JSON.stringify(entry.value)}`))
  }
  const limits: Array<number> = []
  for (const word of words) {
    const n = parseLimitValue(word)
    if (Either.isLeft(n)) return Either.left(optionError("kojid", resource, entry, n.left))
    limits.push(n.right)
  }
  const soft = limits[0] ?? 0
  const hard = limits[1] ?? null
  if (hard !== null && !limitWithin(soft, hard)) {
    return Either.left(optionError("kojid", resource, entry, `has soft limit ${soft} above hard limit ${hard}`))
  }
  return Either.right({ resource, soft, hard })
}

const isUrl = (text: string, protocols?: ReadonlyArray<string>): boolean => {
  try {
    const url = new URL(text)
    return protocols === undefined || protocols.includes(url.protocol)
  } catch {
    return false
  }
}

const parseKojidSection = (
  doc: IniDocument,
  flags: Partial<CommandLineFlags>,
  label: string,
  missing: boolean,
  env: ConfigEnv
): Either.Either<KojidOptions, ConfigError> => {
  const o: Mutable<KojidOptions> = { ...defaultKojidOptions }
  const rlimits = new Map<string, Rlimit | null>()
  const section = doc.sections.get("kojid")
  let topurlEntry: IniEntry | undefined
  let serverEntry: IniEntry | undefined
  // As configparser's items(): [DEFAULT] applies only when a [kojid] section exists; kojid's
  // own keys override DEFAULT ones (Map keeps the first insertion position, as a dict does).
  const items = new Map<string, IniEntry>()
  if (section !== undefined) {
    for (const [k, e] of doc.defaults) items.set(k, e)
    for (const [k, e] of section.entries) items.set(k, e)
  }
  for (const [key, entry] of items) {
    if (key === "plugin" || key === "plugins") {
      o.plugin = splitWords(entry.value)
    } else if (isScalarKey(key)) {
      const kind = KOJID_KINDS[key]
      if (kind === "int") {
        const n = parsePythonInt(entry.value)
        if (Either.isLeft(n)) return Either.left(optionError("kojid", key, entry, n.left))
        setOption(o, key, n.right)
      } else if (kind === "bool") {
        const b = parsePythonBool(entry.value)
        if (Either.isLeft(b)) return Either.left(optionError("kojid", key, entry, b.left))
        setOption(o, key, b.right)
      } else {
        setOption(o, key, entry.value)
        if (key === "topurl") topurlEntry = entry
        if (key === "server") serverEntry = entry
      }
    } else if (key.toUpperCase().startsWith("RLIMIT_")) {
      const limit = parseRlimit(key, entry)
      if (Either.isLeft(limit)) return Either.left(limit.left)
      rlimits.set(key.toUpperCase(), limit.right)
    } else {
      const stale = key === "keepalive" || key === "ca"
      return Either.left(
        entryError("kojid", key, entry,
          `unknown config option: ${key} in [kojid] of ${where(entry.file, entry.line)}` +
            (stale ? " (documented for kojid but never accepted by it, koji-protocol.md §9)" : ""))
      )
    }
  }
  o.rlimits = [...rlimits.values()].filter((r): r is Rlimit => r !== null)

  // Command-line options win over the file (kojid: "if getattr(options, name) is None").
  if (flags.user !== undefined) o.user = flags.user
  if (flags.password !== undefined) o.password = flags.password
  if (flags.maxjobs !== undefined) o.maxjobs = flags.maxjobs
  if (flags.minspace !== undefined) o.minspace = flags.minspace
  if (flags.sleeptime !== undefined) o.sleeptime = flags.sleeptime
  if (flags.admin_emails !== undefined) o.admin_emails = flags.admin_emails
  if (flags.topdir !== undefined) o.topdir = flags.topdir
  if (flags.workdir !== undefined) o.workdir = flags.workdir
  if (flags.chroot_tmpdir !== undefined) o.chroot_tmpdir = flags.chroot_tmpdir
  if (flags.pluginpath !== undefined) o.pluginpath = flags.pluginpath
  if (flags.plugin !== undefined && flags.plugin.length > 0) o.plugin = [...flags.plugin]
  if (flags.mockdir !== undefined) o.mockdir = flags.mockdir
  if (flags.mockuser !== undefined) o.mockuser = flags.mockuser
  if (flags.server !== undefined) {
    o.server = flags.server
    serverEntry = undefined
  }
  if (flags.topurl !== undefined) {
    o.topurl = flags.topurl
    topurlEntry = undefined
  }

  const required = (key: "server" | "topurl") =>
    new ConfigError({
      file: label,
      section: "kojid",
      key,
      message:
        `the ${key} option is required: set ${key} in [kojid] of ${label} or pass --${key}` +
        (missing ? ` (${label} does not exist)` : "")
    })
  const badUrl = (key: string, value: string, entry: IniEntry | undefined, what: string) =>
    entry === undefined
      ? new ConfigError({ file: label, key, message: `--${key} ${JSON.stringify(value)} is not ${what}` })
      : optionError("kojid", key, entry, `must be ${what}, got ${JSON.stringify(value)}`)

  if (o.server === "") return Either.left(required("server"))
  if (!isUrl(o.server, ["http:", "https:"])) {
    return Either.left(badUrl("server", o.server, serverEntry, "an http(s) URL"))
  }
  const topurls = splitWords(o.topurl)
  if (topurls.length === 0) return Either.left(required("topurl"))
  for (const url of topurls) {
    if (!isUrl(url)) return Either.left(badUrl("topurl", url, topurlEntry, "a URL"))
  }
  o.topurls = topurls
  o.topurl = topurls[0] ?? ""

  if (o.log_level !== null && PYTHON_LOG_LEVELS[o.log_level] === undefined) {
    const entry = items.get("log_level")
    const reason = `must be a logging level name (${Object.keys(PYTHON_LOG_LEVELS).join(", ")}), got ${JSON.stringify(o.log_level)}`
    return Either.left(
      entry === undefined ? new ConfigError({ file: label, key: "log_level", message: reason }) : optionError("kojid", "log_level", entry, reason)
    )
  }

  // kojid: cert and serverca default to the files in /etc/kojid only when those exist.
  if (o.cert === null && env.exists(env.defaultCert)) o.cert = env.defaultCert
  if (o.serverca === null && env.exists(env.defaultServerca)) o.serverca = env.defaultServerca
  return Either.right(o)
}

// ---------------------------------------------------------------------------------------------
// [adjutant]

interface AdjutantField<A> {
  readonly parse: (raw: string) => Either.Either<A, string>
  readonly render: (value: A) => string
}

const field = <A>(parse: (raw: string) => Either.Either<A, string>, render: (value: A) => string): AdjutantField<A> => ({ parse, render })

const oneOf = <const L extends string>(...allowed: ReadonlyArray<L>) =>
  field<L>(
    (raw) => {
      const hit = allowed.find((a) => a === raw)
      return hit === undefined
        ? Either.left(`must be one of ${allowed.map((a) => (a === "" ? '""' : a)).join(", ")}, got ${JSON.stringify(raw)}`)
        : Either.right(hit)
    },
    (v) => v
  )

/** `host[:port]/namespace[/…]` of `buildroot_registry` ("" = off): a registry and a repository path under it. */
const parseRegistryNamespace = (raw: string): Either.Either<string, string> => {
  if (raw === "") return Either.right(raw)
  const [host = "", ...parts] = raw.split("/")
  const hp = parseHostPort(host, false)
  if (Either.isLeft(hp)) return Either.left(`registry ${hp.left}`)
  if (parts.length === 0) return Either.left(`must be host[:port]/namespace, got ${JSON.stringify(raw)}`)
  const bad = parts.find((p) => !/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(p))
  return bad === undefined ? Either.right(raw) : Either.left(`namespace part ${JSON.stringify(bad)} is not a repository name (lowercase letters, digits, . _ -)`)
}

const boolField = field(parsePythonBool, (b) => (b ? "True" : "False"))
const countField = field(parseNonNegativeInt, String)
const positiveCount = field(
  (raw: string) =>
    Either.flatMap(parseNonNegativeInt(raw), (n) => (n > 0 ? Either.right(n) : Either.left(`must be a whole number of seconds ≥ 1, got ${JSON.stringify(raw)}`))),
  String
)
const anyText = field((raw: string) => Either.right(raw), (v: string) => v)

const absolutePath = (allowEmpty: boolean) =>
  field(
    (raw: string): Either.Either<string, string> =>
      (raw === "" && allowEmpty) || raw.startsWith("/")
        ? Either.right(raw)
        : Either.left(`must be an absolute path${allowEmpty ? " or empty" : ""}, got ${JSON.stringify(raw)}`),
    (v: string) => v
  )

const imageRef = field(
  (raw: string): Either.Either<string, string> =>
    raw !== "" && !/\s/.test(raw) ? Either.right(raw) : Either.left(`must be an image reference, got ${JSON.stringify(raw)}`),
  (v: string) => v
)

const parseImageRules = (raw: string): Either.Either<ReadonlyArray<ImageRule>, string> => {
  const rules: Array<ImageRule> = []
  for (const line of raw.split("\n").map((l) => l.trim()).filter((l) => l !== "")) {
    const eq = line.indexOf("=")
    const left = eq < 0 ? "" : line.slice(0, eq).trim()
    const image = eq < 0 ? "" : line.slice(eq + 1).trim()
    const slash = left.indexOf("/")
    const tag = slash < 0 ? left : left.slice(0, slash)
    const arch = slash < 0 ? null : left.slice(slash + 1)
    if (tag === "" || arch === "" || /\s/.test(left) || image === "" || /\s/.test(image)) {
      return Either.left(`has a bad rule ${JSON.stringify(line)}; each line is "TAGGLOB[/ARCHGLOB] = IMAGE"`)
    }
    rules.push({ tag, arch, image })
  }
  return Either.right(rules)
}

const ULIMIT_NAMES = new Set([...RLIMIT_RESOURCES].map((r) => r.slice("RLIMIT_".length).toLowerCase()))

const parseUlimits = (raw: string): Either.Either<ReadonlyArray<Ulimit>, string> => {
  const out: Array<Ulimit> = []
  for (const word of splitWords(raw)) {
    const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(word)
    const name = m?.[1] ?? ""
    if (m === null || !ULIMIT_NAMES.has(name)) {
      return Either.left(`has a bad entry ${JSON.stringify(word)}; each is name=soft[:hard] with name one of ${[...ULIMIT_NAMES].join(" ")}`)
    }
    const soft = parseLimitValue(m[2] ?? "")
    const hard = parseLimitValue(m[3] ?? m[2] ?? "")
    if (Either.isLeft(soft)) return Either.left(`${name}: ${soft.left}`)
    if (Either.isLeft(hard)) return Either.left(`${name}: ${hard.left}`)
    if (!limitWithin(soft.right, hard.right)) return Either.left(`${name}: soft limit ${soft.right} is above hard limit ${hard.right}`)
    out.push({ name, soft: soft.right, hard: hard.right })
  }
  return Either.right(out)
}

const tlsVersion = oneOf<TlsVersion>("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
const TLS_ORDER: ReadonlyArray<TlsVersion> = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]

const ADJUTANT_FIELDS: { readonly [K in keyof AdjutantOptions]: AdjutantField<AdjutantOptions[K]> } = {
  podman_socket: field(
    (raw) => {
      const path = raw.startsWith("unix://") ? raw.slice("unix://".length) : raw
      return path.startsWith("/")
        ? Either.right(`unix://${path}`)
        : Either.left(`must be unix:///path/to/podman.sock or an absolute path, got ${JSON.stringify(raw)}`)
    },
    (v) => v
  ),
  oci_runtime: oneOf("runc", "crun", ""),
  rootless: boolField,
  bootstrap_image: imageRef,
  image_rules: field(parseImageRules, (rules) =>
    rules.length === 0 ? "" : "\n" + rules.map((r) => `${r.tag}${r.arch === null ? "" : `/${r.arch}`} = ${r.image}`).join("\n")
  ),
  pull_policy: oneOf("missing", "always", "never"),
  registry_auth_file: absolutePath(true),
  insecure_registries: field(
    (raw) => {
      const hosts = splitWords(raw)
      for (const h of hosts) {
        const hp = parseHostPort(h, false)
        if (Either.isLeft(hp)) return Either.left(`entry ${hp.left}`)
      }
      return Either.right(hosts)
    },
    (hosts) => hosts.join(" ")
  ),
  image_refresh_interval: countField,
  image_gc: boolField,
  container_memory: field(parseByteSize, formatByteSize),
  container_pids: countField,
  container_cpus: field(parseNonNegativeFloat, String),
  container_stop_timeout: countField,
  default_ulimits: field(parseUlimits, (ls) => ls.map((l) => `${l.name}=${l.soft}:${l.hard}`).join(" ")),
  cgroup_parent: anyText,
  build_user: field(
    (raw) => {
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/.test(raw)) {
        return Either.left(`must be a user name or uid, optionally :group or :gid, got ${JSON.stringify(raw)}`)
      }
      const user = raw.split(":")[0]
      return user === "root" || user === "0"
        ? Either.left(`must not be root: builds run unprivileged (DESIGN.md §5), got ${JSON.stringify(raw)}`)
        : Either.right(raw)
    },
    (v) => v
  ),
  build_userns: field((raw) => {
    const m = parseIdMap(raw)
    return typeof m === "string" ? Either.left(m) : Either.right(m)
  }, formatIdMap),
  task_disk_max: field(parseByteSize, formatByteSize),
  result_max_size: field(parseByteSize, formatByteSize),
  log_max_size: field(parseByteSize, formatByteSize),
  reaper_interval: countField,
  login_tls_max_version: tlsVersion,
  tls_max_version: tlsVersion,
  tls_min_version: tlsVersion,
  buildroot_cache_dir: absolutePath(false),
  buildroot_cache_max: countField,
  buildroot_cache_max_bytes: field(parseByteSize, formatByteSize),
  buildroot_registry: field(parseRegistryNamespace, (v) => v),
  status_listen: field(
    (raw) => (raw === "" ? Either.right(raw) : Either.map(parseHostPort(raw, true), () => raw)),
    (v) => v
  ),
  log_file: absolutePath(true),
  log_format: oneOf("kojid", "logfmt", "json"),
  task_timeout: countField,
  runroot_config: absolutePath(true),
  scm_network: oneOf("bridge", "host", "none"),
  scm_timeout: positiveCount,
  image_state_file: absolutePath(false),
  image_pull_timeout: positiveCount,
  batch_hub_calls: boolField,
  podman_storage: absolutePath(false)
}

const isAdjutantKey = (key: string): key is keyof AdjutantOptions =>
  Object.prototype.hasOwnProperty.call(ADJUTANT_FIELDS, key)

const applyAdjutant = <K extends keyof AdjutantOptions>(
  target: Mutable<AdjutantOptions>,
  key: K,
  raw: string
): Either.Either<void, string> => {
  const spec: AdjutantField<AdjutantOptions[K]> = ADJUTANT_FIELDS[key]
  return Either.map(spec.parse(raw), (value) => setOption(target, key, value))
}

const parseAdjutantSection = (doc: IniDocument, label: string): Either.Either<AdjutantOptions, ConfigError> => {
  const o: Mutable<AdjutantOptions> = { ...defaultAdjutantOptions }
  const section = doc.sections.get("adjutant")
  const lines = new Map<string, IniEntry>()
  // [DEFAULT] is kojid's and applies to [kojid] only: its keys are not adjutant options.
  for (const [key, entry] of section?.entries ?? []) {
    if (!isAdjutantKey(key)) {
      return Either.left(
        entryError("adjutant", key, entry, `unknown config option: ${key} in [adjutant] of ${where(entry.file, entry.line)}`)
      )
    }
    const applied = applyAdjutant(o, key, entry.value)
    if (Either.isLeft(applied)) return Either.left(optionError("adjutant", key, entry, applied.left))
    lines.set(key, entry)
  }
  const rank = (v: TlsVersion) => TLS_ORDER.indexOf(v)
  for (const key of ["tls_max_version", "login_tls_max_version"] as const) {
    if (rank(o[key]) < rank(o.tls_min_version)) {
      const entry = lines.get(key) ?? lines.get("tls_min_version")
      const reason = `(${o[key]}) is below tls_min_version (${o.tls_min_version})`
      return Either.left(
        entry === undefined
          ? new ConfigError({ file: label, section: "adjutant", key, message: `${key} ${reason} in ${label}` })
          : optionError("adjutant", key, entry, reason)
      )
    }
  }
  return Either.right(o)
}

// ---------------------------------------------------------------------------------------------
// Whole files

/** One file's text. */
export interface ConfigSource {
  readonly file: string
  readonly text: string
}

const runtimeFlagsOf = (flags: Partial<CommandLineFlags>): RuntimeFlags => ({
  fg: flags.fg ?? defaultRuntimeFlags.fg,
  force_lock: flags.force_lock ?? defaultRuntimeFlags.force_lock,
  verbose: flags.verbose ?? defaultRuntimeFlags.verbose,
  debug: flags.debug ?? defaultRuntimeFlags.debug,
  debug_task: flags.debug_task ?? defaultRuntimeFlags.debug_task,
  debug_xmlrpc: flags.debug_xmlrpc ?? defaultRuntimeFlags.debug_xmlrpc,
  debug_mock: flags.debug_mock ?? defaultRuntimeFlags.debug_mock,
  skip_main: flags.skip_main ?? defaultRuntimeFlags.skip_main
})

const ALLOWED_SECTIONS = new Set(["kojid", "adjutant"])

/**
 * Parses already-read config texts (several when the config path is a directory), in order.
 * `missing` says the config path did not exist (kojid then runs on defaults and flags).
 */
export const parseConfigSources = (
  sources: ReadonlyArray<ConfigSource>,
  label: string,
  flags: Partial<CommandLineFlags> = {},
  env: Partial<ConfigEnv> = {},
  missing = false
): Either.Either<Config, ConfigError> => {
  const fullEnv: ConfigEnv = { ...defaultEnv, ...env }
  const doc = emptyIniDocument()
  for (const source of sources) {
    const read = readIniInto(doc, source.text, source.file)
    if (Either.isLeft(read)) {
      const p = read.left
      return Either.left(
        new ConfigError({
          file: p.file,
          line: p.line,
          message: p.message,
          ...(p.section === undefined ? {} : { section: p.section }),
          ...(p.key === undefined ? {} : { key: p.key })
        })
      )
    }
  }
  for (const section of doc.sections.values()) {
    if (!ALLOWED_SECTIONS.has(section.name)) {
      return Either.left(
        new ConfigError({
          file: section.file,
          section: section.name,
          line: section.line,
          message:
            `invalid section found in config file: [${section.name}] in ${where(section.file, section.line)} ` +
            `(only [kojid] and [adjutant] are allowed)`
        })
      )
    }
  }
  return Either.gen(function* () {
    const kojid = yield* parseKojidSection(doc, flags, label, missing, fullEnv)
    const adjutant = yield* parseAdjutantSection(doc, label)
    return { kojid, adjutant, flags: runtimeFlagsOf(flags), file: label }
  })
}

/** Parses one kojid.conf text; pure apart from kojid's existence check of the default cert/serverca (`env`). */
export const parseConfig = (
  text: string,
  file: string,
  flags: Partial<CommandLineFlags> = {},
  env: Partial<ConfigEnv> = {}
): Either.Either<Config, ConfigError> => parseConfigSources([{ file, text }], file, flags, env)

const readSources = (path: string): Either.Either<{ sources: ReadonlyArray<ConfigSource>; missing: boolean }, ConfigError> => {
  const cannot = (cause: unknown) =>
    new ConfigError({
      file: path,
      message: `cannot read config ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
    })
  try {
    if (!existsSync(path)) return Either.right({ sources: [], missing: true })
    if (statSync(path).isDirectory()) {
      const files = readdirSync(path)
        .filter((name) => name.endsWith(".conf"))
        .sort()
        .map((name) => join(path, name))
        .filter((file) => statSync(file).isFile())
      return Either.right({ sources: files.map((file) => ({ file, text: readFileSync(file, "utf8") })), missing: false })
    }
    return Either.right({ sources: [{ file: path, text: readFileSync(path, "utf8") }], missing: false })
  } catch (cause) {
    return Either.left(cannot(cause))
  }
}

/** Reads and parses the config at `file` (a file, or a directory of `*.conf` as kojid allows). */
export const loadConfig = (
  file: string,
  flags: Partial<CommandLineFlags> = {},
  env: Partial<ConfigEnv> = {}
): Effect.Effect<Config, ConfigError> =>
  Effect.suspend(() =>
    Either.flatMap(readSources(file), ({ sources, missing }) => parseConfigSources(sources, file, flags, env, missing))
  ).pipe(Effect.withSpan("AdjutantConfig.load", { attributes: { file } }))

// ---------------------------------------------------------------------------------------------
// Derived values

/** The log level kojid would use: `--debug` > `--verbose` > `log_level` > WARNING. */
export const effectiveLogLevel = (config: Config): LogLevel.LogLevel => {
  if (config.flags.debug) return LogLevel.Debug
  if (config.flags.verbose) return LogLevel.Info
  const named = config.kojid.log_level === null ? undefined : PYTHON_LOG_LEVELS[config.kojid.log_level]
  return named ?? LogLevel.Warning
}

/** The podman socket as a file-system path. */
export const podmanSocketPath = (adjutant: AdjutantOptions): string =>
  adjutant.podman_socket.startsWith("unix://") ? adjutant.podman_socket.slice("unix://".length) : adjutant.podman_socket

/**
 * Container ulimits: `default_ulimits`, each overridden by kojid's `RLIMIT_*` of the same
 * resource. An RLIMIT with only a soft value keeps the default's hard limit (kojid keeps the
 * current hard limit), raised to the soft value when that is higher.
 */
export const effectiveUlimits = (config: Config): ReadonlyArray<Ulimit> => {
  const out = new Map<string, Ulimit>(config.adjutant.default_ulimits.map((u) => [u.name, u]))
  for (const r of config.kojid.rlimits) {
    const name = r.resource.slice("RLIMIT_".length).toLowerCase()
    const base = out.get(name)?.hard ?? r.soft
    const hard = r.hard ?? (limitWithin(r.soft, base) ? base : r.soft)
    out.set(name, { name, soft: r.soft, hard })
  }
  return [...out.values()]
}

// ---------------------------------------------------------------------------------------------
// Rendering

const REDACTED = "********"
const SECRET_KEY = /(^|_)(pass|passwd|password|secret|token|key)$/i

const redactUrl = (value: string): string =>
  value.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[^/\s@]*@/gi, `$1${REDACTED}@`)

const renderLine = (key: string, value: string | null): string => {
  if (value === null) return `;${key} =`
  const shown = SECRET_KEY.test(key) ? REDACTED : redactUrl(value)
  // Continuation lines must be indented to stay part of the value (configparser).
  return `${key} = ${shown.split("\n").join("\n    ")}`.replace(/ +$/gm, "")
}

const renderKojidValue = (value: string | number | boolean | null): string | null => {
  if (value === null) return null
  if (typeof value === "boolean") return value ? "True" : "False"
  return String(value)
}

/**
 * Every effective value as a kojid.conf (it parses back to the same config), secrets
 * (`password`, `smtp_pass`, any option whose name ends in pass, password, secret, token or key,
 * and passwords inside URLs)
 * shown as "********". Unset options appear commented out.
 */
export const renderEffectiveConfig = (config: Config): string => {
  const out: Array<string> = [
    `# effective configuration of koji-adjutant, read from ${config.file}`,
    `# command line: ${Object.entries(config.flags).map(([k, v]) => `${k}=${String(v)}`).join(" ")}`,
    "[kojid]"
  ]
  for (const key of Object.keys(KOJID_KINDS).filter(isScalarKey).sort()) {
    if (key === "topurl") {
      out.push(renderLine("topurl", config.kojid.topurls.join(" ")))
      continue
    }
    out.push(renderLine(key, renderKojidValue(config.kojid[key])))
  }
  out.push(renderLine("plugin", config.kojid.plugin.join(" ")))
  for (const r of config.kojid.rlimits) {
    out.push(renderLine(r.resource, r.hard === null ? String(r.soft) : `${r.soft} ${r.hard}`))
  }
  out.push("", "[adjutant]")
  for (const key of (Object.keys(ADJUTANT_FIELDS).filter(isAdjutantKey)).sort()) {
    out.push(renderAdjutant(key, config.adjutant))
  }
  return out.join("\n") + "\n"
}

const renderAdjutant = <K extends keyof AdjutantOptions>(key: K, options: AdjutantOptions): string => {
  const spec: AdjutantField<AdjutantOptions[K]> = ADJUTANT_FIELDS[key]
  return renderLine(key, spec.render(options[key]))
}

// ---------------------------------------------------------------------------------------------
// The service

/** The effective configuration, read once at start (kojid.conf `[kojid]` + `[adjutant]`, flags applied). */
export class AdjutantConfig extends Context.Tag("AdjutantConfig")<AdjutantConfig, Config>() {
  /** Reads the config path named by `flags.config` (default /etc/kojid/kojid.conf). */
  static layer(flags: Partial<CommandLineFlags> = {}): Layer.Layer<AdjutantConfig, ConfigError> {
    return AdjutantConfig.layerFile(flags.config ?? DEFAULT_CONFIG_FILE, flags)
  }

  /** Reads `file` once; command-line `flags` override it as in kojid. */
  static layerFile(file: string, flags: Partial<CommandLineFlags> = {}, env: Partial<ConfigEnv> = {}): Layer.Layer<AdjutantConfig, ConfigError> {
    return Layer.effect(AdjutantConfig, loadConfig(file, flags, env))
  }

  /**
   * Defaults plus overrides, no file. `server` and `topurl` (required, no default) are
   * http://localhost/kojihub and http://localhost/kojifiles unless overridden; `topurls`
   * follows `topurl` unless given.
   */
  static layerTest(partial: { kojid?: Partial<KojidOptions>; adjutant?: Partial<AdjutantOptions>; flags?: Partial<RuntimeFlags> } = {}): Layer.Layer<AdjutantConfig> {
    const topurl = partial.kojid?.topurl ?? "http://localhost/kojifiles"
    const kojid: KojidOptions = {
      ...defaultKojidOptions,
      server: "http://localhost/kojihub",
      topurl,
      topurls: splitWords(topurl),
      ...partial.kojid
    }
    return Layer.succeed(AdjutantConfig, {
      kojid,
      adjutant: { ...defaultAdjutantOptions, ...partial.adjutant },
      flags: { ...defaultRuntimeFlags, ...partial.flags },
      file: "(test)"
    })
  }
}
