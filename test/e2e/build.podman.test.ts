/**
 * End to end with real podman (issue 6, koji-protocol.md §7.1): `koji build fixture-build
 * <srpm>` as the hub hands it to the daemon — the build task, its rebuildSRPM, buildArch and
 * tagBuild subtasks run in containers, the results are uploaded to the fake hub, which imports
 * them with its checks (completeBuild) or moves them to scratch, and tags the build. Failures
 * fail the build (failBuild) with the packager's log tail. One hub, daemon and warm buildroot
 * cache serve every test of the file.
 */
import { existsSync } from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { BuildState, taggedBuilds } from "../fakehub/builds.js"
import { buildWorld } from "../fakehub/targets.js"
import { containersOfHost, podmanInstalled, podmanSkipReason } from "../support/podman.js"
import { childrenOf, DONE, type E2E, fault, makeSrpm, runToEnd, startE2E, waitUntil } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

let e: E2E

const CLOSED = 2
const CANCELED = 3
const FAILED = 5

/** A noarch package whose %build says it started and then sleeps. */
const SLOW_SPEC = `Name: slow-build
Version: 1.0
Release: 1
Summary: a build that takes its time
License: MIT
BuildArch: noarch
%description
Sleeps in %build so that the test can cancel it.
%prep
%build
echo SLOW-STARTED
sleep 120
%install
mkdir -p %{buildroot}/usr/share/slow-build
echo ok > %{buildroot}/usr/share/slow-build/ok
%files
/usr/share/slow-build/ok
`

/** The fixture's hub rpm ids of a comps group's packages. */
const groupIds = (group: string): ReadonlyArray<number> =>
  e.fixture.manifest.rpms.filter((r) => r.arch !== "src" && e.fixture.manifest.groups[group]!.includes(r.name)).map((r) => r.id).sort((a, b) => a - b)

const fixtureRpmIds = (): ReadonlySet<number> => new Set(e.fixture.manifest.rpms.map((r) => r.id))

const callsOf = (method: string) => e.hub.state.calls.filter((c) => c.method === method && c.fault === undefined)

/** The build row the hub made for a build task. */
const buildOfTask = (taskId: number) => {
  const w = buildWorld(e.topdir)
  const ids = [...w.buildMeta.entries()].filter(([, m]) => m.taskId === taskId).map(([id]) => id)
  return ids.length === 0 ? undefined : w.tables.builds.get(ids[0]!)
}

/** Checks the buildroot of one subtask: EXPIRED, listed with fixture ids, and the list was sent. */
const assertBuildrootDone = (taskId: number, group: string) => {
  const brs = e.buildrootsOf(taskId)
  assert.strictEqual(brs.length, 1, `one buildroot for task ${taskId}`)
  const br = brs[0]!
  assert.strictEqual(br.state, 3, `buildroot ${br.id} EXPIRED`)
  const ids = [...br.listing.keys()]
  assert.isAbove(ids.length, 0, "package list not empty")
  for (const id of ids) assert.isTrue(fixtureRpmIds().has(id), `rpm id ${id} is one of the fixture's`)
  for (const id of groupIds(group)) assert.isTrue(br.listing.has(id), `@${group} package ${id} listed`)
  assert.isTrue(callsOf("host.setBuildRootList").some((c) => c.params[0] === br.id), "setBuildRootList sent")
  return br
}

