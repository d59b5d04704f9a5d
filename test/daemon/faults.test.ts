import { HubFileTree } from "../../src/koji/paths.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import * as http from "node:http"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import { decodeResponse } from "../../src/hub/xmlrpc.js"
import { type InjectAction, TaskState } from "../fakehub/FakeHub.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { Containers } from "../../src/containers/Containers.js"
import { Layer } from "effect"
import { daemonLayer, fakeHub, HOST, PASSWORD, quietLogs, realPause, startDaemon, tempWorkdir, testOptions, until } from "./harness.js"

/** A small deterministic PRNG (mulberry32), so a failing run can be reproduced. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const STARTUP = new Set(["login", "sslLogin", "exclusiveSession", "echo", "host.getID", "getSessionInfo"])

const waitLive = (cond: () => boolean, what: string, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!cond()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for: ${what}`)
      yield* realPause(20)
    }
  })

describe("hub faults and bad input", () => {
  it.live("faults and 5xx on 10% of calls during 100 tasks: every task ends as it should, none lost, none completed twice", () =>
    Effect.scoped(Effect.gen(function*() {
      const random = prng(20261124)
      const injected: Array<InjectAction> = []
      const hub = yield* fakeHub({
        inject: (req) => {
          if (req.attempt !== 1 || req.sessionId === undefined || STARTUP.has(req.methodName) || random() >= 0.1) return undefined
          const r = random()
          const action: InjectAction = r < 0.4
            ? { fault: [1000, "injected fault"] }
            : r < 0.7
            ? { http: 503 }
            : { afterCommit: { http: 502 } }
          injected.push(action)
          return action
        }
      })
      const workdir = yield* tempWorkdir
      const good = Array.from({ length: 90 }, () => hub.createTask("sleep", [0]))
      const bad = Array.from({ length: 10 }, () => hub.createTask("sleep", ["x"]))
      const layer = Layer.mergeAll(
        KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 10, retryInterval: 0.01 }).pipe(Layer.orDie),
        TaskRegistry.layerTest(genericHandlers),
        Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
        Containers.layerMemory({ hostName: HOST }),
        quietLogs
      )
      // The production setting: the cycle's reads go in multiCalls (faults hit whole batches too).
      yield* startDaemon(testOptions(workdir, { sleeptime: Duration.millis(20), batchHubCalls: true })).pipe(Effect.provide(layer))
      const finished = (id: number) => {
        const st = hub.state.task(id)?.state
        return st === TaskState.CLOSED || st === TaskState.FAILED
      }
      yield* waitLive(() => [...good, ...bad].every(finished), "all 100 tasks finished", 90_000).pipe(
        Effect.tapDefect(() => Effect.sync(() => {
          const byState = new Map<number, number>()
          for (const t of hub.state.tasks) byState.set(t.state, (byState.get(t.state) ?? 0) + 1)
          console.error("states", [...byState], "calls", hub.state.calls.length)
          console.error(hub.state.calls.slice(-30).map((c) => `${c.sessionId}#${c.callnum} ${c.method} ${JSON.stringify(c.params).slice(0, 80)} ${c.fault ? c.fault.faultString : ""} ${c.http ?? ""}`).join("\n"))
        }))
      )
      assert.isAbove(injected.length, 20)
      for (const id of good) assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED, `task ${id}`)
      for (const id of bad) {
        assert.strictEqual(hub.state.task(id)?.state, TaskState.FAILED, `task ${id}`)
        const r = decodeResponse(hub.state.task(id)!.result!)
        assert.isTrue(Either.isLeft(r) && "faultCode" in r.left && r.left.faultCode === 1019 as number)
      }
      // Exactly one report reached the hub's tables for each task: a report is committed when
      // it got no fault (an injected 5xx after the commit still counts as committed).
      for (const id of [...good, ...bad]) {
        const reports = hub.state.calls.filter((c) =>
          (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === id && c.fault === undefined &&
          (c.injected === undefined || "afterCommit" in c.injected)
        )
        assert.strictEqual(reports.length, 1, `task ${id}: ${reports.length} reports`)
      }
    })), 120_000)

  it.scoped("unbatched (the proxy garbles requests by name), a hub answering nonsense to host.getTasks: logged, the loop goes on", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      let garbled = 0
      // A proxy that answers the first three getTasks with a struct instead of an array.
      const proxy = yield* Effect.acquireRelease(
        Effect.async<{ server: http.Server; url: string }>((resume) => {
          const server = http.createServer((req, res) => {
            const chunks: Array<Buffer> = []
            req.on("data", (c: Buffer) => chunks.push(c))
            req.on("end", () => {
              const body = Buffer.concat(chunks)
              if (body.includes("<methodName>host.getTasks</methodName>") && garbled < 3) {
                garbled++
                const doc = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct><member><name>nonsense</name><value><int>1</int></value></member></struct></value>\n</param>\n</params>\n</methodResponse>\n"
                res.writeHead(200, { "Content-Type": "text/xml", "Content-Length": String(Buffer.byteLength(doc)) })
                res.end(doc)
                return
              }
              const headers: Record<string, string> = {}
              for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host" && k !== "content-length") headers[k] = v
              fetch(hub.url.replace(/\/kojihub$/, "") + (req.url ?? "/kojihub"), { method: req.method ?? "POST", headers, body })
                .then(async (r) => {
                  const text = Buffer.from(await r.arrayBuffer())
                  res.writeHead(r.status, { "Content-Type": r.headers.get("content-type") ?? "text/xml", "Content-Length": String(text.length) })
                  res.end(text)
                })
                .catch(() => {
                  res.writeHead(502)
                  res.end()
                })
            })
          })
          server.listen(0, "127.0.0.1", () => {
            const addr = server.address()
            const port = typeof addr === "object" && addr !== null ? addr.port : 0
            resume(Effect.succeed({ server, url: `http://127.0.0.1:${port}/kojihub` }))
          })
        }),
        ({ server }) => Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
      )
      const id = hub.createTask("sleep", [0])
      const layer = Layer.mergeAll(
        KojiHub.layerWithTransport({ server: proxy.url, user: HOST, password: PASSWORD, maxRetries: 2, retryInterval: 1 }).pipe(Layer.orDie),
        TaskRegistry.layerTest(genericHandlers),
        Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
        Containers.layerMemory({ hostName: HOST }),
        quietLogs
      )
      yield* startDaemon(testOptions(workdir, { batchHubCalls: false })).pipe(Effect.provide(layer))
      yield* until(() => hub.state.task(id)?.state === TaskState.CLOSED, "task closed after the nonsense")
      assert.strictEqual(garbled, 3)
      // The heartbeat went on through the bad answers.
      assert.isAtLeast(hub.state.calls.filter((c) => c.method === "host.updateHost").length, 4)
    }))

  it.scoped("a task that never ends is bounded by task_timeout", () =>
    Effect.gen(function*() {
      const hub = yield* fakeHub()
      const workdir = yield* tempWorkdir
      const id = hub.createTask("sleep", [1_000_000])
      const opts = testOptions(workdir)
      yield* startDaemon({ ...opts, runner: { ...opts.runner, taskTimeout: 30 } }).pipe(Effect.provide(daemonLayer(hub)))
      yield* until(() => hub.state.task(id)?.state === TaskState.FAILED, "task failed by timeout", 800)
      const r = decodeResponse(hub.state.task(id)!.result!)
      assert.isTrue(Either.isLeft(r))
      if (Either.isLeft(r) && "faultCode" in r.left) {
        assert.strictEqual(r.left.faultCode, 1000)
        assert.strictEqual(r.left.faultString, `Task ${id} timed out after 30 seconds`)
      }
    }))
})
