/**
 * newRepo's own logic through the daemon and the fake hub, with a stand-in createrepo handler
 * (no podman): the tag as id, name or struct; legacy src/debuginfo/separate_src turned into
 * opts and refused together with opts; the old repo from the tag itself, `repo.oldrepo_hint` or
 * the nearest inherited parent; arches from the repo directory; repoDone; the result.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { existsSync, mkdirSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { AnyValue, defineHandler, required, signature } from "../../src/tasks/handler.js"
import { taskRelPath } from "../../src/koji/paths.js"
import { newRepoHandler } from "../../src/tasks/newRepo.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { addRepo, addTag, buildrootTables } from "../fakehub/buildroots.js"
import { addBuild, repoWorld, tagBuild } from "../fakehub/newrepo.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { daemonOptions, DONE, HOST, OldRepoArg, PASSWORD, repoKojid, startDaemon, tempDir, waitFor } from "./newRepoSupport.js"

/** A createrepo that records its params and returns an empty upload (the hub moves nothing). */
const fakeCreaterepo = (seen: Array<ReadonlyArray<XmlRpcValue>>) =>
  defineHandler({
    name: "CreaterepoTask",
    methods: ["createrepo"],
    weight: 1.5,
    signature: signature("CreaterepoTask.handler", { repo_id: required(AnyValue), arch: required(AnyValue), oldrepo: required(AnyValue) }),
    run: (p, ctx) => Effect.sync(() => {
      seen.push([p.repo_id, p.arch, p.oldrepo])
      return [taskRelPath(ctx.taskId), []]
    })
  })

const setup = Effect.gen(function*() {
  const hub = yield* startFakeHub({
    hosts: [{ name: HOST, password: PASSWORD, capacity: 10, arches: "x86_64 i686", channels: ["default", "createrepo"] }],
    scheduler: { runInterval: 0 }
  })
  mkdirSync(path.join(hub.topdir, "repos"), { recursive: true })
  const w = repoWorld(hub.topdir)
  const parent = addTag(hub.topdir, "f-parent", "x86_64")
  const hint = addTag(hub.topdir, "f-hint", "x86_64")
  const tag = addTag(hub.topdir, "f-build", "x86_64 i686")
  w.parents.set(tag, [parent])
  addBuild(w, { id: 1, name: "hello", version: "1", release: "1" }, [{ id: 1, arch: "src" }, { id: 2, arch: "x86_64" }, { id: 3, arch: "noarch" }, { id: 4, arch: "i686" }])
  tagBuild(w, tag, 1)
  return { hub, w, tags: { parent, hint, tag } }
})

const withDaemon = <A, E>(hub: FakeHub, seen: Array<ReadonlyArray<XmlRpcValue>>, body: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const workdir = yield* tempDir("adjutant-work-")
    const layers = Layer.mergeAll(
      KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
      Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
      Layer.effect(TaskRegistry, Effect.map(Containers, (containers) =>
        TaskRegistry.of({
          get: (m) => (m === "newRepo" ? newRepoHandler({ kojid: repoKojid(hub.topdir), image: "unused", containers }) : m === "createrepo" ? fakeCreaterepo(seen) : undefined),
          methods: ["newRepo", "createrepo"]
        })))
    ).pipe(Layer.provideMerge(Containers.layerMemory({ hostName: HOST })))
    return yield* Effect.gen(function*() {
      yield* startDaemon(daemonOptions(workdir, "50 millis"))
      return yield* body
    }).pipe(Effect.scoped, Effect.provide(layers))
  })

const run = (hub: FakeHub, params: ReadonlyArray<XmlRpcValue>) =>
  Effect.gen(function*() {
    const id = hub.createTask("newRepo", params, { channel: "createrepo", priority: 15 })
    yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `newRepo ${id}`, "30 seconds")
    return id
  })

const Result = Schema.Tuple(Schema.Number, Schema.Number)

