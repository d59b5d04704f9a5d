/**
 * The anonymous hub client against the fake hub served over HTTP without login: the calls carry
 * no session, no callnum and no certificate, the fake hub answers them as the real hub does, and
 * a hub that is down, refuses anonymous calls or is no koji hub gives a one-line error naming it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { GenericError } from "../../src/koji/faults.js"
import { HubError } from "../../src/hub/HubError.js"
import {
  AnonymousHub, type AnonymousHubError, anonymousHubOptions, type AnonymousHubOptions, classifyAccess, HubAccessError
} from "../../src/local/anonymousHub.js"
import { kojiClientDefaults, KojiClientOptions, kojiConfigPaths, readKojiProfile } from "../../src/local/kojiProfile.js"
import { type FakeHub, type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"
import { addExternalRepo, addRepo, addTag, buildrootTables } from "../fakehub/buildroots.js"
import { addBuild, tagBuildAdmin } from "../fakehub/builds.js"
import { addTarget } from "../fakehub/targets.js"
import { CAPTURES_DIR } from "../support/captures.js"
import { tempDir, testPki } from "../support/tls.js"

/** A hub with target f40-build → tag f40-build (extra rpm.macro.dist) → READY repo, as a real hub would hold them. */
const world = (hub: FakeHub) => {
  const buildTag = addTag(hub.topdir, "f40-build", "x86_64 aarch64", { "rpm.macro.dist": ".fc40", "mock.package_manager": "dnf" })
  const destTag = addTag(hub.topdir, "f40", null)
  const target = addTarget(hub.topdir, "f40-candidate", buildTag, destTag)
  const repo = addRepo(hub.topdir, buildTag)
  return { buildTag, destTag, target, repo }
}

const withHub = <A, E>(
  body: (hub: FakeHub, client: typeof AnonymousHub.Service) => Effect.Effect<A, E>,
  options: FakeHubOptions = {},
  client: Partial<AnonymousHubOptions> = {}
) =>
  Effect.gen(function*() {
    const hub = yield* startFakeHub(options)
    return yield* Effect.flatMap(AnonymousHub, (c) => body(hub, c)).pipe(
      Effect.provide(AnonymousHub.layer({ server: hub.url, ...client }))
    )
  })

/** Every request the hub saw was anonymous: no session id or callnum, no query, the hub URL's path. */
const assertAnonymous = (hub: FakeHub) => {
  assert.isAbove(hub.state.calls.length, 0)
  for (const call of hub.state.calls) {
    assert.isUndefined(call.sessionId, `${call.method} carried a session`)
    assert.isUndefined(call.callnum, `${call.method} carried a callnum`)
    assert.strictEqual(call.query, "", `${call.method} had a query`)
    assert.strictEqual(call.path, "/kojihub")
  }
  assert.deepStrictEqual(hub.state.sessions, [], "no session was opened")
}

const accessError = (e: AnonymousHubError): HubAccessError => {
  assert.instanceOf(e, HubAccessError, `expected a HubAccessError, got ${e._tag}: ${e.message}`)
  return e as HubAccessError
}

const assertOneLine = (e: HubAccessError, server: string) => {
  assert.include(e.message, server)
  assert.notInclude(e.message, "\n")
}

/** An HTTP server answering every POST with `answer`; its URL and the requests it saw. */
const plainServer = (answer: (res: http.ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; requests: Array<{ url: string; headers: http.IncomingHttpHeaders; body: Buffer }>; server: http.Server }>((resume) => {
      const requests: Array<{ url: string; headers: http.IncomingHttpHeaders; body: Buffer }> = []
      const server = http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          requests.push({ url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) })
          answer(res)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo // a TCP listener always has an AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/kojihub`, requests, server }))
      })
    }),
    ({ server }) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

/** The HTTP message of a raw capture: head lines and body. */
const capturedMessage = (name: string) => {
  const bytes = fs.readFileSync(path.join(CAPTURES_DIR, "raw-client", "raw", name))
  const split = bytes.indexOf("\r\n\r\n")
  return { head: bytes.subarray(0, split).toString("latin1").split("\r\n"), body: bytes.subarray(split + 4) }
}

