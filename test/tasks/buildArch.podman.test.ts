/**
 * End to end: the daemon (TaskManager) against the fake hub with real podman builds the offline
 * fixture's SRPMs with `buildArch` and `rebuildSRPM`: results as kojid returns them, files in the
 * hub's work area, buildroots EXPIRED with their package lists mapped to the fixture's rpm ids,
 * failures reported with the right fault and the log tail, no container left behind.
 */
import { execFileSync } from "node:child_process"
import { createReadStream, existsSync, rmSync, statSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import { addRepo, addTag, buildrootTables, setAverageBuildDuration } from "../fakehub/buildroots.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import {
  buildrootsOptions, daemonLayers, daemonOptions, type Fixture, fixtureHub, loadFixtureFiles, scopedTopdir, startDaemon, tempDir,
  uploadSrpm, waitFor
} from "../buildroot/support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("buildarch")
let podman: { readonly socket: string }
let fixture: Fixture
let cacheDir: string

const srpmOf = (name: string) => path.join(fixture.srpms, `${name}-1.0-1.src.rpm`)
const DONE = new Set([2, 3, 5])

/** The fixture's hub rpm ids of a comps group's packages. */
const groupIds = (group: string): ReadonlyArray<number> =>
  fixture.manifest.rpms.filter((r) => r.arch !== "src" && fixture.manifest.groups[group]!.includes(r.name)).map((r) => r.id).sort((a, b) => a - b)

/** Runs one task through the daemon; returns the hub, task id and its decoded result. */
const runTask = (
  method: string,
  params: (topdir: string) => ReadonlyArray<unknown>,
  opts: { readonly arch?: string; readonly http?: boolean; readonly cacheDir?: string; readonly before?: (hub: FakeHub) => void } = {}
) =>
  Effect.gen(function* () {
    const topdir = yield* scopedTopdir(fixture)
    const workdir = yield* tempDir("adjutant-work-")
    const hub = yield* fixtureHub(fixture, topdir)
    opts.before?.(hub)
    const topurl = opts.http === true ? yield* serveDir(topdir) : undefined
    const base = buildrootsOptions(fixture, topdir, opts.cacheDir ?? cacheDir)
    const options = topurl === undefined ? base : { ...base, kojid: { ...base.kojid, topurls: [topurl] } }
    // The params are XML-RPC values built by the test.
    const id = hub.createTask(method, params(topdir) as never, { arch: opts.arch ?? "noarch" })
    yield* Effect.gen(function* () {
      yield* startDaemon(daemonOptions(workdir))
      yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `task ${id} to finish`)
      // The buildroot is expired before the report; give the daemon a moment to tidy up.
      yield* Effect.sleep("300 millis")
    }).pipe(Effect.scoped, Effect.provide(daemonLayers(hub, podman.socket, hostName, options)))
    return { hub, id, topdir, state: hub.state.task(id)!.state, result: hub.state.taskResult(id) as Record<string, unknown> }
  })

