/**
 * A throwaway MIT Kerberos realm on loopback for GSSAPI tests: krb5.conf + kdc.conf in a temp
 * dir, `kdb5_util create -s`, principals and keytabs by `kadmin.local`, and `krb5kdc -n` as our
 * child on a free port, killed when the scope closes. Needs krb5-kdc and krb5-admin-server.
 */
import { Effect } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"

/** The binaries the realm needs. */
export const KDC_BINARIES = ["/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local"] as const

/** A running test realm. */
export interface TestRealm {
  readonly realm: string
  /** The krb5.conf clients (and Apache) must use (KRB5_CONFIG). */
  readonly krb5Conf: string
  readonly port: number
  /** Adds a principal with a random key. */
  readonly addPrincipal: (name: string) => void
  /** Writes the principals' keys to a keytab file (mode 0644, for Apache's unprivileged workers). */
  readonly keytab: (file: string, principals: ReadonlyArray<string>) => void
  /** Stops the KDC (it stays down); for "KDC unreachable" tests. */
  readonly stop: Effect.Effect<void>
}

/** A free TCP port on 127.0.0.1. */
export const freePort = Effect.async<number>((resume) => {
  const s = net.createServer()
  s.listen(0, "127.0.0.1", () => {
    const { port } = s.address() as net.AddressInfo // a TCP listener's address is AddressInfo
    s.close(() => resume(Effect.succeed(port)))
  })
})

/** Resolves once 127.0.0.1:port accepts connections, or dies with `describe()` after ~10 s. */
export const waitForPort = (port: number, child: ChildProcess, describe: () => string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 100; i++) {
      const up = yield* Effect.async<boolean>((resume) => {
        const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resume(Effect.succeed(true)) })
        s.on("error", () => resume(Effect.succeed(false)))
      })
      if (up) return
      if (child.exitCode !== null) break
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
    }
    return yield* Effect.die(new Error(describe()))
  })

/** Kills a child we started (by its own handle) and waits for it; never fails. */
export const stopChild = (child: ChildProcess): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGTERM")
  }).pipe(
    Effect.timeout("10 seconds"),
    Effect.catchAll(() => Effect.sync(() => child.kill("SIGKILL"))),
    Effect.asVoid
  )

/** A realm in `dir` (which the caller owns) with its KDC running until the scope closes. */
export const startRealm = (dir: string, realm = "ADJUTANT.TEST") =>
  Effect.gen(function* () {
    const port = yield* freePort
    const krb5Conf = path.join(dir, "krb5.conf")
    const kdcConf = path.join(dir, "kdc.conf")
    // No DNS at all: the hub is "localhost" and must stay so in the service principal
    // (HTTP/localhost), and TCP only so that a stopped KDC is refused at once.
    fs.writeFileSync(krb5Conf, `[libdefaults]
  default_realm = ${realm}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  dns_canonicalize_hostname = false
  rdns = false
  udp_preference_limit = 1
  kdc_timeout = 2000
  max_retries = 1
[realms]
  ${realm} = {
    kdc = 127.0.0.1:${port}
  }
[domain_realm]
  localhost = ${realm}
  .adjutant.test = ${realm}
`)
    fs.writeFileSync(kdcConf, `[kdcdefaults]
  kdc_listen = 127.0.0.1:${port}
  kdc_tcp_listen = 127.0.0.1:${port}
[realms]
  ${realm} = {
    database_name = ${dir}/principal
    key_stash_file = ${dir}/stash
    acl_file = ${dir}/kadm5.acl
    kdc_listen = 127.0.0.1:${port}
    kdc_tcp_listen = 127.0.0.1:${port}
  }
[logging]
  kdc = FILE:${dir}/kdc.log
`)
    const env = { ...process.env, KRB5_CONFIG: krb5Conf, KRB5_KDC_PROFILE: kdcConf }
    const run = (file: string, args: ReadonlyArray<string>) =>
      execFileSync(file, args, { env, stdio: ["ignore", "pipe", "pipe"] })
    run("/usr/sbin/kdb5_util", ["create", "-s", "-r", realm, "-P", "adjutant-test-master-key"])
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn("/usr/sbin/krb5kdc", ["-n", "-r", realm], { env, stdio: "ignore" })),
      stopChild
    )
    yield* waitForPort(port, child, () => `krb5kdc did not start:\n${fs.existsSync(`${dir}/kdc.log`) ? fs.readFileSync(`${dir}/kdc.log`, "utf8") : ""}`)
    const kadmin = (query: string) => run("/usr/sbin/kadmin.local", ["-r", realm, "-q", query])
    const result: TestRealm = {
      realm,
      krb5Conf,
      port,
      addPrincipal: (name) => { kadmin(`addprinc -randkey ${name}`) },
      keytab: (file, principals) => {
        for (const p of principals) kadmin(`ktadd -k ${file} ${p}`)
        fs.chmodSync(file, 0o644)
      },
      stop: stopChild(child)
    }
    return result
  })
