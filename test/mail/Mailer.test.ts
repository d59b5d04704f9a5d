/**
 * Mailer: smtphost parsing and envelope addresses as smtplib does them, a server that accepts
 * the connection but never greets fails within the bound, and the test layer captures.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { envelopeAddress, Mailer, type MailMessage, makeMailer, parseSmtpHost } from "../../src/mail/Mailer.js"

/** A TCP server that accepts connections and says nothing. */
const silentServer = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly server: net.Server; readonly sockets: Set<net.Socket> }>((resume) => {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((s) => {
      sockets.add(s)
      s.on("close", () => sockets.delete(s))
    })
    server.listen(0, "127.0.0.1", () => {
      const a = server.address()
      resume(Effect.succeed({ port: typeof a === "object" && a !== null ? a.port : 0, server, sockets }))
    })
  }),
  ({ server, sockets }) => Effect.promise(() => new Promise<void>((done) => {
    for (const s of sockets) s.destroy()
    server.close(() => done())
  }))
)

describe("Mailer", () => {
  it("parses smtphost and envelope addresses as smtplib", () => {
    assert.deepStrictEqual(parseSmtpHost("mail.example.com"), { host: "mail.example.com", port: 25 })
    assert.deepStrictEqual(parseSmtpHost("127.0.0.1:2525"), { host: "127.0.0.1", port: 2525 })
    assert.strictEqual(envelopeAddress("Koji Build System <buildsys@example.com>"), "buildsys@example.com")
    assert.strictEqual(envelopeAddress(" user@example.com "), "user@example.com")
  })

  it.scopedLive("a server that never greets fails with a clear MailError within the bound", () =>
    Effect.gen(function*() {
      const { port } = yield* silentServer
      const mailer = makeMailer({ smtphost: `127.0.0.1:${port}`, user: null, pass: null, timeout: "1 second" })
      const started = Date.now()
      const error = yield* Effect.flip(mailer.send({ from: "a@example.com", to: ["b@example.com"], raw: "Subject: x\r\n\r\nbody\r\n" }))
      assert.isBelow(Date.now() - started, 5000)
      assert.strictEqual(error._tag, "MailError")
      assert.strictEqual(error.server, `127.0.0.1:${port}`)
      assert.include(error.message, `cannot send mail through 127.0.0.1:${port}`)
    }), 20_000)

  it.effect("layerTest captures the messages in order", () =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<MailMessage>>([])
      const message = { from: "a@example.com", to: ["b@example.com"], raw: "Subject: x\r\n\r\n" }
      yield* Effect.flatMap(Mailer, (m) => m.send(message)).pipe(Effect.provide(Mailer.layerTest(sent)))
      assert.deepStrictEqual(yield* Ref.get(sent), [message])
    }))
})