describe.skipIf(!podmanInstalled)("build end to end (daemon + fake hub + real podman)", () => {
  beforeAll(async () => {
    e = await startE2E("e2e-build", { packages: ["slow-build"] })
  }, 600_000)
  afterAll(async () => {
    const left = await e?.close()
    assert.deepStrictEqual(left, [], "containers left behind")
  }, 120_000)

  it("podman: build of the noarch fixture (non-scratch) closes, imports through completeBuild, expires its buildroots and tags the build", async () => {
    const src = e.upload(e.srpmOf("fixture-hello"))
    const r = await runToEnd(e, "build", [src, "fixture-build", {}])
    assert.strictEqual(r.state, CLOSED, `build failed: ${JSON.stringify(r.result)}`)
    assert.strictEqual(r.result, null)
    const kids = childrenOf(e, r.id)
    assert.deepStrictEqual(kids.map((k) => [k.method, k.label, k.state]), [
      ["rebuildSRPM", "srpm", CLOSED], ["buildArch", "noarch", CLOSED], ["tagBuild", "tag", CLOSED]
    ])
    const [srpmTask, archTask] = [kids[0]!, kids[1]!]
    const archResult = e.hub.state.taskResult(archTask.id) as { rpms: Array<string>; srpms: Array<string>; logs: Array<string>; brootid: number }
    const dir = `tasks/${archTask.id % 10000}/${archTask.id}`
    assert.deepStrictEqual(archResult.rpms, [`${dir}/fixture-hello-1.0-1.noarch.rpm`])
    assert.deepStrictEqual(archResult.srpms, [`${dir}/fixture-hello-1.0-1.src.rpm`])
    for (const f of [...archResult.rpms, ...archResult.srpms, ...archResult.logs]) {
      assert.isTrue(existsSync(path.join(e.topdir, "work", f)), `${f} uploaded`)
    }
    // The hub's import: build COMPLETE with the SRPM's N-V-R, its rpms recorded with their NVRA.
    const build = buildOfTask(r.id)
    assert.isDefined(build, "initBuild made a build")
    assert.strictEqual(build!.state, BuildState.COMPLETE)
    assert.deepStrictEqual([build!.name, build!.version, build!.release], ["fixture-hello", "1.0", "1"])
    const w = buildWorld(e.topdir)
    const rpms = [...w.tables.rpms.values()].filter((x) => x.buildId === build!.id).map((x) => `${x.name}-${x.version}-${x.release}.${x.arch}`).sort()
    assert.deepStrictEqual(rpms, ["fixture-hello-1.0-1.noarch", "fixture-hello-1.0-1.src"])
    const imp = w.imports.find((i) => i.buildId === build!.id)!
    assert.strictEqual(imp.srpm, archResult.srpms[0])
    assert.deepStrictEqual(imp.brmap, { [archResult.rpms[0]!]: archResult.brootid, [archResult.srpms[0]!]: archResult.brootid })
    assert.deepStrictEqual(imp.logs, { noarch: archResult.logs })
    // The rebuilt SRPM's basename is the build's source (rebuildSRPM's result, §7.4).
    assert.strictEqual(w.buildMeta.get(build!.id)!.source, "fixture-hello-1.0-1.src.rpm")
    // Buildroots: srpm-build for rebuildSRPM, build for buildArch, both EXPIRED with their lists.
    assertBuildrootDone(srpmTask.id, "srpm-build")
    const br = assertBuildrootDone(archTask.id, "build")
    assert.strictEqual(br.id, archResult.brootid)
    // Tagged into the target's destination tag.
    assert.include(taggedBuilds(e.topdir, e.destTag), build!.id)
    assert.isTrue(callsOf("host.tagBuild").some((c) => c.params[1] === e.destTag && c.params[2] === build!.id))
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)

  it("podman: a scratch build moves its results to scratch: no build record, no tagBuild", async () => {
    const buildsBefore = buildWorld(e.topdir).tables.builds.size
    const src = e.upload(e.srpmOf("fixture-hello"))
    const r = await runToEnd(e, "build", [src, "fixture-build", { scratch: true }])
    assert.strictEqual(r.state, CLOSED, `build failed: ${JSON.stringify(r.result)}`)
    const kids = childrenOf(e, r.id)
    assert.deepStrictEqual(kids.map((k) => [k.method, k.state]), [["rebuildSRPM", CLOSED], ["buildArch", CLOSED]])
    const moves = callsOf("host.moveBuildToScratch").filter((c) => c.params[0] === r.id)
    assert.strictEqual(moves.length, 1, "moveBuildToScratch called once")
    assert.strictEqual(buildOfTask(r.id), undefined, "no build record for a scratch build")
    assert.strictEqual(buildWorld(e.topdir).tables.builds.size, buildsBefore)
    assert.isFalse(callsOf("host.initBuild").some((c) => (c.params[0] as { task_id?: number }).task_id === r.id))
    const scratch = path.join(e.topdir, "scratch", "kojiadmin", `task_${r.id}`)
    assert.isTrue(existsSync(path.join(scratch, "fixture-hello-1.0-1.noarch.rpm")), "rpm moved to scratch")
    assert.isTrue(existsSync(path.join(scratch, "fixture-hello-1.0-1.src.rpm")), "srpm moved to scratch")
    for (const k of kids) assert.strictEqual(e.buildrootsOf(k.id)[0]?.state, 3)
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)

  it("podman: the C package (x86_64 buildArch) and the dynamic BuildRequires package build at the same time", async () => {
    const [c, dyn] = await Promise.all([
      runToEnd(e, "build", [e.upload(e.srpmOf("fixture-hello-c")), "fixture-build", {}]),
      runToEnd(e, "build", [e.upload(e.srpmOf("fixture-dynreq")), "fixture-build", {}])
    ])
    assert.strictEqual(c.state, CLOSED, `C build failed: ${JSON.stringify(c.result)}`)
    assert.strictEqual(dyn.state, CLOSED, `dynreq build failed: ${JSON.stringify(dyn.result)}`)
    const cArch = childrenOf(e, c.id).find((k) => k.method === "buildArch")!
    assert.strictEqual(cArch.label, "x86_64")
    assert.strictEqual(cArch.arch, "x86_64")
    const w = buildWorld(e.topdir)
    const nvras = (taskId: number) =>
      [...w.tables.rpms.values()].filter((x) => x.buildId === buildOfTask(taskId)!.id).map((x) => `${x.name}-${x.version}-${x.release}.${x.arch}`)
    assert.include(nvras(c.id), "fixture-hello-c-1.0-1.x86_64")
    assert.include(nvras(c.id), "fixture-hello-c-1.0-1.src")
    assert.strictEqual(buildOfTask(c.id)!.state, BuildState.COMPLETE)
    assert.strictEqual(buildOfTask(dyn.id)!.state, BuildState.COMPLETE)
    assert.include(nvras(dyn.id), "fixture-dynreq-1.0-1.noarch")
    // %generate_buildrequires pulled fixture-extra in: listed as an update of the buildArch root.
    const dynArch = childrenOf(e, dyn.id).find((k) => k.method === "buildArch")!
    const extra = e.fixture.manifest.rpms.find((x) => x.name === "fixture-extra" && x.arch !== "src")!
    assert.strictEqual(assertBuildrootDone(dynArch.id, "build").listing.get(extra.id), true)
    assertBuildrootDone(cArch.id, "build")
    for (const t of [c.id, dyn.id]) assert.include(taggedBuilds(e.topdir, e.destTag), buildOfTask(t)!.id)
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)

  it("podman: the failing package fails the build with BuildError and the log tail; failBuild; its buildroot EXPIRED", async () => {
    const r = await runToEnd(e, "build", [e.upload(e.srpmOf("fixture-fail")), "fixture-build", {}])
    assert.strictEqual(r.state, FAILED)
    const f = fault(r.result)
    assert.strictEqual(f.faultCode, 1005, f.faultString)
    assert.match(f.faultString, /^error building package \(arch noarch\)/)
    assert.include(f.faultString, "this package fails in %build on purpose")
    const build = buildOfTask(r.id)!
    assert.strictEqual(build.state, BuildState.FAILED)
    assert.isTrue(callsOf("host.failBuild").some((c) => c.params[0] === r.id && c.params[1] === build.id), "failBuild called")
    const kids = childrenOf(e, r.id)
    assert.deepStrictEqual(kids.map((k) => [k.method, k.state]), [["rebuildSRPM", CLOSED], ["buildArch", FAILED]])
    assert.strictEqual(fault(e.hub.state.taskResult(kids[1]!.id)).faultCode, 1005)
    assertBuildrootDone(kids[1]!.id, "build")
    assert.notInclude(taggedBuilds(e.topdir, e.destTag), build.id)
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)

  it("podman: canceling a build while its buildArch runs rpmbuild cancels the tree, removes the containers and expires the buildroot", async () => {
    const src = e.upload(makeSrpm(e, "slow-build", SLOW_SPEC))
    const id = e.hub.createTask("build", [src, "fixture-build", {}], { arch: "noarch" })
    const archTask = () => childrenOf(e, id).find((k) => k.method === "buildArch")
    const buildLog = () => {
      const t = archTask()
      return t === undefined ? "" : e.hub.state.upload(`tasks/${t.id % 10000}/${t.id}/build.log`)?.toString() ?? ""
    }
    await waitUntil(() => buildLog().includes("SLOW-STARTED") || DONE.has(e.hub.state.task(id)?.state ?? 0), "rpmbuild of slow-build to start", 300_000)
    assert.include(buildLog(), "SLOW-STARTED", `the build ended early: ${JSON.stringify(e.hub.state.taskResult(id))}`)
    assert.isTrue(containersOfHost(e.hostName).some((n) => n.includes("-build-")), `the build container runs: ${containersOfHost(e.hostName).join(", ")}`)
    const arch = archTask()!
    const build = buildOfTask(id)
    assert.strictEqual(build?.state, BuildState.BUILDING, "initBuild made the build before the buildArch subtask")
    const started = Date.now()
    e.hub.cancelTask(id)
    await waitUntil(() => containersOfHost(e.hostName).length === 0, "the build's containers to go", 60_000)
    await waitUntil(() => e.buildrootsOf(arch.id).every((b) => b.state === 3), "the buildArch buildroot to be EXPIRED", 60_000)
    assert.isBelow(Date.now() - started, 60_000, "canceled long before the sleep would have ended")
    assert.strictEqual(e.hub.state.task(id)!.state, CANCELED)
    const kids = childrenOf(e, id)
    assert.deepStrictEqual(kids.map((k) => [k.method, k.state]), [["rebuildSRPM", CLOSED], ["buildArch", CANCELED]])
    const [br] = e.buildrootsOf(arch.id)
    assert.strictEqual(br?.state, 3)
    // The daemon forgets the task: its work directories go, and nothing of it runs any more.
    await waitUntil(() => e.taskDirsLeft().length === 0, "task work directories to be removed", 30_000)
    assert.isFalse(callsOf("host.completeBuild").some((c) => c.params[0] === id), "no import of a canceled build")
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)

  it("podman: a binary rpm given as the SRPM fails the build with a BuildError naming it; nothing is left behind", async () => {
    const bin = e.fixture.manifest.rpms.find((x) => x.name === "fixture-extra" && x.arch === "noarch")!
    const src = e.upload(path.join(e.fixture.dir, "packages", "fixture-extra", "1.0", "1", "noarch", "fixture-extra-1.0-1.noarch.rpm"))
    assert.strictEqual(bin.arch, "noarch")
    const r = await runToEnd(e, "build", [src, "fixture-build", { scratch: true }])
    assert.strictEqual(r.state, FAILED)
    const f = fault(r.result)
    assert.strictEqual(f.faultCode, 1005, f.faultString)
    assert.match(f.faultString, /not a source package/)
    assert.include(f.faultString, "fixture-extra-1.0-1.noarch.rpm")
    for (const k of childrenOf(e, r.id)) for (const br of e.buildrootsOf(k.id)) assert.strictEqual(br.state, 3)
    assert.strictEqual(buildOfTask(r.id), undefined)
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)
})
