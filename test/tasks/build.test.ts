/**
 * The `build` handler through the daemon against the fake hub (TestClock), with stub SRPM and
 * buildArch subtasks: the build task's own calls must follow the recorded kojid
 * (koji-captures/kojid/{build,scratch-build,failed-build,scm-build}), and the hub's import checks,
 * policies, arch rules and bad input give the faults kojid's users see.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { decodeResponse, isStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { makeBuildHandler } from "../../src/tasks/build.js"
import type { TaskHandler } from "../../src/tasks/handler.js"
import { tagBuildHandler } from "../../src/tasks/tagBuild.js"
import { waitrepoHandler } from "../../src/tasks/waitrepo.js"
import { type FakeHub, TaskState } from "../fakehub/FakeHub.js"
import { BuildState, taggedBuilds } from "../fakehub/builds.js"
import { addRepo, addTag } from "../fakehub/buildroots.js"
import { setPolicy } from "../fakehub/policies.js"
import { buildWorld } from "../fakehub/targets.js"
import { daemonLayer, fakeHub, HOST, startDaemon, tempWorkdir, testOptions, until } from "../daemon/harness.js"
import { makeRpm, setupWorld, stubHandlers, type StubOptions, uploadSrpm, writeWork } from "./buildSupport.js"
import { KOJID_CAPTURES as CAPTURES } from "../support/captures.js"


/** The calls one kojid session made in a recorded workflow, repeated taskWaits collapsed. */
const recorded = (workflow: string, session: number): Array<string> => {
  const text = fs.readFileSync(path.join(CAPTURES, workflow, "CONDENSED.txt"), "utf8")
  const out: Array<string> = []
  for (const line of text.split("\n")) {
    const m = /^\d+ (\d+)#\d+\s+(\S+)/.exec(line)
    if (m === null || Number(m[1]) !== session) continue
    if (m[2] === "host.taskWait" && out[out.length - 1] === "host.taskWait") continue
    out.push(m[2]!)
  }
  return out
}

const collapse = (methods: ReadonlyArray<string>): Array<string> =>
  methods.filter((m, i) => !(m === "host.taskWait" && methods[i - 1] === "host.taskWait"))

const first = <A>(items: ReadonlyArray<A>): A => items[0]!

const resultOf = (doc: string | null | undefined): Either.Either<XmlRpcValue, unknown> => decodeResponse(doc ?? "")

const finished = (hub: FakeHub, id: number) => {
  const s = hub.state.task(id)?.state
  return s === TaskState.CLOSED || s === TaskState.FAILED
}

interface RunOptions {
  readonly src?: string
  readonly opts?: Record<string, XmlRpcValue> | null
  readonly target?: string | null
  readonly stub?: StubOptions
  readonly buildArchCanFail?: boolean
  readonly prepare?: (hub: FakeHub, world: ReturnType<typeof setupWorld>) => void
  readonly arches?: string
  readonly srpm?: Parameters<typeof uploadSrpm>[1]
  readonly packages?: ReadonlyArray<string>
}

const runBuild = (o: RunOptions = {}) =>
  Effect.gen(function*() {
    const hub = yield* fakeHub()
    const workdir = yield* tempWorkdir
    const world = setupWorld(hub.topdir, { arches: o.arches ?? "x86_64", packages: o.packages ?? ["harness-hello"] })
    if (o.arches !== undefined) hub.setHost(HOST, { arches: o.arches })
    o.prepare?.(hub, world)
    const src = o.src ?? uploadSrpm(hub.topdir, o.srpm ?? { name: "harness-hello", version: "1.0", release: "1", buildArchs: ["noarch"] })
    const hostId = hub.state.host(HOST)!.id
    const handlers: Array<TaskHandler> = [
      makeBuildHandler({
        literal_task_arches: "", build_arch_can_fail: o.buildArchCanFail ?? false,
        choose: first
      }),
      tagBuildHandler,
      waitrepoHandler,
      ...stubHandlers(hub.topdir, hostId, o.stub ?? {})
    ]
    const params: Array<XmlRpcValue> = [src, o.target === undefined ? "test-target" : o.target]
    if (o.opts !== undefined) params.push(o.opts)
    const id = hub.createTask("build", params)
    yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, handlers)))
    yield* until(() => finished(hub, id), "build task finished", 1200)
    const session = hub.state.calls.find((c) => (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === id)?.sessionId
    yield* until(() => hub.state.calls.some((c) => c.method === "logout" && c.sessionId === session), "build task logged out")
    const calls = hub.state.calls.filter((c) => c.sessionId === session)
    return { hub, id, world, src, calls, seq: collapse(calls.map((c) => c.method)) }
  })

