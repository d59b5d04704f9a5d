/**
 * Uploads to the hub's work area (koji-protocol.md §6): fast `rawUpload` in 8 MiB chunks with
 * adler32 checks, the legacy base64 `uploadFile`, kojid's `uploadWrapper` choice between them,
 * and the incremental log streamer that mirrors growing log files while a command runs.
 *
 * A fast upload loses nothing to a flaky hub: a chunk whose request failed is re-sent by the
 * session's retries (the same bytes at the same offset), a chunk the hub stored wrong or could
 * not lock is sent again, and when `checkUpload` finds the file missing, short or with the wrong
 * adler32 the whole file goes up again — where kojid would fail the task.
 */
import { Duration, Effect, Either, Schedule, Schema, type Scope } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as nodePath from "node:path"
import { adler32Combine, adler32Hex, adler32Hexdigest, adler32Update } from "./adler32.js"
import { type Fault, GenericError, LockError } from "../koji/faults.js"
import { hostApi } from "./HostApi.js"
import type { HubError } from "./HubError.js"
import type { Session } from "./KojiHub.js"

/** An upload was refused locally, or the hub's answer did not match what was sent. */
export class UploadError extends Schema.TaggedError<UploadError>()("UploadError", {
  reason: Schema.Literal("BadName", "Digest", "Size", "Missing", "LocalFile", "Rejected"),
  file: Schema.String,
  message: Schema.String
}) {}

/** koji's `upload_blocksize` default: the chunk of the legacy `uploadFile`, whose base64 XML grows with it. */
export const UPLOAD_BLOCKSIZE = 1048576
/**
 * The chunk of a fast upload: 8 MiB where kojid sends 1 MiB. The hub's rawUpload has no cap and
 * reads the body in 64 KiB pieces, so its memory does not grow with the chunk; every chunk is a
 * round trip and a call (session lock, callnum, reply, digest check), which 8 MiB makes an eighth
 * as many of — against a remote hub the round trips dominate (scripts/bench/upload measures 1 and
 * 8 MiB). The cost: a chunk re-sent after a fault is 8 MiB, and an upload holds two chunks.
 */
export const FAST_UPLOAD_BLOCKSIZE = 8 * 1048576
/** Chunk size of kojid's incremental log upload. */
export const LOG_CHUNK_SIZE = 65536

/** Options of a whole-file upload. */
export interface UploadOptions {
  /** Truncate/replace an existing file (default true, as kojid's uploadWrapper). */
  readonly overwrite?: boolean | undefined
  readonly volume?: string | undefined
  /** Chunk size: FAST_UPLOAD_BLOCKSIZE for `rawUpload`, UPLOAD_BLOCKSIZE for the legacy `uploadFile`. */
  readonly blocksize?: number | undefined
  /** Sends of one chunk whose reply does not match it, or that the hub could not lock (default 4). */
  readonly chunkTries?: number | undefined
  /** Whole-file passes when `checkUpload` finds the file wrong (default 3). */
  readonly filePasses?: number | undefined
  /** Wait before sending a chunk again after LockError: an earlier send may still hold the file (default 1 s). */
  readonly lockRetryDelay?: Duration.DurationInput | undefined
}

/**
 * The hub's rules for upload names and paths (§6.1), checked before anything is sent:
 * the name has no `/` and does not start with `.`; the path, normalised, is not empty and does
 * not climb out with `..`.
 */
export const checkUploadTarget = (path: string, name: string): Effect.Effect<void, UploadError> => {
  const file = `${path}/${name}`
  if (name === "" || name.includes("/") || name.startsWith(".")) {
    return Effect.fail(new UploadError({ reason: "BadName", file, message: `invalid upload name ${JSON.stringify(name)}: it must not contain '/' or start with '.'` }))
  }
  const normalised = nodePath.posix.normalize(path)
  if (path === "" || normalised === "." || normalised.startsWith("..") || normalised.startsWith("/")) {
    return Effect.fail(new UploadError({ reason: "BadName", file, message: `invalid upload path ${JSON.stringify(path)}: it must be a relative path inside the work area` }))
  }
  return Effect.void
}

