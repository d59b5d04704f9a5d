/**
 * What a build leaves is hostile input. Every file taken out of a build's result area — RPMs,
 * SRPMs, the BuildRequires `nosrc.rpm` of a `%generate_buildrequires` round — goes through
 * `takeRpm`: a plain RPM file name, a regular file with one link (no symlink, FIFO, device or
 * hard link), not sparse, within the size budget, an RPM header of the expected kind (source or
 * binary, an allowed arch), then copied by content into a directory of the daemon's with mode
 * 0644. Logs are read with a bound: head and tail of a log over `log_max_size`, never the whole of
 * a file the build could have made 1 TB long.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { cutOf, truncationNote } from "../hub/Uploads.js"
import { FsError, fsError } from "./errors.js"
import { parseRpmHeader, type RpmHeaderInfo } from "./rpmHeader.js"

/** A build's output broke a rule (bad name, not a regular file, bad header, over a limit). */
export class HostileOutput extends Schema.TaggedError<HostileOutput>()("HostileOutput", {
  /** The file as the build named it (JSON-quoted in the message: it may hold control characters). */
  file: Schema.String,
  /** The `[adjutant]` key whose limit was hit, when a limit was hit. */
  limit: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/** Characters of an RPM file name: N-V-R.A.rpm (rpm's own name/version rules plus `~` and `^`). */
const RPM_NAME = /^[A-Za-z0-9_+][A-Za-z0-9._+~^-]*\.rpm$/

/** True when `name` is a plain RPM file name: no path, no `..`, no control or shell characters. */
export const isRpmFileName = (name: string): boolean => RPM_NAME.test(name) && !name.includes("..") && name.length <= 255

/** `name` quoted for a message (control characters and newlines visible, never interpreted). */
export const quoted = (name: string): string => JSON.stringify(name)

/** What kind of package a file must be. */
export type RpmKind = "source" | "binary"

/** What `takeRpm` accepts. */
export interface TakePolicy {
  readonly kind: RpmKind
  /** Binary arches accepted (e.g. the target arch and noarch); any when absent. */
  readonly arches?: ReadonlySet<string> | undefined
  /** Bytes this file may have (what is left of the task's `result_max_size`). */
  readonly maxBytes: number
  /** The `[adjutant]` key behind `maxBytes`, for the message. */
  readonly limitKey: string
}

/** A file taken out of a build: its copy, its header and size. */
export interface TakenRpm {
  readonly name: string
  readonly file: string
  readonly size: number
  readonly header: RpmHeaderInfo
}

/** Slack for the last partial block of a file when telling sparse files apart. */
const SPARSE_SLACK = 1024 * 1024
const HEADER_BYTES = 4 * 1024 * 1024

/**
 * Checks `dir/name` and copies it to `outDir/outName` (default: the same name) by content, mode
 * 0644, owned by the daemon. The source is opened without following links and must be the
 * regular file lstat saw.
 */
export const takeRpm = (dir: string, name: string, outDir: string, policy: TakePolicy, outName: string = name) =>
  Effect.tryPromise({
    try: async (): Promise<TakenRpm | HostileOutput | FsError> => {
      const bad = (message: string, limit?: string) => new HostileOutput({ file: name, message, ...(limit === undefined ? {} : { limit }) })
      if (!isRpmFileName(name)) return bad(`the build left a package with an unsafe file name ${quoted(name)}`)
      const src = path.join(dir, name)
      const st = await fsp.lstat(src)
      if (!st.isFile()) return bad(`${quoted(name)} is not a regular file (${kindOf(st)})`)
      if (st.nlink !== 1) return bad(`${quoted(name)} has ${st.nlink} hard links`)
      if (st.size > policy.maxBytes) {
        return bad(`${quoted(name)} is ${st.size} bytes, over the ${policy.limitKey} limit (${policy.maxBytes} bytes left)`, policy.limitKey)
      }
      if (st.blocks * 512 + SPARSE_SLACK < st.size) return bad(`${quoted(name)} is a sparse file (${st.size} bytes, ${st.blocks * 512} allocated): not an rpm`)
      const handle = await fsp.open(src, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
      try {
        const fst = await handle.stat()
        if (!fst.isFile() || fst.ino !== st.ino || fst.size !== st.size) return bad(`${quoted(name)} changed while it was read`)
        const head = Buffer.allocUnsafe(Math.min(HEADER_BYTES, st.size))
        const { bytesRead } = await handle.read(head, 0, head.length, 0)
        const header = parseRpmHeader(head.subarray(0, bytesRead))
        if (typeof header === "string") return bad(`${quoted(name)} is not an rpm: ${header}`)
        if (policy.kind === "source" && !header.sourcepackage) return bad(`${quoted(name)} is a binary rpm where a source rpm was expected`)
        if (policy.kind === "binary" && header.sourcepackage) return bad(`${quoted(name)} is a source rpm where a binary rpm was expected`)
        if (policy.kind === "binary" && policy.arches !== undefined && !policy.arches.has(header.arch)) {
          return bad(`${quoted(name)} is built for ${quoted(header.arch)}, not one of ${[...policy.arches].join(", ")}`)
        }
        const file = path.join(outDir, outName)
        // Our own write failing (a full disk) is no fault of the build's.
        const copied = await copyOpen(handle, st.size, file).then(() => undefined, fsError("write", file))
        return copied ?? { name: outName, file, size: st.size, header }
      } finally {
        await handle.close()
      }
    },
    catch: (e) => new HostileOutput({ file: name, message: `cannot read ${quoted(name)}: ${e instanceof Error ? e.message : String(e)}` })
  }).pipe(Effect.flatMap((r) => (r instanceof HostileOutput || r instanceof FsError ? Effect.fail(r) : Effect.succeed(r))))

const kindOf = (st: fs.Stats): string =>
  st.isSymbolicLink() ? "a symbolic link" : st.isDirectory() ? "a directory" : st.isFIFO() ? "a FIFO" : st.isSocket() ? "a socket" :
  st.isCharacterDevice() || st.isBlockDevice() ? "a device" : "not a file"

/** Copies `size` bytes of an open file to a new file `dest` (replacing a link or file there), mode 0644. */
const copyOpen = async (from: fsp.FileHandle, size: number, dest: string): Promise<void> => {
  await fsp.rm(dest, { force: true })
  const to = await fsp.open(dest, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644)
  try {
    const buf = Buffer.allocUnsafe(Math.min(size, 1024 * 1024) || 1)
    for (let pos = 0; pos < size;) {
      const { bytesRead } = await from.read(buf, 0, Math.min(buf.length, size - pos), pos)
      if (bytesRead === 0) break
      await to.write(buf, 0, bytesRead)
      pos += bytesRead
    }
    await to.chmod(0o644)
  } finally {
    await to.close()
  }
}

/** The RPMs of a result directory, sorted as kojid does: SRPMs, binary RPMs, and the names it ignores. */
export interface ResultNames {
  readonly srpms: ReadonlyArray<string>
  readonly rpms: ReadonlyArray<string>
  /** Not `*.rpm` and not `*.log`: kojid logs and skips them. */
  readonly unexpected: ReadonlyArray<string>
}

/**
 * The entries of a result directory by name (any kind of entry: `takeRpm` decides what is
 * acceptable), `.log` skipped as kojid does.
 */
export const resultNames = (dir: string) =>
  Effect.promise(async (): Promise<ResultNames> => {
    const names = (await fsp.readdir(dir).catch(() => [] as Array<string>)).sort()
    return {
      srpms: names.filter((f) => f.endsWith(".src.rpm")),
      rpms: names.filter((f) => f.endsWith(".rpm") && !f.endsWith(".src.rpm")),
      unexpected: names.filter((f) => !f.endsWith(".rpm") && !f.endsWith(".log"))
    }
  })

/** Takes every package of a result directory, within a total budget; binary arches checked. */
export const takeResults = (
  resultDir: string,
  outDir: string,
  options: { readonly arches?: ReadonlySet<string> | undefined; readonly maxBytes: number; readonly limitKey: string }
) =>
  Effect.gen(function*() {
    const names = yield* resultNames(resultDir)
    yield* Effect.tryPromise({ try: () => fsp.mkdir(outDir, { recursive: true, mode: 0o755 }), catch: fsError("create directory", outDir) })
    let left = options.maxBytes
    const take = (name: string, kind: RpmKind) =>
      Effect.tap(takeRpm(resultDir, name, outDir, { kind, arches: options.arches, maxBytes: left, limitKey: options.limitKey }), (t) =>
        Effect.sync(() => {
          left -= t.size
        }))
    const srpms = yield* Effect.forEach(names.srpms, (n) => take(n, "source"))
    const rpms = yield* Effect.forEach(names.rpms, (n) => take(n, "binary"))
    return { srpms, rpms, unexpected: names.unexpected }
  })

// ---------------------------------------------------------------------------------------------
// Logs

/** The last `bytes` of a file as text (the whole file when smaller); "" when it cannot be read. */
export const readTail = (file: string, bytes = 64 * 1024): Effect.Effect<string> =>
  Effect.promise(async () => {
    try {
      const handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
      try {
        const st = await handle.stat()
        if (!st.isFile()) return ""
        const want = Math.min(bytes, st.size)
        const buf = Buffer.allocUnsafe(want)
        const { bytesRead } = await handle.read(buf, 0, want, st.size - want)
        return buf.subarray(0, bytesRead).toString("utf8")
      } finally {
        await handle.close()
      }
    } catch {
      return ""
    }
  })

/**
 * Copies a log to `dest`, capped at `max` bytes (head and tail with the note between; 0 = no
 * cap); a source that is not a regular file is skipped. True when it was cut.
 */
export const copyLogCapped = (src: string, dest: string, max: number): Effect.Effect<boolean> =>
  Effect.promise(async () => {
    let handle: fsp.FileHandle
    try {
      handle = await fsp.open(src, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
    } catch {
      return false
    }
    try {
      const st = await handle.stat()
      if (!st.isFile() || path.resolve(src) === path.resolve(dest)) return false
      const cut = cutOf(st.size, max)
      await fsp.rm(dest, { force: true })
      const out = await fsp.open(dest, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644)
      try {
        const pieces = cut === undefined ? [[0, st.size] as const] : [[0, cut.head] as const, [st.size - cut.tail, cut.tail] as const]
        for (const [i, [start, length]] of pieces.entries()) {
          if (i === 1 && cut !== undefined) await out.write(truncationNote(path.basename(dest), cut.cut, max))
          const buf = Buffer.allocUnsafe(Math.min(length, 1024 * 1024) || 1)
          for (let pos = 0; pos < length;) {
            const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, length - pos), start + pos)
            if (bytesRead === 0) break
            await out.write(buf, 0, bytesRead)
            pos += bytesRead
          }
        }
        await out.chmod(0o644)
      } finally {
        await out.close()
      }
      return cut !== undefined
    } finally {
      await handle.close()
    }
  })

/**
 * `root/rel` when every component below `root` is a real directory (no link anywhere on the way),
 * else undefined: for reading a tree a package wrote, once no container writes there any more.
 */
export const realDirUnder = (root: string, rel: string): Effect.Effect<string | undefined> =>
  Effect.promise(async () => {
    let p = root
    for (const part of rel.split("/").filter((x) => x !== "" && x !== ".")) {
      if (part === "..") return undefined
      p = path.join(p, part)
      const st = await fsp.lstat(p).catch(() => undefined)
      if (st === undefined || !st.isDirectory()) return undefined
    }
    return p
  })
