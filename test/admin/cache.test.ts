/**
 * `koji-adjutant cache list|prune|clear` (issue 14 §6) on a real cache directory made by the
 * cache's own `acquire`, beside a "running task": a real overlay mount of one entry, as
 * src/buildroot/overlay.ts makes for a task. list marks it in use, prune keeps it, clear refuses
 * while it is mounted and empties the cache once it is not. (Mounting needs root.)
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cacheCommand, heldKeys } from "../../src/admin/cache.js"
import { makeCache } from "../../src/buildroot/cache.js"
import { runAdmin } from "./support.js"

const isRoot = process.getuid?.() === 0


/** The cache's entries: its own bookkeeping (`.locks`, …) is not one. */
const entriesIn = (dir: string): ReadonlyArray<string> => readdirSync(dir).filter((n) => !n.startsWith(".")).sort()

describe("heldKeys", () => {
  it("reads the cache entries overlay mounts use as lower directories, escapes undone", () => {
    const info = [
      "36 25 0:32 / /var/tmp/koji/tasks/1/1/root rw,relatime shared:1 - overlay overlay rw,lowerdir=/var/lib/koji-adjutant/buildroots/abc123/root,upperdir=/var/tmp/koji/tasks/1/1/upper,workdir=/var/tmp/koji/tasks/1/1/work",
      "37 25 0:33 / /mnt/x rw shared:2 - overlay overlay rw,lowerdir=/srv/cache\\040dir/def/root:/other/lower,upperdir=/u,workdir=/w",
      "38 25 8:1 / /var/lib/koji-adjutant/buildroots/ghi rw - ext4 /dev/sda1 rw",
      "39 25 0:34 / /y rw - overlay overlay rw,lowerdir=/var/lib/koji-adjutant/buildroots-old/zzz/root,upperdir=/u,workdir=/w"
    ].join("\n")
    assert.deepStrictEqual([...heldKeys("/var/lib/koji-adjutant/buildroots", info)], ["abc123"])
    assert.deepStrictEqual([...heldKeys("/srv/cache dir/", info)], ["def"])
  })
})

describe.skipIf(!isRoot)("cache commands (root: overlay mounts)", () => {
  it.scopedLive("list, prune and clear beside a task that has one entry mounted", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-admin-cache-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
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
      // A task's root: the overlay the daemon mounts over k2_held.
      const task = path.join(dir, "task")
      for (const d of ["upper", "work", "root"]) mkdirSync(path.join(task, d), { recursive: true })
      execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${cacheDir}/k2_held/root,upperdir=${task}/upper,workdir=${task}/work`, `${task}/root`])
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        try {
          execFileSync("umount", [`${task}/root`], { stdio: "ignore" })
        } catch {
          // unmounted by the test already
        }
      }))

      const list = yield* runAdmin(cacheCommand, ["list", "-c", conf])
      assert.strictEqual(list.status, 0, list.stderr)
      assert.include(list.stdout, `${cacheDir}: 4 of at most 2 entries, 1 in use`)
      const rows = list.stdout.split("\n").slice(2)
      assert.deepStrictEqual(rows.map((r) => r.split(/\s+/)[0]), ["k4_newest", "k3", "k2_held", "k1_oldest"], "newest first")
      assert.match(rows.find((r) => r.startsWith("k2_held")) ?? "", /f41-build\s+x86_64\s+build\s+localhost\/img:1\s+.*yes$/)

      const clear = yield* runAdmin(cacheCommand, ["clear", "-c", conf])
      assert.strictEqual(clear.status, 1)
      assert.match(clear.stderr, /\[ERROR\] koji\.admin: cache clear: 1 cached buildroot is in use by running tasks \(k2_held\); nothing removed/)
      assert.deepStrictEqual(entriesIn(cacheDir), keys)

      const prune = yield* runAdmin(cacheCommand, ["prune", "-c", conf, "--offline"])
      assert.strictEqual(prune.status, 0, prune.stderr)
      assert.include(prune.stdout, "removed k1_oldest: beyond buildroot_cache_max = 2, least recently used")
      assert.include(prune.stdout, "removed k3: beyond buildroot_cache_max = 2")
      assert.deepStrictEqual(entriesIn(cacheDir), ["k2_held", "k4_newest"], "the held entry stays although it is older")
      assert.isTrue(existsSync(path.join(task, "root", "usr", "marker")), "the task's root still sees its lower directory")

      execFileSync("umount", [`${task}/root`])
      const cleared = yield* runAdmin(cacheCommand, ["clear", "-c", conf])
      assert.strictEqual(cleared.status, 0, cleared.stderr)
      assert.include(cleared.stdout, "removed 2 cached buildroots")
      assert.deepStrictEqual(entriesIn(cacheDir), [])
    }), 60_000)
})
