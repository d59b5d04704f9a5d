/**
 * The fake hub's buildroot rules (koji-protocol.md §5.1) through the real client: owner checks,
 * setBuildRootList only in INIT, updateBuildRootList only in BUILDING, EXPIRED final (expiring
 * again is a no-op), never back to INIT, unknown rpms refused with "No such rpm".
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { hostApi } from "../../src/hub/HostApi.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { startFakeHub } from "../fakehub/FakeHub.js"

const manifest = {
  tag: { id: 1, name: "fixture-build", arches: "x86_64" },
  repo: { id: 1, tag_id: 1, state: 1, create_event: 6 },
  builds: [{ id: 1, name: "fixture-setup", version: "1.0", release: "1", epoch: null, state: 1 }],
  rpms: [{ id: 2, name: "fixture-setup", version: "1.0", release: "1", epoch: null, arch: "noarch", payloadhash: "aa", size: 1, buildtime: 1, build_id: 1 }]
}
const entry = { name: "fixture-setup", version: "1.0", release: "1", epoch: null, arch: "noarch", size: 1, buildtime: 1, payloadhash: "aa", id: 2 }

const faultOf = <A, E>(eff: Effect.Effect<A, E>) =>
  Effect.map(Effect.flip(eff), (e) => (typeof e === "object" && e !== null && "faultString" in e ? String(e.faultString) : String(e)))

describe("fake hub buildroots", () => {
  it.live("newBuildRoot, lists and states follow the hub's rules", () =>
    Effect.gen(function* () {
      const hub = yield* startFakeHub({ hosts: [{ name: "b1", password: "p" }, { name: "b2", password: "p" }], scheduler: { runInterval: 0 } })
      loadFixture(hub.topdir, manifest)
      const session = (user: string) =>
        Effect.flatMap(KojiHub, (k) => k.loginScoped(true)).pipe(
          Effect.provide(KojiHub.layerWithTransport({ server: hub.url, user, password: "p", maxRetries: 0, retryInterval: 1 }).pipe(Layer.orDie))
        )
      const s1 = yield* session("b1")
      const api = hostApi(s1)
      const task = hub.createTask("buildArch", ["x", "fixture-build", "noarch", true, { repo_id: 1 }], { assign: "b1" })
      yield* api.openTask(task)
      const repo = yield* api.repoInfo(1, true)
      assert.strictEqual(repo?.tag_name, "fixture-build")
      assert.strictEqual((yield* api.getBuildConfig("fixture-build", 6)).arches, "x86_64")
      const br = yield* api.newBuildRoot(1, "x86_64", task)
      assert.include(yield* faultOf(api.updateBuildRootList(br, [entry])), `buildroot ${br} in wrong state 0`)
      assert.include(yield* faultOf(api.setBuildRootList(br, [{ ...entry, id: 99 }])), "No such rpm: {")
      yield* api.setBuildRootList(br, [entry])
      yield* api.setBuildRootState(br, "BUILDING")
      assert.include(yield* faultOf(api.setBuildRootList(br, [entry])), `buildroot ${br} in wrong state 2`)
      yield* api.updateBuildRootList(br, [entry])
      assert.strictEqual(buildrootTables(hub.topdir).buildroots.get(br)!.listing.get(2), false, "already listed: not an update")
      const s2 = yield* session("b2")
      assert.strictEqual(yield* faultOf(hostApi(s2).setBuildRootState(br, "EXPIRED")), `Host 2 not owner of buildroot ${br}`)
      assert.strictEqual(yield* faultOf(api.setBuildRootState(br, "INIT")), "Cannot change buildroot state to INIT")
      yield* api.setBuildRootState(br, 3)
      yield* api.setBuildRootState(br, "EXPIRED")
      assert.strictEqual(yield* faultOf(api.setBuildRootState(br, "BUILDING")), `buildroot ${br} is EXPIRED`)
      const listed = yield* api.listBuildroots({ hostID: 1, state: [0, 1, 2] })
      assert.deepStrictEqual(listed, [])
      const all = yield* api.listBuildroots({ buildrootID: [br] })
      assert.strictEqual(all[0]?.state, 3)
      assert.isNotNull(all[0]?.retire_ts)
      assert.strictEqual(all[0]?.tag_name, "fixture-build")
      const [rpms] = yield* api.listTaggedRPMS(1, { event: 6, latest: true, draft: true })
      assert.deepStrictEqual(rpms.map((r) => r["id"]), [2])
    }).pipe(Effect.scoped))
})
