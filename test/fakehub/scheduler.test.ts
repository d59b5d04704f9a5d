/**
 * The fake hub's scheduler against `kojihub/scheduler.py` (koji-protocol.md §4.10): bins,
 * capacity with overcommit, maxjobs, readiness and its timeout, refusals (hard, soft and their
 * expiry), lowest rank, assignment and host timeouts, RunInterval, disabled hosts, overrides.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { startFakeHub, type FakeHub, type FakeHubOptions } from "./FakeHub.js"
import { call, login, ok, type Sess } from "./client.js"

interface World {
  readonly hub: FakeHub
  readonly s: Record<string, Sess>
  /** Sets the clock (seconds). */
  readonly at: (t: number) => void
  /** host.updateHost(load, ready[, data]) for a host. */
  readonly beat: (host: string, ready?: boolean, data?: Record<string, XmlRpcValue>) => Promise<void>
  /** Host names holding each task, after a forced scheduler run. */
  readonly schedule: (...ids: Array<number>) => Array<string | null>
}

const world = (hosts: FakeHubOptions["hosts"], sched: FakeHubOptions["scheduler"], f: (w: World) => Promise<void>) =>
  Effect.gen(function*() {
    let clock = 10_000
    const hub = yield* startFakeHub({ hosts: hosts ?? [], scheduler: { runInterval: 60, ...sched }, now: () => clock })
    yield* Effect.promise(async () => {
      const s: Record<string, Sess> = {}
      for (const h of hosts ?? []) s[h.name] = await login(hub.url, h.name, "pw")
      const beat = async (host: string, ready = true, data?: Record<string, XmlRpcValue>) => {
        await ok(call(hub.url, "host.updateHost", [0.0, ready], { session: s[host]!, ...(data ? { kw: { data } } : {}) }))
      }
      const nameOf = (id: number | null) => (id === null ? null : hub.state.hosts.find((h) => h.id === id)!.name)
      const schedule = (...ids: Array<number>) => {
        hub.runScheduler()
        return ids.map((id) => nameOf(hub.state.task(id)!.hostId))
      }
      await f({ hub, s, at: (t) => { clock = t }, beat, schedule })
    })
  })

const H = (name: string, more: Partial<NonNullable<FakeHubOptions["hosts"]>[number]> = {}) => ({ name, password: "pw", ...more })

