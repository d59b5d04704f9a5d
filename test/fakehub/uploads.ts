/**
 * Uploads as the hub handles them (koji-protocol.md §6): `rawUpload` (`kojihub.handle_upload`),
 * `checkUpload` and the legacy base64 `uploadFile`, into `<topdir>/work/<path>/<name>`, with the
 * hub's path rules, task ownership for `tasks/<x>/<id>`, offset/overwrite semantics, digests and
 * the non-blocking file lock (LockError on concurrent uploads of one file).
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { adler32Hex, adler32Update } from "../../src/hub/adler32.js"
import { ActionNotAllowed, GenericError, LockError } from "../../src/koji/faults.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type CallContext, asNumber, dbl, pythonError, pyStr, toInt } from "./context.js"
import { assertLogin, parseQs, verifiedHost } from "./sessions.js"
import { assertHost } from "./tasks.js"

/** A running digest: adler32, md5 or sha256 (`get_verify_class`). */
interface Digest {
  update(chunk: Uint8Array): void
  hexdigest(): string
}

const digestFor = (verify: string): Digest | undefined => {
  if (verify === "adler32") {
    let a = 1
    return { update: (c) => { a = adler32Update(a, c) }, hexdigest: () => adler32Hex(a) }
  }
  if (verify === "md5" || verify === "sha256") {
    const h = createHash(verify)
    return { update: (c) => { h.update(c) }, hexdigest: () => h.copy().digest("hex") }
  }
  if (verify !== "") throw new GenericError({ faultString: `Unsupported verify type: ${verify}` })
  return undefined
}

/** `os.path.normpath` for relative POSIX paths. */
const normpath = (p: string): string => {
  if (p === "") return "."
  const abs = p.startsWith("/")
  const out: Array<string> = []
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue
    if (part === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop()
    else if (part === ".." && abs) continue
    else out.push(part)
  }
  const joined = out.join("/")
  return abs ? `/${joined}` : joined === "" ? "." : joined
}

/** `get_upload_path(reldir, name, create, volume)`: the absolute target file. */
export const uploadPath = (
  ctx: CallContext, reldirIn: XmlRpcValue, nameIn: XmlRpcValue, create: boolean, volume: XmlRpcValue
): string => {
  const name = pyStr(nameIn)
  const origReldir = pyStr(reldirIn)
  if (name.includes("/") || path.posix.basename(name).startsWith(".")) {
    throw new GenericError({ faultString: `Invalid upload filename: ${name}` })
  }
  const reldir = normpath(origReldir)
  if (reldir === "" || reldir.startsWith("..")) {
    throw new GenericError({ faultString: `Invalid upload directory: ${origReldir}` })
  }
  if (volume !== null && volume !== "DEFAULT") {
    throw new GenericError({ faultString: `No such entry in table volume: ${pyStr(volume)}` })
  }
  const parts = reldir.split("/")
  let checkUser = true
  if (create && parts[0] === "tasks") {
    const id = parts.length >= 3 && /^\s*[-+]?\d+\s*$/.test(parts[2]!) ? Number.parseInt(parts[2]!, 10) : undefined
    if (id === undefined) throw new GenericError({ faultString: `Invalid task upload directory: ${origReldir}` })
    const host = verifiedHost(ctx)
    assertHost(ctx, id, host.id)
    checkUser = false
  }
  if (reldir.startsWith("/")) throw pythonError("ValueError", `Invalid path segment: ${origReldir}`)
  const udir = path.join(ctx.settings.topdir, "work", reldir)
  if (create) {
    fs.mkdirSync(udir, { recursive: true })
    if (checkUser) {
      const uFn = path.join(udir, ".user")
      if (fs.existsSync(uFn)) {
        if (Number.parseInt(fs.readFileSync(uFn, "utf8"), 10) !== ctx.session.userId) {
          throw new GenericError({ faultString: `Invalid upload directory, not owner: ${origReldir}` })
        }
      } else {
        fs.writeFileSync(uFn, String(ctx.session.userId))
      }
    }
  }
  return path.join(udir, name)
}

const lstat = (fn: string): fs.Stats | undefined => {
  try {
    return fs.lstatSync(fn)
  } catch {
    return undefined
  }
}

/** Where a raw upload goes and how, once the checks before reading the body have passed. */
export interface RawUploadPlan {
  readonly file: string
  readonly verify: string
  readonly digest: Digest | undefined
  readonly offset: number
  readonly overwrite: boolean
}

/** The part of `handle_upload` before the body is read: session, query, path, lock. */
export const beginRawUpload = (ctx: CallContext): RawUploadPlan => {
  if (!ctx.session.loggedIn) throw new ActionNotAllowed({ faultString: "you must be logged-in to upload a file" })
  const args = parseQs(ctx.env.query)
  const first = (k: string, dflt: string): string => args.get(k)?.[0] ?? dflt
  const name = args.get("filename")?.[0]
  if (name === undefined) throw pythonError("KeyError", "'filename'")
  const reldir = first("filepath", "")
  const verify = first("fileverify", "")
  const overwrite = first("overwrite", "") !== ""
  const offsetRaw = first("offset", "0")
  if (!/^\s*[-+]?\d+\s*$/.test(offsetRaw)) {
    throw pythonError("ValueError", `invalid literal for int() with base 10: '${offsetRaw}'`)
  }
  const offset = Number.parseInt(offsetRaw, 10)
  const volume = first("volume", "DEFAULT")
  const file = uploadPath(ctx, reldir, name, true, volume)
  const st = lstat(file)
  if (st !== undefined) {
    if (st.isSymbolicLink()) throw new GenericError({ faultString: `destination is a symlink: ${file}` })
    if (!st.isFile()) throw new GenericError({ faultString: `destination not a file: ${file}` })
    if (offset === 0 && !overwrite) throw new GenericError({ faultString: `upload path exists: ${file}` })
  }
  const digest = digestFor(verify)
  if (digest === undefined) throw pythonError("TypeError", "'NoneType' object is not callable")
  fs.closeSync(fs.openSync(file, "a"))
  if (ctx.hub.locks.has(file)) throw new LockError({ faultString: "[Errno 11] Resource temporarily unavailable" })
  ctx.hub.locks.add(file)
  return { file, verify, digest, offset, overwrite }
}

