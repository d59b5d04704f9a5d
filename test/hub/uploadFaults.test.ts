/**
 * Fast uploads under hub faults (issue 12 §2: "never loses an upload"): through the fault proxy
 * a chunk whose request failed is sent again and `checkUpload` then verifies the whole file; a
 * chunk the hub stored wrong or could not lock is sent again; a file `checkUpload` refutes goes
 * up again. Every case ends with the hub's copy byte-identical to the local file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type HubOptions, KojiHub, type Session } from "../../src/hub/KojiHub.js"
import { FAST_UPLOAD_BLOCKSIZE, fastUpload, UploadError } from "../../src/hub/Uploads.js"
import { type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"
import { type FaultSchedule, startFaultProxy } from "../support/faultProxy.js"
import { tempDir } from "../support/tls.js"

const MiB = 1024 * 1024

const pattern = (size: number, seed: number): Buffer => {
  const b = Buffer.alloc(size)
  let x = seed >>> 0
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

/** A logged-in session through the fault proxy, and a temp dir for local files. */
const setup = (schedule: FaultSchedule = {}, hubOptions: Partial<HubOptions> = {}, fakeOptions: FakeHubOptions = {}) =>
  Effect.gen(function*() {
    const fake = yield* startFakeHub({ hosts: [{ name: "builder1", password: "pw" }], ...fakeOptions })
    const proxy = yield* startFaultProxy({ upstream: fake.url, schedule, latencyMs: [5, 30] })
    const context = yield* Layer.build(KojiHub.layerWithTransport({
      server: proxy.url, user: "builder1", password: "pw", timeout: 2, maxRetries: 20, retryInterval: 0.05,
      offlineRetryInterval: 0.05, ...hubOptions
    }))
    const session = yield* Context.get(context, KojiHub).login(true)
    const dir = yield* tempDir("adjutant-upload-faults-")
    const file = (name: string, data: Buffer): string => {
      const local = path.join(dir, name)
      fs.writeFileSync(local, data)
      return local
    }
    return { fake, proxy, session, file }
  })

const offsets = (requests: ReadonlyArray<{ readonly method: string; readonly url: string }>) =>
  requests.filter((r) => r.method === "rawUpload").map((r) => Number(new URL(r.url, "http://x").searchParams.get("offset")))

