/**
 * Finding a repo for a tag as kojid does (koji-protocol.md §5.4): `koji.util.RepoWatcher` —
 * `getRepo()` without waiting, `waitrepo()` polling `repo.request` / `repo.checkRequest` — and
 * `BaseTaskHandler.getRepo`, which hands the waiting to a `waitrepo` subtask. The pause and the
 * time limit go through Effect's Clock, so tests drive them with the TestClock.
 */
import { Clock, Duration, Effect, Schema } from "effect"
import { type Fault, GenericError, ParameterError } from "../koji/faults.js"
import type { HubError } from "../hub/HubError.js"
import { type HostApi, hostApi } from "../hub/HostApi.js"
import type { AnonymousSession } from "../hub/KojiHub.js"
import * as S from "../hub/schemas.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import type { TaskContext } from "./handler.js"

/** A parsed N-V-R (`koji.parse_NVR`, without epoch handling beyond a leading `E:`). */
export interface Nvr {
  readonly name: string
  readonly version: string
  readonly release: string
}

/** `koji.parse_NVR`: the last two dashes split name, version and release. */
export const parseNvr = (nvr: string): Nvr => {
  const r = nvr.lastIndexOf("-")
  const v = r < 0 ? -1 : nvr.lastIndexOf("-", r - 1)
  if (r < 0 || v < 0) throw new GenericError({ faultString: `invalid format: ${nvr}` })
  let name = nvr.slice(0, v)
  const colon = name.indexOf(":")
  if (colon >= 0) name = name.slice(colon + 1)
  return { name, version: nvr.slice(v + 1, r), release: nvr.slice(r + 1) }
}

/** `koji.util.duration(start)`: elapsed time as `M:SS`. */
export const duration = (elapsedMs: number): string => {
  const s = Math.max(0, elapsedMs / 1000)
  return `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`
}

/** `koji.util.printList`: `a`, `a and b`, `a, b, and c`. */
export const printList = (items: ReadonlyArray<string>): string => {
  if (items.length <= 1) return items.join("")
  if (items.length === 2) return items.join(" and ")
  return `${items.slice(0, -1).join(", ")}, and ${items[items.length - 1]}`
}

type E = Fault | HubError

/** `min_event` as kojid's callers give it: an event id, `"last"` (the tag's last change), or none. */
export type MinEvent = number | "last" | null

/** Timing of a RepoWatcher (RepoWatcher: 6 s / 120 min; the waitrepo task: 60 s / 120 min). */
export interface WatchTiming {
  readonly pause: Duration.DurationInput
  readonly timeout: Duration.DurationInput
}

/** The timing the `waitrepo` task uses (WaitrepoTask.PAUSE = 60, TIMEOUT = 120 minutes). */
export const WAITREPO_TIMING: WatchTiming = { pause: Duration.seconds(60), timeout: Duration.minutes(120) }

const RequestRow = Schema.Struct({
  id: Schema.Number,
  min_event: Schema.optional(Schema.NullOr(Schema.Number)),
  active: Schema.optional(Schema.Boolean),
  task_id: Schema.optional(Schema.NullOr(Schema.Number)),
  task_state: Schema.optional(Schema.NullOr(Schema.Number)),
  repo_id: Schema.optional(Schema.NullOr(Schema.Number)),
  tries: Schema.optional(Schema.NullOr(Schema.Number))
})

const decodeRequest = (method: string, v: XmlRpcValue) =>
  Schema.decodeUnknown(RequestRow)(v).pipe(
    Effect.mapError(() => new GenericError({ faultString: `${method}: the hub returned a malformed repo request: ${JSON.stringify(v)}` }))
  )

const TASK_STATE_NAMES = ["FREE", "OPEN", "CLOSED", "CANCELED", "ASSIGNED", "FAILED"]

/** A RepoWatcher over one tag (`koji.util.RepoWatcher`). */
export interface RepoWatcher {
  readonly tag: S.TagInfo
  readonly nvrs: ReadonlyArray<string>
  /** The resolved min_event (after `"last"` was looked up). */
  readonly minEvent: number | null
  /** A repo that satisfies the conditions now, or null (the request, if any, is kept for `taskArgs`). */
  readonly getRepo: Effect.Effect<S.RepoInfo | null, E>
  /** The arglist of a `waitrepo` task continuing this wait: `[tag name, nil, nvrs, min_event]`. */
  readonly taskArgs: Effect.Effect<ReadonlyArray<XmlRpcValue>>
  /** Waits (pausing between polls) until a repo satisfies the conditions. */
  readonly waitrepo: Effect.Effect<S.RepoInfo, E>
}

/** `koji.util.checkForBuilds(session, tag, builds, event)`: every build tagged (inherited) at `event`. */
export const checkForBuilds = (api: HostApi, tagId: number, builds: ReadonlyArray<Nvr>, event: number | null) =>
  Effect.gen(function*() {
    for (const b of builds) {
      const tagged = yield* api.listTagged(tagId, { event, package: b.name, inherit: true })
      if (!tagged.some((t) => t["version"] === b.version && t["release"] === b.release)) return false
    }
    return true
  })

