import { spawn } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref } from "effect"
import { beforeAll } from "vitest"
import { Containers } from "../../src/containers/Containers.js"
import { ownedByTasks, reap } from "../../src/containers/Reaper.js"
import { toSpecGenerator } from "../../src/containers/spec.js"
import {
  containersOfHost,
  ensureTestImage,
  podmanInstalled,
  podmanSkipReason,
  TEST_IMAGE,
  testContainersOptions,
  uniqueHostName
} from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const host = uniqueHostName("reaper")
let podman: { readonly socket: string }

/**
 * A stand-in daemon: creates containers over the API with exactly the SpecGenerator our
 * service sends (labels included), starts all but the last, says "ready", then hangs.
 */
const CHILD = `
const http = require("node:http")
const call = (method, path, body) => new Promise((ok, ko) => {
  const r = http.request({ socketPath: process.env.SOCK, method, path: "/v4.0.0/libpod" + path,
    headers: body ? { "content-type": "application/json" } : {} }, (res) => {
    let t = ""; res.on("data", (b) => t += b); res.on("end", () => res.statusCode < 300 ? ok(t) : ko(new Error(t)))
  })
  r.on("error", ko); r.end(body)
})
;(async () => {
  const specs = JSON.parse(process.env.SPECS)
  for (const [i, s] of specs.entries()) {
    await call("POST", "/containers/create", JSON.stringify(s))
    if (i < specs.length - 1) await call("POST", "/containers/" + s.name + "/start")
  }
  console.log("ready")
  setInterval(() => {}, 1000)
})().catch((e) => { console.error(e); process.exit(1) })
`

const spawnDaemon = (specs: ReadonlyArray<unknown>) =>
  Effect.async<number>((resume) => {
    const child = spawn(process.execPath, ["-e", CHILD], {
      env: { ...process.env, SOCK: podman.socket, SPECS: JSON.stringify(specs) },
      stdio: ["ignore", "pipe", "inherit"]
    })
    child.stdout.on("data", (b: Buffer) => {
      if (b.toString().includes("ready")) {
        // The daemon dies without any cleanup.
        child.kill("SIGKILL")
      }
    })
    child.on("exit", (code, signal) => resume(Effect.succeed(signal === "SIGKILL" ? 137 : code ?? -1)))
  })

describe.skipIf(!podmanInstalled)("Reaper (real podman)", () => {
  podman = podmanServiceForTests(host)
  beforeAll(() => ensureTestImage())

  it.live("podman: containers of a SIGKILLed daemon are removed by the reaper at the next start", () =>
    Effect.gen(function* () {
      const options = testContainersOptions(podman.socket, host)
      const ulimits = [
        { type: "nofile", soft: 4096, hard: 4096 },
        { type: "nproc", soft: 4096, hard: 4096 }
      ]
      const specs = [
        { role: "build", taskId: 99, n: "a" },
        { role: "buildroot", taskId: 99, n: "b" },
        { role: "scm", taskId: 100, n: "c" },
        { role: "createrepo", taskId: 99, n: "d" } // left in state "created"
      ].map((s) =>
        toSpecGenerator({ image: TEST_IMAGE, command: ["sleep", "300"], role: s.role, taskId: s.taskId }, options, `${host}-${s.n}`, ulimits)
      )
      assert.strictEqual(yield* spawnDaemon(specs), 137)
      const containers = yield* Containers
      const before = yield* containers.listOwned()
      assert.deepStrictEqual(before.map((c) => `${c.name}:${c.state}`).sort(), [
        `${host}-a:running`,
        `${host}-b:running`,
        `${host}-c:running`,
        `${host}-d:created`
      ])
      // Task 100 is still running in this (new) daemon; task 99 is not.
      const result = yield* reap(ownedByTasks(new Set([100])))
      assert.deepStrictEqual([...result.removed].sort(), [`${host}-a`, `${host}-b`, `${host}-d`])
      assert.strictEqual(result.kept, 1)
      assert.deepStrictEqual(result.failed, [])
      assert.deepStrictEqual(containersOfHost(host), [`${host}-c`])
      // The start-up pass (Recovery.ts), with no task running, removes the rest.
      const asked = yield* Ref.make(0)
      const all = yield* reap(() => Effect.as(Ref.update(asked, (n) => n + 1), false))
      assert.deepStrictEqual([...all.removed], [`${host}-c`])
      assert.deepStrictEqual(containersOfHost(host), [])
      assert.strictEqual(yield* Ref.get(asked), 1, "isOwned is only asked about existing containers")
      const none = yield* reap(() => Effect.succeed(false))
      assert.deepStrictEqual(none, { removed: [], kept: 0, failed: [] })
    }).pipe(Effect.provide(Containers.layer(testContainersOptions(podman.socket, host)))))

  it.live("podman: the reaper leaves containers of other hosts alone", () =>
    Effect.gen(function* () {
      const other = uniqueHostName("other")
      const c = yield* Containers
      yield* Effect.scoped(
        Effect.gen(function* () {
          const mine = yield* c.create({ image: TEST_IMAGE, command: ["true"], role: "test" })
          // Built in this scope so the other service outlives its container's release.
          const otherContext = yield* Layer.build(Containers.layer(testContainersOptions(podman.socket, other)))
          const otherContainers = yield* Effect.provide(Containers, otherContext)
          const theirs = yield* otherContainers.create({ image: TEST_IMAGE, command: ["true"], role: "test" })
          const r = yield* reap(() => false)
          assert.deepStrictEqual(r.removed, [mine.name])
          assert.deepStrictEqual(containersOfHost(other), [theirs.name])
        })
      )
      assert.deepStrictEqual(containersOfHost(other), [])
    }).pipe(Effect.provide(Containers.layer(testContainersOptions(podman.socket, host)))))
})
