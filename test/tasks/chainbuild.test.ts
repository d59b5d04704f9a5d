/**
 * `chainbuild` through the daemon against the fake hub, with a stub `build` that makes and tags
 * the build: build subtasks labelled "build L,N" with the chain's target and opts, a waitrepo
 * subtask ("wait L") for the previous level's N-V-Rs (given ones and built ones) before each
 * later level, and scratch refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { decodeResponse, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { chainbuildHandler } from "../../src/tasks/chainbuild.js"
import { AnyValue, defineHandler, optional, required, signature } from "../../src/tasks/handler.js"
import { waitrepoHandler } from "../../src/tasks/waitrepo.js"
import { type FakeHub, TaskState } from "../fakehub/FakeHub.js"
import { addBuild, BuildState, tagBuildAdmin } from "../fakehub/builds.js"
import { fulfilRequest, repoRequests } from "../fakehub/repoRequests.js"
import { daemonLayer, fakeHub, startDaemon, tempWorkdir, testOptions, until } from "../daemon/harness.js"
import { setupWorld } from "./buildSupport.js"

const stubBuild = (hub: FakeHub, buildTag: number) =>
  defineHandler({
    name: "StubBuild",
    methods: ["build"],
    weight: 0.2,
    signature: signature("StubBuild.handler", { src: required(AnyValue), target: required(AnyValue), opts: optional(AnyValue, null) }),
    run: ({ src }, ctx) =>
      Effect.sync(() => {
        const name = String(src).replace(/^.*\/([^/#]+?)(\.git)?#.*$/, "$1")
        const id = addBuild(hub.topdir, { name, version: "1", release: "1" }, BuildState.COMPLETE, ctx.taskId)
        tagBuildAdmin(hub.topdir, buildTag, id)
        return null
      })
  })

const done = (hub: FakeHub, id: number) => [TaskState.CLOSED, TaskState.FAILED].includes(hub.state.task(id)?.state as 2 | 5)

describe("chainbuild (fake hub, stub build)", () => {
  it.scoped("levels: builds labelled 'build L,N', a waitrepo 'wait L' for the previous level's NVRs between levels", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const world = setupWorld(hub.topdir)
      tagBuildAdmin(hub.topdir, world.buildTag, addBuild(hub.topdir, { name: "given", version: "2", release: "1" }))
      const levels = [["git://127.0.0.1/a.git#aaa", "given-2-1"], ["git://127.0.0.1/b.git#bbb", "git://127.0.0.1/c.git#ccc"]]
      const id = hub.createTask("chainbuild", [levels, "test-target", { skip_tag: false }])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [chainbuildHandler, waitrepoHandler, stubBuild(hub, world.buildTag)])))
      yield* until(() => repoRequests(hub.topdir).length === 1, "repo request of the waitrepo")
      fulfilRequest(hub.topdir, repoRequests(hub.topdir)[0]!.id)
      yield* until(() => done(hub, id), "chainbuild done", 2000, "10 seconds")
      assert.deepStrictEqual(decodeResponse(hub.state.task(id)?.result ?? ""), Either.right(null))
      const children = hub.state.tasks.filter((t) => t.parent === id).sort((a, b) => a.id - b.id)
      assert.deepStrictEqual(children.map((t) => [t.method, t.label]), [
        ["build", "build 0,0"], ["waitrepo", "wait 1"], ["build", "build 1,0"], ["build", "build 1,1"]
      ])
      assert.deepStrictEqual(children[0]!.params, ["git://127.0.0.1/a.git#aaa", "test-target", { skip_tag: false }])
      assert.deepStrictEqual(children[1]!.params, ["build-tag", null, ["given-2-1", "a-1-1"]] as ReadonlyArray<XmlRpcValue>)
    }))

  it.scoped("scratch is refused: BuildError '--scratch is not allowed with chain-builds'", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      setupWorld(hub.topdir)
      const id = hub.createTask("chainbuild", [[["git://h/a.git#1"]], "test-target", { scratch: true }])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [chainbuildHandler])))
      yield* until(() => done(hub, id), "chainbuild done")
      const r = decodeResponse(hub.state.task(id)?.result ?? "")
      const f = Either.isLeft(r) ? (r.left as { faultCode: number; faultString: string }) : null
      assert.deepStrictEqual(f === null ? null : [f.faultCode, f.faultString], [1005, "--scratch is not allowed with chain-builds"])
    }))
})
