/**
 * Repo requests of the fake hub (`kojihub/repos.py` `request_repo`, `check_repo_request`;
 * koji-protocol.md §5.4): `repo.request` returns a READY repo of the tag at or after min_event,
 * else an active matching request, else a new one; `repo.checkRequest` reports it. Kojira's
 * part — making the repo — is the test's, with `fulfilRequest` / `failRequest`.
 */
import { GenericError, ParameterError } from "../../src/koji/faults.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { addRepo } from "./buildroots.js"
import { assertLogin } from "./sessions.js"
import { type CallContext, isoTime, toInt, truthy } from "./context.js"
import type { MethodDef } from "./methods.js"
import type { Signature } from "./signature.js"
import { buildWorld, type BuildWorld, type RepoRequestRow, strictTag, tagLastChange, worldOf } from "./targets.js"

const REPO_STATE_NAMES = ["INIT", "READY", "EXPIRED", "DELETED", "PROBLEM"]

/** `repo_info(id)` as the real hub returns it. */
export const repoStruct = (w: BuildWorld, repoId: number): Record<string, XmlRpcValue> | null => {
  const r = w.tables.repos.get(repoId)
  if (r === undefined) return null
  return {
    begin_event: null, begin_ts: null, create_event: r.createEvent, create_ts: r.createTs,
    creation_time: isoTime(r.createTs), creation_ts: r.createTs, custom_opts: {}, dist: r.dist, end_event: null, end_ts: null,
    id: r.id, opts: { src: false, maven: false, debuginfo: false, separate_src: false }, state: r.state,
    state_time: isoTime(r.createTs), state_ts: r.createTs, tag_id: r.tagId, tag_name: w.tables.tags.get(r.tagId)?.name ?? null,
    task_id: r.taskId, task_state: null
  }
}

const requestStruct = (w: BuildWorld, q: RepoRequestRow): Record<string, XmlRpcValue> => ({
  active: q.active, at_event: q.atEvent, create_time: isoTime(q.createTs), create_ts: q.createTs, id: q.id,
  min_event: q.minEvent, opts: q.opts, owner: q.ownerId, priority: q.priority, repo_id: q.repoId,
  tag_id: q.tagId, tag_name: w.tables.tags.get(q.tagId)?.name ?? null, task_id: q.taskId, task_state: q.taskState,
  tries: q.tries, update_time: isoTime(q.createTs), update_ts: q.createTs
})

/** The newest READY repo of a tag whose create_event ≥ minEvent (`get_repo`). */
const readyRepo = (w: BuildWorld, tagId: number, minEvent: number | null): number | undefined => {
  let best: { id: number; ev: number } | undefined
  for (const r of w.tables.repos.values()) {
    if (r.tagId !== tagId || r.state !== 1 || r.dist) continue
    if (minEvent !== null && r.createEvent < minEvent) continue
    if (best === undefined || r.createEvent > best.ev) best = { id: r.id, ev: r.createEvent }
  }
  return best?.id
}

// ---------------------------------------------------------------------------------------------
// Admin helpers (kojira's side)

/** The requests of the hub at `topdir`. */
export const repoRequests = (topdir: string): ReadonlyArray<RepoRequestRow> => [...buildWorld(topdir).requests.values()]

/** Kojira made the repo: a new READY repo of the request's tag; the request is done. Returns the repo id. */
export const fulfilRequest = (topdir: string, requestId: number): number => {
  const w = buildWorld(topdir)
  const q = w.requests.get(requestId)
  if (q === undefined) throw new Error(`fake hub: no repo request ${requestId}`)
  const repoId = addRepo(topdir, q.tagId, 1)
  q.repoId = repoId
  q.active = false
  q.taskState = 2
  return repoId
}

/** Kojira gave up on a request (its newRepo task failed too often). */
export const failRequest = (topdir: string, requestId: number, taskId: number | null = null): void => {
  const q = buildWorld(topdir).requests.get(requestId)
  if (q === undefined) throw new Error(`fake hub: no repo request ${requestId}`)
  q.active = false
  q.taskId = taskId
  q.taskState = taskId === null ? null : 5
  q.tries += 1
}

const ns = (name: string, params: Signature["params"]): Signature => ({ qualname: name, method: false, params })

/** repo.request and repo.checkRequest. */
export const repoRequestMethods: ReadonlyArray<readonly [string, MethodDef]> = [
  ["repo.request", {
    sig: ns("request_repo", [["tag"], ["min_event", null], ["at_event", null], ["opts", null], ["priority", null], ["force", false]]),
    run: (ctx: CallContext, a) => {
      assertLogin(ctx)
      const w = worldOf(ctx)
      const tag = strictTag(w, a["tag"])
      const atEvent = a["at_event"] === null ? null : toInt(a["at_event"]) ?? null
      let minEvent: number | null
      if (atEvent !== null) {
        if (a["min_event"] !== null) throw new ParameterError({ faultString: "The min_event and at_event options conflict" })
        minEvent = null
      } else if (a["min_event"] === "last" || a["min_event"] === null) {
        // With no min_event the real hub allows RepoLag seconds of lag; here: the tag's last change.
        minEvent = tagLastChange(w, tag.id)
        if (a["min_event"] === null) {
          const newest = readyRepo(w, tag.id, null)
          if (newest !== undefined) minEvent = Math.min(minEvent, w.tables.repos.get(newest)!.createEvent)
        }
      } else {
        const ev = toInt(a["min_event"])
        if (ev === undefined || ev > w.tables.seq.event) throw new ParameterError({ faultString: `Invalid event: ${String(a["min_event"])}` })
        minEvent = ev
      }
      if (!truthy(a["force"])) {
        const repo = readyRepo(w, tag.id, minEvent)
        if (repo !== undefined && (atEvent === null || w.tables.repos.get(repo)!.createEvent === atEvent)) {
          return { repo: repoStruct(w, repo), request: null, duplicate: false }
        }
      }
      for (const q of w.requests.values()) {
        if (q.tagId === tag.id && q.active && (atEvent !== null ? q.atEvent === atEvent : (q.minEvent ?? 0) >= (minEvent ?? 0))) {
          return { repo: null, request: requestStruct(w, q), duplicate: true }
        }
      }
      const id = ++w.seq.request
      const q: RepoRequestRow = {
        id, ownerId: ctx.session.userId ?? null, priority: 20, tagId: tag.id, atEvent, minEvent, opts: {}, active: true,
        taskId: null, taskState: null, repoId: null, tries: 0, createTs: ctx.now
      }
      w.requests.set(id, q)
      return { repo: null, request: requestStruct(w, q), duplicate: false }
    }
  }],
  ["repo.checkRequest", {
    sig: ns("check_repo_request", [["req_id"]]),
    run: (ctx, a) => {
      const w = worldOf(ctx)
      const id = toInt(a["req_id"])
      const q = id === undefined ? undefined : w.requests.get(id)
      if (q === undefined) throw new GenericError({ faultString: "No such request" })
      const out: Record<string, XmlRpcValue> = { repo: null, request: requestStruct(w, q) }
      if (q.repoId !== null) out["repo"] = repoStruct(w, q.repoId)
      else if (q.taskId !== null) {
        const t = ctx.db.tasks.get(q.taskId)
        out["task"] = t === undefined ? null : { id: t.id, state: t.state, method: t.method }
      }
      return out
    }
  }]
]

/** Repo state names (koji.REPO_STATES), for messages. */
export const repoStateName = (s: number): string => REPO_STATE_NAMES[s] ?? String(s)
