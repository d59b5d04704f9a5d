/**
 * The fake hub's task rules (koji-protocol.md §4.3–4.7, §4.11): state machine, ownership,
 * result documents, refusals, freeing, cancel, subtasks and the wait protocol.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { encodeFault, encodeMethodCall, encodeResponse, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { startFakeHub, type FakeHub } from "./FakeHub.js"
import { call, login, ok, type Sess } from "./client.js"

const withHost = (f: (hub: FakeHub, s: Sess, other: Sess) => Promise<void>) =>
  Effect.gen(function*() {
    const hub = yield* startFakeHub({
      hosts: [{ name: "b1", password: "pw" }, { name: "b2", password: "pw", enabled: false }],
      scheduler: { runInterval: 0 }
    })
    yield* Effect.promise(async () => {
      const s = await login(hub.url, "b1", "pw")
      const other = await login(hub.url, "b2", "pw")
      await ok(call(hub.url, "host.updateHost", [0.0, true], { session: s, kw: { data: { methods: ["sleep"], maxjobs: 10 } } }))
      await f(hub, s, other)
    })
  })

const c = (hub: FakeHub, s: Sess | undefined, method: string, params: ReadonlyArray<XmlRpcValue> = [], kw?: Record<string, XmlRpcValue>) =>
  call(hub.url, method, params, { session: s, ...(kw === undefined ? {} : { kw }) })
const v = async (hub: FakeHub, s: Sess | undefined, method: string, params: ReadonlyArray<XmlRpcValue> = [], kw?: Record<string, XmlRpcValue>) =>
  ok(c(hub, s, method, params, kw))

/** Takes a task as kojid does: getTasks, openTask, setTaskWeight. */
const take = async (hub: FakeHub, s: Sess, id: number): Promise<void> => {
  const tasks = await v(hub, s, "host.getTasks") as ReadonlyArray<Record<string, XmlRpcValue>>
  assert.include(tasks.map((t) => t["id"]), id)
  assert.isNotNull(await v(hub, s, "host.openTask", [id]))
  await v(hub, s, "host.setTaskWeight", [id, 0.5])
}

