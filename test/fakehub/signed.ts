/**
 * Signed copies in the fake hub: kojihub's `write_signed_rpm` behind `host.writeSignedRPM`
 * (HostExports: no host check, as the hub), `add_rpm_sig`'s storage of a signature header in the
 * sigcache, and koji's `rip_rpm_sighdr`/`splice_rpm_sighdr` on the rpm file format (a 96-byte
 * lead, then the signature header padded to 8 bytes).
 * The rpmsigs table is the repo world's `sigkeys` (rpm id → keys with a stored signature).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { GenericError } from "../../src/koji/faults.js"
import { isStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { pyRepr, pythonError, truthy } from "./context.js"
import type { RpmRow } from "./buildroots.js"
import type { MethodDef } from "./methods.js"
import { buildRelDir, type RepoWorld, repoWorld, rpmRelPath } from "./newrepo.js"

const RPM_HEADER_MAGIC = [0x8e, 0xad, 0xe8]
const SIG_START = 96

/** `koji.find_rpm_sighdr`: offset and length (with its padding) of an rpm's signature header. */
export const findRpmSighdr = (rpm: Uint8Array): { readonly start: number; readonly size: number } => {
  const magic = rpm.subarray(SIG_START, SIG_START + 3)
  if (magic.length < 3 || RPM_HEADER_MAGIC.some((b, i) => magic[i] !== b)) {
    throw new GenericError({ faultString: `Invalid rpm: bad magic: b'${Buffer.from(magic).toString("latin1")}'` })
  }
  const view = new DataView(rpm.buffer, rpm.byteOffset, rpm.byteLength)
  const il = view.getUint32(SIG_START + 8)
  const dl = view.getUint32(SIG_START + 12)
  const hdr = 8 + 16 * il + dl
  return { start: SIG_START, size: hdr + ((8 - (hdr % 8)) % 8) + 8 }
}

/** `koji.rip_rpm_sighdr`: the signature header bytes of an rpm file. */
export const ripRpmSighdr = (rpmPath: string): Uint8Array => {
  const rpm = fs.readFileSync(rpmPath)
  const { start, size } = findRpmSighdr(rpm)
  return rpm.subarray(start, start + size)
}

/** `koji.splice_rpm_sighdr(sighdr, src, dst)`: a copy of `src` with `sighdr` in place of its signature (temp file, then rename). */
export const spliceRpmSighdr = (sighdr: Uint8Array, src: string, dst: string): void => {
  const rpm = fs.readFileSync(src)
  const { start, size } = findRpmSighdr(rpm)
  fs.mkdirSync(path.dirname(dst), { recursive: true })
  const tmp = path.join(path.dirname(dst), `.${path.basename(dst)}.${process.pid}.tmp`)
  fs.writeFileSync(tmp, Buffer.concat([rpm.subarray(0, start), sighdr, rpm.subarray(start + size)]))
  fs.chmodSync(tmp, fs.statSync(src).mode & 0o7777)
  fs.renameSync(tmp, dst)
}

const builddirOf = (w: RepoWorld, row: RpmRow): string => {
  const build = row.buildId === null ? undefined : w.tables.builds.get(row.buildId)
  if (build === undefined) throw new GenericError({ faultString: `No such build: ${pyRepr(row.buildId)}` })
  return path.join(w.topdir, buildRelDir(build, w.buildExtra.get(build.id)?.volume ?? "DEFAULT"))
}

/** `koji.pathinfo.sighdr(rpminfo, sigkey)`, absolute. */
export const sighdrPath = (w: RepoWorld, row: RpmRow, sigkey: string): string =>
  path.join(builddirOf(w, row), `data/sigcache/${sigkey}/${rpmRelPath(row)}.sig`)

/** `koji.pathinfo.signed(rpminfo, sigkey)`, absolute. */
export const signedPath = (w: RepoWorld, row: RpmRow, sigkey: string): string =>
  path.join(builddirOf(w, row), `data/signed/${sigkey}/${rpmRelPath(row)}`)

/** `add_rpm_sig` as a test sets it up: the signature header in the sigcache and an rpmsigs row for `sigkey`. */
export const storeRpmSig = (w: RepoWorld, rpmId: number, sigkey: string, sighdr: Uint8Array): void => {
  const row = w.tables.rpms.get(rpmId)
  if (row === undefined) throw new Error(`fake hub: no rpm ${rpmId}`)
  const key = sigkey.toLowerCase()
  const file = sighdrPath(w, row, key)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, sighdr)
  const keys = w.sigkeys.get(rpmId) ?? []
  if (!keys.includes(key)) w.sigkeys.set(rpmId, [...keys, key])
}

const pyType = (v: XmlRpcValue): string =>
  v === null ? "NoneType" : typeof v === "boolean" ? "bool" : typeof v === "number" ? (Number.isInteger(v) ? "int" : "float")
    : typeof v === "string" ? "str" : Array.isArray(v) ? "list" : isStruct(v) ? "dict" : "object"

