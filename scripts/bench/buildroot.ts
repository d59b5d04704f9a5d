// Buildroot bench (issue 6 "Measure"), all in one run against the fake hub with real podman and
// the offline fixture:
// 1. buildroot-ready time — task opened (the hub's start_ts) → rpmbuild starts (state.log's
//    "Start: rpmbuild" line) — for buildArch of the noarch fixture, cold (no cache: the @build
//    group is installed each time) and warm (cached root), median of 5 each → warm/cold.
// 2. the same build end to end through the daemon with a warm cache (task created → CLOSED)
//    against plain `rpmbuild --rebuild` in the bootstrap container (the floor), median of 5.
// 3. the same SRPM through `build-local --target` from the fake hub served over HTTP without
//    login, the fixture topdir as its topurl, warm cache — what a packager runs to reproduce the
//    build: the hub's target, repo and config read anonymously, the SRPM rebuilt in an srpm-build
//    buildroot as kojid does, then the noarch build, the summary — median of 5 against the same
//    floor. Measured as the daemon path is, without process start: the `build-local` command
//    run in this process. The whole program (`node dist/main.js build-local`, which the bench
//    runner has just built), Node's start and module loading included, is printed beside it.
// Usage: npm run bench -- buildroot [--runs 5]
// Uses KOJI_ADJUTANT_PODMAN_SOCKET when set, else starts its own podman service. Run as root.
import { execFile, execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { Command } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Duration, Effect, Logger, LogLevel } from "effect"
import { buildLocalCommand } from "../../src/local/buildLocal.js"
import { type FakeHub, startFakeHub } from "../../test/fakehub/FakeHub.js"
import { addTag, loadFixture } from "../../test/fakehub/buildroots.js"
import { addTarget } from "../../test/fakehub/targets.js"
import { serveFixture } from "../../test/fixture/manifest.js"
import {
  buildrootsOptions, daemonLayers, daemonOptions, type Fixture, fixtureHub, loadFixtureFiles, makeTopdir, startDaemon, uploadSrpm, waitFor
} from "../../test/buildroot/support.js"
import { traversableTempDir } from "../../test/support/dirs.js"
import { removeContainersOfHost, startPodmanService, uniqueHostName } from "../../test/support/podman.js"

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const runs = Number(arg("runs", "5"))

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
  const ts = Date.parse(`${line.slice(0, 23).replace(" ", "T")}Z`) / 1000
  return ts - startTs
}

/** Runs `n` buildArch tasks of the noarch fixture one after the other through one daemon. */
const buildTasks = (fixture: Fixture, socket: string, host: string, cacheDir: string, cacheMax: number, n: number) =>
  Effect.gen(function* () {
    const topdir = makeTopdir(fixture)
    // Traversable (0711): builds run as build_userns ids, which must reach their roots.
    const workdir = traversableTempDir("adjutant-bench-work-")
    try {
      return yield* Effect.gen(function* () {
        const hub = yield* fixtureHub(fixture, topdir)
        const srpm = path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm")
        const out: Array<{ readonly ready: number; readonly endToEnd: number }> = []
        yield* Effect.gen(function* () {
          yield* startDaemon({ ...daemonOptions(workdir), sleeptime: Duration.millis(50) })
          for (let i = 0; i < n; i++) {
            const rel = uploadSrpm(topdir, srpm, `bench-${i}`)
            const id = hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" })
            yield* waitFor(() => [2, 3, 5].includes(hub.state.task(id)?.state ?? 0), `bench task ${id}`, "600 seconds")
            const task = hub.state.task(id)!
            if (task.state !== 2) throw new Error(`bench task ${id} failed: ${JSON.stringify(hub.state.taskResult(id))}`)
            // The hub's own create and completion times: waitFor polls every 100 ms, which
            // would add up to 100 ms of the poll's granularity to a half-second build.
            const endToEnd = task.completionTs! - task.createTs
            out.push({ ready: readySeconds(hub, id), endToEnd })
          }
        }).pipe(Effect.scoped, Effect.provide(daemonLayers(hub, socket, host, buildrootsOptions(fixture, topdir, cacheDir, { cacheMax }))))
        return out
      }).pipe(Effect.scoped)
    } finally {
      rmSync(topdir, { recursive: true, force: true })
      rmSync(workdir, { recursive: true, force: true })
    }
  })

