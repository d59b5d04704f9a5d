/**
 * buildNotification / tagNotification through the daemon and the fake hub, delivered to a real
 * SMTP server on loopback (smtp-server, with AUTH): envelope, subject, X-Koji-* headers and
 * body as kojid composes them; nil when there is nothing to send; an unreachable server fails
 * the task with a clear fault within a bounded time and the daemon carries on.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { mkdirSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SMTPServer } from "smtp-server"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { makeMailer } from "../../src/mail/Mailer.js"
import { sleepTask } from "../../src/tasks/generic.js"
import { makeNotificationHandlers } from "../../src/tasks/notifications.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { addBuild, buildNotificationParams, repoWorld, tagNotificationParams } from "../fakehub/newrepo.js"
import { addTag } from "../fakehub/buildroots.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { daemonOptions, DONE, FaultResult, HOST, PASSWORD, resultAs, startDaemon, tempDir, waitFor } from "./newRepoSupport.js"

interface Received {
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly user: string | undefined
  readonly text: string
}

/** A loopback SMTP server requiring AUTH (user/secret) over plain SMTP, as kojid's smtplib login does. */
const smtpServer = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly received: Array<Received>; readonly server: SMTPServer }>((resume) => {
    const received: Array<Received> = []
    const server = new SMTPServer({
      authMethods: ["PLAIN", "LOGIN"],
      allowInsecureAuth: true,
      disabledCommands: ["STARTTLS"],
      onAuth: (auth, _session, cb) =>
        auth.username === "kojimail" && auth.password === "s3cret" ? cb(null, { user: auth.username }) : cb(new Error("bad credentials")),
      onData: (stream, session, cb) => {
        const chunks: Array<Buffer> = []
        stream.on("data", (c: Buffer) => chunks.push(c))
        stream.on("end", () => {
          received.push({
            from: session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address,
            to: session.envelope.rcptTo.map((r) => r.address),
            user: typeof session.user === "string" ? session.user : undefined,
            text: Buffer.concat(chunks).toString("utf8")
          })
          cb()
        })
      }
    })
    server.listen(0, "127.0.0.1", () => {
      const addr = server.server.address()
      resume(Effect.succeed({ port: typeof addr === "object" && addr !== null ? addr.port : 0, received, server }))
    })
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((done) => server.close(() => done())))
)

/** A loopback port nobody listens on. */
const closedPort = Effect.promise(() => new Promise<number>((done) => {
  const s = net.createServer()
  s.listen(0, "127.0.0.1", () => {
    const addr = s.address()
    const port = typeof addr === "object" && addr !== null ? addr.port : 1
    s.close(() => done(port))
  })
}))

const FROM = "Koji Build System <buildsys@example.com>"
const TOPURL = "http://koji.example/kojifiles"
const WEBURL = "http://koji.example/koji"

/** Runs `body` with a daemon serving sleep and the notification handlers (mail through `smtphost`). */
const withDaemon = <A, E>(hub: FakeHub, smtphost: string, body: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const workdir = yield* tempDir("adjutant-work-")
    const mailer = makeMailer({ smtphost, user: "kojimail", pass: "s3cret", timeout: "5 seconds" })
    const layers = Layer.mergeAll(
      KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
      Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
      TaskRegistry.layerTest([sleepTask, ...makeNotificationHandlers({ mailer, fromAddr: FROM, topurl: TOPURL })]),
      Containers.layerMemory({ hostName: HOST })
    )
    return yield* Effect.gen(function*() {
      yield* startDaemon(daemonOptions(workdir))
      return yield* body
    }).pipe(Effect.scoped, Effect.provide(layers))
  })

const runTask = (hub: FakeHub, method: string, params: Parameters<FakeHub["createTask"]>[1]) =>
  Effect.gen(function*() {
    const id = hub.createTask(method, params)
    yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `${method} ${id}`, "60 seconds")
    return id
  })

/** The fake hub with a completed build whose build task (a closed sleep task) has a log and rpms. */
const setup = Effect.gen(function*() {
  const hub = yield* startFakeHub({ hosts: [{ name: HOST, password: PASSWORD, capacity: 10 }], scheduler: { runInterval: 0 } })
  const w = repoWorld(hub.topdir)
  const tagId = addTag(hub.topdir, "f-updates-candidate", "x86_64")
  return { hub, w, tagId }
})