const localError = (file: string) => (cause: unknown) =>
  new UploadError({ reason: "LocalFile", file, message: `cannot read ${file}: ${cause instanceof Error ? cause.message : String(cause)}` })

/** A local file open for reading, and its size when it was opened. */
interface LocalFile {
  readonly fd: number
  readonly size: number
}

/**
 * Opens a local file for the scope. open, fstat and close are synchronous: each is one cheap
 * system call on the builder's own disk, where a trip through libuv's thread pool costs more
 * than the call — per small file, more than its upload (scripts/bench/upload). Reads stay
 * asynchronous and overlap the hub calls.
 */
const openLocal = (file: string): Effect.Effect<LocalFile, UploadError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const fd = fs.openSync(file, "r")
        try {
          return { fd, size: fs.fstatSync(fd).size }
        } catch (e) {
          fs.closeSync(fd)
          throw e
        }
      },
      catch: localError(file)
    }),
    ({ fd }) =>
      Effect.sync(() => {
        try {
          fs.closeSync(fd)
        } catch {
          // Only a descriptor that is already closed fails to close: nothing to release.
        }
      })
  )

const PROBE_BYTES = 64 * 1024

/**
 * Up to `length` bytes at `position`. The buffer is sized by what the file is expected to hold
 * there (`size` from fstat; a small probe past it, so a growing file is still read to EOF):
 * a fresh zeroed 1 MiB block per read — two per small file — cost more than the hub calls
 * when a task uploads a repodata directory (scripts/bench/createrepo).
 */
const readAt = (local: LocalFile, file: string, position: number, length: number) =>
  Effect.async<Buffer, UploadError>((resume) => {
    const want = Math.min(length, local.size > position ? local.size - position : PROBE_BYTES)
    const buffer = Buffer.allocUnsafe(want)
    fs.read(local.fd, buffer, 0, want, position, (error, bytesRead) => {
      resume(error === null ? Effect.succeed(buffer.subarray(0, bytesRead)) : Effect.fail(localError(file)(error)))
    })
  })

const ADLER32_SLICE = 256 * 1024

/**
 * A chunk's adler32, in 256 KiB slices with a turn of the event loop between them. It runs while
 * the chunk's request is in flight, and an 8 MiB body does not fit in the socket's buffers: summed
 * in one go (9 ms) it would hold the rest of the body back from the hub for as long.
 */
const adler32Yielding = (bytes: Uint8Array): Effect.Effect<number> =>
  Effect.gen(function* () {
    let sum = 1
    for (let at = 0; at < bytes.length; at += ADLER32_SLICE) {
      if (at > 0) yield* Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))
      sum = adler32Update(sum, bytes.subarray(at, at + ADLER32_SLICE))
    }
    return sum
  })

const volumeOf = (volume: string | undefined): string | undefined => (volume === undefined || volume === "DEFAULT" ? undefined : volume)

/** What every whole-file upload starts with: the target checked, then its chunk size, volume and `path/name`. */
const uploadTarget = (path: string, name: string, options: UploadOptions, defaultBlocksize: number) =>
  Effect.as(checkUploadTarget(path, name), {
    blocksize: options.blocksize ?? defaultBlocksize,
    volume: volumeOf(options.volume),
    remote: `${path}/${name}`
  })

/** How one pass of a fast upload ended: sent and verified, or refuted by `checkUpload`. */
type PassOutcome =
  | { readonly _tag: "Done"; readonly size: number }
  | { readonly _tag: "Refuted"; readonly error: UploadError }

