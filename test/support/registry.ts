import { execFileSync, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import * as http from "node:http"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startBackgroundService } from "./service.js"

/** Debian's docker-registry binary (scripts/setup-host.sh installs it). */
export const REGISTRY_BINARY = "/usr/bin/docker-registry"

/** Whether the registry tests can run: docker-registry, skopeo and openssl present. */
export const registryInstalled: boolean =
  existsSync(REGISTRY_BINARY) &&
  spawnSync("skopeo", ["--version"], { stdio: "ignore" }).status === 0 &&
  spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0

/** The reason shown for skipped registry tests. */
export const registrySkipReason = "docker-registry, skopeo or openssl missing (scripts/setup-host.sh installs them)"

/** A docker-registry serving on 127.0.0.1 for one test file. */
export interface TestRegistry {
  /** `127.0.0.1:<port>`, the registry part of image references. */
  readonly host: string
  readonly tls: boolean
  readonly credentials: { readonly username: string; readonly password: string } | undefined
  /** The registry's storage directory (docker/registry/v2/… below it), for tests that damage blobs. */
  readonly storage: string
  /** Copies a local image into the registry as `<host>/<repo>:<tag>`. */
  readonly push: (localImage: string, repoTag: string) => void
  /** The manifest digest the registry serves for `<repo>:<tag>`. */
  readonly digest: (repoTag: string) => string
  /** Stops the registry and removes its storage. */
  readonly stop: () => Promise<void>
}

/** Options of a test registry. */
export interface TestRegistryOptions {
  /** Serve HTTPS with a self-signed certificate for 127.0.0.1 made by openssl. */
  readonly tls?: boolean
  /** Require htpasswd basic auth with these credentials. */
  readonly credentials?: { readonly username: string; readonly password: string }
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const srv = net.createServer()
    srv.once("error", fail)
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address()
      const port = typeof addr === "object" && addr !== null ? addr.port : 0
      srv.close(() => done(port))
    })
  })

const bcryptLine = (username: string, password: string): string => {
  const htpasswd = spawnSync("htpasswd", ["-nbB", username, password], { encoding: "utf8" })
  if (htpasswd.status === 0) return htpasswd.stdout.trim()
  // docker-registry only accepts bcrypt; Python's crypt uses libxcrypt's $2b$ when apache2-utils is absent.
  const py = spawnSync(
    "python3",
    ["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))", password],
    { encoding: "utf8" }
  )
  if (py.status !== 0) throw new Error(`cannot make a bcrypt htpasswd entry (install apache2-utils): ${py.stderr}`)
  return `${username}:${py.stdout.trim()}`
}

const answers = (host: string, tls: boolean): Promise<boolean> =>
  new Promise((done) => {
    const req = (tls ? https : http).request(
      { host: "127.0.0.1", port: Number(host.split(":")[1]), path: "/v2/", method: "GET", timeout: 1000, rejectUnauthorized: false },
      (res) => {
        res.resume()
        res.on("end", () => done(res.statusCode === 200 || res.statusCode === 401))
      }
    )
    req.on("error", () => done(false))
    req.on("timeout", () => {
      req.destroy()
      done(false)
    })
    req.end()
  })

