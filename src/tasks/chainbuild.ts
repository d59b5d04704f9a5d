/**
 * `chainbuild` (ChainBuildTask, weight 0.1; koji-protocol.md §7.10): levels of SCM URLs and
 * N-V-Rs. Before each level after the first, a `waitrepo` subtask (label `wait L`) waits until
 * the previous level's builds are in the build tag's repo; then one `build` subtask per SCM URL
 * (label `build L,N`, with the chain's target and opts). N-V-Rs are only waited for. No scratch.
 */
import { Effect, Schema } from "effect"
import { BuildError, GenericError } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { isScmUrl } from "../scm/url.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskHandler } from "./handler.js"

/** The `chainbuild` handler. */
export const chainbuildHandler = defineHandler({
  name: "ChainBuildTask",
  methods: ["chainbuild"],
  weight: 0.1,
  signature: signature("ChainBuildTask.handler", {
    srcs: required(Schema.Array(Schema.Array(Schema.String))),
    target: required(Schema.Union(Schema.String, Schema.Number)),
    opts: optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: AnyValue })), null)
  }),
  run: ({ srcs, target, opts }, ctx) =>
    Effect.gen(function*() {
      const o = opts ?? {}
      const scratch = o["scratch"]
      if (scratch !== undefined && scratch !== null && scratch !== false && scratch !== 0) {
        return yield* new BuildError({ faultString: "--scratch is not allowed with chain-builds" })
      }
      const api = hostApi(ctx.session)
      const targetInfo = yield* api.getBuildTarget(target)
      if (targetInfo === null) return yield* new GenericError({ faultString: `unknown build target: ${target}` })
      let nvrs: Array<string> = []
      for (let level = 0; level < srcs.length; level++) {
        if (nvrs.length > 0) {
          const wait = yield* ctx.subtask("waitrepo", [targetInfo.build_tag_name, null, nvrs], { label: `wait ${level}` })
          yield* ctx.wait(wait, { all: true, failany: true })
        }
        nvrs = []
        const buildTasks: Array<number> = []
        const sources = srcs[level]!
        for (let n = 0; n < sources.length; n++) {
          const src = sources[n]!
          if (isScmUrl(src)) {
            // kojid passes the chain's opts on as they were given (nil stays nil).
            const args: Array<XmlRpcValue> = [src, target, opts === null ? null : { ...opts }]
            buildTasks.push(yield* ctx.subtask("build", args, { label: `build ${level},${n}` }))
          } else {
            nvrs.push(src)
          }
        }
        if (buildTasks.length > 0) yield* ctx.wait(buildTasks, { all: true, failany: true })
        for (const t of buildTasks) {
          const builds = yield* api.listBuilds({ taskID: t })
          if (builds.length > 0) nvrs.push(builds[0]!.nvr)
        }
      }
      return null
    })
})

/** This module's handler; it needs no service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>> = Effect.succeed([chainbuildHandler])