/** A TCP port nothing listens on (bound, then closed again). */
const closedPort = Effect.async<number>((resume) => {
  const server = http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo // a TCP listener always has an AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("AnonymousHub: the calls build-local makes, without login", () => {
  it.scoped("target → build tag → repo → build config at the repo's event, all anonymous", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        const w = world(hub)
        assert.strictEqual(yield* client.getAPIVersion, 1)
        const target = yield* client.getBuildTarget("f40-candidate")
        assert.deepInclude(target, { id: w.target, name: "f40-candidate", build_tag: w.buildTag, build_tag_name: "f40-build", dest_tag_name: "f40" })
        const tag = yield* client.getTag(target!.build_tag_name, { strict: true })
        assert.strictEqual(tag?.id, w.buildTag)
        const repo = yield* client.getRepo(w.buildTag)
        assert.strictEqual(repo?.id, w.repo)
        assert.strictEqual(repo?.state, 1)
        const info = yield* client.repoInfo(w.repo)
        assert.strictEqual(info?.create_event, repo?.create_event)
        const config = yield* client.getBuildConfig(w.buildTag, repo!.create_event)
        assert.strictEqual(config.name, "f40-build")
        assert.strictEqual(config.arches, "x86_64 aarch64")
        assert.deepStrictEqual(config.extra, { "rpm.macro.dist": ".fc40", "mock.package_manager": "dnf" })
        addExternalRepo(hub.topdir, w.buildTag, "fedora-updates", "https://example.com/updates/$arch/")
        const external = yield* client.getExternalRepoList(w.buildTag, repo!.create_event)
        assert.deepStrictEqual(external.map((e) => e.external_repo_name), ["fedora-updates"])
        const [rpms, builds] = yield* client.listTaggedRPMS(w.buildTag, { event: repo!.create_event, latest: true, draft: true })
        assert.deepStrictEqual([rpms.length, builds.length], [0, 0])
        assert.deepStrictEqual(
          hub.state.calls.map((c) => c.method),
          ["getAPIVersion", "getBuildTarget", "getTag", "getRepo", "repoInfo", "getBuildConfig", "getExternalRepoList", "listTaggedRPMS"]
        )
        assert.isTrue(hub.state.calls.every((c) => c.fault === undefined))
        assertAnonymous(hub)
      })))

  it.scoped("a target, tag or repo that does not exist is nil or the hub's fault, as the real hub answers", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        world(hub)
        assert.isNull(yield* client.getBuildTarget("no-such-target"))
        assert.isNull(yield* client.getTag("no-such-tag"))
        assert.isNull(yield* client.repoInfo(999))
        const noTag = yield* Effect.flip(client.getBuildConfig("no-such-tag"))
        assert.instanceOf(noTag, GenericError)
        assert.include(noTag.message, "No such tagInfo")
        const emptyTag = addTag(hub.topdir, "no-repo-build", "x86_64")
        assert.isNull(yield* client.getRepo(emptyTag))
        assertAnonymous(hub)
      })))

  it.scopedLive("sends exactly what koji's client sends without login: the recorded anonymous call, no session headers", () =>
    Effect.gen(function*() {
      const response = capturedMessage("50-anon-http-getAPIVersion.response").body
      const server = yield* plainServer((res) => {
        res.writeHead(200, { "Content-Type": "text/xml" })
        res.end(response)
      })
      const version = yield* Effect.flatMap(AnonymousHub, (c) => c.getAPIVersion).pipe(Effect.provide(AnonymousHub.layer({ server: server.url })))
      assert.strictEqual(version, 1)
      const [sent] = server.requests
      const recorded = capturedMessage("50-anon-http-getAPIVersion.request")
      assert.strictEqual(recorded.head[0], "POST /kojihub HTTP/1.1")
      assert.strictEqual(sent!.url, "/kojihub")
      assert.strictEqual(sent!.body.toString("utf8"), recorded.body.toString("utf8"))
      assert.deepStrictEqual(Object.keys(sent!.headers).filter((h) => h.startsWith("koji-")), [])
      assert.strictEqual(sent!.headers["user-agent"], "koji/1")
      assert.strictEqual(sent!.headers["content-type"], "text/xml")
      assert.isUndefined(sent!.headers["authorization"])
    }))

  it.scoped("a task's info, children, output files and buildroot listing, for --compare-task", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        const w = world(hub)
        const parent = hub.createTask("build", ["cli-build/x/hello-1.0-1.src.rpm", "f40-candidate", { scratch: true }])
        // The fake hub makes children only under an OPEN parent (a builder's host.subtask); a stand-alone buildArch has the files.
        const child = hub.createTask("buildArch", ["cli-build/x/hello-1.0-1.src.rpm", w.buildTag, "x86_64", true, {}], { arch: "x86_64" })
        const taskDir = path.join(hub.topdir, "work", "tasks", String(child % 10000), String(child))
        fs.mkdirSync(taskDir, { recursive: true })
        // Bigger than one download block (102400 bytes), so the file comes in three calls.
        const installed = Array.from({ length: 6000 }, (_, i) => `pkg${i}-1.0-1.fc40.x86_64\n`).join("")
        fs.writeFileSync(path.join(taskDir, "installed_pkgs.log"), installed)
        fs.writeFileSync(path.join(taskDir, "build.log"), "built\n")

        const info = yield* client.getTaskInfo(parent, { request: true })
        assert.strictEqual(info?.method, "build")
        assert.deepStrictEqual(info?.request, ["cli-build/x/hello-1.0-1.src.rpm", "f40-candidate", { scratch: true }])
        assert.isNull(yield* client.getTaskInfo(99999))
        assert.deepStrictEqual(yield* client.getTaskChildren(parent), [])
        assert.strictEqual((yield* client.getTaskInfo(child))?.arch, "x86_64")

        assert.deepStrictEqual(yield* client.listTaskOutput(child), ["build.log", "installed_pkgs.log"])
        assert.deepStrictEqual(yield* client.listTaskOutput(parent), [])
        const whole = yield* client.readTaskOutput(child, "installed_pkgs.log")
        assert.strictEqual(Buffer.from(whole).toString("utf8"), installed)
        const downloads = hub.state.calls.filter((c) => c.method === "downloadTaskOutput")
        assert.strictEqual(downloads.length, Math.ceil(installed.length / 102400) + 1)
        const part = yield* client.downloadTaskOutput(child, "build.log", { offset: 2, size: 3 })
        assert.strictEqual(Buffer.from(part).toString("utf8"), "ilt")
        const missing = yield* Effect.flip(client.downloadTaskOutput(child, "root.log"))
        assert.instanceOf(missing, GenericError)
        assert.strictEqual(missing.message, `no file "root.log" output by task ${child}`)
        const escape = yield* Effect.flip(client.downloadTaskOutput(child, "../../../etc/passwd"))
        assert.include(escape.message, "Invalid file name")

        const t = buildrootTables(hub.topdir)
        const rpmId = ++t.seq.rpm
        t.rpms.set(rpmId, {
          id: rpmId, name: "bash", version: "5.2", release: "1.fc40", epoch: null, arch: "x86_64", payloadhash: "00",
          size: 1, buildtime: 1, buildId: null, externalRepoId: null, draft: false
        })
        const brootId = ++t.seq.buildroot
        t.buildroots.set(brootId, {
          id: brootId, hostId: 1, repoId: w.repo, arch: "x86_64", taskId: child, state: 3, createEvent: 1, createTs: 1,
          retireEvent: null, retireTs: null, listing: new Map([[rpmId, false]])
        })
        const broots = yield* client.listTaskBuildroots(child)
        assert.deepStrictEqual(broots.map((b) => [b.id, b.task_id, b.repo_id]), [[brootId, child, w.repo]])
        assert.deepStrictEqual(yield* client.listTaskBuildroots(parent), [])
        const listing = yield* client.getBuildrootListing(brootId)
        assert.deepStrictEqual(listing.map((r) => [r.name, r.version, r.release, r.arch, r.epoch]), [["bash", "5.2", "1.fc40", "x86_64", null]])
        assertAnonymous(hub)
      })))
})

