/**
 * Readiness from the config: minspace on the workdir and on `[adjutant] podman_storage`, and
 * the image check (no configured image present → not ready), alone and through the daemon loop.
 */
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { Images } from "../../src/containers/Images.js"
import { freeMB, Readiness } from "../../src/daemon/Readiness.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { libpodStub } from "../support/libpodStub.js"
import { daemonLayer, fakeHub, HOST, startDaemon, tempWorkdir, testOptions, until } from "./harness.js"

const IMAGE = "localhost/koji-adjutant-bootstrap:latest"

/** An Images whose readiness is whatever `usable` holds; nothing else is called by Readiness. */
const stubImages = (usable: Ref.Ref<boolean>): Layer.Layer<Images> =>
  Layer.succeed(
    Images,
    Images.of({
      ensure: () => Effect.dieMessage("not used by Readiness"),
      forTask: () => Effect.dieMessage("not used by Readiness"),
      refresh: Effect.void,
      gc: Effect.dieMessage("not used by Readiness"),
      readiness: Ref.get(usable),
      configured: [IMAGE]
    })
  )

const checkWith = (config: Layer.Layer<AdjutantConfig>, usable: Ref.Ref<boolean>) =>
  Effect.flatMap(Readiness, (r) => r.check).pipe(
    Effect.provide(Readiness.layerConfig.pipe(Layer.provide(Layer.mergeAll(config, stubImages(usable), libpodStub()))))
  )

describe("Readiness.layerConfig", () => {
  it.effect("minspace is checked on the workdir and on [adjutant] podman_storage", () =>
    Effect.gen(function*() {
      const storage = path.join(os.tmpdir(), "adjutant-no-such-storage")
      const workdir = path.join(os.tmpdir(), "adjutant-no-such-workdir")
      const usable = yield* Ref.make(true)
      const minspace = freeMB(os.tmpdir()) + 1_000_000
      const reasons = yield* checkWith(AdjutantConfig.layerTest({ kojid: { minspace, workdir }, adjutant: { podman_storage: storage } }), usable)
      assert.isTrue(reasons.some((r) => r.startsWith(`Insufficient disk space at ${workdir}:`)), reasons.join("; "))
      assert.isTrue(reasons.some((r) => r.startsWith(`Insufficient disk space at ${storage}:`)), reasons.join("; "))
      assert.isFalse(reasons.some((r) => r.includes("/var/lib/containers/storage")))
    }))

  it.effect("no configured image present locally is a reason; one present is none", () =>
    Effect.gen(function*() {
      const usable = yield* Ref.make(false)
      const config = AdjutantConfig.layerTest({ kojid: { minspace: 0, workdir: os.tmpdir() }, adjutant: { podman_storage: os.tmpdir() } })
      const missing = yield* checkWith(config, usable)
      const imageReasons = missing.filter((r) => r.startsWith("No configured image"))
      assert.strictEqual(imageReasons.length, 1, missing.join("; "))
      assert.include(imageReasons[0]!, IMAGE)
      yield* Ref.set(usable, true)
      const present = yield* checkWith(config, usable)
      assert.isFalse(present.some((r) => r.startsWith("No configured image")))
      assert.isFalse(present.some((r) => r.startsWith("Insufficient")))
    }))

  it.scoped("through the daemon: no usable image → updateHost(ready=False), no task taken; usable → the task runs", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const usable = yield* Ref.make(false)
      const readiness = Readiness.layerConfig.pipe(
        Layer.provide(Layer.mergeAll(
          AdjutantConfig.layerTest({ kojid: { minspace: 0, workdir }, adjutant: { podman_storage: workdir, buildroot_cache_dir: workdir } }),
          stubImages(usable),
          libpodStub()
        ))
      )
      const id = hub.createTask("sleep", [0])
      yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, undefined, readiness)))
      const beats = () => hub.state.calls.filter((c) => c.method === "host.updateHost")
      yield* until(() => beats().length >= 3, "three heartbeats")
      assert.isTrue(beats().every((c) => c.params[1] === false), "not ready while no image is usable")
      assert.isFalse(hub.state.calls.some((c) => c.method === "host.getTasks"))
      assert.isFalse(hub.state.host(HOST)!.ready)
      assert.strictEqual(hub.state.task(id)?.state, TaskState.FREE)
      yield* Ref.set(usable, true)
      yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED, "task closed once an image is usable")
      assert.isTrue(beats().some((c) => c.params[1] === true))
    }))
})
