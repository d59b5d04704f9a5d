/**
 * The task handler interface (DESIGN.md §3, koji-protocol.md §4.4–4.6): a handler names the
 * methods it serves, kojid's weight, a parameter signature bound the way Python binds
 * `handler(*args, **kwargs)`, and a `run` effect given a `TaskContext` (its own hub subsession,
 * workdir, and the subtask/wait helpers).
 */
import { Duration, Effect, Either, ParseResult, Schema, type Scope } from "effect"
import type { BuildrootHub } from "../buildroot/hubSide.js"
import type { Fault } from "../koji/faults.js"
import type { TaskError } from "./errors.js"
import type { HubFiles } from "../koji/paths.js"
import { ParameterError } from "../koji/faults.js"
import type { HubError } from "../hub/HubError.js"
import type { Session } from "../hub/KojiHub.js"
import type * as S from "../hub/schemas.js"
import { isStruct, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"

// ---------------------------------------------------------------------------------------------
// Parameters

/** One handler parameter: how to decode it, and its default when it may be left out. */
export interface Param<A> {
  readonly decode: (u: unknown) => Either.Either<A, ParseResult.ParseError>
  readonly hasDefault: boolean
  readonly default: () => A
}

/** A required parameter decoded with `schema`. */
export const required = <A, I>(schema: Schema.Schema<A, I, never>): Param<A> => ({
  decode: Schema.decodeUnknownEither(schema),
  hasDefault: false,
  default: () => {
    throw new Error("required parameter has no default")
  }
})

/** A parameter with a Python default (also used when the caller passes nil where kojid would). */
export const optional = <A, I>(schema: Schema.Schema<A, I, never>, dflt: A): Param<A> => ({
  decode: Schema.decodeUnknownEither(schema),
  hasDefault: true,
  default: () => dflt
})

/** Any XML-RPC value, not checked (Python's untyped parameter). */
export const AnyValue: Schema.Schema<XmlRpcValue> = Schema.declare(
  (u: unknown): u is XmlRpcValue => u !== undefined,
  { identifier: "XmlRpcValue" }
)

/** An XML-RPC int (Python int; booleans are ints in Python but kojid never sends them for counts). */
export const Int: Schema.Schema<number> = Schema.Int

/** An XML-RPC number: int or double (Python `time.sleep` accepts both). */
export const Num: Schema.Schema<number> = Schema.Number

type ParamType<P> = P extends Param<infer A> ? A : never

/** The bound arguments of a handler: its named parameters plus `*args` and `**kwargs` leftovers. */
export type Bound<F extends Record<string, Param<unknown>>> = { readonly [K in keyof F]: ParamType<F[K]> } & {
  readonly rest: ReadonlyArray<XmlRpcValue>
  readonly kw: XmlRpcStruct
}

/** A Python-style signature: ordered named parameters, optional `*args`/`**kwargs`. */
export interface Signature<P> {
  /** Python's name of the function in messages, e.g. `SleepTask.handler` (as kojid reports it). */
  readonly name: string
  readonly names: ReadonlyArray<string>
  /** Binds a task request (the params array, trailing `__starstar` struct = keywords). */
  readonly bind: (request: ReadonlyArray<XmlRpcValue>) => Either.Either<P, ParameterError>
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`

const quoteList = (names: ReadonlyArray<string>): string => {
  const q = names.map((n) => `'${n}'`)
  if (q.length <= 1) return q.join("")
  if (q.length === 2) return `${q[0]} and ${q[1]}`
  return `${q.slice(0, -1).join(", ")}, and ${q[q.length - 1]}`
}

/** Splits a request into positional args and keyword args (koji `decode_args`, §1.3). */
export const splitRequest = (
  request: ReadonlyArray<XmlRpcValue>
): { readonly args: ReadonlyArray<XmlRpcValue>; readonly kwargs: XmlRpcStruct } => {
  const last = request.length > 0 ? request[request.length - 1] : undefined
  if (isStruct(last) && last["__starstar"] !== undefined && last["__starstar"] !== false && last["__starstar"] !== null) {
    const kw: Record<string, XmlRpcValue> = {}
    for (const [k, v] of Object.entries(last)) if (k !== "__starstar") kw[k] = v
    return { args: request.slice(0, -1), kwargs: kw }
  }
  return { args: request, kwargs: {} }
}

/**
 * A signature binding positional and keyword arguments as Python does, with messages worded as
 * Python's TypeError (kojid turns those into ParameterError 1019, koji-protocol.md §13), then
 * decoding each value with its Schema; a value that does not decode names the parameter.
 */
export const signature = <const F extends Record<string, Param<unknown>>>(
  name: string,
  fields: F,
  options: { readonly varargs?: boolean; readonly varkw?: boolean } = {}
): Signature<Bound<F>> => {
  const names = Object.keys(fields)
  const specs = names.map((n) => fields[n]!)
  const nRequired = specs.filter((s) => !s.hasDefault).length
  const bind = (request: ReadonlyArray<XmlRpcValue>): Either.Either<Bound<F>, ParameterError> => {
    const fail = (msg: string) => Either.left(new ParameterError({ faultString: `${name}() ${msg}` }))
    const { args, kwargs } = splitRequest(request)
    if (args.length > names.length && options.varargs !== true) {
      // Python counts `self` in both numbers.
      const max = names.length + 1
      const min = nRequired + 1
      const takes = min === max ? plural(max, "positional argument") : `from ${min} to ${max} positional arguments`
      const given = args.length + 1
      return fail(`takes ${takes} but ${given} ${given === 1 ? "was" : "were"} given`)
    }
    const raw = new Map<string, XmlRpcValue>()
    names.forEach((n, i) => {
      if (i < args.length) raw.set(n, args[i]!)
    })
    const kw: Record<string, XmlRpcValue> = {}
    for (const [k, v] of Object.entries(kwargs)) {
      if (names.includes(k)) {
        if (raw.has(k)) return fail(`got multiple values for argument '${k}'`)
        raw.set(k, v)
      } else if (options.varkw === true) {
        kw[k] = v
      } else {
        return fail(`got an unexpected keyword argument '${k}'`)
      }
    }
    const missing = names.filter((n, i) => !raw.has(n) && !specs[i]!.hasDefault)
    if (missing.length > 0) {
      return fail(`missing ${plural(missing.length, "required positional argument")}: ${quoteList(missing)}`)
    }
    const out: Record<string, unknown> = {}
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!
      const spec = specs[i]!
      if (!raw.has(n)) {
        out[n] = spec.default()
        continue
      }
      const decoded = spec.decode(raw.get(n))
      if (Either.isLeft(decoded)) {
        const why = ParseResult.TreeFormatter.formatErrorSync(decoded.left).split("\n").slice(-1)[0]?.trim()
        return fail(`parameter '${n}': ${why ?? "invalid value"} (got ${describe(raw.get(n))})`)
      }
      out[n] = decoded.right
    }
    out["rest"] = args.slice(names.length)
    out["kw"] = kw
    // The object was filled key by key from `fields`, so it has exactly the Bound<F> shape.
    return Either.right(out as Bound<F>)
  }
  return { name, names, bind }
}

const describe = (v: XmlRpcValue | undefined): string => {
  try {
    const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x))
    return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s
  } catch {
    return String(v)
  }
}

// ---------------------------------------------------------------------------------------------
// The context a running task gets

/** Options of `host.subtask` (§4.6); `label` makes the call idempotent. */
export interface SubtaskOptions {
  readonly label?: string
  readonly arch?: string
  readonly priority?: number
  readonly channel?: string
  readonly assign?: number | string
  readonly kwargs?: XmlRpcStruct
  /** Other `host.subtask` keywords passed through as given (dependantTask's `task[2]`). */
  readonly extra?: XmlRpcStruct
}

/** Options of `wait` (koji.tasks.BaseTaskHandler.wait). */
export interface WaitOptions {
  /** Wait for every subtask (default: return when any has finished). */
  readonly all?: boolean
  /** With `all`: the first failed subtask not in `canfail` cancels the others and fails the wait. */
  readonly failany?: boolean
  /** Subtasks allowed to fail; their results are `{faultCode, faultString}` structs. */
  readonly canfail?: ReadonlyArray<number>
  /** Give up (cancelling the children) after this long. */
  readonly timeout?: Duration.DurationInput
}

/** What a foreground handler (shutdown, restart, restartVerify) may ask of the daemon. */
export interface DaemonControl {
  /** Epoch seconds of the daemon's session start (`getSessionInfo().start_ts`). */
  readonly startTs: number
  /** Stop taking tasks and restart once none run (kojid's `restart_pending`). */
  readonly requestRestart: Effect.Effect<void>
}

/** Everything a running task has: ids, its workdir, its own session, and the subtask helpers. */
export interface TaskContext {
  readonly taskId: number
  readonly method: string
  readonly hostId: number
  /** `<workdir>/tasks/<id % 10000>/<id>`, created before `run` and removed after. */
  readonly workdir: string
  /** The task's own subsession (the main session for foreground handlers). */
  readonly session: Session
  /** Where koji's file tree is read (kojid.conf `topurl`/`topdir`). */
  readonly files: HubFiles
  /** The hub side of this task's buildroots: kojid's BuildRoot calls on this task's session. */
  readonly buildrootHub: BuildrootHub
  readonly daemon: DaemonControl
  /** `host.subtask(method, args, parent=this task, **opts)` → the child's task id. */
  readonly subtask: (
    method: string,
    args: ReadonlyArray<XmlRpcValue>,
    options?: SubtaskOptions
  ) => Effect.Effect<number, Fault | HubError>
  /** Waits for subtasks (null = all children) per §4.6 and returns their results by task id. */
  readonly wait: (
    subtasks: number | ReadonlyArray<number> | null,
    options?: WaitOptions
  ) => Effect.Effect<ReadonlyMap<number, XmlRpcValue>, Fault | HubError>
  /** `host.taskWaitResults(parent, tasks, canfail=)` alone: the results of finished subtasks. */
  readonly waitResults: (
    subtasks: ReadonlyArray<number> | null,
    canfail?: ReadonlyArray<number> | null
  ) => Effect.Effect<ReadonlyMap<number, XmlRpcValue>, Fault | HubError>
}

/** The `host.getHost()` row as checkHost sees it. */
export type HostInfo = S.HostInfo

/** A task handler with its parameters already bound (one per running task). */
export interface BoundTask {
  /** Runs in the task's scope: containers and files acquired there go when the task ends. */
  readonly run: (ctx: TaskContext) => Effect.Effect<XmlRpcValue, TaskError, Scope.Scope>
  /** kojid's `checkHost(hostdata)`, run on the main session before `host.openTask`. */
  readonly checkHost: ((host: HostInfo, session: Session) => Effect.Effect<boolean, TaskError>) | undefined
}

/** A registered handler: the shape the TaskManager works with. */
export interface TaskHandler {
  /** kojid's class name, for logs. */
  readonly name: string
  readonly methods: ReadonlyArray<string>
  /** kojid's `_taskWeight`, or a function of the raw request (kojid's `weight()` overrides). */
  readonly weight: (request: ReadonlyArray<XmlRpcValue>) => number
  /** kojid's `Foreground`: runs on the main session, before the loop goes on. */
  readonly foreground: boolean
  /** True when the handler has kojid's `checkHost` (a request that does not bind then fails the check). */
  readonly hasCheckHost: boolean
  /** True when checkHost or the weight needs the request before `host.openTask`. */
  readonly needsRequestBeforeOpen: boolean
  /** Binds the request; a ParameterError fails the task with 1019 (kojid does not refuse it). */
  readonly bind: (request: ReadonlyArray<XmlRpcValue>) => Either.Either<BoundTask, ParameterError>
}

/** Defines a handler from a signature and a run function over the bound parameters. */
export const defineHandler = <P>(def: {
  readonly name: string
  readonly methods: ReadonlyArray<string>
  readonly weight: number | ((request: ReadonlyArray<XmlRpcValue>) => number)
  readonly foreground?: boolean
  readonly signature: Signature<P>
  readonly run: (params: P, ctx: TaskContext) => Effect.Effect<XmlRpcValue, TaskError, Scope.Scope>
  readonly checkHost?: (params: P, host: HostInfo, session: Session) => Effect.Effect<boolean, TaskError>
}): TaskHandler => {
  const weight = def.weight
  const checkHost = def.checkHost
  return {
    name: def.name,
    methods: def.methods,
    foreground: def.foreground ?? false,
    hasCheckHost: checkHost !== undefined,
    needsRequestBeforeOpen: checkHost !== undefined || typeof weight !== "number",
    weight: typeof weight === "number" ? () => weight : weight,
    bind: (request) =>
      Either.map(def.signature.bind(request), (params): BoundTask => ({
        run: (ctx) => def.run(params, ctx),
        checkHost: checkHost === undefined ? undefined : (host, session) => checkHost(params, host, session)
      }))
  }
}