describe("AnonymousHub: waiting for a repo without login (RepoWatcher, anon)", () => {
  it.scopedLive("a repo newer than the tag's last change is taken at once", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        const w = world(hub)
        const repo = yield* client.waitRepo("f40-build", { pause: "20 millis", timeout: "2 seconds" })
        assert.strictEqual(repo.id, w.repo)
        assert.deepStrictEqual(hub.state.calls.map((c) => c.method), ["getTag", "tagLastChangeEvent", "repo.get"])
        assertAnonymous(hub)
      })))

  it.scopedLive("after a tag change it polls repo.get until a newer repo is READY", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        const w = world(hub)
        const build = addBuild(hub.topdir, { name: "hello", version: "1.0", release: "1" })
        const changed = tagBuildAdmin(hub.topdir, w.buildTag, build)
        const waiting = yield* Effect.fork(client.waitRepo(w.buildTag, { pause: "20 millis", timeout: "10 seconds" }))
        yield* Effect.sleep("150 millis")
        assert.isNull(yield* Fiber.poll(waiting).pipe(Effect.map((o) => (o._tag === "Some" ? "done" : null))))
        const fresh = addRepo(hub.topdir, w.buildTag)
        const repo = yield* Fiber.join(waiting)
        assert.strictEqual(repo.id, fresh)
        assert.isAtLeast(repo.create_event, changed)
        const polls = hub.state.calls.filter((c) => c.method === "repo.get")
        assert.isAtLeast(polls.length, 2)
        for (const p of polls) assert.deepStrictEqual(p.params, [w.buildTag, { min_event: changed, at_event: null, opts: null, __starstar: true }])
        assertAnonymous(hub)
      })))

  it.scopedLive("gives up after the timeout with koji's message", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        const w = world(hub)
        tagBuildAdmin(hub.topdir, w.buildTag, addBuild(hub.topdir, { name: "hello", version: "1.0", release: "1" }))
        const e = yield* Effect.flip(client.waitRepo("f40-build", { pause: "20 millis", timeout: "100 millis" }))
        assert.instanceOf(e, GenericError)
        assert.strictEqual(e.message, "Unsuccessfully waited 0:00 for a new f40-build repo")
      })))

  it.scopedLive("on a hub before 1.35 (no repo.get) it polls getRepo and checks the event itself", () =>
    withHub(
      (hub, client) =>
        Effect.gen(function*() {
          const w = world(hub)
          const changed = tagBuildAdmin(hub.topdir, w.buildTag, addBuild(hub.topdir, { name: "hello", version: "1.0", release: "1" }))
          const waiting = yield* Effect.fork(client.waitRepo("f40-build", { pause: "20 millis", timeout: "10 seconds" }))
          yield* Effect.sleep("100 millis")
          const fresh = addRepo(hub.topdir, w.buildTag)
          const repo = yield* Fiber.join(waiting)
          assert.strictEqual(repo.id, fresh)
          assert.isAtLeast(repo.create_event, changed)
          const methods = hub.state.calls.map((c) => c.method)
          assert.strictEqual(methods.filter((m) => m === "repo.get").length, 1)
          assert.isAtLeast(methods.filter((m) => m === "getRepo").length, 2)
        }),
      { inject: (r) => (r.methodName === "repo.get" ? { fault: [1000, "Invalid method: repo.get"] } : undefined) }
    ))
})