describe("fake hub: task life", () => {
  it.scoped("FREE → ASSIGNED → OPEN → CLOSED with the result stored and readable", () =>
    withHost(async (hub, s) => {
      const id = hub.createTask("sleep", [3], { priority: 15 })
      assert.strictEqual(hub.state.task(id)?.state, 0)
      const tasks = await v(hub, s, "host.getTasks") as ReadonlyArray<Record<string, XmlRpcValue>>
      assert.deepStrictEqual(Object.keys(tasks[0]!).sort(), ["arch", "channel_id", "create_ts", "host_id", "id", "method", "priority", "state"])
      assert.strictEqual(tasks[0]!["state"], 4)
      const info = await v(hub, s, "getTaskInfo", [id], { request: true }) as Record<string, XmlRpcValue>
      assert.deepStrictEqual(info["request"], [3])
      const opened = await v(hub, s, "host.openTask", [id]) as Record<string, XmlRpcValue>
      assert.strictEqual(opened["request"], encodeMethodCall("sleep", [3]))
      assert.strictEqual(opened["state"], 1)
      assert.isString(opened["start_time"])
      assert.isNull(await v(hub, s, "host.openTask", [id]), "a second open gets nil")
      await v(hub, s, "host.setTaskWeight", [id, 0.25])
      assert.deepStrictEqual(await v(hub, s, "host.getHostTasks"), [{ id, waiting: null, weight: 0.25 }])
      await v(hub, s, "host.closeTask", [id, encodeResponse({ ok: true })])
      assert.strictEqual(hub.state.task(id)?.state, 2)
      assert.deepStrictEqual(await v(hub, undefined, "getTaskResult", [id]), { ok: true })
      assert.isTrue(await v(hub, undefined, "taskFinished", [id]))
      assert.deepStrictEqual((await c(hub, s, "host.closeTask", [id, encodeResponse(null)])).fault,
        { faultCode: 1004, faultString: `host 1 does not own task ${id}` })
      assert.deepStrictEqual(await v(hub, s, "host.getHostTasks"), [])
    }))

  it.scoped("closeTask with a document the hub cannot read faults and leaves the task OPEN; failTask stores any fault", () =>
    withHost(async (hub, s) => {
      const id = hub.createTask("sleep", [1])
      await take(hub, s, id)
      const bad = await c(hub, s, "host.closeTask", [id, "not xml at all"])
      assert.strictEqual(bad.fault?.faultCode, 1)
      assert.strictEqual(hub.state.task(id)?.state, 1)
      // a fault document cannot close a task: the hub re-reads it and raises that fault
      const asFault = await c(hub, s, "host.closeTask", [id, encodeFault(1005, "boom")])
      assert.deepStrictEqual(asFault.fault, { faultCode: 1005, faultString: "boom" })
      assert.strictEqual(hub.state.task(id)?.state, 1)
      await v(hub, s, "host.failTask", [id, encodeFault(1005, "boom")])
      assert.strictEqual(hub.state.task(id)?.state, 5)
      assert.deepStrictEqual((await c(hub, undefined, "getTaskResult", [id])).fault, { faultCode: 1005, faultString: "boom" })
      assert.deepStrictEqual(hub.state.taskResult(id), { faultCode: 1005, faultString: "boom" })
      assert.deepStrictEqual(await v(hub, undefined, "getTaskResult", [id, false]), { faultCode: 1005, faultString: "boom" })
    }))

  it.scoped("unfinished and missing tasks", () =>
    withHost(async (hub) => {
      const id = hub.createTask("sleep", [1])
      assert.deepStrictEqual((await c(hub, undefined, "getTaskResult", [id])).fault, { faultCode: 1000, faultString: `Task ${id} is not finished` })
      assert.isNull(await v(hub, undefined, "getTaskInfo", [999]))
      assert.deepStrictEqual((await c(hub, undefined, "getTaskInfo", [999], { strict: true })).fault, { faultCode: 1000, faultString: "query returned no rows" })
      assert.deepStrictEqual(await v(hub, undefined, "getTaskInfo", [[id, 999]]).then((l) => (l as ReadonlyArray<unknown>).length), 2)
    }))

  it.scoped("ownership: another host cannot open, weigh or close our task", () =>
    withHost(async (hub, s, other) => {
      hub.setHostEnabled("b2", true)
      const id = hub.createTask("sleep", [1])
      await take(hub, s, id)
      assert.isNull(await v(hub, other, "host.openTask", [id]))
      assert.strictEqual((await c(hub, other, "host.setTaskWeight", [id, 1.0])).fault?.faultString, `host 2 does not own task ${id}`)
      assert.strictEqual((await c(hub, other, "host.failTask", [id, encodeFault(1, "x")])).fault?.faultCode, 1004)
      assert.isNull(await v(hub, other, "host.freeTasks", [[id]]))
      assert.strictEqual(hub.state.task(id)?.state, 1)
    }))

  it.scoped("refuseTask frees the task and keeps it from this host; unrelated refusals are ignored", () =>
    withHost(async (hub, s, other) => {
      const id = hub.createTask("sleep", [1])
      const [t] = await v(hub, s, "host.getTasks") as ReadonlyArray<Record<string, XmlRpcValue>>
      assert.strictEqual(t!["id"], id)
      assert.isNull(await v(hub, other, "host.refuseTask", [id], { soft: false, msg: "not mine" }))
      assert.strictEqual(hub.state.task(id)?.state, 4)
      await v(hub, s, "host.refuseTask", [id], { soft: false, msg: "no handler for method" })
      assert.strictEqual(hub.state.task(id)?.state, 0)
      assert.isNull(hub.state.task(id)?.hostId)
      assert.deepStrictEqual(hub.state.refusals.map((r) => [r.taskId, r.hostId, r.soft, r.msg]), [[id, 1, false, "no handler for method"]])
      assert.deepStrictEqual(await v(hub, s, "host.getTasks"), [])
      assert.strictEqual(hub.state.task(id)?.state, 0)
    }))

  it.scoped("freeTasks frees our OPEN tasks and skips the rest; [] is fine", () =>
    withHost(async (hub, s) => {
      const a = hub.createTask("sleep", [1])
      await take(hub, s, a)
      const b = hub.createTask("sleep", [2])
      assert.isNull(await v(hub, s, "host.freeTasks", [[]]))
      assert.isNull(await v(hub, s, "host.freeTasks", [[a, b]]))
      assert.strictEqual(hub.state.task(a)?.state, 0)
      assert.deepStrictEqual((await c(hub, s, "host.freeTasks", [[4242]])).fault, { faultCode: 1000, faultString: "No such task: 4242" })
    }))

  it.scoped("cancel: CANCELED with its children; the host then gets 1004 and getTaskResult says canceled", () =>
    withHost(async (hub, s) => {
      const id = hub.createTask("build", ["x"])
      await take(hub, s, id)
      const child = await v(hub, s, "host.subtask", ["buildArch", ["x", 1], id], { label: "x86_64", arch: "x86_64" }) as number
      hub.cancelTask(id)
      assert.strictEqual(hub.state.task(id)?.state, 3)
      assert.strictEqual(hub.state.task(child)?.state, 3)
      assert.deepStrictEqual(await v(hub, s, "host.getHostTasks"), [])
      assert.strictEqual(((await v(hub, s, "getTaskInfo", [id])) as Record<string, XmlRpcValue>)["state"], 3)
      assert.deepStrictEqual((await c(hub, s, "host.failTask", [id, encodeFault(1, "x")])).fault,
        { faultCode: 1004, faultString: `host 1 does not own task ${id}` })
      assert.deepStrictEqual((await c(hub, undefined, "getTaskResult", [id])).fault, { faultCode: 1000, faultString: `Task ${id} is canceled` })
    }))
})

