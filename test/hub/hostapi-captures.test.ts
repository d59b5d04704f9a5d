/**
 * The typed API against real kojid traffic (koji-captures/kojid): for recorded requests of each
 * method, calling our HostApi with the same arguments puts the identical request body on the
 * wire (positional vs keyword exactly as kojid), and the recorded response decodes with our
 * Schema. A scripted server replays the recorded response.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { type HostApi, hostApi } from "../../src/hub/HostApi.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { decodeCall, Double, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { KOJID_CAPTURES as CAPTURES } from "../support/captures.js"


const num = (v: XmlRpcValue | undefined): number => (v instanceof Double ? v.value : (v as number))
const struct = (v: XmlRpcValue | undefined): XmlRpcStruct => v as XmlRpcStruct
/** The keyword struct of a call (the last param when it carries __starstar). */
const kw = (params: ReadonlyArray<XmlRpcValue>): XmlRpcStruct => {
  const last = params.at(-1)
  return last !== null && typeof last === "object" && !Array.isArray(last) && (last as XmlRpcStruct)["__starstar"] === true ? (last as XmlRpcStruct) : {}
}
const opt = <A>(v: XmlRpcValue | undefined): A | undefined => (v === undefined ? undefined : (v as A))

type Invoke = (api: HostApi, p: ReadonlyArray<XmlRpcValue>) => Effect.Effect<unknown, unknown>

