/**
 * `tagBuild` (TagBuildTask, weight 1.0; koji-protocol.md §7.5): tag a build as the task's owner
 * through `host.tagBuild` (the hub checks the `tag` policy and the package list), then
 * `host.tagNotification` — on success, and on failure with `"<type>: <message>"` before the
 * failure is re-raised. Returns nil.
 */
import { Effect, Schema } from "effect"
import { GenericError, isFault } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { defineHandler, optional, required, signature, type TaskHandler } from "./handler.js"

const Ref = Schema.Union(Schema.Number, Schema.String)

/** kojid's `"%s: %s" % (exctype, value)`: the Python class repr of a koji fault and its text. */
export const pythonExceptionText = (e: unknown): string => {
  if (isFault(e)) {
    const cls = e._tag === "KojiFault" ? "xmlrpc.client.Fault" : `koji.${e._tag}`
    return `<class '${cls}'>: ${e.faultString}`
  }
  const msg = e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)
  const tag = typeof e === "object" && e !== null && "_tag" in e ? String(e._tag) : "Exception"
  return `<class '${tag}'>: ${msg}`
}

/** The `tagBuild` handler. */
export const tagBuildHandler = defineHandler({
  name: "TagBuildTask",
  methods: ["tagBuild"],
  weight: 1.0,
  signature: signature("TagBuildTask.handler", {
    tag_id: required(Ref),
    build_id: required(Ref),
    force: optional(Schema.NullOr(Schema.Boolean), false),
    fromtag: optional(Schema.NullOr(Ref), null),
    ignore_success: optional(Schema.NullOr(Schema.Boolean), false)
  }),
  run: ({ tag_id, build_id, force, fromtag, ignore_success }, ctx) =>
    Effect.gen(function*() {
      const api = hostApi(ctx.session)
      const task = yield* api.getTaskInfo(ctx.taskId)
      const userId = task?.owner ?? null
      const ignore = ignore_success ?? false
      // kojid passes the ids it was given on to tagNotification; names would be refused there.
      const tagNum = typeof tag_id === "number" ? tag_id : null
      const fromNum = typeof fromtag === "number" ? fromtag : null
      const buildNum = typeof build_id === "number" ? build_id : 0
      const work = Effect.gen(function*() {
        const build = yield* api.getBuild(build_id, true)
        if (build === null) return yield* new GenericError({ faultString: `No such build: ${build_id}` })
        const tag = yield* api.getTag(tag_id, { strict: true })
        if (tag === null) return yield* new GenericError({ faultString: `No such tagInfo: ${tag_id}` })
        yield* api.tagBuild(ctx.taskId, tag_id, build_id, force ?? false, fromtag)
        yield* api.tagNotification(true, tagNum ?? tag.id, fromNum, buildNum || build.id, userId, ignore)
      })
      yield* work.pipe(
        Effect.tapError((e) =>
          api.tagNotification(false, tagNum, fromNum, buildNum, userId, ignore, pythonExceptionText(e)).pipe(
            Effect.catchAll((nerr) => Effect.logWarning(`tagNotification after a failed tagBuild failed too: ${String(nerr)}`))
          )
        )
      )
      return null
    })
})

/** This module's handler; it needs no service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>> = Effect.succeed([tagBuildHandler])