describe("fake hub: scheduler assignment", () => {
  it.scoped("capacity: weights fill a host up to its capacity", () =>
    world([H("a", { capacity: 2 })], {}, async ({ hub, beat, schedule }) => {
      await beat("a")
      const ids = [1, 2, 3].map((n) => hub.createTask("sleep", [n], { weight: 1.0 }))
      assert.deepStrictEqual(schedule(...ids), ["a", "a", null])
    }))

  it.scoped("overcommit: a heavy task may exceed capacity by CapacityOvercommit, no more", () =>
    world([H("a", { capacity: 2 })], { capacityOvercommit: 5 }, async ({ hub, beat, schedule }) => {
      await beat("a")
      const heavy = hub.createTask("sleep", [1], { weight: 6.5 })
      const tooHeavy = hub.createTask("sleep", [2], { weight: 8, priority: 30 })
      assert.deepStrictEqual(schedule(heavy, tooHeavy), ["a", null])
    }))

  const table: ReadonlyArray<{
    readonly name: string
    readonly task: { readonly arch?: string; readonly channel?: string }
    readonly hosts: NonNullable<FakeHubOptions["hosts"]>
    readonly expect: string | null
  }> = [
    { name: "noarch goes anywhere", task: {}, hosts: [H("a", { arches: "aarch64" })], expect: "a" },
    { name: "arch must be one of the host's arches", task: { arch: "x86_64" }, hosts: [H("a", { arches: "aarch64" })], expect: null },
    { name: "arch match is literal", task: { arch: "i686" }, hosts: [H("a", { arches: "x86_64 i386" })], expect: null },
    { name: "a listed arch matches", task: { arch: "i386" }, hosts: [H("a", { arches: "x86_64 i386" })], expect: "a" },
    { name: "channel: only hosts in it", task: { channel: "createrepo" }, hosts: [H("a"), H("b", { channels: ["createrepo"] })], expect: "b" },
    { name: "channel with no host", task: { channel: "createrepo" }, hosts: [H("a")], expect: null },
    { name: "disabled hosts get nothing", task: {}, hosts: [H("a", { enabled: false })], expect: null }
  ]
  for (const row of table) {
    it.scoped(`bins: ${row.name}`, () =>
      world(row.hosts, {}, async ({ hub, beat, schedule }) => {
        for (const h of row.hosts) await beat(h.name)
        const id = hub.createTask("sleep", [1], row.task)
        assert.deepStrictEqual(schedule(id), [row.expect])
      }))
  }

  it.scoped("maxjobs from updateHost data limits the count; MaxJobs is the default", () =>
    world([H("a", { capacity: 100 }), H("b", { capacity: 100 })], { maxJobs: 2 }, async ({ hub, beat, schedule }) => {
      await beat("a", true, { methods: ["sleep"], maxjobs: 1 })
      await beat("b")
      const ids = [1, 2, 3, 4].map((n) => hub.createTask("sleep", [n]))
      const got = schedule(...ids)
      assert.strictEqual(got.filter((h) => h === "a").length, 1)
      assert.strictEqual(got.filter((h) => h === "b").length, 2)
      assert.strictEqual(got.filter((h) => h === null).length, 1)
    }))

  it.scoped("only ready hosts; a host silent for ReadyTimeout is marked not ready", () =>
    world([H("a"), H("b")], { readyTimeout: 180 }, async ({ hub, at, beat, schedule }) => {
      await beat("a", false)
      await beat("b")
      const t1 = hub.createTask("sleep", [1])
      assert.deepStrictEqual(schedule(t1), ["b"])
      at(10_000 + 181)
      await beat("a")
      const t2 = hub.createTask("sleep", [2])
      assert.deepStrictEqual(schedule(t2), ["a"])
      assert.isFalse(hub.state.host("b")?.ready)
      assert.isTrue(hub.state.schedulerLog.some((l) => l.msg === "Marking host not ready" && l.hostId === hub.state.host("b")?.id))
    }))

  it.scoped("lowest rank wins: load and task count count against a host", () =>
    world([H("a", { capacity: 10 }), H("b", { capacity: 10 })], {}, async ({ hub, beat, schedule }) => {
      await beat("a")
      await beat("b")
      const first = hub.createTask("sleep", [1], { assign: "a" })
      assert.strictEqual(hub.state.task(first)?.state, 4)
      const next = hub.createTask("sleep", [2])
      assert.deepStrictEqual(schedule(next), ["b"])
      const [x, y] = [hub.createTask("sleep", [3]), hub.createTask("sleep", [4])]
      assert.deepStrictEqual(schedule(x, y).sort(), ["a", "b"])
    }))

  it.scoped("priority then age decide the order when capacity is short", () =>
    world([H("a", { capacity: 1 })], {}, async ({ hub, beat, schedule }) => {
      await beat("a")
      const low = hub.createTask("sleep", [1], { priority: 30 })
      const high = hub.createTask("sleep", [2], { priority: 10 })
      assert.deepStrictEqual(schedule(low, high), [null, "a"])
    }))
})

