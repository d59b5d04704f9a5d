import { execFileSync, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, mkdtempSync } from "node:fs"
import * as http from "node:http"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import type { ContainersOptions } from "../../src/containers/spec.js"
import { startBackgroundService } from "./service.js"

/** The small busybox image `scripts/build-test-image.sh` builds offline. */
export const TEST_IMAGE = "localhost/koji-adjutant-testbase:latest"

/** Whether the podman CLI is installed; podman tests skip (visibly) only when it is not. */
export const podmanInstalled: boolean = spawnSync("podman", ["--version"], { stdio: "ignore" }).status === 0

// CI (scripts/test.sh) sets KOJI_ADJUTANT_REQUIRE_PODMAN: there a missing podman must fail every
// podman test file instead of letting it skip.
if (!podmanInstalled && process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1") {
  throw new Error("KOJI_ADJUTANT_REQUIRE_PODMAN=1 but podman is not installed: run scripts/setup-host.sh")
}

/** The reason shown for skipped podman tests. */
export const podmanSkipReason = "podman is not installed (scripts/setup-host.sh installs it)"

/** The checkout's root, found upwards (this file also runs compiled from node_modules/.cache by the bench runner). */
const repoRoot = ((): string => {
  let dir = import.meta.dirname
  while (!existsSync(join(dir, "scripts/build-test-image.sh")) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
})()

/** Builds the test image if missing or stale (idempotent, ~0.1 s when present). */
export const ensureTestImage = (): void => {
  execFileSync(join(repoRoot, "scripts/build-test-image.sh"), { stdio: ["ignore", "ignore", "inherit"] })
}

/** A running podman API service the tests use. */
export interface PodmanService {
  readonly socket: string
  /** Stops the service if this helper started it. */
  readonly stop: () => Promise<void>
}

const ping = (socket: string): Promise<boolean> =>
  new Promise((done) => {
    const req = http.request({ socketPath: socket, path: "/v4.0.0/libpod/_ping", method: "GET", timeout: 1000 }, (res) => {
      res.resume()
      res.on("end", () => done(res.statusCode === 200))
    })
    req.on("error", () => done(false))
    req.on("timeout", () => {
      req.destroy()
      done(false)
    })
    req.end()
  })

/**
 * `KOJI_ADJUTANT_PODMAN_SOCKET` when set, else a private `podman system service` on a socket in
 * a fresh temp dir, started with that dir as cwd (conmon drops `oom` files in the cwd, notes §3).
 */
export const startPodmanService = async (): Promise<PodmanService> => {
  const given = process.env["KOJI_ADJUTANT_PODMAN_SOCKET"]
  if (given !== undefined && given !== "") {
    const socket = given.replace(/^unix:\/\//, "")
    if (!(await ping(socket))) throw new Error(`KOJI_ADJUTANT_PODMAN_SOCKET=${given} does not answer _ping`)
    return { socket, stop: async () => {} }
  }
  const dir = mkdtempSync(join(tmpdir(), "koji-adjutant-podman-"))
  const socket = join(dir, "podman.sock")
  const { child, stderr, stop } = startBackgroundService("podman", ["system", "service", "--time=0", `unix://${socket}`], dir)
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (await ping(socket)) return { socket, stop }
    if (child.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 50))
  }
  await stop()
  throw new Error(`podman system service did not come up on ${socket}: ${stderr()}`)
}

/** A host label value unique to one test file, so parallel files never see each other's containers. */
export const uniqueHostName = (prefix: string): string => `test-${prefix}-${randomBytes(4).toString("hex")}`

/** Names of every container (any state) carrying `io.koji.adjutant.host=<hostName>`, via the CLI. */
export const containersOfHost = (hostName: string): ReadonlyArray<string> =>
  execFileSync("podman", ["ps", "-a", "--filter", `label=io.koji.adjutant.host=${hostName}`, "--format", "{{.Names}}"], {
    encoding: "utf8"
  })
    .split("\n")
    .filter((l) => l !== "")

/** Force-removes every container of `hostName` (cleanup after a failed test); returns how many there were. */
export const removeContainersOfHost = (hostName: string): number => {
  const names = containersOfHost(hostName)
  if (names.length > 0) execFileSync("podman", ["rm", "-f", "-t", "0", ...names], { stdio: "ignore" })
  return names.length
}

/** ContainersOptions for tests: small limits, the test host label, a short stop timeout. */
export const testContainersOptions = (socket: string, hostName: string, overrides: Partial<ContainersOptions> = {}): ContainersOptions => ({
  socket,
  hostName,
  defaultLimits: { memory: 512 * 1024 * 1024, pids: 512, cpus: 1 },
  ulimits: [],
  stopTimeout: 2,
  buildUser: "1000:1000",
  ...overrides
})
