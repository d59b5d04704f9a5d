/**
 * Uploads against the fake hub (koji-protocol.md §6): fast upload chunking and checks, the
 * legacy uploadFile path, name rules, and the incremental log streamer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { adler32Hexdigest } from "../../src/hub/adler32.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { type HubOptions, KojiHub, type Session } from "../../src/hub/KojiHub.js"
import { fastUpload, streamLogs, UPLOAD_BLOCKSIZE, UploadError, uploadWrapper } from "../../src/hub/Uploads.js"
import { type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"
import { tempDir } from "../support/tls.js"

const loggedIn = (fakeOptions: FakeHubOptions = {}, hubOptions: Partial<HubOptions> = {}) =>
  Effect.gen(function* () {
    const fake = yield* startFakeHub({ hosts: [{ name: "builder1", password: "pw" }], ...fakeOptions })
    const context = yield* Layer.build(KojiHub.layerWithTransport({ server: fake.url, user: "builder1", password: "pw", retryInterval: 1, ...hubOptions }))
    const session = yield* Context.get(context, KojiHub).login(true)
    const dir = yield* tempDir("adjutant-upload-")
    return { fake, session, dir }
  })

const pattern = (size: number, seed: number): Buffer => {
  const b = Buffer.alloc(size)
  let x = seed >>> 0
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

const realSleep = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

/** An open task of builder1 and its work directory `tasks/<id % 10000>/<id>`. */
const openTask = (fake: { createTask: (m: string, p: ReadonlyArray<number>, o: { assign: string }) => number }, session: Session) =>
  Effect.gen(function* () {
    const id = fake.createTask("sleep", [1], { assign: "builder1" })
    yield* hostApi(session).openTask(id)
    return `tasks/${id % 10000}/${id}`
  })

