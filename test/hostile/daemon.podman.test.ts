/**
 * The hostile-package suite through the daemon (issue 10; real podman): every case of cases.ts
 * submitted at once to the fake hub — buildArch of its SRPM, or buildSRPMFromSCM of its URL
 * against a git daemon on loopback — and run by one daemon with small limits and its own build id
 * range while the host is watched; each case must be contained, and the host unchanged after the
 * batch. KOJI_ADJUTANT_HOSTILE_ONLY=REGEX runs only matching cases.
 */
import { Effect } from "effect"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { loadFixtureFiles } from "../buildroot/support.js"
import { podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { type BatchReport, formatBatch, type HostileEnv, prepareHostileEnv, runDaemonBatch, selectedCases } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const cases = selectedCases("daemon")
const hostName = uniqueHostName("hostile-daemon")
let env: HostileEnv | undefined
let batch: BatchReport | undefined

describe.skipIf(!podmanInstalled)("hostile packages through the daemon's buildArch and buildSRPMFromSCM (real podman, fake hub)", () => {
  const podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    env = await prepareHostileEnv(loadFixtureFiles(), podman.socket)
    batch = await Effect.runPromise(runDaemonBatch(env, podman.socket, hostName, (c) => cases.some((k) => k.name === c.name)))
    console.log(formatBatch(batch, true).join("\n"))
  }, 3_600_000)
  afterAll(async () => {
    await env?.close()
  })

  it.each(cases.map((c) => [c.cls, c.name, c.about] as const))("podman: %s %s (%s) is contained", (_cls, name) => {
    const r = batch?.cases.find((x) => x.case.name === name)
    assert.isDefined(r, `${name} was not built`)
    assert.deepStrictEqual(r!.problems, [], `${name}: ${r!.run.closed ? "closed" : r!.run.fault}`)
  })

  it("podman: the host is unchanged after the batch (containers, mounts, loop devices, processes, setuid files, sentinels, disk)", () => {
    assert.deepStrictEqual(batch?.hostProblems, [])
    assert.deepStrictEqual(batch?.watchProblems, [])
  })
})
