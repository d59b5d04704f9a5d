/**
 * The multilib selection of kojid's `createDistRepoTask.do_multilib` (koji-protocol.md §7.10),
 * without python-multilib: its `DevelMultilibMethod` (which builds on `RuntimeMultilibMethod`
 * and the base `MultilibMethod`) written over rpm header data, the `multilib.conf` reader
 * (Python configparser's rules for the parts the method reads), and the texts the two container
 * steps run: the `rpm -qp --queryformat` that reads the headers and the dnf depsolve script.
 *
 * python-multilib quirks kept on purpose, because koji's result depends on them:
 * - `white`/`black` are the option's raw string, and a name is listed when it is a *substring*
 *   of it (`po.name in self.runtime_blacklist`): "tomcat" is black when "tomcat-native" is.
 * - the file rules look at file entries (yum's `returnFileEntries()`: neither directories nor
 *   %ghost files), splitting each at its last "/".
 */
import { Either, Schema } from "effect"
import * as path from "node:path"
import { fnmatch } from "../koji/fnmatch.js"

/** The lists python-multilib's devel method reads from `multilib.conf` ([runtime] and [devel] white/black). */
export interface MultilibConfig {
  readonly runtimeWhite: string
  readonly runtimeBlack: string
  readonly develWhite: string
  readonly develBlack: string
}

/** What the selection rules look at in one package header. */
export interface MultilibPackage {
  readonly name: string
  readonly arch: string
  /** File entries: neither directories nor %ghost files. */
  readonly files: ReadonlyArray<string>
  /** PROVIDENAME. */
  readonly provides: ReadonlyArray<string>
}

/** A `multilib.conf` that cannot be used; `reason` is what Python's configparser would complain. */
export class MultilibConfigError extends Schema.TaggedError<MultilibConfigError>()("MultilibConfigError", {
  reason: Schema.String
}) {}

/** createDistRepoTask.archmap: the 32-bit arch whose dist repo a 64-bit repo takes multilib packages from. */
export const MULTILIB_ARCHMAP: Readonly<Record<string, string>> = { s390x: "s390", ppc64: "ppc", x86_64: "i686" }

// ---------------------------------------------------------------------------------------------
// multilib.conf (configparser.ConfigParser() defaults: "=" or ":" delimiters, "#"/";" comment
// lines, indented continuation lines, lower-cased option names, strict, basic interpolation)

type Sections = Map<string, Map<string, Array<string>>>

const parseIni = (text: string): Sections => {
  const sections: Sections = new Map([["DEFAULT", new Map()]])
  let current: Map<string, Array<string>> | undefined
  let option: Array<string> | undefined
  let optionIndent = 0
  const lines = text.split(/\r?\n/)
  lines.forEach((raw, i) => {
    const lineno = i + 1
    const stripped = raw.trim()
    if (stripped.startsWith("#") || stripped.startsWith(";")) return
    if (stripped === "") {
      if (option !== undefined) option.push("")
      return
    }
    const indent = raw.length - raw.trimStart().length
    if (option !== undefined && indent > optionIndent) {
      option.push(stripped)
      return
    }
    const header = /^\[([^\]]+)\]/.exec(stripped)
    if (indent === 0 && header !== null) {
      const name = header[1]!
      if (name !== "DEFAULT" && sections.has(name)) throw new MultilibConfigError({ reason: `section '${name}' already exists (line ${lineno})` })
      current = sections.get(name) ?? new Map()
      sections.set(name, current)
      option = undefined
      return
    }
    if (current === undefined) throw new MultilibConfigError({ reason: `File contains no section headers (line ${lineno}: '${raw}')` })
    const m = /^(.*?)\s*[=:]\s*(.*)$/.exec(stripped)
    if (m === null || m[1] === "") throw new MultilibConfigError({ reason: `Source contains parsing errors: [line ${lineno}]: '${raw}'` })
    const key = m[1]!.toLowerCase()
    if (current.has(key)) throw new MultilibConfigError({ reason: `option '${key}' already exists (line ${lineno})` })
    option = [m[2]!]
    optionIndent = indent
    current.set(key, option)
  })
  return sections
}

const interpolate = (value: string, section: string, lookup: (key: string) => string | undefined, depth = 0): string => {
  if (depth > 10) throw new MultilibConfigError({ reason: `Recursion limit exceeded in value substitution: section [${section}]` })
  let out = ""
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!
    if (c !== "%") {
      out += c
      continue
    }
    const next = value[i + 1]
    if (next === "%") {
      out += "%"
      i++
      continue
    }
    const ref = /^%\(([^)]+)\)s/.exec(value.slice(i))
    if (ref === null) throw new MultilibConfigError({ reason: `'%' must be followed by '%' or '(', found: '${value.slice(i)}'` })
    const sub = lookup(ref[1]!.toLowerCase())
    if (sub === undefined) throw new MultilibConfigError({ reason: `Bad value substitution: section [${section}], option ${ref[1]}` })
    out += interpolate(sub, section, lookup, depth + 1)
    i += ref[0].length - 1
  }
  return out
}

