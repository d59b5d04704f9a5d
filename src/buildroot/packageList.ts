/**
 * The buildroot's package list as kojid reports it (`BuildRoot.getPackageList`,
 * `markExternalRPMs`, `mapInternalRPMs`; koji-protocol.md §5.2): the root's rpmdb, without
 * `buildsys-build` and `gpg-pubkey`, each rpm given its hub id from the repo's `rpmlist.jsonl`
 * (or, when that file is missing, `listTaggedRPMS(latest, draft)`), and rpms of external repos
 * marked with `external_repo` + `location` through the repo's `pkgorigins`.
 */
import { Effect, Schema } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { gunzipSync } from "node:zlib"
import { BuildError, BuildrootError } from "../koji/faults.js"
import type { ExternalRepo } from "../hub/schemas.js"
import type { XmlRpcStruct, XmlRpcValue } from "../hub/xmlrpc.js"

/** One installed rpm as the rpmdb lists it. */
export interface InstalledRpm {
  readonly name: string
  readonly version: string
  readonly release: string
  readonly epoch: number | null
  readonly arch: string
  readonly payloadhash: string
  readonly size: number
  readonly buildtime: number
}

/** The `rpm -qa --qf` format whose output `parseRpmQa` reads (tab separated). */
export const RPM_QA_FORMAT = "%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{EPOCH}\\t%{ARCH}\\t%{SIGMD5}\\t%{SIZE}\\t%{BUILDTIME}\\n"

const SKIPPED = new Set(["buildsys-build", "gpg-pubkey"])

/** Parses `rpm -qa --qf RPM_QA_FORMAT` output, leaving out kojid's fake packages, sorted by name. */
export const parseRpmQa = (text: string): ReadonlyArray<InstalledRpm> => {
  const out: Array<InstalledRpm> = []
  for (const line of text.split("\n")) {
    const f = line.split("\t")
    if (f.length < 8) continue
    const [name, version, release, epoch, arch, sigmd5, size, buildtime] = f as [string, string, string, string, string, string, string, string]
    if (SKIPPED.has(name)) continue
    out.push({
      name, version, release,
      epoch: /^\d+$/.test(epoch) ? Number(epoch) : null,
      arch: arch === "(none)" ? "noarch" : arch,
      payloadhash: sigmd5 === "(none)" ? "" : sigmd5,
      size: Number(size) || 0,
      buildtime: Number(buildtime) || 0
    })
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** `N-V-R.A` as kojid keys rpms. */
export const nvra = (r: { readonly name: string; readonly version: string; readonly release: string; readonly arch: string }): string =>
  `${r.name}-${r.version}-${r.release}.${r.arch}`

/** Reads files of the koji file tree (`koji.openRemoteFile`): over HTTP from topurl, or from topdir. */
export interface RemoteFiles {
  /** The content of `<topurl|topdir>/<relpath>`, or null when it does not exist (404 / ENOENT). */
  readonly read: (relpath: string) => Effect.Effect<Uint8Array | null, BuildrootError>
}

const readLocal = (file: string, shown: string): Effect.Effect<Uint8Array | null, BuildrootError> =>
  Effect.tryPromise({
    try: () => fsp.readFile(file).then((b): Uint8Array | null => b).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null
      throw e
    }),
    catch: (e) => new BuildrootError({ faultString: `cannot read ${shown}: ${e instanceof Error ? e.message : String(e)}` })
  })

/** RemoteFiles over `topurl` (http(s):// or file://), or `topdir` when no topurl is set. */
export const remoteFiles = (topurl: string | undefined, topdir: string): RemoteFiles => ({
  read: (relpath) => {
    if (topurl === undefined || topurl === "") {
      const file = path.join(topdir, relpath)
      return readLocal(file, file)
    }
    const url = `${topurl.replace(/\/+$/, "")}/${relpath}`
    if (url.startsWith("file://")) return readLocal(decodeURIComponent(url.slice("file://".length)), url)
    return Effect.tryPromise({
      try: async (signal) => {
        const res = await fetch(url, { signal })
        if (res.status === 404) return null
        if (!res.ok) throw new Error(`HTTP ${res.status}`)
        return new Uint8Array(await res.arrayBuffer())
      },
      catch: (e) => new BuildrootError({ faultString: `cannot fetch ${url}: ${e instanceof Error ? e.message : String(e)}` })
    })
  }
})

const RpmlistLine = Schema.parseJson(Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  version: Schema.String,
  release: Schema.String,
  arch: Schema.String,
  payloadhash: Schema.String
}))

/** Parses `rpmlist.jsonl` (one JSON rpm record per line). */
export const parseRpmlist = (text: string): Effect.Effect<ReadonlyArray<typeof RpmlistLine.Type>, BuildrootError> =>
  Effect.forEach(text.split("\n").filter((l) => l.trim() !== ""), (line, i) =>
    Schema.decodeUnknown(RpmlistLine)(line).pipe(
      Effect.mapError(() => new BuildrootError({ faultString: `rpmlist.jsonl line ${i + 1} is not an rpm record: ${line.slice(0, 200)}` }))
    ))