/** How kojid's recorded arguments map onto our typed methods (casts: the values come from captures of exactly these calls). */
const invokers: Record<string, Invoke> = {
  "echo": (api, p) => api.echo(...p),
  "getSessionInfo": (api) => api.getSessionInfo(),
  "host.getID": (api) => api.getID(),
  "host.getHost": (api) => api.getHost(),
  "host.updateHost": (api, p) => p.length === 3 ? api.updateHost(num(p[0]), p[1] as boolean, struct(kw(p)["data"])) : api.updateHost(num(kw(p)["task_load"]), kw(p)["ready"] as boolean),
  "host.getTasks": (api) => api.getTasks(),
  "host.getHostTasks": (api) => api.getHostTasks(),
  "getTaskInfo": (api, p) => Array.isArray(p[0])
    ? api.getTaskInfos(p[0] as ReadonlyArray<number>)
    : api.getTaskInfo(p[0] as number, { ...(kw(p)["request"] !== undefined ? { request: kw(p)["request"] as boolean } : {}), ...(kw(p)["strict"] !== undefined ? { strict: kw(p)["strict"] as boolean } : {}) }),
  "host.openTask": (api, p) => api.openTask(p[0] as number),
  "host.setTaskWeight": (api, p) => api.setTaskWeight(p[0] as number, num(p[1])),
  "listBuildroots": (api, p) => {
    const k = kw(p)
    return api.listBuildroots({
      ...(k["hostID"] !== undefined ? { hostID: k["hostID"] as number } : {}),
      ...(k["state"] !== undefined ? { state: k["state"] as ReadonlyArray<number> } : {}),
      ...(k["buildrootID"] !== undefined ? { buildrootID: k["buildrootID"] as ReadonlyArray<number> } : {})
    })
  },
  "subsession": () => Effect.void,
  "host.subtask": (api, p) => {
    const k = kw(p)
    return api.subtask({
      method: k["method"] as string, arglist: k["arglist"] as ReadonlyArray<XmlRpcValue>, parent: k["parent"] as number,
      ...(k["label"] !== undefined ? { label: k["label"] as string } : {}),
      ...(k["arch"] !== undefined ? { arch: k["arch"] as string } : {}),
      ...(k["priority"] !== undefined ? { priority: k["priority"] as number } : {}),
      ...(k["channel"] !== undefined ? { channel: k["channel"] as string } : {})
    })
  },
  "host.taskSetWait": (api, p) => api.taskSetWait(p[0] as number, p[1] as ReadonlyArray<number>),
  "host.taskWait": (api, p) => api.taskWait(p[0] as number),
  "host.taskWaitResults": (api, p) => api.taskWaitResults(p[0] as number, p[1] as ReadonlyArray<number>, kw(p)["canfail"] as null),
  "host.newBuildRoot": (api, p) => api.newBuildRoot(p[0] as number, p[1] as string, kw(p)["task_id"] as number),
  "host.setBuildRootState": (api, p) => api.setBuildRootState(p[0] as number, p[1] as string),
  "host.setBuildRootList": (api, p) => api.setBuildRootList(p[0] as number, p[1] as ReadonlyArray<XmlRpcStruct>),
  "host.updateBuildRootList": (api, p) => api.updateBuildRootList(p[0] as number, p[1] as ReadonlyArray<XmlRpcStruct>),
  "host.closeTask": (api, p) => api.closeTask(p[0] as number, p[1] as string),
  "host.failTask": (api, p) => api.failTask(p[0] as number, p[1] as string),
  "host.initBuild": (api, p) => api.initBuild(struct(p[0])),
  "host.completeBuild": (api, p) => api.completeBuild(p[0] as number, p[1] as number, p[2] as string, p[3] as ReadonlyArray<string>, struct(p[4]), struct(kw(p)["logs"])),
  "host.failBuild": (api, p) => api.failBuild(p[0] as number, p[1] as number),
  "host.moveBuildToScratch": (api, p) => api.moveBuildToScratch(p[0] as number, p[1] as string, p[2] as ReadonlyArray<string>, struct(kw(p)["logs"])),
  "host.tagBuild": (api, p) => api.tagBuild(p[0] as number, p[1] as number, p[2] as number, kw(p)["force"] as boolean | null, kw(p)["fromtag"] as null),
  "host.tagNotification": (api, p) => api.tagNotification(p[0] as boolean, p[1] as number, p[2] as number | null, p[3] as number, p[4] as number, p[5] as boolean),
  "host.assertPolicy": (api, p) => api.assertPolicy(p[0] as string, struct(p[1])),
  "host.repoInit": (api, p) => api.repoInit(p[0] as number, { opts: struct(kw(p)["opts"]), taskId: kw(p)["task_id"] as number }),
  "host.repoDone": (api, p) => api.repoDone(p[0] as number, struct(p[1])),
  "host.freeTasks": (api, p) => api.freeTasks(p[0] as ReadonlyArray<number>),
  "getBuildConfig": (api, p) => api.getBuildConfig(p[0] as number, opt<number>(kw(p)["event"])),
  "getTag": (api, p) => api.getTag(p[0] as number, { ...(kw(p)["strict"] !== undefined ? { strict: kw(p)["strict"] as boolean } : {}), ...(kw(p)["event"] !== undefined ? { event: kw(p)["event"] as number | null } : {}) }),
  "repo.request": (api, p) => api.repoRequest(p[0] as number),
  "getLastEvent": (api) => api.getLastEvent(),
  "repoInfo": (api, p) => api.repoInfo(p[0] as number, kw(p)["strict"] as boolean),
  "checkUpload": (api, p) => api.checkUpload(p[0] as string, p[1] as string),
  "getExternalRepoList": (api, p) => api.getExternalRepoList(p[0] as number, opt<number>(kw(p)["event"])),
  "getPackageConfig": (api, p) => api.getPackageConfig(p[0] as number, p[1] as string, opt<number>(kw(p)["event"])),
  "getAverageBuildDuration": (api, p) => api.getAverageBuildDuration(p[0] as string, kw(p)["age"] as number),
  "getBuild": (api, p) => api.getBuild(p[0] as number, kw(p)["strict"] as boolean),
  "getBuildTarget": (api, p) => api.getBuildTarget(p[0] as string, { event: kw(p)["event"] as null }),
  "getChannel": (api, p) => api.getChannel(p[0] as number, kw(p)["strict"] as boolean),
  "getRepo": (api, p) => api.getRepo(p[0] as number),
  "getFullInheritance": (api, p) => api.getFullInheritance(p[0] as number)
}