describe("AnonymousHub: a hub it cannot use is one clear line", () => {
  it.scopedLive("a hub that is down names the URL", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const server = `http://127.0.0.1:${port}/kojihub`
      const e = accessError(yield* Effect.flip(
        Effect.flatMap(AnonymousHub, (c) => c.getBuildTarget("f40-candidate")).pipe(Effect.provide(AnonymousHub.layer({ server })))
      ))
      assert.strictEqual(e.reason, "Unreachable")
      assert.strictEqual(e.method, "getBuildTarget")
      assert.match(e.message, new RegExp(`^cannot reach the koji hub at ${server.replace(/[.]/g, "\\.")}: .*ECONNREFUSED`))
      assertOneLine(e, server)
    }))

  it.scopedLive("a hub that refuses anonymous calls with AuthError says it requires login", () =>
    withHub(
      (hub, client) =>
        Effect.gen(function*() {
          world(hub)
          const e = accessError(yield* Effect.flip(client.getBuildTarget("f40-candidate")))
          assert.strictEqual(e.reason, "LoginRequired")
          assert.strictEqual(
            e.message,
            `the koji hub at ${hub.url} requires login: it refused the anonymous call getBuildTarget (AuthError: Not logged-in)`
          )
          assert.strictEqual(hub.state.calls.length, 1, "a refusal is not retried")
        }),
      { inject: (r) => (r.sessionId === undefined ? { fault: [1002, "Not logged-in"] } : undefined) }
    ))

  it.scopedLive("an ActionNotAllowed fault, or HTTP 401/403 from the web server, says the same", () =>
    Effect.gen(function*() {
      for (const [inject, why] of [
        [{ fault: [1004, "you must be logged in for this operation"] as const }, "ActionNotAllowed: you must be logged in for this operation"],
        [{ http: 401 }, "HTTP 401 Unauthorized"],
        [{ http: 403 }, "HTTP 403 Forbidden"]
      ] as const) {
        const e = yield* withHub((hub, client) =>
          Effect.gen(function*() {
            world(hub)
            const err = accessError(yield* Effect.flip(client.getRepo("f40-build")))
            assertOneLine(err, hub.url)
            return err
          }), { inject: () => inject })
        assert.strictEqual(e.reason, "LoginRequired")
        assert.include(e.message, "requires login")
        assert.include(e.message, `refused the anonymous call getRepo (${why})`)
      }
    }))

  it.scopedLive("a server that is no koji hub, or a failing one, says so", () =>
    Effect.gen(function*() {
      const html = yield* plainServer((res) => {
        res.writeHead(200, { "Content-Type": "text/html" })
        res.end("<html><body>Koji web UI</body></html>")
      })
      const notFound = yield* plainServer((res) => {
        res.writeHead(404, { "Content-Type": "text/html" })
        res.end("<html>Not Found</html>")
      })
      const broken = yield* plainServer((res) => {
        res.writeHead(502, { "Content-Type": "text/html" })
        res.end("<html>Bad Gateway</html>")
      })
      const tryHub = (server: string) =>
        Effect.flip(Effect.flatMap(AnonymousHub, (c) => c.getBuildTarget("x")).pipe(Effect.provide(AnonymousHub.layer({ server }))))
      const a = accessError(yield* tryHub(html.url))
      assert.strictEqual(a.reason, "BadAnswer")
      assert.include(a.message, `the server at ${html.url} does not answer as a koji hub`)
      assertOneLine(a, html.url)
      const b = accessError(yield* tryHub(notFound.url))
      assert.strictEqual(b.reason, "BadAnswer")
      assert.include(b.message, "HTTP 404 Not Found")
      const c = accessError(yield* tryHub(broken.url))
      assert.strictEqual(c.reason, "Unreachable")
      assert.include(c.message, "HTTP 502 Bad Gateway")
      assertOneLine(c, broken.url)
    }))

  it.scopedLive("an offline hub is not retried without offline_retry (koji's client default)", () =>
    withHub((hub, client) =>
      Effect.gen(function*() {
        hub.setOffline(true)
        const e = yield* Effect.flip(client.getAPIVersion)
        assert.strictEqual(e._tag, "ServerOffline")
        assert.strictEqual(hub.state.calls.length, 1)
      })))
})

