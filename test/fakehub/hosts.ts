/**
 * Host reads of the fake hub: `listHosts` as `RootExports.listHosts` (kojihub.py) filters and
 * shapes the `host`/`host_config` rows — what kojid's RestartHostsTask asks for.
 */
import { GenericError, ParameterError } from "../../src/koji/faults.js"
import { Double, isStruct, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type CallContext, asList, dbl, pyRepr, pyStr, pythonError, toInt, truthy } from "./context.js"
import type { MethodDef } from "./methods.js"
import type { Signature } from "./signature.js"
import type { HostRow } from "./state.js"

const root = (name: string, params: Signature["params"]): Signature => ({ qualname: `RootExports.${name}`, method: true, params })

/** `name_or_id_clause` + `lookup_name('channels', info, strict=True)`: the channel's id. */
const strictChannelId = (ctx: CallContext, info: XmlRpcValue | undefined): number => {
  let key: XmlRpcValue | undefined = info
  if (isStruct(info)) {
    if ("id" in info) {
      const id = toInt(info["id"])
      if (id === undefined) throw new ParameterError({ faultString: `Invalid name or id value: ${pyRepr(info)}` })
      key = id
    } else if ("name" in info) {
      key = info["name"]
    } else {
      throw new ParameterError({ faultString: `Invalid name or id value: ${pyRepr(info)}` })
    }
  }
  if (typeof key !== "number" && typeof key !== "string") {
    throw new ParameterError({ faultString: `Invalid name or id value: ${pyRepr(key ?? null)}` })
  }
  const c = ctx.db.channel(key)
  if (c === undefined) throw new GenericError({ faultString: `No such entry in table channels: ${pyStr(key)}` })
  return c.id
}

/** `get_user(info, strict=True)['id']`. */
const strictUserId = (ctx: CallContext, info: XmlRpcValue | undefined): number => {
  const u = typeof info === "number" ? ctx.db.users.get(info) : typeof info === "string" ? ctx.db.userByName(info) : undefined
  if (u === undefined) throw new GenericError({ faultString: `No such user: ${pyRepr(info ?? null)}` })
  return u.id
}

/**
 * The hub's `arches ~ '\m(a|b)\M'`: any listed arch as a whole word of the host's arches. The
 * names go into the pattern unescaped, as the hub does.
 */
const archMatcher = (arches: XmlRpcValue): ((h: HostRow) => boolean) => {
  if (!truthy(arches)) throw new GenericError({ faultString: "arches option cannot be empty" })
  const list = asList(arches) ?? [arches]
  let re: RegExp
  try {
    re = new RegExp(`(?<![A-Za-z0-9_])(${list.map(pyStr).join("|")})(?![A-Za-z0-9_])`)
  } catch (e) {
    throw pythonError("psycopg2.errors.InvalidRegularExpression", String(e))
  }
  return (h) => re.test(h.arches)
}

/** One row as the hub's QueryProcessor returns it (its field list, in its order). */
const hostRow = (h: HostRow): XmlRpcStruct => ({
  id: h.id,
  user_id: h.userId,
  name: h.name,
  update_ts: dbl(h.updateTs),
  ready: h.ready,
  task_load: new Double(h.taskLoad),
  arches: h.arches,
  capacity: new Double(h.capacity),
  description: h.description,
  comment: h.comment,
  enabled: h.enabled
})

const sortKey = (v: XmlRpcValue | undefined): number | string =>
  v instanceof Double ? v.value : typeof v === "number" || typeof v === "string" ? v : v === true ? 1 : v === false ? 0 : ""

/** QueryProcessor's `order`, `offset`, `limit` and `countOnly` options. */
const applyQueryOpts = (rows: Array<XmlRpcStruct>, opts: XmlRpcValue | undefined): XmlRpcValue => {
  if (!isStruct(opts)) return rows
  const order = opts["order"]
  if (typeof order === "string" && order !== "") {
    const keys = order.split(",").map((k) => k.trim()).filter((k) => k !== "")
    rows.sort((a, b) => {
      for (const k of keys) {
        const desc = k.startsWith("-")
        const field = desc ? k.slice(1) : k
        const x = sortKey(a[field])
        const y = sortKey(b[field])
        if (x < y) return desc ? 1 : -1
        if (x > y) return desc ? -1 : 1
      }
      return 0
    })
  }
  const offset = toInt(opts["offset"]) ?? 0
  const limit = toInt(opts["limit"])
  const page = rows.slice(offset, limit === undefined ? undefined : offset + limit)
  return truthy(opts["countOnly"]) ? page.length : page
}

/** `RootExports.listHosts(arches=None, channelID=None, ready=None, enabled=None, userID=None, queryOpts=None)`. */
export const listHosts = (ctx: CallContext, a: Readonly<Record<string, XmlRpcValue>>): XmlRpcValue => {
  const filters: Array<(h: HostRow) => boolean> = []
  if (a["arches"] !== null && a["arches"] !== undefined) filters.push(archMatcher(a["arches"]))
  if (a["channelID"] !== null && a["channelID"] !== undefined) {
    const channelId = strictChannelId(ctx, a["channelID"])
    filters.push((h) => h.channels.includes(channelId))
  }
  if (a["ready"] !== null && a["ready"] !== undefined) {
    const ready = truthy(a["ready"])
    filters.push((h) => h.ready === ready)
  }
  if (a["enabled"] !== null && a["enabled"] !== undefined) {
    const enabled = truthy(a["enabled"])
    filters.push((h) => h.enabled === enabled)
  }
  if (a["userID"] !== null && a["userID"] !== undefined) {
    const userId = strictUserId(ctx, a["userID"])
    filters.push((h) => h.userId === userId)
  }
  const rows = [...ctx.db.hosts.values()]
    .filter((h) => filters.every((f) => f(h)))
    .sort((x, y) => x.id - y.id)
    .map(hostRow)
  return applyQueryOpts(rows, a["queryOpts"])
}

/** The host read methods, spread into methods.ts. */
export const hostMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["listHosts", {
    sig: root("listHosts", [["arches", null], ["channelID", null], ["ready", null], ["enabled", null], ["userID", null], ["queryOpts", null]]),
    run: (ctx, a) => listHosts(ctx, a)
  }]
]
