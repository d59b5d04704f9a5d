/**
 * createrepo with real podman: external repos merged by mergerepo_c in koji and bare modes
 * (a second local repo, `$arch` substituted, a repo of another arch skipped), and the bad
 * inputs — missing topdir, a repo not in INIT, a pkglist naming a missing file, createrepo_c
 * failing on a broken rpm — each a clear fault, no container left, the daemon carrying on.
 */
import { execFileSync } from "node:child_process"
import { existsSync, linkSync, mkdirSync, readdirSync, renameSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import { buildrootTables } from "../fakehub/buildroots.js"
import { addExternalRepo, repoWorld } from "../fakehub/newrepo.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import { ensureFixture, type Fixture } from "../fixture/manifest.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import {
  createNewRepo, daemonOptions, dnfReadRepo, DONE, FaultResult, fixtureTopdir, makeRepoHandlers, repoDaemonLayers, repoHub, repoKojid, RepoResult, resultAs, startDaemon,
  tempDir, waitFor
} from "./newRepoSupport.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("createrepo")
let podman: { readonly socket: string }
let fixture: Fixture

const faultOf = (hub: FakeHub, id: number) => resultAs(FaultResult, hub, id)
const nvra = (r: { readonly name: string; readonly version: string; readonly release: string; readonly arch: string }) =>
  `${r.name}-${r.version}-${r.release}.${r.arch}`

/** Runs `body` with a daemon serving the repo handlers for `topdir` (options patched). */
const withDaemon = <A, E>(hub: FakeHub, topdir: string, body: Effect.Effect<A, E>, kojidPatch: Parameters<typeof repoKojid>[1] = {}) =>
  Effect.gen(function*() {
    const workdir = yield* tempDir("adjutant-work-")
    const kojid = repoKojid(topdir, kojidPatch)
    return yield* Effect.gen(function*() {
      yield* startDaemon(daemonOptions(workdir))
      return yield* body
    }).pipe(
      Effect.scoped,
      Effect.provide(repoDaemonLayers(hub, podman.socket, hostName, (containers) =>
        makeRepoHandlers({ kojid, image: fixture.manifest.bootstrapImage, containers })))
    )
  })

const runNewRepo = (hub: FakeHub) =>
  Effect.gen(function*() {
    const id = createNewRepo(hub, fixture)
    yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `newRepo ${id}`)
    return id
  })

