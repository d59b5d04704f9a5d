/**
 * End to end through the real program: `node dist/main.js -c kojid.conf` (main.ts's layer graph
 * from the config: Images, Containers, Buildroots, Scm, every handler) against the fake hub,
 * with real podman, topurl over HTTP on loopback and the fixture's git repository served by
 * `git daemon`. `koji build fixture-build git://…#tag` must close with its srpm, buildArch and
 * tag subtasks, the build imported with the commit-hash source, nothing left behind, and the
 * daemon must stop cleanly on SIGTERM.
 */
import { traversableTempDir } from "../support/dirs.js"
import { type ChildProcess } from "node:child_process"
import { createReadStream, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { BuildState, taggedBuilds } from "../fakehub/builds.js"
import { addTag, buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { addPackage, addTarget, buildWorld } from "../fakehub/targets.js"
import { type Fixture, loadFixtureFiles, makeTopdir } from "../buildroot/support.js"
import { distMain, ensureBuilt, exitOf, outputOf, spawnScoped } from "../daemon/child.js"
import { readManifest } from "../fixture/manifest.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, type PodmanService, removeContainersOfHost, startPodmanService, uniqueHostName } from "../support/podman.js"
import { type GitDaemon, startGitDaemon, waitUntil } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const PASSWORD = "binary-pw"
const hostName = uniqueHostName("e2e-bin")
let fixture: Fixture
let service: PodmanService
let git: GitDaemon
let files: http.Server
let topurl: string
let base: string
let topdir: string
let hub: FakeHub
let destTag: number
const scope = Effect.runSync(Scope.make())

/** koji's topurl: the hub's topdir over HTTP on loopback, following its symlinks into the fixture. */
const serveTopdir = (dir: string): Promise<http.Server> =>
  new Promise((done) => {
    const server = http.createServer((req, res) => {
      const rel = path.normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname))
      const file = path.join(dir, rel)
      const st = rel.includes("..") ? undefined : statSync(file, { throwIfNoEntry: false })
      if (st === undefined || !st.isFile()) {
        res.writeHead(404)
        res.end()
        return
      }
      res.writeHead(200, { "content-length": st.size })
      createReadStream(file).pipe(res)
    })
    server.listen(0, "127.0.0.1", () => done(server))
  })

const kojidConf = (): string => [
  "[kojid]",
  `server = ${hub.url}`,
  `topurl = ${topurl}`,
  `topdir = ${topdir}`,
  `user = ${hostName}`,
  `password = ${PASSWORD}`,
  `workdir = ${base}/work`,
  "sleeptime = 1",
  "retry_interval = 1",
  "max_retries = 3",
  "minspace = 1",
  "allowed_scms = 127.0.0.1*:/fixture-*.git:no:",
  "[adjutant]",
  `log_file = ${base}/kojid.log`,
  `podman_socket = unix://${service.socket}`,
  `bootstrap_image = ${fixture.image}`,
  "pull_policy = never",
  "image_gc = False",
  `image_state_file = ${base}/images.json`,
  "scm_network = host",
  `buildroot_cache_dir = ${base}/cache`,
  "container_memory = 2g",
  ""
].join("\n")

describe.skipIf(!podmanInstalled)("node dist/main.js builds from SCM (real podman)", () => {
  beforeAll(async () => {
    ensureBuilt()
    fixture = loadFixtureFiles()
    service = await startPodmanService()
    base = traversableTempDir("adjutant-e2e-bin-")
    topdir = makeTopdir(fixture)
    hub = await Effect.runPromise(Scope.extend(
      startFakeHub({ hosts: [{ name: hostName, password: PASSWORD, capacity: 10, arches: "x86_64" }], topdir, scheduler: { runInterval: 0 } }),
      scope
    ))
    loadFixture(topdir, fixture.manifest)
    destTag = addTag(topdir, "fixture-dest", null)
    addTarget(topdir, "fixture-build", fixture.manifest.tag.id, destTag)
    addPackage(topdir, destTag, "fixture-hello")
    files = await serveTopdir(topdir)
    topurl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`
    git = await startGitDaemon(path.join(fixture.dir, "git"), "fixture-hello.git")
  }, 600_000)
  afterAll(async () => {
    await git?.stop()
    files?.closeAllConnections()
    await new Promise<void>((r) => (files === undefined ? r() : files.close(() => r())))
    await Effect.runPromise(Scope.close(scope, Exit.void))
    const left = containersOfHost(hostName)
    removeContainersOfHost(hostName)
    await service?.stop()
    if (topdir !== undefined) rmSync(topdir, { recursive: true, force: true })
    if (base !== undefined) rmSync(base, { recursive: true, force: true })
    assert.deepStrictEqual(left, [], "containers left behind")
  }, 120_000)

  it("podman: the program from kojid.conf closes an SCM build (srpm, buildArch, tag), imports it with the commit hash and stops on SIGTERM", async () => {
    const conf = path.join(base, "kojid.conf")
    writeFileSync(conf, kojidConf())
    const scm = readManifest(path.join(fixture.dir, "fixture.json")).scm["fixture-hello"]!
    const url = `git://127.0.0.1:${git.port}/fixture-hello.git#${scm.tag}`
    const id = hub.createTask("build", [url, "fixture-build", {}], { arch: "noarch" })
    const child: ChildProcess = await Effect.runPromise(Scope.extend(spawnScoped([distMain, "-c", conf, "--fg", "--force-lock"]), scope))
    const log = () => `${outputOf(child)}\n${existsSync(`${base}/kojid.log`) ? readFileSync(`${base}/kojid.log`, "utf8") : ""}`
    await waitUntil(() => [2, 3, 5].includes(hub.state.task(id)?.state ?? 0) || child.exitCode !== null, `build task ${id} to end`, 400_000)
      .catch((e: unknown) => { throw new Error(`${String(e)}\n${log()}`) })
    assert.strictEqual(hub.state.task(id)?.state, 2, `build: ${JSON.stringify(hub.state.taskResult(id))}\n${log()}`)
    const kids = hub.state.tasks.filter((t) => t.parent === id).sort((a, b) => a.id - b.id)
    assert.deepStrictEqual(kids.map((k) => [k.method, k.state]), [["buildSRPMFromSCM", 2], ["buildArch", 2], ["tagBuild", 2]])
    const w = buildWorld(topdir)
    const [buildId, meta] = [...w.buildMeta.entries()].find(([, m]) => m.taskId === id)!
    assert.strictEqual(w.tables.builds.get(buildId)!.state, BuildState.COMPLETE)
    assert.strictEqual(meta.source, `git://127.0.0.1:${git.port}/fixture-hello.git#${scm.commit}`)
    assert.include(taggedBuilds(topdir, destTag), buildId)
    const rpms = [...w.tables.rpms.values()].filter((r) => r.buildId === buildId).map((r) => `${r.name}-${r.version}-${r.release}.${r.arch}`).sort()
    assert.deepStrictEqual(rpms, ["fixture-hello-1.0-1.noarch", "fixture-hello-1.0-1.src"])
    for (const br of buildrootTables(topdir).buildroots.values()) assert.strictEqual(br.state, 3, `buildroot ${br.id} EXPIRED`)
    await waitUntil(() => containersOfHost(hostName).length === 0, "containers to go", 30_000)
    child.kill("SIGTERM")
    assert.strictEqual(await Effect.runPromise(exitOf(child, 30_000)), 0, log())
  }, 600_000)
})