/**
 * `fastUpload` (§6.1): `rawUpload` chunks at increasing offsets (at least one, even for an
 * empty file), each reply checked for size and adler32, then `checkUpload` — asking the hub for
 * the whole-file adler32 only when some chunk needed a retry — whose size must match. Unlike
 * kojid, a chunk stored wrong or refused with LockError is sent again (`chunkTries`), and a file
 * `checkUpload` refutes is uploaded again from offset 0 (`filePasses`), verified by adler32.
 */
export const fastUpload = Effect.fn("Uploads.fastUpload")(function* (
  session: Session,
  localFile: string,
  path: string,
  name: string = nodePath.basename(localFile),
  options: UploadOptions = {}
) {
  const target = yield* uploadTarget(path, name, options, FAST_UPLOAD_BLOCKSIZE)
  const passes = Math.max(1, options.filePasses ?? 3)
  for (let pass = 1; ; pass++) {
    // A later pass replaces what the hub holds, and always has the whole file checked.
    const outcome = yield* uploadPass(session, localFile, path, name, target, options, pass > 1)
    if (outcome._tag === "Done") return outcome.size
    if (pass >= passes) return yield* Effect.fail(outcome.error)
    yield* Effect.logWarning(`${outcome.error.message}; uploading ${target.remote} again (pass ${pass + 1} of ${passes})`)
  }
})

/** One pass over the file: every chunk sent and acknowledged, then `checkUpload`. */
const uploadPass = (
  session: Session,
  localFile: string,
  path: string,
  name: string,
  target: { readonly blocksize: number; readonly volume: string | undefined; readonly remote: string },
  options: UploadOptions,
  again: boolean
): Effect.Effect<PassOutcome, UploadError | Fault | HubError> =>
  Effect.scoped(Effect.gen(function* () {
    const { blocksize, volume, remote } = target
    const overwrite = again || (options.overwrite ?? true)
    const chunkTries = Math.max(1, options.chunkTries ?? 4)
    const lockRetryDelay = options.lockRetryDelay ?? Duration.seconds(1)
    const local = yield* openLocal(localFile)
    const size = local.size
    const send = (offset: number, chunk: Uint8Array) =>
      Effect.either(session.rawUpload({ path, name, offset, data: chunk, overwrite, volume }))
    let offset = 0
    let full = 1
    let problems = again
    // At least one chunk, even for an empty file.
    let chunk = yield* readAt(local, localFile, 0, blocksize)
    while (true) {
      // One call is in flight per session; while it is, this chunk's adler32 is computed and the
      // next chunk read, so neither costs time of its own (scripts/bench/upload).
      const at = offset
      const current = chunk
      const [firstSend, [sum, next]] = yield* Effect.all([
        send(at, current),
        Effect.zipRight(
          Effect.yieldNow(),
          Effect.all([
            adler32Yielding(current),
            current.length === 0 ? Effect.succeed(current) : readAt(local, localFile, at + current.length, blocksize)
          ])
        )
      ], { concurrency: 2 })
      const digest = adler32Hex(sum)
      let sent = firstSend
      for (let tries = 1; ; tries++) {
        if (Either.isLeft(sent)) {
          // LockError: an earlier send of this file (one the client gave up on) still holds the hub's lock.
          if (sent.left instanceof LockError && tries < chunkTries) {
            problems = true
            yield* Effect.logWarning(`upload of ${remote} at offset ${at}: ${sent.left.faultString}; sending the chunk again`)
            yield* Effect.sleep(lockRetryDelay)
            sent = yield* send(at, current)
            continue
          }
          return yield* Effect.fail(sent.left)
        }
        const reply = sent.right
        if (reply.attempts > 1) problems = true
        const wrong = reply.size !== current.length
          ? new UploadError({ reason: "Size", file: remote, message: `hub stored ${reply.size} bytes of a ${current.length}-byte chunk at offset ${at}` })
          : reply.hexdigest !== digest
          ? new UploadError({ reason: "Digest", file: remote, message: `upload checksum failed at offset ${at}: hub ${reply.hexdigest ?? "(none)"} != local ${digest}` })
          : undefined
        if (wrong === undefined) break
        problems = true
        if (tries >= chunkTries) return yield* Effect.fail(wrong)
        yield* Effect.logWarning(`${wrong.message}; sending the chunk again`)
        sent = yield* send(at, current)
      }
      // The whole file's adler32 from the chunks' (zlib's adler32_combine): no second pass over the bytes.
      full = at === 0 ? sum : adler32Combine(full, sum, current.length)
      offset += current.length
      if (next.length === 0) break
      chunk = next
    }
    if (offset !== size) yield* Effect.logWarning(`local file changed size while uploading: ${localFile}, ${size} -> ${offset}`)
    const check = yield* hostApi(session).checkUpload(path, name, { ...(problems ? { verify: "adler32" as const } : {}), ...(volume === undefined ? {} : { volume }) })
    const refuted = (reason: "Missing" | "Size" | "Digest", message: string): PassOutcome =>
      ({ _tag: "Refuted", error: new UploadError({ reason, file: remote, message }) })
    if (check === null) return refuted("Missing", `file upload failed: the hub has no ${remote}`)
    if (Number(check.size) !== offset) return refuted("Size", `uploaded file is wrong length: ${String(check.size)} != ${offset}`)
    if (problems && check.hexdigest !== adler32Hex(full)) {
      return refuted("Digest", `uploaded file has wrong checksum: ${check.hexdigest ?? "(none)"} != ${adler32Hex(full)}`)
    }
    return { _tag: "Done", size: offset }
  }))

