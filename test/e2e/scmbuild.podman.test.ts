/**
 * End to end with real podman (issue 6, koji-protocol.md §7.1, §7.3, §8): `koji build
 * fixture-build git://…#rev` against the offline fixture's git repository served by `git daemon`
 * on loopback — checkout in a container, SRPM from the checkout, buildArch, import and tag, the
 * build's source recorded with the commit hash — and bad input through the same daemon: a URL
 * allowed_scms refuses, a password in the URL, a revision that does not exist, a spec setting
 * `Packager:`, a missing repo
 * and a repo of another tag. Each bad task fails with the fault kojid gives, leaves no
 * container, buildroot or build behind, and the daemon goes on to close the next good task.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { BuildState, taggedBuilds } from "../fakehub/builds.js"
import { addRepo, addTag } from "../fakehub/buildroots.js"
import { buildWorld } from "../fakehub/targets.js"
import { readManifest } from "../fixture/manifest.js"
import { containersOfHost, podmanInstalled, podmanSkipReason } from "../support/podman.js"
import { childrenOf, type E2E, fault, type Finished, type GitDaemon, runToEnd, startE2E, startGitDaemon } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

let e: E2E
let git: GitDaemon

// Packager: first — kojid's re.match only looks at the start of the spec.
const PACKAGER_SPEC = `Packager: Mallory <mallory@example.org>
Name: fixture-packager
Version: 1.0
Release: 1
Summary: sets its own packager
License: MIT
BuildArch: noarch
%description
A spec koji refuses.
%files
`

const CLOSED = 2
const FAILED = 5

/** The fixture's git repository: its tag and that tag's commit (made anew with the fixture, so read each run). */
const scmInfo = () => readManifest(path.join(e.fixture.dir, "fixture.json")).scm["fixture-hello"]!
const repoUrl = (name = "fixture-hello.git") => `git://127.0.0.1:${git.port}/${name}`

const buildOfTask = (taskId: number) => {
  const w = buildWorld(e.topdir)
  const id = [...w.buildMeta.entries()].find(([, m]) => m.taskId === taskId)?.[0]
  return id === undefined ? undefined : { row: w.tables.builds.get(id)!, meta: w.buildMeta.get(id)! }
}

/** Every task of a tree (the task and its descendants). */
const treeOf = (id: number): ReadonlyArray<number> => [id, ...childrenOf(e, id).flatMap((k) => treeOf(k.id))]

/** What a failed bad-input task must leave: no container, every buildroot EXPIRED, no build record. */
const assertNoTrace = (r: Finished) => {
  assert.deepStrictEqual(containersOfHost(e.hostName), [], "no container left")
  for (const t of treeOf(r.id)) for (const br of e.buildrootsOf(t)) assert.strictEqual(br.state, 3, `buildroot ${br.id} of task ${t} EXPIRED`)
  assert.strictEqual(buildOfTask(r.id), undefined, "no build record")
}

