/**
 * `waitrepo` and `getRepo` through the daemon and the fake hub on the TestClock: an existing
 * repo at once, a repo request polled every 60 s until kojira (the test) fulfils it, builds that
 * must be tagged first, the 120 minute limit, an abandoned request, legacy `newer_than`, and
 * `build` handing its wait to a waitrepo subtask.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, TestClock } from "effect"
import { decodeResponse, isStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { makeBuildHandler } from "../../src/tasks/build.js"
import { duration, parseNvr, printList } from "../../src/tasks/getRepo.js"
import { tagBuildHandler } from "../../src/tasks/tagBuild.js"
import { waitrepoHandler } from "../../src/tasks/waitrepo.js"
import { type FakeHub, TaskState } from "../fakehub/FakeHub.js"
import { addBuild, tagBuildAdmin } from "../fakehub/builds.js"
import { addRepo, addTag, setRepoState } from "../fakehub/buildroots.js"
import { failRequest, fulfilRequest, repoRequests } from "../fakehub/repoRequests.js"
import { daemonLayer, fakeHub, HOST, realPause, startDaemon, tempWorkdir, testOptions, until } from "../daemon/harness.js"
import { setupWorld, stubHandlers, uploadSrpm } from "./buildSupport.js"

const done = (hub: FakeHub, id: number) => {
  const s = hub.state.task(id)?.state
  return s === TaskState.CLOSED || s === TaskState.FAILED
}

const result = (hub: FakeHub, id: number): Either.Either<XmlRpcValue, unknown> => decodeResponse(hub.state.task(id)?.result ?? "")

const faultOf = (hub: FakeHub, id: number) => {
  const r = result(hub, id)
  if (Either.isRight(r)) return null
  const f = r.left as { readonly faultCode: number; readonly faultString: string }
  return { faultCode: f.faultCode, faultString: f.faultString }
}

const start = (hub: FakeHub) =>
  Effect.gen(function*() {
    const workdir = yield* tempWorkdir
    yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [waitrepoHandler])))
  })

/** A tag with one READY repo made at the current event. */
const tagWithRepo = (hub: FakeHub) => {
  const tag = addTag(hub.topdir, "build-tag", "x86_64")
  const repo = addRepo(hub.topdir, tag, 1)
  return { tag, repo }
}

describe("getRepo helpers", () => {
  it("parse_NVR, duration and printList as koji's", () => {
    assert.deepStrictEqual(parseNvr("foo-bar-1.0-1.fc40"), { name: "foo-bar", version: "1.0", release: "1.fc40" })
    assert.deepStrictEqual(parseNvr("1:foo-1-2"), { name: "foo", version: "1", release: "2" })
    assert.throws(() => parseNvr("foo-1"))
    assert.strictEqual(duration(7_201_000), "120:01")
    assert.strictEqual(duration(65_000), "1:05")
    assert.strictEqual(printList(["a"]), "a")
    assert.strictEqual(printList(["a", "b"]), "a and b")
    assert.strictEqual(printList(["a", "b", "c"]), "a, b, and c")
  })
})

