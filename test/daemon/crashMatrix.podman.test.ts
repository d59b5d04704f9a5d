/**
 * Issue 12's crash matrix as a test: the real program in a child process, real podman, the fake
 * hub; SIGKILL at seeded random points of every scenario (crashMatrix.ts), a restart after each;
 * every tree must end CLOSED, nothing of the host may be left, no task reported twice.
 * CRASH_MATRIX_POINTS sets the number of points (default 20), CRASH_MATRIX_SEED replays a seed
 * (the order of the scenarios and the kill moments; podman's timing varies from run to run),
 * CRASH_MATRIX_COLD_FILLS the cold fills among them (default 1: a cold fill takes ~20 s).
 */
import { afterAll, assert, describe, it } from "vitest"
import { podmanInstalled, podmanSkipReason } from "../support/podman.js"
import { type CrashMatrixResult, describePoint, runCrashMatrix, SCENARIOS } from "./crashMatrix.js"

const requirePodman = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"
const envInt = (name: string, dflt: number): number => {
  const v = process.env[name]
  return v === undefined || v === "" ? dflt : Number.parseInt(v, 10)
}
const points = envInt("CRASH_MATRIX_POINTS", 20)
const coldFills = envInt("CRASH_MATRIX_COLD_FILLS", 1)

let result: CrashMatrixResult | undefined
afterAll(() => {
  // Printed even when an assertion failed, so the run can be replayed.
  if (result !== undefined) console.log(`crash matrix: seed ${result.seed} (CRASH_MATRIX_SEED=${result.seed} replays it), ${(result.elapsedMs / 1000).toFixed(0)} s`)
})

describe.skipIf(!podmanInstalled && !requirePodman)(`crash matrix (needs podman${podmanInstalled ? "" : `: ${podmanSkipReason}`})`, () => {
  it(`SIGKILL at ${points} seeded points, restart after each: every tree CLOSED, nothing left, nothing reported twice`, async () => {
    const lines: Array<string> = []
    const r = await runCrashMatrix({
      points,
      coldFills,
      progress: (l) => {
        lines.push(l)
        console.log(l)
      }
    })
    result = r
    const seed = `seed ${r.seed} (CRASH_MATRIX_SEED=${r.seed} replays it)`
    const report = `${seed}\n${lines.join("\n")}`
    assert.strictEqual(r.points.length, points, report)
    // Every scenario is dealt once before any is dealt again (cold fills capped).
    const dealt = new Set(r.points.map((p) => p.scenario))
    const expected = SCENARIOS.filter((s) => s !== "buildArch cold fill" || coldFills > 0)
    if (points >= SCENARIOS.length) assert.sameMembers([...dealt], [...expected], report)
    // Most kills must land inside their phase, or the matrix tests nothing of it.
    const inPhase = r.points.filter((p) => p.inPhase).length
    assert.isAtLeast(inPhase, Math.ceil(points * 0.5), `only ${inPhase} of ${points} kills fell inside their phase; ${report}`)
    const bad = r.points.filter((p) => p.lost.length > 0 || p.leaked.length > 0 || p.twice.length > 0)
    assert.deepStrictEqual(bad.map(describePoint), [], report)
    assert.deepStrictEqual([r.lost, r.leaked, r.twice], [0, 0, 0], report)
    // The last daemon stops cleanly on SIGTERM and leaves nothing either.
    assert.strictEqual(r.finalExit, 0, report)
    assert.deepStrictEqual(r.final, { containers: [], mounts: [], loops: [], taskDirs: [], otherDirs: [], cacheStaging: r.final?.cacheStaging ?? [] }, report)
    // A restarted daemon is back at work within a few cycles of being ready (sleeptime 1 s in the
    // world; a busy machine's load average keeps it not ready as it keeps kojid).
    for (const p of r.points) {
      if (p.recoveryCycles !== undefined) assert.isAtMost(p.recoveryCycles - (p.notReadyCycles ?? 0), 3, `${describePoint(p)}; ${seed}`)
    }
  }, 1_800_000)
})
