// Fleet bench (issue 15 "Measure"): in one run, with real podman, the offline fixture and a real
// registry on loopback (Debian's docker-registry): host A builds fixture-hello and pushes its
// filled root; then host B, a daemon with an empty cache, builds the same package and takes the
// root from the registry (pulled); against that, a daemon with an empty cache and no registry
// fills with dnf (cold). Buildroot-ready time is the task's open (the hub's start_ts) → rpmbuild
// starts (state.log), as in the buildroot bench; median of `--runs` (default 3) each, alternated.
// Last line: `fleet: pulled/cold = X (target <= 0.2)`.
// (The 3-host burst throughput of the issue is measured elsewhere.)
// Usage: npm run bench -- fleet [--runs 3]. Run as root.
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { Buildroots, type BuildrootsOptions } from "../../src/buildroot/Buildroots.js"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { HubFileTree } from "../../src/koji/paths.js"
import * as buildArch from "../../src/tasks/buildArch.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { loadFixture } from "../../test/fakehub/buildroots.js"
import { type FakeHub, startFakeHub } from "../../test/fakehub/FakeHub.js"
import { buildrootsOptions, daemonOptions, type Fixture, loadFixtureFiles, makeTopdir, startDaemon, tempDir, uploadSrpm, waitFor } from "../../test/buildroot/support.js"
import { removeContainersOfHost, startPodmanService, testContainersOptions, uniqueHostName } from "../../test/support/podman.js"
import { startRegistry } from "../../test/support/registry.js"

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const runs = Number(arg("runs", "3"))

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Seconds from the task's openTask to the first "Start: rpmbuild" in its state.log. */
const readySeconds = (hub: FakeHub, id: number): number => {
  const startTs = hub.state.task(id)!.startTs!
  const stateLog = hub.state.upload(`tasks/${id % 10000}/${id}/state.log`)?.toString() ?? ""
  const line = stateLog.split("\n").find((l) => l.includes("Start: rpmbuild"))
  if (line === undefined) throw new Error(`task ${id}: no rpmbuild start in state.log:\n${stateLog}`)
  return Date.parse(`${line.slice(0, 23).replace(" ", "T")}Z`) / 1000 - startTs
}

/** Seconds from "Start: chroot init" to "Finish: chroot init" in a state.log (the fill or the pull alone). */
const initSeconds = (stateLog: string): number => {
  const at = (what: string) => {
    const line = stateLog.split("\n").find((l) => l.includes(what))
    if (line === undefined) throw new Error(`no ${what} in state.log:\n${stateLog}`)
    return Date.parse(`${line.slice(0, 23).replace(" ", "T")}Z`) / 1000
  }
  return at("Finish: chroot init") - at("Start: chroot init")
}