/**
 * Legacy `uploadFile` (§6.2): base64 chunks sent as XML-RPC *strings* with `["sha256", hex]`,
 * each retried while the hub answers false (koji: up to 4 more times), finalised with
 * offset -1, the total size and the whole-file digest.
 */
export const uploadFileLegacy = Effect.fn("Uploads.uploadFileLegacy")(function* (
  session: Session,
  localFile: string,
  path: string,
  name: string = nodePath.basename(localFile),
  options: UploadOptions = {}
) {
  const { blocksize, volume, remote } = yield* uploadTarget(path, name, options, UPLOAD_BLOCKSIZE)
  const api = hostApi(session)
  return yield* Effect.scoped(Effect.gen(function* () {
    const local = yield* openLocal(localFile)
    const whole = createHash("sha256")
    let offset = 0
    while (true) {
      const chunk = yield* readAt(local, localFile, offset, blocksize)
      whole.update(chunk)
      const last = chunk.length === 0
      const digest = last ? whole.digest("hex") : createHash("sha256").update(chunk).digest("hex")
      const data = Buffer.from(chunk).toString("base64")
      const sendOffset = last ? -1 : offset
      const sendSize = last ? offset : chunk.length
      let ok = false
      for (let tries = 0; tries <= 4 && !ok; tries++) {
        ok = yield* api.uploadFile(path, name, sendSize, ["sha256", digest], sendOffset, data, volume)
      }
      if (!ok) {
        return yield* Effect.fail(new UploadError({ reason: "Rejected", file: remote, message: `error uploading file ${remote}, offset ${sendOffset}: the hub kept rejecting the chunk's checksum` }))
      }
      if (last) return offset
      offset += chunk.length
    }
  }))
})

/**
 * kojid's `uploadWrapper` (§6.1): fast upload when `use_fast_upload` is on; otherwise probe
 * `checkUpload` — a hub that knows it gets the fast upload anyway — and fall back to
 * `uploadFile` only when the probe is refused with GenericError (hubs before 1.7.1).
 */
