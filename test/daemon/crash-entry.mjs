// A daemon entry for the crash test: the real loop (from dist/) with real podman Containers and
// one extra handler, `containerSleep(n)`, that runs `sleep n` in a container of the task scope.
// Usage: node crash-entry.mjs HUB_URL PODMAN_SOCKET HOST PASSWORD WORKDIR IMAGE
import { NodeRuntime } from "@effect/platform-node"
import { Duration, Effect, Layer } from "effect"
import { Containers } from "../../dist/containers/Containers.js"
import { Readiness } from "../../dist/daemon/Readiness.js"
import { runDaemon } from "../../dist/daemon/Daemon.js"
import { KojiHub } from "../../dist/hub/KojiHub.js"
import { HubFileTree } from "../../dist/koji/paths.js"
import { genericHandlers } from "../../dist/tasks/generic.js"
import { defineHandler, Int, required, signature } from "../../dist/tasks/handler.js"
import { makeRegistry, TaskRegistry } from "../../dist/tasks/TaskRegistry.js"

const [hubUrl, socket, hostName, password, workdir, image] = process.argv.slice(2)

const containerSleep = (containers) =>
  defineHandler({
    name: "ContainerSleep",
    methods: ["containerSleep"],
    weight: 1.0,
    signature: signature("ContainerSleep.handler", { n: required(Int) }),
    run: ({ n }, ctx) =>
      Effect.gen(function*() {
        const c = yield* containers.create({ image, command: ["sleep", String(n)], role: "test", taskId: ctx.taskId })
        yield* c.start
        yield* c.wait
        return null
      })
  })

const layer = Layer.mergeAll(
  KojiHub.layerWithTransport({ server: hubUrl, user: hostName, password, maxRetries: 3, retryInterval: 1 }),
  Readiness.layerAlways,
  HubFileTree.layer({ topurls: [], topdir: workdir }),
  Layer.effect(TaskRegistry, Effect.map(Containers, (c) => makeRegistry([containerSleep(c), ...genericHandlers])))
).pipe(
  Layer.provideMerge(
    Containers.layer({
      socket,
      hostName,
      defaultLimits: { memory: 256 * 1024 * 1024, pids: 256, cpus: 1 },
      ulimits: [],
      stopTimeout: 2,
      buildUser: "1000:1000"
    })
  )
)

Effect.scoped(
  runDaemon({
    sleeptime: Duration.millis(200),
    maxjobs: 10,
    forceLock: true,
    runner: { workdir, taskTimeout: 0, waitPoll: Duration.seconds(5) },
    shutdownTimeout: Duration.seconds(20),
    shutdownCallTimeout: Duration.seconds(5),
    // kojid's exact traffic, so the test can see each call.
    batchHubCalls: false
  })
).pipe(Effect.provide(layer), NodeRuntime.runMain)
