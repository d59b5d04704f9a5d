/**
 * Replays what the real kojid sent to the real hub (koji-captures/kojid/{startup,generic-sleep})
 * against the fake hub, in order, with the captured callnums: every call the fake implements must
 * answer as the real hub did (same fault code, or a value of the same shape: nil, list length for
 * task lists, struct keys). Session, host and task ids are mapped; calls outside the fake's scope
 * (builds, tags) are skipped, as is the TLS login (replaced by a password login).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import { join } from "node:path"
import { decodeCall, decodeResponse, isStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { startFakeHub } from "./FakeHub.js"
import { call, login, type Sess } from "./client.js"
import { KOJID_CAPTURES as CAPTURES } from "../support/captures.js"


interface Captured {
  readonly name: string
  readonly method: string
  readonly sessionId: number | undefined
  readonly callnum: number | undefined
  readonly params: ReadonlyArray<XmlRpcValue>
  readonly value?: XmlRpcValue
  readonly faultCode?: number
}

const load = (workflow: string): Array<Captured> => {
  const dir = join(CAPTURES, workflow, "raw")
  const names = fs.readdirSync(dir).filter((f) => f.endsWith(".request")).sort()
  return names.map((f) => {
    const req = fs.readFileSync(join(dir, f), "latin1")
    const [head, body] = [req.slice(0, req.indexOf("\r\n\r\n")), req.slice(req.indexOf("\r\n\r\n") + 4)]
    const header = (h: string) => new RegExp(`^${h}: (.*)$`, "mi").exec(head)?.[1]?.trim()
    const c = decodeCall(Buffer.from(body, "latin1"))
    if (Either.isLeft(c)) throw new Error(`${f}: ${c.left.message}`)
    const resText = fs.readFileSync(join(dir, f.replace(/\.request$/, ".response")), "latin1")
    const r = decodeResponse(Buffer.from(resText.slice(resText.indexOf("\r\n\r\n") + 4), "latin1"))
    const sid = header("Koji-Session-Id")
    const cn = header("Koji-Session-Callnum")
    const base = {
      name: f, method: c.right.methodName, params: c.right.params,
      sessionId: sid === undefined ? undefined : Number(sid), callnum: cn === undefined ? undefined : Number(cn)
    }
    if (Either.isRight(r)) return { ...base, value: r.right }
    if ("faultCode" in r.left) return { ...base, faultCode: r.left.faultCode }
    throw new Error(`${f}: ${r.left.message}`)
  })
}

/** Methods the fake hub implements; the rest (builds, tags, repos) are skipped in the replay. */
const IN_SCOPE = new Set([
  "exclusiveSession", "echo", "host.getID", "getSessionInfo", "listBuildroots", "host.getHostTasks", "host.getHost",
  "host.updateHost", "host.getTasks", "getTaskInfo", "host.openTask", "host.setTaskWeight", "subsession", "host.closeTask",
  "host.failTask", "logout", "logoutChild", "host.freeTasks", "host.refuseTask", "getTaskResult"
])

const TASK_PARAM0 = new Set(["host.openTask", "host.setTaskWeight", "host.closeTask", "host.failTask", "host.refuseTask", "getTaskResult"])

