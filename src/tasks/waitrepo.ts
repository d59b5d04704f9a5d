/**
 * `waitrepo` (WaitrepoTask, weight 0.2; koji-protocol.md §5.4, §7.6): wait until a repo of `tag`
 * satisfies `min_event` and `nvrs`, polling every 60 s for up to 120 minutes (on Effect's Clock,
 * so the TestClock drives it). Returns the repoinfo struct.
 */
import { TagRef } from "../koji/refs.js"
import { Effect, Schema } from "effect"
import { GenericError } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskHandler } from "./handler.js"
import { makeRepoWatcher, type MinEvent, WAITREPO_TIMING, type WatchTiming } from "./getRepo.js"


/** The `waitrepo` signature: `handler(tag, newer_than=None, nvrs=None, min_event=None)`. */
export const waitrepoSignature = signature("WaitrepoTask.handler", {
  tag: required(TagRef),
  newer_than: optional(AnyValue, null),
  nvrs: optional(Schema.NullOr(Schema.Array(Schema.String)), null),
  min_event: optional(Schema.NullOr(Schema.Union(Schema.Number, Schema.String)), null)
})

const toMinEvent = (v: number | string | null): MinEvent => {
  if (v === null) return null
  if (v === "last") return "last"
  const n = typeof v === "number" ? v : Number(v)
  if (!Number.isInteger(n)) throw new GenericError({ faultString: `invalid literal for int() with base 10: '${v}'` })
  return n
}

/** The waitrepo handler; `timing` is for tests that want other pauses (kojid's are fixed). */
export const makeWaitrepoHandler = (timing: WatchTiming = WAITREPO_TIMING) =>
  defineHandler({
    name: "WaitrepoTask",
    methods: ["waitrepo"],
    weight: 0.2,
    signature: waitrepoSignature,
    run: ({ tag, newer_than, nvrs, min_event }, ctx) =>
      Effect.gen(function*() {
        let minEvent: number | string | null = min_event
        if (newer_than !== null) {
          if (min_event !== null) return yield* new GenericError({ faultString: "newer_than and min_event args confict" })
          if (typeof newer_than === "string" && newer_than.toLowerCase() === "now") {
            minEvent = "last"
          } else if (typeof newer_than === "number") {
            const api = hostApi(ctx.session)
            const base = yield* api.getLastEvent({ before: newer_than, strict: false })
            // kojid passes the whole event struct as `after`, which the hub refuses
            // (convert_value(dict, int)); the event id is what it means.
            const first = yield* api.tagFirstChangeEvent(tag, base === null ? undefined : base.id)
            minEvent = first === null || first === 0 ? "last" : first
          } else {
            return yield* new GenericError({ faultString: `Invalid value for newer_than: ${String(newer_than)}` })
          }
        }
        const resolved = yield* Effect.try({
          try: () => toMinEvent(minEvent),
          catch: (e) => (e instanceof GenericError ? e : new GenericError({ faultString: String(e) }))
        })
        const watcher = yield* makeRepoWatcher(ctx.session, tag, { nvrs, minEvent: resolved, timing })
        const repo = yield* watcher.waitrepo
        // The repoinfo goes back as the hub sent it (kojid returns the dict unchanged).
        return repo as unknown as XmlRpcValue
      })
  })

/** `waitrepo` with kojid's 60 s polls and 120 minute limit. */
export const waitrepoHandler = makeWaitrepoHandler()

/** This module's handler; it needs no service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>> = Effect.succeed([waitrepoHandler])
