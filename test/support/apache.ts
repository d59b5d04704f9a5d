/**
 * A throwaway Apache (mod_ssl, mod_proxy) on loopback in front of a test backend, as a koji
 * hub's web server: the TLS login tests and the GSSAPI login tests differ only in the modules
 * they load and what `/kojihub/ssllogin` requires.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { stopChild, waitForPort } from "./kdc.js"

export const APACHE = "/usr/sbin/apache2"
export const APACHE_MODULES = "/usr/lib/apache2/modules"

/** What the TLS front end needs besides `modules`: missing files, for a skip or failure message. */
export const apacheMissing = (modules: ReadonlyArray<string>): ReadonlyArray<string> =>
  [APACHE, ...["ssl", ...modules].map((m) => path.join(APACHE_MODULES, `mod_${m}.so`))].filter((f) => !fs.existsSync(f))

const BASE_MODULES = ["mpm_event", "authz_core", "ssl", "socache_shmcb", "proxy", "proxy_http", "headers"]

/** httpd.conf: TLS on 127.0.0.1:`port` with `dir`/server.{crt,key}, /kojihub proxied to `backendPort`. */
export const apacheConf = (o: {
  readonly dir: string
  readonly port: number
  readonly backendPort: number
  /** More modules by short name (`auth_gssapi`, `authn_core`, …). */
  readonly modules?: ReadonlyArray<string>
  /** Lines for the server config (e.g. LogLevel). */
  readonly global?: string
  /** Lines inside the VirtualHost before the ProxyPass (client-cert or GSSAPI rules). */
  readonly vhost: string
}): string => `
ServerRoot "/usr/lib/apache2"
${[...BASE_MODULES, ...(o.modules ?? [])].map((m) => `LoadModule ${m}_module modules/mod_${m}.so`).join("\n")}
PidFile ${o.dir}/httpd.pid
ErrorLog ${o.dir}/error.log
${o.global ?? ""}
Listen 127.0.0.1:${o.port}
ServerName localhost
User nobody
Group nogroup
Mutex file:${o.dir}
DefaultRuntimeDir ${o.dir}
SSLSessionCache shmcb:${o.dir}/ssl_scache(512000)
<VirtualHost 127.0.0.1:${o.port}>
  SSLEngine on
  SSLProtocol -all +TLSv1.2 +TLSv1.3
  SSLCertificateFile ${o.dir}/server.crt
  SSLCertificateKeyFile ${o.dir}/server.key
${o.vhost}
  ProxyPass /kojihub http://127.0.0.1:${o.backendPort}/kojihub
</VirtualHost>
`

/** Apache in the foreground as our child with `conf`, up on `port`; stopped when the scope closes. */
export const startApache = (
  dir: string,
  conf: string,
  port: number,
  env: NodeJS.ProcessEnv = process.env
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const confFile = path.join(dir, "httpd.conf")
    fs.writeFileSync(confFile, conf)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(APACHE, ["-f", confFile, "-DFOREGROUND"], { env, stdio: "ignore" })),
      stopChild
    )
    yield* waitForPort(port, child, () => {
      const log = path.join(dir, "error.log")
      return `apache did not start:\n${fs.existsSync(log) ? fs.readFileSync(log, "utf8") : ""}`
    })
  })
