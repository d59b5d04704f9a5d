/**
 * Three builders on one hub (issue 15 item 4): three `node dist/main.js` daemons, each its own
 * host, config and workdir, poll one fake hub whose scheduler (test/fakehub/scheduler.ts, kojihub's
 * TaskScheduler) assigns a burst of mixed tasks by bin, capacity, maxjobs and weight. The burst is
 * spread over the hosts, no host ever holds more than its maxjobs or more load than its capacity,
 * every task is opened by one host only — except those of a host SIGKILLed mid-burst, which the
 * hub frees (HostTimeout, AssignTimeout) and another host reruns — and everything completes.
 */
import type { ChildProcess } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type FakeHub, startFakeHub, TaskState } from "../fakehub/FakeHub.js"
import { distMain, ensureBuilt, exitOf, outputOf, spawnScoped, waitFor, writeConfig } from "./child.js"

beforeAll(() => ensureBuilt(), 180_000)

const PASSWORD = "sched-pw"

interface HostSpec {
  readonly name: string
  readonly capacity: number
  readonly maxjobs: number
  readonly arches: string
}

const HOSTS: ReadonlyArray<HostSpec> = [
  { name: "sched-a", capacity: 2.0, maxjobs: 2, arches: "x86_64" },
  { name: "sched-b", capacity: 3.0, maxjobs: 3, arches: "x86_64" },
  { name: "sched-c", capacity: 4.0, maxjobs: 4, arches: "x86_64 aarch64" }
]
const VICTIM = "sched-b"

const FINAL = new Set<number>([TaskState.CLOSED, TaskState.FAILED, TaskState.CANCELED])

/** The host a session (or the master of a subsession) belongs to. */
const hostOfSession = (hub: FakeHub, sessionId: number | undefined): string | undefined => {
  let s = sessionId === undefined ? undefined : hub.state.session(sessionId)
  if (s?.master != null) s = hub.state.session(s.master)
  return s === undefined ? undefined : hub.state.hosts.find((h) => h.userId === s.userId)?.name
}

/** Successful host.openTask calls, in order: task, host, call seq. */
const opens = (hub: FakeHub) =>
  hub.state.calls
    .filter((c) => c.method === "host.openTask" && c.fault === undefined && c.result !== null && c.result !== undefined)
    .map((c) => ({ task: Number(c.params[0]), host: hostOfSession(hub, c.sessionId), seq: c.seq }))

/**
 * What the scheduler promises at every instant: per host at most maxjobs ASSIGNED/OPEN tasks and a
 * load (weights of those not waiting) within capacity. With CapacityOvercommit 0 the scheduler
 * assigns only when `capacity - load > weight`; the one way past it is a parent that stops waiting
 * (its weight was left out while it waited), so those parents' weights are the only slack.
 */
const checkLimits = (hub: FakeHub, violations: Set<string>) => {
  for (const spec of HOSTS) {
    const h = hub.state.host(spec.name)!
    const active = hub.state.tasks.filter((t) => t.hostId === h.id && (t.state === TaskState.ASSIGNED || t.state === TaskState.OPEN))
    const load = active.filter((t) => t.waiting !== true).reduce((acc, t) => acc + t.weight, 0)
    const slack = active.filter((t) => t.method === "waittest").reduce((acc, t) => acc + t.weight, 0)
    if (active.length > spec.maxjobs) violations.add(`${spec.name}: ${active.length} tasks > maxjobs ${spec.maxjobs}`)
    if (load > spec.capacity + slack + 1e-9) violations.add(`${spec.name}: load ${load.toFixed(2)} > capacity ${spec.capacity}`)
  }
}

const confFor = (dir: string, hubUrl: string, spec: HostSpec): string => {
  const conf = path.join(dir, `${spec.name}.conf`)
  writeFileSync(conf, [
    "[kojid]",
    `server = ${hubUrl}`,
    "topurl = http://127.0.0.1:1/kojifiles",
    `user = ${spec.name}`,
    `password = ${PASSWORD}`,
    `workdir = ${dir}/work-${spec.name}`,
    "sleeptime = 1",
    `maxjobs = ${spec.maxjobs}`,
    "retry_interval = 1",
    "max_retries = 3",
    "[adjutant]",
    `log_file = ${dir}/${spec.name}.log`,
    `podman_socket = unix://${dir}/podman.sock`,
    ""
  ].join("\n"))
  return conf
}

