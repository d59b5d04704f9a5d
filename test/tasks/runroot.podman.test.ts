/**
 * runroot end to end (real podman): the buildroot of the fixture tag's repo comes from the
 * Buildroots service, the command runs as root in the task's copy of it with a default mount
 * (read-only) and an allowed requested mount (read-write), output in runroot.log, the hub
 * buildroot listed and EXPIRED; a mount outside the safe roots fails the task before any
 * buildroot or container exists; a second runroot of the same repo is warm (no fill) and has
 * none of the packages the first one installed, and the cached root is unchanged.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { beforeAll } from "vitest"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { parseRunrootConfig, type RunrootConfig } from "../../src/runroot/config.js"
import { runrootHandler } from "../../src/tasks/runroot.js"
import { makeRegistry, TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { buildrootsOptions, type Fixture, loadFixtureFiles, treeDigest } from "../buildroot/support.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, testContainersOptions, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { daemonOptions, DONE, HOST, PASSWORD, startDaemon, tempDir, waitFor } from "./newRepoSupport.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("runroot")
let podman: { readonly socket: string }
let fixture: Fixture

/** A topdir whose repos/ and packages/ are the fixture's (repo 1 of fixture-build is READY). */
const linkedTopdir = Effect.acquireRelease(
  Effect.sync(() => {
    const top = mkdtempSync(path.join(tmpdir(), "adjutant-runroot-top-"))
    symlinkSync(path.join(fixture.dir, "repos"), path.join(top, "repos"))
    symlinkSync(path.join(fixture.dir, "packages"), path.join(top, "packages"))
    mkdirSync(path.join(top, "work"))
    return top
  }),
  (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
)

/** The daemon's layers: real Containers on the test socket, Buildroots over them, the runroot handler, the fake hub. */
const runrootLayers = (hub: FakeHub, topdir: string, cacheDir: string, config: RunrootConfig) => {
  const containers = Containers.layer(testContainersOptions(podman.socket, hostName, {
    defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 }
  }))
  const broots = Buildroots.layer(buildrootsOptions(fixture, topdir, cacheDir)).pipe(Layer.provideMerge(containers))
  return Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: topdir }),
    Layer.effect(TaskRegistry, Effect.map(Buildroots, (buildroots) => makeRegistry([runrootHandler({ config, buildroots })])))
  ).pipe(Layer.provideMerge(broots))
}

