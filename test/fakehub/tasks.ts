/**
 * Tasks as `kojihub.Task`, `make_task`, `Host` and the task parts of `HostExports` and
 * `RootExports` handle them (koji-protocol.md §4.3–4.7, §4.11): the state machine
 * FREE/ASSIGNED/OPEN/CLOSED/FAILED/CANCELED, ownership, results, subtasks and the wait protocol.
 */
import { Either } from "effect"
import { ActionNotAllowed, GenericError, ParameterError, isFault } from "../../src/koji/faults.js"
import { Double, decodeResponse, encodeMethodCall, isStruct, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type CallContext, asList, asNumber, dbl, isoTime, pythonError, pyStr, toInt, truthy } from "./context.js"
import { getTasksForHost, setRefusal } from "./scheduler.js"
import { assertLogin, verifiedHost } from "./sessions.js"
import { type TaskRow, TaskState } from "./state.js"

const noRows = (): GenericError => new GenericError({ faultString: "query returned no rows" })

const taskId = (v: XmlRpcValue | undefined): number => {
  const id = toInt(v)
  if (id === undefined) throw new ParameterError({ faultString: `Invalid type for value '${pyStr(v ?? null)}': ${typeof v}` })
  return id
}

/** A task row as `Task.getInfo` returns it (request decoded when asked for). */
export const taskInfo = (t: TaskRow, request: boolean): XmlRpcStruct => {
  const info: Record<string, XmlRpcValue> = {
    arch: t.arch,
    awaited: t.awaited,
    channel_id: t.channelId,
    completion_time: isoTime(t.completionTs),
    completion_ts: dbl(t.completionTs),
    create_time: isoTime(t.createTs),
    create_ts: dbl(t.createTs),
    host_id: t.hostId,
    id: t.id,
    label: t.label,
    method: t.method,
    owner: t.owner,
    parent: t.parent,
    priority: t.priority,
    start_time: isoTime(t.startTs),
    start_ts: dbl(t.startTs),
    state: t.state,
    waiting: t.waiting,
    weight: new Double(t.weight)
  }
  if (request) info["request"] = t.params
  return info
}

/** `Task.verifyHost(host_id)`: OPEN and owned by the host. */
export const verifyHost = (ctx: CallContext, id: number, hostId: number | undefined): boolean => {
  if (hostId === undefined) return false
  const t = ctx.db.tasks.get(id)
  if (t === undefined) throw new GenericError({ faultString: `No such task: ${id}` })
  return t.state === TaskState.OPEN && t.hostId === hostId
}

/** `Task.assertHost(host_id)`: ActionNotAllowed "host N does not own task M". */
export const assertHost = (ctx: CallContext, id: number, hostId: number): void => {
  if (!verifyHost(ctx, id, hostId)) {
    throw new ActionNotAllowed({ faultString: `host ${hostId} does not own task ${id}` })
  }
}

const verifyOwner = (ctx: CallContext, id: number): boolean => {
  const userId = ctx.session.userId
  if (userId === undefined) return false
  const t = ctx.db.tasks.get(id)
  if (t === undefined) throw new GenericError({ faultString: `No such task: ${id}` })
  return t.owner === userId
}

const callerHostId = (ctx: CallContext): number | undefined =>
  ctx.session.loggedIn ? ctx.db.hostByUser(ctx.session.userId)?.id : undefined

/** `Task.lock(host_id, newstate)`: FREE, or ASSIGNED to this host, → newstate. */
export const lockTask = (ctx: CallContext, id: number, hostId: number, newstate: "OPEN" | "ASSIGNED", force = false): boolean => {
  const t = ctx.db.tasks.get(id)
  if (t === undefined) throw noRows()
  if (!force) {
    if (t.state === TaskState.FREE) {
      if (t.hostId !== null) return false
    } else if (t.state === TaskState.ASSIGNED) {
      if (t.hostId === null || t.hostId !== hostId) return false
      if (newstate === "ASSIGNED") return true
    } else {
      return false
    }
  }
  t.state = TaskState[newstate]
  t.hostId = hostId
  if (newstate === "OPEN") t.startTs = ctx.now
  ctx.dml()
  return true
}

