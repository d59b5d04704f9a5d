// Bench: are uploads fast as well as safe (issue 12)? A 256 MiB result file and a build's worth
// of small files (logs, RPMs, repodata-sized bits) go to the fake hub over TLS, in a child
// process as a remote hub would be, two ways in the same run:
//   * ours: the daemon's upload path — `uploadWrapper` on a certificate-logged-in KojiHub
//     session (fast upload: `rawUpload` chunks, adler32 of each chunk checked against the hub's,
//     `checkUpload` at the end, retries and re-sends ready);
//   * floor: a bare HTTPS client doing the minimum — one keep-alive `rawUpload` POST per chunk
//     of the same size, no digests of its own, no checks of the reply, no checkUpload (it asks
//     for `fileverify=adler32` as every koji client does: the hub's handle_upload needs one).
// Each is run 5 times, alternating; on a machine shared with other work the fastest run of each
// is the least disturbed one. The figure is floor time / our time for the same bytes (the big
// file and the small files together); the two parts are printed on their own as well.
//
// Chunk size: 8 MiB (FAST_UPLOAD_BLOCKSIZE in src/hub/Uploads.ts), where kojid sends koji's
// `upload_blocksize` of 1 MiB. The hub's rawUpload has no cap and streams the body in 64 KiB
// pieces, so the hub's memory does not grow with it; each chunk is a round trip and a session call
// (one in flight per session), and those are what an upload pays for beyond its bytes — here on
// loopback, more so against a hub across a network. `--chunks 1,8` runs both sizes: on this bench
// (2 shared cores) 1 MiB chunks leave the big file at 0.6-0.75 of the floor and 8 MiB at 0.9-1.0.
// The price: a chunk re-sent after a fault is 8 MiB, and an upload holds two chunks in memory (the
// one in flight and the next, read meanwhile). Small files stay at 0.5-0.6 of the floor: each costs
// a second call, `checkUpload`, which the floor skips and which is how an upload is verified.
// Run: `npm run bench -- upload [--mib 256] [--chunks 8] [--runs 5]`.
// Last line: `upload: ours/floor = X (target >= 0.8)`.
import { fork } from "node:child_process"
import * as fs from "node:fs"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Context, Effect, Layer } from "effect"
import { KojiHub, type Session } from "../../src/hub/KojiHub.js"
import { FAST_UPLOAD_BLOCKSIZE, uploadWrapper } from "../../src/hub/Uploads.js"
import { decodeResponse, encodeMethodCall, isStruct } from "../../src/hub/xmlrpc.js"
import { startFakeHub } from "../../test/fakehub/FakeHub.js"
import { generatePki, type TestPki } from "../../test/support/tls.js"

const self = fileURLToPath(import.meta.url)
const MiB = 1024 * 1024
const HOST = "builder1"
const FLOOR_USER = "floor"
const FLOOR_PASSWORD = "floor-pw"

const arg = (flag: string, dflt: string): string => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] ?? dflt : dflt
}

if (process.argv[2] === "--hub") {
  // The hub's side, in its own process (its own core, as a remote hub).
  const pkiDir = process.argv[3] ?? ""
  const read = (f: string) => fs.readFileSync(join(pkiDir, f), "utf8")
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const hub = yield* startFakeHub({
      tls: { key: read("server.key"), cert: read("server.crt"), ca: read("ca.crt"), clientCert: "handshake" },
      hosts: [{ name: HOST }],
      users: [{ name: FLOOR_USER, password: FLOOR_PASSWORD }]
    })
    process.send?.({ url: hub.url, topdir: hub.topdir })
    yield* Effect.async<void>((resume) => {
      process.on("disconnect", () => resume(Effect.void))
    })
  })))
  process.exit(0)
}

const pattern = (size: number, seed: number): Buffer => {
  const b = Buffer.allocUnsafe(size)
  let x = seed >>> 0
  for (let i = 0; i + 4 <= size; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    b.writeUInt32LE(x, i)
  }
  for (let i = size - (size % 4); i < size; i++) b[i] = i & 0xff
  return b
}