describe("AnonymousHub from a koji client profile", () => {
  it.scopedLive("-p NAME: the hub of a profile in a koji config file, with its timeout and retry settings", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const w = world(hub)
      const home = yield* tempDir("anon-profile-")
      fs.mkdirSync(path.join(home, ".koji"))
      fs.writeFileSync(path.join(home, ".koji", "config"), [
        "[koji]", "server = http://127.0.0.1:9/kojihub", "",
        "[fake]", `server = ${hub.url}`, "topurl = http://127.0.0.1:9/kojifiles", "timeout = 30", ""
      ].join("\n"))
      const profile = yield* readKojiProfile({
        profile: "fake", home, paths: kojiConfigPaths(home, { etc: path.join(home, "no-etc") }), userHome: () => undefined
      })
      assert.strictEqual(anonymousHubOptions(profile).timeout, 30)
      const target = yield* Effect.flatMap(AnonymousHub, (c) => c.getBuildTarget("f40-candidate")).pipe(
        Effect.provide(AnonymousHub.layerProfile(profile))
      )
      assert.strictEqual(target?.build_tag, w.buildTag)
      assertAnonymous(hub)
    }))
})

describe("AnonymousHub over TLS", () => {
  it.scopedLive("verifies the hub with serverca; another CA is a one-line certificate error; no_ssl_verify skips the check", () =>
    Effect.gen(function*() {
      const pki = yield* testPki([])
      const hub = yield* startFakeHub({ tls: { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caPem, clientCert: "handshake" } })
      const version = (options: Partial<AnonymousHubOptions>) =>
        Effect.flatMap(AnonymousHub, (c) => c.getAPIVersion).pipe(Effect.provide(AnonymousHub.layer({ server: hub.url, ...options })))
      assert.strictEqual(yield* version({ serverca: pki.caFile }), 1)
      assert.strictEqual(yield* version({ noSslVerify: true }), 1)
      const e = accessError(yield* Effect.flip(version({ serverca: pki.otherCaFile })))
      assert.strictEqual(e.reason, "Certificate")
      assert.include(e.message, `TLS certificate of the koji hub at ${hub.url} not accepted`)
      assert.include(e.message, "serverca")
      assertOneLine(e, hub.url)
      // koji's client verifies against serverca when it has one, whatever no_ssl_verify says.
      assert.strictEqual(accessError(yield* Effect.flip(version({ serverca: pki.otherCaFile, noSslVerify: true }))).reason, "Certificate")
      assert.deepStrictEqual(hub.state.sessions, [])
    }))
})