const replay = (workflow: string, hostName: string, preLogin: boolean) =>
  Effect.gen(function*() {
    const calls = load(workflow)
    const hub = yield* startFakeHub({ hosts: [{ name: hostName, password: "pw", arches: "x86_64" }], scheduler: { runInterval: 0 } })
    yield* Effect.promise(async () => {
      const sessions = new Map<number, Sess>()
      const tasks = new Map<number, number>()
      // task definitions as the capture shows them in getTaskInfo(id, request=True)
      const defs = new Map<number, Record<string, XmlRpcValue>>()
      for (const c of calls) {
        if (c.method === "getTaskInfo" && isStruct(c.value) && "request" in c.value) defs.set(c.value["id"] as number, c.value)
      }
      const mapTask = (v: XmlRpcValue): XmlRpcValue => (typeof v === "number" ? tasks.get(v) ?? 900000 + v : v)
      const mapParams = (c: Captured): ReadonlyArray<XmlRpcValue> => {
        const p = [...c.params]
        if (c.method === "getTaskInfo") p[0] = Array.isArray(p[0]) ? (p[0] as ReadonlyArray<XmlRpcValue>).map(mapTask) : mapTask(p[0]!)
        if (TASK_PARAM0.has(c.method)) p[0] = mapTask(p[0]!)
        if (c.method === "host.freeTasks") p[0] = (p[0] as ReadonlyArray<XmlRpcValue>).map(mapTask)
        if (c.method === "logoutChild") p[0] = sessions.get(p[0] as number)?.id ?? 999999
        if (c.method === "listBuildroots" && isStruct(p[0]) && typeof p[0]["hostID"] === "number") p[0] = { ...p[0], hostID: 1 }
        return p
      }
      if (preLogin) {
        const first = calls.find((c) => c.sessionId !== undefined)!
        sessions.set(first.sessionId!, await login(hub.url, hostName, "pw"))
      }
      let compared = 0
      for (const c of calls) {
        const where = `${workflow}/${c.name}`
        if (c.method === "sslLogin") {
          const s = await login(hub.url, hostName, "pw", false)
          sessions.set((c.value as Record<string, number>)["session-id"]!, s)
          continue
        }
        if (!IN_SCOPE.has(c.method)) continue
        if (c.method === "host.getTasks" && Array.isArray(c.value)) {
          for (const t of c.value as ReadonlyArray<Record<string, XmlRpcValue>>) {
            const id = t["id"] as number
            if (tasks.has(id)) continue
            const d = defs.get(id)
            if (d === undefined) throw new Error(`${where}: no getTaskInfo for task ${id}`)
            tasks.set(id, hub.createTask(d["method"] as string, d["request"] as ReadonlyArray<XmlRpcValue>, {
              arch: d["arch"] as string, priority: d["priority"] as number
            }))
          }
        }
        const s = sessions.get(c.sessionId!)
        assert.isDefined(s, `${where}: session ${c.sessionId}`)
        const r = await call(hub.url, c.method, mapParams(c), { session: s, callnum: c.callnum! })
        compared += 1
        if (c.faultCode !== undefined) {
          assert.strictEqual(r.fault?.faultCode, c.faultCode, `${where}: fault`)
          continue
        }
        assert.isUndefined(r.fault, `${where}: unexpected fault ${JSON.stringify(r.fault)}`)
        const got = r.value ?? null
        if (c.method === "subsession") {
          const v = c.value as Record<string, number>
          const g = got as Record<string, XmlRpcValue>
          sessions.set(v["session-id"]!, { id: g["session-id"] as number, key: g["session-key"] as string, callnum: 0 })
        }
        if (c.value === null) assert.isNull(got, `${where}: nil`)
        else if (Array.isArray(c.value)) {
          assert.isArray(got, `${where}: list`)
          if (["host.getTasks", "host.getHostTasks", "echo"].includes(c.method)) {
            assert.strictEqual((got as ReadonlyArray<unknown>).length, c.value.length, `${where}: list length`)
          }
        } else if (isStruct(c.value)) {
          assert.isTrue(isStruct(got), `${where}: struct`)
          assert.deepStrictEqual(Object.keys(got as object).sort(), Object.keys(c.value).sort(), `${where}: struct keys`)
        } else {
          assert.strictEqual(typeof got, typeof c.value, `${where}: value type`)
        }
      }
      assert.isAbove(compared, 50)
      return { hub, tasks }
    }).pipe(Effect.tap(({ hub, tasks }) =>
      Effect.sync(() => {
        // every task the capture took ends as it ended there
        for (const fakeId of tasks.values()) assert.include([2, 5], hub.state.task(fakeId)?.state)
        assert.isTrue(hub.state.sessions.filter((x) => x.master !== null).every((x) => x.closed))
      })))
  })

describe("fake hub: kojid captures replayed", () => {
  it.scoped("startup: login, heartbeat cycles, two tagBuild tasks opened, closed, subsessions logged out", () =>
    replay("startup", "kojid-ref", false))

  it.scoped("generic-sleep: a failing and a succeeding sleep task through the heartbeat loop", () =>
    replay("generic-sleep", "kojid-ref", true))
})
