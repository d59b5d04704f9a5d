/**
 * systemd's service notification protocol (sd_notify(3)) for `Type=notify` units: `READY=1`,
 * `STATUS=`, `STOPPING=1`, `RELOADING=1`, `WATCHDOG=1` and `EXTEND_TIMEOUT_USEC=` as datagrams
 * to the AF_UNIX socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
 *
 * Node cannot send unix datagrams (`node:dgram` is UDP only), and the npm addons that can both
 * get abstract addresses wrong, so each message goes through systemd's own `systemd-notify`, run
 * directly (no shell) as our child with the fields as arguments. It claims its parent's PID in
 * SCM_CREDENTIALS when it may (as root), so systemd attributes the message to the main process
 * and the default `NotifyAccess=main` accepts it; it then waits until systemd has processed the
 * message (`BARRIER=1`, systemd ≥ 246), so a non-root run with `NotifyAccess=all` is not racy
 * either. Messages go one at a time in call order.
 *
 * Without `NOTIFY_SOCKET` every method is a no-op. A failed send is logged, never fails the caller.
 */
import { type ChildProcess, execFile, type ExecFileException } from "node:child_process"
import { Context, Duration, Effect, Layer, Option, Ref, Schema } from "effect"

/** What the daemon learns from the environment systemd starts it with. */
export interface SystemdEnvironment {
  /** `NOTIFY_SOCKET`, when set and not empty. */
  readonly socket: Option.Option<string>
  /**
   * `WATCHDOG_USEC` when systemd watches this process: a positive number, `WATCHDOG_PID` unset
   * or ours, and a notify socket to ping.
   */
  readonly watchdogTimeout: Option.Option<Duration.Duration>
}

/** Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as sd_notify(3) and sd_watchdog_enabled(3) do. */
export const readEnvironment = (
  env: Readonly<Record<string, string | undefined>>,
  pid: number
): SystemdEnvironment => {
  const notify = env["NOTIFY_SOCKET"]
  const socket = notify === undefined || notify === "" ? Option.none() : Option.some(notify)
  const usec = env["WATCHDOG_USEC"]
  const watchdogPid = env["WATCHDOG_PID"]
  const forUs = watchdogPid === undefined || watchdogPid === "" || (/^\d+$/.test(watchdogPid) && Number(watchdogPid) === pid)
  const watchdogTimeout = Option.isSome(socket) && forUs && usec !== undefined && /^\d+$/.test(usec) && BigInt(usec) > 0n
    ? Option.some(Duration.micros(BigInt(usec)))
    : Option.none()
  return { socket, watchdogTimeout }
}

/** A notification systemd-notify could not deliver. */
export class SdNotifyError extends Schema.TaggedError<SdNotifyError>()("SdNotifyError", {
  reason: Schema.Literal("NotFound", "Failed", "TimedOut"),
  message: Schema.String
}) {}

/** How a message reaches systemd: the datagram's `KEY=value` lines. */
export type Deliver = (lines: ReadonlyArray<string>) => Effect.Effect<void, SdNotifyError>

/** Options of the systemd-notify transport. */
export interface SystemdNotifyOptions {
  /** The program to run; `systemd-notify` from PATH unless told. */
  readonly command?: string | undefined
  /** How long one message may take, systemd's own 5 s barrier wait included. */
  readonly timeout?: Duration.DurationInput | undefined
}

