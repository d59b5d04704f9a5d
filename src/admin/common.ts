/**
 * What the admin commands share: `-c FILE` (the daemon's kojid.conf), its loading, the running
 * daemon's `/status` (through `[adjutant] status_listen`) and a small table printer.
 */
import { Options } from "@effect/cli"
import { Console, Effect, Either, Schema } from "effect"
import { type Config, DEFAULT_CONFIG_FILE, loadConfig } from "../config/AdjutantConfig.js"
import { parseHostPort } from "../config/values.js"
import { FatalReported } from "../daemon/Logging.js"
import { DaemonStatus } from "../daemon/StatusServer.js"

/** `-c, --config FILE`, as the daemon's. */
export const configOption = Options.text("config").pipe(Options.withAlias("c"), Options.withDefault(DEFAULT_CONFIG_FILE))

/** An admin command cannot do what it was asked; the message says why and what to do. */
export class AdminError extends Schema.TaggedError<AdminError>()("AdminError", {
  message: Schema.String
}) {}

/** Logs an admin failure as one line and fails the command (exit status 1) without a second report. */
export const reported = <A, R>(self: Effect.Effect<A, AdminError | FatalReported, R>): Effect.Effect<A, FatalReported, R> =>
  Effect.catchTag(self, "AdminError", (e) => Effect.zipRight(Effect.logError(e.message), Effect.fail(new FatalReported({ message: e.message }))))

/** The daemon's configuration, or the config error logged. */
export const loadAdminConfig = (file: string): Effect.Effect<Config, FatalReported> =>
  loadConfig(file).pipe(
    Effect.tapError((e) => Effect.logError(e.message)),
    Effect.mapError((e) => new FatalReported({ message: e.message }))
  )

/** Where to reach `status_listen` from this machine: a wildcard address is asked on loopback. */
export const statusAddress = (listen: string): { readonly host: string; readonly port: number } | undefined => {
  const hp = parseHostPort(listen, true)
  if (Either.isLeft(hp) || hp.right.port === null) return undefined
  const host = hp.right.host === "0.0.0.0" || hp.right.host === "" ? "127.0.0.1" : hp.right.host === "::" ? "::1" : hp.right.host
  return { host, port: hp.right.port }
}

/** Why no daemon status could be read. */
export type NoStatus =
  | { readonly _tag: "NotConfigured"; readonly message: string }
  | { readonly _tag: "NoAnswer"; readonly message: string }

const decodeStatus = Schema.decodeUnknownEither(Schema.parseJson(DaemonStatus))

/** GET /status of the daemon `config` belongs to. */
export const fetchStatus = (config: Config): Effect.Effect<Either.Either<DaemonStatus, NoStatus>> => {
  const listen = config.adjutant.status_listen
  const address = listen === "" ? undefined : statusAddress(listen)
  if (address === undefined) {
    return Effect.succeed(Either.left({ _tag: "NotConfigured", message: `status_listen is not set in [adjutant] of ${config.file}: the daemon serves no status` }))
  }
  const host = address.host.includes(":") ? `[${address.host}]` : address.host
  const url = `http://${host}:${address.port}/status`
  return Effect.tryPromise({
    try: async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
      const text = await res.text()
      if (!res.ok) throw new Error(`HTTP ${res.status}`)
      return text
    },
    catch: (e) => (e instanceof Error && e.cause instanceof Error ? e.cause.message : e instanceof Error ? e.message : String(e))
  }).pipe(
    Effect.map((text) =>
      Either.mapLeft(decodeStatus(text), (e): NoStatus => ({ _tag: "NoAnswer", message: `${url} is not koji-adjutant's status: ${e.message.split("\n")[0] ?? ""}` }))
    ),
    Effect.catchAll((why) => Effect.succeed(Either.left<NoStatus>({ _tag: "NoAnswer", message: `no daemon answers on ${url}: ${why}` })))
  )
}

/** Prints rows under a header, columns padded to their widest cell. */
export const printTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): Effect.Effect<void> => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ").trimEnd()
  return Console.log([line(header), ...rows.map(line)].join("\n"))
}

/** A duration in a human unit: `42s`, `5m`, `3h`, `2d`. */
export const ago = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000))
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`
}
