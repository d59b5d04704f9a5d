import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, FastCheck as fc, Stream } from "effect"
import { collectOutput, demuxAll, demuxStream, emptyDemux, type LogFrame, makeOutputCollector, pushChunk } from "../../src/containers/demux.js"

const frame = (stream: 1 | 2, payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(8 + payload.length)
  out[0] = stream
  new DataView(out.buffer).setUint32(4, payload.length)
  out.set(payload, 8)
  return out
}

const join = (parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts))

const plain = (frames: Iterable<LogFrame>) => [...frames].map((f) => [f.stream, Buffer.from(f.data).toString("latin1")])

const pushAll = (chunks: ReadonlyArray<Uint8Array>) => {
  let state = emptyDemux
  const out: Array<LogFrame> = []
  for (const c of chunks) {
    const [next, frames] = pushChunk(state, c)
    state = next
    out.push(...frames)
  }
  return { out, pending: state.pending.length }
}

describe("demux", () => {
  const bytes = join([
    frame(1, Buffer.from("to-stdout\n")),
    frame(2, Buffer.from("to-stderr\n")),
    frame(1, new Uint8Array(0)),
    frame(1, Buffer.from("x".repeat(300)))
  ])
  const expected = [
    ["stdout", "to-stdout\n"],
    ["stderr", "to-stderr\n"],
    ["stdout", ""],
    ["stdout", "x".repeat(300)]
  ]

  it("decodes the example bytes of podman-notes §5.3", () => {
    const example = Buffer.from("01000000000000" + "0a", "hex")
    assert.deepStrictEqual(plain(demuxAll(join([example, Buffer.from("to-stdout\n")]))), [["stdout", "to-stdout\n"]])
    assert.deepStrictEqual(plain(demuxAll(bytes)), expected)
  })

  it("gives the same frames for every split into two chunks, headers split included", () => {
    for (let i = 0; i <= bytes.length; i++) {
      const { out, pending } = pushAll([bytes.subarray(0, i), bytes.subarray(i)])
      assert.deepStrictEqual(plain(out), expected, `split at ${i}`)
      assert.strictEqual(pending, 0)
    }
  })

  it("keeps an incomplete frame pending until its last byte", () => {
    const { out, pending } = pushAll([...bytes.subarray(0, bytes.length - 1)].map((b) => Uint8Array.of(b)))
    assert.deepStrictEqual(plain(out), expected.slice(0, 3))
    assert.strictEqual(pending, 8 + 299)
  })

  it("property: any chunking of any frames decodes to those frames", () => {
    const arbFrame = fc.tuple(fc.constantFrom<1 | 2>(1, 2), fc.uint8Array({ maxLength: 40 }))
    fc.assert(
      fc.property(fc.array(arbFrame, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
        const all = join(frames.map(([s, p]) => frame(s, p)))
        const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b)
        const chunks: Array<Uint8Array> = []
        let prev = 0
        for (const p of points) {
          chunks.push(all.subarray(prev, p))
          prev = p
        }
        chunks.push(all.subarray(prev))
        const { out, pending } = pushAll(chunks)
        assert.strictEqual(pending, 0)
        assert.deepStrictEqual(
          out.map((f) => [f.stream, [...f.data]]),
          frames.map(([s, p]) => [s === 1 ? "stdout" : "stderr", [...p]])
        )
      })
    )
  })

  it.effect("demuxStream decodes a byte stream chunked arbitrarily", () =>
    Effect.gen(function* () {
      const chunks = [bytes.subarray(0, 3), bytes.subarray(3, 20), bytes.subarray(20, 21), bytes.subarray(21)]
      const out = yield* Stream.runCollect(demuxStream(Stream.fromIterable(chunks)))
      assert.deepStrictEqual(plain(Chunk.toReadonlyArray(out)), expected)
    }))

  it("collectOutput keeps streams apart and a UTF-8 character split across frames whole", () => {
    const euro = Buffer.from("€") // 3 bytes
    const frames = demuxAll(
      join([frame(1, euro.subarray(0, 1)), frame(2, Buffer.from("err")), frame(1, euro.subarray(1)), frame(1, Buffer.from("!"))])
    )
    assert.deepStrictEqual(collectOutput(frames), { stdout: "€!", stderr: "err" })
  })

  it("the output collector keeps the last maxBytes of each stream and says how much it dropped", () => {
    const c = makeOutputCollector(10)
    for (const f of demuxAll(join([frame(1, Buffer.from("0123456")), frame(2, Buffer.from("e")), frame(1, Buffer.from("789abcdef"))]))) c.push(f)
    assert.deepStrictEqual(c.output(), { stdout: "[koji-adjutant: 6 earlier bytes of stdout dropped]\n6789abcdef", stderr: "e" })
    const small = makeOutputCollector(100)
    small.push({ stream: "stdout", data: Buffer.from("ok") })
    assert.deepStrictEqual(small.output(), { stdout: "ok", stderr: "" })
  })
})