describe.skipIf(!podmanInstalled)("runroot (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = loadFixtureFiles()
  }, 600_000)

  it.scopedLive("podman: runroot with an allowed mount runs in the tag's buildroot; a forbidden mount is refused before anything exists; a second runroot is warm and clean", () =>
    Effect.gen(function*() {
      const topdir = yield* linkedTopdir
      const host = yield* tempDir("adjutant-runroot-host-")
      mkdirSync(path.join(host, "packages"))
      writeFileSync(path.join(host, "packages", "from-host.txt"), "hello from the default mount\n")
      mkdirSync(path.join(host, "compose", "out"), { recursive: true })
      const config = Either.getOrThrow(parseRunrootConfig(
        `[paths]\ndefault_mounts = /mnt/koji/packages\nsafe_roots = /mnt/koji/compose\n\n` +
          `[path0]\nmountpoint = /mnt/koji\npath = ${host}\nfstype = none\noptions = ro,bind\n`,
        "runroot.conf"
      ))
      const hub = yield* startFakeHub({
        hosts: [{ name: HOST, password: PASSWORD, capacity: 10, arches: "x86_64" }], topdir, scheduler: { runInterval: 0 }
      })
      loadFixture(topdir, fixture.manifest)
      const workdir = yield* tempDir("adjutant-work-")
      const cacheDir = path.join(yield* tempDir("adjutant-runroot-cache-"), "cache")
      const layers = runrootLayers(hub, topdir, cacheDir, config)
      yield* Effect.gen(function*() {
        yield* startDaemon(daemonOptions(workdir))
        const tag = fixture.manifest.tag.name
        const script = "cat /mnt/koji/packages/from-host.txt; id -u; " +
          "echo made > /mnt/koji/compose/out/result.txt; " +
          "if touch /mnt/koji/packages/nope 2>/dev/null; then echo WROTE; else echo READONLY; fi"
        const ok = hub.createTask("runroot", [tag, "x86_64", ["/bin/sh", "-c", script], {
          mounts: ["/mnt/koji/compose/out"], packages: ["fixture-extra"], weight: 0.2, __starstar: true
        }])
        yield* waitFor(() => DONE.has(hub.state.task(ok)?.state ?? 0), `runroot ${ok}`, "300 seconds")
        const log = hub.state.upload(`tasks/${ok}/${ok}/runroot.log`)?.toString() ?? ""
        assert.strictEqual(hub.state.task(ok)!.state, 2, `${JSON.stringify(hub.state.taskResult(ok))}\n${log}`)
        assert.strictEqual(hub.state.taskResult(ok), "sh completed successfully")
        assert.include(log, "hello from the default mount")
        assert.include(log, "READONLY")
        assert.match(log, /^0$/m)
        assert.strictEqual(readFileSync(path.join(host, "compose", "out", "result.txt"), "utf8"), "made\n")
        assert.isFalse(existsSync(path.join(host, "packages", "nope")))
        const brs = [...buildrootTables(topdir).buildroots.values()]
        assert.strictEqual(brs.length, 1)
        assert.strictEqual(brs[0]!.state, 3)
        assert.strictEqual(brs[0]!.taskId, ok)
        assert.isAbove(brs[0]!.listing.size, 0)
        // The init list, then the requested package added while BUILDING (updateBuildRootList).
        const extraId = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch === "noarch")!.id
        assert.strictEqual(brs[0]!.listing.get(extraId), true)
        const setupId = fixture.manifest.rpms.find((r) => r.name === "fixture-setup" && r.arch === "noarch")!.id
        assert.strictEqual(brs[0]!.listing.get(setupId), false)
        // weight is raised to at least 0.5 (setTaskWeight).
        assert.strictEqual(hub.state.task(ok)!.weight, 0.5)

        const bad = hub.createTask("runroot", [tag, "x86_64", "cat /etc/shadow", { mounts: ["/etc"], __starstar: true }])
        yield* waitFor(() => DONE.has(hub.state.task(bad)?.state ?? 0), `runroot ${bad}`, "60 seconds")
        assert.strictEqual(hub.state.task(bad)!.state, 5)
        assert.deepStrictEqual(hub.state.taskResult(bad), { faultCode: 1000, faultString: "read-write mount point is not safe: /etc" })
        assert.strictEqual(buildrootTables(topdir).buildroots.size, 1)
        assert.deepStrictEqual(containersOfHost(hostName), [])
        assert.notInclude(hub.state.upload(`tasks/${ok}/${ok}/root.log`)?.toString() ?? "", "using the cached buildroot")

        // The same tag, arch and repo again: the cached root, without the first task's package.
        const buildroots = yield* Buildroots
        const entries = yield* buildroots.cache.list
        assert.strictEqual(entries.length, 1)
        const cachedRoot = path.join(cacheDir, entries[0]!.key, "root")
        const before = treeDigest(cachedRoot)
        const again = hub.createTask("runroot", [tag, "x86_64",
          "if rpm -q fixture-extra; then exit 3; fi; rpm -q fixture-setup && echo CLEAN; echo compose done > /tmp/compose.log", {
            repo_id: 1, upload_logs: ["/tmp/compose.log"], __starstar: true
          }])
        yield* waitFor(() => DONE.has(hub.state.task(again)?.state ?? 0), `runroot ${again}`, "300 seconds")
        const log2 = hub.state.upload(`tasks/${again}/${again}/runroot.log`)?.toString() ?? ""
        assert.strictEqual(hub.state.task(again)!.state, 2, `${JSON.stringify(hub.state.taskResult(again))}\n${log2}`)
        assert.strictEqual(hub.state.taskResult(again), "if completed successfully")
        assert.include(log2, "package fixture-extra is not installed")
        assert.include(log2, "CLEAN")
        assert.strictEqual(hub.state.upload(`tasks/${again}/${again}/compose.log`)?.toString(), "compose done\n")
        assert.include(hub.state.upload(`tasks/${again}/${again}/root.log`)?.toString() ?? "", "using the cached buildroot")
        assert.include(hub.state.upload(`tasks/${again}/${again}/state.log`)?.toString() ?? "", "Finish: chroot init (cached")
        const second = [...buildrootTables(topdir).buildroots.values()].find((b) => b.taskId === again)!
        assert.strictEqual(second.state, 3)
        assert.isUndefined(second.listing.get(extraId), "fixture-extra is not in the second buildroot's list")
        assert.strictEqual(second.listing.get(setupId), false)
        assert.deepStrictEqual((yield* buildroots.cache.list).map((e) => e.key), [entries[0]!.key])
        assert.strictEqual(treeDigest(cachedRoot), before, "the cached root is unchanged")

        // A failing command is the plugin's BuildrootError; its output is still in runroot.log.
        const failing = hub.createTask("runroot", [tag, "x86_64", ["/bin/sh", "-c", "echo about to fail; exit 7"], { repo_id: 1, __starstar: true }])
        yield* waitFor(() => DONE.has(hub.state.task(failing)?.state ?? 0), `runroot ${failing}`, "300 seconds")
        assert.deepStrictEqual(hub.state.taskResult(failing), { faultCode: 1012, faultString: "sh exited with status 7" })
        assert.include(hub.state.upload(`tasks/${failing}/${failing}/runroot.log`)?.toString() ?? "", "about to fail")
        assert.strictEqual([...buildrootTables(topdir).buildroots.values()].find((b) => b.taskId === failing)!.state, 3)
        assert.strictEqual(treeDigest(cachedRoot), before, "the cached root is unchanged")
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }).pipe(Effect.scoped, Effect.provide(layers))
    }), 600_000)
})