export const uploadWrapper = Effect.fn("Uploads.uploadWrapper")(function* (
  session: Session,
  localFile: string,
  path: string,
  name: string = nodePath.basename(localFile),
  options: UploadOptions = {}
) {
  if (session.useFastUpload) return yield* fastUpload(session, localFile, path, name, options)
  yield* checkUploadTarget(path, name)
  const volume = volumeOf(options.volume)
  const probe = yield* Effect.either(hostApi(session).checkUpload(path, name, volume === undefined ? {} : { volume }))
  if (probe._tag === "Left" && probe.left instanceof GenericError) {
    return yield* uploadFileLegacy(session, localFile, path, name, options)
  }
  if (probe._tag === "Left") return yield* Effect.fail(probe.left)
  return yield* fastUpload(session, localFile, path, name, options)
})

// ---------------------------------------------------------------------------------------------
// Incremental log streaming (§6.3)

/** A local log file and the name it gets in the task directory on the hub. */
export interface StreamedLog {
  readonly local: string
  readonly remote: string
}

/** Options of `streamLogs`. */
export interface StreamLogsOptions {
  /** Time between passes (kojid: about one second). */
  readonly interval?: Duration.DurationInput | undefined
  /** Sleep before re-sending a chunk whose digest did not match (kojid: 10 s). */
  readonly mismatchDelay?: Duration.DurationInput | undefined
  /** Re-sends of a chunk with a wrong digest (kojid: 5). */
  readonly mismatchRetries?: number | undefined
  /** Bound for the final flush when the scope closes. */
  readonly flushTimeout?: Duration.DurationInput | undefined
  readonly chunkSize?: number | undefined
  /**
   * Bytes of each log that reach the hub (`[adjutant] log_max_size`; 0 = all): a log over it is
   * streamed up to half of it, and its last half follows the truncation note at the final flush.
   */
  readonly maxBytes?: number | undefined
}

interface FileCursor {
  position: number
  ino: number | undefined
  /** The note and the tail of a capped log went up (final flush). */
  tailSent: boolean
}

/** The line put where a capped log was cut. */
export const truncationNote = (name: string, cut: number, max: number): string =>
  `\n[koji-adjutant: ${cut} bytes of ${name} were cut here: the log is over log_max_size (${max} bytes); its head and tail are kept]\n`

/**
 * Where a log of `size` bytes over `max` is cut: its first `head` and last `tail` bytes are kept
 * (half each) and `cut` bytes between them dropped; undefined when it fits (or `max` is 0).
 */
export const cutOf = (size: number, max: number): { readonly head: number; readonly tail: number; readonly cut: number } | undefined => {
  if (max <= 0 || size <= max) return undefined
  const head = Math.floor(max / 2)
  const tail = max - head
  return { head, tail, cut: size - head - tail }
}

/**
 * Mirrors `files` into `taskDir` on the hub while the scope is open: about every second each
 * file is read from where the last pass stopped to EOF in 64 KiB pieces, each sent with
 * `rawUpload(overwrite=true, offset)`; a file that shrank or was replaced (new inode) is sent
 * again from 0 (overwrite truncates it on the hub). A final pass runs when the scope closes.
 * Upload problems are logged and never fail the task.
 */
