/**
 * The fake hub's `listHosts` against `RootExports.listHosts` (kojihub.py): its filters (arches as
 * whole words, channel by name or id, ready, enabled, user), its faults and its row shape.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { startFakeHub } from "./FakeHub.js"
import { call, ok } from "./client.js"

const names = (v: XmlRpcValue): Array<string> => {
  assert.isArray(v)
  return (v as ReadonlyArray<Record<string, XmlRpcValue>>).map((h) => h["name"] as string) // checked array of rows
}

describe("fake hub listHosts", () => {
  it.scoped("filters as the hub's query and returns its fields", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub({
        hosts: [
          { name: "b1", arches: "x86_64 i686", channels: ["default", "createrepo"] },
          { name: "b2", arches: "ppc64le", channels: ["default"] },
          { name: "b3", arches: "ppc64", enabled: false, channels: ["default"] }
        ]
      })
      const list = (kw: Record<string, XmlRpcValue> = {}) => Effect.promise(() => call(hub.url, "listHosts", [], { kw }))
      const value = (kw: Record<string, XmlRpcValue> = {}) => Effect.promise(() => ok(call(hub.url, "listHosts", [], { kw })))

      const all = yield* value()
      assert.deepStrictEqual(names(all), ["b1", "b2", "b3"])
      const row = (all as ReadonlyArray<Record<string, XmlRpcValue>>)[0]!
      assert.deepStrictEqual(Object.keys(row).sort(), ["arches", "capacity", "comment", "description", "enabled", "id", "name", "ready", "task_load", "update_ts", "user_id"])
      assert.strictEqual(row["arches"], "x86_64 i686")
      assert.strictEqual(row["id"], hub.state.hosts.find((h) => h.name === "b1")!.id)

      assert.deepStrictEqual(names(yield* value({ enabled: true })), ["b1", "b2"])
      assert.deepStrictEqual(names(yield* value({ enabled: false })), ["b3"])
      assert.deepStrictEqual(names(yield* value({ ready: true })), [])
      // \m(ppc64)\M: ppc64 is not a whole word of "ppc64le".
      assert.deepStrictEqual(names(yield* value({ arches: ["ppc64"] })), ["b3"])
      assert.deepStrictEqual(names(yield* value({ arches: "i686" })), ["b1"])
      assert.deepStrictEqual(names(yield* value({ arches: ["i686", "ppc64le"], enabled: true })), ["b1", "b2"])
      const createrepo = hub.state.channels.find((c) => c.name === "createrepo")!.id
      assert.deepStrictEqual(names(yield* value({ channelID: createrepo })), ["b1"])
      assert.deepStrictEqual(names(yield* value({ channelID: "default", enabled: true })), ["b1", "b2"])
      const b2user = hub.state.hosts.find((h) => h.name === "b2")!.userId
      assert.deepStrictEqual(names(yield* value({ userID: b2user })), ["b2"])
      assert.deepStrictEqual(names(yield* value({ userID: "b3" })), ["b3"])
      assert.strictEqual(yield* value({ queryOpts: { countOnly: true } }), 3)
      assert.deepStrictEqual(names(yield* value({ queryOpts: { order: "-name", limit: 2 } })), ["b3", "b2"])

      const empty = yield* list({ arches: [] })
      assert.deepStrictEqual(empty.fault, { faultCode: 1000, faultString: "arches option cannot be empty" })
      const noChannel = yield* list({ channelID: "nosuch" })
      assert.deepStrictEqual(noChannel.fault, { faultCode: 1000, faultString: "No such entry in table channels: nosuch" })
      const noUser = yield* list({ userID: "nobody" })
      assert.deepStrictEqual(noUser.fault, { faultCode: 1000, faultString: "No such user: 'nobody'" })
    }))
})