/** The checkout's root (this file runs compiled from node_modules/.cache). */
const repoRoot = ((): string => {
  let dir = import.meta.dirname
  while (!existsSync(path.join(dir, "scripts/make-fixture-repo.sh")) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return dir
})()

/** Seconds of `node dist/main.js build-local ARGS` from spawn to exit (async: the fake hub answers from this process). */
const programOnce = (args: ReadonlyArray<string>): Promise<number> =>
  new Promise((done, fail) => {
    const t0 = performance.now()
    execFile(process.execPath, [path.join(repoRoot, "dist/main.js"), "build-local", ...args], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) fail(new Error(`build-local failed: ${stderr}\n${stdout.slice(-2000)}`))
      else done((performance.now() - t0) / 1000)
    })
  })

const runCommand = Command.run(buildLocalCommand, { name: "koji-adjutant", version: "bench" })

/**
 * Seconds of the `build-local` command run in this process. Its summary goes through the global
 * console (Effect's default Console): caught here, so that the bench prints only its results, and
 * checked, because the command reports a failure by printing it and setting the exit code.
 */
const commandOnce = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const printed: Array<string> = []
    const log = console.log
    const error = console.error
    const t0 = performance.now()
    yield* Effect.acquireUseRelease(
      Effect.sync(() => {
        console.log = (...xs: Array<unknown>) => void printed.push(xs.join(" "))
        console.error = (...xs: Array<unknown>) => void printed.push(xs.join(" "))
      }),
      () => runCommand(["node", "koji-adjutant", ...args]).pipe(Effect.provide(NodeContext.layer)),
      () => Effect.sync(() => {
        console.log = log
        console.error = error
      })
    )
    const s = (performance.now() - t0) / 1000
    if (!printed.some((l) => l.startsWith("built fixture-hello-1.0-1 for noarch"))) throw new Error(`build-local failed:\n${printed.join("\n")}`)
    return s
  })

/** Warm builds of the noarch fixture through `build-local --target`: `n` of the command, `n` of the whole program (one first, to fill the cache). */
const buildLocalRuns = (fixture: Fixture, socket: string, scratch: string, n: number) =>
  Effect.gen(function* () {
    const hub = yield* startFakeHub({ topdir: mkdtempSync(path.join(scratch, "hubtop-")) })
    loadFixture(hub.topdir, fixture.manifest)
    addTarget(hub.topdir, "fixture-candidate", fixture.manifest.tag.id, addTag(hub.topdir, "fixture-dest", null))
    const served = yield* Effect.acquireRelease(Effect.promise(() => serveFixture(fixture.dir)), (s) => Effect.promise(() => s.close()))
    const conf = path.join(scratch, "build-local.conf")
    writeFileSync(conf, [
      "[adjutant]", `podman_socket = unix://${socket}`, `buildroot_cache_dir = ${path.join(scratch, "local-cache")}`, `bootstrap_image = ${fixture.image}`, ""
    ].join("\n"))
    const args = (i: number) => [
      "-c", conf, "--server", hub.url, "--topurl", served.url, "--target", "fixture-candidate",
      "--result", path.join(scratch, `local-${i}`), path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm")
    ]
    yield* commandOnce(args(0))
    const command: Array<number> = []
    for (let i = 1; i <= n; i++) command.push(yield* commandOnce(args(i)))
    const program: Array<number> = []
    for (let i = 1; i <= n; i++) program.push(yield* Effect.promise(() => programOnce(args(n + i))))
    return { command, program }
  }).pipe(Effect.scoped)

/** Plain `rpmbuild --rebuild` of the same SRPM in the bootstrap container, seconds. */
const floorOnce = (fixture: Fixture, scratch: string): number => {
  const out = mkdtempSync(path.join(scratch, "floor-"))
  const t0 = performance.now()
  const r = spawnSync("podman", [
    "run", "--rm", "--network=none", "-v", `${fixture.srpms}:/srpms:ro`, "-v", `${out}:/out`, fixture.image,
    "rpmbuild", "--rebuild", "--define", "_topdir /tmp/t", "--define", "_rpmdir /out", "/srpms/fixture-hello-1.0-1.src.rpm"
  ], { stdio: "ignore" })
  const s = (performance.now() - t0) / 1000
  if (r.status !== 0) throw new Error("plain rpmbuild --rebuild failed")
  return s
}