const getOption = (sections: Sections, section: string, option: string): string => {
  const sec = sections.get(section)
  if (sec === undefined || section === "DEFAULT") throw new MultilibConfigError({ reason: `No section: '${section}'` })
  const raw = (key: string): string | undefined => {
    const lines = sec.get(key) ?? sections.get("DEFAULT")!.get(key)
    if (lines === undefined) return undefined
    const kept = [...lines]
    while (kept.length > 0 && kept[kept.length - 1] === "") kept.pop()
    return kept.join("\n")
  }
  const value = raw(option)
  if (value === undefined) throw new MultilibConfigError({ reason: `No option '${option}' in section: '${section}'` })
  return interpolate(value, section, raw)
}

/** Reads the [runtime] and [devel] white/black lists, or fails where configparser would. */
export const parseMultilibConfig = (text: string): Either.Either<MultilibConfig, MultilibConfigError> =>
  Either.try({
    try: () => {
      const sections = parseIni(text)
      return {
        runtimeWhite: getOption(sections, "runtime", "white"),
        runtimeBlack: getOption(sections, "runtime", "black"),
        develWhite: getOption(sections, "devel", "white"),
        develBlack: getOption(sections, "devel", "black")
      }
    },
    catch: (e) => (e instanceof MultilibConfigError ? e : new MultilibConfigError({ reason: String(e) }))
  })

// ---------------------------------------------------------------------------------------------
// Selection rules

const PREFER_64 = new Set(["gdb", "frysk", "systemtap", "systemtap-runtime", "ltrace", "strace"])
const ROOTLIBDIRS = new Set(["/lib", "/lib64"])
const USRLIBDIRS = ["/usr/lib", "/usr/lib64"]
const LIBDIRS = new Set([...ROOTLIBDIRS, ...USRLIBDIRS])
const OPROFILEDIRS = new Set(["/usr/lib/oprofile", "/usr/lib64/oprofile"])
const WINEDIRS = new Set(["/usr/lib/wine", "/usr/lib64/wine"])
const SANEDIRS = new Set(["/usr/lib/sane", "/usr/lib64/sane"])
const BY_DIR = new Set([
  ...["/usr/lib", "/usr/lib64"].flatMap((d) =>
    ["alsa-lib", "dri", "gtk-2.0/modules", "gtk-2.0/immodules", "krb5/plugins", "sasl2", "vdpau"].map((p) => `${d}/${p}`)),
  "/lib/security", "/lib64/security",
  "/etc/lsb-release.d"
])
const GTK2_DIRS = ["engines", "modules", "immodules", "loaders", "printbackends", "filesystems"]
const USR_LIB_PATTERNS = ["/usr/lib*/qt*/plugins/*", "/usr/lib*/kde*/plugins/*", "/usr/lib*/qt5/qml/*", "/usr/lib*/gdk-pixbuf-2.0/*/loaders", "/usr/lib*/xine/plugins/*"]

/** python-multilib `MultilibMethod.select`: a 64-bit arch and a PREFER_64 name or a kernel. */
export const baseSelect = (po: MultilibPackage): boolean => {
  if (!po.arch.includes("64")) return false
  if (PREFER_64.has(po.name)) return true
  return po.name.startsWith("kernel") && po.provides.some((p) => p === "kernel" || p === "kernel-devel")
}

const fileSelects = (file: string): boolean => {
  const cut = file.lastIndexOf("/")
  const dirname = file.slice(0, cut)
  const filename = file.slice(cut + 1)
  if (LIBDIRS.has(dirname) && fnmatch(filename, "*.so.*")) return true
  if (BY_DIR.has(dirname)) return true
  if (dirname === "/etc/ld.so.conf.d" && filename.endsWith(".conf")) return true
  if (ROOTLIBDIRS.has(dirname) && (filename.startsWith("libnss_") || filename.startsWith("libdb-"))) return true
  if (!USRLIBDIRS.some((d) => dirname.startsWith(d))) return false
  if (dirname.startsWith("/usr/lib/gtk-2.0") || dirname.startsWith("/usr/lib64/gtk-2.0")) {
    return GTK2_DIRS.some((d) => fnmatch(dirname, `/usr/lib*/gtk-2.0/*/${d}`))
  }
  if (dirname.startsWith("/usr/lib/gstreamer-") || dirname.startsWith("/usr/lib64/gstreamer-")) return true
  if (USR_LIB_PATTERNS.some((p) => fnmatch(dirname, p))) return true
  if (OPROFILEDIRS.has(dirname) && fnmatch(filename, "*.so.*")) return true
  if (WINEDIRS.has(dirname) && filename.endsWith(".so")) return true
  return SANEDIRS.has(dirname) && filename.startsWith("libsane-")
}

