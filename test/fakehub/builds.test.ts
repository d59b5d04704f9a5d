/**
 * The fake hub's import checks (kojihub `import_build`/`import_rpm`, koji-protocol.md §10 item
 * 12) as a builder meets them: a stub task calls host.initBuild then host.completeBuild with one
 * thing wrong, and reports the hub's fault; the build stays BUILDING after a refused import.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { hostApi } from "../../src/hub/HostApi.js"
import { isFault } from "../../src/koji/faults.js"
import { decodeResponse, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { AnyValue, defineHandler, required, signature } from "../../src/tasks/handler.js"
import { taskRelPath } from "../../src/koji/paths.js"
import { TaskState } from "./FakeHub.js"
import { BuildState } from "./builds.js"
import { buildrootTables } from "./buildroots.js"
import { buildWorld } from "./targets.js"
import { daemonLayer, fakeHub, startDaemon, tempWorkdir, testOptions, until } from "../daemon/harness.js"
import { makeRpm, writeWork } from "../tasks/buildSupport.js"

type Case = "ok" | "missing" | "outside" | "badname" | "srpm-not-source" | "nvr-mismatch" | "bad-brootid" | "srpm-mismatch"

const importer = (topdir: string) =>
  defineHandler({
    name: "Importer",
    methods: ["importer"],
    weight: 0.1,
    signature: signature("Importer.handler", { what: required(AnyValue) }),
    run: ({ what }, ctx) =>
      Effect.gen(function*() {
        const c = String(what) as Case
        const api = hostApi(ctx.session)
        const rel = taskRelPath(ctx.taskId)
        const t = buildrootTables(topdir)
        const br = ++t.seq.buildroot
        t.buildroots.set(br, { id: br, hostId: 1, repoId: 1, arch: "x86_64", taskId: ctx.taskId, state: 3, createEvent: 0, createTs: 0, retireEvent: null, retireTs: null, listing: new Map() })
        const buildId = yield* api.initBuild({ name: "foo", version: "1", release: "1", epoch: null, task_id: ctx.taskId })
        const srpm = writeWork(topdir, `${rel}/foo-1-1.src.rpm`,
          makeRpm({ name: c === "nvr-mismatch" ? "bar" : "foo", version: "1", release: "1", arch: "noarch", source: c !== "srpm-not-source" }))
        const rpmName = c === "badname" ? "foo-1-1.x86_64.rpm" : "foo-1-1.noarch.rpm"
        const rpm = writeWork(topdir, `${rel}/${rpmName}`, makeRpm({
          name: "foo", version: "1", release: "1", arch: "noarch", source: false,
          ...(c === "srpm-mismatch" ? { sourcerpm: "other-1-1.src.rpm" } : {})
        }))
        const rpms = c === "missing" ? [`${rel}/nothere.noarch.rpm`] : c === "outside" ? ["../../etc/passwd"] : [rpm]
        const brmap: Record<string, XmlRpcValue> = { [srpm]: c === "bad-brootid" ? 9999 : br, [rpm]: br }
        const r = yield* Effect.either(api.completeBuild(ctx.taskId, buildId, srpm, rpms, brmap, { noarch: [] }))
        const state = buildWorld(topdir).tables.builds.get(buildId)!.state
        return Either.isLeft(r) && isFault(r.left) ? [r.left.faultCode, r.left.faultString, state] : ["ok", null, state]
      })
  })

const runCase = (what: Case) =>
  Effect.gen(function*() {
    const hub = yield* fakeHub()
    const workdir = yield* tempWorkdir
    const id = hub.createTask("importer", [what])
    yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [importer(hub.topdir)])))
    yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED || hub.state.task(id)?.state === TaskState.FAILED, "done")
    const r = decodeResponse(hub.state.task(id)?.result ?? "")
    assert.isTrue(Either.isRight(r), JSON.stringify(r))
    return Schema.decodeUnknownSync(Schema.Tuple(Schema.Union(Schema.Number, Schema.String), Schema.NullOr(Schema.String), Schema.Number))(
      Either.isRight(r) ? r.right : null
    )
  })

describe("fake hub import checks (host.completeBuild)", () => {
  it.scoped("a good import completes the build", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* runCase("ok"), ["ok", null, BuildState.COMPLETE])
    }))

  const refused: ReadonlyArray<readonly [Case, RegExp]> = [
    ["missing", /^No such file: .*\/work\/tasks\/\d+\/\d+\/nothere\.noarch\.rpm$/],
    ["outside", /^No such file: .*\.\.\/\.\.\/etc\/passwd \(not under work\/\)$/],
    ["badname", /^bad filename: foo-1-1\.x86_64\.rpm \(expected foo-1-1\.noarch\.rpm\)$/],
    ["srpm-not-source", /^not a source package: .*foo-1-1\.src\.rpm$/],
    ["nvr-mismatch", /^Unable to complete build: name mismatch \(build: foo, rpm: bar\)$/],
    ["bad-brootid", /^no buildroot with ID: 9999$/],
    ["srpm-mismatch", /^srpm mismatch for .*foo-1-1\.noarch\.rpm: other-1-1\.src\.rpm \(expected foo-1-1\.src\.rpm\)$/]
  ]
  for (const [what, message] of refused) {
    it.scoped(`refused: ${what} → GenericError, the build still BUILDING`, () =>
      Effect.gen(function*() {
        const [code, text, state] = yield* runCase(what)
        assert.strictEqual(code, 1000)
        assert.match(text ?? "", message)
        assert.strictEqual(state, BuildState.BUILDING)
      }))
  }
})

describe("fake hub Task.cancel", () => {
  it.scoped("canceling a build task cancels its BUILDING build, as kojihub's Task.cancel does", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      let buildId = -1
      const starter = defineHandler({
        name: "Starter",
        methods: ["starter"],
        weight: 0.1,
        signature: signature("Starter.handler", {}),
        run: (_params, ctx) =>
          Effect.gen(function*() {
            buildId = yield* hostApi(ctx.session).initBuild({ name: "foo", version: "1", release: "1", epoch: null, task_id: ctx.taskId })
            return yield* Effect.never
          })
      })
      const id = hub.createTask("starter", [])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [starter])))
      yield* until(() => buildId > 0, "initBuild")
      assert.strictEqual(buildWorld(hub.topdir).tables.builds.get(buildId)!.state, BuildState.BUILDING)
      hub.cancelTask(id)
      assert.strictEqual(hub.state.task(id)!.state, TaskState.CANCELED)
      assert.strictEqual(buildWorld(hub.topdir).tables.builds.get(buildId)!.state, BuildState.CANCELED)
    }))
})