/** `koji.parse_NVRA` (without @location); GenericError "invalid format" as koji. */
const parseNVRA = (s: string): Record<string, XmlRpcValue> => {
  const nvra = s.endsWith(".rpm") ? s.slice(0, -4) : s
  const p3 = nvra.lastIndexOf(".")
  if (p3 === -1 || p3 === nvra.length - 1) throw new GenericError({ faultString: `invalid format: ${nvra}` })
  const nvr = nvra.slice(0, p3)
  const p2 = nvr.lastIndexOf("-")
  if (p2 === -1 || p2 === nvr.length - 1) throw new GenericError({ faultString: `invalid format: ${nvr}` })
  const p1 = nvr.lastIndexOf("-", p2 - 1)
  if (p1 === -1 || p1 === p2 - 1) throw new GenericError({ faultString: `invalid format: ${nvr}` })
  let name = nvr.slice(0, p1)
  const colon = name.indexOf(":")
  const epoch = colon === -1 ? "" : name.slice(0, colon)
  if (colon !== -1) name = name.slice(colon + 1)
  const arch = nvra.slice(p3 + 1)
  return { release: nvr.slice(p2 + 1), version: nvr.slice(p1 + 1, p2), name, epoch, arch, src: arch === "src" }
}

/** `get_rpm(rpminfo, strict=True)`: an id (int or digits), an N-V-R.A string or a struct. */
const getRpmStrict = (w: RepoWorld, info: XmlRpcValue): RpmRow => {
  let data: Record<string, XmlRpcValue>
  if (typeof info === "number" && Number.isInteger(info)) data = { id: info }
  else if (typeof info === "string") data = /^\s*[-+]?\d+\s*$/.test(info) ? { id: Number(info) } : parseNVRA(info)
  else if (isStruct(info)) data = { ...info }
  else throw new GenericError({ faultString: `Invalid type for rpminfo: <class '${pyType(info)}'>` })
  const id = data["id"]
  const found = typeof id === "number"
    ? w.tables.rpms.get(id)
    : [...w.tables.rpms.values()].find((r) =>
      r.name === data["name"] && r.version === data["version"] && r.release === data["release"] && r.arch === data["arch"])
  if (found === undefined) throw new GenericError({ faultString: `No such rpm: ${pyRepr(data)}` })
  return found
}

/** kojihub `write_signed_rpm(an_rpm, sigkey, force)`: the signed copy from the cached signature header; returns None. */
export const writeSignedRpm = (w: RepoWorld, anRpm: XmlRpcValue, sigkeyIn: XmlRpcValue, force: boolean): null => {
  if (typeof sigkeyIn !== "string") throw pythonError("AttributeError", `'${pyType(sigkeyIn)}' object has no attribute 'lower'`)
  const sigkey = sigkeyIn.toLowerCase()
  const row = getRpmStrict(w, anRpm)
  if (row.externalRepoId !== null) {
    const ext = w.tables.externalRepos.find((e) => e.id === row.externalRepoId)
    throw new GenericError({ faultString: `Not an internal rpm: ${typeof anRpm === "string" ? anRpm : pyRepr(anRpm)} (from ${ext?.name ?? "None"})` })
  }
  const builddir = builddirOf(w, row)
  const rpmPath = path.join(builddir, rpmRelPath(row))
  if (!fs.existsSync(rpmPath)) throw new GenericError({ faultString: `No such path: ${rpmPath}` })
  if (!fs.statSync(rpmPath).isFile()) throw new GenericError({ faultString: `Not a regular file: ${rpmPath}` })
  const nvra = `${row.name}-${row.version}-${row.release}.${row.arch}`
  if (!(w.sigkeys.get(row.id) ?? []).some((k) => k.toLowerCase() === sigkey)) {
    throw new GenericError({ faultString: `No cached signature for package ${nvra}, key ${sigkey}` })
  }
  const signed = signedPath(w, row, sigkey)
  if (fs.existsSync(signed)) {
    if (!force) return null
    fs.unlinkSync(signed)
  }
  const sigpath = sighdrPath(w, row, sigkey)
  let sighdr: Uint8Array
  try {
    sighdr = fs.readFileSync(sigpath)
  } catch {
    throw pythonError("FileNotFoundError", `[Errno 2] No such file or directory: '${sigpath}'`)
  }
  spliceRpmSighdr(sighdr, rpmPath, signed)
  return null
}

/** The signed-copy methods, to spread into the fake hub's method table. */
export const signedMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["host.writeSignedRPM", {
    sig: { qualname: "HostExports.writeSignedRPM", method: true, params: [["an_rpm"], ["sigkey"], ["force", false]] },
    run: (ctx, a) => writeSignedRpm(repoWorld(ctx.settings.topdir), a["an_rpm"]!, a["sigkey"]!, truthy(a["force"]))
  }]
]
