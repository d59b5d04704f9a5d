/**
 * kojid's `restartHosts` (RestartHostsTask) and `fork` (ForkTask) through the daemon loop
 * against the fake hub (listHosts, getChannel, label-deduplicated subtasks).
 */
import { readdirSync, readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { encodeResponse, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { TaskState, type FakeHub } from "../fakehub/FakeHub.js"
import { call, login, ok } from "../fakehub/client.js"
import { daemonLayer, fakeHub, HOST, PASSWORD, realPause, startDaemon, tempWorkdir, testOptions, until } from "./harness.js"

/** A closed task's decoded result; a failed task's fault struct. */
const resultOf = (hub: FakeHub, id: number): XmlRpcValue => {
  assert.isString(hub.state.task(id)?.result)
  return hub.state.taskResult(id)
}

const childrenOf = (hub: FakeHub, parent: number) =>
  hub.state.tasks.filter((t) => t.parent === parent).sort((a, b) => a.id - b.id)

const hostId = (hub: FakeHub, name: string) => hub.state.host(name)!.id

/** The kwargs struct of a recorded call (koji sends them as a trailing `__starstar` struct). */
const kwargsOf = (params: ReadonlyArray<XmlRpcValue>): Record<string, XmlRpcValue> => {
  const last = params.at(-1)
  assert.isTrue(typeof last === "object" && last !== null && !Array.isArray(last))
  const { __starstar: _, ...rest } = last as Record<string, XmlRpcValue> // checked: a struct
  return rest
}

/** Runs one daemon until it ends by itself (a restart) and returns how it ended. */
const runUntilEnd = (hub: FakeHub, workdir: string, done: () => boolean, what: string) =>
  Effect.gen(function*() {
    const fiber = yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub)))
    yield* until(done, what)
    return fiber
  })