/** Starts `docker-registry serve` on a free loopback port with storage in a fresh temp dir. */
export const startRegistry = async (options: TestRegistryOptions = {}): Promise<TestRegistry> => {
  const dir = mkdtempSync(join(tmpdir(), "koji-adjutant-registry-"))
  const port = await freePort()
  const host = `127.0.0.1:${port}`
  const tls = options.tls ?? false
  const lines = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(dir, "storage")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}`
  ]
  if (tls) {
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
      { stdio: "ignore" }
    )
    lines.push("  tls:", `    certificate: ${join(dir, "cert.pem")}`, `    key: ${join(dir, "key.pem")}`)
  }
  if (options.credentials !== undefined) {
    writeFileSync(join(dir, "htpasswd"), bcryptLine(options.credentials.username, options.credentials.password) + "\n")
    lines.push("auth:", "  htpasswd:", "    realm: koji-adjutant-test", `    path: ${join(dir, "htpasswd")}`)
  }
  mkdirSync(join(dir, "storage"))
  writeFileSync(join(dir, "config.yml"), lines.join("\n") + "\n")
  const { child, stderr, stop } = startBackgroundService(REGISTRY_BINARY, ["serve", join(dir, "config.yml")], dir)
  const deadline = Date.now() + 15_000
  let up = false
  while (Date.now() < deadline && child.exitCode === null) {
    if (await answers(host, tls)) {
      up = true
      break
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  if (!up) {
    await stop()
    throw new Error(`docker-registry did not come up on ${host}: ${stderr()}`)
  }
  const creds = options.credentials === undefined ? [] : [`--dest-creds=${options.credentials.username}:${options.credentials.password}`]
  const srcCreds = options.credentials === undefined ? [] : [`--creds=${options.credentials.username}:${options.credentials.password}`]
  return {
    host,
    tls,
    credentials: options.credentials,
    storage: join(dir, "storage"),
    push: (localImage, repoTag) => {
      execFileSync(
        "skopeo",
        ["copy", "--quiet", "--dest-tls-verify=false", ...creds, `containers-storage:${localImage}`, `docker://${host}/${repoTag}`],
        { stdio: ["ignore", "ignore", "pipe"] }
      )
    },
    digest: (repoTag) =>
      execFileSync("skopeo", ["inspect", "--tls-verify=false", ...srcCreds, "--format", "{{.Digest}}", `docker://${host}/${repoTag}`], {
        encoding: "utf8"
      }).trim(),
    stop
  }
}

/**
 * Imports a tiny image (one file of random bytes, so every call gets a distinct image id) as
 * `localhost/<name>` with the given labels; returns the local reference.
 */
export const makeTinyImage = (name: string, labels: Readonly<Record<string, string>> = {}): string => {
  const dir = mkdtempSync(join(tmpdir(), "koji-adjutant-tiny-"))
  try {
    mkdirSync(join(dir, "root"))
    writeFileSync(join(dir, "root", "content"), randomBytes(32).toString("hex") + "\n")
    execFileSync("tar", ["-C", join(dir, "root"), "-cf", join(dir, "root.tar"), "."])
    const reference = `localhost/${name}`
    const changes = Object.entries(labels).flatMap(([k, v]) => ["--change", `LABEL ${k}=${v}`])
    execFileSync("podman", ["import", "--quiet", ...changes, join(dir, "root.tar"), reference], { stdio: ["ignore", "ignore", "pipe"] })
    return reference
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** `repo:tag` (or the image id when untagged) of every local image whose repository starts with one of `prefixes`. */
export const imagesNamed = (prefixes: ReadonlyArray<string>): ReadonlyArray<string> =>
  execFileSync("podman", ["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.split(" "))
    .filter(([, name]) => name !== undefined && prefixes.some((p) => name.startsWith(p)))
    .map(([id, name]) => (name?.endsWith(":<none>") ? (id ?? "") : (name ?? "")))

/** Untags/removes every local image named with one of `prefixes` (never forced); returns what remains. */
export const removeImagesNamed = (prefixes: ReadonlyArray<string>): ReadonlyArray<string> => {
  for (const name of imagesNamed(prefixes)) spawnSync("podman", ["rmi", name], { stdio: "ignore" })
  for (const name of imagesNamed(prefixes)) spawnSync("podman", ["rmi", name], { stdio: "ignore" })
  return imagesNamed(prefixes)
}

/** Makes a tiny image, pushes it to `registry` as `repoTag`, and removes the local copy. */
export const publishTinyImage = (registry: TestRegistry, repoTag: string, labels: Readonly<Record<string, string>> = {}): void => {
  const local = makeTinyImage(`koji-adjutant-test-${randomBytes(4).toString("hex")}:1`, labels)
  try {
    registry.push(local, repoTag)
  } finally {
    spawnSync("podman", ["rmi", local], { stdio: "ignore" })
  }
}