describe("newRepo", () => {
  it.scopedLive("the tag by name, id or struct; arches from the repo dir; old repo from the parent, the hint, then the tag itself", () =>
    Effect.gen(function*() {
      const { hub, w, tags } = yield* setup
      const seen: Array<ReadonlyArray<XmlRpcValue>> = []
      yield* withDaemon(hub, seen, Effect.gen(function*() {
        // No repo anywhere except the inherited parent's.
        const parentRepo = addRepo(hub.topdir, tags.parent)
        const first = yield* run(hub, ["f-build"])
        assert.strictEqual(hub.state.task(first)!.state, 2, JSON.stringify(hub.state.taskResult(first)))
        const [repoId, eventId] = Schema.decodeUnknownSync(Result)(hub.state.taskResult(first))
        assert.isNumber(eventId)
        const repodir = path.join(hub.topdir, "repos", "f-build", String(repoId))
        assert.isTrue(existsSync(path.join(repodir, "x86_64", "pkglist")))
        assert.deepStrictEqual(seen.map((s) => s[1]).sort(), ["i386", "x86_64"])
        for (const s of seen) {
          const old = Schema.decodeUnknownSync(OldRepoArg)(s[2])
          assert.strictEqual(old.id, parentRepo)
          assert.strictEqual(old.tag_id, tags.parent)
        }
        assert.strictEqual(buildrootTables(hub.topdir).repos.get(repoId)!.state, 1)
        const subtasks = hub.state.tasks.filter((t) => t.parent === first)
        assert.deepStrictEqual(subtasks.map((t) => t.label).sort(), ["i386", "x86_64"])
        assert.isTrue(subtasks.every((t) => t.arch === "noarch"))

        // The hint wins over the parent once it has a repo; the tag's own repo wins over both.
        seen.length = 0
        buildrootTables(hub.topdir).repos.delete(repoId)
        w.tables.tags.get(tags.tag)!.extra["repo.oldrepo_hint"] = ["no-such-tag", "f-hint"]
        const hintRepo = addRepo(hub.topdir, tags.hint)
        const second = yield* run(hub, [tags.tag])
        assert.strictEqual(hub.state.task(second)!.state, 2)
        assert.isTrue(seen.every((s) => Schema.decodeUnknownSync(OldRepoArg)(s[2]).id === hintRepo))
        const [ownRepo] = Schema.decodeUnknownSync(Result)(hub.state.taskResult(second))
        seen.length = 0
        const third = yield* run(hub, [{ id: tags.tag, name: "f-build" }])
        assert.strictEqual(hub.state.task(third)!.state, 2)
        assert.isTrue(seen.every((s) => Schema.decodeUnknownSync(OldRepoArg)(s[2]).id === ownRepo))
      }))
    }), 60_000)

  it.scopedLive("legacy src/debuginfo/separate_src become opts; combined with opts they are a ParameterError", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      const seen: Array<ReadonlyArray<XmlRpcValue>> = []
      yield* withDaemon(hub, seen, Effect.gen(function*() {
        const legacy = yield* run(hub, ["f-build", null, true, false, true])
        assert.strictEqual(hub.state.task(legacy)!.state, 2, JSON.stringify(hub.state.taskResult(legacy)))
        const init = hub.state.calls.find((c) => c.method === "host.repoInit")!
        assert.deepStrictEqual(init.params[1], { opts: { src: true, debuginfo: false, separate_src: true }, task_id: legacy, __starstar: true })
        // separate_src adds the src arch repo.
        assert.include(seen.map((s) => s[1]), "src")

        const both = yield* run(hub, ["f-build", { src: true, opts: { src: true }, __starstar: true }])
        assert.strictEqual(hub.state.task(both)!.state, 5)
        assert.deepStrictEqual(hub.state.taskResult(both), { faultCode: 1019, faultString: "opts parameter cannot be combined with legacy options" })
      }))
    }), 60_000)
})
