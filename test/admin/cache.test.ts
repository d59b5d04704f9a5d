/**
 * `koji-adjutant cache list|prune|clear` (issue 14 §6, issue 15 §3) on a real cache directory made
 * by the cache's own `acquire`, beside a "running task" in another process: a child holding one
 * entry as a daemon's task does (the cache's use lock, shared). list marks it in use, prune keeps
 * it (and removes what a crashed fill left, and what buildroot_cache_max_bytes does not allow),
 * clear refuses while it is held and empties the cache once the holder is gone.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cacheCommand, pruneSelection } from "../../src/admin/cache.js"
import { type CacheMeta, makeCache } from "../../src/buildroot/cache.js"
import { tempDir } from "../buildroot/support.js"
import { ensureBuilt } from "../daemon/child.js"
import { runAdmin } from "./support.js"

const meta = (repoId: number, bytes = 0): CacheMeta => ({
  key: `k${repoId}`, repoId, tagName: "f41-build", brArch: "x86_64", installGroup: "build", image: "localhost/img:1", imageId: "sha", created: 1, bytes
})

describe("pruneSelection", () => {
  it("keeps entries in use, removes leftovers, stale repos and the oldest beyond either bound", () => {
    const entries = [
      { key: "k1", meta: meta(1, 100), used: 1, complete: true },
      { key: "k2", meta: meta(2, 100), used: 2, complete: true },
      { key: "k3", meta: meta(3, 100), used: 3, complete: true },
      { key: "k4", meta: meta(4, 100), used: 4, complete: true }
    ]
    assert.deepStrictEqual([...pruneSelection(entries, new Set(["k1"]), { max: 3, maxBytes: 0 }, new Set()).keys()], ["k2"])
    const bySize = pruneSelection(entries, new Set(), { max: 10, maxBytes: 250 }, new Set(["k4"]))
    assert.deepStrictEqual([...bySize.keys()], ["k1", "k2", "k4"])
    assert.match(bySize.get("k1") ?? "", /beyond buildroot_cache_max_bytes/)
    assert.match(bySize.get("k4") ?? "", /repo 4 is no longer READY/)
  })
})

/** A process holding entry `key` of the cache in `dir` (a task's use) until killed; it prints "held". */
const holder = (dir: string, key: string) =>
  Effect.acquireRelease(
    Effect.async<ChildProcess>((resume) => {
      const code = `
        import { Effect } from "effect"
        import { makeCache } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../dist/buildroot/cache.js"))}
        Effect.runFork(Effect.scoped(Effect.gen(function* () {
          const entry = yield* makeCache(${JSON.stringify(dir)}, 10).hold(${JSON.stringify(key)})
          console.log(entry === undefined ? "missing" : "held")
          yield* Effect.never
        })))`
      const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"], cwd: path.resolve(import.meta.dirname, "../..") })
      child.stdout?.on("data", (b: Buffer) => {
        if (b.toString().includes("held")) resume(Effect.succeed(child))
      })
    }),
    (child) => Effect.sync(() => void child.kill("SIGKILL"))
  )

const entries = (dir: string) => readdirSync(dir).filter((n) => !n.startsWith(".")).sort()