interface Recorded {
  readonly file: string
  readonly method: string
  readonly params: ReadonlyArray<XmlRpcValue>
  readonly body: Buffer
  readonly response: Buffer
}

const bodyOf = (raw: Buffer): Buffer => raw.subarray(raw.indexOf("\r\n\r\n") + 4)

const recorded: Array<Recorded> = []
for (const workflow of fs.readdirSync(CAPTURES)) {
  const raw = join(CAPTURES, workflow, "raw")
  if (!fs.existsSync(raw)) continue
  for (const f of fs.readdirSync(raw).filter((n) => n.endsWith(".request")).sort()) {
    const request = fs.readFileSync(join(raw, f))
    const responseFile = join(raw, f.replace(/\.request$/, ".response"))
    if (!fs.existsSync(responseFile) || request.includes("application/octet-stream")) continue
    const response = fs.readFileSync(responseFile)
    if (response.length === 0) continue
    const decoded = decodeCall(bodyOf(request), { preserveDoubles: true })
    if (Either.isLeft(decoded)) continue
    recorded.push({ file: `${workflow}/${f}`, method: decoded.right.methodName, params: decoded.right.params, body: bodyOf(request), response: bodyOf(response) })
  }
}

/** Up to 4 recordings per method, preferring different argument shapes. */
const sample = (): Array<Recorded> => {
  const out: Array<Recorded> = []
  const seen = new Map<string, Set<string>>()
  for (const r of recorded) {
    if (!(r.method in invokers) || r.method === "subsession") continue
    const shapes = seen.get(r.method) ?? new Set<string>()
    seen.set(r.method, shapes)
    const shape = `${r.params.length}:${Object.keys(kw(r.params)).sort().join(",")}`
    if (shapes.size >= 4 || shapes.has(shape)) continue
    shapes.add(shape)
    out.push(r)
  }
  return out
}

describe("HostApi against kojid's recorded calls", () => {
  it.scoped("sends byte-identical request bodies and decodes every recorded response", () =>
    Effect.gen(function* () {
      assert.isAtLeast(recorded.length, 1000, `captures found under ${CAPTURES}`)
      let next: Buffer = Buffer.alloc(0)
      const bodies: Array<Buffer> = []
      const server = yield* Effect.acquireRelease(
        Effect.async<http.Server>((resume) => {
          const s = http.createServer((req, res) => {
            const chunks: Array<Buffer> = []
            req.on("data", (c: Buffer) => chunks.push(c))
            req.on("end", () => {
              bodies.push(Buffer.concat(chunks))
              res.writeHead(200, { "Content-Type": "text/xml", "Content-Length": String(next.length) })
              res.end(next)
            })
          })
          s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
        }),
        (s) => Effect.sync(() => { s.closeAllConnections(); s.close() })
      )
      const { port } = server.address() as AddressInfo // a TCP listener
      const context = yield* Layer.build(KojiHub.layerWithTransport({ server: `http://127.0.0.1:${port}/kojihub` }))
      const api = hostApi(Context.get(context, KojiHub).anonymous)
      const cases = sample()
      const covered = new Set(cases.map((c) => c.method))
      for (const method of Object.keys(invokers)) {
        if (method !== "subsession") assert.isTrue(covered.has(method), `a recorded ${method} call`)
      }
      for (const c of cases) {
        next = c.response
        const before = bodies.length
        const result = yield* Effect.either(invokers[c.method]!(api, c.params))
        assert.isTrue(Either.isRight(result), `${c.file}: ${Either.isLeft(result) ? String(result.left) : ""}`)
        assert.strictEqual(bodies.length, before + 1, c.file)
        assert.strictEqual(bodies[before]!.toString("utf8"), c.body.toString("utf8"), `${c.file}: request body differs`)
      }
      assert.isAtLeast(cases.length, 45)
    }))
})
