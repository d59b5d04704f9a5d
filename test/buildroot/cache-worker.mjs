// A process sharing a buildroot cache directory with others, for test/buildroot/cache-share.test.ts.
// Usage: node cache-worker.mjs DIR ROUNDS SEED
// Each round acquires one of three keys in a cache of at most one entry (so every fill evicts),
// holds it a few milliseconds while checking that its root stays whole, and releases it. A fill
// marks itself in DIR/../fills with O_EXCL: two fills of one key at once would collide there.
// Prints one JSON line: {fills, uses, violations}.
import { Effect, Logger, LogLevel } from "effect"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { makeCache } from "../../dist/buildroot/cache.js"

const [dir, roundsArg, seedArg] = process.argv.slice(2)
const rounds = Number(roundsArg)
let seed = Number(seedArg)
const rand = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n
}
const fills = path.join(path.dirname(dir), "fills")
mkdirSync(fills, { recursive: true })
const stats = { fills: 0, uses: 0, violations: [] }
const cache = makeCache(dir, 1)
const meta = (repoId) => ({ repoId, tagName: "t", brArch: "x86_64", installGroup: "build", image: "img", imageId: "id" })

const fill = (key) => (staging) =>
  Effect.gen(function* () {
    const marker = path.join(fills, key)
    try {
      writeFileSync(marker, String(process.pid), { flag: "wx" })
    } catch {
      stats.violations.push(`two fills of ${key} at once`)
    }
    yield* Effect.sleep(`${5 + rand(20)} millis`)
    mkdirSync(path.join(staging, "root"), { recursive: true })
    writeFileSync(path.join(staging, "root", "payload"), key.repeat(1000))
    writeFileSync(path.join(staging, "installed.tsv"), "a\t1\t1\t(none)\tnoarch\tx\t1\t1\n")
    rmSync(marker, { force: true })
    stats.fills++
  })

const round = Effect.gen(function* () {
  const key = ["ka", "kb", "kc"][rand(3)]
  yield* Effect.scoped(Effect.gen(function* () {
    const entry = yield* cache.acquire(key, meta(key.charCodeAt(1)), fill(key))
    for (let i = 0; i < 3; i++) {
      const payload = path.join(entry.root, "payload")
      if (!existsSync(payload) || readFileSync(payload, "utf8") !== key.repeat(1000)) stats.violations.push(`${key} changed while in use`)
      yield* Effect.sleep(`${rand(10)} millis`)
    }
    stats.uses++
  }))
})

Effect.runPromise(Effect.repeatN(round, rounds - 1).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))
  .then(() => console.log(JSON.stringify(stats)))
  .catch((e) => {
    console.log(JSON.stringify({ ...stats, violations: [...stats.violations, String(e)] }))
    process.exit(1)
  })
