/**
 * One buildroot cache directory shared by several processes (issue 15 part 3): two processes
 * fill, use and evict the same three keys in a cache of one entry — no root changes or vanishes
 * while a process uses it, no key is filled twice at once — and a process's use of an entry keeps
 * it from the other's eviction and pruning, until that process dies.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeCache } from "../../src/buildroot/cache.js"
import { ensureBuilt } from "../daemon/child.js"
import { tempDir } from "./support.js"

const worker = path.join(import.meta.dirname, "cache-worker.mjs")

const runWorker = (dir: string, rounds: number, seed: number) =>
  Effect.async<{ readonly fills: number; readonly uses: number; readonly violations: ReadonlyArray<string> }, Error>((resume) => {
    const child: ChildProcess = spawn(process.execPath, [worker, dir, String(rounds), String(seed)], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout?.on("data", (b: Buffer) => void (out += b.toString()))
    child.once("exit", () => {
      try {
        resume(Effect.succeed(JSON.parse(out.trim().split("\n").pop() ?? "")))
      } catch {
        resume(Effect.fail(new Error(`worker printed: ${out}`)))
      }
    })
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

const meta = (repoId: number) => ({ repoId, tagName: "t", brArch: "x86_64", installGroup: "build", image: "img", imageId: "id" })
const fillRoot = (staging: string) =>
  Effect.sync(() => {
    mkdirSync(path.join(staging, "root"), { recursive: true })
    writeFileSync(path.join(staging, "installed.tsv"), "a\t1\t1\t(none)\tnoarch\tx\t1\t1\n")
  })

/** A process holding entry `key` of the cache in `dir` until killed (it prints "held"). */
const holder = (dir: string, key: string) =>
  Effect.acquireRelease(
    Effect.async<ChildProcess>((resume) => {
      const code = `
        import { Effect } from "effect"
        import { mkdirSync, writeFileSync } from "node:fs"
        import * as path from "node:path"
        import { makeCache } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../dist/buildroot/cache.js"))}
        const cache = makeCache(${JSON.stringify(dir)}, 1)
        const fill = (s) => Effect.sync(() => { mkdirSync(path.join(s, "root")); writeFileSync(path.join(s, "installed.tsv"), "") })
        Effect.runFork(Effect.scoped(Effect.gen(function* () {
          yield* cache.acquire(${JSON.stringify(key)}, { repoId: 7, tagName: "t", brArch: "x86_64", installGroup: "build", image: "i", imageId: "i" }, fill)
          console.log("held")
          yield* Effect.never
        })))`
      const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"], cwd: path.resolve(import.meta.dirname, "../..") })
      child.stdout?.on("data", (b: Buffer) => {
        if (b.toString().includes("held")) resume(Effect.succeed(child))
      })
    }),
    (child) => Effect.sync(() => void child.kill("SIGKILL"))
  )

describe("buildroot cache shared by processes", () => {
  beforeAll(() => ensureBuilt(), 180_000)

  it.live("two processes fill, use and evict the same keys: nothing in use changes, no key is filled twice at once", () =>
    Effect.gen(function*() {
      const base = yield* tempDir("adjutant-cache-share-")
      const dir = path.join(base, "cache")
      const [a, b] = yield* Effect.all([runWorker(dir, 60, 1), runWorker(dir, 60, 2)], { concurrency: 2 })
      assert.deepStrictEqual([...a.violations, ...b.violations], [])
      assert.strictEqual(a.uses + b.uses, 120)
      // One entry for three keys: most uses had to fill (and so evict) — the two processes raced on it.
      assert.isAbove(a.fills + b.fills, 20)
      assert.isAbove(a.fills, 0)
      assert.isAbove(b.fills, 0)
      const cache = makeCache(dir, 1)
      assert.isAtMost((yield* cache.list).length, 1)
    }).pipe(Effect.scoped), 120_000)

  it.live("an entry another process uses is neither evicted nor pruned; once that process is killed, it is", () =>
    Effect.gen(function*() {
      const dir = path.join(yield* tempDir("adjutant-cache-share-"), "cache")
      const held = yield* holder(dir, "kheld")
      const cache = makeCache(dir, 1)
      assert.isTrue(yield* cache.busy("kheld"))
      yield* Effect.scoped(cache.acquire("kother", meta(8), fillRoot))
      yield* cache.prune(() => Effect.succeed(true))
      assert.include((yield* cache.list).map((e) => e.key), "kheld")
      held.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((r) => held.once("exit", r)))
      // The kernel dropped the dead process's lock with its descriptors: no stale lock to break.
      assert.isFalse(yield* cache.busy("kheld"))
      yield* cache.prune(() => Effect.succeed(true))
      assert.deepStrictEqual((yield* cache.list).map((e) => e.key), [])
    }).pipe(Effect.scoped), 60_000)
})