describe.skipIf(!podmanInstalled)("createrepo (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = ensureFixture()
  }, 600_000)

  it.scopedLive("podman: external repos are merged in koji and bare modes; $arch is substituted and other arches skipped", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const ext = yield* tempDir("adjutant-extrepo-")
      const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch === "noarch")!
      mkdirSync(path.join(ext, "x86_64"))
      linkSync(path.join(fixture.dir, extra.path), path.join(ext, "x86_64", path.basename(extra.path)))
      execFileSync("podman", [
        "run", "--rm", "--network=none", "-v", `${ext}:${ext}`, fixture.manifest.bootstrapImage, "createrepo_c", "-q", path.join(ext, "x86_64")
      ], { stdio: "ignore" })
      const hub = yield* repoHub(fixture, topdir)
      const tables = buildrootTables(topdir)
      const tagId = fixture.manifest.tag.id
      // The tag no longer holds fixture-extra: only the external repo brings it in.
      tables.tagged.set(tagId, (tables.tagged.get(tagId) ?? []).filter((b) => b !== extra.build_id))
      const w = repoWorld(topdir)
      addExternalRepo(w, { tagId, name: "ext", url: `file://${ext}/$arch/` })
      addExternalRepo(w, { tagId, name: "other-arch", url: "file:///nonexistent/$arch/", arches: "aarch64" })
      const expected = fixture.manifest.rpms.filter((r) => r.arch !== "src").map(nvra).sort()

      yield* withDaemon(hub, topdir, Effect.gen(function*() {
        for (const [mode, repoId] of [["koji", 1], ["bare", 2]] as const) {
          tables.externalRepos.splice(0, tables.externalRepos.length, ...tables.externalRepos.map((e) => ({ ...e, mergeMode: mode })))
          const id = yield* runNewRepo(hub)
          assert.strictEqual(hub.state.task(id)!.state, 2, `${mode}: ${JSON.stringify(hub.state.taskResult(id))}`)
          const cr = hub.state.tasks.filter((t) => t.method === "createrepo" && t.parent === id)[0]!
          const log = hub.state.upload(`tasks/${cr.id}/${cr.id}/mergerepos.log`)?.toString() ?? ""
          const cmd = log.split("\n")[0]!
          assert.match(cmd, mode === "koji" ? /^\$ \/usr\/bin\/mergerepo_c --koji -b \S+\/blocklist -a x86_64/ : /^\$ \/usr\/bin\/mergerepo_c --pkgorigins --all -a x86_64/)
          assert.include(cmd, `-r file://${ext}/x86_64/`)
          assert.include(cmd, "--arch-expand")
          assert.notInclude(cmd, "nonexistent")
          const repodir = path.join(topdir, "repos", fixture.manifest.tag.name, String(repoId), "x86_64")
          assert.include(readdirSync(path.join(repodir, "repodata")).join(" "), "pkgorigins.gz")
          assert.deepStrictEqual(dnfReadRepo(fixture.manifest.bootstrapImage, repodir).nvras, expected, mode)
        }
      }))
    }), 600_000)

  it.scopedLive("podman: a repo not in INIT, a missing package and a broken rpm fail with clear faults; the daemon carries on", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch === "noarch")!
      const pkg = path.join(topdir, extra.path)
      yield* withDaemon(hub, topdir, Effect.gen(function*() {
        // A pkglist line naming a file that is not there.
        renameSync(pkg, `${pkg}.away`)
        const missing = yield* runNewRepo(hub)
        assert.strictEqual(hub.state.task(missing)!.state, 5)
        const cr = hub.state.tasks.find((t) => t.method === "createrepo" && t.parent === missing)!
        assert.strictEqual(hub.state.task(cr.id)!.state, 5)
        const f = faultOf(hub, cr.id)
        assert.strictEqual(f.faultCode, 1000)
        assert.match(f.faultString, /^failed to create repo: \/usr\/bin\/createrepo_c --error-exit-val -vd -o /)
        assert.match(f.faultString, /exited with status \d+/)
        assert.include(faultOf(hub, missing).faultString, "failed to create repo")
        assert.deepStrictEqual(containersOfHost(hostName), [])

        // An rpm that createrepo_c cannot read.
        writeFileSync(pkg, "this is not an rpm\n")
        const broken = yield* runNewRepo(hub)
        assert.strictEqual(hub.state.task(broken)!.state, 5)
        assert.include(faultOf(hub, broken).faultString, "failed to create repo")

        // The daemon carries on: with the file back the next repo is made.
        renameSync(`${pkg}.away`, pkg)
        const good = yield* runNewRepo(hub)
        assert.strictEqual(hub.state.task(good)!.state, 2, JSON.stringify(hub.state.taskResult(good)))
        const [goodRepo] = resultAs(RepoResult, hub, good)
        assert.strictEqual(buildrootTables(topdir).repos.get(goodRepo)!.state, 1)

        // createrepo for a repo that is READY, not INIT.
        const notInit = hub.createTask("createrepo", [goodRepo, "x86_64", null], { channel: "createrepo" })
        yield* waitFor(() => DONE.has(hub.state.task(notInit)?.state ?? 0), `createrepo ${notInit}`)
        assert.strictEqual(hub.state.task(notInit)!.state, 5)
        assert.deepStrictEqual(faultOf(hub, notInit), { faultCode: 1000, faultString: `Repo ${goodRepo} not in INIT state (got 1)` })
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }))
    }), 600_000)

  it.scopedLive("podman: use_createrepo_c = False runs /usr/bin/createrepo as kojid does; an image without it fails clearly", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      yield* withDaemon(hub, topdir, Effect.gen(function*() {
        const id = yield* runNewRepo(hub)
        assert.strictEqual(hub.state.task(id)!.state, 5)
        const cr = hub.state.tasks.find((t) => t.method === "createrepo" && t.parent === id)!
        const f = faultOf(hub, cr.id)
        assert.strictEqual(f.faultCode, 1000)
        // The old tool's command line: no --error-exit-val (createrepo has no such option).
        assert.match(f.faultString, /^failed to create repo: \/usr\/bin\/createrepo -vd -o /)
        assert.match(f.faultString, /exited with status 127/)
        assert.match(f.faultString, /\/usr\/bin\/createrepo.*not found/)
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }), { use_createrepo_c: false })
    }), 600_000)

  it.scopedLive("podman: without <topdir>/repos newRepo is refused softly and another host may take it", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      const missingTop = path.join(topdir, "not-mounted")
      yield* withDaemon(hub, topdir, Effect.gen(function*() {
        const id = createNewRepo(hub, fixture)
        yield* waitFor(() => hub.state.refusals.some((r) => r.taskId === id), `refusal of ${id}`, "60 seconds")
        const refusal = hub.state.refusals.find((r) => r.taskId === id)!
        assert.isTrue(refusal.soft)
        assert.strictEqual(refusal.msg, `No access to repos dir ${missingTop}/repos`)
        assert.notStrictEqual(hub.state.task(id)!.state, 5)
        assert.isFalse(existsSync(path.join(topdir, "repos", fixture.manifest.tag.name)))
      }), { topdir: missingTop })
    }), 600_000)
})
