/**
 * What kojid writes into a mock config (`koji.genMockConfig`, `BuildRoot._writeMockConfig`,
 * koji-protocol.md §5.3), made into what a podman buildroot needs: the dnf.conf of the fill, the
 * rpm macros file put into the root, the build environment, and the text uploaded as
 * `mock_config.log`. All pure.
 */
import { repoRelDir } from "../koji/paths.js"
import { createHash } from "node:crypto"
import type { XmlRpcValue } from "../hub/xmlrpc.js"

/** The kojid options a buildroot reads (names as in kojid.conf). */
export interface BuildrootOptions {
  readonly topdir: string
  readonly topurls: ReadonlyArray<string>
  readonly packager: string
  readonly vendor: string
  readonly distribution: string
  readonly mockhost: string
  readonly yum_proxy: string | null
  readonly rpmbuild_timeout: number
  readonly mockdir: string
}

/** One buildroot's identity and inputs. */
export interface BuildrootInputs {
  readonly id: number
  readonly tagName: string
  readonly repoId: number
  /** canonArch of the task arch: the repo's arch (`br_arch`). */
  readonly brArch: string
  /** The arch rpmbuild targets (`target_arch`: armhfp → armv7hl). */
  readonly targetArch: string
  /** `build` for buildArch, `srpm-build` for SRPM tasks. */
  readonly installGroup: string
  readonly tagExtra: Readonly<Record<string, XmlRpcValue>>
  /** Network during the build (buildSRPMFromSCM's setup_dns). */
  readonly network: boolean
}

/** The arches a build for `arch` may leave binary packages of: the task arch, rpmbuild's target arch, noarch. */
export const resultArches = (arch: string): ReadonlySet<string> => new Set([arch, targetArchOf(arch), "noarch"])

/** `<tag>-<brid>-<repoid>`: kojid's buildroot name. */
export const buildrootName = (tagName: string, id: number, repoId: number): string => `${tagName}-${id}-${repoId}`

/** The repo URLs of the buildroot: one per `topurl`, else `file://<topdir>/repos/…` (§5.3). */
export const repoUrls = (options: Pick<BuildrootOptions, "topurls" | "topdir">, tagName: string, repoId: number, brArch: string): ReadonlyArray<string> => {
  const rel = `${repoRelDir(tagName, repoId)}/${brArch}`
  if (options.topurls.length > 0) return options.topurls.map((u) => `${u.replace(/\/+$/, "")}/${rel}`)
  return [`file://${options.topdir.replace(/\/+$/, "")}/${rel}`]
}

/** `armhfp` is not an autoconf arch: mock targets armv7hl for it (kojid BuildRoot._new). */
export const targetArchOf = (arch: string): string => (arch === "armhfp" ? "armv7hl" : arch)

/** Python's `str()` of a tag extra value. */
export const pyStr = (v: XmlRpcValue | undefined): string => {
  if (v === true) return "True"
  if (v === false) return "False"
  if (v === null || v === undefined) return "None"
  if (typeof v === "string") return v
  if (typeof v === "number" || typeof v === "bigint") return String(v)
  return JSON.stringify(v)
}

/** The rpm macros in kojid's order: defaults, tag `rpm.macro.*` overrides, then the fixed ones (§5.3). */
export const rpmMacros = (options: BuildrootOptions, inputs: Pick<BuildrootInputs, "targetArch" | "tagExtra">): ReadonlyArray<readonly [string, string]> => {
  const m = new Map<string, string>([
    ["%_rpmfilename", "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm"],
    ["%vendor", options.vendor],
    ["%packager", options.packager],
    ["%distribution", options.distribution]
  ])
  for (const [k, v] of Object.entries(inputs.tagExtra)) {
    if (k.startsWith("rpm.macro.")) m.set(`%${k.slice(10)}`, pyStr(v))
  }
  m.set("%_topdir", "/builddir/build")
  m.set("%_host_cpu", inputs.targetArch)
  m.set("%_host", `${inputs.targetArch}-${options.mockhost}`)
  return [...m.entries()]
}

/** Environment variables from tag extra `rpm.env.*`. */
export const rpmEnv = (tagExtra: Readonly<Record<string, XmlRpcValue>>): Readonly<Record<string, string>> => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(tagExtra)) if (k.startsWith("rpm.env.")) env[k.slice(8)] = pyStr(v)
  return env
}

/**
 * The macros file put into the root as `/etc/rpm/macros.koji`. mock writes `%%` through Python's
 * `%` formatting, so the file holds `%{NAME}` where the config shows `%%{NAME}`.
 */
export const macrosFile = (macros: ReadonlyArray<readonly [string, string]>): string =>
  ["# written by koji-adjutant as kojid writes them for mock (koji-protocol.md §5.3)",
    ...macros.map(([k, v]) => `${k} ${v.replace(/%%/g, "%")}`), ""].join("\n")