describe("cache commands", () => {
  beforeAll(() => ensureBuilt(), 180_000)

  it.scopedLive("list, prune and clear beside another process that holds one entry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("adjutant-admin-cache-")
      const cacheDir = path.join(dir, "cache")
      const conf = path.join(dir, "kojid.conf")
      writeFileSync(conf, `[kojid]\nserver = http://127.0.0.1:9/kojihub\ntopurl = http://127.0.0.1:9/kojifiles\n[adjutant]\nbuildroot_cache_dir = ${cacheDir}\nbuildroot_cache_max = 2\n`)
      const cache = makeCache(cacheDir, 10)
      const keys = ["k1_oldest", "k2_held", "k3", "k4_newest"]
      for (const [i, key] of keys.entries()) {
        yield* Effect.scoped(cache.acquire(key, { repoId: 100 + i, tagName: "f41-build", brArch: "x86_64", installGroup: "build", image: "localhost/img:1", imageId: "sha" }, (staging) =>
          Effect.sync(() => {
            mkdirSync(path.join(staging, "root", "usr"), { recursive: true })
            writeFileSync(path.join(staging, "root", "usr", "marker"), key)
            writeFileSync(path.join(staging, "installed.tsv"), "")
          })))
        const t = new Date(Date.now() - (keys.length - i) * 3600_000)
        utimesSync(path.join(cacheDir, key, "meta.json"), t, t)
      }
      // What a fill killed half-way leaves: a staging directory whose fill lock no one holds.
      mkdirSync(path.join(cacheDir, ".fill-k5-4242-deadbeef", "root"), { recursive: true })
      const task = yield* holder(cacheDir, "k2_held")
      // Its last use long ago, so that only the lock keeps it from the least-recently-used rule.
      const long = new Date(Date.now() - 10 * 3600_000)
      utimesSync(path.join(cacheDir, "k2_held", "meta.json"), long, long)

      const list = yield* runAdmin(cacheCommand, ["list", "-c", conf])
      assert.strictEqual(list.status, 0, list.stderr)
      assert.match(list.stdout, new RegExp(`^${cacheDir}: 4 of at most 2 entries, .*, 1 in use$`, "m"))
      const rows = list.stdout.split("\n").slice(2).filter((r) => r !== "")
      assert.deepStrictEqual(rows.map((r) => r.split(/\s+/)[0]), ["k4_newest", "k3", "k1_oldest", "k2_held"], "most recent use first")
      assert.match(rows.find((r) => r.startsWith("k2_held")) ?? "", /f41-build\s+x86_64\s+build\s+localhost\/img:1\s+fill\s+.*yes$/)
      assert.match(rows.find((r) => r.startsWith("k3")) ?? "", /-$/)

      const clear = yield* runAdmin(cacheCommand, ["clear", "-c", conf])
      assert.strictEqual(clear.status, 1)
      assert.match(clear.stderr, /\[ERROR\] koji\.admin: cache clear: 1 cached buildroot is in use by running tasks \(k2_held\); nothing removed/)
      assert.deepStrictEqual(entries(cacheDir), keys)

      const prune = yield* runAdmin(cacheCommand, ["prune", "-c", conf, "--offline"])
      assert.strictEqual(prune.status, 0, prune.stderr)
      assert.include(prune.stdout, "removed .fill-k5-4242-deadbeef: left half-written by a process that died")
      assert.include(prune.stdout, "removed k1_oldest: beyond buildroot_cache_max = 2, least recently used")
      assert.include(prune.stdout, "removed k3: beyond buildroot_cache_max = 2")
      assert.include(prune.stdout, "2 entries left, 1 in use by running tasks (kept)")
      assert.deepStrictEqual(entries(cacheDir), ["k2_held", "k4_newest"], "the held entry stays although it is the least recently used")
      assert.isFalse(readdirSync(cacheDir).some((n) => n.startsWith(".fill-") || n.startsWith(".trash-")), "leftovers and trash are gone")
      assert.isTrue(existsSync(path.join(cacheDir, "k2_held", "root", "usr", "marker")), "the holder's root is untouched")

      // The holder dies (SIGKILL): the kernel drops its lock; nothing stale to break.
      task.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((r) => task.once("exit", r)))
      const cleared = yield* runAdmin(cacheCommand, ["clear", "-c", conf])
      assert.strictEqual(cleared.status, 0, cleared.stderr)
      assert.include(cleared.stdout, "removed 2 cached buildroots")
      assert.deepStrictEqual(entries(cacheDir), [])
    }), 120_000)

  it.scopedLive("prune honours buildroot_cache_max_bytes, oldest first", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("adjutant-admin-cache-")
      const cacheDir = path.join(dir, "cache")
      const conf = path.join(dir, "kojid.conf")
      writeFileSync(conf, `[kojid]\nserver = http://127.0.0.1:9/kojihub\ntopurl = http://127.0.0.1:9/kojifiles\n[adjutant]\nbuildroot_cache_dir = ${cacheDir}\nbuildroot_cache_max = 10\nbuildroot_cache_max_bytes = 300k\n`)
      // Entries of about 200 KiB each, measured by the cache itself (settle runs in line here).
      const cache = makeCache(cacheDir, 10)
      for (const [i, key] of ["b1", "b2", "b3"].entries()) {
        yield* Effect.scoped(cache.acquire(key, { repoId: 200 + i, tagName: "t", brArch: "x86_64", installGroup: "build", image: "i", imageId: "i" }, (staging) =>
          Effect.sync(() => {
            mkdirSync(path.join(staging, "root"), { recursive: true })
            writeFileSync(path.join(staging, "root", "blob"), Buffer.alloc(200 * 1024, 1))
            writeFileSync(path.join(staging, "installed.tsv"), "")
          })))
        const t = new Date(Date.now() - (3 - i) * 3600_000)
        utimesSync(path.join(cacheDir, key, "meta.json"), t, t)
      }
      const prune = yield* runAdmin(cacheCommand, ["prune", "-c", conf, "--offline"])
      assert.strictEqual(prune.status, 0, prune.stderr)
      assert.include(prune.stdout, "removed b1: beyond buildroot_cache_max_bytes")
      assert.include(prune.stdout, "removed b2: beyond buildroot_cache_max_bytes")
      assert.deepStrictEqual(entries(cacheDir), ["b3"])
    }), 60_000)
})