describe("fake hub: refusals and timeouts", () => {
  it.scoped("a hard refusal keeps the task from that host while it lives; others still get it", () =>
    world([H("a"), H("b")], {}, async ({ hub, s, beat, schedule }) => {
      await beat("a")
      const id = hub.createTask("sleep", [1])
      assert.deepStrictEqual(schedule(id), ["a"])
      await ok(call(hub.url, "host.refuseTask", [id], { session: s["a"]!, kw: { soft: false, msg: "failed host check" } }))
      assert.deepStrictEqual(schedule(id), [null])
      await beat("b")
      assert.deepStrictEqual(schedule(id), ["b"])
    }))

  it.scoped("a soft refusal expires after SoftRefusalTimeout", () =>
    world([H("a")], { softRefusalTimeout: 900 }, async ({ hub, s, at, beat, schedule }) => {
      await beat("a")
      const id = hub.createTask("sleep", [1])
      assert.deepStrictEqual(schedule(id), ["a"])
      await ok(call(hub.url, "host.refuseTask", [id], { session: s["a"]!, kw: { soft: true } }))
      at(10_000 + 600)
      await beat("a")
      assert.deepStrictEqual(schedule(id), [null])
      at(10_000 + 901)
      await beat("a")
      assert.deepStrictEqual(schedule(id), ["a"])
      assert.lengthOf(hub.state.refusals, 0)
    }))

  it.scoped("AssignTimeout: an unopened assignment is freed, as a soft refusal when the host checked in since", () =>
    world([H("a"), H("b")], { assignTimeout: 300 }, async ({ hub, at, beat, schedule }) => {
      await beat("a")
      const id = hub.createTask("sleep", [1])
      assert.deepStrictEqual(schedule(id), ["a"])
      at(10_000 + 100)
      await beat("a")
      at(10_000 + 301)
      await beat("a")
      await beat("b")
      // this run frees it (timeout) and records the refusal; the next one gives it to b
      schedule()
      assert.strictEqual(hub.state.task(id)?.state, 0)
      assert.deepStrictEqual(hub.state.refusals.map((r) => [r.hostId, r.soft, r.msg]), [[1, true, "assignment timeout"]])
      assert.deepStrictEqual(schedule(id), ["b"])
    }))

  it.scoped("an override assignment has no run row and is never timed out", () =>
    world([H("a")], { assignTimeout: 300 }, async ({ hub, at, beat, schedule }) => {
      await beat("a")
      const id = hub.createTask("sleep", [1])
      assert.isTrue(hub.assignTask(id, "a", { override: true }))
      assert.lengthOf(hub.state.runs, 0)
      at(10_000 + 1000)
      await beat("a")
      assert.deepStrictEqual(schedule(id), ["a"])
      assert.strictEqual(hub.state.task(id)?.state, 4)
    }))

  it.scoped("HostTimeout: OPEN tasks of a silent host are freed", () =>
    world([H("a"), H("b")], { hostTimeout: 900 }, async ({ hub, s, at, beat, schedule }) => {
      await beat("a")
      const id = hub.createTask("sleep", [1])
      assert.deepStrictEqual(schedule(id), ["a"])
      await ok(call(hub.url, "host.openTask", [id], { session: s["a"]! }))
      at(10_000 + 800)
      await beat("b")
      assert.deepStrictEqual(schedule(id), ["a"])
      assert.strictEqual(hub.state.task(id)?.state, 1)
      at(10_000 + 901)
      await beat("b")
      schedule()
      assert.strictEqual(hub.state.task(id)?.state, 0)
      assert.isTrue(hub.state.schedulerLog.some((l) => l.msg === "Freeing task from unresponsive host" && l.taskId === id))
    }))

  it.scoped("host.getTasks runs the scheduler only when nothing is assigned, at most once per RunInterval", () =>
    world([H("a")], { runInterval: 60 }, async ({ hub, s, at, beat }) => {
      await beat("a")
      const getTasks = async () =>
        (await ok(call(hub.url, "host.getTasks", [], { session: s["a"]! })) as ReadonlyArray<Record<string, XmlRpcValue>>).map((t) => t["id"])
      assert.deepStrictEqual(await getTasks(), [])
      const id = hub.createTask("sleep", [1])
      at(10_000 + 30)
      await beat("a")
      assert.deepStrictEqual(await getTasks(), [], "ran 30 s ago")
      at(10_000 + 61)
      await beat("a")
      assert.deepStrictEqual(await getTasks(), [id])
      assert.strictEqual(hub.state.task(id)?.state, 4)
    }))
})
