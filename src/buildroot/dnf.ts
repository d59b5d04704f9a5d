/**
 * dnf in the bootstrap image, the one way packages get into a root (kojid: `mock --init`,
 * `mock --install`, the BuildRequires rounds): the fill of a cached root, a round's BuildRequires
 * (`dnf builddep`), and runroot's extra packages. Every dnf container runs the same fixed script
 * with dnf's argv as arguments — nothing a package or a build names is ever part of a shell
 * text — in the task's user namespace when there is one, with the capabilities dnf needs to
 * install files and nothing else, no network (the repo comes in as a read-only mount or through
 * the daemon's proxy socket, repoProxy.ts) unless the repo is remote, and only the files it
 * writes bind-mounted writable: the root, root.log and dnf's logs, the rpmdb listing.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import type { ContainerMount, ContainerSpec, Containers } from "../containers/Containers.js"
import type { IdMap } from "../containers/idmap.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { type BuildrootOptions, dnfConf } from "./config.js"
import { BuildrootSetupError } from "./errors.js"
import { DNF_LOGS, type Layout } from "./layout.js"
import { type InstalledRpm, parseRpmQa, RPM_QA_FORMAT } from "./packageList.js"
import { PROXY_SOCKET_IN_CONTAINER, PROXY_URL, repoAccess, serveRepoProxy } from "./repoProxy.js"

/**
 * What dnf needs to install packages into a root it owns: chroot for scriptlets, file owners and
 * modes (setuid bits included), file capabilities, and writing where a package's own modes
 * would stop root. No MKNOD (a user namespace cannot use it anyway), no network capabilities.
 */
