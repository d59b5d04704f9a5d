import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Stream } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { MemoryContainers } from "../../src/containers/MemoryContainers.js"
import { PodmanError } from "../../src/containers/Libpod.js"
import { reap } from "../../src/containers/Reaper.js"

const spec = (command: ReadonlyArray<string>, taskId = 7) => ({ image: "localhost/img:1", command, role: "build", taskId })

const layer = () =>
  Containers.layerMemory({
    hostName: "mem-host",
    run: (s) =>
      s.command[0] === "fail"
        ? Effect.fail(new PodmanError({ operation: "container.start", message: "scripted failure" }))
        : { exitCode: s.command[0] === "false" ? 1 : 0, stdout: `ran ${s.command.join(" ")}\n`, stderr: "w\n" },
    exec: (_s, cmd) => ({ exitCode: 3, stdout: cmd.join(","), stderr: "" })
  })

describe("Containers.layerMemory", () => {
  it.effect("run returns the scripted result, records the spec and leaves nothing behind", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const state = yield* MemoryContainers
      const frames: Array<string> = []
      const r = yield* containers.run(spec(["false", "x"]), {
        onOutput: (f) => Effect.sync(() => frames.push(`${f.stream}:${Buffer.from(f.data).toString()}`))
      })
      assert.deepStrictEqual(r, { exitCode: 1, stdout: "ran false x\n", stderr: "w\n" })
      assert.deepStrictEqual(frames, ["stdout:ran false x\n", "stderr:w\n"])
      const created = yield* state.created
      assert.strictEqual(created.length, 1)
      assert.deepStrictEqual(created[0]!.spec.command, ["false", "x"])
      assert.deepStrictEqual(yield* state.live, [])
      assert.deepStrictEqual(yield* state.removed, [created[0]!.name])
      const e = yield* Effect.flip(containers.run(spec(["fail"])))
      assert.strictEqual(e.message, "scripted failure")
      assert.deepStrictEqual(yield* state.live, [])
    }).pipe(Effect.provide(layer())))

  it.effect("a scoped container records execs and archives and is removed with its scope", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const state = yield* MemoryContainers
      yield* Effect.scoped(
        Effect.gen(function* () {
          const c = yield* containers.create(spec(["sleep", "9"]))
          yield* c.putArchive("/in", Uint8Array.of(1, 2))
          yield* c.start
          assert.deepStrictEqual(yield* c.exec(["rpm", "-qa"]), { exitCode: 3, stdout: "rpm,-qa", stderr: "" })
          assert.strictEqual((yield* c.inspect).State.Status, "running")
          assert.deepStrictEqual((yield* containers.listOwned()).map((o) => o.labels["io.koji.adjutant.task"]), ["7"])
          const out = yield* Stream.runCollect(c.logs())
          assert.strictEqual(out.length, 2)
          assert.lengthOf(yield* state.live, 1)
          const e = yield* Effect.flip(c.getArchive("/nope"))
          assert.strictEqual(e.status, 404)
        })
      )
      const [c] = yield* state.created
      assert.deepStrictEqual(c!.execs.map((x) => x.cmd), [["rpm", "-qa"]])
      assert.deepStrictEqual(c!.archivesPut.map((a) => a.path), ["/in"])
      assert.deepStrictEqual(yield* state.live, [])
    }).pipe(Effect.provide(layer())))

  it.effect("interrupting the holder removes the container; the reaper sees the fake too", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const state = yield* MemoryContainers
      const fiber = yield* Effect.fork(Effect.scoped(Effect.zipRight(containers.create(spec(["sleep"])), Effect.never)))
      yield* Effect.yieldNow()
      assert.lengthOf(yield* state.live, 1)
      assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(fiber)))
      assert.deepStrictEqual(yield* state.live, [])
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* containers.create(spec(["a"], 1))
          const orphan = yield* containers.create(spec(["b"], 2))
          const r = yield* reap((labels) => labels["io.koji.adjutant.task"] === "1")
          assert.deepStrictEqual(r, { removed: [orphan.name], kept: 1, failed: [] })
          const e = yield* Effect.flip(orphan.start)
          assert.strictEqual(e.status, 404)
        })
      )
      assert.deepStrictEqual(yield* state.live, [])
    }).pipe(Effect.provide(layer())))
})
