/**
 * The buildroot cache without podman: one fill per key, reuse, LRU eviction beyond the bounds
 * (entries, bytes) that spares entries in use, pruning of entries whose repo is gone, and what a
 * crash leaves: never used, removed at start-up.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Scope, Exit } from "effect"
import { makeCache } from "../../src/buildroot/cache.js"
import { lockFile } from "../../src/buildroot/flock.js"
import { tempDir } from "./support.js"

const meta = (repoId: number) => ({ repoId, tagName: "t", brArch: "x86_64", installGroup: "build", image: "img", imageId: "id" })
const fill = (counter: { n: number }) => (staging: string) =>
  Effect.sync(() => {
    counter.n++
    mkdirSync(path.join(staging, "root"), { recursive: true })
    writeFileSync(path.join(staging, "installed.tsv"), "a\t1\t1\t(none)\tnoarch\tx\t1\t1\n")
  })

describe("buildroot cache", () => {
  it.live("fills a key once, reuses it, evicts the least recently used unused entry, prunes stale repos", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-cache-")
      const cache = makeCache(dir, 2)
      const count = { n: 0 }
      const first = yield* Effect.scoped(cache.acquire("k1", meta(1), fill(count)))
      assert.isFalse(first.warm)
      const again = yield* Effect.scoped(cache.acquire("k1", meta(1), fill(count)))
      assert.isTrue(again.warm)
      assert.strictEqual(count.n, 1)
      // k2 stays in use while k3 and k4 arrive: k1 (older, unused) goes, k2 stays.
      const held = yield* Scope.make()
      yield* cache.acquire("k2", meta(2), fill(count)).pipe(Scope.extend(held))
      yield* Effect.sleep("20 millis")
      yield* Effect.scoped(cache.acquire("k3", meta(3), fill(count)))
      yield* Effect.sleep("20 millis")
      yield* Effect.scoped(cache.acquire("k4", meta(4), fill(count)))
      const keys = (yield* cache.list).map((e) => e.key).sort()
      assert.deepStrictEqual(keys, ["k2", "k4"])
      yield* Scope.close(held, Exit.void)
      yield* cache.prune((m) => Effect.succeed(m.repoId === 2))
      assert.deepStrictEqual((yield* cache.list).map((e) => e.key), ["k4"])
    }).pipe(Effect.scoped))

  it.live("over its bound only while entries are in use: the end of a use evicts what is then unused", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-cache-")
      const cache = makeCache(dir, 1)
      const count = { n: 0 }
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      yield* cache.acquire("k1", meta(1), fill(count)).pipe(Scope.extend(first))
      yield* cache.acquire("k2", meta(2), fill(count)).pipe(Scope.extend(second))
      // k2's fill could not evict k1, in use: two entries in a cache of one.
      assert.deepStrictEqual((yield* cache.list).map((e) => e.key).sort(), ["k1", "k2"])
      yield* Scope.close(first, Exit.void)
      assert.deepStrictEqual((yield* cache.list).map((e) => e.key), ["k2"])
      yield* Scope.close(second, Exit.void)
      assert.deepStrictEqual((yield* cache.list).map((e) => e.key), ["k2"])
    }).pipe(Effect.scoped))

  it.live("with max 0 a root is filled for each use and removed afterwards", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-cache-")
      const cache = makeCache(dir, 0)
      const count = { n: 0 }
      yield* Effect.scoped(cache.acquire("k", meta(1), fill(count)))
      yield* Effect.scoped(cache.acquire("k", meta(1), fill(count)))
      assert.strictEqual(count.n, 2)
      assert.deepStrictEqual(yield* cache.list, [])
    }).pipe(Effect.scoped))

  it.live("evicts by size: the oldest unused entries go until the bytes fit", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-cache-")
      const cache = makeCache(dir, 10, { maxBytes: 2.5 * 1024 * 1024 })
      const big = (staging: string) =>
        Effect.sync(() => {
          mkdirSync(path.join(staging, "root"), { recursive: true })
          writeFileSync(path.join(staging, "root", "blob"), Buffer.alloc(1024 * 1024, 1))
          writeFileSync(path.join(staging, "installed.tsv"), "")
        })
      for (const k of ["s1", "s2", "s3", "s4"]) {
        yield* Effect.scoped(cache.acquire(k, meta(1), big))
        yield* Effect.sleep("20 millis")
      }
      const left = yield* cache.list
      assert.deepStrictEqual(left.map((e) => e.key), ["s3", "s4"])
      for (const e of left) assert.isAtLeast(e.meta.bytes ?? 0, 1024 * 1024)
    }).pipe(Effect.scoped))

  it.live("a half-written entry is never used and what a crash left is removed at start-up, but not a fill in progress", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("adjutant-cache-")
      const cache = makeCache(dir, 4)
      const count = { n: 0 }
      // A crash between the fill and its commit of an older version: a root without meta.
      mkdirSync(path.join(dir, "khalf", "root"), { recursive: true })
      writeFileSync(path.join(dir, "khalf", "installed.tsv"), "")
      // Crashed fills (no process holds their fill lock) and one in progress elsewhere.
      mkdirSync(path.join(dir, ".fill-kcrash-4242-0badcafe", "root"), { recursive: true })
      mkdirSync(path.join(dir, ".fill-kbusy-4343-0ddba11a", "root"), { recursive: true })
      mkdirSync(path.join(dir, ".locks"), { recursive: true })
      yield* lockFile(path.join(dir, ".locks", "kbusy.fill"), "exclusive")
      // Filled in an earlier boot and never flushed: its files may be empty after a power loss.
      yield* Effect.scoped(cache.acquire("kboot", meta(2), fill(count)))
      const metaFile = path.join(dir, "kboot", "meta.json")
      writeFileSync(metaFile, JSON.stringify({ ...JSON.parse(readFileSync(metaFile, "utf8")), bootId: "another-boot", synced: false }))
      const report = yield* cache.recover
      assert.sameMembers([...report.removed], [".fill-kcrash-4242-0badcafe", "khalf", "kboot"])
      const names = readdirSync(dir)
      assert.include(names, ".fill-kbusy-4343-0ddba11a")
      assert.notInclude(names, "khalf")
      assert.isFalse(names.some((n) => n.startsWith(".trash-")))
      // The key of the half-written entry is filled anew, never taken as it was.
      const entry = yield* Effect.scoped(cache.acquire("khalf", meta(3), fill(count)))
      assert.isFalse(entry.warm)
      assert.isTrue(existsSync(path.join(dir, "khalf", "meta.json")))
    }).pipe(Effect.scoped))
})
