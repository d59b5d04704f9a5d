/**
 * `check-config --probe` (issue 14 §7) against what a builder talks to: a real podman service, the
 * test image and a missing one, a topurl that answers and one that does not, a fake hub that
 * answers anonymously and knows the host — one checklist line each, exit 1 when one failed.
 */
import * as http from "node:http"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import { checkConfigCommand } from "../../src/cli/commandLine.js"
import { startFakeHub } from "../fakehub/FakeHub.js"
import { runAdmin } from "../admin/support.js"
import { ensureTestImage, podmanInstalled, podmanSkipReason, TEST_IMAGE, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)
const host = uniqueHostName("probe")
let podman: { readonly socket: string }

describe.skipIf(!podmanInstalled)("check-config --probe", () => {
  podman = podmanServiceForTests(host)
  beforeAll(() => ensureTestImage())

  it.scopedLive("podman: a checklist of podman, images, selinux, topdir, each topurl, the hub and the host", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-probe-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const hub = yield* startFakeHub({ hosts: [{ name: host, password: "pw", capacity: 10 }] })
      const files = yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<http.Server>((resolve) => {
          const s = http.createServer((_q, r) => {
            r.writeHead(403)
            r.end("no listing")
          })
          s.listen(0, "127.0.0.1", () => resolve(s))
        })),
        (s) => Effect.promise(() => new Promise<void>((r) => s.close(() => r())))
      )
      const filesPort = (files.address() as { port: number }).port
      const conf = path.join(dir, "kojid.conf")
      const write = (extra: string) => writeFileSync(conf, [
        "[kojid]", `server = ${hub.url}`, `topurl = http://127.0.0.1:${filesPort}/kojifiles${extra}`, `topdir = ${dir}`, `user = ${host}`,
        "[adjutant]", `podman_socket = unix://${podman.socket}`, `bootstrap_image = ${TEST_IMAGE}`, `image_state_file = ${dir}/images.json`, ""
      ].join("\n"))

      write("")
      const good = yield* runAdmin(checkConfigCommand, ["-c", conf, "--probe"])
      assert.strictEqual(good.status, 0, `${good.stdout}\n${good.stderr}`)
      const list = good.stdout.slice(good.stdout.indexOf("# probe"))
      assert.match(list, /^ok\s+podman\s+.*answers \(podman \d/m)
      assert.match(list, new RegExp(`^ok\\s+image\\s+${TEST_IMAGE.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} is in podman's storage`, "m"))
      assert.match(list, /^(ok|note)\s+selinux\s+/m)
      assert.match(list, /^ok\s+topdir\s+.* is readable \(no repos\/ below it/m)
      assert.match(list, /^ok\s+topurl\s+http:\/\/127\.0\.0\.1:\d+\/kojifiles answers \(HTTP 403\)/m)
      assert.match(list, /^ok\s+hub\s+.* answers an anonymous call \(API version \d+\)/m)
      assert.match(list, new RegExp(`^ok\\s+host\\s+${host} exists on the hub`, "m"))

      write(" http://127.0.0.1:9/kojifiles")
      const bad = yield* runAdmin(checkConfigCommand, ["-c", conf, "--probe"])
      assert.strictEqual(bad.status, 1, bad.stdout.slice(bad.stdout.indexOf("# probe")))
      assert.match(bad.stdout, /^FAIL\s+topurl\s+http:\/\/127\.0\.0\.1:9\/kojifiles: /m, bad.stdout.slice(bad.stdout.indexOf("# probe")))
    }), 60_000)
})
