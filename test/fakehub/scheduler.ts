/**
 * The hub's task scheduler (`kojihub/scheduler.py:TaskScheduler`, koji-protocol.md §4.10): runs
 * from `host.getTasks` when the caller has nothing assigned (at most once per RunInterval), marks
 * silent hosts not ready, assigns FREE tasks by bin, capacity, maxjobs and refusals to the
 * lowest-ranked host, and frees tasks whose assignment or host timed out.
 */
import { Double, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import type { CallContext } from "./context.js"
import { asNumber } from "./context.js"
import { freeTask, lockTask } from "./tasks.js"
import { type TaskRow, TaskState } from "./state.js"

/** `log_both`: a scheduler log message. */
export const logScheduler = (ctx: CallContext, msg: string, taskId: number | null, hostId: number | null): void => {
  ctx.db.schedulerLog.push({ ts: ctx.now, msg, taskId, hostId })
  ctx.dml()
}

/** `set_refusal(host, task, soft, by_host, msg)`: upsert by (task, host). */
export const setRefusal = (
  ctx: CallContext, hostId: number, taskId: number, soft: boolean, byHost: boolean, msg: string
): void => {
  const existing = ctx.db.refusals.find((r) => r.taskId === taskId && r.hostId === hostId)
  if (existing !== undefined) {
    existing.soft = soft
    existing.byHost = byHost
    existing.msg = msg
    existing.ts = ctx.now
  } else {
    ctx.db.refusals.push({ id: ctx.db.nextval("refusal"), taskId, hostId, soft, byHost, msg, ts: ctx.now })
  }
  logScheduler(ctx, `Host refused task: ${msg}`, taskId, hostId)
}

const taskBrief = (t: TaskRow): XmlRpcValue => ({
  arch: t.arch, channel_id: t.channelId, create_ts: new Double(t.createTs), host_id: t.hostId, id: t.id,
  method: t.method, priority: t.priority, state: t.state
})

const byPriority = (a: TaskRow, b: TaskRow): number => a.priority - b.priority || a.createTs - b.createTs || a.id - b.id

/** `get_tasks_for_host(hostID, retry)`: the host's ASSIGNED tasks; runs the scheduler when none. */
export const getTasksForHost = (ctx: CallContext, hostId: number, retry: boolean): XmlRpcValue => {
  const query = (): Array<TaskRow> =>
    [...ctx.db.tasks.values()].filter((t) => t.hostId === hostId && t.state === TaskState.ASSIGNED).sort(byPriority)
  let tasks = query()
  if (tasks.length === 0 && retry) {
    runScheduler(ctx, false)
    tasks = query()
  }
  return tasks.map(taskBrief)
}

interface SchedHost {
  readonly id: number
  readonly name: string
  readonly updateTs: number | null
  readonly taskLoad: number
  ready: boolean
  readonly capacity: number
  readonly maxjobs: number
  load: number
  ntasks: number
  demand: number
  rank: number
}

const checkTs = (ctx: CallContext): boolean => {
  const last = ctx.db.lastSchedulerRun ?? 0
  const delta = ctx.now - last
  let ret = true
  if (delta < 0) ret = false
  else if (delta < ctx.settings.runInterval) return false
  ctx.db.lastSchedulerRun = ctx.now
  ctx.dml()
  return ret
}

/** `TaskScheduler.run(force)`: true when it ran. */
export const runScheduler = (ctx: CallContext, force: boolean): boolean => {
  if (!force && !checkTs(ctx)) return false
  const s = ctx.settings
  const all = [...ctx.db.tasks.values()]
  const activeTasks = all
    .filter((t) => (t.state === TaskState.ASSIGNED || t.state === TaskState.OPEN) && t.hostId !== null)
    .map((t) => ({ id: t.id, state: t.state, hostId: t.hostId, waiting: t.waiting, weight: t.weight }))
  const freeTasks = all.filter((t) => t.state === TaskState.FREE).sort(byPriority).slice(0, 1000)

  const hosts = new Map<number, SchedHost>()
  const byBin = new Map<string, Array<SchedHost>>()
  for (const h of ctx.db.hosts.values()) {
    if (!h.enabled) continue
    const maxjobs = asNumber(h.data?.["maxjobs"] ?? undefined)
    const sh: SchedHost = {
      id: h.id, name: h.name, updateTs: h.updateTs, taskLoad: h.taskLoad, ready: h.ready, capacity: h.capacity,
      maxjobs: maxjobs !== undefined && maxjobs !== 0 ? maxjobs : s.maxJobs, load: 0, ntasks: 0, demand: 0, rank: 0
    }
    hosts.set(h.id, sh)
    for (const c of h.channels) {
      if (ctx.db.channels.get(c)?.enabled !== true) continue
      for (const arch of [...h.arches.split(/\s+/).filter((x) => x !== ""), "noarch"]) {
        const bin = `${c}:${arch}`
        const list = byBin.get(bin) ?? []
        list.push(sh)
        byBin.set(bin, list)
      }
    }
  }

  // check_hosts: a ready host that has not checked in within ReadyTimeout is marked not ready.
  for (const h of hosts.values()) {
    if (!h.ready) continue
    if (h.updateTs === null || ctx.now - h.updateTs > s.readyTimeout) {
      h.ready = false
      ctx.db.hosts.get(h.id)!.ready = false
      logScheduler(ctx, "Marking host not ready", null, h.id)
    }
  }

  // do_schedule
  for (const t of activeTasks) {
    const h = hosts.get(t.hostId!)
    if (h === undefined) continue
    if (t.waiting !== true) h.load += t.weight
    h.ntasks += 1
  }
  const refusals = new Map<number, Set<number>>()
  const cutoff = ctx.now - s.softRefusalTimeout
  const keep = ctx.db.refusals.filter((r) => {
    const st = ctx.db.tasks.get(r.taskId)?.state
    const live = st === TaskState.FREE || st === TaskState.OPEN || st === TaskState.ASSIGNED
    return !((r.soft && r.ts < cutoff) || !live)
  })
  if (keep.length !== ctx.db.refusals.length) {
    ctx.db.refusals = keep
    ctx.dml()
  }
  for (const r of keep) {
    const set = refusals.get(r.taskId) ?? new Set<number>()
    set.add(r.hostId)
    refusals.set(r.taskId, set)
  }
  const options = new Map<number, Array<SchedHost>>()
  for (const t of freeTasks) {
    const minAvail = Math.max(0, t.weight - s.capacityOvercommit)
    const refused = refusals.get(t.id)
    const opts = (byBin.get(`${t.channelId}:${t.arch}`) ?? []).filter((h) =>
      h.ready && h.ntasks < h.maxjobs && h.capacity - h.load > minAvail && !(refused?.has(h.id) ?? false))
    options.set(t.id, opts)
    for (const h of opts) h.demand += t.weight / opts.length
  }
  const maxDemand = [...hosts.values()].reduce((acc, h) => acc + h.demand, 0)
  if (maxDemand > 0) for (const h of hosts.values()) h.demand = h.demand / maxDemand
  const rank = (h: SchedHost): void => {
    h.rank = h.load + h.ntasks + h.demand
  }
  for (const h of hosts.values()) rank(h)
  for (const t of freeTasks) {
    const minAvail = Math.max(0, t.weight - s.capacityOvercommit)
    const opts = [...(options.get(t.id) ?? [])].sort((a, b) => a.rank - b.rank)
    for (const h of opts) {
      if (h.capacity - h.load > minAvail && h.ntasks < h.maxjobs) {
        if (assignTask(ctx, t.id, h.id, false, false)) {
          h.load += t.weight
          h.ntasks += 1
          rank(h)
        }
        break
      }
    }
  }

  // check_active_tasks
  const runsByTask = new Map<number, Array<number>>()
  for (const r of ctx.db.runs) {
    if (!r.active) continue
    const list = runsByTask.get(r.taskId) ?? []
    list.push(r.createTs)
    runsByTask.set(r.taskId, list)
  }
  for (const t of activeTasks) {
    const h = hosts.get(t.hostId!)
    if (h === undefined) continue
    const runs = runsByTask.get(t.id)
    if (runs === undefined || runs.length === 0) continue
    const first = Math.min(...runs)
    if (t.state === TaskState.ASSIGNED) {
      if (ctx.now - first > s.assignTimeout) {
        if (h.updateTs !== null && h.updateTs > first) setRefusal(ctx, h.id, t.id, true, false, "assignment timeout")
        logScheduler(ctx, "Task assignment timeout", t.id, h.id)
        freeTask(ctx, t.id)
      }
    } else if (t.state === TaskState.OPEN) {
      const age = ctx.now - (h.updateTs ?? first)
      if (age > s.hostTimeout) {
        logScheduler(ctx, "Freeing task from unresponsive host", t.id, h.id)
        freeTask(ctx, t.id)
      }
    }
  }
  for (const r of ctx.db.runs) {
    if (!r.active) continue
    const st = ctx.db.tasks.get(r.taskId)?.state
    if (st !== TaskState.OPEN && st !== TaskState.ASSIGNED) {
      r.active = false
      ctx.dml()
    }
  }
  return true
}

/** `TaskScheduler.assign(task, host, force, override)`: ASSIGNED plus a run row unless override. */
export const assignTask = (ctx: CallContext, taskId: number, hostId: number, force: boolean, override: boolean): boolean => {
  if (!lockTask(ctx, taskId, hostId, "ASSIGNED", force)) {
    logScheduler(ctx, "Assignment failed", taskId, hostId)
    return false
  }
  logScheduler(ctx, override ? "Assigning task (override)" : "Assigning task", taskId, hostId)
  for (const r of ctx.db.runs) if (r.taskId === taskId && r.active) r.active = false
  if (!override) ctx.db.runs.push({ id: ctx.db.nextval("run"), taskId, hostId, active: true, createTs: ctx.now })
  ctx.dml()
  return true
}