/** Sends each message with `systemd-notify KEY=value…`, NOTIFY_SOCKET passed in the child's environment only. */
export const systemdNotify = (socket: string, options: SystemdNotifyOptions = {}): Deliver => {
  const command = options.command ?? "systemd-notify"
  const timeout = Duration.toMillis(options.timeout ?? Duration.seconds(10))
  const env = { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", NOTIFY_SOCKET: socket }
  return (lines) =>
    Effect.async<void, SdNotifyError>((resume) => {
      const onExit = (error: ExecFileException | null, _stdout: string, stderr: string) => {
        if (error === null) return resume(Effect.void)
        const said = stderr.trim().split("\n").join("; ")
        if (error.code === "ENOENT") {
          resume(Effect.fail(new SdNotifyError({ reason: "NotFound", message: `${command} not found: install systemd` })))
        } else if (error.killed === true) {
          resume(Effect.fail(new SdNotifyError({ reason: "TimedOut", message: `${command} did not finish within ${timeout} ms` })))
        } else {
          resume(Effect.fail(new SdNotifyError({ reason: "Failed", message: said === "" ? error.message : said })))
        }
      }
      let child: ChildProcess
      try {
        child = execFile(command, [...lines], { env, timeout, killSignal: "SIGKILL", encoding: "utf8" }, onExit)
      } catch (e) {
        return resume(Effect.fail(new SdNotifyError({ reason: "Failed", message: `cannot run ${command}: ${String(e)}` })))
      }
      return Effect.sync(() => child.kill("SIGKILL"))
    })
}

/** One line of a datagram: the protocol is newline-separated, and argv cannot carry NUL. */
const line = (key: string, value: string): string => `${key}=${value.replace(/[\x00-\x1f\x7f]+/g, " ")}`

/** systemd's USEC_INFINITY, for a timeout extension without end. */
const USEC_INFINITY = 18446744073709551615n

const micros = (duration: Duration.DurationInput): bigint =>
  Option.match(Duration.toNanos(duration), { onNone: () => USEC_INFINITY, onSome: (nanos) => nanos / 1000n })

/** The service: notifications to the service manager. */
export interface SdNotifyService {
  /** Whether NOTIFY_SOCKET names a socket; when false every method does nothing. */
  readonly enabled: boolean
  /** `WATCHDOG_USEC`: systemd restarts the service when no `watchdog` arrives within it. */
  readonly watchdogTimeout: Option.Option<Duration.Duration>
  /** How often to call `watchdog`: half of `watchdogTimeout`; none when systemd does not watch us. */
  readonly watchdogInterval: Option.Option<Duration.Duration>
  /** Sends `fields` as one datagram, in their order (e.g. `{ READY: "1", STATUS: "…" }`). */
  readonly notify: (fields: Readonly<Record<string, string>>) => Effect.Effect<void>
  /** `READY=1`: startup is done (for us: logged in and the first heartbeat accepted). */
  readonly ready: Effect.Effect<void>
  /** `STATUS=text`, shown by `systemctl status`; made one line. */
  readonly status: (text: string) => Effect.Effect<void>
  /** `STOPPING=1`: shutdown has begun. */
  readonly stopping: Effect.Effect<void>
  /** `RELOADING=1` with `MONOTONIC_USEC` (as `Type=notify-reload` requires); send `ready` when done. */
  readonly reloading: Effect.Effect<void>
  /** `WATCHDOG=1`; sends nothing when systemd does not watch this process. */
  readonly watchdog: Effect.Effect<void>
  /** `EXTEND_TIMEOUT_USEC`: the current start/stop may take `duration` longer from now. */
  readonly extendTimeout: (duration: Duration.DurationInput) => Effect.Effect<void>
}

/** Every method a no-op: what code outside a systemd-started daemon sees. */
const disabledService: SdNotifyService = {
  enabled: false,
  watchdogTimeout: Option.none(),
  watchdogInterval: Option.none(),
  notify: () => Effect.void,
  ready: Effect.void,
  status: () => Effect.void,
  stopping: Effect.void,
  reloading: Effect.void,
  watchdog: Effect.void,
  extendTimeout: () => Effect.void
}

/**
 * Notifications to the service manager that started the daemon (sd_notify(3)). A reference whose
 * default does nothing: main.ts provides `SdNotify.layer` to the daemon run; tests and the other
 * commands never notify anyone's systemd by accident.
 */
export class SdNotify extends Context.Reference<SdNotify>()("SdNotify", { defaultValue: (): SdNotifyService => disabledService }) {
  /** From the process environment, read once when the layer is built. */
  static layer: Layer.Layer<SdNotify> = Layer.effect(
    SdNotify,
    Effect.suspend(() => SdNotify.fromEnvironment(process.env))
  )

  /** From `env` instead of the process environment; `options.command` replaces systemd-notify. */
  static layerEnvironment(
    env: Readonly<Record<string, string | undefined>>,
    options?: SystemdNotifyOptions
  ): Layer.Layer<SdNotify> {
    return Layer.effect(SdNotify, Effect.suspend(() => SdNotify.fromEnvironment(env, options)))
  }

  /** Records each datagram's text in `sent` instead of sending it; watched by systemd when `watchdogTimeout` is given. */
  static layerTest(
    sent: Ref.Ref<ReadonlyArray<string>>,
    options: { readonly watchdogTimeout?: Duration.DurationInput } = {}
  ): Layer.Layer<SdNotify> {
    return Layer.effect(
      SdNotify,
      make(
        {
          socket: Option.some("@koji-adjutant-test"),
          watchdogTimeout: Option.map(Option.fromNullable(options.watchdogTimeout), Duration.decode)
        },
        (lines) => Ref.update(sent, (all) => [...all, lines.join("\n")])
      )
    )
  }

  private static fromEnvironment(env: Readonly<Record<string, string | undefined>>, options?: SystemdNotifyOptions) {
    const environment = readEnvironment(env, process.pid)
    return make(
      environment,
      Option.match(environment.socket, { onNone: () => () => Effect.void, onSome: (socket) => systemdNotify(socket, options) })
    )
  }
}

/** The service over `deliver`, which it calls one message at a time. */
const make = (environment: SystemdEnvironment, deliver: Deliver): Effect.Effect<SdNotifyService> =>
  Effect.gen(function*() {
    const enabled = Option.isSome(environment.socket)
    const lock = yield* Effect.makeSemaphore(1)
    const failing = yield* Ref.make(false)

    const send = (lines: ReadonlyArray<string>): Effect.Effect<void> =>
      !enabled ? Effect.void : lock.withPermits(1)(
        deliver(lines).pipe(
          Effect.zipRight(
            Effect.flatMap(Ref.getAndSet(failing, false), (was) =>
              was ? Effect.logInfo(`systemd notifications are delivered again (${lines.join(" ")})`) : Effect.void)
          ),
          Effect.catchAll((error) =>
            Effect.flatMap(Ref.getAndSet(failing, true), (was) => {
              const text = `systemd notification ${lines.join(" ")} not delivered: ${error.message}; the daemon goes on, ` +
                "and systemd may kill it if a WATCHDOG=1 or READY=1 never arrives"
              return was ? Effect.logDebug(text) : Effect.logWarning(text)
            })
          )
        )
      )

    const watchdogInterval = Option.map(environment.watchdogTimeout, (timeout) => Duration.micros(micros(timeout) / 2n))
    if (Option.isSome(environment.socket)) {
      yield* Effect.logDebug("systemd notifications on").pipe(Effect.annotateLogs({
        notifySocket: environment.socket.value,
        watchdog: Option.match(environment.watchdogTimeout, { onNone: () => "off", onSome: Duration.format })
      }))
    }

    const service: SdNotifyService = {
      enabled,
      watchdogTimeout: environment.watchdogTimeout,
      watchdogInterval,
      notify: Effect.fn("SdNotify.notify")(function*(fields: Readonly<Record<string, string>>) {
        const entries = Object.entries(fields)
        const bad = entries.find(([key]) => !/^[A-Z][A-Z0-9_]*$/.test(key))
        if (bad !== undefined) return yield* Effect.dieMessage(`SdNotify.notify: ${JSON.stringify(bad[0])} is not a notification field name`)
        yield* send(entries.map(([key, value]) => line(key, value)))
      }),
      ready: Effect.withSpan(send(["READY=1"]), "SdNotify.ready"),
      status: Effect.fn("SdNotify.status")(function*(text: string) {
        yield* send([line("STATUS", text)])
      }),
      stopping: Effect.withSpan(send(["STOPPING=1"]), "SdNotify.stopping"),
      // process.hrtime is libuv's uv_hrtime, CLOCK_MONOTONIC on Linux: the clock systemd compares MONOTONIC_USEC with.
      reloading: Effect.withSpan(
        Effect.suspend(() => send(["RELOADING=1", `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`])),
        "SdNotify.reloading"
      ),
      watchdog: Effect.withSpan(Option.isSome(watchdogInterval) ? send(["WATCHDOG=1"]) : Effect.void, "SdNotify.watchdog"),
      extendTimeout: Effect.fn("SdNotify.extendTimeout")(function*(duration: Duration.DurationInput) {
        yield* send([`EXTEND_TIMEOUT_USEC=${micros(duration)}`])
      })
    }
    return service
  })
