/**
 * How a dnf container reaches the task's repo without the host's network. A repo on loopback
 * (topurl `http://127.0.0.1/kojifiles`, a hub on the builder itself) was once reached by giving
 * the container — which runs as root with capabilities — the host's network namespace. Instead
 * the container gets no network at all and a SOCKS5 server of the daemon on a unix socket
 * bind-mounted into it (`proxy=socks5h://localhost/koji/proxy.sock` in dnf.conf; libcurl ≥ 7.84
 * speaks SOCKS over a unix socket). The server connects only to the hosts and ports of the
 * repo URLs, so the container can fetch the repo and nothing else.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import { BuildrootSetupError } from "./errors.js"

/** Where the proxy socket appears inside a dnf container. */
export const PROXY_SOCKET_IN_CONTAINER = "/koji/proxy.sock"

/** The dnf `proxy=` value for the in-container socket. */
export const PROXY_URL = `socks5h://localhost${PROXY_SOCKET_IN_CONTAINER}`

/** A destination the proxy may connect to. */
export interface ProxyTarget {
  readonly host: string
  readonly port: number
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/i

const hostOf = (u: URL): string => u.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase()

/** The host and port of an http(s) URL. */
export const targetOf = (url: string): ProxyTarget | undefined => {
  try {
    const u = new URL(url)
    if (u.protocol !== "http:" && u.protocol !== "https:") return undefined
    return { host: hostOf(u), port: u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port) }
  } catch {
    return undefined
  }
}

/** True for an http(s) URL whose host is this machine's loopback. */
export const isLoopbackUrl = (url: string): boolean => {
  const t = targetOf(url)
  return t !== undefined && LOOPBACK.test(t.host)
}

/** How a dnf container reaches its repos. */
export type RepoAccess =
  | { readonly _tag: "Local" }
  | { readonly _tag: "Proxy"; readonly targets: ReadonlyArray<ProxyTarget> }
  | { readonly _tag: "Network" }

/**
 * Local file repos need nothing; a loopback URL needs the proxy (which then carries every URL of
 * the repo); remote URLs use a bridge network (or `yum_proxy`, which must then be reachable from
 * one: a loopback `yum_proxy` is refused).
 */
export const repoAccess = (urls: ReadonlyArray<string>, yumProxy: string | null): RepoAccess | string => {
  const remote = urls.filter((u) => !u.startsWith("file://"))
  if (remote.length === 0) return { _tag: "Local" }
  if (yumProxy !== null && yumProxy !== "") {
    return isLoopbackUrl(yumProxy)
      ? `yum_proxy ${yumProxy} is on loopback: containers have no host network; use the topdir (no topurl) or a proxy they can reach`
      : { _tag: "Network" }
  }
  if (!remote.some(isLoopbackUrl)) return { _tag: "Network" }
  const targets: Array<ProxyTarget> = []
  for (const u of remote) {
    const t = targetOf(u)
    if (t === undefined) return `repo URL ${u} is neither file:// nor http(s)://`
    if (!targets.some((x) => x.host === t.host && x.port === t.port)) targets.push(t)
  }
  return { _tag: "Proxy", targets }
}

const MAX_CLIENTS = 64
const HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * A SOCKS5 server (no authentication, CONNECT only) on the unix socket `socketPath`, connecting
 * only to `targets`; closed with the scope (listener, connections, socket file).
 */
export const serveRepoProxy = (socketPath: string, targets: ReadonlyArray<ProxyTarget>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: net.Server; readonly sockets: Set<net.Socket> }, BuildrootSetupError>((resume) => {
      const allowed = (host: string, port: number) => targets.some((t) => t.host === host.toLowerCase() && t.port === port)
      const sockets = new Set<net.Socket>()
      const server = net.createServer((client) => {
        if (sockets.size >= MAX_CLIENTS) {
          client.destroy()
          return
        }
        sockets.add(client)
        client.on("close", () => sockets.delete(client))
        client.on("error", () => client.destroy())
        client.setTimeout(HANDSHAKE_TIMEOUT_MS, () => client.destroy())
        let buf = Buffer.alloc(0)
        let stage: "greeting" | "request" | "done" = "greeting"
        const reply = (code: number) => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
        const onData = (data: Buffer) => {
          buf = Buffer.concat([buf, data])
          if (buf.length > 600) return client.destroy()
          if (stage === "greeting") {
            if (buf.length < 2) return
            if (buf[0] !== 5) return client.destroy()
            const n = buf[1]!
            if (buf.length < 2 + n) return
            const methods = buf.subarray(2, 2 + n)
            buf = buf.subarray(2 + n)
            if (!methods.includes(0)) return client.end(Buffer.from([5, 0xff]))
            client.write(Buffer.from([5, 0]))
            stage = "request"
          }
          if (stage !== "request" || buf.length < 5) return
          if (buf[0] !== 5 || buf[1] !== 1) return client.end(reply(7))
          const atyp = buf[3]
          let host: string
          let at: number
          if (atyp === 1) {
            if (buf.length < 10) return
            host = [...buf.subarray(4, 8)].join(".")
            at = 8
          } else if (atyp === 3) {
            const n = buf[4]!
            if (buf.length < 5 + n + 2) return
            host = buf.subarray(5, 5 + n).toString("latin1")
            at = 5 + n
          } else if (atyp === 4) {
            if (buf.length < 22) return
            const words: Array<string> = []
            for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(4 + 2 * i).toString(16))
            host = new URL(`http://[${words.join(":")}]`).hostname.slice(1, -1)
            at = 20
          } else {
            return client.end(reply(8))
          }
          const port = buf.readUInt16BE(at)
          const rest = buf.subarray(at + 2)
          stage = "done"
          client.off("data", onData)
          if (!allowed(host, port)) return client.end(reply(2))
          const upstream = net.connect({ host, port })
          sockets.add(upstream)
          upstream.on("close", () => sockets.delete(upstream))
          upstream.on("error", () => {
            client.end(reply(5))
            upstream.destroy()
          })
          upstream.on("connect", () => {
            client.setTimeout(0)
            client.write(reply(0))
            if (rest.length > 0) upstream.write(rest)
            client.pipe(upstream)
            upstream.pipe(client)
            client.on("close", () => upstream.destroy())
            upstream.on("close", () => client.destroy())
          })
        }
        client.on("data", onData)
      })
      try {
        fs.rmSync(socketPath, { force: true })
      } catch {
        // not there
      }
      server.once("error", (e) => resume(Effect.fail(new BuildrootSetupError({ message: `cannot serve the repo proxy at ${socketPath}: ${e.message}` }))))
      server.listen(socketPath, () => {
        // The socket sits in the task's private directory; the container's root (a mapped uid) must connect.
        fs.chmodSync(socketPath, 0o666)
        resume(Effect.succeed({ server, sockets }))
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => {
          fs.rmSync(socketPath, { force: true })
          resume(Effect.void)
        })
      })
  )
