// Bench: decode a synthetic ≥ 40 MB koji `listTaggedRPMS` response with our decoder
// (dist/hub/xmlrpc.js) and, in the same run, with CPython's `xmlrpc.client.loads` on the same
// bytes. Run with `npm run bench -- xmlrpc-decode [--rpms N] [--runs N] [--sax]`.
// `--sax` also times the `xmlrpc` npm package's sax deserializer once, for reference.
// Last line: `xmlrpc-decode: speedup vs CPython = <x.xx> (target >= 2.00)`.
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Readable } from "node:stream"
import { performance } from "node:perf_hooks"
import { decodeResponse, encodeResponse } from "../../dist/hub/xmlrpc.js"

const arg = (flag, dflt) => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const RPMS = arg("--rpms", 50_000)
const RUNS = arg("--runs", 5)
const PY_RUNS = arg("--py-runs", 3)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

// Deterministic pseudo-random numbers so every run decodes the same document.
let seed = 0x2545f491
const rnd = (n) => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) % n
}
const hex = (len) => {
  let s = ""
  for (let i = 0; i < len; i++) s += "0123456789abcdef"[rnd(16)]
  return s
}
const words = ["python3", "perl", "golang", "rust", "libfoo", "texlive", "kernel", "glibc", "nodejs", "ghc"]
const suffixes = ["", "-devel", "-libs", "-doc", "-debuginfo", "-debugsource", "-common", "-tests"]
const arches = ["x86_64", "noarch", "aarch64", "ppc64le", "s390x", "src", "i686"]

// Shaped like a hub's listTaggedRPMS result: [rpms, builds] (kojihub readTaggedRPMS fields).
const rpms = []
const builds = []
for (let b = 0; rpms.length < RPMS; b++) {
  const pkg = `${words[rnd(words.length)]}-${hex(6)}`
  const version = `${rnd(20)}.${rnd(100)}.${rnd(10)}`
  const release = `${1 + rnd(30)}.fc${38 + rnd(4)}`
  const buildId = 100_000 + b
  const epoch = rnd(4) === 0 ? rnd(3) : null
  builds.push({
    build_id: buildId, id: buildId, name: pkg, version, release, epoch, state: 1, draft: false,
    task_id: rnd(2) === 0 ? null : 5_000_000 + b, owner_id: 12, owner_name: "kojibuilder",
    package_id: 40_000 + b, package_name: pkg, nvr: `${pkg}-${version}-${release}`,
    creation_event_id: 9_000_000 + b, creation_time: "2024-05-01 12:00:00.123456+00:00",
    volume_id: 0, volume_name: "DEFAULT", tag_id: 6345, tag_name: "f40-build", extra: null
  })
  const n = 1 + rnd(25)
  for (let i = 0; i < n && rpms.length < RPMS; i++) {
    const size = rnd(50) === 0 ? 2 ** 31 + rnd(1 << 30) : 10_000 + rnd(50_000_000)
    rpms.push({
      arch: arches[rnd(arches.length)],
      build_id: buildId,
      buildroot_id: rnd(10) === 0 ? null : 30_000_000 + rnd(1_000_000),
      buildtime: 1_700_000_000 + rnd(30_000_000),
      draft: false,
      epoch,
      external_repo_id: 0,
      external_repo_name: "INTERNAL",
      extra: null,
      id: 38_000_000 + rpms.length,
      metadata_only: false,
      name: `${pkg}${suffixes[rnd(suffixes.length)]}`,
      payloadhash: hex(32),
      release,
      size,
      tag_id: 6345,
      tag_name: "f40-build",
      version
    })
  }
}
const doc = Buffer.from(encodeResponse([rpms, builds]), "utf8")
const dir = mkdtempSync(join(tmpdir(), "xmlrpc-decode-"))
const file = join(dir, "listTaggedRPMS.xml")
try {
  writeFileSync(file, doc)
  console.log(`document: ${(doc.length / 1e6).toFixed(1)} MB, ${rpms.length} rpm structs + ${builds.length} build structs (${file})`)

  // Ours: decode from the bytes (UTF-8 decoding included, as expat does it in CPython).
  const bytes = readFileSync(file)
  const check = (r) => {
    if (r._tag !== "Right") throw new Error(`decode failed: ${r.left.message}`)
    const [gotRpms, gotBuilds] = r.right
    if (gotRpms.length !== rpms.length || gotBuilds.length !== builds.length) throw new Error("wrong counts")
    const last = gotRpms[gotRpms.length - 1]
    const want = rpms[rpms.length - 1]
    for (const k of Object.keys(want)) if (last[k] !== want[k]) throw new Error(`field ${k} differs`)
  }
  const ours = []
  for (let i = 0; i < RUNS + 2; i++) {
    globalThis.gc?.()
    const t0 = performance.now()
    const r = decodeResponse(bytes)
    const t = (performance.now() - t0) / 1000
    check(r)
    if (i >= 2) ours.push(t)
  }
  const oursMedian = median(ours)
  console.log(`ours (decodeResponse, ${RUNS} runs after 2 warm-ups): median ${oursMedian.toFixed(3)} s  [${ours.map((t) => t.toFixed(3)).join(", ")}]`)

  // CPython: the script reads the file, then times loads() alone and prints the seconds.
  const py = [
    "import sys, time, xmlrpc.client",
    "data = open(sys.argv[1], 'rb').read()",
    "for _ in range(int(sys.argv[2])):",
    "    t0 = time.perf_counter()",
    "    (v,), _m = xmlrpc.client.loads(data)",
    "    t = time.perf_counter() - t0",
    "    assert len(v[0]) == int(sys.argv[3]), len(v[0])",
    "    print(t, flush=True)",
    "    del v"
  ].join("\n")
  const r = spawnSync("python3", ["-c", py, file, String(PY_RUNS), String(rpms.length)], { encoding: "utf8" })
  if (r.status !== 0) throw new Error(`python3 failed (${r.error?.message ?? r.status}): ${r.stderr}`)
  const pyTimes = r.stdout.trim().split("\n").map(Number)
  const pyMedian = median(pyTimes)
  const pyVersion = spawnSync("python3", ["-c", "import sys; print(sys.version.split()[0])"], { encoding: "utf8" }).stdout.trim()
  console.log(`CPython ${pyVersion} xmlrpc.client.loads (${PY_RUNS} runs): median ${pyMedian.toFixed(3)} s  [${pyTimes.map((t) => t.toFixed(3)).join(", ")}]`)

  if (process.argv.includes("--sax")) {
    const require = createRequire(import.meta.url)
    const Deserializer = require("xmlrpc/lib/deserializer.js")
    const t0 = performance.now()
    await new Promise((resolve, reject) =>
      new Deserializer().deserializeMethodResponse(Readable.from([bytes]), (err, v) => (err ? reject(err) : resolve(v))))
    const t = (performance.now() - t0) / 1000
    console.log(`xmlrpc npm package (sax, 1 run): ${t.toFixed(3)} s = ${(t / pyMedian).toFixed(2)}x CPython's time`)
  }
  console.log(`xmlrpc-decode: speedup vs CPython = ${(pyMedian / oursMedian).toFixed(2)} (target >= 2.00)`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
