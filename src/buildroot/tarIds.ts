/**
 * A tar stream rewriter for buildroot images: it moves every member's owner between the host ids
 * of a user namespace (how a cached root is owned, `build_userns`) and container ids (how an OCI
 * image is owned, from 0), and refuses what a root of ours never holds. GNU tar has no id offset
 * of its own (`--owner-map` is one line per id and only when writing), so headers are rewritten
 * in the stream: ustar octal and GNU base-256 numbers, and `uid`/`gid` records of pax headers.
 * Data blocks pass through untouched.
 */
import { Transform, type TransformCallback } from "node:stream"

const BLOCK = 512

/** Why a stream was refused. */
export class TarRefused extends Error {}

/** How ids move: `host` → container ids (packing a root), `container` → host ids (unpacking an image). */
export interface IdShift {
  /** Added to every uid and gid (negative when packing). */
  readonly delta: number
  /** Ids after the shift must lie in [min, max). */
  readonly min: number
  readonly max: number
}

/** The shift that packs a root owned by `base…base+size-1` into container ids 0…size-1. */
export const packShift = (map: { readonly base: number; readonly size: number } | null): IdShift =>
  map === null ? { delta: 0, min: 0, max: 2 ** 32 - 1 } : { delta: -map.base, min: 0, max: map.size }

/** The shift that unpacks container ids 0…size-1 into host ids `base…`. */
export const unpackShift = (map: { readonly base: number; readonly size: number } | null): IdShift =>
  map === null ? { delta: 0, min: 0, max: 2 ** 32 - 1 } : { delta: map.base, min: map.base, max: map.base + map.size }

/** Member types a buildroot may hold: files, hard links, symlinks, directories, and the long-name and pax headers. */
const ALLOWED = new Set(["0", "\0", "7", "1", "2", "5", "L", "K", "x", "g"])
const TYPE_NAMES: Record<string, string> = { "3": "character device", "4": "block device", "6": "FIFO", S: "sparse file", D: "dump directory", V: "volume label" }

const readNumber = (block: Buffer, off: number, len: number): number => {
  if ((block[off]! & 0x80) !== 0) {
    // GNU base-256: big-endian, first byte's high bit set (negative numbers are not ids).
    if ((block[off]! & 0x40) !== 0) throw new TarRefused("negative number in a tar header")
    let n = block[off]! & 0x3f
    for (let i = 1; i < len; i++) n = n * 256 + block[off + i]!
    return n
  }
  const text = block.toString("latin1", off, off + len).replace(/\0.*$/s, "").trim()
  if (text === "") return 0
  if (!/^[0-7]+$/.test(text)) throw new TarRefused(`bad number ${JSON.stringify(text)} in a tar header`)
  return parseInt(text, 8)
}

const writeNumber = (block: Buffer, off: number, len: number, n: number): void => {
  const octal = n.toString(8)
  if (octal.length < len) {
    block.write(octal.padStart(len - 1, "0") + "\0", off, len, "latin1")
    return
  }
  block.fill(0, off, off + len)
  let v = n
  for (let i = len - 1; i > 0; i--) {
    block[off + i] = v % 256
    v = Math.floor(v / 256)
  }
  block[off] = 0x80
}

const setChecksum = (block: Buffer): void => {
  block.fill(0x20, 148, 156)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += block[i]!
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1")
}

const checksumOk = (block: Buffer): boolean => {
  const stored = readNumber(block, 148, 8)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!
  return sum === stored
}

const badName = (name: string): string | undefined => {
  if (name.startsWith("/")) return "an absolute path"
  if (name.split("/").includes("..")) return "a '..' component"
  if (name.split("/").some((c) => c.startsWith(".wh."))) return "a layer whiteout"
  return undefined
}

/** Pax records (`len key=value\n`) with `uid`/`gid` shifted; other records kept as they are. */
interface PaxFields {
  readonly data: Buffer
  readonly path: string | undefined
  readonly linkpath: string | undefined
  /** The shifted uid and gid when the records carry them (they override the header's fields). */
  readonly uid: number | undefined
  readonly gid: number | undefined
}