/** `Task.free()`. */
export const freeTask = (ctx: CallContext, id: number): void => {
  const t = ctx.db.tasks.get(id)
  if (t === undefined) throw noRows()
  if (t.state === TaskState.CLOSED || t.state === TaskState.CANCELED || t.state === TaskState.FAILED) {
    const name = ["FREE", "OPEN", "CLOSED", "CANCELED", "ASSIGNED", "FAILED"][t.state]
    throw new GenericError({ faultString: `Cannot free task ${id}, state is ${name}` })
  }
  t.state = TaskState.FREE
  t.hostId = null
  ctx.dml()
}

/**
 * What else a cancel touches, registered by the modules that own it (the builds module cancels
 * a BUILDING build of the task, as kojihub's `Task.cancel` does); kept as hooks so this module
 * does not import theirs.
 */
export const taskCancelHooks: Array<(ctx: CallContext, taskId: number) => void> = []

/** `Task.cancel(recurse)`: false when the task had already finished. */
export const cancelTask = (ctx: CallContext, id: number, recurse: boolean): boolean => {
  const t = ctx.db.tasks.get(id)
  if (t === undefined) throw noRows()
  if (t.state === TaskState.CANCELED) return true
  if (t.state === TaskState.CLOSED || t.state === TaskState.FAILED) return false
  t.state = TaskState.CANCELED
  t.completionTs = ctx.now
  ctx.dml()
  for (const hook of taskCancelHooks) hook(ctx, id)
  if (recurse) cancelChildren(ctx, id)
  return true
}

/** `Task.cancelChildren()`. */
export const cancelChildren = (ctx: CallContext, id: number): void => {
  for (const c of [...ctx.db.tasks.values()]) if (c.parent === id) cancelTask(ctx, c.id, true)
}

const decodeDoc = (doc: string): Either.Either<XmlRpcValue, unknown> => {
  const text = doc.slice(0, 10).includes("<?xml") ? doc : Buffer.from(doc, "base64").toString("utf8")
  return decodeResponse(text, { preserveDoubles: true })
}

/** `Task.getResult(raise_fault)`. */
export const taskResult = (ctx: CallContext, id: number, raiseFault: boolean): XmlRpcValue => {
  const t = ctx.db.tasks.get(id)
  if (t === undefined) throw new GenericError({ faultString: "No such task" })
  if (t.state === TaskState.CANCELED) throw new GenericError({ faultString: `Task ${id} is canceled` })
  if (t.state !== TaskState.CLOSED && t.state !== TaskState.FAILED) {
    throw new GenericError({ faultString: `Task ${id} is not finished` })
  }
  const r = decodeDoc(t.result ?? "")
  if (Either.isRight(r)) return r.right
  const e = r.left
  if (isFault(e)) {
    if (raiseFault) throw e
    return { faultCode: e.faultCode, faultString: e.faultString }
  }
  throw pythonError("xml.parsers.expat.ExpatError", e instanceof Error ? e.message : String(e))
}

/** `Task._close(result, state)`; for CLOSED the hub's post-callback re-reads the result, so a bad document faults. */
const closeTask = (ctx: CallContext, id: number, result: XmlRpcValue, state: number): void => {
  const t = ctx.db.tasks.get(id)!
  t.result = pyStr(result)
  t.state = state
  t.completionTs = ctx.now
  ctx.dml()
  if (state === TaskState.CLOSED) taskResult(ctx, id, true)
}

/** Options of `make_task`. */
export interface MakeTaskOpts {
  parent?: XmlRpcValue
  label?: XmlRpcValue
  owner?: XmlRpcValue
  channel?: XmlRpcValue
  arch?: XmlRpcValue
  priority?: XmlRpcValue
  assign?: XmlRpcValue
}