const main = async () => {
  const fixture: Fixture = loadFixtureFiles()
  const podman = await startPodmanService()
  const registry = await startRegistry()
  const topdir = makeTopdir(fixture)
  const hosts = Array.from({ length: 1 + 2 * runs }, (_, i) => ({ name: uniqueHostName(`fleetb-${i}`), password: `pw-${i}` }))
  const namespace = `${registry.host}/bench-${process.pid}`
  try {
    await Effect.runPromise(Effect.gen(function*() {
      const hub = yield* startFakeHub({ hosts: hosts.map((h) => ({ ...h, capacity: 10, arches: "x86_64" })), topdir, scheduler: { runInterval: 0 } })
      loadFixture(topdir, fixture.manifest)

      /** One build on a fresh daemon of `host` with an empty cache; its ready time and state.log. */
      const buildOn = (host: typeof hosts[0], patch: Partial<BuildrootsOptions>, waitPush: boolean) =>
        Effect.gen(function*() {
          const cacheDir = yield* tempDir("adjutant-fleet-bench-cache-")
          const workdir = yield* tempDir("adjutant-fleet-bench-work-")
          const options = buildrootsOptions(fixture, topdir, cacheDir, patch)
          const containers = Containers.layer(testContainersOptions(podman.socket, host.name, { defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 } }))
          const layer = Layer.mergeAll(
            KojiHub.layerWithTransport({ server: hub.url, user: host.name, password: host.password, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
            Readiness.layerAlways,
            TaskRegistry.layerModules([buildArch.handlers]),
            HubFileTree.layer({ topurls: options.kojid.topurls, topdir })
          ).pipe(Layer.provideMerge(Buildroots.layer(options).pipe(Layer.provideMerge(containers))))
          const context = yield* Layer.build(layer)
          yield* startDaemon(daemonOptions(workdir, "50 millis")).pipe(Effect.provide(context))
          execFileSync("sync")
          const rel = uploadSrpm(topdir, path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm"), `fleet-bench-${host.name}`)
          const id = hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch", assign: host.name })
          yield* waitFor(() => [2, 3, 5].includes(hub.state.task(id)?.state ?? 0), `task ${id}`, "600 seconds")
          if (hub.state.task(id)?.state !== 2) throw new Error(`task ${id} failed: ${JSON.stringify(hub.state.taskResult(id))}`)
          if (waitPush) {
            const cache = Context.get(context, Buildroots).cache
            const deadline = Date.now() + 180_000
            while ((yield* cache.list).every((e) => e.meta.notes?.["pushed"] === undefined)) {
              if (Date.now() > deadline) throw new Error("host A never pushed its root")
              yield* Effect.sleep("200 millis")
            }
          }
          const rootLog = hub.state.upload(`tasks/${id % 10000}/${id}/root.log`)?.toString() ?? ""
          const note = rootLog.split("\n").find((l) => l.includes("taking the buildroot from the registry"))
          if (note !== undefined) console.log(`  ${host.name}: ${note.replace(/; manifest and layer.*/, "")}`)
          return { ready: readySeconds(hub, id), state: hub.state.upload(`tasks/${id % 10000}/${id}/state.log`)?.toString() ?? "" }
        }).pipe(Effect.scoped)

      const registryOptions = { registry: { namespace, authFile: "", insecure: true } }
      const a = yield* buildOn(hosts[0]!, registryOptions, true)
      console.log(`host A: filled and pushed, buildroot-ready ${a.ready.toFixed(3)} s`)
      const pulled: Array<number> = []
      const cold: Array<number> = []
      const pulledInit: Array<number> = []
      const coldInit: Array<number> = []
      for (let i = 0; i < runs; i++) {
        const p = yield* buildOn(hosts[1 + 2 * i]!, registryOptions, false)
        if (!p.state.includes("(pulled, verified)") || p.state.includes("installing minimal buildroot with dnf")) throw new Error(`run ${i}: B did not take the root from the registry:\n${p.state}`)
        pulled.push(p.ready)
        pulledInit.push(initSeconds(p.state))
        const c = yield* buildOn(hosts[2 + 2 * i]!, {}, false)
        if (!c.state.includes("installing minimal buildroot with dnf")) throw new Error(`run ${i}: the cold build did not fill:\n${c.state}`)
        cold.push(c.ready)
        coldInit.push(initSeconds(c.state))
        console.log(`run ${i + 1}: ready pulled ${p.ready.toFixed(3)} s, cold ${c.ready.toFixed(3)} s; chroot init pulled ${pulledInit[i]!.toFixed(3)} s, cold ${coldInit[i]!.toFixed(3)} s`)
      }
      const pm = median(pulled)
      const cm = median(cold)
      console.log(`buildroot-ready pulled from the registry: median ${pm.toFixed(3)} s  (${pulled.map((x) => x.toFixed(3)).join(" ")})`)
      console.log(`buildroot-ready cold dnf fill:           median ${cm.toFixed(3)} s  (${cold.map((x) => x.toFixed(3)).join(" ")})`)
      console.log(`chroot init alone (fill or pull): pulled median ${median(pulledInit).toFixed(3)} s, cold median ${median(coldInit).toFixed(3)} s, ratio ${(median(pulledInit) / median(coldInit)).toFixed(2)}`)
      console.log(`fleet: pulled/cold = ${(pm / cm).toFixed(2)} (target <= 0.2)`)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)))
  } finally {
    for (const h of hosts) removeContainersOfHost(h.name)
    await registry.stop()
    await podman.stop()
    execFileSync("rm", ["-rf", topdir])
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
