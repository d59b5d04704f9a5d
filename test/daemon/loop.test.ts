import { BuildrootSetupError } from "../../src/buildroot/errors.js"
import { ScmError } from "../../src/scm/url.js"
import type { TaskError } from "../../src/tasks/errors.js"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Ref } from "effect"
import { Readiness } from "../../src/daemon/Readiness.js"
import { GenericError } from "../../src/koji/faults.js"
import { decodeResponse } from "../../src/hub/xmlrpc.js"
import { defineHandler, signature } from "../../src/tasks/handler.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { daemonLayer, fakeHub, HOST, startDaemon, tempWorkdir, testOptions, until } from "./harness.js"

const resultOf = (doc: string | null | undefined) => {
  assert.isString(doc)
  assert.isTrue(doc!.startsWith("<?xml version='1.0'?>"))
  return decodeResponse(doc!)
}

describe("TaskManager loop (fake hub, TestClock)", () => {
  it.scoped("unbatched, a task goes ASSIGNED → OPEN → CLOSED with a methodResponse document, with kojid's calls", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const id = hub.createTask("sleep", [0])
      const fortyTwo = hub.createTask("someMethod", [1, "x"])
      yield* startDaemon(testOptions(workdir, { batchHubCalls: false })).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED && hub.state.task(fortyTwo)?.state === TaskState.CLOSED, "tasks closed")
      const r = resultOf(hub.state.task(id)?.result)
      assert.deepStrictEqual(r, Either.right(null))
      assert.deepStrictEqual(resultOf(hub.state.task(fortyTwo)?.result), Either.right(42))
      const calls = hub.state.calls.map((c) => c.method)
      for (const m of ["host.getID", "getSessionInfo", "host.getHostTasks", "host.updateHost", "host.getTasks", "getTaskInfo", "host.openTask", "host.setTaskWeight", "subsession", "host.closeTask"]) {
        assert.include(calls, m)
      }
      const weight = hub.state.task(id)!.weight
      assert.strictEqual(weight, 0.25)
      // The heartbeat carries kojid's data.
      const beat = hub.state.calls.find((c) => c.method === "host.updateHost")!
      assert.deepInclude(JSON.stringify(beat.params), "\"maxjobs\":10")
    }))

  it.scoped("unbatched, the main session's calls follow kojid's recorded sequence (koji-captures/kojid/generic-sleep)", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const id = hub.createTask("sleep", [0])
      yield* startDaemon(testOptions(workdir, { batchHubCalls: false })).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.calls.some((c) => c.method === "logoutChild"), "logoutChild")
      const main = hub.state.calls.find((c) => c.method === "host.getID")!.sessionId
      const seq = hub.state.calls.filter((c) => c.sessionId === main).map((c) => c.method)
      const upTo = seq.slice(0, seq.indexOf("logoutChild") + 1)
      // kojid (startup/generic-sleep captures): one task per cycle, no sleep after taking it,
      // no updateBuildroots in the cycle after a take; idle cycles until the task has reported;
      // then logoutChild right after getHostTasks.
      const idle = ["listBuildroots", "host.getHostTasks", "host.getHost", "host.updateHost", "host.getTasks"]
      assert.deepStrictEqual(upTo.slice(0, 17), [
        "exclusiveSession", "echo", "host.getID", "getSessionInfo",
        ...idle,
        "getTaskInfo", "host.openTask", "host.setTaskWeight", "subsession",
        "host.getHostTasks", "host.getHost", "host.updateHost", "host.getTasks"
      ])
      const rest = upTo.slice(17)
      // (kojid adds its local buildroot scan after listBuildroots: listBuildroots(buildrootID=…), getTaskInfo([…]))
      assert.deepStrictEqual(rest.slice(-3), ["listBuildroots", "host.getHostTasks", "logoutChild"])
      const middle = rest.slice(0, -3)
      assert.strictEqual(middle.length % idle.length, 0)
      for (let i = 0; i < middle.length; i++) assert.strictEqual(middle[i], idle[i % idle.length])
      const sub = hub.state.calls.filter((c) => c.method === "host.closeTask" || c.method === "logout").filter((c) => c.sessionId !== main)
      assert.deepStrictEqual(sub.map((c) => c.method), ["host.closeTask", "logout"])
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
    }))

  it.scoped("batched, the cycle's reads travel in multiCalls and tasks still close", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const ids = [hub.createTask("sleep", [0]), hub.createTask("sleep", [0]), hub.createTask("bogus", [])]
      yield* startDaemon(testOptions(workdir, { batchHubCalls: true })).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(ids[0]!)?.state === TaskState.CLOSED && hub.state.task(ids[1]!)?.state === TaskState.CLOSED &&
        hub.state.refusals.some((r) => r.taskId === ids[2]), "closed and refused")
      // What went over the wire (the fake hub also lists the calls a multiCall carried).
      const methods = hub.state.calls.filter((c) => c.within === undefined).map((c) => c.method)
      assert.include(methods, "multiCall")
      assert.notInclude(methods, "host.getTasks")
      assert.notInclude(methods, "host.getHost")
      assert.isTrue(hub.state.host(HOST)!.ready)
    }))

  it.scoped("failing handlers give the fault code of each error kind", () =>
    Effect.gen(function*() {
      const failing = (method: string, eff: Effect.Effect<never, TaskError>) =>
        defineHandler({ name: method, methods: [method], weight: 1, signature: signature(`${method}.handler`, {}), run: () => eff })
      const handlers = [
        ...genericHandlers,
        failing("fault", Effect.fail(new GenericError({ faultString: "plain koji fault" }))),
        failing("scm", Effect.fail(new ScmError({ reason: "checkout-failed", url: "git://example.com/r.git#abc", message: "git clone failed" }))),
        failing("broot", Effect.fail(new BuildrootSetupError({ message: "dnf failed" }))),
        failing("bug", Effect.die(new TypeError("x is undefined")))
      ]
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const ids = {
        fault: hub.createTask("fault", []),
        scm: hub.createTask("scm", []),
        broot: hub.createTask("broot", []),
        bug: hub.createTask("bug", []),
        params: hub.createTask("sleep", ["[3]"]),
        count: hub.createTask("sleep", ["[", "3", "]"]),
        dflt: hub.createTask("default", [1])
      }
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, handlers)))
      yield* until(() => Object.values(ids).every((id) => hub.state.task(id)?.state === TaskState.FAILED), "all failed")
      const fault = (id: number) => {
        const r = resultOf(hub.state.task(id)?.result)
        assert.isTrue(Either.isLeft(r))
        const e = Either.isLeft(r) ? r.left : undefined
        return e !== undefined && "faultCode" in e ? { code: e.faultCode, text: e.faultString } : { code: -1, text: "" }
      }
      assert.deepStrictEqual(fault(ids.fault), { code: 1000, text: "plain koji fault" })
      assert.deepStrictEqual(fault(ids.scm), { code: 1005, text: "git clone failed" })
      assert.deepStrictEqual(fault(ids.broot), { code: 1012, text: "dnf failed" })
      assert.strictEqual(fault(ids.bug).code, 1)
      assert.include(fault(ids.bug).text, "x is undefined")
      assert.strictEqual(fault(ids.params).code, 1019)
      assert.include(fault(ids.params).text, "'n'")
      assert.deepStrictEqual(fault(ids.count), { code: 1019, text: "SleepTask.handler() takes 2 positional arguments but 4 were given" })
      assert.deepStrictEqual(fault(ids.dflt), { code: 1000, text: "Invalid method: default" })
    }))

  it.scoped("a task with no handler is refused (hard) and not taken again", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const id = hub.createTask("buildArch", ["x", 1, "noarch", false])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.refusals.some((r) => r.taskId === id), "refusal")
      // Several more cycles: it is never offered or opened again.
      const seenAt = hub.state.calls.length
      yield* until(() => hub.state.calls.filter((c) => c.method === "host.updateHost").length > 6, "more cycles")
      assert.isTrue(hub.state.calls.length > seenAt)
      const refusal = hub.state.refusals.find((r) => r.taskId === id)!
      assert.isFalse(refusal.soft)
      assert.strictEqual(refusal.msg, "no handler for method")
      assert.strictEqual(hub.state.calls.filter((c) => c.method === "host.refuseTask").length, 1)
      assert.isFalse(hub.state.calls.some((c) => c.method === "host.openTask"))
      assert.notStrictEqual(hub.state.task(id)?.state, TaskState.OPEN)
      assert.strictEqual(HOST, "builder")
    }))
})