/** `make_task(method, arglist, **opts)` with the stock channel policy (req, parent, default). */
export const makeTask = (ctx: CallContext, method: string, arglist: ReadonlyArray<XmlRpcValue>, opts: MakeTaskOpts): number => {
  const parentId = opts.parent === undefined || opts.parent === null ? null : taskId(opts.parent)
  let priority = opts.priority === undefined ? undefined : toInt(opts.priority)
  let arch = opts.arch === undefined ? undefined : pyStr(opts.arch)
  if (arch !== undefined && !/^[a-zA-Z0-9_-]+( [a-zA-Z0-9_-]+)*$/.test(arch)) {
    throw new GenericError({ faultString: `Invalid architecture: ${arch}` })
  }
  let assign: number | undefined
  if (opts.assign !== undefined && opts.assign !== null) {
    const h = typeof opts.assign === "number" ? ctx.db.hosts.get(opts.assign) : ctx.db.hostByName(pyStr(opts.assign))
    if (h === undefined) throw new GenericError({ faultString: `No such host: ${pyStr(opts.assign)}` })
    assign = h.id
  }
  let owner: number
  let channelId: number
  let label: string | null = null
  if (parentId !== null) {
    const p = ctx.db.tasks.get(parentId)
    if (p === undefined) throw new GenericError({ faultString: `Invalid parent task: ${parentId}` })
    if (p.state !== TaskState.OPEN) throw new GenericError({ faultString: `Parent task (id ${parentId}) is not open` })
    priority ??= p.priority - 1
    arch ??= p.arch
    owner = p.owner
    channelId = p.channelId
    label = opts.label === undefined || opts.label === null ? null : pyStr(opts.label)
  } else {
    priority ??= 20
    arch ??= "noarch"
    if (opts.owner !== undefined && opts.owner !== null) {
      owner = typeof opts.owner === "number" ? opts.owner : ctx.db.userByName(pyStr(opts.owner))?.id ?? -1
      if (owner === -1) throw new GenericError({ faultString: `No such user: ${pyStr(opts.owner)}` })
    } else {
      if (!ctx.session.loggedIn) throw new GenericError({ faultString: "task must have an owner" })
      owner = ctx.session.userId!
    }
    channelId = ctx.db.channel("default")!.id
  }
  if (opts.channel !== undefined && opts.channel !== null) {
    const c = ctx.db.channel(typeof opts.channel === "number" ? opts.channel : pyStr(opts.channel))
    if (c === undefined) throw new GenericError({ faultString: `No such channel: ${pyStr(opts.channel)}` })
    if (!c.enabled) throw new GenericError({ faultString: `Channel ${c.name} is disabled.` })
    channelId = c.id
  }
  const id = ctx.db.nextval("task")
  ctx.db.tasks.set(id, {
    id, state: assign === undefined ? TaskState.FREE : TaskState.ASSIGNED, createTs: ctx.now, startTs: null,
    completionTs: null, channelId, hostId: assign ?? null, parent: parentId, label, waiting: null, awaited: null,
    owner, method, arch, priority: priority ?? 20, weight: 1.0, request: encodeMethodCall(method, arglist),
    params: arglist, result: null
  })
  ctx.dml()
  return id
}

/** `koji.encode_args(*args, **kwargs)`. */
const encodeArgs = (args: ReadonlyArray<XmlRpcValue>, kw: XmlRpcStruct): ReadonlyArray<XmlRpcValue> =>
  Object.keys(kw).length === 0 ? args : [...args, { ...kw, __starstar: true }]

const waitCheck = (ctx: CallContext, parent: number): [Array<number>, Array<number>] => {
  const finished: Array<number> = []
  const unfinished: Array<number> = []
  for (const t of ctx.db.tasks.values()) {
    if (t.parent !== parent || t.awaited !== true) continue
    const done = t.state === TaskState.CANCELED || t.state === TaskState.CLOSED || t.state === TaskState.FAILED
    ;(done ? finished : unfinished).push(t.id)
  }
  return [finished.sort((a, b) => a - b), unfinished.sort((a, b) => a - b)]
}

type Args = Readonly<Record<string, XmlRpcValue>>

