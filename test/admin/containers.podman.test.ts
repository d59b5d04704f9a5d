/**
 * `koji-adjutant containers list|reap` and `images list|pull` against real podman (issue 14 §6),
 * beside a "running daemon": reap keeps the containers of the tasks the daemon's /status lists
 * (or, without status_listen, the tasks the hub has OPEN on this host) and those without a task,
 * and refuses when it can ask neither. The containers are made by the daemon's own Containers
 * service with the labels it gives them; each run counts in koji_adjutant_containers_total.
 */
import { execFileSync } from "node:child_process"
import * as http from "node:http"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { beforeAll } from "vitest"
import { containersCommand } from "../../src/admin/containers.js"
import { imagesCommand } from "../../src/admin/images.js"
import { Containers } from "../../src/containers/Containers.js"
import { hostApi } from "../../src/hub/HostApi.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { makeMetrics, Metrics } from "../../src/metrics/Metrics.js"
import { startFakeHub } from "../fakehub/FakeHub.js"
import { containersOfHost, ensureTestImage, podmanInstalled, podmanSkipReason, TEST_IMAGE, testContainersOptions, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { freePort } from "../support/prometheus.js"
import { runAdmin } from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const host = uniqueHostName("admin")
let podman: { readonly socket: string }

/** A stand-in /status answering that `tasks` run. */
const statusServer = (port: number, tasks: ReadonlyArray<number>) =>
  Effect.acquireRelease(
    Effect.promise(() => new Promise<http.Server>((resolve) => {
      const server = http.createServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({
          version: "test", node: "v24", host, hostId: 1, pid: 1, startTs: 0, ready: true, notReady: [], taskLoad: 0, maxjobs: 10,
          restartPending: false, lastHeartbeat: Date.now(), tasks: tasks.map((id) => ({ id, method: "buildArch" })), healthy: true
        }))
      })
      server.listen(port, "127.0.0.1", () => resolve(server))
    })),
    (server) => Effect.promise(() => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }))
  )

