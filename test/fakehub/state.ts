/**
 * The fake hub's tables (a tiny in-memory stand-in for koji's database), with the snapshot /
 * restore that gives each call the hub's transaction semantics: a call that faults is rolled
 * back to its last commit (koji-protocol.md §1.6, kojixmlrpc `application`).
 */
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"

export { TaskState, taskStateName } from "../../src/koji/states.js"

/** koji.AUTHTYPES. */
export const AuthType = { NORMAL: 0, KERBEROS: 1, SSL: 2, GSSAPI: 3 } as const

/** A row of `users`. */
export interface UserRow {
  readonly id: number
  readonly name: string
  password: string | null
  /** 0 NORMAL, 1 BLOCKED. */
  status: number
  admin: boolean
}

/** A row of `sessions`. */
export interface SessionRow {
  readonly id: number
  readonly userId: number
  key: string
  readonly hostip: string
  readonly authtype: number
  readonly master: number | null
  exclusive: boolean
  expired: boolean
  closed: boolean
  /** The last callnum stored (committed) for this session. */
  callnum: number | null
  readonly startTs: number
  updateTs: number
  renewTs: number | null
}

/** A row of `host` joined with `host_config` and `scheduler_host_data`. */
export interface HostRow {
  readonly id: number
  readonly userId: number
  readonly name: string
  arches: string
  capacity: number
  enabled: boolean
  ready: boolean
  taskLoad: number
  updateTs: number | null
  description: string | null
  comment: string | null
  channels: ReadonlyArray<number>
  /** What updateHost(data=)/setHostData stored (scheduler_host_data). */
  data: { readonly [key: string]: XmlRpcValue } | null
}

/** A row of `channels`. */
export interface ChannelRow {
  readonly id: number
  readonly name: string
  enabled: boolean
}

/** A row of `task`. */
export interface TaskRow {
  readonly id: number
  state: number
  readonly createTs: number
  startTs: number | null
  completionTs: number | null
  readonly channelId: number
  hostId: number | null
  readonly parent: number | null
  readonly label: string | null
  waiting: boolean | null
  awaited: boolean | null
  readonly owner: number
  readonly method: string
  readonly arch: string
  priority: number
  weight: number
  /** The request as koji stores it: a methodCall document. */
  readonly request: string
  /** The decoded request params. */
  readonly params: ReadonlyArray<XmlRpcValue>
  /** The methodResponse document closeTask/failTask stored. */
  result: string | null
}

/** A row of `scheduler_task_refusals`. */
export interface RefusalRow {
  readonly id: number
  readonly taskId: number
  readonly hostId: number
  soft: boolean
  byHost: boolean
  msg: string
  ts: number
}

/** A row of `scheduler_task_runs`. */
export interface RunRow {
  readonly id: number
  readonly taskId: number
  readonly hostId: number
  active: boolean
  readonly createTs: number
}

/** A row of `scheduler_log_messages`. */
export interface SchedulerLogRow {
  readonly ts: number
  readonly msg: string
  readonly taskId: number | null
  readonly hostId: number | null
}

interface Tables {
  users: Map<number, UserRow>
  sessions: Map<number, SessionRow>
  hosts: Map<number, HostRow>
  channels: Map<number, ChannelRow>
  tasks: Map<number, TaskRow>
  refusals: Array<RefusalRow>
  runs: Array<RunRow>
  schedulerLog: Array<SchedulerLogRow>
  lastSchedulerRun: number | null
  seq: { session: number; task: number; user: number; refusal: number; run: number }
}

/** An opaque copy of the tables to roll back to. */
export interface Savepoint {
  readonly tables: Tables
}

const copyMap = <K, V extends object>(m: Map<K, V>): Map<K, V> => {
  const out = new Map<K, V>()
  for (const [k, v] of m) out.set(k, { ...v })
  return out
}

const copyTables = (t: Tables): Tables => ({
  users: copyMap(t.users),
  sessions: copyMap(t.sessions),
  hosts: copyMap(t.hosts),
  channels: copyMap(t.channels),
  tasks: copyMap(t.tasks),
  refusals: t.refusals.map((r) => ({ ...r })),
  runs: t.runs.map((r) => ({ ...r })),
  schedulerLog: t.schedulerLog.slice(),
  lastSchedulerRun: t.lastSchedulerRun,
  seq: { ...t.seq }
})

/** The fake hub's database. Rows are mutable; `begin`/`commit`/`rollback` give transactions. */
export class Db {
  private t: Tables = {
    users: new Map(),
    sessions: new Map(),
    hosts: new Map(),
    channels: new Map(),
    tasks: new Map(),
    refusals: [],
    runs: [],
    schedulerLog: [],
    lastSchedulerRun: null,
    seq: { session: 0, task: 0, user: 0, refusal: 0, run: 0 }
  }
  private saved: Tables | undefined

  get users(): Map<number, UserRow> { return this.t.users }
  get sessions(): Map<number, SessionRow> { return this.t.sessions }
  get hosts(): Map<number, HostRow> { return this.t.hosts }
  get channels(): Map<number, ChannelRow> { return this.t.channels }
  get tasks(): Map<number, TaskRow> { return this.t.tasks }
  get refusals(): Array<RefusalRow> { return this.t.refusals }
  set refusals(r: Array<RefusalRow>) { this.t.refusals = r }
  get runs(): Array<RunRow> { return this.t.runs }
  get schedulerLog(): Array<SchedulerLogRow> { return this.t.schedulerLog }
  get lastSchedulerRun(): number | null { return this.t.lastSchedulerRun }
  set lastSchedulerRun(ts: number | null) { this.t.lastSchedulerRun = ts }

  /** Next value of a sequence (ids start at 1). */
  nextval(name: keyof Tables["seq"]): number {
    this.t.seq[name] += 1
    return this.t.seq[name]
  }

  /** Starts a transaction: remembers the current state. */
  begin(): void {
    this.saved = copyTables(this.t)
  }
  /** Commits: the current state becomes the rollback point. */
  commit(): void {
    if (this.saved !== undefined) this.saved = copyTables(this.t)
  }
  /** Rolls back to the last commit (or `begin`). */
  rollback(): void {
    if (this.saved !== undefined) this.t = this.saved
    this.saved = undefined
  }
  /** A savepoint inside the transaction (multiCall runs each call in one). */
  savepoint(): Savepoint {
    return { tables: copyTables(this.t) }
  }
  /** Rolls back to a savepoint. */
  rollbackTo(savepoint: Savepoint): void {
    this.t = copyTables(savepoint.tables)
  }
  /** Ends the transaction, keeping the current state. */
  end(): void {
    this.saved = undefined
  }

  /** The host row whose user is `userId`. */
  hostByUser(userId: number | undefined): HostRow | undefined {
    if (userId === undefined) return undefined
    for (const h of this.t.hosts.values()) if (h.userId === userId) return h
    return undefined
  }
  /** The host row called `name`. */
  hostByName(name: string): HostRow | undefined {
    for (const h of this.t.hosts.values()) if (h.name === name) return h
    return undefined
  }
  /** The user row called `name`. */
  userByName(name: string): UserRow | undefined {
    for (const u of this.t.users.values()) if (u.name === name) return u
    return undefined
  }
  /** The channel with this id or name. */
  channel(info: number | string): ChannelRow | undefined {
    if (typeof info === "number") return this.t.channels.get(info)
    for (const c of this.t.channels.values()) if (c.name === info) return c
    return undefined
  }
}