/** The `host.*` task methods (HostExports), each after `Host().verify()`. */
export const hostTaskMethods = {
  getID: (ctx: CallContext): XmlRpcValue => verifiedHost(ctx).id,

  updateHost: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const load = asNumber(a["task_load"]) ?? (typeof a["task_load"] === "string" ? Number(a["task_load"]) : NaN)
    if (Number.isNaN(load)) throw pythonError("ValueError", `could not convert string to float: ${pyStr(a["task_load"] ?? null)}`)
    host.taskLoad = load
    host.ready = truthy(a["ready"])
    host.updateTs = ctx.now
    ctx.dml()
    if (a["data"] !== null && a["data"] !== undefined) setHostData(ctx, host.id, a["data"])
    return null
  },

  setHostData: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    let data = a["hostdata"] ?? null
    if (typeof data === "string") {
      try {
        // JSON values are a subset of XML-RPC values.
        data = JSON.parse(data) as XmlRpcValue
      } catch (e) {
        throw pythonError("json.decoder.JSONDecodeError", e instanceof Error ? e.message : String(e))
      }
    }
    setHostData(ctx, host.id, data)
    return null
  },

  getHost: (ctx: CallContext): XmlRpcStruct => {
    const h = verifiedHost(ctx)
    return {
      arches: h.arches, capacity: new Double(h.capacity), comment: h.comment, description: h.description,
      enabled: h.enabled, id: h.id, name: h.name, ready: h.ready, task_load: new Double(h.taskLoad),
      update_ts: dbl(h.updateTs), user_id: h.userId
    }
  },

  isEnabled: (ctx: CallContext): XmlRpcValue => verifiedHost(ctx).enabled,

  getTasks: (ctx: CallContext): XmlRpcValue => getTasksForHost(ctx, verifiedHost(ctx).id, true),

  refuseTask: (ctx: CallContext, a: Args): XmlRpcValue => {
    const soft = truthy(a["soft"])
    const msg = pyStr(a["msg"] ?? "")
    const host = verifiedHost(ctx)
    const id = taskId(a["task_id"])
    const t = ctx.db.tasks.get(id)
    if (t === undefined) throw noRows()
    if (t.hostId !== host.id) return null
    setRefusal(ctx, host.id, id, soft, true, msg)
    freeTask(ctx, id)
    return null
  },

  openTask: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const id = taskId(a["task_id"])
    if (!lockTask(ctx, id, host.id, "OPEN")) return null
    const t = ctx.db.tasks.get(id)!
    return { ...taskInfo(t, false), request: t.request }
  },

  closeTask: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const id = taskId(a["task_id"])
    assertHost(ctx, id, host.id)
    closeTask(ctx, id, a["response"] ?? null, TaskState.CLOSED)
    return null
  },

  failTask: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const id = taskId(a["task_id"])
    assertHost(ctx, id, host.id)
    closeTask(ctx, id, a["response"] ?? null, TaskState.FAILED)
    return null
  },

  freeTasks: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const tasks = asList(a["tasks"])
    if (tasks === undefined) throw pythonError("TypeError", `'${typeof a["tasks"]}' object is not iterable`)
    for (const v of tasks) {
      const id = taskId(v)
      if (!verifyHost(ctx, id, host.id)) continue
      freeTask(ctx, id)
    }
    return null
  },

  setTaskWeight: (ctx: CallContext, a: Args): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const id = taskId(a["task_id"])
    assertHost(ctx, id, host.id)
    const w = asNumber(a["weight"])
    if (w === undefined) throw new ParameterError({ faultString: `Invalid type for value '${pyStr(a["weight"] ?? null)}': ${typeof a["weight"]}` })
    ctx.db.tasks.get(id)!.weight = w
    ctx.dml()
    return null
  },

  getHostTasks: (ctx: CallContext): XmlRpcValue => {
    const host = verifiedHost(ctx)
    const out: Array<XmlRpcValue> = []
    for (const t of ctx.db.tasks.values()) {
      if (t.hostId !== host.id || t.state !== TaskState.OPEN) continue
      const row: Record<string, XmlRpcValue> = { id: t.id, waiting: t.waiting, weight: new Double(t.weight) }
      if (t.waiting === true && waitCheck(ctx, t.id)[0].length > 0) row["alert"] = true
      out.push(row)
    }
    return out
  },

  taskSetWait: (ctx: CallContext, a: Args): XmlRpcValue => {
    verifiedHost(ctx)
    const parent = taskId(a["parent"])
    const tasksV = a["tasks"] ?? null
    const tasks = asList(tasksV) ?? null
    if (tasksV !== null && tasks === null) {
      throw new ParameterError({ faultString: `Invalid type for value '${pyStr(tasksV)}': ${typeof tasksV}` })
    }
    const p = ctx.db.tasks.get(parent)
    if (p !== undefined) p.waiting = true
    ctx.dml()
    const ids = tasks === null ? null : tasks.map(taskId)
    for (const t of ctx.db.tasks.values()) {
      if (t.parent !== parent) continue
      if (ids === null) t.awaited = true
      else if (ids.length > 0) {
        if (ids.includes(t.id)) t.awaited = true
        else if (t.awaited === true) t.awaited = false
      }
    }
    return null
  },

  taskWait: (ctx: CallContext, a: Args): XmlRpcValue => {
    verifiedHost(ctx)
    const parent = taskId(a["parent"])
    const [finished, unfinished] = waitCheck(ctx, parent)
    for (const id of finished) ctx.db.tasks.get(id)!.awaited = false
    if (finished.length > 0) ctx.dml()
    return [finished, unfinished]
  },

  taskWaitResults: (ctx: CallContext, a: Args): XmlRpcValue => {
    verifiedHost(ctx)
    const parent = taskId(a["parent"])
    const canfailV = a["canfail"] ?? null
    const canfail = (asList(canfailV) ?? []).map(taskId)
    const p = ctx.db.tasks.get(parent)
    if (p !== undefined) p.waiting = false
    for (const t of ctx.db.tasks.values()) if (t.parent === parent) t.awaited = false
    ctx.dml()
    let ids: ReadonlyArray<number>
    const tasks = a["tasks"] ?? null
    const list = asList(tasks)
    if (tasks === null) {
      ids = [...ctx.db.tasks.values()]
        .filter((t) => t.parent === parent && (t.state === TaskState.CLOSED || t.state === TaskState.FAILED || t.state === TaskState.CANCELED))
        .map((t) => t.id)
    } else {
      if (list === undefined) throw pythonError("TypeError", `'${typeof tasks}' object is not iterable`)
      ids = list.map(taskId)
    }
    const results: Array<XmlRpcValue> = []
    for (const id of ids) {
      const raise = !canfail.includes(id)
      try {
        results.push([id, taskResult(ctx, id, raise)])
      } catch (e) {
        if (!raise && e instanceof GenericError && ctx.db.tasks.get(id)?.state === TaskState.CANCELED) {
          results.push([id, { faultCode: e.faultCode, faultString: e.faultString }])
          continue
        }
        throw e
      }
    }
    return results
  },

  subtask: (ctx: CallContext, a: Args, extra: XmlRpcStruct): XmlRpcValue =>
    subtask(ctx, a["method"] ?? null, a["arglist"] ?? null, a["parent"] ?? null, extra),

  subtask2: (ctx: CallContext, a: Args, extra: XmlRpcStruct, rest: ReadonlyArray<XmlRpcValue>): XmlRpcValue => {
    const taskopts = a["_HostExports__taskopts"] ?? null
    if (!isStruct(taskopts)) throw pythonError("TypeError", "argument after ** must be a mapping")
    return subtask(ctx, a["_HostExports__method"] ?? null, encodeArgs(rest, extra), a["_HostExports__parent"] ?? null, taskopts)
  },

  getLoadData: (ctx: CallContext): XmlRpcValue => {
    const h = verifiedHost(ctx)
    const host = { ...hostTaskMethods.getHost(ctx), channels: h.channels }
    return [[host], getTasksForHost(ctx, h.id, true)]
  }
}

