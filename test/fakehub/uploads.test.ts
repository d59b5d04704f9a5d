/**
 * The fake hub's upload rules (koji-protocol.md §6): rawUpload paths, ownership, offsets,
 * overwrite, digests and locking; checkUpload; the legacy base64 uploadFile.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import * as http from "node:http"
import { startFakeHub, type FakeHub } from "./FakeHub.js"
import { call, login, ok, rawUpload, type Sess } from "./client.js"

const withOpenTask = (f: (hub: FakeHub, s: Sess, taskId: number, dir: string) => Promise<void>) =>
  Effect.gen(function*() {
    const hub = yield* startFakeHub({ hosts: [{ name: "builder1", password: "pw" }, { name: "builder2", password: "pw" }] })
    yield* Effect.promise(async () => {
      const s = await login(hub.url, "builder1", "pw")
      await ok(call(hub.url, "host.updateHost", [0.0, true], { session: s }))
      const id = hub.createTask("sleep", [1])
      assert.lengthOf(await ok(call(hub.url, "host.getTasks", [], { session: s })) as ReadonlyArray<unknown>, 1)
      await ok(call(hub.url, "host.openTask", [id], { session: s }))
      await f(hub, s, id, `tasks/${id % 10000}/${id}`)
    })
  })

const CHUNK = Buffer.from("rawbuilder.py: pretending to run task 1 (build)\nline 2\n")

describe("fake hub: rawUpload", () => {
  it.scoped("writes the chunk and answers {size, fileverify, offset, hexdigest} as in the capture", () =>
    withOpenTask(async (hub, s, _id, dir) => {
      const r = await rawUpload(hub.url, s, { filename: "build.log", filepath: dir, fileverify: "adler32", offset: "0" }, CHUNK)
      assert.deepStrictEqual(r.value, { size: 55, fileverify: "adler32", offset: 0, hexdigest: "3d1112fe" })
      assert.deepStrictEqual(hub.state.upload(`${dir}/build.log`), CHUNK)
      assert.deepStrictEqual(hub.state.uploads, [{ path: `${dir}/build.log`, size: 55 }])
      const check = await ok(call(hub.url, "checkUpload", [dir, "build.log"], { session: s })) as Record<string, unknown>
      assert.strictEqual(check["size"], 55)
      assert.isNumber(check["mtime"])
      const verified = await ok(call(hub.url, "checkUpload", [dir, "build.log"], { session: s, kw: { verify: "adler32" } })) as Record<string, unknown>
      assert.strictEqual(verified["hexdigest"], "3d1112fe")
      assert.strictEqual(verified["sumlength"], 55)
      const tail = await ok(call(hub.url, "checkUpload", [dir, "build.log"], { session: s, kw: { verify: "md5", tail: 7 } })) as Record<string, unknown>
      assert.strictEqual(tail["hexdigest"], createHash("md5").update(CHUNK.subarray(48)).digest("hex"))
      assert.isNull(await ok(call(hub.url, "checkUpload", [dir, "missing.log"], { session: s })))
    }))

  it.scoped("offsets: chunks in place, exists without overwrite, overwrite truncates, -1 appends, empty chunk", () =>
    withOpenTask(async (hub, s, _id, dir) => {
      const q = (offset: string, extra: Record<string, string> = {}) =>
        ({ filename: "x.rpm", filepath: dir, fileverify: "adler32", offset, ...extra })
      await ok(rawUpload(hub.url, s, q("0"), Buffer.from("aaaa")))
      await ok(rawUpload(hub.url, s, q("4"), Buffer.from("bbbb")))
      assert.strictEqual(hub.state.upload(`${dir}/x.rpm`)?.toString(), "aaaabbbb")
      const exists = await rawUpload(hub.url, s, q("0"), Buffer.from("c"))
      assert.deepStrictEqual(exists.fault, { faultCode: 1000, faultString: `upload path exists: ${hub.topdir}/work/${dir}/x.rpm` })
      const gap = await rawUpload(hub.url, s, q("2"), Buffer.from("z"))
      assert.strictEqual(gap.fault?.faultString, `Incorrect upload length for ${hub.topdir}/work/${dir}/x.rpm - Expected 3, actual 8`)
      await ok(rawUpload(hub.url, s, q("2", { overwrite: "1" }), Buffer.from("ZZ")))
      assert.strictEqual(hub.state.upload(`${dir}/x.rpm`)?.toString(), "aaZZ")
      const app = await ok(rawUpload(hub.url, s, q("-1"), Buffer.from("!"))) as Record<string, unknown>
      assert.strictEqual(app["offset"], 4)
      assert.strictEqual(hub.state.upload(`${dir}/x.rpm`)?.toString(), "aaZZ!")
      const empty = await ok(rawUpload(hub.url, s, { ...q("0"), filename: "empty.log" }, Buffer.alloc(0))) as Record<string, unknown>
      assert.deepStrictEqual(empty, { size: 0, fileverify: "adler32", offset: 0, hexdigest: "00000001" })
      const md5 = await ok(rawUpload(hub.url, s, { ...q("0"), filename: "m", fileverify: "md5" }, Buffer.from("abc"))) as Record<string, unknown>
      assert.strictEqual(md5["hexdigest"], "900150983cd24fb0d6963f7d28e17f72")
      const none = await rawUpload(hub.url, s, { filename: "n", filepath: dir, offset: "0" }, Buffer.from("abc"))
      assert.deepStrictEqual(none.fault, { faultCode: 1, faultString: "<class 'TypeError'>: 'NoneType' object is not callable" })
      const odd = await rawUpload(hub.url, s, { ...q("0"), filename: "o", fileverify: "crc" }, Buffer.from("abc"))
      assert.deepStrictEqual(odd.fault, { faultCode: 1000, faultString: "Unsupported verify type: crc" })
    }))

  it.scoped("name and path rules", () =>
    withOpenTask(async (hub, s, id, dir) => {
      const up = (filename: string, filepath: string) =>
        rawUpload(hub.url, s, { filename, filepath, fileverify: "adler32", offset: "0" }, Buffer.from("x"))
      assert.strictEqual((await up("a/b", dir)).fault?.faultString, "Invalid upload filename: a/b")
      assert.strictEqual((await up(".hidden", dir)).fault?.faultString, "Invalid upload filename: .hidden")
      assert.strictEqual((await up("f", "../etc")).fault?.faultString, "Invalid upload directory: ../etc")
      assert.strictEqual((await up("f", "tasks/1")).fault?.faultString, "Invalid task upload directory: tasks/1")
      assert.strictEqual((await up("f", "tasks/1/abc")).fault?.faultString, "Invalid task upload directory: tasks/1/abc")
      assert.deepStrictEqual((await up("f", "tasks/1/999")).fault, { faultCode: 1000, faultString: "No such task: 999" })
      // a task that is not ours (FREE) → 1004
      const other = hub.createTask("sleep", [2])
      assert.deepStrictEqual((await up("f", `tasks/${other}/${other}`)).fault, { faultCode: 1004, faultString: `host 1 does not own task ${other}` })
      // after closing, the task is no longer OPEN → 1004, as kojid sees after a cancel
      await ok(call(hub.url, "host.closeTask", [id, "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><nil/></value></param>\n</params>\n</methodResponse>\n"], { session: s }))
      assert.strictEqual((await up("late.log", dir)).fault?.faultCode, 1004)
      // paths outside tasks/ are for any logged-in user, owned via .user
      assert.isDefined((await up("x.src.rpm", "cli-build/123.abc")).value)
      const anon = await rawUpload(hub.url, undefined, { filename: "f", filepath: "cli-build/1", fileverify: "adler32", offset: "0" }, Buffer.from("x"))
      assert.deepStrictEqual(anon.fault, { faultCode: 1002, faultString: "'session-id' not specified in session args" })
    }))

  it.scoped("another host cannot upload into our task directory; a non-exclusive session neither", () =>
    withOpenTask(async (hub, _s, _id, dir) => {
      const other = await login(hub.url, "builder2", "pw")
      const r = await rawUpload(hub.url, other, { filename: "f", filepath: dir, fileverify: "adler32", offset: "0" }, Buffer.from("x"))
      assert.strictEqual(r.fault?.faultCode, 1004)
    }))

  it.scoped("rawUpload changes no data, so its callnum is not stored and a retry is accepted", () =>
    withOpenTask(async (hub, s, _id, dir) => {
      const q = { filename: "r.log", filepath: dir, fileverify: "adler32", offset: "0", overwrite: "1" }
      await ok(rawUpload(hub.url, s, q, Buffer.from("1"), { callnum: 50 }))
      await ok(rawUpload(hub.url, s, q, Buffer.from("1"), { callnum: 50 }))
      assert.notStrictEqual(hub.state.session(s.id)?.callnum, 50)
      assert.strictEqual(hub.state.calls.filter((c) => c.method === "rawUpload").length, 2)
    }))

  it.scoped("a concurrent upload of the same file → LockError 1001", () =>
    withOpenTask(async (hub, s, _id, dir) => {
      const url = new URL(`${hub.url}?filename=big.log&filepath=${encodeURIComponent(dir)}&fileverify=adler32&offset=0&overwrite=1`)
      const first = http.request(url, {
        method: "POST",
        headers: {
          "Content-Type": "application/octet-stream", "Content-Length": "8", "Koji-Session-Id": String(s.id),
          "Koji-Session-Key": s.key, "Koji-Session-Callnum": String(s.callnum++)
        }
      })
      const firstDone = new Promise<number>((resolve) => first.on("response", (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      }))
      first.write("half")
      // give the hub time to take the lock while the first body is still open
      await new Promise((r) => setTimeout(r, 100))
      const second = await rawUpload(hub.url, s, { filename: "big.log", filepath: dir, fileverify: "adler32", offset: "0", overwrite: "1" }, Buffer.from("x"))
      assert.deepStrictEqual(second.fault, { faultCode: 1001, faultString: "[Errno 11] Resource temporarily unavailable" })
      first.end("half")
      assert.strictEqual(await firstDone, 200)
      assert.strictEqual(hub.state.upload(`${dir}/big.log`)?.toString(), "halfhalf")
    }))
})

describe("fake hub: uploadFile (legacy)", () => {
  it.scoped("chunks with checksums, false on mismatch, finalise with the whole-file digest", () =>
    withOpenTask(async (hub, s, _id, dir) => {
      const b64 = (x: string) => Buffer.from(x).toString("base64")
      const md5 = (x: string) => createHash("md5").update(x).digest("hex")
      const sha = (x: string) => createHash("sha256").update(x).digest("hex")
      assert.isTrue(await ok(call(hub.url, "uploadFile", [dir, "a.txt", 5, md5("hello"), 0, b64("hello")], { session: s })))
      assert.isFalse(await ok(call(hub.url, "uploadFile", [dir, "a.txt", 9, md5(" world"), 5, b64(" world")], { session: s })))
      assert.isFalse(await ok(call(hub.url, "uploadFile", [dir, "a.txt", 6, ["sha256", "00"], 5, b64(" world")], { session: s })))
      assert.isTrue(await ok(call(hub.url, "uploadFile", [dir, "a.txt", "6", ["sha256", sha(" world")], "5", b64(" world")], { session: s })))
      assert.isTrue(await ok(call(hub.url, "uploadFile", [dir, "a.txt", 11, ["sha256", sha("hello world")], -1, ""], { session: s })))
      assert.isFalse(await ok(call(hub.url, "uploadFile", [dir, "a.txt", 11, ["sha256", sha("nope")], -1, ""], { session: s })))
      assert.strictEqual(hub.state.upload(`${dir}/a.txt`)?.toString(), "hello world")
      const again = await call(hub.url, "uploadFile", [dir, "a.txt", 5, md5("hello"), 0, b64("hello")], { session: s })
      assert.strictEqual(again.fault?.faultString, `file already exists: ${hub.topdir}/work/${dir}/a.txt`)
      // .log files may be re-sent from offset 0 (log streaming)
      assert.isTrue(await ok(call(hub.url, "uploadFile", [dir, "b.log", 1, md5("x"), 0, b64("x")], { session: s })))
      assert.isTrue(await ok(call(hub.url, "uploadFile", [dir, "b.log", 1, md5("y"), 0, b64("y")], { session: s })))
      assert.strictEqual(hub.state.upload(`${dir}/b.log`)?.toString(), "y")
      const anon = await call(hub.url, "uploadFile", ["cli-build/1", "c", 1, md5("x"), 0, b64("x")])
      assert.deepStrictEqual(anon.fault, { faultCode: 1004, faultString: "you must be logged in for this operation" })
    }))
})
