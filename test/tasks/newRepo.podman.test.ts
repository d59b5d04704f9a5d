/**
 * End to end (real podman): the daemon against the fake hub runs kojira's `newRepo` for the
 * offline fixture's tag; `createrepo` runs createrepo_c in the bootstrap image; the hub's
 * repoDone puts the repodata in place, and dnf in a container reads back exactly the tagged
 * packages and the `build` group. A second newRepo with copy_old_repodata reuses the repodata.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import { buildrootTables } from "../fakehub/buildroots.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import { ensureFixture, type Fixture } from "../fixture/manifest.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import {
  createNewRepo, daemonOptions, dnfReadRepo, DONE, fixtureTopdir, makeRepoHandlers, repoDaemonLayers, repoHub, repoKojid, RepoResult, resultAs, startDaemon, tempDir,
  UploadResult, waitFor
} from "./newRepoSupport.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("newrepo")
let podman: { readonly socket: string }
let fixture: Fixture

const tasksOf = (hub: FakeHub, method: string) => hub.state.tasks.filter((t) => t.method === method)

describe.skipIf(!podmanInstalled)("newRepo + createrepo end to end (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = ensureFixture()
  }, 600_000)

  it.scopedLive("podman: newRepo makes a repo dnf reads back with exactly the tagged packages and the build group; copy_old_repodata reuses it", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const workdir = yield* tempDir("adjutant-work-")
      const hub = yield* repoHub(fixture, topdir)
      const kojid = repoKojid(topdir, { copy_old_repodata: true })
      const layers = repoDaemonLayers(hub, podman.socket, hostName, (containers) =>
        makeRepoHandlers({ kojid, image: fixture.manifest.bootstrapImage, containers }))
      yield* Effect.gen(function*() {
        yield* startDaemon(daemonOptions(workdir))
        const first = createNewRepo(hub, fixture)
        yield* waitFor(() => DONE.has(hub.state.task(first)?.state ?? 0), `newRepo ${first}`)
        assert.strictEqual(hub.state.task(first)!.state, 2, JSON.stringify(hub.state.taskResult(first)))
        const [repoId, eventId] = resultAs(RepoResult, hub, first)
        assert.strictEqual(repoId, 1)
        assert.isNumber(eventId)

        // The call sequences of kojid's newRepo and createrepo sessions (koji-captures/kojid/newrepo, §13).
        const sessionCalls = (first: string) => {
          const sid = hub.state.calls.find((c) => c.method === first && c.sessionId !== undefined)?.sessionId
          const seq: Array<string> = []
          for (const c of hub.state.calls) {
            // logout follows closeTask, possibly after the test saw the task CLOSED.
            if (c.sessionId !== sid || c.method === "rawUpload" || c.method === "logout") continue
            if (seq[seq.length - 1] === c.method && c.method === "host.taskWait") continue
            seq.push(c.method)
          }
          return seq
        }
        assert.deepStrictEqual(sessionCalls("host.repoInit"), [
          "getTag", "host.repoInit", "getRepo", "getFullInheritance", "host.subtask", "host.taskSetWait", "host.taskWait",
          "host.taskWaitResults", "host.repoDone", "host.closeTask"
        ])
        const crCalls = sessionCalls("repoInfo")
        assert.deepStrictEqual(crCalls.slice(0, 4), ["repoInfo", "getExternalRepoList", "getTag", "getTaskInfo"])
        assert.deepStrictEqual(crCalls.slice(-1), ["host.closeTask"])
        assert.isTrue(crCalls.slice(4, -1).every((m) => m === "checkUpload"))

        const createrepos = tasksOf(hub, "createrepo")
        assert.strictEqual(createrepos.length, 1)
        assert.strictEqual(createrepos[0]!.label, "x86_64")
        assert.strictEqual(createrepos[0]!.arch, "noarch")
        assert.deepStrictEqual(createrepos[0]!.params, [1, "x86_64", null])
        const crResult = resultAs(UploadResult, hub, createrepos[0]!.id)
        assert.strictEqual(crResult[0], `tasks/${createrepos[0]!.id}/${createrepos[0]!.id}`)
        assert.include(crResult[1], "repomd.xml")
        assert.isTrue(hub.state.uploads.some((u) => u.path === `${crResult[0]}/createrepo.log`))

        const repodir = path.join(topdir, "repos", fixture.manifest.tag.name, "1")
        assert.strictEqual(buildrootTables(topdir).repos.get(1)!.state, 1)
        assert.strictEqual(readlinkSync(path.join(topdir, "repos", fixture.manifest.tag.name, "latest")), "1")
        assert.sameMembers(readdirSync(path.join(repodir, "x86_64", "repodata")), [...crResult[1]])
        const tagged = fixture.manifest.rpms.filter((r) => r.arch !== "src").map((r) => `${r.name}-${r.version}-${r.release}.${r.arch}`).sort()
        const read = dnfReadRepo(fixture.manifest.bootstrapImage, path.join(repodir, "x86_64"))
        assert.deepStrictEqual(read.nvras, tagged)
        assert.deepStrictEqual(read.group, [...fixture.manifest.groups["build"]!].sort())

        // Nothing changed: the second repo clones the first one's repodata without a createrepo subtask.
        const second = createNewRepo(hub, fixture)
        yield* waitFor(() => DONE.has(hub.state.task(second)?.state ?? 0), `newRepo ${second}`)
        assert.strictEqual(hub.state.task(second)!.state, 2, JSON.stringify(hub.state.taskResult(second)))
        assert.strictEqual(resultAs(RepoResult, hub, second)[0], 2)
        assert.strictEqual(tasksOf(hub, "createrepo").length, 1)
        const repodir2 = path.join(topdir, "repos", fixture.manifest.tag.name, "2")
        const files1 = readdirSync(path.join(repodir, "x86_64", "repodata")).sort()
        assert.deepStrictEqual(readdirSync(path.join(repodir2, "x86_64", "repodata")).sort(), files1)
        for (const f of files1) {
          assert.isTrue(readFileSync(path.join(repodir, "x86_64", "repodata", f)).equals(readFileSync(path.join(repodir2, "x86_64", "repodata", f))), f)
        }
        const json = JSON.parse(readFileSync(path.join(repodir2, "repo.json"), "utf8"))
        assert.strictEqual(json.cloned_from_repo_id, 1)
        assert.deepStrictEqual(json.cloned_archs, ["x86_64"])
        assert.strictEqual(readlinkSync(path.join(topdir, "repos", fixture.manifest.tag.name, "latest")), "2")
        assert.deepStrictEqual(dnfReadRepo(fixture.manifest.bootstrapImage, path.join(repodir2, "x86_64")).nvras, tagged)
        assert.isFalse(existsSync(path.join(repodir2, "x86_64", "repodata", "EMPTY_REPO")))
      }).pipe(Effect.scoped, Effect.provide(layers))
      assert.deepStrictEqual(containersOfHost(hostName), [])
    }), 600_000)
})