type RequestRow = typeof RequestRow.Type

/** One watch: the tag and conditions, the timing, and what changes while it runs. */
interface Watch {
  readonly api: HostApi
  readonly tag: S.TagInfo
  readonly nvrs: ReadonlyArray<string>
  readonly builds: ReadonlyArray<Nvr>
  readonly minEvent: number | null
  readonly pauseMs: number
  readonly timeoutMs: number
  /** The request `getRepo` left open, for `taskArgs`. */
  taskRequest: { readonly min_event?: number | null | undefined } | null
  /** When the waiting started (Clock time), set on the first wait. */
  start: number | null
}

const getStart = (w: Watch) =>
  Effect.gen(function*() {
    if (w.start === null) w.start = yield* Clock.currentTimeMillis
    return w.start
  })

const elapsed = (w: Watch) =>
  Effect.gen(function*() {
    return (yield* Clock.currentTimeMillis) - (yield* getStart(w))
  })

const pause = (w: Watch) => Effect.logDebug("Pausing").pipe(Effect.zipRight(Effect.sleep(Duration.millis(w.pauseMs))))

const timedOut = (w: Watch) => Effect.map(elapsed(w), (ms) => ms > w.timeoutMs)

const request = (w: Watch, ev: number | null) => w.api.repoRequest(w.tag.id, { minEvent: ev, atEvent: null, opts: null })

const checkRepo = (w: Watch, repo: S.RepoInfo) =>
  Effect.gen(function*() {
    if (repo.tag_id !== w.tag.id) {
      yield* Effect.logError(`Got repo for wrong tag, expected ${w.tag.id}, got ${repo.tag_id}`)
      return false
    }
    if (w.minEvent !== null && repo.create_event < w.minEvent) {
      yield* Effect.logInfo(`Got repo before min event. ${repo.create_event} < ${w.minEvent}`)
      return false
    }
    if (w.builds.length > 0 && !(yield* checkForBuilds(w.api, w.tag.id, w.builds, repo.create_event))) {
      yield* Effect.logInfo("Got repo without needed builds")
      return false
    }
    return true
  })

const getRepoNow = (w: Watch) =>
  Effect.gen(function*() {
    yield* Effect.logInfo(`Need a repo for ${w.tag.name}`)
    if (w.builds.length > 0 && !(yield* checkForBuilds(w.api, w.tag.id, w.builds, null))) {
      yield* Effect.logDebug(`Builds ${w.nvrs.join(", ")} not present in tag ${w.tag.name}`)
      return null
    }
    const check = yield* request(w, w.minEvent)
    if (check.repo !== null) {
      yield* Effect.logInfo(`Request yielded repo ${check.repo.id}`)
      if (yield* checkRepo(w, check.repo)) return check.repo
    }
    w.taskRequest = check.request === null ? null : yield* decodeRequest("repo.request", check.request)
    return null
  })

const taskArgs = (w: Watch) =>
  Effect.sync((): ReadonlyArray<XmlRpcValue> => {
    let ev: number | null = w.minEvent
    if (ev === null && w.taskRequest !== null) ev = w.taskRequest.min_event ?? null
    return [w.tag.name, null, [...w.nvrs], ev]
  })

const waitBuilds = (w: Watch) =>
  Effect.gen(function*() {
    yield* getStart(w)
    yield* Effect.logInfo(`Waiting for nvrs ${w.nvrs.join(", ")} in tag ${w.tag.name}`)
    for (;;) {
      if (yield* checkForBuilds(w.api, w.tag.id, w.builds, null)) return
      if (yield* timedOut(w)) {
        return yield* new GenericError({
          faultString: `Unsuccessfully waited ${duration(yield* elapsed(w))} for ${printList(w.nvrs)} to appear in the ${w.tag.name} repo`
        })
      }
      yield* pause(w)
    }
  })

/** Logs each watched field of the request that changed since the last check, and notes its new value. */
const logRequestChanges = (watched: Record<string, unknown>, row: RequestRow) =>
  Effect.gen(function*() {
    const current: Readonly<Record<string, unknown>> = row
    for (const f of Object.keys(watched)) {
      const now = current[f] ?? null
      if (watched[f] !== now) {
        const show = (x: unknown) => (f === "task_state" && typeof x === "number" ? TASK_STATE_NAMES[x] ?? x : x)
        yield* Effect.logInfo(`Request updated: ${f}: ${String(show(watched[f]))} -> ${String(show(now))}`)
        watched[f] = now
      }
    }
  })