/**
 * A bare `dnf --installroot … install @build` of the same fixture repo into an empty root in the
 * same bootstrap image (container start included), seconds: what a cold fill costs at least.
 */
const bareDnfOnce = (fixture: Fixture): number => {
  const dnf = [
    "dnf -y --installroot=/tmp/root --releasever=1 --disablerepo='*'",
    `--repofrompath=build,file:///mnt/koji/repos/${fixture.manifest.tag.name}/${fixture.manifest.repo.id}/x86_64`,
    "--enablerepo=build --setopt=build.gpgcheck=0 --setopt=install_weak_deps=False",
    "--setopt=reposdir=/dev/null --setopt=cachedir=/tmp/dnfcache --setopt=strict=True install @build"
  ].join(" ")
  const t0 = performance.now()
  const r = spawnSync("podman", ["run", "--rm", "--network=none", "-v", `${fixture.dir}:/mnt/koji:ro`, fixture.image, "bash", "-ec", dnf], { stdio: "ignore" })
  const s = (performance.now() - t0) / 1000
  if (r.status !== 0) throw new Error("bare dnf install @build failed")
  return s
}

const main = async () => {
  const fixture = loadFixtureFiles()
  const service = await startPodmanService()
  const host = uniqueHostName("bench-br")
  const scratch = traversableTempDir("koji-adjutant-bench-br-")
  try {
    const run = <A>(eff: Effect.Effect<A, unknown>) =>
      Effect.runPromise(eff.pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
    const cold = await run(buildTasks(fixture, service.socket, host, path.join(scratch, "cold"), 0, runs))
    const warm = (await run(buildTasks(fixture, service.socket, host, path.join(scratch, "warm"), 4, runs + 1))).slice(1)
    const local = await run(buildLocalRuns(fixture, service.socket, scratch, runs))
    const floor: Array<number> = []
    floorOnce(fixture, scratch)
    for (let i = 0; i < runs; i++) floor.push(floorOnce(fixture, scratch))
    const bare: Array<number> = []
    for (let i = 0; i < runs; i++) bare.push(bareDnfOnce(fixture))
    const c = median(cold.map((x) => x.ready))
    const w = median(warm.map((x) => x.ready))
    const e = median(warm.map((x) => x.endToEnd))
    const f = median(floor)
    console.log(`buildroot-ready cold: median ${c.toFixed(3)} s  (${cold.map((x) => x.ready.toFixed(3)).join(" ")})`)
    console.log(`buildroot-ready warm: median ${w.toFixed(3)} s  (${warm.map((x) => x.ready.toFixed(3)).join(" ")})`)
    console.log(`bare dnf install @build into an empty root in the bootstrap container: median ${median(bare).toFixed(3)} s  (${bare.map((x) => x.toFixed(3)).join(" ")})`)
    console.log(`buildroot: cold fill / bare dnf = ${(c / median(bare)).toFixed(2)} (target <= 1.10; the cold figure is the whole buildroot-ready time, newBuildRoot to rpmbuild)`)
    console.log(`buildroot: warm/cold = ${(w / c).toFixed(2)} (target <= 0.10)`)
    console.log(`end to end through the daemon (warm): median ${e.toFixed(3)} s  (${warm.map((x) => x.endToEnd.toFixed(3)).join(" ")})`)
    const l = median(local.command)
    const p = median(local.program)
    console.log(`plain rpmbuild --rebuild in the bootstrap container: median ${f.toFixed(3)} s  (${floor.map((x) => x.toFixed(3)).join(" ")})`)
    console.log(`build-local --target from the hub (warm): median ${l.toFixed(3)} s  (${local.command.map((x) => x.toFixed(3)).join(" ")})`)
    console.log(`build-local --target, whole program (node start included): median ${p.toFixed(3)} s  (${local.program.map((x) => x.toFixed(3)).join(" ")})`)
    console.log(`buildroot: build-local/rpmbuild = ${(l / f).toFixed(2)} (target <= 2.00)`)
    console.log(`buildroot: daemon/rpmbuild = ${(e / f).toFixed(2)} (target <= 2.00)`)
  } finally {
    removeContainersOfHost(host)
    await service.stop()
    execFileSync("rm", ["-rf", scratch])
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
