/**
 * Python argument binding with CPython's TypeError messages, so a call that does not fit a hub
 * function gets the same ParameterError (1019) text as the real hub (`koji.util.call_with_argcheck`,
 * koji-protocol.md §1.3), e.g. "HostExports.openTask() missing 1 required positional argument: 'task_id'".
 */
import type { XmlRpcStruct, XmlRpcValue } from "../../src/hub/xmlrpc.js"

/** One parameter: a name, and a default when it has one. */
export type Param = readonly [name: string] | readonly [name: string, defaultValue: XmlRpcValue]

/** A Python function's signature. */
export interface Signature {
  /** `co_qualname`, e.g. "HostExports.openTask" or "logout". */
  readonly qualname: string
  /** A bound method: `self` counts in the positional numbers of the messages. */
  readonly method: boolean
  readonly params: ReadonlyArray<Param>
  readonly varargs?: boolean
  readonly varkw?: boolean
}

/** The arguments bound to names, as the function body sees them. */
export interface Bound {
  readonly args: Readonly<Record<string, XmlRpcValue>>
  /** `*args` beyond the named parameters. */
  readonly rest: ReadonlyArray<XmlRpcValue>
  /** `**kwargs` that match no parameter. */
  readonly extra: XmlRpcStruct
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`

const nameList = (names: ReadonlyArray<string>): string => {
  const q = names.map((n) => `'${n}'`)
  if (q.length === 1) return q[0]!
  if (q.length === 2) return `${q[0]} and ${q[1]}`
  return `${q.slice(0, -1).join(", ")}, and ${q[q.length - 1]}`
}

/** Binds positional and keyword arguments; a string is the TypeError message. */
export const bindArgs = (
  sig: Signature,
  args: ReadonlyArray<XmlRpcValue>,
  kwargs: XmlRpcStruct
): Bound | string => {
  const names = sig.params.map((p) => p[0])
  const values: Record<string, XmlRpcValue> = {}
  const isSet = new Set<string>()
  const n = Math.min(args.length, names.length)
  for (let i = 0; i < n; i++) {
    values[names[i]!] = args[i]!
    isSet.add(names[i]!)
  }
  const rest = sig.varargs ? args.slice(names.length) : []
  const extra: Record<string, XmlRpcValue> = {}
  for (const key of Object.keys(kwargs)) {
    if (names.includes(key)) {
      if (isSet.has(key)) return `${sig.qualname}() got multiple values for argument '${key}'`
      values[key] = kwargs[key]!
      isSet.add(key)
    } else if (sig.varkw) {
      extra[key] = kwargs[key]!
    } else {
      return `${sig.qualname}() got an unexpected keyword argument '${key}'`
    }
  }
  const self = sig.method ? 1 : 0
  if (args.length > names.length && !sig.varargs) {
    const required = sig.params.filter((p) => p.length === 1).length + self
    const total = names.length + self
    const takes = required === total ? plural(total, "positional argument") : `from ${required} to ${total} positional arguments`
    const given = args.length + self
    return `${sig.qualname}() takes ${takes} but ${given} ${given === 1 ? "was" : "were"} given`
  }
  const missing = sig.params.filter((p) => p.length === 1 && !isSet.has(p[0])).map((p) => p[0])
  if (missing.length > 0) {
    return `${sig.qualname}() missing ${plural(missing.length, "required positional argument")}: ${nameList(missing)}`
  }
  for (const p of sig.params) if (p.length === 2 && !isSet.has(p[0])) values[p[0]] = p[1]
  return { args: values, rest, extra }
}
