/**
 * The buildroot cache without podman: one fill per key, reuse, LRU eviction beyond the bound
 * that spares entries in use, and pruning of entries whose repo is gone.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Scope, Exit } from "effect"
import { makeCache } from "../../src/buildroot/cache.js"
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
})