const waitRequest = (w: Watch, req: RequestRow) =>
  Effect.gen(function*() {
    yield* getStart(w)
    const watched: Record<string, unknown> = {
      task_id: req.task_id ?? null, task_state: req.task_state ?? null, repo_id: req.repo_id ?? null,
      active: req.active ?? null, tries: req.tries ?? null
    }
    for (;;) {
      const check = yield* w.api.repoCheckRequest(req.id)
      const repo = check["repo"]
      if (repo !== undefined && repo !== null) return repo
      const row = yield* decodeRequest("repo.checkRequest", check["request"] ?? null)
      yield* logRequestChanges(watched, row)
      if (yield* timedOut(w)) {
        return yield* new GenericError({ faultString: `Unsuccessfully waited ${duration(yield* elapsed(w))} for a new ${w.tag.name} repo` })
      }
      if (row.active === false) {
        if (row.task_id !== undefined && row.task_id !== null) {
          yield* Effect.logError(`Task ${row.task_id} state is ${TASK_STATE_NAMES[row.task_state ?? -1] ?? row.task_state}`)
        }
        return yield* new GenericError({ faultString: "Repo request no longer active" })
      }
      yield* pause(w)
    }
  })

const decodeRepo = (v: XmlRpcValue) =>
  Schema.decodeUnknown(S.RepoInfo)(v).pipe(
    Effect.mapError(() => new GenericError({ faultString: `repo.checkRequest: the hub returned a malformed repo: ${JSON.stringify(v)}` }))
  )

const waitrepo = (w: Watch) =>
  Effect.gen(function*() {
    yield* Effect.logInfo(`Waiting on repo for ${w.tag.name}`)
    yield* getStart(w)
    let ev: number | null = w.minEvent
    let req: RequestRow | null = null
    for (;;) {
      if (req !== null) {
        const repo = yield* decodeRepo(yield* waitRequest(w, req))
        if (yield* checkRepo(w, repo)) return repo
        ev = yield* w.api.tagLastChangeEvent(w.tag.id)
        yield* Effect.logError("Repo request did not satisfy conditions")
      }
      if (w.builds.length > 0) {
        yield* waitBuilds(w)
        ev = yield* w.api.tagLastChangeEvent(w.tag.id)
      }
      const check: S.RepoRequestResult = yield* request(w, ev)
      if (check.repo !== null) {
        if (yield* checkRepo(w, check.repo)) return check.repo
        req = null
      } else if (check.request !== null) {
        req = yield* decodeRequest("repo.request", check.request)
        yield* Effect.logInfo(`Got request: ${req.id}`)
        if (ev === null) ev = req.min_event ?? null
      } else {
        return yield* new GenericError({ faultString: `repo.request for ${w.tag.name} returned neither a repo nor a request` })
      }
      yield* pause(w)
    }
  })

/** Creates a RepoWatcher: `getTag(tag, strict=True)`, and `tagLastChangeEvent` for `"last"`. */
export const makeRepoWatcher = (
  session: AnonymousSession,
  tagRef: number | string,
  options: { readonly nvrs?: ReadonlyArray<string> | null; readonly minEvent?: MinEvent; readonly timing?: WatchTiming } = {}
): Effect.Effect<RepoWatcher, E> =>
  Effect.gen(function*() {
    const api = hostApi(session)
    const tag = yield* api.getTag(tagRef, { strict: true })
    if (tag === null) return yield* new GenericError({ faultString: `No such tagInfo: ${JSON.stringify(tagRef)}` })
    const nvrs = options.nvrs ?? []
    const builds = yield* Effect.try({
      try: () => nvrs.map(parseNvr),
      catch: (e) => (e instanceof GenericError ? e : new GenericError({ faultString: String(e) }))
    })
    const requested = options.minEvent ?? null
    const minEvent = requested === "last" ? yield* api.tagLastChangeEvent(tag.id) : requested
    const timing = options.timing ?? { pause: Duration.seconds(6), timeout: Duration.minutes(120) }
    const w: Watch = {
      api, tag, nvrs, builds, minEvent,
      pauseMs: Duration.toMillis(Duration.decode(timing.pause)),
      timeoutMs: Duration.toMillis(Duration.decode(timing.timeout)),
      taskRequest: null,
      start: null
    }
    return { tag, nvrs, minEvent, getRepo: getRepoNow(w), taskArgs: taskArgs(w), waitrepo: waitrepo(w) }
  })

/**
 * `BaseTaskHandler.getRepo(tag, builds, wait)`: a repo now if one fits, otherwise a `waitrepo`
 * subtask (no label, as kojid creates it) and its result. `wait` means "current as of now"
 * (min_event = the tag's last change).
 */
export const getRepo = (
  ctx: TaskContext,
  tag: number | string,
  options: { readonly builds?: ReadonlyArray<string> | null; readonly wait?: boolean } = {}
): Effect.Effect<S.RepoInfo, E | ParameterError> =>
  Effect.gen(function*() {
    const watcher = yield* makeRepoWatcher(ctx.session, tag, {
      nvrs: options.builds ?? null,
      minEvent: options.wait === true ? "last" : null
    })
    const repo = yield* watcher.getRepo
    if (repo !== null) return repo
    const args = yield* watcher.taskArgs
    const taskId = yield* ctx.subtask("waitrepo", args)
    const results = yield* ctx.wait(taskId)
    return yield* Schema.decodeUnknown(S.RepoInfo)(results.get(taskId) ?? null).pipe(
      Effect.mapError(() => new GenericError({ faultString: `waitrepo task ${taskId} returned no repo` }))
    )
  })
