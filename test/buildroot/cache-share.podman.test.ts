/**
 * Two daemons on one machine sharing one buildroot cache directory (issue 15 §3), real podman and
 * the fixture: each daemon its own host, workdir and Buildroots service, the cache only on disk
 * between them. A root one daemon filled serves the other warm (no dnf); then both get a burst of
 * tasks over two keys (buildArch's @build, rebuildSRPM's @srpm-build) with room for one entry, so
 * fills, uses and evictions of the same keys interleave across the daemons: every task closes
 * with its package, every root a task used was whole, and no half-written entry or trash remains.
 * (Both daemons run in this test's process: the cache keeps no state in memory, and flock locks
 * of separate open files conflict within one process as between processes.)
 */
import { execFileSync } from "node:child_process"
import { readdirSync } from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { HubFileTree } from "../../src/koji/paths.js"
import * as buildArch from "../../src/tasks/buildArch.js"
import * as rebuildSRPM from "../../src/tasks/rebuildSRPM.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { type FakeHub, startFakeHub, TaskState } from "../fakehub/FakeHub.js"
import { podmanInstalled, podmanSkipReason, removeContainersOfHost, startPodmanService, testContainersOptions, type PodmanService, uniqueHostName } from "../support/podman.js"
import { buildrootsOptions, daemonOptions, type Fixture, loadFixtureFiles, makeTopdir, startDaemon, tempDir, uploadSrpm, waitFor } from "./support.js"

if (!podmanInstalled && process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1") {
  it("podman is installed", () => assert.fail(podmanSkipReason))
}

const hosts = ["a", "b"].map((h) => ({ name: uniqueHostName(`share-${h}`), password: `pw-${h}` }))
const [A, B] = hosts as [typeof hosts[0], typeof hosts[0]]

let podman: PodmanService
let fixture: Fixture
let topdir: string