export const DNF_CAPS = ["SYS_CHROOT", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP"]

/**
 * The script of every dnf container, fixed text: dnf's argv comes in as "$@". Output goes to
 * root.log; dnf's own logs leave the root (a cached root must not carry them); the root's rpmdb
 * is listed for the hub (§5.2). A fill (KOJI_FINISH) also finishes the root from inside the
 * container — rpm macros file, the build container's mount points, no dnf cache — so the daemon
 * never writes through paths a package's symlinks could redirect.
 */
const DNF_SCRIPT = `exec >>/logs/root.log 2>&1 </dev/null
trap 'for f in ${DNF_LOGS.join(" ")}; do if [ -f "/buildroot/var/log/$f" ] && [ ! -L "/buildroot/var/log/$f" ]; then cat "/buildroot/var/log/$f" >>"/logs/$f"; fi; rm -f "/buildroot/var/log/$f"; done' EXIT
"$@" || exit $?
if [ -n "\${KOJI_FINISH:-}" ]; then
  mkdir -p /buildroot/etc/rpm
  cat /koji/macros.koji >/buildroot/etc/rpm/macros.koji
  for d in builddir result srpm logs tmp var/tmp; do mkdir -p "/buildroot/$d"; done
  chmod 1777 /buildroot/tmp /buildroot/var/tmp
  rm -rf /buildroot/var/cache/yum
fi
rpm --root /buildroot -qa --qf "$KOJI_QA_FORMAT" >/meta/installed.tsv
`

/** Largest rpmdb listing read back (a root of 100,000 packages fits). */
const MAX_LISTING = 32 * 1024 * 1024

/** How the dnf containers of one buildroot run. */
export interface Dnf {
  /** `dnf -c /koji/dnf.conf --installroot=/buildroot [--releasever=…]`. */
  readonly argv: ReadonlyArray<string>
  /** The container spec of a dnf run of `args` into `root`, listing into `listing`; `finish` for a fill. */
  readonly spec: (root: string, listing: string, args: ReadonlyArray<string>, extra?: ReadonlyArray<ContainerMount>, finish?: boolean) => ContainerSpec
}

/** The container side of dnf for a buildroot: repo access (mounts, proxy), the config file, the spec. */
export const makeDnf = (input: {
  readonly kojid: Pick<BuildrootOptions, "yum_proxy">
  readonly urls: ReadonlyArray<string>
  readonly tagExtra: Readonly<Record<string, XmlRpcValue>>
  readonly layout: Layout
  readonly image: string
  readonly idmap: IdMap | null
  readonly taskId: number
  readonly buildrootId: number
}) =>
  Effect.gen(function*() {
    const { layout } = input
    const access = repoAccess(input.urls, input.kojid.yum_proxy)
    if (typeof access === "string") return yield* new BuildrootSetupError({ message: `cannot reach the buildroot's repo: ${access}` })
    const local = containerRepos(input.urls)
    const proxySocket = path.join(layout.base, "proxy.sock")
    if (access._tag === "Proxy") yield* serveRepoProxy(proxySocket, access.targets)
    const confFile = path.join(layout.meta, "dnf-container.conf")
    const conf = dnfConf({ yum_proxy: access._tag === "Proxy" ? PROXY_URL : input.kojid.yum_proxy }, local.urls, input.tagExtra)
    yield* Effect.tryPromise({
      try: () => fsp.writeFile(confFile, conf, { mode: 0o644 }),
      catch: (e) => new BuildrootSetupError({ message: `cannot write ${confFile}: ${String(e)}` })
    })
    const releasever = input.tagExtra["mock.releasever"]
    const argv = [
      "dnf", "-c", "/koji/dnf.conf", "--installroot=/buildroot",
      ...(releasever === undefined || releasever === null ? [] : [`--releasever=${String(releasever)}`])
    ]
    const fixedMounts: ReadonlyArray<ContainerMount> = [
      { type: "bind", source: layout.logFile("root.log"), destination: "/logs/root.log", writable: true },
      ...DNF_LOGS.map((n): ContainerMount => ({ type: "bind", source: layout.logFile(n), destination: `/logs/${n}`, writable: true })),
      { type: "bind", source: confFile, destination: "/koji/dnf.conf" },
      ...local.mounts,
      ...(access._tag === "Proxy" ? [{ type: "bind" as const, source: proxySocket, destination: PROXY_SOCKET_IN_CONTAINER }] : [])
    ]
    const spec: Dnf["spec"] = (root, listing, args, extra = [], finish = false) => ({
      image: input.image,
      role: "buildroot",
      taskId: input.taskId,
      buildrootId: input.buildrootId,
      user: "0:0",
      idmap: input.idmap ?? undefined,
      capAdd: DNF_CAPS,
      network: access._tag === "Network" ? "bridge" : "none",
      env: { KOJI_QA_FORMAT: RPM_QA_FORMAT, LANG: "C.UTF-8", ...(finish ? { KOJI_FINISH: "1" } : {}) },
      command: ["/bin/sh", "-c", DNF_SCRIPT, "dnf", ...argv, ...args],
      mounts: [
        { type: "bind", source: root, destination: "/buildroot", writable: true },
        { type: "bind", source: listing, destination: "/meta/installed.tsv", writable: true },
        ...fixedMounts,
        ...extra
      ]
    })
    return { argv, spec } satisfies Dnf
  })

/** Runs dnf `args` into `root`; the exit code. */
export const runDnf = (
  containers: Containers["Type"], dnf: Dnf, root: string, listing: string, args: ReadonlyArray<string>,
  extra?: ReadonlyArray<ContainerMount>, finish?: boolean
) => Effect.map(containers.run(dnf.spec(root, listing, args, extra, finish), { outputOnFailureOnly: true }), (r) => r.exitCode)

/**
 * Lists the rpmdb of `root` into `listing` without installing anything (a root that came from a
 * buildroot image): the same container and script as a dnf run, with `true` for dnf. The exit code.
 */
export const listRoot = (containers: Containers["Type"], dnf: Dnf, root: string, listing: string) =>
  Effect.map(
    containers.run({ ...dnf.spec(root, listing, []), command: ["/bin/sh", "-c", DNF_SCRIPT, "dnf", "true"] }, { outputOnFailureOnly: true }),
    (r) => r.exitCode
  )

/** The rpmdb listing a dnf run left (bounded read). */
export const readListing = (file: string): Effect.Effect<ReadonlyArray<InstalledRpm>, BuildrootSetupError> =>
  Effect.tryPromise({
    try: async () => {
      const handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
      try {
        const st = await handle.stat()
        if (!st.isFile() || st.size > MAX_LISTING) throw new Error(`not a regular file of at most ${MAX_LISTING} bytes`)
        const buf = Buffer.allocUnsafe(st.size)
        const { bytesRead } = await handle.read(buf, 0, st.size, 0)
        return parseRpmQa(buf.subarray(0, bytesRead).toString("utf8"))
      } finally {
        await handle.close()
      }
    },
    catch: (e) => new BuildrootSetupError({ message: `cannot read the package list ${file}: ${e instanceof Error ? e.message : String(e)}` })
  })

/**
 * Repo URLs as a container can read them: a file:// repo is bind-mounted read-only at its real
 * path together with the tree its `toplink` points at (the koji topdir holding the packages), and
 * its URL rewritten to the real path so symlinked topdirs work. A directory inside another one
 * mounted is not mounted again.
 */
export const containerRepos = (urls: ReadonlyArray<string>): { readonly urls: ReadonlyArray<string>; readonly mounts: ReadonlyArray<ContainerMount> } => {
  const dirs = new Set<string>()
  const out = urls.map((u) => {
    if (!u.startsWith("file://")) return u
    const p = decodeURIComponent(u.slice("file://".length))
    let real = p
    for (const d of [p, path.join(p, "toplink")]) {
      try {
        const r = fs.realpathSync(d)
        if (d === p) real = r
        dirs.add(r)
      } catch {
        // no toplink (a plain local repo) or a missing repo: dnf reports the latter in root.log
      }
    }
    return `file://${real}`
  })
  const sorted = [...dirs].sort()
  const top = sorted.filter((d) => !sorted.some((o) => o !== d && d.startsWith(`${o}/`)))
  return { urls: out, mounts: top.map((d) => ({ type: "bind" as const, source: d, destination: d })) }
}
