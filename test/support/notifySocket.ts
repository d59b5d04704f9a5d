/**
 * A real systemd notify socket for tests: a python3 child binds an AF_UNIX datagram socket (a path
 * or an abstract `@name`) with SO_PASSCRED, as systemd binds its notify socket, and reports every
 * datagram with the sender's PID from SCM_CREDENTIALS and its own CLOCK_MONOTONIC at receipt.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { assert } from "@effect/vitest"
import { Effect, Schema } from "effect"

/** Binds argv[1] (`@name`: abstract) like systemd's notify socket; one JSON line per datagram. */
const RECEIVER = `
import array, json, os, socket, struct, sys, time
address = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + address[1:] if address.startswith("@") else address)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"bound": s.getsockname() if isinstance(s.getsockname(), str) else s.getsockname().decode("latin-1")}), flush=True)
while True:
    data, anc, _flags, _addr = s.recvmsg(65536, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(64))
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    pid = 0
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iii", payload[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % 4])
            for fd in fds:
                os.close(fd)
    print(json.dumps({"data": data.decode("utf-8", "replace"), "pid": pid, "mono": mono}), flush=True)
`

const Bound = Schema.parseJson(Schema.Struct({ bound: Schema.String }))
const Datagram = Schema.parseJson(Schema.Struct({ data: Schema.String, pid: Schema.Number, mono: Schema.Number }))
export type Datagram = typeof Datagram.Type

/** A bound notify socket at `address` for the scope; `datagrams` are what it received so far. */
export const receiver = (address: string) =>
  Effect.gen(function*() {
    const received: Array<Datagram> = []
    const child = yield* Effect.acquireRelease(
      Effect.async<{ child: ChildProcess; bound: string }, Error>((resume) => {
        const child = spawn("python3", ["-c", RECEIVER, address], { stdio: ["ignore", "pipe", "inherit"] })
        let buffer = ""
        let bound = false
        child.once("error", (e) => resume(Effect.fail(e)))
        child.once("exit", (code) => {
          if (!bound) resume(Effect.fail(new Error(`receiver exited with ${code} before binding ${address}`)))
        })
        child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
          buffer += chunk
          for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
            const text = buffer.slice(0, nl)
            buffer = buffer.slice(nl + 1)
            if (!bound) {
              bound = true
              resume(Effect.succeed({ child, bound: Schema.decodeUnknownSync(Bound)(text).bound }))
            } else {
              received.push(Schema.decodeUnknownSync(Datagram)(text))
            }
          }
        })
      }),
      ({ child }) => Effect.sync(() => child.kill("SIGKILL"))
    )
    return {
      bound: child.bound,
      /** The datagrams but systemd-notify's own BARRIER=1 (its wait for the manager to have read ours). */
      messages: () => received.filter((d) => d.data !== "BARRIER=1"),
      barriers: () => received.filter((d) => d.data === "BARRIER=1").length
    }
  })

/** Waits (real time) until `done` holds, at most `ms`. */
export const until = (done: () => boolean, what: string, ms = 10_000) =>
  Effect.gen(function*() {
    for (let i = 0; i < ms / 20; i++) {
      if (done()) return
      yield* Effect.sleep("20 millis")
    }
    assert.fail(`timed out waiting for ${what}`)
  })