const shiftPax = (data: Buffer, shift: (id: number) => number): PaxFields => {
  const out: Array<string> = []
  let at = 0
  let pathValue: string | undefined
  let linkValue: string | undefined
  const ids: { uid?: number; gid?: number } = {}
  const text = data.toString("utf8")
  while (at < text.length) {
    const sp = text.indexOf(" ", at)
    if (sp < 0) break
    const len = Number(text.slice(at, sp))
    if (!Number.isInteger(len) || len <= 0) throw new TarRefused("malformed pax header")
    const record = Buffer.from(text.slice(at), "utf8").subarray(0, len).toString("utf8")
    at += record.length
    const body = record.slice(record.indexOf(" ") + 1, -1)
    const eq = body.indexOf("=")
    const key = body.slice(0, eq)
    const value = body.slice(eq + 1)
    if (key === "path") pathValue = value
    if (key === "linkpath") linkValue = value
    if (key === "uid" || key === "gid") {
      if (!/^\d+$/.test(value)) throw new TarRefused(`bad pax ${key}`)
      const moved = shift(Number(value))
      ids[key] = moved
      const line = `${key}=${moved}\n`
      // The length counts itself: grow it until it fits.
      let n = line.length + 2
      while (`${n} ${line}`.length !== n) n = `${n} ${line}`.length
      out.push(`${n} ${line}`)
    } else {
      out.push(record)
    }
  }
  return { data: Buffer.from(out.join(""), "utf8"), path: pathValue, linkpath: linkValue, uid: ids.uid, gid: ids.gid }
}

/** Where a stream's rewriting stands between chunks. */
interface Shifter {
  readonly shift: IdShift
  /** Bytes received that do not yet make a whole block. */
  pending: Buffer
  /** Bytes of member data still to pass through (including padding). */
  skip: number
  /** A pax or GNU long-name header's data being collected. */
  collecting: { readonly header: Buffer; readonly size: number; readonly type: string; readonly chunks: Array<Buffer>; got: number } | undefined
  longName: string | undefined
  longLink: string | undefined
  paxPath: string | undefined
  paxLink: string | undefined
  paxIds: { readonly uid: number | undefined; readonly gid: number | undefined }
  /** The end marker was seen: the rest passes through. */
  ended: boolean
}

type Push = (b: Buffer) => void

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK

/** An id moved by the shift, refused outside the allowed range. */
const moveId = (shift: IdShift, id: number): number => {
  const n = id + shift.delta
  if (n < shift.min || n >= shift.max) throw new TarRefused(`owner id ${id} is outside the id range of the root`)
  return n
}

/** A member's name and link target, the extended headers before it consumed. */
const takeNames = (s: Shifter, block: Buffer) => {
  const prefix = block.toString("utf8", 345, 500).replace(/\0.*$/s, "")
  const short = block.toString("utf8", 0, 100).replace(/\0.*$/s, "")
  const name = s.paxPath ?? s.longName ?? (prefix === "" ? short : `${prefix}/${short}`)
  const link = s.paxLink ?? s.longLink ?? block.toString("utf8", 157, 257).replace(/\0.*$/s, "")
  const ids = s.paxIds
  s.longName = undefined
  s.longLink = undefined
  s.paxPath = undefined
  s.paxLink = undefined
  s.paxIds = { uid: undefined, gid: undefined }
  return { name, link, ids }
}