describe("fake hub: subtasks and waiting", () => {
  it.scoped("subtask: labels are idempotent, defaults from the parent, owner forbidden, subtask2", () =>
    withHost(async (hub, s) => {
      const parent = hub.createTask("build", ["x"], { priority: 20 })
      await take(hub, s, parent)
      const a = await v(hub, s, "host.subtask", ["buildArch", ["x", 1], parent], { label: "x86_64", arch: "x86_64" }) as number
      assert.strictEqual(await v(hub, s, "host.subtask", ["buildArch", ["x", 1], parent], { label: "x86_64", arch: "x86_64" }), a)
      const t = hub.state.task(a)!
      assert.deepStrictEqual([t.parent, t.priority, t.arch, t.label, t.state, t.owner], [parent, 19, "x86_64", "x86_64", 0, 1])
      assert.deepStrictEqual((await c(hub, s, "host.subtask", ["x", [], parent], { owner: 3 })).fault,
        { faultCode: 1004, faultString: "The owner option is not allowed here" })
      const b = await v(hub, s, "host.subtask", ["tagBuild", [1, 2], parent], { kwargs: { force: true } }) as number
      assert.deepStrictEqual(hub.state.task(b)?.params, [1, 2, { force: true, __starstar: true }])
      const c2 = await v(hub, s, "host.subtask2", [parent, { label: "srpm" }, "rebuildSRPM", "a.src.rpm", 5], { opts: {} }) as number
      assert.deepStrictEqual(hub.state.task(c2)?.params, ["a.src.rpm", 5, { opts: {}, __starstar: true }])
      const children = await v(hub, s, "getTaskChildren", [parent]) as ReadonlyArray<Record<string, XmlRpcValue>>
      assert.deepStrictEqual(children.map((x) => x["id"]), [a, b, c2])
      // a parent that is not ours (or not OPEN) cannot get children
      const stranger = hub.createTask("build", ["y"])
      assert.strictEqual((await c(hub, s, "host.subtask", ["x", [], stranger])).fault?.faultCode, 1004)
    }))

  it.scoped("wait protocol: setWait, taskWait, alert, taskWaitResults with and without canfail", () =>
    withHost(async (hub, s) => {
      const parent = hub.createTask("build", ["x"])
      await take(hub, s, parent)
      const c1 = await v(hub, s, "host.subtask", ["sleep", [1], parent], { label: "one" }) as number
      const c2 = await v(hub, s, "host.subtask", ["sleep", [2], parent], { label: "two" }) as number
      await v(hub, s, "host.taskSetWait", [parent, null])
      assert.deepStrictEqual(await v(hub, s, "host.getHostTasks"), [{ id: parent, waiting: true, weight: 0.5 }])
      assert.deepStrictEqual(await v(hub, s, "host.taskWait", [parent]), [[], [c1, c2]])
      await take(hub, s, c1)
      await v(hub, s, "host.closeTask", [c1, encodeResponse("r1")])
      const alerted = await v(hub, s, "host.getHostTasks") as ReadonlyArray<Record<string, XmlRpcValue>>
      assert.deepStrictEqual(alerted.find((t) => t["id"] === parent), { id: parent, waiting: true, weight: 0.5, alert: true })
      assert.deepStrictEqual(await v(hub, s, "host.taskWait", [parent]), [[c1], [c2]])
      assert.deepStrictEqual(await v(hub, s, "host.taskWait", [parent]), [[], [c2]], "a finished child is reported once")
      await take(hub, s, c2)
      await v(hub, s, "host.failTask", [c2, encodeFault(1005, "rpmbuild failed")])
      // a failed child not in canfail: the whole call faults with its fault, and nothing changes
      const failed = await c(hub, s, "host.taskWaitResults", [parent, [c1, c2]])
      assert.deepStrictEqual(failed.fault, { faultCode: 1005, faultString: "rpmbuild failed" })
      assert.isTrue(hub.state.task(parent)?.waiting)
      const results = await v(hub, s, "host.taskWaitResults", [parent, [c1, c2]], { canfail: [c2] })
      assert.deepStrictEqual(results, [[c1, "r1"], [c2, { faultCode: 1005, faultString: "rpmbuild failed" }]])
      assert.isFalse(hub.state.task(parent)?.waiting)
      // tasks=None: every finished child
      assert.deepStrictEqual(await v(hub, s, "host.taskWaitResults", [parent, null], { canfail: [c2] }),
        [[c1, "r1"], [c2, { faultCode: 1005, faultString: "rpmbuild failed" }]])
    }))

  it.scoped("canceled children: in canfail a fault struct, otherwise 1000 Task N is canceled; cancelTaskChildren", () =>
    withHost(async (hub, s) => {
      const parent = hub.createTask("build", ["x"])
      await take(hub, s, parent)
      const c1 = await v(hub, s, "host.subtask", ["sleep", [1], parent], { label: "one" }) as number
      const c2 = await v(hub, s, "host.subtask", ["sleep", [2], parent], { label: "two" }) as number
      await v(hub, s, "host.taskSetWait", [parent, [c1]])
      assert.deepStrictEqual(await v(hub, s, "host.taskWait", [parent]), [[], [c1]])
      assert.isNull(await v(hub, s, "cancelTaskChildren", [parent]))
      assert.strictEqual(hub.state.task(c1)?.state, 3)
      assert.strictEqual(hub.state.task(c2)?.state, 3)
      assert.deepStrictEqual((await c(hub, s, "host.taskWaitResults", [parent, [c1]])).fault,
        { faultCode: 1000, faultString: `Task ${c1} is canceled` })
      assert.deepStrictEqual(await v(hub, s, "host.taskWaitResults", [parent, [c1]], { canfail: [c1] }),
        [[c1, { faultCode: 1000, faultString: `Task ${c1} is canceled` }]])
      const notFinished = hub.createTask("sleep", [1])
      assert.strictEqual((await c(hub, s, "host.taskWaitResults", [parent, [notFinished]], { canfail: [notFinished] })).fault?.faultString,
        `Task ${notFinished} is not finished`)
    }))
})
