/**
 * Buildroot images through a real registry on loopback (Debian's docker-registry, with htpasswd
 * credentials from an auth file), real podman and the fixture (issue 15): host A fills a root with
 * dnf and pushes it after its task; host B, another daemon with an empty cache, builds the same
 * package from the registry's root — its logs say so, dnf never ran, the package is the same, the
 * hub's buildroot list is A's — and hosts given a mislabelled image, a corrupt layer or an image
 * whose package label lies refuse it and fill with dnf.
 */
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { readdirSync, readFileSync, statSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Buildroots } from "../../src/buildroot/Buildroots.js"
import { makeRegistryClient, OCI_MANIFEST, sha256Digest } from "../../src/buildroot/ociRegistry.js"
import { LABELS } from "../../src/buildroot/rootImage.js"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { HubFileTree } from "../../src/koji/paths.js"
import * as buildArch from "../../src/tasks/buildArch.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { type FakeHub, startFakeHub, TaskState } from "../fakehub/FakeHub.js"
import { podmanInstalled, podmanSkipReason, removeContainersOfHost, startPodmanService, testContainersOptions, type PodmanService, uniqueHostName } from "../support/podman.js"
import { registryInstalled, registrySkipReason, startRegistry, type TestRegistry } from "../support/registry.js"
import { buildrootsOptions, daemonOptions, type Fixture, loadFixtureFiles, makeTopdir, startDaemon, tempDir, uploadSrpm, waitFor } from "./support.js"

const runnable = podmanInstalled && registryInstalled
if (!runnable && process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1") {
  it("fleet test prerequisites are installed", () => assert.fail(podmanInstalled ? registrySkipReason : podmanSkipReason))
} else if (!runnable) console.warn(`fleet tests skipped: ${podmanInstalled ? registrySkipReason : podmanSkipReason}`)

const run = randomBytes(3).toString("hex")
const hosts = ["a", "b", "c", "d", "e"].map((h) => ({ name: uniqueHostName(`fleet-${h}`), password: `pw-${h}-${run}` }))
const [A, B, C, D, E] = hosts as [typeof hosts[0], typeof hosts[0], typeof hosts[0], typeof hosts[0], typeof hosts[0]]
const creds = { username: "builders", password: `s3cret-${run}` }

let podman: PodmanService
let registry: TestRegistry
let fixture: Fixture
let topdir: string
let authFile: string

/** One daemon of `host` with its own cache dir, until the scope closes. */
const daemon = (hub: FakeHub, host: { readonly name: string; readonly password: string }, cacheDir: string, workdir: string) => {
  const options = buildrootsOptions(fixture, topdir, cacheDir, {
    registry: { namespace: `${registry.host}/koji-${run}`, authFile, insecure: true }
  })
  const containers = Containers.layer(testContainersOptions(podman.socket, host.name, { defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 } }))
  const layer = Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: host.name, password: host.password, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
    TaskRegistry.layerModules([buildArch.handlers]),
    HubFileTree.layer({ topurls: options.kojid.topurls, topdir })
  ).pipe(Layer.provideMerge(Buildroots.layer(options).pipe(Layer.provideMerge(containers))))
  return { layer, start: startDaemon(daemonOptions(workdir)) }
}

/** A buildArch of fixture-hello assigned to `host`, run to its end; the task id. */
const buildOn = (hub: FakeHub, host: { readonly name: string }) =>
  Effect.gen(function*() {
    const rel = uploadSrpm(topdir, path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm"), `fleet-${host.name}`)
    const id = hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch", assign: host.name })
    const ended: ReadonlyArray<number> = [TaskState.CLOSED, TaskState.FAILED, TaskState.CANCELED]
    yield* waitFor(() => ended.includes(hub.state.task(id)?.state ?? 0), `task ${id} on ${host.name}`, "600 seconds")
    assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED, JSON.stringify(hub.state.taskResult(id)))
    return id
  })

const log = (hub: FakeHub, id: number, name: string): string => hub.state.upload(`tasks/${id % 10000}/${id}/${name}`)?.toString() ?? ""

/** Files, digests, modes and dependencies of the noarch package a task uploaded (rpm in the bootstrap image). */
const rpmContent = (id: number): string => {
  const dir = path.join(topdir, "work", "tasks", String(id % 10000), String(id))
  const file = readdirSync(dir).find((f) => f.endsWith(".noarch.rpm"))
  assert.isDefined(file, `task ${id} uploaded a noarch rpm`)
  return execFileSync("podman", [
    "run", "--rm", "--network=none", "-v", `${dir}:/r:ro`, fixture.image, "rpm", "-qp",
    "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n[%{FILENAMES} %{FILEDIGESTS} %{FILEMODES} %{FILEUSERNAME}\n]", "--requires", "--provides", `/r/${file!}`
  ], { encoding: "utf8" })
}

/** The buildroot of a task as the hub lists it: rpm ids. */
const hubList = (id: number): ReadonlyArray<number> => {
  const br = [...buildrootTables(topdir).buildroots.values()].find((b) => b.taskId === id)
  assert.isDefined(br, `task ${id} has a buildroot`)
  return [...br!.listing.keys()].sort((a, b) => a - b)
}

/** Runs one daemon of `host` with an empty cache for one build; the task id. */
const oneBuild = (hub: FakeHub, host: { readonly name: string; readonly password: string }, then?: (buildroots: Buildroots["Type"]) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const cacheDir = yield* tempDir(`adjutant-fleet-cache-`)
    const workdir = yield* tempDir(`adjutant-fleet-work-`)
    const d = daemon(hub, host, cacheDir, workdir)
    return yield* Effect.gen(function*() {
      yield* d.start
      const id = yield* buildOn(hub, host)
      if (then !== undefined) yield* then(yield* Buildroots)
      return id
    }).pipe(Effect.scoped, Effect.provide(d.layer))
  }).pipe(Effect.scoped)

