/**
 * The tar id rewriter of buildroot images against GNU tar itself: owners move between build_userns
 * host ids and container ids in gnu (base-256) and pax archives, long names and links survive,
 * and what a root never holds (devices, FIFOs, escaping names and hard links, ids outside the
 * range) is refused. Needs root (chown, mknod).
 */
import { execFileSync, spawn } from "node:child_process"
import { chownSync, linkSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync, chmodSync } from "node:fs"
import * as path from "node:path"
import { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { packShift, tarIdShifter, TarRefused, unpackShift } from "../../src/buildroot/tarIds.js"
import { tempDir } from "./support.js"

const MAP = { base: 2000000000, size: 65536 }

/** A ustar header block with a valid checksum. */
const headerBlock = (m: { readonly name: string; readonly type: string; readonly linkname?: string }): Buffer => {
  const b = Buffer.alloc(512)
  b.write(m.name, 0, 100, "utf8")
  b.write("0000644\0", 100, "latin1")
  b.write("0000000\0", 108, "latin1")
  b.write("0000000\0", 116, "latin1")
  b.write("00000000000\0", 124, "latin1")
  b.write("00000000000\0", 136, "latin1")
  b.write(m.type, 156, "latin1")
  if (m.linkname !== undefined) b.write(m.linkname, 157, 100, "utf8")
  b.write("ustar\0" + "00", 257, "latin1")
  b.fill(0x20, 148, 156)
  let sum = 0
  for (const x of b) sum += x
  b.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1")
  return b
}
const archiveOf = (members: ReadonlyArray<{ readonly name: string; readonly type: string; readonly linkname?: string }>): Buffer =>
  Buffer.concat([...members.map(headerBlock), Buffer.alloc(1024)])

/** The shifter's verdict on an archive: "accepted" or its refusal. */
const shifted = (archive: Buffer) =>
  Effect.promise(() =>
    pipeline(Readable.from([archive]), tarIdShifter({ delta: 0, min: 0, max: 10 }), async function*(src) {
      for await (const _ of src) yield* []
    }).then(() => "accepted", (e: unknown) => (e instanceof TarRefused ? e.message : `not refused: ${String(e)}`)))
const isRoot = process.getuid?.() === 0

/** `tar -c` of `dir` in `format`, through `shift`, into a Buffer (rejects with the shifter's error). */
const packed = (dir: string, format: string, shift = packShift(MAP)): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const tar = spawn("tar", ["-C", dir, "--numeric-owner", `--format=${format}`, "--sort=name", "-cf", "-", "."], { stdio: ["ignore", "pipe", "inherit"] })
    const chunks: Array<Buffer> = []
    const t = tarIdShifter(shift)
    t.on("data", (b: Buffer) => chunks.push(b))
    pipeline(tar.stdout, t).then(() => resolve(Buffer.concat(chunks)), reject)
  })

/** `tar -tvn` of an archive: "mode uid/gid name" lines. */
const listing = (archive: Buffer): Array<string> =>
  execFileSync("tar", ["--numeric-owner", "-tvf", "-"], { input: archive, encoding: "utf8" })
    .trim().split("\n").map((l) => {
      const f = l.split(/\s+/)
      return `${f[0]} ${f[1]} ${f.slice(5).join(" ")}`
    })