/** The `origin` (pkgorigins) location from repomd.xml, if the repo has one. */
export const originHref = (repomd: string): string | undefined => {
  const m = /<data\s+type="origin"\s*>[\s\S]*?<location\s+href="([^"]+)"/.exec(repomd)
  return m?.[1]
}

/** `nvra → origin url` from pkgorigins text (first field may be `[e:]n-v-r.a`). */
export const parsePkgorigins = (text: string): ReadonlyMap<string, string> => {
  const idx = new Map<string, string>()
  for (const line of text.split("\n")) {
    const parts = line.trim().split(/\s+/, 3)
    if (parts.length < 2 || parts[0] === "") continue
    const key = parts[0]!.replace(/^\d+:/, "")
    idx.set(key, parts[1]!)
  }
  return idx
}

/** One package-list entry as it goes to setBuildRootList/updateBuildRootList. */
export type PackageEntry = XmlRpcStruct

/** What the mapping needs from the hub; `E` is how its calls fail. */
export interface PackageListHub<E> {
  readonly getExternalRepoList: () => Effect.Effect<ReadonlyArray<ExternalRepo>, E>
  /** `listTaggedRPMS(tag, event, latest=True, draft=True)[0]` (the rpms). */
  readonly listTaggedRpms: () => Effect.Effect<ReadonlyArray<Readonly<Record<string, XmlRpcValue>>>, E>
}

/** kojid's getPackageList over an already read rpmdb listing. */
export const mapPackageList = Effect.fn("Buildroots.mapPackageList")(function* <E>(
  installed: ReadonlyArray<InstalledRpm>,
  repo: { readonly relDir: string; readonly brArch: string; readonly repoId: number },
  files: RemoteFiles,
  hub: PackageListHub<E>
) {
  const entries: Array<Record<string, XmlRpcValue>> = installed.map((r) => ({
    name: r.name, version: r.version, release: r.release, epoch: r.epoch, arch: r.arch,
    size: r.size, buildtime: r.buildtime, payloadhash: r.payloadhash
  }))
  const archDir = `${repo.relDir}/${repo.brArch}`
  // markExternalRPMs
  const externals = yield* hub.getExternalRepoList()
  if (externals.length > 0) {
    const byUrl = new Map<string, ExternalRepo>()
    for (const e of externals) byUrl.set(e.url.replace(/\$arch/g, repo.brArch), e)
    const repomd = yield* files.read(`${archDir}/repodata/repomd.xml`)
    const href = repomd === null ? undefined : originHref(Buffer.from(repomd).toString("utf8"))
    if (href === undefined) return yield* new BuildrootError({ faultString: `repo ${archDir} has external repos but no pkgorigins` })
    const gz = yield* files.read(`${archDir}/${href}`)
    if (gz === null) return yield* new BuildrootError({ faultString: `missing ${archDir}/${href}` })
    const origins = parsePkgorigins(gunzipSync(gz).toString("utf8"))
    const localTail = `/repo_${repo.repoId}_premerge/`
    for (const e of entries) {
      const key = nvra(e as unknown as InstalledRpm)
      const url = origins.get(key)
      if (url === undefined) return yield* new BuildError({ faultString: `No origin for ${key}` })
      const erepo = byUrl.get(url)
      if (erepo === undefined) {
        if (url.startsWith("file://") && url.endsWith(localTail)) continue
        return yield* new BuildError({ faultString: `Unknown origin for ${key}: ${url}` })
      }
      const info: Record<string, XmlRpcValue> = {}
      for (const [k, v] of Object.entries(erepo)) if (v !== undefined) info[k] = v
      e["external_repo"] = info
      e["location"] = erepo.external_repo_id
    }
  }
  // mapInternalRPMs
  const listed = yield* files.read(`${archDir}/rpmlist.jsonl`)
  let known: ReadonlyArray<Readonly<Record<string, XmlRpcValue | undefined>>>
  const compat = listed === null
  if (listed === null) {
    yield* Effect.logWarning(`Missing repo content file: ${archDir}/rpmlist.jsonl`)
    known = yield* hub.listTaggedRpms()
  } else {
    known = yield* parseRpmlist(Buffer.from(listed).toString("utf8"))
  }
  const index = new Map(known.map((k) => [`${String(k["name"])}-${String(k["version"])}-${String(k["release"])}.${String(k["arch"])}`, k]))
  for (const e of entries) {
    if (e["external_repo"] !== undefined) continue
    const key = nvra(e as unknown as InstalledRpm)
    const data = index.get(key)
    if (data === undefined) {
      if (!compat) yield* Effect.logWarning(`${key} not found in rpmlist.jsonl`)
      continue
    }
    if (data["payloadhash"] !== e["payloadhash"]) {
      return yield* new BuildrootError({
        faultString: `RPM: ${key}: payloadhash: ${String(e["payloadhash"])} mismatch expected ${String(data["payloadhash"])} in rpmlist.jsonl`
      })
    }
    e["id"] = data["id"] ?? null
  }
  return entries as ReadonlyArray<PackageEntry>
})