describe("fast upload", () => {
  it.scoped("a 3.5 MiB file goes up in four 1 MiB chunks (kojid's upload_blocksize) with adler32 checks, then checkUpload; bytes identical", () =>
    Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn()
      const data = pattern(3.5 * 1024 * 1024, 7)
      const local = path.join(dir, "big.rpm")
      fs.writeFileSync(local, data)
      const sent = yield* fastUpload(session, local, "cli-build/t1", "big.rpm", { blocksize: UPLOAD_BLOCKSIZE })
      assert.strictEqual(sent, data.length)
      const chunks = fake.state.calls.filter((c) => c.method === "rawUpload")
      assert.deepStrictEqual(chunks.map((c) => new URLSearchParams(c.query).get("offset")), ["0", "1048576", "2097152", "3145728"])
      for (const c of chunks) {
        const q = new URLSearchParams(c.query)
        assert.strictEqual(q.get("overwrite"), "1")
        assert.strictEqual(q.get("fileverify"), "adler32")
        assert.strictEqual(q.get("filepath"), "cli-build/t1")
      }
      const check = fake.state.calls.filter((c) => c.method === "checkUpload")
      assert.deepStrictEqual(check.map((c) => c.params), [["cli-build/t1", "big.rpm"]])
      assert.isTrue(fake.state.upload("cli-build/t1/big.rpm")!.equals(data))
    }))

  it.scoped("an empty file still sends one chunk", () =>
    Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn()
      const local = path.join(dir, "empty.log")
      fs.writeFileSync(local, "")
      assert.strictEqual(yield* fastUpload(session, local, "cli-build/t2", "empty.log"), 0)
      const chunks = fake.state.calls.filter((c) => c.method === "rawUpload")
      assert.strictEqual(chunks.length, 1)
      assert.strictEqual((chunks[0]!.result as { hexdigest: string }).hexdigest, "00000001")
      assert.strictEqual(fake.state.upload("cli-build/t2/empty.log")!.length, 0)
    }))

  it.scoped("a wrong digest in the hub's reply is an UploadError(Digest)", () =>
    Effect.gen(function* () {
      const { session, dir } = yield* loggedIn()
      const local = path.join(dir, "x.log")
      fs.writeFileSync(local, "hello\n")
      const lying: Session = { ...session, rawUpload: (a) => Effect.map(session.rawUpload(a), (r) => ({ ...r, hexdigest: "deadbeef" })) }
      const result = yield* Effect.either(fastUpload(lying, local, "cli-build/t3", "x.log"))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<unknown, unknown>).left
      assert.isTrue(error instanceof UploadError && error.reason === "Digest", String(error))
      assert.include((error as UploadError).message, adler32Hexdigest(Buffer.from("hello\n")))
    }))

  it.scoped("a chunk that needed a retry makes checkUpload verify the whole-file adler32", () =>
    Effect.gen(function* () {
      let failed = false
      const { fake, session, dir } = yield* loggedIn({
        inject: (r) => {
          if (r.methodName === "rawUpload" && !failed) {
            failed = true
            return { http: 503 }
          }
          return undefined
        }
      })
      const local = path.join(dir, "y.log")
      const data = pattern(5000, 3)
      fs.writeFileSync(local, data)
      yield* fastUpload(session, local, "cli-build/t4", "y.log")
      const check = fake.state.calls.filter((c) => c.method === "checkUpload")
      assert.deepStrictEqual(check[0]!.params, ["cli-build/t4", "y.log", { verify: "adler32", __starstar: true }])
      assert.isTrue(fake.state.upload("cli-build/t4/y.log")!.equals(data))
    }))

  it.scoped("bad names and paths are refused before anything is sent", () =>
    Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn()
      const local = path.join(dir, "z.log")
      fs.writeFileSync(local, "z")
      const before = fake.state.calls.length
      for (const [p, n] of [["cli-build/t5", "a/b.log"], ["cli-build/t5", ".hidden"], ["../escape", "z.log"], ["", "z.log"]] as const) {
        const result = yield* Effect.either(uploadWrapper(session, local, p, n))
        assert.isTrue(Either.isLeft(result) && result.left instanceof UploadError && result.left.reason === "BadName", `${p}/${n}`)
      }
      assert.strictEqual(fake.state.calls.length, before)
    }))

  it.scoped("use_fast_upload off on an old hub (checkUpload unknown): legacy uploadFile with base64 strings and sha256", () =>
    Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn(
        { inject: (r) => (r.methodName === "checkUpload" ? { fault: [1000, "Invalid method: checkUpload"] } : undefined) },
        { useFastUpload: false }
      )
      const data = pattern(2.5 * 1024 * 1024, 11)
      const local = path.join(dir, "old.rpm")
      fs.writeFileSync(local, data)
      yield* uploadWrapper(session, local, "cli-build/t6", "old.rpm")
      const calls = fake.state.calls.filter((c) => c.method === "uploadFile")
      assert.deepStrictEqual(calls.map((c) => c.params[4]), [0, 1048576, 2097152, -1])
      assert.strictEqual(typeof calls[0]!.params[5], "string", "data goes as a base64 string")
      assert.deepStrictEqual((calls[0]!.params[3] as ReadonlyArray<string>)[0], "sha256")
      assert.strictEqual(calls[3]!.params[2], data.length, "finalised with the total size")
      assert.isTrue(calls.every((c) => c.result === true))
      assert.strictEqual(fake.state.calls.filter((c) => c.method === "rawUpload").length, 0)
      assert.isTrue(fake.state.upload("cli-build/t6/old.rpm")!.equals(data))
    }))

  it.scoped("use_fast_upload off on a hub that knows checkUpload still uses fast upload (kojid's uploadWrapper)", () =>
    Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn({}, { useFastUpload: false })
      const local = path.join(dir, "w.log")
      fs.writeFileSync(local, "w")
      yield* uploadWrapper(session, local, "cli-build/t7", "w.log")
      assert.strictEqual(fake.state.calls.filter((c) => c.method === "rawUpload").length, 1)
      assert.strictEqual(fake.state.upload("cli-build/t7/w.log")!.toString(), "w")
    }))
})