const fault = (hub: FakeHub, id: number) => {
  const r = resultOf(hub.state.task(id)?.result)
  assert.isTrue(Either.isLeft(r), "task failed")
  const f = Either.isLeft(r) ? (r.left as { faultCode: number; faultString: string }) : { faultCode: 0, faultString: "" }
  return { faultCode: f.faultCode, faultString: f.faultString }
}

const kw = (c: { readonly params: ReadonlyArray<XmlRpcValue> }): Record<string, XmlRpcValue> => {
  const last = c.params[c.params.length - 1]
  return isStruct(last) ? last : {}
}

describe("build (fake hub, stub subtasks)", () => {
  it.scoped("non-scratch SRPM build: kojid's recorded call sequence, build COMPLETE and tagged", () =>
    Effect.gen(function*() {
      const { hub, id, world, src, calls, seq } = yield* runBuild()
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      assert.deepStrictEqual(seq, recorded("build", 101))
      const w = buildWorld(hub.topdir)
      const build = [...w.tables.builds.values()].find((b) => b.name === "harness-hello")!
      assert.strictEqual(build.state, BuildState.COMPLETE)
      assert.deepStrictEqual(taggedBuilds(hub.topdir, world.destTag), [build.id])
      // Argument shapes as recorded (0514, 0521, 0630, 0632, 0732, 0733).
      const policy = calls.find((c) => c.method === "host.assertPolicy")!
      assert.deepStrictEqual(policy.params, ["build_from_srpm", {
        user_id: 1, source: src, task_id: id, build_tag: world.buildTag, skip_tag: false, scratch: null, draft: null,
        from_scm: false, repo_id: null, target: "test-target", tag: world.destTag
      }])
      const subtasks = calls.filter((c) => c.method === "host.subtask")
      const srpmTask = kw(subtasks[0]!)
      assert.deepStrictEqual([srpmTask["method"], srpmTask["arglist"], srpmTask["label"], srpmTask["arch"]],
        ["rebuildSRPM", [src, world.buildTag, { repo_id: world.repoId, scratch: null }], "srpm", "noarch"])
      const init = calls.find((c) => c.method === "host.initBuild")!
      assert.deepStrictEqual(init.params[0], {
        name: "harness-hello", version: "1.0", release: "1", epoch: null, task_id: id,
        source: "harness-hello-1.0-1.src.rpm", extra: { source: { original_url: "harness-hello-1.0-1.src.rpm" } }
      })
      const arch = subtasks[1]!
      const archArgs = kw(arch)["arglist"] as ReadonlyArray<XmlRpcValue>
      assert.deepStrictEqual([kw(arch)["method"], archArgs.slice(1), kw(arch)["label"], kw(arch)["arch"]],
        ["buildArch", [world.buildTag, "noarch", true, { repo_id: world.repoId }], "noarch", "noarch"])
      const complete = calls.find((c) => c.method === "host.completeBuild")!
      const [taskId, buildId, srpm, rpms, brmap] = complete.params
      assert.strictEqual(taskId, id)
      assert.strictEqual(buildId, build.id)
      assert.match(String(srpm), /^tasks\/\d+\/\d+\/harness-hello-1\.0-1\.src\.rpm$/)
      assert.lengthOf(rpms as ReadonlyArray<XmlRpcValue>, 1)
      assert.deepStrictEqual(Object.keys(brmap as object).sort(), [String(srpm), String((rpms as ReadonlyArray<XmlRpcValue>)[0])].sort())
      assert.deepStrictEqual(Object.keys(kw(complete)["logs"] as object), ["noarch"])
      const tag = subtasks[2]!
      assert.deepStrictEqual([kw(tag)["method"], kw(tag)["arglist"], kw(tag)["label"], kw(tag)["arch"]],
        ["tagBuild", [world.destTag, build.id, false, null, true], "tag", "noarch"])
      // tagBuild's own calls (0748–0755)
      const tagTask = hub.state.tasks.find((t) => t.method === "tagBuild")!
      const tagSession = hub.state.calls.find((c) => c.method === "getTaskInfo" && c.params[0] === tagTask.id && c.params.length === 1)!.sessionId
      assert.deepStrictEqual(hub.state.calls.filter((c) => c.sessionId === tagSession).map((c) => c.method), recorded("build", 106))
      assert.deepStrictEqual(w.tagNotifications.map((n) => [n.isSuccessful, n.tagId, n.fromId, n.buildId, n.userId, n.ignoreSuccess]),
        [[true, world.destTag, null, build.id, 1, true]])
      assert.deepStrictEqual(resultOf(hub.state.task(id)?.result), Either.right(null))
    }))

  it.scoped("scratch build: recorded sequence, moveBuildToScratch, files under scratch/<owner>/task_<id>", () =>
    Effect.gen(function*() {
      const { hub, id, calls, seq } = yield* runBuild({ opts: { scratch: true } })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      assert.deepStrictEqual(seq, recorded("scratch-build", 94))
      const policy = calls.find((c) => c.method === "host.assertPolicy")!
      assert.strictEqual(policy.params[0], "build_rpm")
      assert.strictEqual((policy.params[1] as Record<string, XmlRpcValue>)["scratch"], true)
      const dir = path.join(hub.topdir, "scratch", "kojiadmin", `task_${id}`)
      assert.deepStrictEqual(fs.readdirSync(dir).sort(), ["harness-hello-1.0-1.noarch.rpm", "harness-hello-1.0-1.src.rpm", "logs"])
      assert.deepStrictEqual(fs.readdirSync(path.join(dir, "logs")), ["noarch"])
      assert.strictEqual(buildWorld(hub.topdir).tables.builds.size, 0)
    }))

  it.scoped("a failing buildArch: recorded sequence (failBuild, failTask with the child's 1005), build FAILED", () =>
    Effect.gen(function*() {
      const { hub, id, seq } = yield* runBuild({ stub: { failArches: ["noarch"] } })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.FAILED)
      assert.deepStrictEqual(seq, recorded("failed-build", 108))
      const f = fault(hub, id)
      assert.strictEqual(f.faultCode, 1005)
      assert.match(f.faultString, /error building package \(arch noarch\)/)
      const build = [...buildWorld(hub.topdir).tables.builds.values()][0]!
      assert.strictEqual(build.state, BuildState.FAILED)
    }))

  it.scoped("SCM build: recorded sequence, buildSRPMFromSCM subtask, the build's source is the URL with the commit", () =>
    Effect.gen(function*() {
      const url = "git://127.0.0.1/harness-scm.git#2e934f2fc7b73df3a2d00a9d3169290bd8673ab9"
      const { hub, id, calls, seq } = yield* runBuild({ src: url, packages: ["harness-scm"] })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      assert.deepStrictEqual(seq, recorded("scm-build", 114))
      const policy = calls.find((c) => c.method === "host.assertPolicy")!
      assert.strictEqual((policy.params[1] as Record<string, XmlRpcValue>)["from_scm"], true)
      const init = calls.find((c) => c.method === "host.initBuild")!
      assert.strictEqual((init.params[0] as Record<string, XmlRpcValue>)["source"], url)
      const build = [...buildWorld(hub.topdir).tables.builds.values()][0]!
      assert.strictEqual(buildWorld(hub.topdir).buildMeta.get(build.id)?.source, url)
    }))

  it.scoped("policy denial: build_rpm denied → ActionNotAllowed 1004 with the hub's reason; no build made", () =>
    Effect.gen(function*() {
      const { hub, id } = yield* runBuild({
        prepare: (h) => setPolicy(h.topdir, "build_rpm", "deny builds are frozen for the release")
      })
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1004, faultString: "policy violation (build_rpm): builds are frozen for the release" })
      assert.strictEqual(buildWorld(hub.topdir).tables.builds.size, 0)
      assert.isUndefined(hub.state.tasks.find((t) => t.method === "rebuildSRPM"))
    }))

  it.scoped("policy denial: build_from_srpm for a non-admin owner (the hub's default policy)", () =>
    Effect.gen(function*() {
      const { hub, id } = yield* runBuild({
        prepare: (h) => setPolicy(h.topdir, "build_from_srpm", (d) => d["user_id"] === 1 ? "deny Only admin can do this via default policy" : "allow")
      })
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1004, faultString: "policy violation (build_from_srpm): Only admin can do this via default policy" })
    }))

  it.scoped("repo_id: build_from_repo_id is checked; a repo of another tag is refused", () =>
    Effect.gen(function*() {
      let other = 0
      const { hub, id, calls } = yield* runBuild({
        prepare: (h) => {
          const t = addTag(h.topdir, "other-build", "x86_64")
          other = addRepo(h.topdir, t, 1)
        },
        opts: { repo_id: 0 }
      })
      // repo 0 does not exist
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1005, faultString: "No such repo: 0" })
      assert.isUndefined(calls.find((c) => c.method === "getBuildTarget"))
      const second = yield* runBuild({
        prepare: (h) => {
          const t = addTag(h.topdir, "other-build", "x86_64")
          other = addRepo(h.topdir, t, 1)
        },
        opts: { repo_id: 2 }
      })
      assert.strictEqual(other, 2)
      assert.deepStrictEqual(fault(second.hub, second.id), { faultCode: 1005, faultString: "Repo/Target mismatch: other-build/build-tag" })
    }))

  it.scoped("repo_id of the build tag: no repo request, build_from_repo_id asserted, buildArch uses that repo", () =>
    Effect.gen(function*() {
      const { hub, id, calls, world } = yield* runBuild({ opts: { repo_id: 1 } })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      assert.deepStrictEqual(calls.filter((c) => c.method === "host.assertPolicy").map((c) => c.params[0]),
        ["build_from_srpm", "build_from_repo_id", "build_rpm"])
      assert.isUndefined(calls.find((c) => c.method === "repo.request"))
      assert.deepStrictEqual(calls.find((c) => c.method === "getBuildTarget")!.params, ["test-target", { event: buildWorld(hub.topdir).tables.repos.get(1)!.createEvent, __starstar: true }])
      assert.strictEqual(world.repoId, 1)
    }))

  it.scoped("bad input: an SRPM that is not a source package → BuildError naming it", () =>
    Effect.gen(function*() {
      const { hub, id } = yield* runBuild({
        src: "cli-build/x/harness-hello-1.0-1.noarch.rpm",
        opts: { scratch: true, rebuild_srpm: false },
        prepare: (h) => void writeWork(h.topdir, "cli-build/x/harness-hello-1.0-1.noarch.rpm",
          makeRpm({ name: "harness-hello", version: "1.0", release: "1", arch: "noarch", source: false }))
      })
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1005, faultString: "cli-build/x/harness-hello-1.0-1.noarch.rpm is not a source package" })
    }))

  it.scoped("bad input: a package not in the destination tag's list → BuildError before initBuild", () =>
    Effect.gen(function*() {
      const { hub, id, calls } = yield* runBuild({ packages: [] })
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1005, faultString: "package harness-hello not in list for tag dest" })
      assert.isUndefined(calls.find((c) => c.method === "host.initBuild"))
    }))

  it.scoped("bad input: an unknown target → GenericError", () =>
    Effect.gen(function*() {
      const { hub, id } = yield* runBuild({ target: "no-such-target" })
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1000, faultString: "unknown build target: no-such-target" })
    }))

  it.scoped("arch list: tag arches x86_64+aarch64, ExcludeArch aarch64 → one buildArch x86_64 with keep_srpm", () =>
    Effect.gen(function*() {
      const { hub, id, calls } = yield* runBuild({
        arches: "x86_64 aarch64",
        srpm: { name: "harness-hello", version: "1.0", release: "1", excludeArch: ["aarch64"] }
      })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      const arch = calls.filter((c) => c.method === "host.subtask" && kw(c)["method"] === "buildArch")
      assert.deepStrictEqual(arch.map((c) => [kw(c)["label"], kw(c)["arch"], (kw(c)["arglist"] as ReadonlyArray<XmlRpcValue>)[3]]), [["x86_64", "x86_64", true]])
    }))

  it.scoped("arch list: two arches → two buildArch subtasks, keep_srpm only on the first; completeBuild logs per arch", () =>
    Effect.gen(function*() {
      const { hub, id, calls } = yield* runBuild({
        arches: "x86_64 aarch64", stub: { noarchSub: true }, srpm: { name: "harness-hello", version: "1.0", release: "1" }
      })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED)
      const arch = calls.filter((c) => c.method === "host.subtask" && kw(c)["method"] === "buildArch")
      assert.deepStrictEqual(arch.map((c) => [kw(c)["label"], (kw(c)["arglist"] as ReadonlyArray<XmlRpcValue>)[3]]), [["x86_64", true], ["aarch64", false]])
      const complete = calls.find((c) => c.method === "host.completeBuild")!
      assert.deepStrictEqual(Object.keys(kw(complete)["logs"] as object), ["x86_64", "aarch64"])
      // the noarch -doc subpackage came from both arches; the hub keeps one
      const imp = buildWorld(hub.topdir).imports[0]!
      assert.deepStrictEqual(imp.rpms.map((r) => path.basename(r)).sort(),
        ["harness-hello-1.0-1.aarch64.rpm", "harness-hello-1.0-1.x86_64.rpm", "harness-hello-doc-1.0-1.noarch.rpm"])
    }))

  it.scoped("import check: noarch duplicates that differ → BuildError from completeBuild, then failBuild", () =>
    Effect.gen(function*() {
      const { hub, id, seq } = yield* runBuild({
        arches: "x86_64 aarch64", stub: { noarchSub: true, differingNoarch: true }, srpm: { name: "harness-hello", version: "1.0", release: "1" }
      })
      const f = fault(hub, id)
      assert.strictEqual(f.faultCode, 1005)
      assert.match(f.faultString, /^The following noarch package built differently on different architectures: harness-hello-doc-1\.0-1\.noarch\.rpm/)
      assert.deepStrictEqual(seq.slice(-5), ["host.taskWaitResults", "host.completeBuild", "host.failBuild", "host.failTask", "logout"])
      assert.strictEqual([...buildWorld(hub.topdir).tables.builds.values()][0]!.state, BuildState.FAILED)
    }))

  it.scoped("arch_override without scratch → BuildError before any hub call but getTaskInfo", () =>
    Effect.gen(function*() {
      const { hub, id, seq } = yield* runBuild({ opts: { arch_override: "x86_64" } })
      assert.deepStrictEqual(fault(hub, id), { faultCode: 1005, faultString: "arch_override is only allowed for scratch builds" })
      assert.deepStrictEqual(seq, ["host.failTask", "logout"])
    }))

  it.scoped("build_arch_can_fail: a failing arch lets the other finish, then the build fails with it", () =>
    Effect.gen(function*() {
      const { hub, id, calls } = yield* runBuild({
        arches: "x86_64 aarch64", buildArchCanFail: true, stub: { failArches: ["aarch64"] },
        srpm: { name: "harness-hello", version: "1.0", release: "1" }
      })
      assert.strictEqual(fault(hub, id).faultCode, 1005)
      const x86 = hub.state.tasks.find((t) => t.method === "buildArch" && t.label === "x86_64")!
      assert.strictEqual(x86.state, TaskState.CLOSED)
      assert.isUndefined(calls.find((c) => c.method === "cancelTaskChildren"))
    }))
})