describe("fast upload under hub faults", () => {
  it.live("by default a file goes up in 8 MiB chunks (FAST_UPLOAD_BLOCKSIZE), one call each, while the next is read", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, proxy, session, file } = yield* setup()
      const data = pattern(17 * MiB + 3, 9)
      yield* fastUpload(session, file("h.rpm", data), "cli-build/f8", "h.rpm")
      assert.deepStrictEqual(offsets(proxy.requests), [0, FAST_UPLOAD_BLOCKSIZE, 2 * FAST_UPLOAD_BLOCKSIZE])
      assert.strictEqual(FAST_UPLOAD_BLOCKSIZE, 8 * MiB)
      assert.isTrue(fake.state.upload("cli-build/f8/h.rpm")!.equals(data))
    })))

  it.live("a chunk whose reply was lost is sent again, and checkUpload verifies the whole file's adler32", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, proxy, session, file } = yield* setup({ rules: [{ match: "rawUpload", kind: "resetAfter", skip: 1, times: 1 }] })
      const data = pattern(3 * MiB + 17, 1)
      yield* fastUpload(session, file("a.rpm", data), "cli-build/f1", "a.rpm", { blocksize: MiB })
      assert.deepStrictEqual(offsets(proxy.requests), [0, MiB, MiB, 2 * MiB, 3 * MiB])
      const check = fake.state.calls.filter((c) => c.method === "checkUpload")
      assert.deepStrictEqual(check.map((c) => c.params), [["cli-build/f1", "a.rpm", { verify: "adler32", __starstar: true }]])
      assert.isTrue(fake.state.upload("cli-build/f1/a.rpm")!.equals(data))
    })))

  it.live("a chunk that hangs is timed out and sent again", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, proxy, session, file } = yield* setup({ rules: [{ match: "rawUpload", kind: "hang", skip: 2, times: 1 }] }, { timeout: 1 })
      const data = pattern(3 * MiB, 2)
      yield* fastUpload(session, file("b.rpm", data), "cli-build/f2", "b.rpm", { blocksize: MiB })
      assert.deepStrictEqual(offsets(proxy.requests), [0, MiB, 2 * MiB, 2 * MiB])
      assert.isTrue(fake.state.upload("cli-build/f2/b.rpm")!.equals(data))
    })))

  it.live("30 % of chunks and checks faulted by every kind, 12 files: every file byte-identical on the hub", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, proxy, session, file } = yield* setup({
        rates: { resetBefore: 0.04, resetAfter: 0.05, http500: 0.03, http502: 0.03, http503: 0.03, truncate: 0.04, notXml: 0.03, serverOffline: 0.03, latency: 0.02 },
        eligible: (r) => r.method === "rawUpload" || r.method === "checkUpload"
      })
      const sizes = [0, 1, 4095, MiB - 1, MiB, MiB + 1, 2 * MiB + 333, 65536, 300_000, 5 * MiB, 17, 3 * MiB]
      for (const [i, size] of sizes.entries()) {
        const data = pattern(size, 100 + i)
        yield* fastUpload(session, file(`f${i}.log`, data), "cli-build/f3", `f${i}.log`, { blocksize: MiB })
        assert.isTrue(fake.state.upload(`cli-build/f3/f${i}.log`)!.equals(data), `file ${i} (${size} bytes)\n${proxy.summary()}`)
      }
      // About a third of some 35 requests is faulted; at least 2 (a random seed gives fewer once in ~10^4 runs).
      assert.isAtLeast(proxy.stats().faulted, 2, proxy.summary())
    })))

  it.live("a file checkUpload finds short (the hub lost part of it) goes up again, verified", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, session, file } = yield* setup()
      const data = pattern(2 * MiB + 5, 3)
      let damaged = 0
      // The hub's copy loses its tail just before the first check, as a disk problem on the hub would do.
      const damaging: Session = {
        ...session,
        callAs: (schema, method, params, kw) =>
          Effect.suspend(() => {
            if (method === "checkUpload" && damaged++ === 0) fs.truncateSync(path.join(fake.topdir, "work", "cli-build/f4/c.rpm"), MiB)
            return session.callAs(schema, method, params, kw)
          })
      }
      yield* fastUpload(damaging, file("c.rpm", data), "cli-build/f4", "c.rpm", { blocksize: MiB })
      assert.strictEqual(damaged, 2)
      const checks = fake.state.calls.filter((c) => c.method === "checkUpload")
      assert.deepStrictEqual(checks.map((c) => c.params.length), [2, 3], "the second pass asks for the adler32")
      assert.isTrue(fake.state.upload("cli-build/f4/c.rpm")!.equals(data))
    })))

  it.live("a chunk refused with LockError (an earlier send still holds the file) is sent again", () =>
    Effect.scoped(Effect.gen(function*() {
      let rawUploads = 0
      const { fake, session, file } = yield* setup({}, {}, {
        inject: (r) => (r.methodName === "rawUpload" && ++rawUploads === 2 ? { fault: [1001, "[Errno 11] Resource temporarily unavailable"] } : undefined)
      })
      const data = pattern(2 * MiB + 1, 4)
      yield* fastUpload(session, file("d.rpm", data), "cli-build/f5", "d.rpm", { lockRetryDelay: "50 millis", blocksize: MiB })
      assert.strictEqual(fake.state.calls.filter((c) => c.method === "rawUpload").length, 4)
      assert.strictEqual(fake.state.calls.filter((c) => c.method === "checkUpload")[0]!.params.length, 3, "verified")
      assert.isTrue(fake.state.upload("cli-build/f5/d.rpm")!.equals(data))
    })))

  it.live("a chunk the hub acknowledges with the wrong adler32 is sent again; one that stays wrong fails the upload", () =>
    Effect.scoped(Effect.gen(function*() {
      const { fake, session, file } = yield* setup()
      const data = pattern(MiB + 10, 5)
      let lies = 1
      const lying = (times: number): Session => ({
        ...session,
        rawUpload: (a) => Effect.map(session.rawUpload(a), (r) => (a.offset === MiB && lies++ <= times ? { ...r, hexdigest: "deadbeef" } : r))
      })
      yield* fastUpload(lying(1), file("e.rpm", data), "cli-build/f6", "e.rpm", { blocksize: MiB })
      assert.isTrue(fake.state.upload("cli-build/f6/e.rpm")!.equals(data))
      assert.strictEqual(fake.state.calls.filter((c) => c.method === "checkUpload")[0]!.params.length, 3, "verified")
      lies = 1
      const result = yield* Effect.either(fastUpload(lying(100), file("g.rpm", data), "cli-build/f7", "g.rpm", { blocksize: MiB }))
      assert.isTrue(Either.isLeft(result) && result.left instanceof UploadError && result.left.reason === "Digest", String(result))
      assert.strictEqual(lies - 1, 4, "four sends of the chunk (chunkTries)")
    })))
})