/** A static file server for `dir` on loopback (koji's topurl over HTTP), closed with the scope. */
const serveDir = (dir: string) =>
  Effect.acquireRelease(
    Effect.async<http.Server>((resume) => {
      const server = http.createServer((req, res) => {
        const file = path.join(dir, decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname))
        try {
          if (!file.startsWith(dir) || !statSync(file).isFile()) throw new Error("not a file")
          res.writeHead(200, { "Content-Length": String(statSync(file).size) })
          createReadStream(file).pipe(res)
        } catch {
          res.writeHead(404).end("not found\n")
        }
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`))

const brs = (hub: FakeHub) => [...buildrootTables(hub.topdir).buildroots.values()]

describe.skipIf(!podmanInstalled)("buildArch / rebuildSRPM end to end (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    cacheDir = (await import("node:fs")).mkdtempSync(path.join((await import("node:os")).tmpdir(), "adjutant-brcache-"))
  }, 600_000)
  afterAll(() => {
    rmSync(cacheDir, { recursive: true, force: true })
  })

  it.live("podman: buildArch of the noarch fixture closes with kojid's result, uploads and an EXPIRED buildroot with its list", () =>
    Effect.gen(function* () {
      const { hub, id, state, result } = yield* runTask("buildArch", (top) => [uploadSrpm(top, srpmOf("fixture-hello")), "fixture-build", "noarch", true, { repo_id: 1 }])
      assert.strictEqual(state, 2, `task failed: ${JSON.stringify(result)}`)
      const dir = `tasks/${id % 10000}/${id}`
      assert.deepStrictEqual(Object.keys(result).sort(), ["brootid", "logs", "rpms", "srpms"])
      assert.deepStrictEqual(result["rpms"], [`${dir}/fixture-hello-1.0-1.noarch.rpm`])
      assert.deepStrictEqual(result["srpms"], [`${dir}/fixture-hello-1.0-1.src.rpm`])
      const logs = result["logs"] as ReadonlyArray<string>
      // The logs mock leaves in kojid's result dir; dnf's own logs come from this (cold) fill.
      for (const l of [
        "mock_config.log", "root.log", "build.log", "state.log", "installed_pkgs.log", "hw_info.log", "mock_output.log",
        "dnf.log", "dnf.rpm.log", "dnf.librepo.log", "noarch_rpmdiff.json"
      ]) assert.include(logs, `${dir}/${l}`)
      const hw = hub.state.upload(`${dir}/hw_info.log`)!.toString()
      assert.match(hw, /^CPU info:\nArchitecture: +x86_64\nCPU\(s\): +\d+\n/)
      assert.include(hw, "\nMemory:\n")
      assert.include(hw, "\nStorage:\n")
      assert.match(hub.state.upload(`${dir}/mock_output.log`)!.toString(), /^INFO: Start: chroot init\n/)
      assert.include(hub.state.upload(`${dir}/dnf.log`)!.toString(), "fixture-gcc")
      // dnf's logs left the root: the cached root has none.
      const cachedLogs = execFileSync("find", [cacheDir, "-path", "*/var/log/dnf*"], { encoding: "utf8" })
      assert.strictEqual(cachedLogs, "", "dnf logs in the cached root")
      for (const f of [...(result["rpms"] as Array<string>), ...(result["srpms"] as Array<string>), ...logs]) {
        assert.isTrue(existsSync(path.join(hub.topdir, "work", f)), `${f} uploaded`)
      }
      const cfg = hub.state.upload(`${dir}/mock_config.log`)!.toString()
      assert.match(cfg, /^# Auto-generated by the Koji build system\n\n# Koji buildroot id: \d+\n# Koji buildroot name: fixture-build-\d+-1\n/)
      const [br] = brs(hub)
      assert.strictEqual(br!.state, 3)
      assert.strictEqual(br!.taskId, id)
      assert.strictEqual(result["brootid"], br!.id)
      assert.deepStrictEqual([...br!.listing.keys()].sort((a, b) => a - b), groupIds("build"))
      assert.deepStrictEqual([...br!.listing.values()], [false, false, false], "nothing new after the build")
      assert.deepStrictEqual(containersOfHost(hostName), [])
      // The task session's calls in kojid's order (koji-captures/kojid/scratch-build 0384–0439),
      // leaving out the incremental log uploads, whose timing differs by design (§13).
      const sid = hub.state.calls.find((c) => c.method === "host.newBuildRoot")!.sessionId
      const seq = hub.state.calls.filter((c) => c.sessionId === sid).map((c) => {
        if (c.method !== "rawUpload") return c.method
        const name = new URLSearchParams(c.query).get("filename") ?? ""
        return name.endsWith(".log") && name !== "mock_config.log" ? "" : `rawUpload ${name}`
      }).filter((m) => m !== "")
      assert.deepStrictEqual(seq, [
        "repoInfo", "getAverageBuildDuration", "getTaskInfo", "host.getHost", "getBuildConfig", "repoInfo", "getBuildConfig",
        "host.newBuildRoot", "rawUpload mock_config.log", "checkUpload", "getExternalRepoList", "host.setBuildRootList",
        "host.setBuildRootState", "getExternalRepoList", "host.updateBuildRootList",
        "rawUpload noarch_rpmdiff.json", "checkUpload", "rawUpload fixture-hello-1.0-1.noarch.rpm", "checkUpload",
        "rawUpload fixture-hello-1.0-1.src.rpm", "checkUpload", "host.setBuildRootState", "host.closeTask", "logout"
      ])
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: buildArch of the C fixture (x86_64) uses the cached root and closes", () =>
    Effect.gen(function* () {
      const { hub, id, state, result } = yield* runTask("buildArch", (top) => [uploadSrpm(top, srpmOf("fixture-hello-c")), "fixture-build", "x86_64", false, { repo_id: 1 }], { arch: "x86_64" })
      assert.strictEqual(state, 2, `task failed: ${JSON.stringify(result)}`)
      assert.deepStrictEqual(result["rpms"], [`tasks/${id % 10000}/${id}/fixture-hello-c-1.0-1.x86_64.rpm`])
      assert.deepStrictEqual(result["srpms"], [])
      const root = hub.state.upload(`tasks/${id % 10000}/${id}/root.log`)!.toString()
      assert.include(root, "using the cached buildroot")
      // No dnf ran in this task's root: no dnf logs are listed (an empty log is never listed).
      const logs = (result["logs"] as ReadonlyArray<string>).map((l) => path.basename(l))
      assert.includeMembers(logs, ["hw_info.log", "mock_output.log", "installed_pkgs.log"])
      assert.notInclude(logs, "dnf.log")
      assert.strictEqual(brs(hub)[0]!.state, 3)
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: with topurl over HTTP the fill, the SRPM and rpmlist.jsonl come from the web server; the weight follows the average duration", () =>
    Effect.gen(function* () {
      const { hub, id, state, result } = yield* runTask(
        "buildArch",
        (top) => [uploadSrpm(top, srpmOf("fixture-hello")), "fixture-build", "noarch", true, { repo_id: 1 }],
        { http: true, cacheDir: path.join(cacheDir, "http"), before: (h) => setAverageBuildDuration(h.topdir, "fixture-hello", 9600) }
      )
      assert.strictEqual(state, 2, `task failed: ${JSON.stringify(result)}`)
      assert.strictEqual(hub.state.task(id)!.weight, 3.5, "1.5 + 9600/4800")
      const cfg = hub.state.upload(`tasks/${id % 10000}/${id}/mock_config.log`)!.toString()
      assert.match(cfg, /baseurl=http:\/\/127\.0\.0\.1:\d+\/repos\/fixture-build\/1\/x86_64/)
      assert.deepStrictEqual([...brs(hub)[0]!.listing.keys()].sort((a, b) => a - b), groupIds("build"))
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: static BuildRequires (fixture-needs) are installed into the task's root and listed as updates", () =>
    Effect.gen(function* () {
      const { hub, state, result } = yield* runTask("buildArch", (top) => [uploadSrpm(top, srpmOf("fixture-needs")), "fixture-build", "noarch", true, { repo_id: 1 }])
      assert.strictEqual(state, 2, `task failed: ${JSON.stringify(result)}`)
      const br = brs(hub)[0]!
      const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch !== "src")!
      assert.strictEqual(br.listing.get(extra.id), true, "fixture-extra listed with is_update")
      assert.include((result["logs"] as ReadonlyArray<string>).map((l) => path.basename(l)), "dnf.rpm.log", "dnf logs of the builddep")
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: dynamic BuildRequires (%generate_buildrequires) go through the rpmbuild exit-11 loop", () =>
    Effect.gen(function* () {
      const { hub, state, result } = yield* runTask("buildArch", (top) => [uploadSrpm(top, srpmOf("fixture-dynreq")), "fixture-build", "noarch", true, { repo_id: 1 }])
      assert.strictEqual(state, 2, `task failed: ${JSON.stringify(result)}`)
      const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch !== "src")!
      assert.strictEqual(brs(hub)[0]!.listing.get(extra.id), true)
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: a failing build fails the task with BuildError and build.log's tail; the buildroot is EXPIRED", () =>
    Effect.gen(function* () {
      const { hub, state, result } = yield* runTask("buildArch", (top) => [uploadSrpm(top, srpmOf("fixture-fail")), "fixture-build", "noarch", true, { repo_id: 1 }])
      assert.strictEqual(state, 5)
      assert.strictEqual(result["faultCode"], 1005)
      const msg = String(result["faultString"])
      assert.match(msg, /^error building package \(arch noarch\), rpmbuild exited with status 1; see build\.log for more information\n/)
      assert.include(msg, "this package fails in %build on purpose")
      const failed = hub.state.tasks.find((t) => t.method === "buildArch")!.id
      assert.match(hub.state.upload(`tasks/${failed % 10000}/${failed}/mock_output.log`)!.toString(), /\nERROR: Command failed: rpmbuild fixture-fail-1\.0-1\.src\.rpm: rpmbuild exited with status 1; see build\.log\n/)
      const br = brs(hub)[0]!
      assert.strictEqual(br.state, 3)
      assert.deepStrictEqual([...br.listing.keys()].sort((a, b) => a - b), groupIds("build"))
      // kojid's tail of a failed build (koji-captures/kojid/failed-build 1012–1016).
      const sid = hub.state.calls.find((c) => c.method === "host.newBuildRoot")!.sessionId
      const tail = hub.state.calls.filter((c) => c.sessionId === sid && c.method !== "rawUpload").map((c) => c.method).slice(-6)
      assert.deepStrictEqual(tail, ["host.setBuildRootState", "getExternalRepoList", "host.updateBuildRootList", "host.setBuildRootState", "host.failTask", "logout"])
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: rebuildSRPM returns {srpm, logs, brootid, source} and uses the srpm-build group", () =>
    Effect.gen(function* () {
      const { hub, id, state, result } = yield* runTask("rebuildSRPM", (top) => [uploadSrpm(top, srpmOf("fixture-hello")), "fixture-build", { repo_id: 1 }])
      assert.strictEqual(state, 2, `task failed: ${JSON.stringify(result)}`)
      const dir = `tasks/${id % 10000}/${id}`
      assert.deepStrictEqual(Object.keys(result).sort(), ["brootid", "logs", "source", "srpm"])
      assert.strictEqual(result["srpm"], `${dir}/fixture-hello-1.0-1.src.rpm`)
      assert.deepStrictEqual(result["source"], { source: "fixture-hello-1.0-1.src.rpm", url: "fixture-hello-1.0-1.src.rpm" })
      const br = brs(hub)[0]!
      assert.strictEqual(br.state, 3)
      assert.deepStrictEqual([...br.listing.keys()].sort((a, b) => a - b), groupIds("srpm-build"))
      // kojid's order (koji-captures/kojid/scratch-build 0276–0336) without the incremental log uploads.
      const sid = hub.state.calls.find((c) => c.method === "host.newBuildRoot")!.sessionId
      const seq = hub.state.calls.filter((c) => c.sessionId === sid).map((c) => {
        if (c.method !== "rawUpload") return c.method
        const name = new URLSearchParams(c.query).get("filename") ?? ""
        return name.endsWith(".log") && name !== "mock_config.log" ? "" : `rawUpload ${name}`
      }).filter((m) => m !== "")
      assert.deepStrictEqual(seq, [
        "repoInfo", "getTag", "host.getHost", "getBuildConfig", "repoInfo", "getBuildConfig", "host.newBuildRoot",
        "rawUpload mock_config.log", "checkUpload", "getExternalRepoList", "host.setBuildRootList", "host.setBuildRootState",
        "rawUpload fixture-hello-1.0-1.src.rpm", "checkUpload", "host.setBuildRootState", "host.closeTask", "logout"
      ])
    }).pipe(Effect.scoped), 600_000)

  it.live("podman: bad input fails the task: a binary rpm as SRPM, a missing repo, a repo of another tag, no repo_id", () =>
    Effect.gen(function* () {
      const topdir = yield* scopedTopdir(fixture)
      const workdir = yield* tempDir("adjutant-work-")
      const hub = yield* fixtureHub(fixture, topdir)
      const otherTag = addTag(topdir, "other-tag", "x86_64")
      const otherRepo = addRepo(topdir, otherTag)
      const binary = fixture.manifest.rpms.find((r) => r.name === "fixture-setup" && r.arch === "noarch") as unknown as { readonly path: string }
      const srpm = uploadSrpm(topdir, srpmOf("fixture-hello"), "ok")
      const cases: ReadonlyArray<readonly [string, ReadonlyArray<unknown>, number, RegExp]> = [
        ["binary", [uploadSrpm(topdir, path.join(fixture.dir, binary.path), "bin"), "fixture-build", "noarch", true, { repo_id: 1 }], 1005, /^not a source package$/],
        ["missing repo", [srpm, "fixture-build", "noarch", true, { repo_id: 99 }], 1000, /no rows/],
        ["other tag", [srpm, "fixture-build", "noarch", true, { repo_id: otherRepo }], 1012, /^tag\/repo mismatch: fixture-build vs other-tag$/],
        ["no repo_id", [srpm, "fixture-build", "noarch", true, {}], 1005, /^A repo id must be provided$/]
      ]
      const ids = cases.map(([, params]) => hub.createTask("buildArch", params as never, { arch: "noarch" }))
      yield* Effect.gen(function* () {
        yield* startDaemon(daemonOptions(workdir))
        yield* waitFor(() => ids.every((id) => DONE.has(hub.state.task(id)?.state ?? 0)), "bad-input tasks to finish")
        yield* Effect.sleep("300 millis")
      }).pipe(Effect.scoped, Effect.provide(daemonLayers(hub, podman.socket, hostName, buildrootsOptions(fixture, topdir, cacheDir))))
      cases.forEach(([name, , code, re], i) => {
        const r = hub.state.taskResult(ids[i]!) as Record<string, unknown>
        assert.strictEqual(hub.state.task(ids[i]!)!.state, 5, name)
        assert.strictEqual(r["faultCode"], code, `${name}: ${JSON.stringify(r)}`)
        assert.match(String(r["faultString"]), re, name)
      })
      for (const br of brs(hub)) assert.strictEqual(br.state, 3, "every buildroot made is EXPIRED")
    }).pipe(Effect.scoped), 600_000)
})
