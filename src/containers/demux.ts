import { Chunk, Stream } from "effect"

/** One frame of podman's multiplexed stdout/stderr stream (podman-notes §5.3). */
export interface LogFrame {
  readonly stream: "stdout" | "stderr"
  readonly data: Uint8Array
}

/** Bytes received but not yet forming a whole frame. */
export interface DemuxState {
  readonly pending: Uint8Array
}

/** The state before any byte arrived. */
export const emptyDemux: DemuxState = { pending: new Uint8Array(0) }

const HEADER = 8

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  if (a.length === 0) return b
  if (b.length === 0) return a
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/** Feeds one chunk: returns the new state and every frame completed by it (frames may span chunks). */
export const pushChunk = (
  state: DemuxState,
  chunk: Uint8Array
): readonly [DemuxState, ReadonlyArray<LogFrame>] => {
  const buf = concat(state.pending, chunk)
  const frames: Array<LogFrame> = []
  let i = 0
  while (i + HEADER <= buf.length) {
    const size = ((buf[i + 4]! << 24) >>> 0) + (buf[i + 5]! << 16) + (buf[i + 6]! << 8) + buf[i + 7]!
    if (i + HEADER + size > buf.length) break
    // Stream 2 is stderr; 1 is stdout and 0 (stdin echo) is reported with stdout.
    frames.push({ stream: buf[i] === 2 ? "stderr" : "stdout", data: buf.subarray(i + HEADER, i + HEADER + size) })
    i += HEADER + size
  }
  return [{ pending: i === buf.length ? emptyDemux.pending : buf.slice(i) }, frames]
}

/** Decodes a whole multiplexed body at once; an incomplete trailing frame is dropped. */
export const demuxAll = (bytes: Uint8Array): ReadonlyArray<LogFrame> => pushChunk(emptyDemux, bytes)[1]

/** Turns a stream of raw bytes into a stream of frames. */
export const demuxStream = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<LogFrame, E, R> =>
  bytes.pipe(
    Stream.mapAccum(emptyDemux, (state, chunk) => {
      const [next, frames] = pushChunk(state, chunk)
      return [next, Chunk.unsafeFromArray(frames)] as const
    }),
    Stream.flattenChunks
  )

/** Text of stdout and stderr, kept apart. */
export interface Output {
  readonly stdout: string
  readonly stderr: string
}

/** Joins frames into the stdout and stderr text (UTF-8; a character split across frames is kept whole). */
export const collectOutput = (frames: Iterable<LogFrame>): Output => {
  const out: Array<Uint8Array> = []
  const err: Array<Uint8Array> = []
  for (const f of frames) (f.stream === "stderr" ? err : out).push(f.data)
  return { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }
}

/** Collects output frames, keeping the last `maxBytes` of each stream (the end of a log says why it failed). */
export interface OutputCollector {
  readonly push: (frame: LogFrame) => void
  /** The text so far; a stream that overflowed starts with a line saying how many bytes were dropped. */
  readonly output: () => Output
}

/** An OutputCollector bounded to `maxBytes` per stream. */
export const makeOutputCollector = (maxBytes: number): OutputCollector => {
  const make = () => ({ parts: [] as Array<Uint8Array>, size: 0, dropped: 0 })
  const streams = { stdout: make(), stderr: make() }
  const push = (frame: LogFrame) => {
    const s = streams[frame.stream]
    s.parts.push(frame.data)
    s.size += frame.data.length
    while (s.size > maxBytes && s.parts.length > 0) {
      const first = s.parts[0]!
      const excess = s.size - maxBytes
      if (first.length <= excess) {
        s.parts.shift()
        s.size -= first.length
        s.dropped += first.length
      } else {
        s.parts[0] = first.subarray(excess)
        s.size -= excess
        s.dropped += excess
      }
    }
  }
  const text = (s: ReturnType<typeof make>, name: string) =>
    (s.dropped > 0 ? `[koji-adjutant: ${s.dropped} earlier bytes of ${name} dropped]\n` : "") +
    Buffer.concat(s.parts).toString("utf8")
  return { push, output: () => ({ stdout: text(streams.stdout, "stdout"), stderr: text(streams.stderr, "stderr") }) }
}