describe("three hosts on one hub (node dist/main.js child processes)", () => {
  it.live("a burst is spread within capacity and maxjobs; a SIGKILLed host's tasks rerun elsewhere; all complete", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* startFakeHub({
        hosts: HOSTS.map((h) => ({ name: h.name, password: PASSWORD, capacity: h.capacity, arches: h.arches })),
        // kojihub's rules with short timeouts: a silent host is not ready after 4 s, its OPEN
        // tasks are freed after 6 s, an assignment it never took is freed after 5 s.
        scheduler: { runInterval: 0, capacityOvercommit: 0, readyTimeout: 4, hostTimeout: 6, assignTimeout: 5 }
      })
      const cfg = yield* writeConfig(hub.url)
      const children = new Map<string, ChildProcess>()
      for (const spec of HOSTS) {
        children.set(spec.name, yield* spawnScoped([distMain, "-c", confFor(cfg.dir, hub.url, spec), "--fg", "--force-lock", "-v"]))
      }
      const logs = () => HOSTS.map((h) => `--- ${h.name}\n${outputOf(children.get(h.name)!)}`).join("\n")
      yield* waitFor(() => HOSTS.every((h) => hub.state.host(h.name)?.ready === true), "all three hosts ready", 60_000, logs)

      // The burst: sleeps of mixed length, some weighing 1.5 until a builder sets their weight,
      // two that only the aarch64 host may take, and two parents with subtasks of their own.
      const top: Array<number> = []
      for (let i = 0; i < 12; i++) top.push(hub.createTask("sleep", [2 + (i % 4)], i % 3 === 0 ? { weight: 1.5 } : {}))
      const arm = [hub.createTask("sleep", [3], { arch: "aarch64" }), hub.createTask("sleep", [3], { arch: "aarch64" })]
      const parents = [hub.createTask("waittest", [2, 2]), hub.createTask("waittest", [2, 2])]
      top.push(...arm, ...parents)

      const violations = new Set<string>()
      const sample = () => {
        checkLimits(hub, violations)
        return false
      }
      // Mid-burst: the victim holds at least two OPEN tasks.
      const victimId = hub.state.host(VICTIM)!.id
      yield* waitFor(() => {
        sample()
        return hub.state.tasks.filter((t) => t.hostId === victimId && t.state === TaskState.OPEN).length >= 2
      }, `${VICTIM} running two tasks`, 60_000, logs)
      const victim = children.get(VICTIM)!
      const killedAt = hub.state.calls.at(-1)!.seq
      const lost = hub.state.tasks.filter((t) => t.hostId === victimId && t.state === TaskState.OPEN).map((t) => t.id)
      victim.kill("SIGKILL")
      assert.strictEqual(yield* exitOf(victim, 10_000), "SIGKILL")

      yield* waitFor(() => {
        sample()
        return hub.state.tasks.length > top.length && hub.state.tasks.every((t) => FINAL.has(t.state))
      }, "every task finished", 120_000, () => logs() + JSON.stringify(hub.state.tasks.map((t) => [t.id, t.method, t.state, t.hostId])))

      assert.deepStrictEqual([...violations], [], "no host over its maxjobs or capacity")
      // What each task ended as: sleeps and parents closed, each parent's "BAD_ARG" child failed.
      for (const t of hub.state.tasks) {
        const bad = t.method === "sleep" && JSON.stringify(t.params) === "[\"BAD_ARG\"]"
        assert.strictEqual(t.state, bad ? TaskState.FAILED : TaskState.CLOSED, `task ${t.id} ${t.method} ${JSON.stringify(t.params)}`)
      }
      assert.strictEqual(hub.state.tasks.length, top.length + 2 * 3, "each parent made three subtasks")

      // One host per task, except the victim's: freed by the hub, opened again elsewhere after the kill.
      const opened = opens(hub)
      for (const t of hub.state.tasks) {
        const byTask = opened.filter((o) => o.task === t.id)
        const last = byTask.at(-1)
        assert.isDefined(last, `task ${t.id} was opened`)
        assert.notStrictEqual(last!.host, VICTIM, `task ${t.id} finished on a live host`)
        const earlier = byTask.slice(0, -1)
        for (const o of earlier) assert.strictEqual(o.host, VICTIM, `task ${t.id}: only the killed host loses a task`)
        if (earlier.length > 0) assert.isAbove(last!.seq, killedAt, `task ${t.id} reran after the kill`)
        const owner = hub.state.hosts.find((h) => h.id === t.hostId)?.name
        assert.strictEqual(owner, last!.host, `task ${t.id} ended on the host that opened it last`)
      }
      for (const id of lost) {
        const byTask = opened.filter((o) => o.task === id)
        assert.strictEqual(byTask[0]!.host, VICTIM)
        assert.isAbove(byTask.length, 1, `task ${id} of the killed host ran again`)
      }
      assert.isTrue(
        hub.state.schedulerLog.some((l) => l.msg === "Freeing task from unresponsive host" && l.hostId === victimId && lost.includes(l.taskId ?? -1)),
        "the hub freed the killed host's tasks (HostTimeout)"
      )
      // No report was refused: nobody closed or failed a task it did not own.
      const reports = hub.state.calls.filter((c) => c.method === "host.closeTask" || c.method === "host.failTask")
      assert.deepStrictEqual(reports.filter((c) => c.fault !== undefined).map((c) => [c.method, c.params[0], c.fault!.faultString]), [])
      assert.strictEqual(reports.length, hub.state.tasks.length, "one report per task")

      // Spread: every host ran part of the burst; the aarch64 sleeps only on the aarch64 host.
      for (const spec of HOSTS) {
        assert.isAtLeast(opened.filter((o) => o.host === spec.name).length, 2, `${spec.name} took its share`)
      }
      for (const id of arm) assert.deepStrictEqual(opened.filter((o) => o.task === id).map((o) => o.host), ["sched-c"])

      for (const spec of HOSTS.filter((h) => h.name !== VICTIM)) {
        const child = children.get(spec.name)!
        child.kill("SIGTERM")
        assert.strictEqual(yield* exitOf(child, 20_000), 0, outputOf(child))
      }
    })), 240_000)
})