/** One header block: checked, its owner shifted, pushed (extended headers are collected first). */
const header = (s: Shifter, block: Buffer, push: Push): void => {
  if (block.every((b) => b === 0)) {
    s.ended = true
    push(block)
    return
  }
  if (!checksumOk(block)) throw new TarRefused("a tar header's checksum is wrong")
  const type = String.fromCharCode(block[156]!)
  if (!ALLOWED.has(type)) throw new TarRefused(`the image holds a ${TYPE_NAMES[type] ?? `member of type ${JSON.stringify(type)}`}`)
  const size = readNumber(block, 124, 12)
  if (type === "x" || type === "g" || type === "L" || type === "K") {
    if (size > 1024 * 1024) throw new TarRefused("an oversized extended header")
    s.collecting = { header: Buffer.from(block), size, type, chunks: [], got: 0 }
    return
  }
  const { name, link, ids } = takeNames(s, block)
  const why = badName(name.replace(/^\.\//, ""))
  if (why !== undefined) throw new TarRefused(`member ${JSON.stringify(name)} has ${why}`)
  // A hard link's target is a member of the same tree; a symlink may point anywhere inside its root.
  const linkWhy = type === "1" ? badName(link.replace(/^\.\//, "")) : undefined
  if (linkWhy !== undefined) throw new TarRefused(`hard link ${JSON.stringify(name)} has a target with ${linkWhy}`)
  const out = Buffer.from(block)
  // Ids a pax header gave (already moved) win over the header's fields, which then hold anything.
  writeNumber(out, 108, 8, ids.uid ?? moveId(s.shift, readNumber(block, 108, 8)))
  writeNumber(out, 116, 8, ids.gid ?? moveId(s.shift, readNumber(block, 116, 8)))
  // Owner names would let tar map ids by name on the extracting host: ids only.
  out.fill(0, 265, 329)
  setChecksum(out)
  push(out)
  s.skip = type === "0" || type === "\0" || type === "7" ? padded(size) : 0
}

/** A collected extended header: its names and ids kept for the next member, pushed with pax ids shifted. */
const finishExtended = (s: Shifter, push: Push): void => {
  const c = s.collecting!
  s.collecting = undefined
  const data = Buffer.concat(c.chunks).subarray(0, c.size)
  if (c.type === "L") s.longName = data.toString("utf8").replace(/\0.*$/s, "")
  if (c.type === "K") s.longLink = data.toString("utf8").replace(/\0.*$/s, "")
  let body: Buffer = data
  if (c.type === "x" || c.type === "g") {
    const shifted = shiftPax(data, (id) => moveId(s.shift, id))
    body = shifted.data
    if (c.type === "x") {
      s.paxPath = shifted.path
      s.paxLink = shifted.linkpath
      s.paxIds = { uid: shifted.uid, gid: shifted.gid }
    }
  }
  const head = Buffer.from(c.header)
  writeNumber(head, 124, 12, body.length)
  setChecksum(head)
  push(head)
  const padding = padded(body.length) - body.length
  push(Buffer.concat([body, Buffer.alloc(padding)]))
}

/** Consumes what of `buf` can be handled now; the rest (less than a block) is returned. */
const consume = (s: Shifter, input: Buffer, push: Push): Buffer => {
  let buf = input
  while (buf.length > 0) {
    if (s.ended) {
      push(buf)
      return Buffer.alloc(0)
    }
    if (s.skip > 0) {
      const n = Math.min(s.skip, buf.length)
      push(buf.subarray(0, n))
      buf = buf.subarray(n)
      s.skip -= n
      continue
    }
    if (s.collecting !== undefined) {
      const c = s.collecting
      const n = Math.min(padded(c.size) - c.got, buf.length)
      c.chunks.push(buf.subarray(0, n))
      c.got += n
      buf = buf.subarray(n)
      if (c.got === padded(c.size)) finishExtended(s, push)
      continue
    }
    if (buf.length < BLOCK) break
    header(s, buf.subarray(0, BLOCK), push)
    buf = buf.subarray(BLOCK)
  }
  return buf
}

/**
 * A Transform that shifts owners by `shift` and refuses device nodes, FIFOs, absolute or `..`
 * names, whiteouts and ids outside the allowed range (a TarRefused error on the stream).
 */
export const tarIdShifter = (shift: IdShift): Transform => {
  const s: Shifter = {
    shift, pending: Buffer.alloc(0), skip: 0, collecting: undefined, longName: undefined, longLink: undefined,
    paxPath: undefined, paxLink: undefined, paxIds: { uid: undefined, gid: undefined }, ended: false
  }
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      try {
        const out: Array<Buffer> = []
        const rest = consume(s, s.pending.length === 0 ? chunk : Buffer.concat([s.pending, chunk]), (b) => void out.push(b))
        s.pending = Buffer.from(rest)
        done(null, out.length === 0 ? undefined : Buffer.concat(out))
      } catch (e) {
        done(e instanceof Error ? e : new TarRefused(String(e)))
      }
    },
    flush(done: TransformCallback) {
      if (!s.ended) done(new TarRefused("the tar stream ends without its end marker"))
      else done(null, s.pending.length === 0 ? undefined : s.pending)
    }
  })
}