/** The rest of `handle_upload`: write the body at the offset, check the length, reply. */
export const finishRawUpload = (plan: RawUploadPlan, body: Uint8Array): XmlRpcValue => {
  const fd = fs.openSync(plan.file, "r+")
  try {
    let offset = plan.offset
    if (offset === -1) offset = fs.fstatSync(fd).size
    else if (plan.overwrite) fs.ftruncateSync(fd, offset)
    fs.writeSync(fd, body, 0, body.length, offset)
    plan.digest?.update(body)
    if (!plan.overwrite) {
      const flen = fs.fstatSync(fd).size
      const expected = offset + body.length
      if (flen !== expected) {
        throw new GenericError({
          faultString: `Incorrect upload length for ${plan.file} - Expected ${expected}, actual ${flen}`
        })
      }
    }
    const ret: Record<string, XmlRpcValue> = { size: body.length, fileverify: plan.verify, offset }
    if (plan.digest !== undefined) ret["hexdigest"] = plan.digest.hexdigest()
    return ret
  } finally {
    fs.closeSync(fd)
  }
}

/** `checkUpload(path, name, verify=None, tail=None, volume=None)`. */
export const checkUpload = (
  ctx: CallContext, reldir: XmlRpcValue, name: XmlRpcValue, verify: XmlRpcValue, tail: XmlRpcValue,
  volume: XmlRpcValue
): XmlRpcValue => {
  const file = uploadPath(ctx, reldir, name, false, volume)
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    return null
  }
  if (ctx.hub.locks.has(file)) throw new LockError({ faultString: "[Errno 11] Resource temporarily unavailable" })
  if (!st.isFile()) throw new GenericError({ faultString: `Not a regular file: ${file}` })
  const data: Record<string, XmlRpcValue> = { size: st.size, mtime: dbl(st.mtimeMs / 1000) }
  if (typeof verify === "string" && verify !== "") {
    const d = digestFor(verify)!
    let content = fs.readFileSync(file)
    if (tail !== null) {
      const t = asNumber(tail) ?? 0
      if (t < 0) throw new GenericError({ faultString: `Invalid tail value: ${t}` })
      content = content.subarray(Math.max(st.size - t, 0))
    }
    d.update(content)
    data["sumlength"] = content.length
    data["hexdigest"] = d.hexdigest()
  }
  return data
}

/** `uploadFile(path, name, size, md5sum, offset, data, volume=None, checksum=None)` (§6.2). */
export const uploadFile = (
  ctx: CallContext, a: Readonly<Record<string, XmlRpcValue>>
): XmlRpcValue => {
  assertLogin(ctx)
  const contents = Buffer.from(pyStr(a["data"]), "base64")
  const offset = toInt(a["offset"])
  const size = a["size"] === null ? null : toInt(a["size"])
  if (offset === undefined || size === undefined) throw pythonError("ValueError", "invalid literal for int() with base 10")
  let checksum = a["checksum"] ?? null
  if (checksum === null && a["md5sum"] !== null) checksum = a["md5sum"] ?? null
  let verify: string | undefined
  let digest = ""
  if (typeof checksum === "string") {
    verify = "md5"
    digest = checksum
  } else if (Array.isArray(checksum) && checksum.length === 2) {
    verify = pyStr(checksum[0])
    digest = pyStr(checksum[1])
  }
  const sum = (bytes: Uint8Array): string => {
    const d = digestFor(verify!)!
    d.update(bytes)
    return d.hexdigest()
  }
  if (verify !== undefined) digestFor(verify)
  if (offset !== -1) {
    if (size !== null && size !== contents.length) return false
    if (verify !== undefined && digest !== sum(contents)) return false
  }
  const file = uploadPath(ctx, a["path"] ?? null, a["name"] ?? null, true, a["volume"] ?? null)
  const st = lstat(file)
  if (st !== undefined) {
    if (!st.isFile()) throw new GenericError({ faultString: `destination not a file: ${file}` })
    if (offset === 0 && !file.endsWith(".log")) throw new GenericError({ faultString: `file already exists: ${file}` })
  }
  if (ctx.hub.locks.has(file)) throw pythonError("BlockingIOError", "[Errno 11] Resource temporarily unavailable")
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o666)
  try {
    if (offset === 0 || (offset === -1 && size === contents.length)) fs.ftruncateSync(fd, 0)
    const pos = offset === -1 ? fs.fstatSync(fd).size : offset
    fs.writeSync(fd, contents, 0, contents.length, pos)
    if (offset === -1) {
      if (size !== null) fs.ftruncateSync(fd, size)
      if (verify !== undefined && digest !== sum(fs.readFileSync(file))) return false
    }
  } finally {
    fs.closeSync(fd)
  }
  return true
}
