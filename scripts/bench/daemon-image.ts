// Daemon image bench (issue 16 "Measure"), in one run against the fake hub with real podman and
// the offline fixture: the same warm buildArch of the noarch fixture (buildroot cache filled by a
// warm-up task) through the daemon on the host (`node dist/main.js`) and through the daemon in
// its image, run as examples/koji-adjutant.container says (same-path volumes, the host's podman
// socket, host network) with the same kojid.conf, workdir and buildroot cache. Each side: one
// warm-up, then N tasks one after the other, each timed from host.openTask to CLOSED; the ratio
// is of the medians. Also prints the image's size.
// Usage: npm run bench -- daemon-image [--runs 5]. Run as root; builds the image if missing.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import { createReadStream, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { loadFixtureFiles, makeTopdir, uploadSrpm } from "../../test/buildroot/support.js"
import { loadFixture } from "../../test/fakehub/buildroots.js"
import { startFakeHub } from "../../test/fakehub/FakeHub.js"
import { traversableTempDir } from "../../test/support/dirs.js"
import { removeContainersOfHost, startPodmanService, uniqueHostName } from "../../test/support/podman.js"
import {
  buildDaemonImage, exampleRunArgs, imageSizeMB, mountsUnder, parseUnit, QUADLET, quadletRun, repoRoot, shareMount, unmountAll
} from "../../test/image/support.js"

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const runs = Number(arg("runs", "5"))
const PASSWORD = "bench-pw"

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const waitUntil = async (cond: () => boolean, what: string, ms: number) => {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

const image = await buildDaemonImage()
const sizeMB = imageSizeMB(image)
const fixture = loadFixtureFiles()
const service = await startPodmanService()
const hostName = uniqueHostName("bench-image")
const base = traversableTempDir("adjutant-bench-image-")
shareMount(base)
for (const d of ["work", "state", "log", "etc-host", "etc-ctr"]) mkdirSync(path.join(base, d), { recursive: true, mode: 0o711 })
const topdir = makeTopdir(fixture)
const scope = Effect.runSync(Scope.make())
const containerName = `kojiadj-bench-${hostName}`
let host: ChildProcess | undefined

try {
  const hub = await Effect.runPromise(Scope.extend(
    startFakeHub({ hosts: [{ name: hostName, password: PASSWORD, capacity: 10, arches: "x86_64" }], topdir, scheduler: { runInterval: 0 } }),
    scope
  ))
  loadFixture(topdir, fixture.manifest)
  const files = http.createServer((req, res) => {
    const rel = path.normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname))
    const st = rel.includes("..") ? undefined : statSync(path.join(topdir, rel), { throwIfNoEntry: false })
    if (st === undefined || !st.isFile()) return void res.writeHead(404).end()
    res.writeHead(200, { "content-length": st.size })
    createReadStream(path.join(topdir, rel)).pipe(res)
  })
  await new Promise<void>((r) => files.listen(0, "127.0.0.1", () => r()))
  Effect.runSync(Scope.addFinalizer(scope, Effect.promise(() => new Promise<void>((r) => {
    files.closeAllConnections()
    files.close(() => r())
  }))))

  const conf = (socket: string) => [
    "[kojid]",
    `server = ${hub.url}`,
    `topurl = http://127.0.0.1:${(files.address() as AddressInfo).port}`,
    `topdir = ${topdir}`,
    `user = ${hostName}`,
    `password = ${PASSWORD}`,
    `workdir = ${base}/work`,
    "sleeptime = 1",
    "minspace = 1",
    "[adjutant]",
    `podman_socket = unix://${socket}`,
    `log_file = ${base}/log/kojid.log`,
    `bootstrap_image = ${fixture.image}`,
    "pull_policy = never",
    "image_gc = False",
    `image_state_file = ${base}/state/images.json`,
    `buildroot_cache_dir = ${base}/state/buildroots`,
    "container_memory = 2g",
    ""
  ].join("\n")
  writeFileSync(`${base}/etc-host/kojid.conf`, conf(service.socket))
  writeFileSync(`${base}/etc-ctr/kojid.conf`, conf("/run/podman/podman.sock"))

  const srpm = path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm")
  let n = 0
  /**
   * One buildArch, host.openTask → CLOSED, in seconds: from the moment the daemon takes it, so
   * the phase of its 1 s poll (sleeptime) does not count.
   */
  const oneBuild = async (): Promise<number> => {
    const rel = uploadSrpm(topdir, srpm, `bench-${n++}`)
    const id = hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" })
    await waitUntil(() => {
      if (host !== undefined && host.exitCode !== null) throw new Error(`the host daemon exited (${host.exitCode})`)
      return [2, 3, 5].includes(hub.state.task(id)?.state ?? 0)
    }, `task ${id}`, 600_000)
    const closed = Date.now() / 1000
    const task = hub.state.task(id)!
    if (task.state !== 2) throw new Error(`task ${id} failed: ${JSON.stringify(hub.state.taskResult(id))}`)
    return closed - task.startTs!
  }
  const series = async (label: string): Promise<ReadonlyArray<number>> => {
    console.error(`${label}: warm-up ${(await oneBuild()).toFixed(2)} s`)
    const out: Array<number> = []
    for (let i = 0; i < runs; i++) out.push(await oneBuild())
    console.error(`${label}: ${out.map((t) => t.toFixed(2)).join(" ")} s`)
    return out
  }

  // 1. The daemon on the host.
  host = spawn(process.execPath, [path.join(repoRoot, "dist/main.js"), "-c", `${base}/etc-host/kojid.conf`, "--fg", "--force-lock"], {
    stdio: ["ignore", "ignore", "pipe"]
  })
  let hostErr = ""
  host.stderr?.on("data", (b: Buffer) => {
    hostErr = (hostErr + b.toString()).slice(-20_000)
  })
  host.once("exit", (code) => {
    if (code !== 0 && code !== null) console.error(`bench: the host daemon exited with ${code}:\n${hostErr}`)
  })
  const onHost = await series(`host (node ${process.version})`).catch((e: unknown) => {
    throw new Error(`${String(e)}\nhost daemon stderr:\n${hostErr}`)
  })
  host.kill("SIGTERM")
  await new Promise((r) => host!.once("exit", r))
  host = undefined

  // 2. The same daemon in its image, as the example quadlet runs it.
  const args = exampleRunArgs(quadletRun(parseUnit(readFileSync(QUADLET, "utf8"))), {
    paths: new Map([["/var/tmp/koji", `${base}/work`], ["/var/lib/koji-adjutant", `${base}/state`], ["/mnt/koji", topdir], ["/var/log/koji-adjutant", `${base}/log`]]),
    sources: new Map([["/run/podman/podman.sock", service.socket], ["/etc/kojid", `${base}/etc-ctr`]]),
    statusPort: 1,
    name: containerName,
    labels: [`io.koji.adjutant.bench=${hostName}`]
  }).filter((a, i, all) => !a.startsWith("--health") && !all[i - 1]?.startsWith("--health"))
  execFileSync("podman", ["run", "-d", ...args, image], { stdio: "ignore" })
  const inContainer = await series(`container (${image})`)
  execFileSync("podman", ["stop", "-t", "60", containerName], { stdio: "ignore" })

  const h = median(onHost)
  const c = median(inContainer)
  console.log(`warm buildArch, openTask → CLOSED, median of ${runs}: host ${h.toFixed(2)} s, in container ${c.toFixed(2)} s`)
  console.log(`daemon image size: ${sizeMB.toFixed(0)} MB (${image})`)
  console.log(`daemon-image: in-container/host = ${(c / h).toFixed(2)} (target <= 1.1)`)
} finally {
  host?.kill("SIGKILL")
  spawnSync("podman", ["rm", "-f", "-t", "0", containerName], { stdio: "ignore" })
  removeContainersOfHost(hostName)
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await service.stop()
  unmountAll(base)
  if (mountsUnder(base).length > 0) console.error(`bench: mounts left under ${base}`)
  else rmSync(base, { recursive: true, force: true })
  rmSync(topdir, { recursive: true, force: true })
}