/** kojid's dnf configuration (genMockConfig's `yum.conf`), with the repo URLs given. */
export const dnfConf = (options: Pick<BuildrootOptions, "yum_proxy">, urls: ReadonlyArray<string>, tagExtra: Readonly<Record<string, XmlRpcValue>>): string => {
  const parts = ["[main]\n"]
  if (options.yum_proxy !== null && options.yum_proxy !== "") parts.push(`proxy=${options.yum_proxy}\n`)
  parts.push(
    "cachedir=/var/cache/yum\ndebuglevel=1\nlogfile=/var/log/yum.log\nreposdir=/dev/null\nretries=20\nobsoletes=1\n" +
      "gpgcheck=0\nassumeyes=1\nkeepcache=1\ninstall_weak_deps=0\nstrict=1\n\n# repos\n\n[build]\nname=build\n"
  )
  parts.push(`baseurl=${urls[0] ?? ""}\n`)
  for (const u of urls.slice(1)) parts.push(`        ${u}\n`)
  const hotfixes = tagExtra["mock.yum.module_hotfixes"]
  if (hotfixes !== undefined && hotfixes !== null && hotfixes !== false && hotfixes !== 0 && hotfixes !== "") parts.push("module_hotfixes=1\n")
  const best = tagExtra["mock.yum.best"]
  if (best !== undefined && best !== null) parts.push(`best=${Number(best === true ? 1 : best === false ? 0 : best) | 0}\n`)
  return parts.join("")
}

/** Python's repr of a str, as genMockConfig writes config values. */
const pyRepr = (s: string): string => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`

/** What the build container gets, for the config text. */
export interface ContainerDescription {
  readonly bootstrapImage: string
  readonly bootstrapImageId: string
  readonly buildUser: string
  readonly limits: string
}

/**
 * Our `mock_config.log`: the header lines kojid writes (the buildroot id and name first, as the
 * daemon's cleanup and admins read them), then the same settings in mock's `config_opts` form, then
 * what replaces mock here: the bootstrap image, dnf.conf, macros file and build container.
 */
export const mockConfigText = (
  options: BuildrootOptions,
  inputs: BuildrootInputs,
  urls: ReadonlyArray<string>,
  container: ContainerDescription
): string => {
  const name = buildrootName(inputs.tagName, inputs.id, inputs.repoId)
  const macros = rpmMacros(options, inputs)
  const conf = dnfConf(options, urls, inputs.tagExtra)
  const opts: Array<readonly [string, string]> = [
    ["basedir", pyRepr(options.mockdir)],
    ["chroot_setup_cmd", pyRepr(`install @${inputs.installGroup}`)],
    ["chroothome", pyRepr("/builddir")],
    ["dnf_warning", "False"],
    ["root", pyRepr(name)],
    ["rpmbuild_networking", inputs.network ? "True" : "False"],
    ["rpmbuild_timeout", String(options.rpmbuild_timeout)],
    ["target_arch", pyRepr(inputs.targetArch)],
    ["use_bootstrap_image", "False"],
    ["use_host_resolv", inputs.network ? "True" : "False"],
    ["yum.conf", pyRepr(conf)]
  ]
  const env = rpmEnv(inputs.tagExtra)
  const lines = [
    "# Auto-generated by the Koji build system",
    "",
    `# Koji buildroot id: ${inputs.id}`,
    `# Koji buildroot name: ${name}`,
    `# Koji repo id: ${inputs.repoId}`,
    `# Koji tag: ${inputs.tagName}`,
    "",
    ...opts.map(([k, v]) => `config_opts['${k}'] = ${v}`),
    "",
    "config_opts['plugin_conf']['ccache_enable'] = False",
    "config_opts['plugin_conf']['root_cache_enable'] = False",
    "config_opts['plugin_conf']['yum_cache_enable'] = False",
    "",
    ...[...macros].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `config_opts['macros'][${pyRepr(k)}] = ${pyRepr(v)}`),
    ...Object.entries(env).map(([k, v]) => `config_opts['environment'][${pyRepr(k)}] = ${pyRepr(v)}`),
    "",
    "# koji-adjutant: podman replaces mock",
    `# bootstrap image: ${container.bootstrapImage} (${container.bootstrapImageId})`,
    `# fill: dnf -c /koji/dnf.conf --installroot=<root> install @${inputs.installGroup}`,
    `# build container: root = the buildroot (overlay), user ${container.buildUser}, network ${inputs.network ? "on" : "none"}, ` +
      `capabilities none, no-new-privileges, read-only root with tmpfs /builddir /tmp /var/tmp, ${container.limits}, ` +
      `timeout ${options.rpmbuild_timeout} s`,
    "# /etc/rpm/macros.koji:",
    ...macrosFile(macros).trimEnd().split("\n").map((l) => `#   ${l}`),
    ""
  ]
  return lines.join("\n")
}

/** The cache key of a populated root: repo, arch, group, bootstrap image id, dnf.conf and macros. */
export const cacheKey = (parts: {
  readonly repoId: number
  readonly brArch: string
  readonly installGroup: string
  readonly imageId: string
  readonly dnfConf: string
  readonly macros: string
}): string =>
  createHash("sha256")
    .update(JSON.stringify([parts.repoId, parts.brArch, parts.installGroup, parts.imageId, parts.dnfConf, parts.macros]))
    .digest("hex")
    .slice(0, 24)
