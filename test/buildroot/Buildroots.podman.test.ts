/**
 * The Buildroots service with real podman and the fixture repo: a cold fill reports the group's
 * packages with the fixture's hub ids, a second buildroot of the same repo reuses the cached root,
 * and a build that installs BuildRequires leaves the cached root exactly as it was.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { sessionHub } from "../../src/buildroot/hubSide.js"
import { Containers } from "../../src/containers/Containers.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { buildrootTables } from "../fakehub/buildroots.js"
import { podmanInstalled, podmanSkipReason, testContainersOptions, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { buildrootsOptions, type Fixture, fixtureHub, HOST, loadFixtureFiles, PASSWORD, scopedTopdir, tempDir, treeDigest } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("buildroots")
let podman: { readonly socket: string }
let fixture: Fixture
let dir: string

describe.skipIf(!podmanInstalled)("Buildroots (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    dir = mkdtempSync(path.join(tmpdir(), "adjutant-broots-"))
  }, 600_000)
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it.live("podman: cold fill lists the group with hub ids, a warm open reuses the root, BuildRequires never reach the cache", () =>
    Effect.gen(function* () {
      const topdir = yield* scopedTopdir(fixture)
      const hub = yield* fixtureHub(fixture, topdir)
      const cacheDir = path.join(dir, "cache")
      const options = buildrootsOptions(fixture, topdir, cacheDir)
      const layer = Layer.mergeAll(
        Buildroots.layer(options).pipe(Layer.provideMerge(Containers.layer(testContainersOptions(podman.socket, hostName)))),
        KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 0, retryInterval: 1 }).pipe(Layer.orDie)
      )
      yield* Effect.gen(function* () {
        const buildroots = yield* Buildroots
        const session = yield* Effect.flatMap(KojiHub, (k) => k.loginScoped(true))
        const api = hostApi(session)
        const ids = fixture.manifest.rpms.filter((r) => r.arch !== "src" && fixture.manifest.groups["build"]!.includes(r.name)).map((r) => r.id).sort()
        const openOne = Effect.gen(function* () {
          const task = hub.createTask("buildArch", ["x", "fixture-build", "noarch", true, { repo_id: 1 }], { assign: HOST })
          yield* api.openTask(task)
          const workdir = yield* tempDir("adjutant-brwork-")
          const t0 = Date.now()
          const broot = yield* buildroots.open({ taskId: task, tag: "fixture-build", arch: "x86_64", repoId: 1, installGroup: "build", workdir }, sessionHub(session, task, options.kojid))
          return { broot, task, ms: Date.now() - t0, workdir }
        })
        const cold = yield* Effect.scoped(Effect.gen(function* () {
          const { broot, ms } = yield* openOne
          assert.isFalse(broot.warm)
          const row = buildrootTables(topdir).buildroots.get(broot.id)!
          assert.strictEqual(row.state, 0, "INIT until the build starts")
          assert.deepStrictEqual([...row.listing.keys()].sort(), ids)
          return { id: broot.id, ms }
        }))
        assert.strictEqual(buildrootTables(topdir).buildroots.get(cold.id)!.state, 3, "EXPIRED when the scope closes")
        const [entry] = yield* buildroots.cache.list
        const rootDir = path.join(cacheDir, entry!.key, "root")
        const before = treeDigest(rootDir)
        const warm = yield* Effect.scoped(Effect.gen(function* () {
          const { broot, ms, workdir } = yield* openOne
          assert.isTrue(broot.warm)
          const srpm = path.join(workdir, "fixture-needs-1.0-1.src.rpm")
          execFileSync("cp", [path.join(fixture.srpms, "fixture-needs-1.0-1.src.rpm"), srpm])
          yield* broot.build(srpm, "noarch")
          const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch !== "src")!
          assert.strictEqual(buildrootTables(topdir).buildroots.get(broot.id)!.listing.get(extra.id), true)
          return ms
        }))
        assert.strictEqual(treeDigest(rootDir), before, "the cached root is unchanged")
        assert.isBelow(warm, cold.ms / 3, `warm open ${warm} ms vs cold ${cold.ms} ms`)
      }).pipe(Effect.scoped, Effect.provide(layer))
    }).pipe(Effect.scoped), 600_000)
})