describe("classifyAccess", () => {
  const server = "https://hub.example.com/kojihub"
  const classify = classifyAccess(server, "getRepo")
  it("a TLS demand for a client certificate means login is required", () => {
    const e = classify(new HubError({
      reason: "Certificate", method: "getRepo",
      message: `getRepo: TLS certificate error with ${server}: ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED tlsv13 alert certificate required`
    }))
    assert.strictEqual(e._tag === "HubAccessError" ? e.reason : e._tag, "LoginRequired")
  })
  it("a timeout is Unreachable with the time waited", () => {
    const e = classify(new HubError({ reason: "Timeout", method: "getRepo", message: `getRepo: no answer from ${server} within 12h` }))
    assert.strictEqual(e.message, `the koji hub at ${server} did not answer getRepo within 12h`)
  })
  it("other faults and decode errors pass unchanged", () => {
    const fault = new GenericError({ faultString: "No such tagInfo: 'x'" })
    assert.strictEqual(classify(fault), fault)
    const decode = new HubError({ reason: "Decode", method: "getRepo", message: "getRepo: field id: expected number" })
    assert.strictEqual(classify(decode), decode)
  })
})

describe("anonymousHubOptions", () => {
  const profile = (patch: Partial<KojiClientOptions>): KojiClientOptions =>
    Schema.decodeUnknownSync(KojiClientOptions)({ ...kojiClientDefaults, cert: "", serverca: "", ...patch })

  it("takes the profile's hub, CA, timeout and retry settings", () => {
    const o = anonymousHubOptions(profile({ server: "https://hub/kojihub", serverca: "/etc/pki/koji.ca", timeout: 0, anon_retry: true }))
    assert.deepStrictEqual(o, {
      server: "https://hub/kojihub", serverca: "/etc/pki/koji.ca", noSslVerify: false, timeout: undefined, anonRetry: true,
      maxRetries: 30, retryInterval: 20, offlineRetry: false, offlineRetryInterval: 20
    })
    assert.isUndefined(anonymousHubOptions(profile({})).serverca)
  })
})