describe.skipIf(!podmanInstalled)("SCM build end to end (git daemon on loopback, real podman)", () => {
  beforeAll(async () => {
    e = await startE2E("e2e-scm", { scm: { allowedScms: "127.0.0.1*:/fixture-*.git:no:" } })
    // The fixture's repository, and one whose spec sets Packager: (kojid refuses it, §7.3 step 4).
    const base = path.join(e.scratchDir, "git")
    mkdirSync(base)
    symlinkSync(path.join(e.fixture.dir, "git", "fixture-hello.git"), path.join(base, "fixture-hello.git"))
    const work = path.join(e.scratchDir, "fixture-packager")
    mkdirSync(work)
    writeFileSync(path.join(work, "fixture-packager.spec"), PACKAGER_SPEC)
    const env = { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.org", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.org" }
    for (const args of [["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "packager"]]) execFileSync("git", args, { cwd: work, env })
    execFileSync("git", ["clone", "-q", "--bare", work, path.join(base, "fixture-packager.git")])
    git = await startGitDaemon(base, "fixture-hello.git")
  }, 600_000)
  afterAll(async () => {
    await git?.stop()
    const left = await e?.close()
    assert.deepStrictEqual(left, [], "containers left behind")
  }, 120_000)

  it("podman: a build from git://127.0.0.1/fixture-hello.git#<tag> closes; the build's source has the commit hash", async () => {
    const url = `${repoUrl()}#${scmInfo().tag}`
    const r = await runToEnd(e, "build", [url, "fixture-build", {}])
    assert.strictEqual(r.state, CLOSED, `build failed: ${JSON.stringify(r.result)}`)
    const kids = childrenOf(e, r.id)
    assert.deepStrictEqual(kids.map((k) => [k.method, k.label, k.state]), [
      ["buildSRPMFromSCM", "srpm", CLOSED], ["buildArch", "noarch", CLOSED], ["tagBuild", "tag", CLOSED]
    ])
    const srpmTask = kids[0]!
    const res = e.hub.state.taskResult(srpmTask.id) as { srpm: string; logs: Array<string>; brootid: number; source: { url: string; source: string } }
    const dir = `tasks/${srpmTask.id % 10000}/${srpmTask.id}`
    const sourceWithHash = `${repoUrl()}#${scmInfo().commit}`
    assert.strictEqual(res.srpm, `${dir}/fixture-hello-1.0-1.src.rpm`)
    assert.deepStrictEqual(res.source, { url, source: sourceWithHash })
    assert.include(res.logs, `${dir}/build.log`)
    const checkoutLog = e.hub.state.upload(`${dir}/checkout.log`)?.toString() ?? ""
    assert.include(checkoutLog, `git clone -n ${repoUrl()}`)
    // The srpm-build buildroot of the SCM task: EXPIRED with its list.
    const [br] = e.buildrootsOf(srpmTask.id)
    assert.strictEqual(br?.id, res.brootid)
    assert.strictEqual(br?.state, 3)
    assert.isAbove(br!.listing.size, 0)
    // The build: COMPLETE, source = the URL with the commit hash, original URL in extra (§7.1 step 6).
    const b = buildOfTask(r.id)!
    assert.strictEqual(b.row.state, BuildState.COMPLETE)
    assert.strictEqual(b.meta.source, sourceWithHash)
    assert.deepStrictEqual(b.meta.extra, { source: { original_url: url } })
    assert.include(taggedBuilds(e.topdir, e.destTag), b.row.id)
    for (const k of kids.slice(0, 2)) assert.strictEqual(e.buildrootsOf(k.id)[0]?.state, 3)
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
  }, 600_000)

  it("podman: bad input fails each task with kojid's fault, leaves nothing behind, and the daemon closes the next good task", async () => {
    const other = addTag(e.topdir, "other-build", "x86_64")
    const otherRepo = addRepo(e.topdir, other)
    const cases: ReadonlyArray<{ readonly what: string; readonly src: string; readonly opts: Record<string, number | boolean>; readonly code: number; readonly text: RegExp }> = [
      {
        what: "SCM URL not in allowed_scms", src: `${repoUrl("other.git")}#main`, opts: {}, code: 1005,
        text: new RegExp(`127\\.0\\.0\\.1:${git.port}:/other\\.git is not in the list of allowed SCMs`)
      },
      {
        what: "user:password@ in the URL", src: `git://user:secret@127.0.0.1:${git.port}/fixture-hello.git#main`, opts: { scratch: true }, code: 1000,
        text: /username:password format not supported: user:\*\*\*/
      },
      {
        what: "a revision that does not exist", src: `${repoUrl()}#no-such-revision`, opts: { scratch: true }, code: 1005,
        text: /no-such-revision/
      },
      {
        what: "a spec that sets Packager:", src: `${repoUrl("fixture-packager.git")}#main`, opts: { scratch: true }, code: 1005,
        text: /Packager is not allowed to be set in spec file/
      },
      { what: "a missing repo", src: `${repoUrl()}#main`, opts: { scratch: true, repo_id: 999 }, code: 1005, text: /No such repo: 999/ },
      {
        what: "a repo of another tag", src: `${repoUrl()}#main`, opts: { scratch: true, repo_id: otherRepo }, code: 1005,
        text: /Repo\/Target mismatch: other-build\/fixture-build/
      }
    ]
    for (const c of cases) {
      const r = await runToEnd(e, "build", [c.src, "fixture-build", c.opts])
      assert.strictEqual(r.state, FAILED, `${c.what}: ${JSON.stringify(r.result)}`)
      const f = fault(r.result)
      assert.strictEqual(f.faultCode, c.code, `${c.what}: ${f.faultString}`)
      assert.match(f.faultString, c.text, c.what)
      assert.notInclude(f.faultString, "secret", `${c.what}: no password in the fault`)
      for (const t of treeOf(r.id)) assert.include([FAILED, 3], e.hub.state.task(t)!.state, `${c.what}: task ${t} ended`)
      assertNoTrace(r)
    }
    // The daemon carries on: a scratch build by commit hash closes.
    const good = await runToEnd(e, "build", [`${repoUrl()}#${scmInfo().commit}`, "fixture-build", { scratch: true }])
    assert.strictEqual(good.state, CLOSED, `good build after the bad ones: ${JSON.stringify(good.result)}`)
    assert.deepStrictEqual(containersOfHost(e.hostName), [])
    // Task work directories are gone from the host.
    assert.deepStrictEqual(e.taskDirsLeft(), [])
  }, 600_000)
})
