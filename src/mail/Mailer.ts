/**
 * Mail for the notification tasks (koji-protocol.md §7.9): kojid's `smtplib.SMTP(smtphost)`,
 * `login(smtp_user, smtp_pass)` when both are set, then `sendmail(from_addr, recipients,
 * message)` with the message text kojid composes itself. Here the SMTP client is nodemailer;
 * every step is bounded so an unreachable server fails the task instead of hanging it.
 */
import { Context, Duration, Effect, Layer, Ref, Schema } from "effect"
import nodemailer from "nodemailer"
import { AdjutantConfig } from "../config/AdjutantConfig.js"

/** Sending failed: the server could not be reached, refused the login, or rejected the message. */
export class MailError extends Schema.TaggedError<MailError>()("MailError", {
  reason: Schema.Literal("Connect", "Auth", "Rejected", "Timeout"),
  server: Schema.String,
  message: Schema.String
}) {}

/** One message as kojid hands it to smtplib: envelope sender, recipients, and the whole RFC 822 text. */
export interface MailMessage {
  readonly from: string
  readonly to: ReadonlyArray<string>
  /** Headers and body with CRLF line ends (kojid's templates). */
  readonly raw: string
}

/** Where and how to send. */
export interface MailerOptions {
  /** kojid's `smtphost`: `host` or `host:port` (port 25 by default, as smtplib). */
  readonly smtphost: string
  readonly user: string | null
  readonly pass: string | null
  /** Bound of connecting, of the greeting and of each reply (default 20 s). */
  readonly timeout?: Duration.DurationInput
}

/** The address part of `Name <addr>` (what smtplib's quoteaddr puts in MAIL FROM). */
export const envelopeAddress = (addr: string): string => /<([^>]*)>/.exec(addr)?.[1]?.trim() ?? addr.trim()

/** `host[:port]` → host and port (25 when absent, as smtplib.SMTP). */
export const parseSmtpHost = (smtphost: string): { readonly host: string; readonly port: number } => {
  const m = /^(.*):(\d+)$/.exec(smtphost)
  return m === null ? { host: smtphost, port: 25 } : { host: m[1]!, port: Number(m[2]) }
}

const classify = (server: string, e: unknown): MailError => {
  const err = e instanceof Error ? e : new Error(String(e))
  // nodemailer's error codes: ECONNECTION/ESOCKET/ETIMEDOUT/EDNS for transport, EAUTH, EENVELOPE/EMESSAGE.
  const code = "code" in err && typeof err.code === "string" ? err.code : ""
  const reason = code === "EAUTH" ? "Auth" : code === "ETIMEDOUT" ? "Timeout" : code === "EENVELOPE" || code === "EMESSAGE" ? "Rejected" : "Connect"
  return new MailError({ reason, server, message: `cannot send mail through ${server}: ${err.message}` })
}

/** Sends notification mail. */
export class Mailer extends Context.Tag("Mailer")<
  Mailer,
  {
    /** Sends one message; fails with MailError (never hangs beyond the configured timeouts). */
    readonly send: (message: MailMessage) => Effect.Effect<void, MailError>
    /** `smtphost` as configured, for messages. */
    readonly server: string
  }
>() {
  /** SMTP through `options.smtphost` (plain SMTP with AUTH when user and password are set, as kojid). */
  static layer(options: MailerOptions): Layer.Layer<Mailer> {
    return Layer.succeed(Mailer, makeMailer(options))
  }

  /** From kojid's `smtphost`, `smtp_user`, `smtp_pass`. */
  static layerConfig: Layer.Layer<Mailer, never, AdjutantConfig> = Layer.effect(
    Mailer,
    Effect.map(AdjutantConfig, (c) => makeMailer({ smtphost: c.kojid.smtphost, user: c.kojid.smtp_user, pass: c.kojid.smtp_pass }))
  )

  /** Captures messages instead of sending them; `sent` holds them in order. */
  static layerTest(sent: Ref.Ref<ReadonlyArray<MailMessage>>): Layer.Layer<Mailer> {
    return Layer.succeed(Mailer, {
      server: "test",
      send: (message) => Ref.update(sent, (all) => [...all, message])
    })
  }
}

/** The nodemailer-backed service. */
export const makeMailer = (options: MailerOptions): Mailer["Type"] => {
  const { host, port } = parseSmtpHost(options.smtphost)
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(20))
  const ms = Duration.toMillis(timeout)
  const send = Effect.fn("Mailer.send")(function*(message: MailMessage) {
    const transport = nodemailer.createTransport({
      host,
      port,
      secure: false,
      // kojid's smtplib.SMTP never starts TLS; a server offering STARTTLS with a private certificate still gets the mail.
      ignoreTLS: true,
      connectionTimeout: ms,
      greetingTimeout: ms,
      socketTimeout: ms,
      ...(options.user !== null && options.pass !== null ? { auth: { user: options.user, pass: options.pass } } : {})
    })
    yield* Effect.tryPromise({
      try: () =>
        transport.sendMail({
          envelope: { from: envelopeAddress(message.from), to: message.to.map(envelopeAddress) },
          raw: message.raw
        }),
      catch: (e) => classify(options.smtphost, e)
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.times(timeout, 3),
        onTimeout: () => new MailError({ reason: "Timeout", server: options.smtphost, message: `cannot send mail through ${options.smtphost}: no answer within ${Duration.format(Duration.times(timeout, 3))}` })
      }),
      Effect.ensuring(Effect.sync(() => transport.close()))
    )
  })
  return { send, server: options.smtphost }
}