/** A daemon of `host` on the shared `cacheDir` (room for `cacheMax` entries), until the scope closes. */
const daemon = (hub: FakeHub, host: typeof A, cacheDir: string, cacheMax: number) =>
  Effect.gen(function*() {
    const workdir = yield* tempDir("adjutant-share-work-")
    const options = buildrootsOptions(fixture, topdir, cacheDir, { cacheMax })
    const containers = Containers.layer(testContainersOptions(podman.socket, host.name, { defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 } }))
    const layer = Layer.mergeAll(
      KojiHub.layerWithTransport({ server: hub.url, user: host.name, password: host.password, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
      Readiness.layerAlways,
      TaskRegistry.layerModules([buildArch.handlers, rebuildSRPM.handlers]),
      HubFileTree.layer({ topurls: options.kojid.topurls, topdir })
    ).pipe(Layer.provideMerge(Buildroots.layer(options).pipe(Layer.provideMerge(containers))))
    // Built in this scope, so that the daemon and its Buildroots live until the scope closes.
    const context = yield* Layer.build(layer)
    yield* startDaemon(daemonOptions(workdir)).pipe(Effect.provide(context))
  })

let serial = 0
/** A task of `kind` assigned to `host`; its id. */
const submit = (hub: FakeHub, host: typeof A, kind: "build" | "srpm") => {
  const rel = uploadSrpm(topdir, path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm"), `share-${serial++}`)
  return kind === "build"
    ? hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch", assign: host.name })
    : hub.createTask("rebuildSRPM", [rel, "fixture-build", { repo_id: 1 }], { arch: "noarch", assign: host.name })
}

const FINAL: ReadonlySet<number> = new Set([TaskState.CLOSED, TaskState.FAILED, TaskState.CANCELED])

const ended = (hub: FakeHub, ids: ReadonlyArray<number>) =>
  waitFor(() => ids.every((id) => FINAL.has(hub.state.task(id)?.state ?? 0)), `tasks ${ids.join(", ")}`, "900 seconds")

const log = (hub: FakeHub, id: number, name: string): string => hub.state.upload(`tasks/${id % 10000}/${id}/${name}`)?.toString() ?? ""

/** The fixture's hub rpm ids of a comps group. */
const groupIds = (group: string): ReadonlyArray<number> =>
  fixture.manifest.rpms.filter((r) => r.arch !== "src" && fixture.manifest.groups[group]!.includes(r.name)).map((r) => r.id).sort((a, b) => a - b)

/** The rpm ids the hub lists for a task's buildroot when it was set up (INIT list, before BuildRequires). */
const hubList = (id: number): ReadonlyArray<number> => {
  const br = [...buildrootTables(topdir).buildroots.values()].find((b) => b.taskId === id)
  assert.isDefined(br, `task ${id} has a buildroot`)
  return [...br!.listing.entries()].filter(([, extra]) => !extra).map(([rpm]) => rpm).sort((a, b) => a - b)
}

describe.skipIf(!podmanInstalled)("two daemons sharing one buildroot cache (podman)", () => {
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    podman = await startPodmanService()
    topdir = makeTopdir(fixture)
  }, 600_000)
  afterAll(async () => {
    for (const h of hosts) removeContainersOfHost(h.name)
    await podman?.stop()
    execFileSync("rm", ["-rf", topdir])
  })

  it.live("a root filled by one daemon serves the other; a burst over two keys with room for one: every task closes, nothing half-written is used or left", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub({ hosts: hosts.map((h) => ({ ...h, capacity: 10, arches: "x86_64" })), topdir, scheduler: { runInterval: 0 } })
      loadFixture(topdir, fixture.manifest)
      const cacheDir = path.join(yield* tempDir("adjutant-share-cache-"), "cache")

      // Warm across daemons: A fills @build, then B's build of the same key takes A's root.
      yield* daemon(hub, A, cacheDir, 1)
      yield* daemon(hub, B, cacheDir, 1)
      const first = submit(hub, A, "build")
      yield* ended(hub, [first])
      const second = submit(hub, B, "build")
      yield* ended(hub, [second])
      assert.strictEqual(hub.state.task(first)?.state, TaskState.CLOSED, JSON.stringify(hub.state.taskResult(first)))
      assert.strictEqual(hub.state.task(second)?.state, TaskState.CLOSED, JSON.stringify(hub.state.taskResult(second)))
      assert.include(log(hub, first, "state.log"), "Finish: chroot init (filled")
      assert.include(log(hub, second, "state.log"), "Finish: chroot init (cached")
      assert.notInclude(log(hub, second, "state.log"), "installing minimal buildroot with dnf")
      assert.deepStrictEqual(hubList(second), groupIds("build"))

      // The burst: both daemons, both keys, one entry of room.
      const kinds: ReadonlyArray<"build" | "srpm"> = ["srpm", "build", "srpm", "build", "srpm", "build"]
      const burst = kinds.flatMap((k, i) => [{ id: submit(hub, i % 2 === 0 ? A : B, k), kind: k }, { id: submit(hub, i % 2 === 0 ? B : A, k === "build" ? "srpm" : "build"), kind: k === "build" ? "srpm" : "build" }])
      yield* ended(hub, burst.map((t) => t.id))
      let filled = 0
      for (const t of burst) {
        assert.strictEqual(hub.state.task(t.id)?.state, TaskState.CLOSED, `task ${t.id} (${t.kind}): ${JSON.stringify(hub.state.taskResult(t.id))}`)
        const state = log(hub, t.id, "state.log")
        if (state.includes("Finish: chroot init (filled")) filled++
        // The root the task got was a whole group, whoever filled it and whatever was evicted meanwhile.
        assert.deepStrictEqual(hubList(t.id), groupIds(t.kind === "build" ? "build" : "srpm-build"), `task ${t.id} (${t.kind}) root`)
      }
      const tasksOf = (h: typeof A) => burst.filter((t) => hub.state.task(t.id)?.hostId === hub.state.host(h.name)?.id).length
      assert.isAbove(tasksOf(A), 0)
      assert.isAbove(tasksOf(B), 0)
      // With room for one entry and two keys in use at once, roots were refilled after evictions.
      assert.isAbove(filled, 0, "some tasks of the burst filled")

      // Let the background eviction finish, then: at most the bound plus one in use, nothing half-written.
      yield* Effect.sleep("3 seconds")
      const names = readdirSync(cacheDir)
      assert.deepStrictEqual(names.filter((n) => n.startsWith(".fill-") || n.startsWith(".once-") || n.startsWith(".trash-")), [], "no staging or trash left")
      assert.isAtMost(names.filter((n) => !n.startsWith(".")).length, 2)
    }).pipe(Effect.scoped), 1_200_000)
})