const setHostData = (ctx: CallContext, hostId: number, data: XmlRpcValue): void => {
  if (!isStruct(data)) throw new ParameterError({ faultString: "Host data should be a dictionary" })
  ctx.db.hosts.get(hostId)!.data = data
  ctx.dml()
}

/** `HostExports.subtask(method, arglist, parent, **opts)` (§4.6). */
const subtask = (
  ctx: CallContext, method: XmlRpcValue, arglist: XmlRpcValue, parentV: XmlRpcValue, opts: XmlRpcStruct
): XmlRpcValue => {
  const host = verifiedHost(ctx)
  const parent = taskId(parentV)
  assertHost(ctx, parent, host.id)
  if ("owner" in opts) throw new ActionNotAllowed({ faultString: "The owner option is not allowed here" })
  if ("label" in opts) {
    for (const t of ctx.db.tasks.values()) {
      if (t.parent === parent && t.label === opts["label"]) return t.id
    }
  }
  let args = asList(arglist)
  if (args === undefined) throw pythonError("TypeError", `'${typeof arglist}' object is not iterable`)
  const kw = opts["kwargs"]
  if (kw !== undefined) args = encodeArgs(args, isStruct(kw) ? kw : {})
  const mopts: MakeTaskOpts = { parent }
  for (const k of ["label", "channel", "arch", "priority", "assign"] as const) {
    if (opts[k] !== undefined) mopts[k] = opts[k]
  }
  return makeTask(ctx, pyStr(method), args, mopts)
}

