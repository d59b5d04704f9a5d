/**
 * The fake hub's method registry: each exported name with the Python signature of the function
 * the real hub registers under it (for ParameterError texts) and its implementation.
 */
import type { XmlRpcStruct, XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { type CallContext, truthy } from "./context.js"
import { newrepoMethods } from "./newrepo.js"
import * as sessions from "./sessions.js"
import type { Param, Signature } from "./signature.js"
import { hostTaskMethods, rootTaskMethods } from "./tasks.js"
import { checkUpload, uploadFile } from "./uploads.js"
import { buildrootMethods } from "./buildroots.js"
import { buildMethods } from "./builds.js"
import { hostMethods } from "./hosts.js"
import { signedMethods } from "./signed.js"

/** A registered method. */
export interface MethodDef {
  readonly sig: Signature
  /**
   * The hub reaches the real function through a `*args, **opts` wrapper (auth.login…): a bad
   * call is then a TypeError one frame down, which the hub reports as fault 1, not 1019.
   */
  readonly wrapped?: boolean
  readonly run: (
    ctx: CallContext, args: Readonly<Record<string, XmlRpcValue>>, extra: XmlRpcStruct, rest: ReadonlyArray<XmlRpcValue>
  ) => XmlRpcValue
}

const root = (name: string, params: ReadonlyArray<Param>, more: Partial<Signature> = {}): Signature => ({
  qualname: `RootExports.${name}`, method: true, params, ...more
})
const host = (name: string, params: ReadonlyArray<Param>, more: Partial<Signature> = {}): Signature => ({
  qualname: `HostExports.${name}`, method: true, params, ...more
})
const fn = (qualname: string, params: ReadonlyArray<Param>): Signature => ({ qualname, method: false, params })
const sessionMethod = (name: string, params: ReadonlyArray<Param>): Signature => ({
  qualname: `Session.${name}`, method: true, params
})

/** Every method the fake hub knows, by its XML-RPC name. */
export const methods: ReadonlyMap<string, MethodDef> = new Map<string, MethodDef>([
  ["login", {
    sig: sessionMethod("login", [["user"], ["password"], ["opts", null], ["renew", false], ["exclusive", false]]),
    wrapped: true,
    run: (ctx, a) => sessions.login(ctx, a["user"]!, a["password"]!, a["opts"]!, a["renew"]!, a["exclusive"]!)
  }],
  ["sslLogin", {
    sig: sessionMethod("sslLogin", [["proxyuser", null], ["proxyauthtype", null], ["renew", false], ["exclusive", null]]),
    wrapped: true,
    run: (ctx, a) => sessions.sslLogin(ctx, a["proxyuser"]!, a["renew"]!, a["exclusive"]!)
  }],
  ["logout", { sig: fn("logout", [["session_id", null]]), run: (ctx, a) => (sessions.logout(ctx, a["session_id"]!), null) }],
  ["subsession", { sig: fn("subsession", []), run: (ctx) => sessions.subsession(ctx) }],
  ["logoutChild", { sig: fn("logoutChild", [["session_id"]]), run: (ctx, a) => (sessions.logoutChild(ctx, a["session_id"]!), null) }],
  ["exclusiveSession", {
    sig: sessionMethod("makeExclusive", [["force", false]]),
    wrapped: true,
    run: (ctx, a) => (sessions.makeExclusive(ctx, truthy(a["force"])), null)
  }],
  ["sharedSession", { sig: fn("sharedSession", []), run: (ctx) => (sessions.makeShared(ctx), null) }],

  ["echo", { sig: root("echo", [], { varargs: true }), run: (_ctx, _a, _x, rest) => rest }],
  ["getAPIVersion", { sig: root("getAPIVersion", []), run: () => 1 }],
  ["getKojiVersion", { sig: root("getKojiVersion", []), run: () => "1.35.3" }],
  ["getSessionInfo", {
    sig: root("getSessionInfo", [["details", false], ["user_id", null]]),
    run: (ctx, a) => sessions.getSessionInfo(ctx, a["details"]!)
  }],
  ["getLoggedInUser", { sig: root("getLoggedInUser", []), run: (ctx) => sessions.getLoggedInUser(ctx) }],
  ["checkUpload", {
    sig: root("checkUpload", [["path"], ["name"], ["verify", null], ["tail", null], ["volume", null]]),
    run: (ctx, a) => checkUpload(ctx, a["path"]!, a["name"]!, a["verify"]!, a["tail"]!, a["volume"]!)
  }],
  ["uploadFile", {
    sig: root("uploadFile", [["path"], ["name"], ["size"], ["md5sum"], ["offset"], ["data"], ["volume", null], ["checksum", null]]),
    run: (ctx, a) => uploadFile(ctx, a)
  }],
  ["getTaskInfo", {
    sig: root("getTaskInfo", [["task_id"], ["request", false], ["strict", false]]),
    run: (ctx, a) => rootTaskMethods.getTaskInfo(ctx, a)
  }],
  ["getTaskRequest", { sig: root("getTaskRequest", [["taskId"]]), run: (ctx, a) => rootTaskMethods.getTaskRequest(ctx, a) }],
  ["getTaskResult", {
    sig: root("getTaskResult", [["taskId"], ["raise_fault", true]]),
    run: (ctx, a) => rootTaskMethods.getTaskResult(ctx, a)
  }],
  ["getTaskChildren", {
    sig: root("getTaskChildren", [["task_id"], ["request", false], ["strict", false]]),
    run: (ctx, a) => rootTaskMethods.getTaskChildren(ctx, a)
  }],
  ["taskFinished", { sig: root("taskFinished", [["taskId"]]), run: (ctx, a) => rootTaskMethods.taskFinished(ctx, a) }],
  ["cancelTask", {
    sig: root("cancelTask", [["task_id"], ["recurse", true]]),
    run: (ctx, a) => rootTaskMethods.cancelTask(ctx, a)
  }],
  ["cancelTaskChildren", {
    sig: root("cancelTaskChildren", [["task_id"]]),
    run: (ctx, a) => rootTaskMethods.cancelTaskChildren(ctx, a)
  }],

  ["host.getID", { sig: host("getID", []), run: (ctx) => hostTaskMethods.getID(ctx) }],
  ["host.updateHost", {
    sig: host("updateHost", [["task_load"], ["ready"], ["data", null]]),
    run: (ctx, a) => hostTaskMethods.updateHost(ctx, a)
  }],
  ["host.setHostData", { sig: host("setHostData", [["hostdata"]]), run: (ctx, a) => hostTaskMethods.setHostData(ctx, a) }],
  ["host.getHost", { sig: host("getHost", []), run: (ctx) => hostTaskMethods.getHost(ctx) }],
  ["host.isEnabled", { sig: host("isEnabled", []), run: (ctx) => hostTaskMethods.isEnabled(ctx) }],
  ["host.getLoadData", { sig: host("getLoadData", []), run: (ctx) => hostTaskMethods.getLoadData(ctx) }],
  ["host.getTasks", { sig: host("getTasks", []), run: (ctx) => hostTaskMethods.getTasks(ctx) }],
  ["host.refuseTask", {
    sig: host("refuseTask", [["task_id"], ["soft", true], ["msg", ""]]),
    run: (ctx, a) => hostTaskMethods.refuseTask(ctx, a)
  }],
  ["host.openTask", { sig: host("openTask", [["task_id"]]), run: (ctx, a) => hostTaskMethods.openTask(ctx, a) }],
  ["host.closeTask", {
    sig: host("closeTask", [["task_id"], ["response"]]),
    run: (ctx, a) => hostTaskMethods.closeTask(ctx, a)
  }],
  ["host.failTask", {
    sig: host("failTask", [["task_id"], ["response"]]),
    run: (ctx, a) => hostTaskMethods.failTask(ctx, a)
  }],
  ["host.freeTasks", { sig: host("freeTasks", [["tasks"]]), run: (ctx, a) => hostTaskMethods.freeTasks(ctx, a) }],
  ["host.setTaskWeight", {
    sig: host("setTaskWeight", [["task_id"], ["weight"]]),
    run: (ctx, a) => hostTaskMethods.setTaskWeight(ctx, a)
  }],
  ["host.getHostTasks", { sig: host("getHostTasks", []), run: (ctx) => hostTaskMethods.getHostTasks(ctx) }],
  ["host.taskSetWait", {
    sig: host("taskSetWait", [["parent"], ["tasks"]]),
    run: (ctx, a) => hostTaskMethods.taskSetWait(ctx, a)
  }],
  ["host.taskWait", { sig: host("taskWait", [["parent"]]), run: (ctx, a) => hostTaskMethods.taskWait(ctx, a) }],
  ["host.taskWaitResults", {
    sig: host("taskWaitResults", [["parent"], ["tasks"], ["canfail", null]]),
    run: (ctx, a) => hostTaskMethods.taskWaitResults(ctx, a)
  }],
  ["host.subtask", {
    sig: host("subtask", [["method"], ["arglist"], ["parent"]], { varkw: true }),
    run: (ctx, a, extra) => hostTaskMethods.subtask(ctx, a, extra)
  }],
  ["host.subtask2", {
    sig: host("subtask2", [["_HostExports__parent"], ["_HostExports__taskopts"], ["_HostExports__method"]], {
      varargs: true, varkw: true
    }),
    run: (ctx, a, extra, rest) => hostTaskMethods.subtask2(ctx, a, extra, rest)
  }],
  ...buildrootMethods,
  ...newrepoMethods,
  ...buildMethods,
  ...hostMethods,
  ...signedMethods
])
