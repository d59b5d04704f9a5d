import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { startFakeHub, TaskState } from "../fakehub/FakeHub.js"
import {
  containersOfHost,
  ensureTestImage,
  podmanInstalled,
  podmanSkipReason,
  type PodmanService,
  removeContainersOfHost,
  startPodmanService,
  TEST_IMAGE,
  uniqueHostName
} from "../support/podman.js"
import { ensureBuilt, exitOf, outputOf, spawnScoped, waitFor } from "./child.js"
import { tempWorkdir } from "./harness.js"

const entry = path.join(import.meta.dirname, "crash-entry.mjs")
const host = uniqueHostName("daemon")
const password = "crash-pw"
let service: PodmanService | undefined

const requirePodman = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"

describe.skipIf(!podmanInstalled && !requirePodman)(`daemon crash (needs podman${podmanInstalled ? "" : `: ${podmanSkipReason}`})`, () => {
  beforeAll(async () => {
    ensureBuilt()
    ensureTestImage()
    service = await startPodmanService()
  }, 240_000)
  afterAll(async () => {
    removeContainersOfHost(host)
    await service?.stop()
  })

  it.live("SIGKILL mid-task, start again: the stale task is freed and rerun, the orphan container removed (podman)", () =>
    Effect.scoped(Effect.gen(function*() {
      const hub = yield* startFakeHub({ hosts: [{ name: host, password, capacity: 10 }], scheduler: { runInterval: 0 } })
      const workdir = yield* tempWorkdir
      const args = [entry, hub.url, service!.socket, host, password, workdir, TEST_IMAGE]
      const id = hub.createTask("containerSleep", [1000])

      const first = yield* spawnScoped(args)
      yield* waitFor(() => hub.state.task(id)?.state === TaskState.OPEN && containersOfHost(host).length === 1, "task running in a container", 60_000)
      const orphan = containersOfHost(host)[0]!
      first.kill("SIGKILL")
      assert.strictEqual(yield* exitOf(first, 10_000), "SIGKILL")
      // conmon keeps the container alive after its client died.
      assert.deepStrictEqual(containersOfHost(host), [orphan])
      const callsBefore = hub.state.calls.length

      const second = yield* spawnScoped(args)
      yield* waitFor(() => {
        const opens = hub.state.calls.slice(callsBefore).filter((c) => c.method === "host.openTask" && c.params[0] === id && c.fault === undefined)
        const names = containersOfHost(host)
        return opens.length === 1 && names.length === 1 && names[0] !== orphan
      }, "task freed, reopened and running in a new container", 60_000)
      const later = hub.state.calls.slice(callsBefore)
      const freed = later.find((c) => c.method === "host.freeTasks" && JSON.stringify(c.params[0]) === JSON.stringify([id]))
      assert.isDefined(freed, "the stale task was freed")
      assert.notInclude(containersOfHost(host), orphan)

      second.kill("SIGTERM")
      assert.strictEqual(yield* exitOf(second, 30_000), 0, outputOf(second))
      assert.deepStrictEqual(containersOfHost(host), [])
      assert.strictEqual(hub.state.task(id)?.state, TaskState.FREE)
    })), 180_000)
})