/** The task methods of RootExports. */
export const rootTaskMethods = {
  getTaskInfo: (ctx: CallContext, a: Args): XmlRpcValue => {
    const request = truthy(a["request"])
    const strict = truthy(a["strict"])
    const one = (v: XmlRpcValue): XmlRpcValue => {
      const t = ctx.db.tasks.get(taskId(v))
      if (t === undefined) {
        if (strict) throw noRows()
        return null
      }
      return taskInfo(t, request)
    }
    const ids = a["task_id"] ?? null
    const list = asList(ids)
    return list !== undefined ? list.map(one) : one(ids)
  },

  getTaskRequest: (ctx: CallContext, a: Args): XmlRpcValue => {
    const t = ctx.db.tasks.get(taskId(a["taskId"]))
    if (t === undefined) throw noRows()
    return t.params
  },

  getTaskResult: (ctx: CallContext, a: Args): XmlRpcValue => taskResult(ctx, taskId(a["taskId"]), truthy(a["raise_fault"])),

  getTaskChildren: (ctx: CallContext, a: Args): XmlRpcValue => {
    const id = taskId(a["task_id"])
    if (truthy(a["strict"]) && !ctx.db.tasks.has(id)) throw noRows()
    return [...ctx.db.tasks.values()].filter((t) => t.parent === id).map((t) => taskInfo(t, truthy(a["request"])))
  },

  taskFinished: (ctx: CallContext, a: Args): XmlRpcValue => {
    const t = ctx.db.tasks.get(taskId(a["taskId"]))
    if (t === undefined) throw noRows()
    return t.state === TaskState.CLOSED || t.state === TaskState.CANCELED || t.state === TaskState.FAILED
  },

  cancelTask: (ctx: CallContext, a: Args): XmlRpcValue => {
    const id = taskId(a["task_id"])
    if (!verifyOwner(ctx, id) && !verifyHost(ctx, id, callerHostId(ctx))) {
      if (!(ctx.session.loggedIn && ctx.db.users.get(ctx.session.userId!)?.admin === true)) {
        throw new ActionNotAllowed({ faultString: "Cannot cancel task, not owner" })
      }
    }
    cancelTask(ctx, id, truthy(a["recurse"]))
    return null
  },

  cancelTaskChildren: (ctx: CallContext, a: Args): XmlRpcValue => {
    assertLogin(ctx)
    const id = taskId(a["task_id"])
    if (!verifyOwner(ctx, id) && !verifyHost(ctx, id, callerHostId(ctx))) {
      if (ctx.db.users.get(ctx.session.userId!)?.admin !== true) {
        throw new ActionNotAllowed({ faultString: "Cannot cancel task, not owner" })
      }
    }
    cancelChildren(ctx, id)
    return null
  }
}