describe("waitrepo (fake hub, TestClock)", () => {
  it.scoped("a READY repo satisfying min_event: the task returns its repoinfo at once", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const { repo } = tagWithRepo(hub)
      const id = hub.createTask("waitrepo", ["build-tag", null, null, null])
      yield* start(hub)
      yield* until(() => done(hub, id), "waitrepo done")
      const r = result(hub, id)
      assert.isTrue(Either.isRight(r) && isStruct(r.right) && r.right["id"] === repo)
      assert.strictEqual(hub.state.calls.filter((c) => c.method === "repo.checkRequest").length, 0)
    }))

  it.scoped("no repo new enough: a request is polled every 60 s until kojira makes the repo", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const { tag } = tagWithRepo(hub)
      const b = addBuild(hub.topdir, { name: "foo", version: "1", release: "1" })
      const ev = tagBuildAdmin(hub.topdir, tag, b)
      const id = hub.createTask("waitrepo", ["build-tag", null, null, ev])
      yield* start(hub)
      yield* until(() => repoRequests(hub.topdir).length === 1 && hub.state.calls.some((c) => c.method === "repo.checkRequest"), "request polled")
      const polls = () => hub.state.calls.filter((c) => c.method === "repo.checkRequest").length
      const before = polls()
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("60 seconds")
        yield* until(() => polls() >= before + i + 1, `poll ${i + 1}`)
      }
      yield* realPause(50)
      assert.strictEqual(polls(), before + 3, "one poll a minute")
      assert.strictEqual(hub.state.task(id)?.state, TaskState.OPEN)
      const req = repoRequests(hub.topdir)[0]!
      assert.strictEqual(req.minEvent, ev)
      const newRepo = fulfilRequest(hub.topdir, req.id)
      yield* TestClock.adjust("60 seconds")
      yield* until(() => done(hub, id), "waitrepo done")
      const r = result(hub, id)
      assert.isTrue(Either.isRight(r) && isStruct(r.right) && r.right["id"] === newRepo, JSON.stringify(r))
    }))

  it.scoped("nvrs not tagged yet: waits for them before requesting, then returns a repo containing them", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const { tag } = tagWithRepo(hub)
      const id = hub.createTask("waitrepo", ["build-tag", null, ["foo-1-1"], null])
      yield* start(hub)
      yield* until(() => hub.state.calls.some((c) => c.method === "listTagged"), "listTagged")
      yield* TestClock.adjust("60 seconds")
      yield* realPause(50)
      assert.strictEqual(repoRequests(hub.topdir).length, 0, "no request before the build is tagged")
      const b = addBuild(hub.topdir, { name: "foo", version: "1", release: "1" })
      tagBuildAdmin(hub.topdir, tag, b)
      yield* TestClock.adjust("60 seconds")
      yield* until(() => repoRequests(hub.topdir).length === 1, "request made")
      const repo = fulfilRequest(hub.topdir, repoRequests(hub.topdir)[0]!.id)
      yield* TestClock.adjust("60 seconds")
      yield* until(() => done(hub, id), "waitrepo done")
      const r = result(hub, id)
      assert.isTrue(Either.isRight(r) && isStruct(r.right) && r.right["id"] === repo)
    }))

  it.scoped("nothing comes within 120 minutes → GenericError naming the tag and the time waited", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const { tag } = tagWithRepo(hub)
      const ev = tagBuildAdmin(hub.topdir, tag, addBuild(hub.topdir, { name: "foo", version: "1", release: "1" }))
      const id = hub.createTask("waitrepo", ["build-tag", null, null, ev])
      yield* start(hub)
      yield* until(() => hub.state.calls.some((c) => c.method === "repo.checkRequest"), "polling")
      yield* until(() => done(hub, id), "waitrepo timed out", 2000, "60 seconds")
      const r = result(hub, id)
      assert.isTrue(Either.isLeft(r))
      const f = Either.isLeft(r) ? (r.left as { faultCode: number; faultString: string }) : undefined
      assert.strictEqual(f?.faultCode, 1000)
      assert.match(f?.faultString ?? "", /^Unsuccessfully waited 12[01]:\d\d for a new build-tag repo$/)
    }))

  it.scoped("kojira gives up on the request → GenericError 'Repo request no longer active'", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const { tag } = tagWithRepo(hub)
      const ev = tagBuildAdmin(hub.topdir, tag, addBuild(hub.topdir, { name: "foo", version: "1", release: "1" }))
      const id = hub.createTask("waitrepo", ["build-tag", null, null, ev])
      yield* start(hub)
      yield* until(() => repoRequests(hub.topdir).length === 1, "request")
      failRequest(hub.topdir, repoRequests(hub.topdir)[0]!.id)
      yield* TestClock.adjust("60 seconds")
      yield* until(() => done(hub, id), "waitrepo failed")
      const r = result(hub, id)
      assert.isTrue(Either.isLeft(r))
      assert.deepStrictEqual(faultOf(hub, id), { faultCode: 1000, faultString: "Repo request no longer active" })
    }))

  it.scoped("legacy newer_than='now' waits for a repo after the tag's last change; both args → GenericError", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const { tag } = tagWithRepo(hub)
      const ev = tagBuildAdmin(hub.topdir, tag, addBuild(hub.topdir, { name: "foo", version: "1", release: "1" }))
      const id = hub.createTask("waitrepo", ["build-tag", "now"])
      const both = hub.createTask("waitrepo", ["build-tag", "now", null, 3])
      yield* start(hub)
      yield* until(() => repoRequests(hub.topdir).length === 1 && done(hub, both), "request")
      assert.strictEqual(repoRequests(hub.topdir)[0]!.minEvent, ev)
      assert.deepStrictEqual(faultOf(hub, both), { faultCode: 1000, faultString: "newer_than and min_event args confict" })
      hub.cancelTask(id)
    }))
})

describe("build without a usable repo (getRepo → waitrepo subtask)", () => {
  it.scoped("the build waits in a waitrepo subtask ([tag name, nil, [], min_event]) and goes on once the repo exists", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const world = setupWorld(hub.topdir)
      setRepoState(hub.topdir, world.repoId, 2)
      const src = uploadSrpm(hub.topdir, { name: "harness-hello", version: "1.0", release: "1", buildArchs: ["noarch"] })
      const handlers = [
        makeBuildHandler({ literal_task_arches: "", build_arch_can_fail: false }),
        tagBuildHandler, waitrepoHandler, ...stubHandlers(hub.topdir, hub.state.host(HOST)!.id)
      ]
      const id = hub.createTask("build", [src, "test-target", { scratch: true }])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, handlers)))
      yield* until(() => hub.state.tasks.some((t) => t.method === "waitrepo") && repoRequests(hub.topdir).length === 1, "waitrepo subtask")
      const wr = hub.state.tasks.find((t) => t.method === "waitrepo")!
      assert.strictEqual(wr.parent, id)
      assert.isNull(wr.label)
      const req = repoRequests(hub.topdir)[0]!
      assert.deepStrictEqual(wr.params, ["build-tag", null, [], req.minEvent])
      fulfilRequest(hub.topdir, req.id)
      yield* until(() => done(hub, id), "build done", 2000, "10 seconds")
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED, JSON.stringify(result(hub, id)))
      const arch = hub.state.tasks.find((t) => t.method === "buildArch")!
      assert.deepStrictEqual((arch.params[4] as Record<string, XmlRpcValue>)["repo_id"], req.repoId)
    }))
})
