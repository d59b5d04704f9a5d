#!/usr/bin/env node
// Bench runner: `npm run bench -- NAME [args…]` runs `scripts/bench/NAME.mjs` or `NAME.ts`.
//
// How benches are built (no tsx here, and Node 20 cannot strip types). The runner first runs
// `tsc -p tsconfig.build.json` so `dist/` (the daemon, `node dist/main.js`) matches the sources;
// type errors are reported but do not stop the bench (tsc still emits). Then:
// * `NAME.mjs` — plain ESM that imports the project from `dist/` (e.g. `../../dist/hub/xmlrpc.js`).
// * `NAME.ts` — compiled with tsc (with the project's tsconfig options, together with the
//   sources it imports) into `node_modules/.cache/koji-adjutant-bench/` and run from there;
//   import sources as `../../src/…/x.js` and the test tree's fakes (the fake hub,
//   `../../test/fakehub/FakeHub.js`) the same way. Packages resolve through node_modules.
// The bench's own stdout/stderr pass through; by convention its LAST line is the result, e.g.
// `xmlrpc-decode: speedup vs CPython = 2.50 (target >= 2.00)`. With no NAME, the runner lists
// the benches.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const benchDir = dirname(fileURLToPath(import.meta.url))
const root = join(benchDir, "..", "..")
const tsc = join(root, "node_modules", "typescript", "bin", "tsc")

const list = () =>
  [...new Set(readdirSync(benchDir)
    .filter((f) => /\.(mjs|ts)$/.test(f) && f !== "run.mjs" && !f.endsWith(".d.ts"))
    .map((f) => f.replace(/\.(mjs|ts)$/, "")))].sort()

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" })
  if (r.error) throw r.error
  return r.status ?? 1
}

const [name, ...rest] = process.argv.slice(2)
if (!name) {
  console.log(`usage: npm run bench -- NAME [args…]\nbenches: ${list().join(", ")}`)
  process.exit(2)
}
const mjs = join(benchDir, `${name}.mjs`)
const ts = join(benchDir, `${name}.ts`)

let entry
console.error(`bench: building dist/ (tsc -p tsconfig.build.json)`)
if (run(process.execPath, [tsc, "-p", "tsconfig.build.json"]) !== 0) {
  console.error("bench: tsc reported errors (see above); running the bench with what it emitted")
}
if (existsSync(mjs)) {
  entry = mjs
} else if (existsSync(ts)) {
  const out = join(root, "node_modules", ".cache", "koji-adjutant-bench")
  console.error(`bench: compiling ${relative(root, ts)} into ${relative(root, out)}`)
  // A tsconfig beside the output that extends the project's, so the bench compiles with the same options.
  mkdirSync(out, { recursive: true })
  const config = join(out, "tsconfig.json")
  writeFileSync(config, JSON.stringify({
    extends: join(root, "tsconfig.json"),
    compilerOptions: { rootDir: root, outDir: out, noEmit: false, sourceMap: false },
    include: [ts]
  }))
  const status = run(process.execPath, [tsc, "-p", config])
  if (status !== 0) console.error("bench: tsc reported errors (see above); running what it emitted")
  entry = join(out, relative(root, ts)).replace(/\.ts$/, ".js")
} else {
  console.error(`bench: no scripts/bench/${name}.mjs or .ts; benches: ${list().join(", ")}`)
  process.exit(2)
}
process.exit(run(process.execPath, ["--expose-gc", entry, ...rest]))