/** python-multilib `RuntimeMultilibMethod.select`: the lists, the base method, then the file rules. */
export const runtimeSelect = (conf: MultilibConfig, po: MultilibPackage): boolean => {
  if (conf.runtimeBlack.includes(po.name)) return false
  if (conf.runtimeWhite.includes(po.name)) return true
  if (baseSelect(po)) return true
  if (po.name.startsWith("kernel") && po.provides.includes("kernel")) return false
  return po.files.some(fileSelects)
}

/** python-multilib `DevelMultilibMethod.select` (what kojid uses): the runtime rules plus -devel/-static packages. */
export const develSelect = (conf: MultilibConfig, po: MultilibPackage): boolean => {
  if (conf.develBlack.includes(po.name)) return false
  if (conf.develWhite.includes(po.name)) return true
  if (runtimeSelect(conf, po)) return true
  if (po.name.startsWith("ghc-")) return false
  if (po.name.startsWith("kernel")) {
    for (const p of po.provides) {
      if (p === "kernel-devel") return false
      if (p.endsWith("-devel") || p.endsWith("-static")) return true
    }
  }
  return po.name.endsWith("-devel") || po.name.endsWith("-static")
}

// ---------------------------------------------------------------------------------------------
// Container steps

/** `rpm -qp --queryformat` giving a `MultilibPackage` per file: one `@` line, then `F` (file entries) and `P` (provides) lines. */
export const HEADER_QUERYFORMAT = "@\t%{NAME}\t%{ARCH}\n[F\t%{FILEMODES:perms}\t%{FILEFLAGS:fflags}\t%{FILENAMES}\n][P\t%{PROVIDENAME}\n]"

/** Parses `HEADER_QUERYFORMAT` output, one package per queried file, in order. */
export const parseHeaderQuery = (text: string): Array<MultilibPackage> => {
  const out: Array<{ name: string; arch: string; files: Array<string>; provides: Array<string> }> = []
  for (const line of text.split("\n")) {
    if (line === "") continue
    const f = line.split("\t")
    const cur = out[out.length - 1]
    if (f[0] === "@") out.push({ name: f[1] ?? "", arch: f[2] ?? "", files: [], provides: [] })
    else if (cur === undefined) continue
    else if (f[0] === "F") {
      const perms = f[1] ?? ""
      const flags = f[2] ?? ""
      // yum's "file" entries: not directories, not %ghost.
      if (!perms.startsWith("d") && !flags.includes("g")) cur.files.push(f.slice(3).join("\t"))
    } else if (f[0] === "P") cur.provides.push(f.slice(1).join("\t"))
  }
  return out
}

/** The dnf config kojid writes (and uploads) as `dnf.conf-koji-<arch>`. */
export const dnfConfigText = (dnfdir: string, taskId: number, mldir: string): string =>
  `
[main]
debuglevel=2
#pkgpolicy=newest
#exactarch=1
gpgcheck=0
#reposdir=/dev/null
#cachedir=/dnfcache
installroot=${dnfdir}
#logfile=/dnf.log

[koji-${taskId}]
name=koji multilib task
baseurl=file://${mldir}
enabled=1

`

/**
 * Run in the bootstrap image: `python3 -c DNF_DEPSOLVE_SCRIPT <dnf.conf> <arch> <nvra list> <out.json>`.
 * kojid's steps 3–4: the config, the transaction arch, every listed package installed by exact
 * N-V-R.A, `resolve()`; writes the install set (location, arch) as JSON, or `{"error": ...}` and
 * exit 3 when dnf cannot mark or resolve.
 */
export const DNF_DEPSOLVE_SCRIPT = `
import json, sys
import dnf, dnf.conf, dnf.exceptions, hawkey
conf_path, arch, listfile, outfile = sys.argv[1:5]
conf = dnf.conf.Conf()
conf.reposdir = []
conf.read(conf_path)
conf.cachedir = conf.installroot + "/dnfcache"
base = dnf.Base(conf)
base.conf.arch = arch
base.read_all_repos()
base.fill_sack(load_system_repo=False, load_available_repos=True)
try:
    with open(listfile) as f:
        for nvra in [l.strip() for l in f if l.strip()]:
            base.install(nvra, forms=[hawkey.FORM_NEVRA])
    base.resolve()
except (dnf.exceptions.DepsolveError, dnf.exceptions.MarkingError) as e:
    with open(outfile, "w") as f:
        json.dump({"error": "%s.%s: %s" % (type(e).__module__, type(e).__name__, e)}, f)
    sys.exit(3)
pkgs = [{"location": p.location, "arch": p.arch} for p in base.transaction.install_set]
with open(outfile, "w") as f:
    json.dump(pkgs, f)
`

/** The basename kojid gives a package of the install set (`os.path.basename(po.localPkg())`). */
export const installedBasename = (location: string): string => path.posix.basename(location)
