/**
 * Helpers to run the daemon as a real child process against a fake hub served by the test
 * process: a kojid.conf in a temp dir, `node dist/main.js` (built when stale), exit waiting.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { HOST, PASSWORD } from "./harness.js"

/** The checkout's root, found upwards (this file also runs compiled into node_modules/.cache by the bench runner). */
export const repoRoot = ((): string => {
  let dir = import.meta.dirname
  while (!existsSync(path.join(dir, "tsconfig.build.json")) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return dir
})()
export const distMain = path.join(repoRoot, "dist/main.js")

const fresh = (): boolean => {
  // Every source directory: build-local (src/local) and the services run from dist/ too.
  const src = readdirSync(path.join(repoRoot, "src"), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => path.join("src", d.name))
    .flatMap((d) => readdirSync(path.join(repoRoot, d)).map((f) => path.join(d, f)))
    .concat(["src/main.ts"])
    .map((f) => statSync(path.join(repoRoot, f)).mtimeMs)
  return existsSync(distMain) && statSync(distMain).mtimeMs >= Math.max(...src)
}

/**
 * Builds dist/ when it is missing or older than the sources (scripts/test.sh builds
 * first anyway). Test files run in parallel: a lock directory keeps two builds from writing
 * dist/ at once while a child process loads it.
 */
export const ensureBuilt = (): void => {
  if (fresh()) return
  const lock = path.join(repoRoot, "node_modules", ".cache", "adjutant-dist-build.lock")
  mkdirSync(path.dirname(lock), { recursive: true })
  const deadline = Date.now() + 170_000
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch {
      const held = statSync(lock, { throwIfNoEntry: false })
      if (held !== undefined && Date.now() - held.mtimeMs > 180_000) rmSync(lock, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error(`dist build lock ${lock} held too long`)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
    }
  }
  try {
    // The build is emitted even when other parts of the tree have type errors.
    if (!fresh()) spawnSync(process.execPath, [path.join(repoRoot, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], { cwd: repoRoot, stdio: "ignore" })
    if (!existsSync(distMain)) throw new Error("dist/main.js was not built")
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

/**
 * A stand-in podman API on a unix socket: it answers, every image exists, no container does. The
 * daemon is ready only while podman answers and a configured image is present (Readiness), and
 * these tests run no podman.
 */
const fakePodman = (socket: string): Promise<http.Server> =>
  new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      const url = (req.url ?? "").split("?")[0]!
      if (req.method === "GET" && (/\/images\/[^/]+\/exists$/.test(url) || url.endsWith("/_ping"))) {
        res.writeHead(url.endsWith("/_ping") ? 200 : 204)
        res.end(url.endsWith("/_ping") ? "OK" : undefined)
        return
      }
      if (req.method === "GET" && url.endsWith("/containers/json")) {
        res.writeHead(200, { "content-type": "application/json" })
        res.end("[]")
        return
      }
      res.writeHead(404, { "content-type": "application/json" })
      res.end(JSON.stringify({ cause: "no such object", message: "fake podman: not found", response: 404 }))
    })
    server.once("error", reject)
    server.listen(socket, () => resolve(server))
  })

/** A temp dir with a kojid.conf pointing at `hubUrl` and a stand-in podman socket; removed with the scope. */
export const writeConfig = (hubUrl: string, extra: { readonly kojid?: string; readonly adjutant?: string } = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "adjutant-child-"))
      const podman = await fakePodman(path.join(dir, "podman.sock"))
      const conf = path.join(dir, "kojid.conf")
      writeFileSync(conf, [
        "[kojid]",
        `server = ${hubUrl}`,
        "topurl = http://127.0.0.1:1/kojifiles",
        `user = ${HOST}`,
        `password = ${PASSWORD}`,
        `workdir = ${dir}/work`,
        "sleeptime = 1",
        "retry_interval = 1",
        "max_retries = 3",
        extra.kojid ?? "",
        "[adjutant]",
        `log_file = ${dir}/kojid.log`,
        `podman_socket = unix://${dir}/podman.sock`,
        extra.adjutant ?? "",
        ""
      ].join("\n"))
      return { dir, conf, podman, log: () => (existsSync(`${dir}/kojid.log`) ? readFileSync(`${dir}/kojid.log`, "utf8") : "") }
    }),
    ({ dir, podman }) =>
      Effect.sync(() => {
        podman.closeAllConnections()
        podman.close()
        rmSync(dir, { recursive: true, force: true })
      })
  )

/** A child process; SIGKILLed when the scope closes if it is still running. */
export const spawnScoped = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Effect.Effect<ChildProcess, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } })
      let out = ""
      child.stdout?.on("data", (b: Buffer) => (out += b.toString()))
      child.stderr?.on("data", (b: Buffer) => (out += b.toString()))
      Object.defineProperty(child, "output", { get: () => out })
      return child
    }),
    (child) => Effect.sync(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    })
  )

/** What a child printed so far. */
export const outputOf = (child: ChildProcess): string => (child as ChildProcess & { readonly output?: string }).output ?? ""

/** Waits for the child to exit (at most `ms`); its exit code, or the signal name. */
export const exitOf = (child: ChildProcess, ms: number): Effect.Effect<number | string | undefined> =>
  Effect.promise(() =>
    new Promise<number | string | undefined>((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode)
      if (child.signalCode !== null) return resolve(child.signalCode)
      const t = setTimeout(() => resolve(undefined), ms)
      child.once("exit", (code, signal) => {
        clearTimeout(t)
        resolve(code ?? signal ?? undefined)
      })
    })
  )

/** Polls `cond` in real time (every 50 ms, at most `ms`). */
export const waitFor = (cond: () => boolean, what: string, ms = 60_000, diagnostics?: () => string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!cond()) {
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(`timed out waiting for: ${what}${diagnostics ? `\n${diagnostics()}` : ""}`)
      }
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
    }
  })
