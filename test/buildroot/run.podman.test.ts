/**
 * `Buildroot.run` with real podman and the fixture repo: packages installed as `mock --install`
 * land in the task's copy of the root and in the hub list (updateBuildRootList after
 * BUILDING, kojid's runroot order), the command runs as root with its mounts and writes its log;
 * a second buildroot of the same repo is warm and has neither the packages nor the files of the
 * first; the build user gets a read-only root; a failed install is a BuildrootSetupError; the
 * cached root never changes and no container is left.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { BuildrootSetupError } from "../../src/buildroot/errors.js"
import { sessionHub } from "../../src/buildroot/hubSide.js"
import { Containers } from "../../src/containers/Containers.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { taskRelPath } from "../../src/koji/paths.js"
import { buildrootTables } from "../fakehub/buildroots.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, testContainersOptions, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { buildrootsOptions, type Fixture, fixtureHub, HOST, loadFixtureFiles, PASSWORD, scopedTopdir, tempDir, treeDigest } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("broot-run")
let podman: { readonly socket: string }
let fixture: Fixture
let dir: string

const BUILDROOT_CALLS = new Set(["host.newBuildRoot", "host.setBuildRootList", "host.setBuildRootState", "host.updateBuildRootList"])

describe.skipIf(!podmanInstalled)("Buildroot.run (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    dir = mkdtempSync(path.join(tmpdir(), "adjutant-broot-run-"))
  }, 600_000)
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it.live("podman: run installs into the task's copy only, runs as root with mounts, and the next buildroot is warm and clean", () =>
    Effect.gen(function* () {
      const topdir = yield* scopedTopdir(fixture)
      const hub = yield* fixtureHub(fixture, topdir)
      const cacheDir = path.join(dir, "cache")
      const options = buildrootsOptions(fixture, topdir, cacheDir)
      const host = yield* tempDir("adjutant-run-mounts-")
      mkdirSync(path.join(host, "in"))
      mkdirSync(path.join(host, "out"))
      writeFileSync(path.join(host, "in", "hello.txt"), "hello from the host\n")
      const layer = Layer.mergeAll(
        Buildroots.layer(options).pipe(Layer.provideMerge(Containers.layer(testContainersOptions(podman.socket, hostName)))),
        KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 0, retryInterval: 1 }).pipe(Layer.orDie)
      )
      yield* Effect.gen(function* () {
        const buildroots = yield* Buildroots
        const session = yield* Effect.flatMap(KojiHub, (k) => k.loginScoped(true))
        const api = hostApi(session)
        const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch !== "src")!
        const openOne = Effect.gen(function* () {
          const task = hub.createTask("runroot", ["fixture-build", "x86_64", "true"], { assign: HOST })
          yield* api.openTask(task)
          const workdir = yield* tempDir("adjutant-runwork-")
          const broot = yield* buildroots.open(
            { taskId: task, tag: "fixture-build", arch: "x86_64", repoId: 1, installGroup: "build", workdir, network: true, hostIds: true },
            sessionHub(session, task, options.kojid)
          )
          return { broot, task }
        })
        const mounts = [
          { type: "bind" as const, source: path.join(host, "in"), destination: "/mnt/koji/in" },
          { type: "bind" as const, source: path.join(host, "out"), destination: "/mnt/koji/out", writable: true }
        ]

        const first = yield* Effect.scoped(Effect.gen(function* () {
          const { broot, task } = yield* openOne
          assert.isFalse(broot.warm, "the first buildroot fills the cache")
          const r = yield* broot.run({
            command: ["/bin/sh", "-c", "id -u; rpm -q fixture-extra; cat /mnt/koji/in/hello.txt; echo made > /mnt/koji/out/made.txt; " +
              "echo scratch > /etc/runroot-scratch; if touch /mnt/koji/in/nope 2>/dev/null; then echo WROTE; else echo READONLY; fi"],
            user: "root",
            mounts,
            installPackages: ["fixture-extra"],
            log: "runroot.log"
          })
          const log = readFileSync(r.logFile, "utf8")
          assert.strictEqual(r.exitCode, 0, log)
          assert.match(log, /^0$/m)
          assert.match(log, /^fixture-extra-/m)
          assert.include(log, "hello from the host")
          assert.include(log, "READONLY")
          assert.strictEqual(readFileSync(path.join(r.rootdir, "etc/runroot-scratch"), "utf8"), "scratch\n")
          const row = buildrootTables(topdir).buildroots.get(broot.id)!
          assert.strictEqual(row.state, 2, "BUILDING while it runs")
          assert.strictEqual(row.listing.get(extra.id), true, "the installed package is added by updateBuildRootList")
          const failed = yield* broot.run({ command: ["/bin/sh", "-c", "echo failing; exit 7"], user: "root", mounts: [], log: "runroot.log" })
          assert.strictEqual(failed.exitCode, 7)
          assert.include(readFileSync(failed.logFile, "utf8"), "failing")
          const logs = yield* broot.finishLogs
          assert.include(logs, "runroot.log")
          return { id: broot.id, task }
        }))
        assert.strictEqual(readFileSync(path.join(host, "out", "made.txt"), "utf8"), "made\n")
        const uploaded = hub.state.upload(`${taskRelPath(first.task)}/runroot.log`)?.toString() ?? ""
        assert.include(uploaded, "hello from the host")
        assert.include(uploaded, "failing")
        assert.strictEqual(buildrootTables(topdir).buildroots.get(first.id)!.state, 3, "EXPIRED when the scope closes")
        // kojid's runroot order: newBuildRoot, setBuildRootList (INIT), BUILDING, updateBuildRootList, EXPIRED; BUILDING once for two runs.
        const sequence = hub.state.calls.filter((c) => BUILDROOT_CALLS.has(c.method) && (c.method === "host.newBuildRoot" ? c.result === first.id : c.params[0] === first.id))
          .map((c) => c.method === "host.setBuildRootState" ? `${c.method} ${String(c.params[1])}` : c.method)
        assert.deepStrictEqual(sequence, [
          "host.newBuildRoot", "host.setBuildRootList", "host.setBuildRootState BUILDING", "host.updateBuildRootList", "host.setBuildRootState EXPIRED"
        ])

        const entries = yield* buildroots.cache.list
        assert.strictEqual(entries.length, 1)
        const rootDir = path.join(cacheDir, entries[0]!.key, "root")
        const before = treeDigest(rootDir)

        yield* Effect.scoped(Effect.gen(function* () {
          const { broot } = yield* openOne
          assert.isTrue(broot.warm, "the second buildroot of the same repo comes from the cache")
          const r = yield* broot.run({
            command: ["/bin/sh", "-c", "if rpm -q fixture-extra; then exit 3; fi; test ! -e /etc/runroot-scratch || exit 4; echo clean"],
            user: "root",
            mounts: [],
            log: "runroot.log"
          })
          assert.strictEqual(r.exitCode, 0, readFileSync(r.logFile, "utf8"))
          assert.notStrictEqual(buildrootTables(topdir).buildroots.get(broot.id)!.listing.get(extra.id), true)
          const asBuild = yield* broot.run({
            command: ["/bin/sh", "-c", "id -u; if touch /usr/x 2>/dev/null; then echo WROTE; else echo READONLY; fi; echo ok > /builddir/build/f && cat /builddir/build/f"],
            user: "build",
            mounts: [],
            log: "build-user.log"
          })
          const text = readFileSync(asBuild.logFile, "utf8")
          assert.strictEqual(asBuild.exitCode, 0, text)
          assert.match(text, /^1000$/m)
          assert.include(text, "READONLY")
          assert.match(text, /^ok$/m)
          const bad = yield* Effect.exit(broot.run({ command: ["true"], user: "root", mounts: [], installPackages: ["no-such-package"], log: "runroot.log" }))
          assert.isTrue(Exit.isFailure(bad))
          if (Exit.isFailure(bad)) {
            const err = Option.getOrUndefined(Cause.failureOption(bad.cause))
            assert.instanceOf(err, BuildrootSetupError)
            assert.match((err as BuildrootSetupError).message, /^--install no-such-package exited with status [1-9]/)
          }
        }))
        assert.strictEqual(treeDigest(rootDir), before, "the cached root is unchanged")
        assert.strictEqual((yield* buildroots.cache.list).length, 1)
        assert.deepStrictEqual(containersOfHost(hostName), [], "no container left behind")
      }).pipe(Effect.scoped, Effect.provide(layer))
    }).pipe(Effect.scoped), 600_000)
})
