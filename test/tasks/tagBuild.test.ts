/**
 * `tagBuild` through the daemon against the fake hub: success tags the build and sends the
 * success tag notification (a tagNotification task when the tag has recipients, none when
 * `ignore_success`); a refusal by the hub (package list, tag permission, tag policy) is re-raised
 * after the failure notification carrying kojid's "<class 'koji.X'>: message".
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { decodeResponse, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { pythonExceptionText, tagBuildHandler } from "../../src/tasks/tagBuild.js"
import { GenericError, TagError } from "../../src/koji/faults.js"
import { type FakeHub, TaskState } from "../fakehub/FakeHub.js"
import { addBuild, taggedBuilds } from "../fakehub/builds.js"
import { addTag } from "../fakehub/buildroots.js"
import { setPolicy } from "../fakehub/policies.js"
import { addPackage, buildWorld, setNotificationRecipients, setTagPerm } from "../fakehub/targets.js"
import { daemonLayer, fakeHub, startDaemon, tempWorkdir, testOptions, until } from "../daemon/harness.js"

const run = (prepare: (hub: FakeHub, tag: number, build: number) => ReadonlyArray<XmlRpcValue> | void, params?: (tag: number, build: number) => ReadonlyArray<XmlRpcValue>) =>
  Effect.gen(function*() {
    const hub = yield* fakeHub()
    const workdir = yield* tempWorkdir
    const tag = addTag(hub.topdir, "dest", "")
    const build = addBuild(hub.topdir, { name: "foo", version: "1", release: "1" })
    prepare(hub, tag, build)
    const id = hub.createTask("tagBuild", [...(params === undefined ? [tag, build, false, null, true] : params(tag, build))])
    yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [tagBuildHandler])))
    yield* until(() => [TaskState.CLOSED, TaskState.FAILED].includes(hub.state.task(id)?.state as 2 | 5), "tagBuild done")
    const r = decodeResponse(hub.state.task(id)?.result ?? "")
    const f = Either.isLeft(r) ? (r.left as { faultCode: number; faultString: string }) : null
    return { hub, id, tag, build, r, fault: f === null ? null : { faultCode: f.faultCode, faultString: f.faultString } }
  })

describe("tagBuild (fake hub)", () => {
  it("kojid's failure text: the Python class of the exception, then its message", () => {
    assert.strictEqual(pythonExceptionText(new TagError({ faultString: "Package foo not in list for dest" })),
      "<class 'koji.TagError'>: Package foo not in list for dest")
    assert.strictEqual(pythonExceptionText(new GenericError({ faultString: "x" })), "<class 'koji.GenericError'>: x")
  })

  it.scoped("success: tagged, success notification (ignore_success → no notification task)", () =>
    Effect.gen(function*() {
      const { hub, id, tag, build, r } = yield* run((h, t) => {
        addPackage(h.topdir, t, "foo")
        setNotificationRecipients(h.topdir, t, ["owner@example.com"])
      })
      assert.deepStrictEqual(r, Either.right(null))
      assert.deepStrictEqual(taggedBuilds(hub.topdir, tag), [build])
      const n = buildWorld(hub.topdir).tagNotifications
      assert.deepStrictEqual(n.map((x) => [x.isSuccessful, x.tagId, x.fromId, x.buildId, x.userId, x.ignoreSuccess, x.taskId]),
        [[true, tag, null, build, 1, true, null]])
      const calls = hub.state.calls.filter((c) => c.method === "host.tagBuild" || c.method === "host.tagNotification")
      assert.deepStrictEqual(calls.map((c) => c.params), [
        [id, tag, build, { force: false, fromtag: null, __starstar: true }],
        [true, tag, null, build, 1, true]
      ])
    }))

  it.scoped("success without ignore_success and with recipients: the hub makes a tagNotification task", () =>
    Effect.gen(function*() {
      const { hub, tag, build } = yield* run((h, t) => {
        addPackage(h.topdir, t, "foo")
        setNotificationRecipients(h.topdir, t, ["owner@example.com"])
      }, (t, b) => [t, b])
      const task = hub.state.tasks.find((t) => t.method === "tagNotification")!
      assert.deepStrictEqual(task.params, [["owner@example.com"], true, tag, null, build, 1, false, ""])
    }))

  it.scoped("package not in the tag's list: TagError 1003 re-raised after the failure notification", () =>
    Effect.gen(function*() {
      const { hub, tag, build, fault } = yield* run((h, t) => setNotificationRecipients(h.topdir, t, ["owner@example.com"]))
      assert.deepStrictEqual(fault, { faultCode: 1003, faultString: `Package foo not in list for ${tag}` })
      assert.deepStrictEqual(taggedBuilds(hub.topdir, tag), [])
      const n = buildWorld(hub.topdir).tagNotifications
      assert.deepStrictEqual(n.map((x) => [x.isSuccessful, x.failureMsg]), [[false, `<class 'koji.TagError'>: Package foo not in list for ${tag}`]])
      const task = hub.state.tasks.find((t) => t.method === "tagNotification")!
      assert.deepStrictEqual(task.params, [["owner@example.com"], false, tag, null, build, 1, true, `<class 'koji.TagError'>: Package foo not in list for ${tag}`])
    }))

  it.scoped("tag permission: a tag needing a permission the owner lacks → ActionNotAllowed 1004", () =>
    Effect.gen(function*() {
      const { fault } = yield* run((h, t) => {
        addPackage(h.topdir, t, "foo")
        setTagPerm(h.topdir, t, "release")
      }, (t, b) => [t, b])
      // The owner (kojiadmin) is an admin: that only makes the refusal overridable with force.
      assert.deepStrictEqual(fault, { faultCode: 1004, faultString: "tag requires release permission" })
    }))

  it.scoped("tag policy denial: ActionNotAllowed 'policy violation (tag): …' and a failure notification", () =>
    Effect.gen(function*() {
      const { hub, fault } = yield* run((h, t) => {
        addPackage(h.topdir, t, "foo")
        setPolicy(h.topdir, "tag", "deny frozen")
      })
      assert.deepStrictEqual(fault, { faultCode: 1004, faultString: "policy violation (tag): frozen" })
      assert.deepStrictEqual(buildWorld(hub.topdir).tagNotifications.map((x) => x.isSuccessful), [false])
    }))

  it.scoped("a build that does not exist: GenericError from getBuild, failure notification for it", () =>
    Effect.gen(function*() {
      const { fault } = yield* run(() => undefined, (t) => [t, 999])
      assert.deepStrictEqual(fault, { faultCode: 1000, faultString: "No such build: 999" })
    }))
})