/** A build's worth of small files: logs, RPMs and repodata-sized bits (seeded sizes). */
const smallFileSizes = (): ReadonlyArray<number> => {
  let x = 12345
  const next = (lo: number, hi: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    return lo + ((x >>> 8) % (hi - lo + 1))
  }
  return [
    ...Array.from({ length: 12 }, () => next(2 * 1024, 400 * 1024)), // build.log, root.log, state.log, …
    ...Array.from({ length: 16 }, () => next(20 * 1024, 3 * MiB)), // binary and debuginfo RPMs
    ...Array.from({ length: 12 }, () => next(300, 8 * 1024)) // repodata, checksums, small logs
  ]
}

const best = (xs: ReadonlyArray<number>): number => Math.min(...xs)

/** The bare client: keep-alive HTTPS, one POST per chunk, nothing checked. */
const makeFloor = (url: string, pki: TestPki) => {
  const agent = new https.Agent({ keepAlive: true, ca: pki.caPem, maxSockets: 1 })
  const post = (path: string, headers: Record<string, string>, body: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const req = https.request(new URL(path, url), { method: "POST", agent, headers: { ...headers, "Content-Length": String(body.length) } }, (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}`))))
        res.on("error", reject)
      })
      req.on("error", reject)
      req.end(body)
    })
  let session: { readonly id: string; readonly key: string } | undefined
  let callnum = 0
  const login = async () => {
    const reply = decodeResponse(await post(url, { "Content-Type": "text/xml" }, Buffer.from(encodeMethodCall("login", [FLOOR_USER, FLOOR_PASSWORD]))))
    if (reply._tag === "Left" || !isStruct(reply.right)) throw new Error("floor login failed")
    return { id: String(reply.right["session-id"]), key: String(reply.right["session-key"]) }
  }
  const upload = async (file: string, path: string, name: string, chunkSize: number) => {
    session ??= await login()
    const { id, key } = session
    const fd = fs.openSync(file, "r")
    try {
      const size = fs.fstatSync(fd).size
      for (let offset = 0; offset < size || offset === 0;) {
        const chunk = Buffer.allocUnsafe(Math.min(chunkSize, size - offset))
        const n = fs.readSync(fd, chunk, 0, chunk.length, offset)
        // fileverify as every koji client sends it: the hub's handle_upload cannot run without one.
        const q = new URLSearchParams({ filename: name, filepath: path, fileverify: "adler32", offset: String(offset), overwrite: "1" })
        const reply = await post(`${new URL(url).pathname}?${q.toString()}`, {
          "Content-Type": "application/octet-stream",
          "Koji-Session-Id": id,
          "Koji-Session-Key": key,
          "Koji-Session-Callnum": String(callnum++)
        }, chunk.subarray(0, n))
        // Only so a refused chunk cannot pass for a fast one; the floor reads nothing else of the reply.
        if (reply.includes("<fault>")) throw new Error(`floor: the hub refused ${path}/${name} at ${offset}: ${reply.toString()}`)
        offset += n
        if (n === 0) break
      }
    } finally {
      fs.closeSync(fd)
    }
  }
  return { upload, close: () => agent.destroy() }
}

const work = fs.mkdtempSync(join(tmpdir(), "koji-adjutant-upload-bench-"))
const pki = generatePki(work, [HOST])
const child = fork(self, ["--hub", work], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
try {
  const { url, topdir } = await new Promise<{ url: string; topdir: string }>((resolve) =>
    child.once("message", (m) => {
      const url = typeof m === "object" && m !== null && "url" in m ? m.url : undefined
      const topdir = typeof m === "object" && m !== null && "topdir" in m ? m.topdir : undefined
      if (typeof url === "string" && typeof topdir === "string") resolve({ url, topdir })
    }))
  const mib = Number(arg("--mib", "256"))
  const runs = Number(arg("--runs", "5"))
  const chunkSizes = arg("--chunks", String(FAST_UPLOAD_BLOCKSIZE / MiB)).split(",").map((s) => Math.round(Number(s) * MiB))

  const big = join(work, "big.rpm")
  fs.writeFileSync(big, pattern(mib * MiB, 1))
  const smallDir = join(work, "small")
  fs.mkdirSync(smallDir)
  const smalls = smallFileSizes().map((size, i) => {
    const f = join(smallDir, `f${i}.bin`)
    fs.writeFileSync(f, pattern(size, 100 + i))
    return f
  })
  const smallBytes = smalls.reduce((a, f) => a + fs.statSync(f).size, 0)
  console.log(`upload: ${mib} MiB file and ${smalls.length} small files (${(smallBytes / MiB).toFixed(1)} MiB) to the fake hub over TLS, ${runs} runs each`)

  const ratios: Array<{ chunk: number; big: number; small: number; all: number }> = []
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const hubContext = yield* Layer.build(KojiHub.layerWithTransport({ server: url, cert: pki.clientFiles[HOST], serverca: pki.caFile }))
    const session: Session = yield* Context.get(hubContext, KojiHub).login(true)
    const floor = makeFloor(url, pki)
    yield* Effect.addFinalizer(() => Effect.sync(floor.close))
    for (const chunk of chunkSizes) {
      const ours = (files: ReadonlyArray<string>, dir: string) =>
        Effect.gen(function*() {
          const t0 = performance.now()
          for (const f of files) yield* uploadWrapper(session, f, dir, basename(f), { blocksize: chunk })
          return performance.now() - t0
        })
      const bare = (files: ReadonlyArray<string>, dir: string) =>
        Effect.promise(async () => {
          const t0 = performance.now()
          for (const f of files) await floor.upload(f, dir, basename(f), chunk)
          return performance.now() - t0
        })
      const times = { oursBig: [] as Array<number>, floorBig: [] as Array<number>, oursSmall: [] as Array<number>, floorSmall: [] as Array<number> }
      // One warm-up each (TLS sessions, JIT), not counted.
      yield* ours(smalls.slice(0, 4), "cli-build/warm-ours")
      yield* bare(smalls.slice(0, 4), "cli-build/warm-floor")
      for (let i = 0; i < runs; i++) {
        times.oursBig.push(yield* ours([big], "cli-build/ours"))
        times.floorBig.push(yield* bare([big], "cli-build/floor"))
        times.oursSmall.push(yield* ours(smalls, "cli-build/ours-small"))
        times.floorSmall.push(yield* bare(smalls, "cli-build/floor-small"))
      }
      for (const [who, dir] of [["ours", "cli-build/ours"], ["floor", "cli-build/floor"]] as const) {
        const stored = fs.readFileSync(join(topdir, "work", dir, "big.rpm"))
        if (!stored.equals(fs.readFileSync(big))) throw new Error(`${who}: the hub's copy of big.rpm differs`)
      }
      const mbps = (bytes: number, ms: number) => `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`
      const [ob, fb, os, fsm] = [best(times.oursBig), best(times.floorBig), best(times.oursSmall), best(times.floorSmall)]
      console.log(`upload: chunk ${chunk / MiB} MiB: ${mib} MiB file ours ${(ob / 1000).toFixed(2)} s (${mbps(mib * MiB, ob)}), floor ${(fb / 1000).toFixed(2)} s (${mbps(mib * MiB, fb)}); ` +
        `small files ours ${(os / 1000).toFixed(2)} s, floor ${(fsm / 1000).toFixed(2)} s`)
      ratios.push({ chunk, big: fb / ob, small: fsm / os, all: (fb + fsm) / (ob + os) })
    }
  })))
  const main = ratios.find((r) => r.chunk === FAST_UPLOAD_BLOCKSIZE) ?? ratios[0]
  if (main === undefined) throw new Error("no chunk size measured")
  for (const r of ratios) {
    console.log(`upload: chunk ${r.chunk / MiB} MiB: ours/floor ${r.all.toFixed(2)} (big file ${r.big.toFixed(2)}, small files ${r.small.toFixed(2)})`)
  }
  console.log(`upload: ours/floor = ${main.all.toFixed(2)} (target >= 0.8)`)
} finally {
  if (child.connected) child.disconnect()
  child.kill("SIGTERM")
  fs.rmSync(work, { recursive: true, force: true })
}
process.exit(0)