describe("log streaming", () => {
  it.live("a growing log is mirrored piece by piece into the task directory; the final flush sends the tail", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn()
      const taskDir = yield* openTask(fake, session)
      const local = path.join(dir, "build.log")
      fs.writeFileSync(local, "line 1\n")
      let expected = "line 1\n"
      yield* Effect.scoped(Effect.gen(function* () {
        yield* streamLogs(session, [{ local, remote: "build.log" }], taskDir, { interval: "30 millis" })
        for (let i = 2; i <= 6; i++) {
          yield* realSleep(60)
          const more = `line ${i} ${"x".repeat(i * 20000)}\n`
          fs.appendFileSync(local, more)
          expected += more
        }
        const big = pattern(200_000, 5).toString("base64") // several 64 KiB pieces in one pass
        fs.appendFileSync(local, big)
        expected += big
        fs.appendFileSync(local, "last line\n") // likely only caught by the final flush
        expected += "last line\n"
      }))
      assert.strictEqual(fake.state.upload(`${taskDir}/build.log`)!.toString(), expected)
      const pieces = fake.state.calls.filter((c) => c.method === "rawUpload")
      const offsets = pieces.map((c) => Number(new URLSearchParams(c.query).get("offset")))
      assert.isTrue(offsets.length >= 4, `several pieces: ${offsets.join(",")}`)
      assert.isTrue(offsets.every((o, i) => i === 0 || o > offsets[i - 1]!), `offsets only grow: ${offsets.join(",")}`)
      assert.isTrue(pieces.every((c) => Number(c.result && (c.result as { size: number }).size) <= 65536))
      assert.isTrue(pieces.every((c) => new URLSearchParams(c.query).get("overwrite") === "1"))
    })))

  it.live("a truncated or replaced log is re-sent from offset 0 and ends equal to the local file", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn()
      const taskDir = yield* openTask(fake, session)
      const a = path.join(dir, "root.log")
      const b = path.join(dir, "mock_output.log")
      fs.writeFileSync(a, pattern(100_000, 1).toString("hex"))
      fs.writeFileSync(b, "first version of the output, long enough to be longer than the second\n")
      yield* Effect.scoped(Effect.gen(function* () {
        yield* streamLogs(session, [{ local: a, remote: "root.log" }, { local: b, remote: "mock_output.log" }], taskDir, { interval: "30 millis" })
        yield* realSleep(300)
        fs.writeFileSync(a, "shrunk in place\n") // same inode, smaller
        const tmp = path.join(dir, "mock_output.log.new")
        fs.writeFileSync(tmp, "second\n")
        fs.renameSync(tmp, b) // new inode
        yield* realSleep(300)
        fs.appendFileSync(b, "more after the switch\n")
      }))
      assert.strictEqual(fake.state.upload(`${taskDir}/root.log`)!.toString(), "shrunk in place\n")
      assert.strictEqual(fake.state.upload(`${taskDir}/mock_output.log`)!.toString(), "second\nmore after the switch\n")
      const restarts = fake.state.calls.filter((c) => c.method === "rawUpload" && new URLSearchParams(c.query).get("offset") === "0")
      assert.isTrue(restarts.length >= 4, "each file was sent from 0 twice")
    })))

  it.live("a digest mismatch is re-sent; upload failures never fail the scope", () =>
    Effect.scoped(Effect.gen(function* () {
      const { fake, session, dir } = yield* loggedIn()
      const taskDir = yield* openTask(fake, session)
      const local = path.join(dir, "state.log")
      fs.writeFileSync(local, "state\n")
      let lies = 1
      const flaky: Session = {
        ...session,
        rawUpload: (args) => Effect.map(session.rawUpload(args), (r) => (lies-- > 0 ? { ...r, hexdigest: "00000000" } : r))
      }
      yield* Effect.scoped(Effect.gen(function* () {
        yield* streamLogs(flaky, [{ local, remote: "state.log" }, { local: path.join(dir, "never-created.log"), remote: "x.log" }], taskDir, { interval: "30 millis", mismatchDelay: "10 millis" })
        yield* realSleep(200)
      }))
      assert.strictEqual(fake.state.upload(`${taskDir}/state.log`)!.toString(), "state\n")
      assert.strictEqual(fake.state.calls.filter((c) => c.method === "rawUpload").length, 2, "sent twice: once lied about, once verified")

      fake.setOffline(true) // the hub goes away: streaming logs a warning, the scope still closes fine
      fs.appendFileSync(local, "more\n")
      const result = yield* Effect.either(Effect.scoped(
        streamLogs(session, [{ local, remote: "state.log" }], taskDir, { interval: "30 millis", flushTimeout: "200 millis" })
      ))
      assert.isTrue(Either.isRight(result))
    })))
})