describe("restartHosts (RestartHostsTask)", () => {
  it.scoped("restart + restartVerify assigned to each enabled host of the channel; waits for all, then closes", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub({
        hosts: [
          { name: HOST, password: PASSWORD, capacity: 10, channels: ["default"] },
          { name: "other1", password: "pw", channels: ["default", "special"] },
          { name: "other2", password: "pw", channels: ["special"] },
          { name: "off", password: "pw", enabled: false, channels: ["special"] }
        ]
      })
      const workdir = yield* tempWorkdir
      const parent = hub.createTask("restartHosts", [{ channel: "special" }], { assign: HOST })
      yield* runUntilEnd(hub, workdir, () => childrenOf(hub, parent).length === 4 && hub.state.task(parent)?.waiting === true, "four subtasks, parent waiting")

      const getChannel = hub.state.calls.find((c) => c.method === "getChannel")!
      assert.strictEqual(getChannel.params[0], "special")
      assert.deepStrictEqual(kwargsOf(getChannel.params), { strict: true })
      const listHosts = hub.state.calls.find((c) => c.method === "listHosts")!
      const special = hub.state.channels.find((c) => c.name === "special")!.id
      assert.deepStrictEqual(kwargsOf(listHosts.params), { enabled: true, channelID: special })

      const kids = childrenOf(hub, parent)
      const expect = (name: string, i: number) => {
        const id = hostId(hub, name)
        const restart = kids[i]!
        const verify = kids[i + 1]!
        assert.strictEqual(restart.method, "restart")
        assert.strictEqual(restart.label, `restart ${id}`)
        assert.strictEqual(restart.hostId, id)
        assert.strictEqual(restart.state, TaskState.ASSIGNED)
        assert.strictEqual((restart.params[0] as Record<string, XmlRpcValue>)["id"], id) // the listHosts row
        assert.strictEqual((restart.params[0] as Record<string, XmlRpcValue>)["name"], name)
        assert.strictEqual(verify.method, "restartVerify")
        assert.strictEqual(verify.label, `sleep ${id}`)
        assert.strictEqual(verify.hostId, id)
        assert.strictEqual(verify.params[0], restart.id)
        assert.deepStrictEqual(verify.params[1], restart.params[0])
      }
      // listHosts order (by id): other1, other2; the disabled host and our own (not in the channel) get none.
      expect("other1", 0)
      expect("other2", 2)
      assert.strictEqual(hub.state.task(parent)?.state, TaskState.OPEN)

      // The other hosts do their part; the parent then closes with nil.
      for (const [name, i] of [["other1", 0], ["other2", 2]] as const) {
        yield* Effect.promise(async () => {
          const s = await login(hub.url, name, "pw")
          for (const t of [kids[i]!, kids[i + 1]!]) {
            await ok(call(hub.url, "host.openTask", [t.id], { session: s }))
            await ok(call(hub.url, "host.closeTask", [t.id, encodeResponse(null)], { session: s }))
          }
        })
      }
      yield* until(() => hub.state.task(parent)?.state === TaskState.CLOSED, "restartHosts closed")
      assert.isNull(resultOf(hub, parent))
    }))

  it.scoped("no matching host → GenericError 'No matching hosts'", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const parent = hub.createTask("restartHosts", [{ arches: ["s390x"] }], { assign: HOST })
      yield* runUntilEnd(hub, workdir, () => hub.state.task(parent)?.state === TaskState.FAILED, "restartHosts failed")
      const listHosts = hub.state.calls.find((c) => c.method === "listHosts")!
      assert.deepStrictEqual(kwargsOf(listHosts.params), { enabled: true, arches: ["s390x"] })
      assert.deepStrictEqual(resultOf(hub, parent), { faultCode: 1000, faultString: "No matching hosts" })
      assert.strictEqual(childrenOf(hub, parent).length, 0)
    }))

  it.scoped("this host among them: its restart closes, the parent is freed (ServerRestart), the daemon restarts; after the restart restartVerify passes and the parent closes", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const parent = hub.createTask("restartHosts", [], { assign: HOST })
      const first = yield* runUntilEnd(hub, workdir, () => hub.state.calls.some((c) => c.method === "host.freeTasks"), "parent freed")
      yield* until(() => first.unsafePoll() !== null, "first daemon ended for the restart")
      const ended = yield* Fiber.join(first)
      assert.strictEqual(ended._tag, "Restart")
      const kids = childrenOf(hub, parent)
      assert.deepStrictEqual(kids.map((t) => t.method), ["restart", "restartVerify"])
      assert.isTrue(kids.every((t) => t.hostId === hostId(hub, HOST)))
      assert.strictEqual(kids[0]!.state, TaskState.CLOSED)
      assert.strictEqual(resultOf(hub, kids[0]!.id), "graceful restart initiated")
      const freed = hub.state.calls.find((c) => c.method === "host.freeTasks")!
      assert.deepStrictEqual(freed.params[0], [parent])
      assert.notStrictEqual(hub.state.task(kids[1]!.id)?.state, TaskState.CLOSED)

      // The restarted daemon (new session, later start time) verifies and finishes the parent.
      yield* runUntilEnd(hub, workdir, () => hub.state.task(parent)?.state === TaskState.CLOSED, "restartHosts closed after the restart")
      assert.strictEqual(hub.state.task(kids[1]!.id)?.state, TaskState.CLOSED)
      assert.isNull(resultOf(hub, kids[1]!.id))
      assert.isNull(resultOf(hub, parent))
      // The re-run found the same subtasks by label instead of making new ones.
      assert.strictEqual(childrenOf(hub, parent).length, 2)
    }))
})

/** PIDs of `sleep <arg>` processes (Linux /proc). */
const sleepers = (arg: string): Array<number> => {
  const out: Array<number> = []
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "latin1") === `sleep\0${arg}\0`) out.push(Number(d))
    } catch {
      // The process ended between readdir and read.
    }
  }
  return out
}

describe("fork (ForkTask)", () => {
  it.scoped("starts n `sleep m` processes without waiting for them and closes with nil, weight 1.0", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      // A seconds value nobody else uses, so the processes can be found; short, so they go away soon.
      const m = 4.731
      const id = hub.createTask("fork", [3, m])
      yield* runUntilEnd(hub, workdir, () => hub.state.task(id)?.state === TaskState.CLOSED, "fork closed")
      assert.isNull(resultOf(hub, id))
      assert.strictEqual(hub.state.task(id)!.weight, 1.0)
      const found = sleepers(String(m))
      assert.strictEqual(found.length, 3, "three sleep processes still running after the task closed")
      // They exit by themselves; wait so the test leaves nothing behind.
      for (let i = 0; i < 400 && sleepers(String(m)).length > 0; i++) yield* realPause(50)
      assert.strictEqual(sleepers(String(m)).length, 0)
    }))
})
