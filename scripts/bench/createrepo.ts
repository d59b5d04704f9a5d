// createrepo: `newRepo` of a generated tag of N small noarch RPMs (default 2,000) end to end —
// fake hub, daemon loop, repoInit, the createrepo subtask running createrepo_c in the bootstrap
// image, uploads, repoDone — against createrepo_c alone (the same image, the same repo
// directory and pkglist, `podman run`) in the same run. The host has no createrepo_c, so the
// floor is createrepo_c in a container too. createrepo_update is off so that every newRepo does
// the full work the floor does. The daemon polls every 50 ms, as in the other daemon benches:
// the measure is our overhead, not kojid.conf's sleeptime (whole seconds, a cycle per subtask hop).
// Usage: npm run bench -- createrepo [--packages 2000] [--rounds 5] [--sleeptime-ms 50]
// Uses KOJI_ADJUTANT_PODMAN_SOCKET when set, else starts its own podman service. The RPMs are
// generated once (rpmbuild in the bootstrap image, a few seconds) and kept under
// /var/tmp/koji-adjutant-bench/.
import { HubFileTree } from "../../src/koji/paths.js"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Duration, Effect, Layer, Logger, LogLevel, Schema } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { runDaemon } from "../../src/daemon/Daemon.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { makeRegistry, TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { addTag, buildrootTables } from "../../test/fakehub/buildroots.js"
import { addBuild, repoWorld, tagBuild } from "../../test/fakehub/newrepo.js"
import { startFakeHub } from "../../test/fakehub/FakeHub.js"
import { makeRepoHandlers } from "../../test/tasks/newRepoSupport.js"
import { startPodmanService, testContainersOptions, uniqueHostName } from "../../test/support/podman.js"

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const packages = Number(arg("packages", "2000"))
const rounds = Number(arg("rounds", "5"))
const sleeptimeMs = Number(arg("sleeptime-ms", "50"))
const image = process.env["KOJI_ADJUTANT_BOOTSTRAP_IMAGE"] ?? "localhost/koji-adjutant-bootstrap:latest"
const HOST = "bench-builder"
const PASSWORD = "bench-pw"

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const sh = (args: ReadonlyArray<string>, cwd: string): Promise<void> =>
  new Promise((ok, ko) => {
    const p = spawn("podman", args, { cwd, stdio: ["ignore", "ignore", "pipe"] })
    let err = ""
    p.stderr.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)))
    p.on("exit", (code) => (code === 0 ? ok() : ko(new Error(`podman ${args.slice(0, 3).join(" ")} exited ${code}: ${err}`))))
  })

const pkgName = (i: number) => `bench-pkg${String(i).padStart(5, "0")}`

/** N tiny noarch RPMs as subpackages of one spec, built once in the bootstrap image. */
const generate = async (scratch: string): Promise<string> => {
  const dir = join("/var/tmp/koji-adjutant-bench", `createrepo-${packages}`)
  const rpms = join(dir, "rpmbuild", "RPMS", "noarch")
  if (existsSync(rpms) && readdirSync(rpms).length === packages) return rpms
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const lines = ["Name: bench", "Version: 1.0", "Release: 1", "Summary: bench", "License: MIT", "BuildArch: noarch", "%description", "bench", ""]
  for (let i = 0; i < packages; i++) {
    lines.push(`%package -n ${pkgName(i)}`, `Summary: bench package ${i}`, `%description -n ${pkgName(i)}`, `bench package ${i}`, "")
  }
  lines.push("%prep", "%build", "%install", "")
  for (let i = 0; i < packages; i++) lines.push(`%files -n ${pkgName(i)}`, "")
  writeFileSync(join(dir, "bench.spec"), `${lines.join("\n")}\n`)
  console.error(`createrepo bench: building ${packages} RPMs in ${dir}`)
  await sh(["run", "--rm", "--network=none", "-v", `${dir}:/gen`, image, "rpmbuild", "-bb", "--quiet", "--define", "_topdir /gen/rpmbuild", "/gen/bench.spec"], scratch)
  return rpms
}