describe.skipIf(!podmanInstalled)("admin commands (real podman)", () => {
  podman = podmanServiceForTests(host)
  beforeAll(() => ensureTestImage())

  it.scopedLive("podman: containers list and reap beside a daemon, through its /status and through the hub", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-admin-ctr-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const hub = yield* startFakeHub({ hosts: [{ name: host, password: "pw", capacity: 10 }], scheduler: { runInterval: 0 } })
      const port = yield* Effect.promise(freePort)
      const conf = (adjutant: string) => {
        const file = path.join(dir, "kojid.conf")
        writeFileSync(file, `[kojid]\nserver = ${hub.url}\ntopurl = http://127.0.0.1:9/kojifiles\nuser = ${host}\n[adjutant]\npodman_socket = unix://${podman.socket}\n${adjutant}\n`)
        return file
      }
      // The daemon's containers: a running task (101), an ended one (102), one without a task.
      const metrics = makeMetrics({ exported: true, version: "test" })
      const scope = yield* Scope.make()
      yield* Effect.gen(function*() {
        const c = yield* Containers
        const running = yield* c.create({ image: TEST_IMAGE, command: ["sleep", "300"], role: "build", taskId: 101 })
        yield* running.start
        yield* c.create({ image: TEST_IMAGE, command: ["true"], role: "scm", taskId: 102 })
        yield* c.create({ image: TEST_IMAGE, command: ["true"], role: "test" })
        const done = yield* c.run({ image: TEST_IMAGE, command: ["false"], role: "test" })
        assert.strictEqual(done.exitCode, 1)
      }).pipe(
        Effect.provide(Containers.layer(testContainersOptions(podman.socket, host))),
        Effect.provideService(Metrics, metrics),
        Scope.extend(scope)
      )
      const page = yield* metrics.page({ ready: true, notReady: [], lastHeartbeat: null, tasks: [], healthy: true })
      assert.match(page.body, /^koji_adjutant_containers_total\{result="failure"\} 1$/m)
      // The daemon "crashed": its scope never closes; the containers stay in podman.
      assert.strictEqual(containersOfHost(host).length, 3)

      const list = yield* runAdmin(containersCommand, ["list", "-c", conf("")])
      assert.strictEqual(list.status, 0, list.stderr)
      assert.include(list.stdout, `3 containers of host ${host}`)
      assert.match(list.stdout, /kojiadj-build-t101-\S+\s+running\s+101\s+build/)
      assert.match(list.stdout, /kojiadj-scm-t102-\S+\s+created\s+102\s+scm/)

      // No status_listen and no hub: refuse, remove nothing.
      writeFileSync(path.join(dir, "nohub.conf"), `[kojid]\nserver = http://127.0.0.1:9/kojihub\ntopurl = http://127.0.0.1:9/kojifiles\nuser = ${host}\n[adjutant]\npodman_socket = unix://${podman.socket}\n`)
      const neither = yield* runAdmin(containersCommand, ["reap", "-c", path.join(dir, "nohub.conf")])
      assert.strictEqual(neither.status, 1)
      assert.match(neither.stderr, /\[ERROR\] koji\.admin: containers reap: cannot ask the hub which tasks run here: .*Nothing removed/)
      assert.strictEqual(containersOfHost(host).length, 3)

      // The daemon's /status says 101 runs: 102's container goes, 101's and the task-less one stay.
      const server = yield* statusServer(port, [101])
      const reaped = yield* runAdmin(containersCommand, ["reap", "-c", conf(`status_listen = 127.0.0.1:${port}`)])
      assert.strictEqual(reaped.status, 0, reaped.stderr)
      assert.include(reaped.stdout, "the daemon runs 1 task: their containers stay")
      assert.match(reaped.stdout, /removed kojiadj-scm-t102-\S+\n1 removed, 2 kept/)
      assert.strictEqual(containersOfHost(host).length, 2)
      yield* Effect.promise(() => new Promise<void>((r) => server.close(() => r())))

      // Without status_listen: the hub. Task 101 is OPEN on this host, so its container stays.
      const t = hub.createTask("sleep", [600], { assign: host })
      yield* Effect.gen(function*() {
        const session = yield* (yield* KojiHub).loginScoped(true)
        yield* hostApi(session).openTask(t)
      }).pipe(Effect.scoped, Effect.provide(KojiHub.layerWithTransport({ server: hub.url, user: host, password: "pw" })))
      const c2 = yield* Effect.gen(function*() {
        const c = yield* Containers
        return yield* c.create({ image: TEST_IMAGE, command: ["true"], role: "build", taskId: t })
      }).pipe(Effect.provide(Containers.layer(testContainersOptions(podman.socket, host))), Scope.extend(scope))
      const viaHub = yield* runAdmin(containersCommand, ["reap", "-c", conf("")])
      assert.strictEqual(viaHub.status, 0, viaHub.stderr)
      assert.include(viaHub.stdout, "no daemon status: containers of tasks the hub has OPEN on this host stay")
      assert.match(viaHub.stdout, /removed kojiadj-build-t101-\S+\n1 removed, 2 kept/)
      assert.isTrue(containersOfHost(host).includes(c2.name))
      yield* Scope.close(scope, Exit.void)
    }), 120_000)

  it.scopedLive("podman: images list and pull read kojid.conf's images", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(os.tmpdir(), "adjutant-admin-img-"))),
        (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
      )
      const conf = path.join(dir, "kojid.conf")
      writeFileSync(conf, [
        "[kojid]", "server = http://127.0.0.1:9/kojihub", "topurl = http://127.0.0.1:9/kojifiles",
        "[adjutant]", `podman_socket = unix://${podman.socket}`, `bootstrap_image = ${TEST_IMAGE}`,
        "image_rules = el9-* = localhost/koji-adjutant-no-such-image:1", `image_state_file = ${dir}/images.json`, ""
      ].join("\n"))
      const list = yield* runAdmin(imagesCommand, ["list", "-c", conf])
      assert.strictEqual(list.status, 0, list.stderr)
      assert.match(list.stdout, new RegExp(`^${TEST_IMAGE.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}\\s+[0-9a-f]{12}\\s+\\d+ MB`, "m"))
      assert.match(list.stdout, /^localhost\/koji-adjutant-no-such-image:1\s+missing/m)
      const pull = yield* runAdmin(imagesCommand, ["pull", "-c", conf])
      assert.strictEqual(pull.status, 1)
      assert.match(pull.stdout, new RegExp(`${TEST_IMAGE.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: [0-9a-f]{12} \\(local image, not pulled\\)`))
      assert.match(pull.stderr, /\[ERROR\] koji\.admin: localhost\/koji-adjutant-no-such-image:1: /)
      assert.match(pull.stderr, /1 of 2 images could not be pulled/)
    }), 60_000)

  it.scopedLive("podman: with SELinux on, containers are created with label=disable (shown by podman inspect) and run; without, no label option", () =>
    Effect.gen(function*() {
      const securityOpt = (name: string): string =>
        execFileSync("podman", ["container", "inspect", "--format", "{{json .HostConfig.SecurityOpt}}", name], { encoding: "utf8" })
      const created = (selinux: boolean) =>
        Effect.flatMap(Containers, (c) => c.create({ image: TEST_IMAGE, command: ["true"], role: "test" })).pipe(
          Effect.provide(Containers.layer({ ...testContainersOptions(podman.socket, host), selinux }))
        )
      const on = yield* created(true)
      assert.include(securityOpt(on.name), "label=disable")
      const off = yield* created(false)
      assert.notInclude(securityOpt(off.name), "label=disable")
      const r = yield* Effect.flatMap(Containers, (c) => c.run({ image: TEST_IMAGE, command: ["true"], role: "test" })).pipe(
        Effect.provide(Containers.layer({ ...testContainersOptions(podman.socket, host), selinux: true }))
      )
      assert.strictEqual(r.exitCode, 0)
    }), 60_000)
})