export const streamLogs = (
  session: Session,
  files: ReadonlyArray<StreamedLog>,
  taskDir: string,
  options: StreamLogsOptions = {}
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const chunkSize = options.chunkSize ?? LOG_CHUNK_SIZE
    const mismatchDelay = options.mismatchDelay ?? Duration.seconds(10)
    const mismatchRetries = options.mismatchRetries ?? 5
    const cursors = new Map<string, FileCursor>()
    const valid: Array<StreamedLog> = []
    for (const f of files) {
      const ok = yield* Effect.either(checkUploadTarget(taskDir, f.remote))
      if (ok._tag === "Left") yield* Effect.logWarning(`not streaming ${f.local}: ${ok.left.message}`)
      else valid.push(f)
    }

    const sendChunk = (f: StreamedLog, offset: number, data: Uint8Array): Effect.Effect<void, Fault | HubError> =>
      Effect.gen(function* () {
        const digest = adler32Hexdigest(data)
        for (let tries = 0; ; tries++) {
          const reply = yield* session.rawUpload({ path: taskDir, name: f.remote, offset, data, overwrite: true })
          if (reply.hexdigest === digest) return
          if (tries >= mismatchRetries) {
            yield* Effect.logError(`Error uploading file ${f.remote} to ${taskDir} at offset ${offset}: digest ${reply.hexdigest ?? "(none)"} != ${digest}`)
            return
          }
          yield* Effect.sleep(mismatchDelay)
        }
      })

    const maxBytes = options.maxBytes ?? 0
    /** Set by the final flush: capped logs then get their note and tail. */
    let finishing = false

    /** Sends `[from, to)` of the open file to the hub at `at`. */
    const sendRange = (f: StreamedLog, local: LocalFile, from: number, to: number, at: number) =>
      Effect.gen(function* () {
        for (let pos = from; pos < to;) {
          const chunk = yield* readAt(local, f.local, pos, Math.min(chunkSize, to - pos))
          if (chunk.length === 0) return pos
          yield* sendChunk(f, at + (pos - from), chunk)
          pos += chunk.length
        }
        return to
      })

    const passOne = (f: StreamedLog): Effect.Effect<void> =>
      Effect.gen(function* () {
        const stat = yield* Effect.either(Effect.tryPromise(() => fsp.stat(f.local)))
        if (stat._tag === "Left") return // not created yet
        const size = stat.right.size
        const cursor = cursors.get(f.local) ?? { position: 0, ino: undefined, tailSent: false }
        cursors.set(f.local, cursor)
        if ((cursor.ino !== undefined && stat.right.ino !== cursor.ino) || size < cursor.position) {
          cursor.position = 0
          cursor.tailSent = false
        }
        cursor.ino = stat.right.ino
        const cut = cutOf(size, maxBytes)
        const limit = cut === undefined ? size : cut.head
        if (cursor.position >= limit && (cut === undefined || !finishing || cursor.tailSent)) return
        yield* Effect.scoped(Effect.gen(function* () {
          const local = yield* openLocal(f.local)
          cursor.position = yield* sendRange(f, local, cursor.position, limit, cursor.position)
          if (cut === undefined || !finishing || cursor.tailSent || cursor.position < cut.head) return
          const note = new TextEncoder().encode(truncationNote(f.remote, cut.cut, maxBytes))
          yield* sendChunk(f, cut.head, note)
          yield* sendRange(f, local, size - cut.tail, size, cut.head + note.length)
          cursor.tailSent = true
          yield* Effect.logWarning(`${f.remote} is ${size} bytes: only its first ${cut.head} and last ${cut.tail} bytes were uploaded (log_max_size)`)
        }))
      }).pipe(
        Effect.catchAll((error) => {
          // A lost log piece must not fail the task (kojid logs and goes on); the next pass resumes here.
          const message = `log upload of ${f.local} to ${taskDir}/${f.remote} failed: ${error instanceof Error ? error.message : String(error)}`
          // 1004 "host N does not own task M" is expected once a task was canceled (§13).
          return error._tag === "ActionNotAllowed" ? Effect.logDebug(message) : Effect.logWarning(message)
        }),
        Effect.annotateLogs({ logFile: f.remote })
      )

    const pass = Effect.forEach(valid, passOne, { discard: true })

    yield* Effect.addFinalizer(() =>
      // Finalizers run uninterruptibly; the flush must stay interruptible for its timeout to bite.
      Effect.interruptible(Effect.zipRight(Effect.sync(() => {
        finishing = true
      }), pass)).pipe(
        Effect.timeout(options.flushTimeout ?? Duration.minutes(2)),
        Effect.catchAll(() => Effect.logWarning(`final log flush to ${taskDir} timed out`))
      )
    )
    yield* Effect.forkScoped(Effect.repeat(pass, Schedule.spaced(options.interval ?? Duration.seconds(1))))
  })