describe("notifications", () => {
  it.scopedLive("buildNotification and tagNotification are delivered with kojid's subject, headers and body; nil when nothing to send", () =>
    Effect.gen(function*() {
      const smtp = yield* smtpServer
      const { hub, w, tagId } = yield* setup
      yield* withDaemon(hub, `127.0.0.1:${smtp.port}`, Effect.gen(function*() {
        const buildTask = yield* runTask(hub, "sleep", [0])
        const taskDir = path.join(hub.topdir, "work", "tasks", String(buildTask), String(buildTask))
        mkdirSync(taskDir, { recursive: true })
        for (const f of ["build.log", "root.log", "hello-1.0-1.noarch.rpm", "hello-1.0-1.src.rpm", "noarch_rpmdiff.json"]) {
          writeFileSync(path.join(taskDir, f), "x")
        }
        addBuild(w, { id: 7, name: "hello", version: "1.0", release: "1", taskId: buildTask, owner: "kojiadmin" }, [
          { id: 70, arch: "src" }, { id: 71, arch: "noarch" }
        ])
        w.changelogs.set(7, [
          { date: "2026-11-23 00:00:00", author: "Tester <t@example.com> - 1.0-1", text: "- first release" }
        ])

        const notify = yield* runTask(hub, "buildNotification", buildNotificationParams(w, ["a@example.com", "b@example.com"], 7, {
          id: 1, name: "f-updates", dest_tag: tagId, dest_tag_name: "f-updates", build_tag: tagId, build_tag_name: "f-updates-build"
        }, WEBURL))
        assert.strictEqual(hub.state.task(notify)!.state, 2, JSON.stringify(hub.state.taskResult(notify)))
        assert.strictEqual(hub.state.taskResult(notify), "sent notification of build 7 to: a@example.com, b@example.com")
        assert.strictEqual(smtp.received.length, 1)
        const m = smtp.received[0]!
        assert.strictEqual(m.from, "buildsys@example.com")
        assert.deepStrictEqual(m.to, ["a@example.com", "b@example.com"])
        assert.strictEqual(m.user, "kojimail")
        const [head, body] = [m.text.slice(0, m.text.indexOf("\r\n\r\n")), m.text.slice(m.text.indexOf("\r\n\r\n") + 4)]
        assert.include(head, `From: ${FROM}`)
        assert.include(head, "Subject: Package: hello-1.0-1 Tag: f-updates Status: complete Built by: kojiadmin")
        assert.include(head, "To: a@example.com, b@example.com")
        for (const h of ["X-Koji-Tag: f-updates", "X-Koji-Package: hello", "X-Koji-Builder: kojiadmin", "X-Koji-Status: complete", "X-Koji-Draft: False"]) {
          assert.include(head, h)
        }
        assert.include(body, "Package: hello-1.0-1\r\nTag: f-updates\r\nStatus: complete\r\nBuilt by: kojiadmin\r\nID: 7\r\n")
        assert.include(body, "Changelog:\r\n* Mon Nov 23 2026 Tester <t@example.com> - 1.0-1\r\n- first release\r\n")
        assert.include(body, "SRPMS:\r\n  hello-1.0-1.src.rpm\r\n")
        assert.include(body, `Closed tasks:\r\n-------------\r\n\r\nTask ${buildTask} on ${HOST}\r\nTask Type: sleep (noarch)\r\n`)
        assert.include(body, `logs:\r\n ${WEBURL}/getfile?taskID=${buildTask}&name=build.log&volume=DEFAULT\r\n`)
        assert.include(body, `rpms:\r\n ${TOPURL}/packages/hello/1.0/1//hello-1.0-1.noarch.rpm\r\n`)
        assert.include(body, `misc:\r\n ${WEBURL}/getfile?taskID=${buildTask}&name=noarch_rpmdiff.json&volume=DEFAULT\r\n`)
        assert.include(body, `Task Info: ${WEBURL}/taskinfo?taskID=${buildTask}\r\nBuild Info: ${WEBURL}/buildinfo?buildID=7\r\n`)

        const tagFail = yield* runTask(hub, "tagNotification", tagNotificationParams(["c@example.com"], false, tagId, null, 7, 1, false, "policy says no"))
        assert.strictEqual(hub.state.taskResult(tagFail), `sent notification of tag operation ${tagFail} to: c@example.com`)
        const t = smtp.received[1]!
        assert.deepStrictEqual(t.to, ["c@example.com"])
        assert.include(t.text, "Subject: hello-1.0-1 unsuccessfully tagged into f-updates-candidate by kojiadmin\r\n")
        for (const h of ["X-Koji-Package: hello", "X-Koji-NVR: hello-1.0-1", "X-Koji-User: kojiadmin", "X-Koji-Status: failed", "X-Koji-Tag: f-updates-candidate"]) {
          assert.include(t.text, `${h}\r\n`)
        }
        assert.include(t.text, "Tag Operation: tagged\r\nInto Tag: f-updates-candidate\r\n")
        assert.include(t.text, "Operation failed with the error:\r\n    policy says no\r\n")

        // Nothing to send: no recipients, or a success with ignore_success.
        const none = yield* runTask(hub, "buildNotification", buildNotificationParams(w, [], 7, null, WEBURL))
        const ignored = yield* runTask(hub, "tagNotification", tagNotificationParams(["c@example.com"], true, tagId, null, 7, 1, true))
        assert.strictEqual(hub.state.task(none)!.state, 2)
        assert.isNull(hub.state.taskResult(none))
        assert.isNull(hub.state.taskResult(ignored))
        assert.strictEqual(smtp.received.length, 2)
      }))
    }), 120_000)

  it.scopedLive("an unreachable SMTP server fails the task with a clear fault in bounded time; the daemon carries on", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const { hub, w, tagId } = yield* setup
      addBuild(w, { id: 7, name: "hello", version: "1.0", release: "1" }, [{ id: 71, arch: "noarch" }])
      yield* withDaemon(hub, `127.0.0.1:${port}`, Effect.gen(function*() {
        const started = Date.now()
        const id = yield* runTask(hub, "tagNotification", tagNotificationParams(["c@example.com"], true, tagId, null, 7, 1))
        assert.isBelow(Date.now() - started, 30_000)
        assert.strictEqual(hub.state.task(id)!.state, 5)
        const fault = resultAs(FaultResult, hub, id)
        assert.strictEqual(fault.faultCode, 1000)
        assert.match(fault.faultString, new RegExp(`^cannot send mail through 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`))
        const after = yield* runTask(hub, "sleep", [0])
        assert.strictEqual(hub.state.task(after)!.state, 2)
      }))
    }), 120_000)
})