const program = Effect.gen(function*() {
  const scratch = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "koji-adjutant-bench-createrepo-"))),
    (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
  )
  const rpms = yield* Effect.promise(() => generate(scratch))
  const service = yield* Effect.acquireRelease(Effect.promise(() => startPodmanService()), (s) => Effect.promise(() => s.stop()))

  // A koji topdir: the RPMs (hard links) under packages/bench/1.0/1/noarch.
  const topdir = join(scratch, "topdir")
  const pkgdir = join(topdir, "packages", "bench", "1.0", "1", "noarch")
  mkdirSync(pkgdir, { recursive: true })
  mkdirSync(join(topdir, "repos"))
  mkdirSync(join(topdir, "work"))
  yield* Effect.promise(() => new Promise<void>((ok, ko) => {
    const p = spawn("sh", ["-c", `cp -al ${rpms}/. ${pkgdir}/`], { stdio: "inherit" })
    p.on("exit", (c) => (c === 0 ? ok() : ko(new Error(`cp exited ${c}`))))
  }))

  const hub = yield* startFakeHub({
    hosts: [{ name: HOST, password: PASSWORD, capacity: 10, arches: "x86_64", channels: ["default", "createrepo"] }],
    topdir,
    scheduler: { runInterval: 0 }
  })
  const tagId = addTag(topdir, "bench-build", "x86_64")
  const w = repoWorld(topdir)
  addBuild(w, { id: 1, name: "bench", version: "1.0", release: "1" },
    Array.from({ length: packages }, (_, i) => ({ id: i + 1, arch: "noarch", name: pkgName(i) })))
  tagBuild(w, tagId, 1)
  w.groups.set(tagId, new Map([["build", [pkgName(0), pkgName(1)]]]))

  const host = uniqueHostName("bench-createrepo")
  const containers = Containers.layer(testContainersOptions(service.socket, host, { defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 } }))
  const kojid = {
    topdir, createrepo_update: false, createrepo_skip_stat: true, copy_old_repodata: false, distrepo_skip_stat: false, use_createrepo_c: true
  }
  const layers = Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: topdir }),
    Layer.effect(TaskRegistry, Effect.map(Containers, (c) => makeRegistry(makeRepoHandlers({ kojid, image, containers: c }))))
  ).pipe(Layer.provideMerge(containers))

  const ours: Array<number> = []
  const floor: Array<number> = []
  yield* Effect.gen(function*() {
    yield* Effect.forkScoped(Effect.scoped(runDaemon({
      sleeptime: Duration.millis(sleeptimeMs),
      maxjobs: 4,
      forceLock: true,
      runner: { workdir: join(scratch, "work"), taskTimeout: 0, waitPoll: Duration.seconds(2) },
      shutdownTimeout: Duration.seconds(30),
      shutdownCallTimeout: Duration.seconds(5),
      batchHubCalls: true
    })))
    // Let the daemon log in and settle before the first measurement.
    yield* Effect.sleep(Duration.millis(sleeptimeMs * 3))
    for (let round = 0; round <= rounds; round++) {
      const t0 = performance.now()
      const id = hub.createTask("newRepo", [{ id: tagId, name: "bench-build" }, { opts: {}, __starstar: true }], { channel: "createrepo", priority: 15 })
      while (![2, 3, 5].includes(hub.state.task(id)?.state ?? 0)) yield* Effect.sleep("10 millis")
      const elapsed = performance.now() - t0
      if (hub.state.task(id)!.state !== 2) return yield* Effect.dieMessage(`newRepo failed: ${JSON.stringify(hub.state.taskResult(id))}`)
      const [repoId] = Schema.decodeUnknownSync(Schema.Tuple(Schema.Number, Schema.Number))(hub.state.taskResult(id))
      const archdir = join(topdir, "repos", "bench-build", String(repoId), "x86_64")
      const out = join(scratch, `floor-${round}`)
      mkdirSync(out)
      const t1 = performance.now()
      yield* Effect.promise(() => sh([
        "run", "--rm", "--network=none", "-v", `${topdir}:${topdir}:ro`, "-v", `${out}:${out}`, image,
        "/usr/bin/createrepo_c", "--error-exit-val", "-q", "-o", out, "-i", join(archdir, "pkglist"),
        "-g", join(topdir, "repos", "bench-build", String(repoId), "groups", "comps.xml"), archdir
      ], scratch))
      const floorMs = performance.now() - t1
      // Round 0 warms caches (image layers, page cache of the RPMs) and is not counted.
      if (round > 0) {
        ours.push(elapsed)
        floor.push(floorMs)
      }
      const parent = hub.state.task(id)!
      const child = hub.state.tasks.find((t) => t.parent === id)!
      const ms = (x: number | null) => (x === null ? NaN : Math.round((x - parent.createTs) * 1000))
      console.error(
        `createrepo bench: round ${round}${round === 0 ? " (warm-up)" : ""}: newRepo ${elapsed.toFixed(0)} ms ` +
          `(opened +${ms(parent.startTs)}, createrepo created +${ms(child.createTs)} opened +${ms(child.startTs)} ` +
          `done +${ms(child.completionTs)}, newRepo done +${ms(parent.completionTs)}), createrepo_c ${floorMs.toFixed(0)} ms`
      )
    }
  }).pipe(Effect.scoped, Effect.provide(layers))
  yield* Effect.sync(() => buildrootTables(topdir))
  const a = median(ours)
  const b = median(floor)
  console.log(`createrepo: ${packages} packages, ${rounds} rounds: newRepo end to end median ${a.toFixed(0)} ms, createrepo_c alone median ${b.toFixed(0)} ms`)
  console.log(`createrepo: newRepo/createrepo_c = ${(a / b).toFixed(2)} (target <= 1.50)`)
})

Effect.runPromise(Effect.scoped(program).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))).catch((e) => {
  console.error(e)
  process.exit(1)
})
