// Hostile-package bench (issue 10 "Measure"): builds every case of test/hostile/cases.ts through
// build-local (buildLocal with a kojid.conf of small limits) and through the daemon's buildArch /
// buildSRPMFromSCM against the fake hub, one batch each with real podman and the offline fixture,
// watching the host while they run and checking it after each batch (test/hostile/support.ts).
// Prints per case contained yes/no and its wall time, then the batches' host checks, and as its
// last line `hostile: contained = N/M (target = M/M)`: a case counts when it was contained and
// the host was unchanged after its batch.
// Usage: npm run bench -- hostile. Uses KOJI_ADJUTANT_PODMAN_SOCKET when set, else starts its own
// podman service. Run as root (task disks are loop mounts).
import { Effect } from "effect"
import { loadFixtureFiles } from "../../test/buildroot/support.js"
import { type BatchReport, formatBatch, prepareHostileEnv, runDaemonBatch, runLocalBatch } from "../../test/hostile/support.js"
import { removeContainersOfHost, startPodmanService, uniqueHostName } from "../../test/support/podman.js"

const main = async () => {
  const t0 = Date.now()
  const fixture = loadFixtureFiles()
  const service = await startPodmanService()
  const hostName = uniqueHostName("bench-hostile")
  const env = await prepareHostileEnv(fixture, service.socket)
  const batches: Array<BatchReport> = []
  try {
    const runs: ReadonlyArray<() => Effect.Effect<BatchReport, unknown>> = [
      () => runLocalBatch(env, service.socket),
      () => runDaemonBatch(env, service.socket, hostName)
    ]
    for (const run of runs) {
      const b = await Effect.runPromise(run())
      batches.push(b)
      for (const line of formatBatch(b)) console.log(line)
    }
  } finally {
    removeContainersOfHost(hostName)
    await env.close()
    await service.stop()
  }
  const all = batches.flatMap((b) => b.cases.map((c) => c.problems.length === 0 && b.hostProblems.length === 0 && b.watchProblems.length === 0))
  const contained = all.filter((x) => x).length
  console.log(`wall time: ${((Date.now() - t0) / 1000).toFixed(0)} s (${batches.map((b) => `${b.mode} batch ${b.seconds.toFixed(0)} s`).join(", ")})`)
  console.log(`hostile: contained = ${contained}/${all.length} (target = ${all.length}/${all.length})`)
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