describe.skipIf(!runnable)("buildroot images through a registry (podman)", () => {
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    podman = await startPodmanService()
    registry = await startRegistry({ credentials: creds })
    topdir = makeTopdir(fixture)
    authFile = path.join(topdir, "auth.json")
    writeFileSync(authFile, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${creds.username}:${creds.password}`).toString("base64") } } }))
  }, 600_000)
  afterAll(async () => {
    for (const h of hosts) removeContainersOfHost(h.name)
    await registry?.stop()
    await podman?.stop()
    execFileSync("rm", ["-rf", topdir])
  })

  it.live("host A fills and pushes; host B takes the root from the registry: no dnf, the same package, the same hub list; bad images are refused", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub({
        hosts: hosts.map((h) => ({ name: h.name, password: h.password, capacity: 10, arches: "x86_64" })),
        topdir,
        scheduler: { runInterval: 0 }
      })
      loadFixture(topdir, fixture.manifest)
      const client = makeRegistryClient({ registry: registry.host, authFile, insecure: true })
      const repository = `koji-${run}/buildroot`

      // A: a dnf fill, then the push after the task (the test waits for it in A's service).
      let pushed = ""
      const a = yield* oneBuild(hub, A, (buildroots) =>
        Effect.gen(function*() {
          const deadline = Date.now() + 180_000
          for (;;) {
            const [entry] = yield* buildroots.cache.list
            const digest = entry?.meta.notes?.["pushed"]
            if (digest !== undefined) {
              pushed = digest
              return
            }
            if (Date.now() > deadline) return yield* Effect.dieMessage("A never pushed its root")
            yield* Effect.sleep("200 millis")
          }
        }))
      assert.include(log(hub, a, "state.log"), "installing minimal buildroot with dnf")
      assert.include(log(hub, a, "root.log"), "not in the registry; filling with dnf")

      // B: the registry's root, checked; dnf never ran.
      const b = yield* oneBuild(hub, B)
      const bState = log(hub, b, "state.log")
      assert.include(bState, "(pulled, verified)")
      assert.notInclude(bState, "installing minimal buildroot with dnf")
      assert.include(log(hub, b, "root.log"), `taking the buildroot from the registry: ${registry.host}/${repository}:`)
      assert.include(log(hub, b, "root.log"), `@${pushed}`)
      assert.strictEqual(log(hub, b, "dnf.log"), "", "dnf wrote no log on B")
      assert.strictEqual(rpmContent(b), rpmContent(a))
      assert.deepStrictEqual(hubList(b), hubList(a))
      assert.isAbove(hubList(b).length, 0)

      // The genuine image, to damage copies of it.
      const [key] = readFileSync(path.join(topdir, "work", "tasks", String(b % 10000), String(b), "root.log"), "utf8")
        .match(/buildroot:([0-9a-f]{24})@/)?.slice(1) ?? []
      assert.isDefined(key)
      const good = (yield* client.getManifest(repository, key!))!
      const manifest = JSON.parse(good.bytes.toString("utf8")) as { config: { digest: string; size: number }; layers: Array<{ digest: string }> }
      const config = JSON.parse((yield* client.getBlob(repository, manifest.config.digest, 1 << 24)).toString("utf8")) as { config: { Labels: Record<string, string> } }
      const relabel = (patch: Record<string, string>) =>
        Effect.gen(function*() {
          const bytes = Buffer.from(JSON.stringify({ ...config, config: { ...config.config, Labels: { ...config.config.Labels, ...patch } } }))
          yield* client.putBlob(repository, sha256Digest(bytes), bytes.length, bytes)
          const m = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: sha256Digest(bytes), size: bytes.length } }))
          yield* client.putManifest(repository, key!, m, OCI_MANIFEST)
        })

      // C: labels of another repo under this key's tag.
      yield* relabel({ [LABELS.repoId]: "999" })
      const c = yield* oneBuild(hub, C)
      assert.match(log(hub, c, "root.log"), /refused: .*mislabelled: label io\.koji\.adjutant\.buildroot\.repo-id is "999"/)
      assert.include(log(hub, c, "state.log"), "installing minimal buildroot with dnf")

      // E: a package label that is not what the root's rpmdb holds.
      const packages = config.config.Labels[LABELS.packages]!.split("\n").filter((l) => l !== "")
      yield* relabel({ [LABELS.packages]: packages.slice(1).join("\n") + "\n" })
      const e = yield* oneBuild(hub, E)
      assert.match(log(hub, e, "root.log"), /refused: its rpmdb lists \d+ packages that differ/)
      assert.include(log(hub, e, "state.log"), "installing minimal buildroot with dnf")

      // D: the genuine manifest again, its layer damaged in the registry's storage.
      yield* client.putManifest(repository, key!, good.bytes, OCI_MANIFEST)
      const hex = manifest.layers[0]!.digest.slice("sha256:".length)
      const data = path.join(registry.storage, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data")
      const fd = openSync(data, "r+")
      writeSync(fd, Buffer.alloc(4096, 0x55), 0, 4096, Math.floor(statSync(data).size / 2))
      closeSync(fd)
      const d = yield* oneBuild(hub, D)
      assert.match(log(hub, d, "root.log"), /buildroot image .* refused: /)
      assert.include(log(hub, d, "state.log"), "installing minimal buildroot with dnf")
      assert.strictEqual(rpmContent(d), rpmContent(a))
      yield* client.close
    }).pipe(Effect.scoped), 1_200_000)
})