describe("readiness and heartbeat", () => {
  it.scoped("a disabled host or a local shortage reports not ready every cycle and takes nothing", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const reasons = yield* Ref.make<ReadonlyArray<string>>(["Insufficient disk space at /x: 1 MB, 8192 MB required"])
      hub.setHostEnabled(HOST, false)
      const id = hub.createTask("sleep", [0])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, undefined, Readiness.layerTest(reasons))))
      const beats = () => hub.state.calls.filter((c) => c.method === "host.updateHost")
      yield* until(() => beats().length >= 3, "three heartbeats")
      assert.isTrue(beats().every((c) => c.params[1] === false))
      assert.isFalse(hub.state.calls.some((c) => c.method === "host.getTasks"))
      hub.setHostEnabled(HOST, true)
      const n = beats().length
      yield* until(() => beats().length >= n + 2, "two more heartbeats")
      assert.isTrue(beats().slice(n).every((c) => c.params[1] === false), "disk shortage keeps it not ready")
      yield* Ref.set(reasons, [])
      yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED, "task closed once ready")
      assert.isTrue(beats().some((c) => c.params[1] === true))
    }))

  it.scoped("unbatched (the fault is injected per request), a 1.34 hub without updateHost's data keyword: updateHost(load, ready) + host.setHostData", () =>
    Effect.gen(function*() {
      let refused = 0
      const hub = yield* fakeHub({
        inject: (req) => {
          if (req.methodName === "host.updateHost" && refused === 0) {
            refused++
            return { fault: [1019, "HostExports.updateHost() got an unexpected keyword argument 'data'"] }
          }
          return undefined
        }
      })
      const workdir = yield* tempWorkdir
      const id = hub.createTask("sleep", [0])
      yield* startDaemon(testOptions(workdir, { batchHubCalls: false })).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED, "task closed")
      const setData = hub.state.calls.filter((c) => c.method === "host.setHostData" && c.fault === undefined)
      assert.isAtLeast(setData.length, 1)
      assert.include(JSON.stringify(setData[0]!.params), "\"maxjobs\":10")
      const later = hub.state.calls.filter((c) => c.method === "host.updateHost").slice(1)
      assert.isTrue(later.every((c) => !JSON.stringify(c.params).includes("\"data\"")))
    }))
})

describe("generic handlers through the loop", () => {
  it.scoped("subtask(1) chains subtask → sleep; dependantTask waits for it, then runs its own subtask", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const chain = hub.createTask("subtask", [1])
      // task[2] is passed to host.subtask as keywords, as kojid does.
      const dep = hub.createTask("dependantTask", [[chain], [["sleep", [1], { label: "dep-sleep", priority: 33 }]]])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(dep)?.state === TaskState.CLOSED, "dependantTask closed", 1200)
      assert.strictEqual(hub.state.task(chain)?.state, TaskState.CLOSED)
      const child = hub.state.tasks.find((t) => t.parent === chain)!
      assert.strictEqual(child.method, "subtask")
      assert.strictEqual(child.label, "foo")
      const grandchild = hub.state.tasks.find((t) => t.parent === child.id)!
      assert.deepStrictEqual([grandchild.method, grandchild.label], ["sleep", "bar"])
      const depChild = hub.state.tasks.find((t) => t.parent === dep)!
      assert.deepStrictEqual([depChild.method, depChild.label, depChild.priority], ["sleep", "dep-sleep", 33])
      assert.isAtLeast(depChild.createTs, hub.state.task(chain)!.completionTs!)
    }))
})