const unpack = (archive: Buffer, into: string, shift = unpackShift(MAP)): Promise<void> =>
  new Promise((resolve, reject) => {
    mkdirSync(into, { recursive: true })
    const tar = spawn("tar", ["-C", into, "--numeric-owner", "-xf", "-"], { stdio: ["pipe", "inherit", "inherit"] })
    const t = tarIdShifter(shift)
    tar.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tar exited ${code}`))))
    pipeline(Readable.from([archive]), t, tar.stdin).catch(reject)
  })

const makeTree = (root: string) => {
  mkdirSync(path.join(root, "usr/bin"), { recursive: true })
  const long = path.join(root, "usr", "x".repeat(120))
  mkdirSync(long)
  writeFileSync(path.join(long, "y".repeat(90)), "long")
  writeFileSync(path.join(root, "usr/bin/su"), "setuid")
  chmodSync(path.join(root, "usr/bin/su"), 0o4755)
  linkSync(path.join(root, "usr/bin/su"), path.join(root, "usr/bin/su2"))
  symlinkSync("/usr/bin/su", path.join(root, "usr/bin/sulink"))
  for (const p of ["", "usr", "usr/bin", "usr/bin/su", "usr/bin/sulink", path.relative(root, long), path.relative(root, path.join(long, "y".repeat(90)))]) {
    const f = path.join(root, p)
    const lchown = p.endsWith("sulink") ? "lchown" : "chown"
    execFileSync(lchown === "lchown" ? "chown" : "chown", [...(lchown === "lchown" ? ["-h"] : []), p === "usr/bin/su" ? `${MAP.base + 0}:${MAP.base + 5}` : `${MAP.base + 1000}:${MAP.base + 1000}`, f])
  }
  chownSync(root, MAP.base, MAP.base)
  chmodSync(path.join(root, "usr/bin/su"), 0o4755)
}

describe.skipIf(!isRoot)("buildroot image tar ids (needs root)", () => {
  for (const format of ["gnu", "posix"]) {
    it.live(`${format}: owners move to container ids and back; names, links and modes survive`, () =>
      Effect.gen(function*() {
        const base = yield* tempDir("adjutant-tarids-")
        const root = path.join(base, "root")
        makeTree(root)
        const archive = yield* Effect.promise(() => packed(root, format))
        const lines = listing(archive)
        assert.include(lines, "-rwsr-xr-x 0/5 ./usr/bin/su")
        assert.isTrue(lines.some((l) => l.startsWith("drwxr-xr-x 1000/1000 ./usr/xxxx")), lines.join("\n"))
        assert.isFalse(lines.some((l) => l.includes("2000")), "no host id is left")
        const back = path.join(base, "back")
        yield* Effect.promise(() => unpack(archive, back))
        const su = statSync(path.join(back, "usr/bin/su"))
        assert.deepStrictEqual([su.uid, su.gid, su.mode & 0o7777], [MAP.base, MAP.base + 5, 0o4755])
        assert.strictEqual(statSync(path.join(back, "usr/bin/su2")).ino, su.ino)
        assert.strictEqual(statSync(back).uid, MAP.base)
        const deep = path.join(back, "usr", "x".repeat(120), "y".repeat(90))
        assert.strictEqual(readFileSync(deep, "utf8"), "long")
        assert.strictEqual(statSync(deep).uid, MAP.base + 1000)
      }).pipe(Effect.scoped))
  }

  it.live("refuses devices, FIFOs, escaping hard links and ids outside the range", () =>
    Effect.gen(function*() {
      const base = yield* tempDir("adjutant-tarids-")
      const refusal = (setup: (root: string) => void, shift = packShift(MAP)) =>
        Effect.gen(function*() {
          const root = path.join(base, `r${Math.random().toString(36).slice(2)}`)
          mkdirSync(root)
          setup(root)
          execFileSync("chown", ["-R", "-h", `${MAP.base}:${MAP.base}`, root])
          const result = yield* Effect.either(Effect.tryPromise(() => packed(root, "gnu", shift)))
          assert.isTrue(result._tag === "Left" && result.left.error instanceof TarRefused, "refused")
          return result._tag === "Left" ? String(result.left.error) : ""
        })
      assert.match(yield* refusal((r) => execFileSync("mknod", [path.join(r, "null"), "c", "1", "3"])), /character device/)
      assert.match(yield* refusal((r) => execFileSync("mkfifo", [path.join(r, "fifo")])), /FIFO/)
      assert.match(yield* refusal((r) => writeFileSync(path.join(r, "f"), "x"), { delta: 0, min: 0, max: 10 }), /outside the id range/)
      // Hand-made archives: a hard link to a file outside the tree, an absolute name.
      assert.match(yield* shifted(archiveOf([{ name: "./a", type: "0" }, { name: "./b", type: "1", linkname: "../../etc/shadow" }])), /hard link/)
      assert.match(yield* shifted(archiveOf([{ name: "/etc/passwd", type: "0" }])), /absolute/)
      assert.match(yield* shifted(archiveOf([{ name: "./usr/.wh.lib", type: "0" }])), /whiteout/)
      assert.strictEqual(yield* shifted(archiveOf([{ name: "./ok", type: "0" }, { name: "./ok2", type: "1", linkname: "./ok" }])), "accepted")
    }).pipe(Effect.scoped))
})
