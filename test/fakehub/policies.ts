/**
 * Hub policies for the fake hub (`kojihub.check_policy`, `eval_policy`): tests set a rule per
 * policy name; unset policies follow the hub's defaults (`_default_policies`: `build_rpm` allows,
 * `build_from_srpm` / `build_from_repo_id` / `build_from_scm` allow admins only, others are
 * missing and so allowed, as `MissingPolicyOk`). A denial through `host.assertPolicy` is
 * ActionNotAllowed (1004) "policy violation (name): reason".
 */
import { ActionNotAllowed } from "../../src/koji/faults.js"
import { isStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import type { CallContext } from "./context.js"
import type { MethodDef } from "./methods.js"
import { verifiedHost } from "./sessions.js"
import type { Signature } from "./signature.js"
import { buildWorld, type BuildWorld, type PolicyRule, worldOf } from "./targets.js"

/** Sets the rule of one policy for the hub at `topdir` ("allow", "deny reason", or a function). */
export const setPolicy = (topdir: string, name: string, rule: PolicyRule): void => {
  buildWorld(topdir).policies.set(name, rule)
}

const ADMIN_ONLY = ["build_from_srpm", "build_from_repo_id", "build_from_scm"]

const isAdmin = (ctx: CallContext, w: BuildWorld, userId: XmlRpcValue | undefined): boolean => {
  if (typeof userId !== "number") return false
  return ctx.db.users.get(userId)?.admin === true || (w.userPerms.get(userId)?.has("admin") ?? false)
}

/** The action a policy gives for `data` (null when no rule covers it). */
export const evalPolicy = (ctx: CallContext, name: string, data: Readonly<Record<string, XmlRpcValue>>): string | null => {
  const w = worldOf(ctx)
  const rule = w.policies.get(name)
  if (rule !== undefined) return typeof rule === "string" ? rule : rule(data)
  if (name === "build_rpm") return "allow"
  if (ADMIN_ONLY.includes(name)) {
    const userId = data["user_id"] ?? ctx.session.userId
    return isAdmin(ctx, w, userId) ? "allow" : "deny Only admin can do this via default policy"
  }
  return "allow"
}

/** `check_policy(name, data, default, strict)` → [allowed, reason]; strict raises ActionNotAllowed. */
export const checkPolicy = (
  ctx: CallContext, name: string, data: XmlRpcValue | undefined, dflt: string, strict: boolean
): readonly [boolean, string] => {
  const d = isStruct(data) ? data : {}
  const action = evalPolicy(ctx, name, d)
  let result: string
  let reason: string
  if (action === null) {
    result = dflt
    reason = "not covered by policy"
  } else {
    const words = action.trim().split(/\s+/)
    result = (words[0] ?? "").toLowerCase()
    reason = action.trim().slice((words[0] ?? "").length).trim()
  }
  const allowed = result === "allow"
  if (!allowed && result !== "deny") reason = "error in policy"
  worldOf(ctx).policyLog.push({ name, data: d, allowed })
  if (allowed) return [true, reason]
  if (!strict) return [false, reason]
  throw new ActionNotAllowed({ faultString: `policy violation (${name})${reason === "" ? "" : `: ${reason}`}` })
}

const host = (name: string, params: Signature["params"]): Signature => ({ qualname: `HostExports.${name}`, method: true, params })

/** host.checkPolicy / host.assertPolicy / host.evalPolicy and the root evalPolicy. */
export const policyMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["host.checkPolicy", {
    sig: host("checkPolicy", [["name"], ["data"], ["default", "deny"], ["strict", false]]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      return [...checkPolicy(ctx, String(a["name"]), a["data"], String(a["default"] ?? "deny"), a["strict"] === true)]
    }
  }],
  ["host.assertPolicy", {
    sig: host("assertPolicy", [["name"], ["data"], ["default", "deny"]]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      checkPolicy(ctx, String(a["name"]), a["data"], String(a["default"] ?? "deny"), true)
      return null
    }
  }],
  ["host.evalPolicy", {
    sig: host("evalPolicy", [["name"], ["data"]]),
    run: (ctx, a) => {
      verifiedHost(ctx)
      return evalPolicy(ctx, String(a["name"]), isStruct(a["data"]) ? a["data"] : {})
    }
  }],
  ["evalPolicy", {
    sig: { qualname: "RootExports.evalPolicy", method: true, params: [["name"], ["data"]] },
    run: (ctx, a) => evalPolicy(ctx, String(a["name"]), isStruct(a["data"]) ? a["data"] : {})
  }]
]
