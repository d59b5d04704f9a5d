/**
 * The daemon image (issue 16), built by scripts/build-daemon-image.sh and run the way
 * examples/koji-adjutant.container says (its options translated as podman's quadlet generator
 * does, the test's paths put in place of the example's): with the host's podman socket mounted
 * and same-path volumes, against the fake hub on the host (host network), it logs in, takes a
 * buildArch task of the fixture package, builds it in a buildroot container, uploads, closes the
 * task, answers its health check and stops on SIGTERM leaving no container, mount or loop device.
 * A workdir volume at another host path, and one whose host directory is not a shared mount,
 * stop it at start with the error naming the path. The example quadlet passes the generator
 * (podman's own where installed, else the generated unit passes `systemd-analyze verify`).
 */
import { execFileSync, spawnSync } from "node:child_process"
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { type Fixture, loadFixtureFiles, makeTopdir, uploadSrpm } from "../buildroot/support.js"
import { freePort, waitUntil } from "../e2e/support.js"
import { loadFixture } from "../fakehub/buildroots.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { traversableTempDir } from "../support/dirs.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, type PodmanService, removeContainersOfHost, startPodmanService, uniqueHostName } from "../support/podman.js"
import {
  buildDaemonImage, COMPOSE, containersLabelled, exampleRunArgs, generatedService, loopDevicesUnder, mountsUnder, parseUnit, QUADLET,
  quadletBinary, quadletRun, shareMount, splitWords, unmountAll
} from "./support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const PASSWORD = "image-pw"
const hostName = uniqueHostName("image")
const testLabel = `io.koji.adjutant.test=${hostName}`
const DONE = new Set([2, 3, 5])
let image: string
let fixture: Fixture
let service: PodmanService
let base: string
let topdir: string
let hub: FakeHub
let files: http.Server
let topurl: string
let statusPort: number
const scratch: Array<string> = []
const scope = Effect.runSync(Scope.make())

/** koji's topurl: the hub's topdir over HTTP on loopback, following its symlinks into the fixture. */
const serveTopdir = (dir: string): Promise<http.Server> =>
  new Promise((done) => {
    const server = http.createServer((req, res) => {
      const rel = path.normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname))
      const st = rel.includes("..") ? undefined : statSync(path.join(dir, rel), { throwIfNoEntry: false })
      if (st === undefined || !st.isFile()) {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { "content-length": st.size })
      createReadStream(path.join(dir, rel)).pipe(res)
    })
    server.listen(0, "127.0.0.1", () => done(server))
  })

const kojidConf = (workdir: string): string => [
  "[kojid]",
  `server = ${hub.url}`,
  `topurl = ${topurl}`,
  `topdir = ${topdir}`,
  `user = ${hostName}`,
  `password = ${PASSWORD}`,
  `workdir = ${workdir}`,
  "sleeptime = 1",
  "retry_interval = 1",
  "max_retries = 3",
  "minspace = 1",
  "log_level = INFO",
  "[adjutant]",
  `log_file = ${base}/log/kojid.log`,
  `bootstrap_image = ${fixture.image}`,
  "pull_policy = never",
  "image_gc = False",
  `image_state_file = ${base}/state/images.json`,
  `buildroot_cache_dir = ${base}/state/buildroots`,
  `status_listen = 127.0.0.1:${statusPort}`,
  "container_memory = 2g",
  ""
].join("\n")

/** A kojid.conf directory (mounted at /etc/kojid) with `workdir`. */
const confDir = (name: string, workdir: string): string => {
  const d = path.join(base, name)
  mkdirSync(d, { recursive: true })
  writeFileSync(path.join(d, "kojid.conf"), kojidConf(workdir))
  return d
}

/** `podman run` options of the example quadlet with this test's paths. */
const runArgs = (name: string, etc: string, replaceVolume?: { readonly destination: string; readonly volume: string }) =>
  exampleRunArgs(quadletRun(parseUnit(readFileSync(QUADLET, "utf8"))), {
    paths: new Map([
      ["/var/tmp/koji", `${base}/work`],
      ["/var/lib/koji-adjutant", `${base}/state`],
      ["/mnt/koji", topdir],
      ["/var/log/koji-adjutant", `${base}/log`]
    ]),
    sources: new Map([["/run/podman/podman.sock", service.socket], ["/etc/kojid", etc]]),
    statusPort,
    name,
    labels: [testLabel],
    ...(replaceVolume === undefined ? {} : { replaceVolume })
  })

const podmanOut = (args: ReadonlyArray<string>): string => execFileSync("podman", [...args], { encoding: "utf8" }).trim()
const logsOf = (name: string): string => spawnSync("podman", ["logs", name], { encoding: "utf8" }).stderr ?? ""

/** Runs the image in the foreground until it exits (it must fail at start); returns its status and output. */
const runToFailure = (args: ReadonlyArray<string>) => {
  const r = spawnSync("podman", ["run", "--rm", ...args, image], { encoding: "utf8", timeout: 120_000 })
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` }
}

describe.skipIf(!podmanInstalled)("the koji-adjutant daemon image (real podman)", () => {
  beforeAll(async () => {
    image = await buildDaemonImage()
    fixture = loadFixtureFiles()
    service = await startPodmanService()
    base = traversableTempDir("adjutant-image-")
    // What systemd gives every host: a shared mount, so rshared volumes below it reach the host.
    shareMount(base)
    for (const d of ["work", "state", "log"]) mkdirSync(path.join(base, d), { recursive: true, mode: 0o711 })
    topdir = makeTopdir(fixture)
    hub = await Effect.runPromise(Scope.extend(
      startFakeHub({ hosts: [{ name: hostName, password: PASSWORD, capacity: 10, arches: "x86_64" }], topdir, scheduler: { runInterval: 0 } }),
      scope
    ))
    loadFixture(topdir, fixture.manifest)
    files = await serveTopdir(topdir)
    topurl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`
    statusPort = await freePort()
  }, 1_500_000)

  afterAll(async () => {
    const left = podmanInstalled ? containersLabelled(testLabel) : []
    if (left.length > 0) spawnSync("podman", ["rm", "-f", "-t", "0", ...left], { stdio: "ignore" })
    removeContainersOfHost(hostName)
    files?.closeAllConnections()
    await new Promise<void>((r) => (files === undefined ? r() : files.close(() => r())))
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await service?.stop()
    if (base !== undefined) {
      unmountAll(base)
      rmSync(base, { recursive: true, force: true })
    }
    for (const d of scratch) rmSync(d, { recursive: true, force: true })
    if (topdir !== undefined) rmSync(topdir, { recursive: true, force: true })
  }, 180_000)

  it("podman: run as the example quadlet says, it builds the fixture's buildArch task, answers its health check and leaves nothing behind", async () => {
    const name = `kojiadj-image-${hostName}`
    const etc = confDir("etc-kojid", `${base}/work`)
    const srpm = path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm")
    const id = hub.createTask("buildArch", [uploadSrpm(topdir, srpm), "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" })
    podmanOut(["run", "-d", ...runArgs(name, etc), image])
    const state = () => podmanOut(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name])
    let last = { at: 0, state: "running" }
    const stateEvery2s = () => {
      if (Date.now() - last.at > 2000) last = { at: Date.now(), state: state() }
      return last.state
    }
    await waitUntil(() => DONE.has(hub.state.task(id)?.state ?? 0) || !stateEvery2s().startsWith("running"), `task ${id} to end`, 600_000)
      .catch((e: unknown) => { throw new Error(`${String(e)}\n${logsOf(name)}`) })
    assert.strictEqual(hub.state.task(id)?.state, 2, `buildArch: ${JSON.stringify(hub.state.taskResult(id))}\n${state()}\n${logsOf(name)}`)
    const result = hub.state.taskResult(id) as Record<string, ReadonlyArray<string>>
    assert.strictEqual(result["rpms"]?.length, 1)
    assert.match(result["rpms"]![0]!, /fixture-hello-1\.0-1\.noarch\.rpm$/)
    for (const f of [...result["rpms"]!, ...result["srpms"]!, ...result["logs"]!]) assert.isDefined(hub.state.upload(f), `uploaded ${f}`)
    assert.include(hub.state.upload(result["logs"]!.find((l) => l.endsWith("/build.log"))!)!.toString(), "fixture-hello")

    // The health check of the example (HealthCmd), run by podman in the container, and /healthz from the host.
    await waitUntil(() => spawnSync("podman", ["healthcheck", "run", name]).status === 0, "the health check to pass", 30_000)
    const healthz = await fetch(`http://127.0.0.1:${statusPort}/healthz`)
    assert.strictEqual(healthz.status, 200)
    // The log is on the host at the same path, and says the path check ran.
    const log = readFileSync(`${base}/log/kojid.log`, "utf8")
    assert.include(log, "checking that the host's podman sees its paths")

    await waitUntil(() => containersOfHost(hostName).length === 0, "the task's containers to go", 30_000)
    // SIGTERM, as systemd and `podman stop` send it: the daemon logs out and exits 0.
    execFileSync("podman", ["kill", "--signal", "TERM", name], { stdio: "ignore" })
    await waitUntil(() => !stateEvery2s().startsWith("running"), "the daemon to exit on SIGTERM", 90_000).catch((e: unknown) => {
      const ps = spawnSync("podman", ["top", name], { encoding: "utf8" }).stdout
      throw new Error(`${String(e)}\n${ps}\n${logsOf(name)}`)
    })
    assert.strictEqual(state(), "exited 0", logsOf(name))
    execFileSync("podman", ["rm", name], { stdio: "ignore" })
    assert.deepStrictEqual(containersOfHost(hostName), [], "build containers left")
    assert.deepStrictEqual(containersLabelled("io.koji.adjutant.pathcheck=1"), [], "path-check containers left")
    assert.deepStrictEqual(mountsUnder(base), [base], "mounts left below the test's directory")
    assert.deepStrictEqual(loopDevicesUnder(base), [], "loop devices left")
    assert.deepStrictEqual(podmanOut(["ps", "-a", "--filter", `label=${testLabel}`, "--format", "{{.Names}}"]), "")
  }, 900_000)

  it("podman: a workdir volume from another host path stops the daemon at start, naming both paths", () => {
    const etc = confDir("etc-kojid-moved", `${base}/work`)
    mkdirSync(`${base}/elsewhere`, { recursive: true, mode: 0o711 })
    const { status, output } = runToFailure(runArgs(`kojiadj-image-moved-${hostName}`, etc, {
      destination: "/var/tmp/koji",
      volume: `${base}/elsewhere:${base}/work:rshared`
    }))
    assert.notStrictEqual(status, 0, output)
    assert.include(output, `workdir ${base}/work is ${base}/elsewhere on the host (volume ${base}/elsewhere:${base}/work)`)
    assert.include(output, `-v ${base}/work:${base}/work:rshared`)
    assert.notInclude(output, "Starting up", "it must stop before logging in")
  }, 180_000)

  it("podman: a workdir whose host directory is not a shared mount stops the daemon at start", () => {
    const priv = traversableTempDir("adjutant-image-private-")
    scratch.push(priv)
    const etc = confDir("etc-kojid-private", priv)
    const { status, output } = runToFailure(runArgs(`kojiadj-image-private-${hostName}`, etc, {
      destination: "/var/tmp/koji",
      volume: `${priv}:${priv}:rshared`
    }))
    assert.notStrictEqual(status, 0, output)
    assert.include(output, `mounts the daemon makes below workdir ${priv} do not reach the host's podman`)
    assert.deepStrictEqual(mountsUnder(priv), [], "the probe's tmpfs is gone")
    assert.deepStrictEqual(containersLabelled("io.koji.adjutant.pathcheck=1"), [], "path-check containers left")
  }, 180_000)

  it("the example quadlet passes the generator", () => {
    const unit = parseUnit(readFileSync(QUADLET, "utf8"))
    const dir = mkdtempSync(path.join(tmpdir(), "adjutant-quadlet-"))
    scratch.push(dir)
    if (quadletBinary !== undefined) {
      writeFileSync(path.join(dir, "koji-adjutant.container"), readFileSync(QUADLET))
      const r = spawnSync(quadletBinary, ["-dryrun"], { encoding: "utf8", env: { ...process.env, QUADLET_UNIT_DIRS: dir } })
      assert.strictEqual(r.status, 0, r.stderr)
      assert.match(r.stdout, /ExecStart=.*podman run .*koji-adjutant/)
      return
    }
    // podman 4.3 has no quadlet: the unit it would generate must pass systemd's own checks.
    const file = path.join(dir, "koji-adjutant.service")
    writeFileSync(file, generatedService(unit, "koji-adjutant"))
    const r = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8" })
    assert.strictEqual(r.status, 0, r.stderr)
    assert.strictEqual(r.stderr.split("\n").filter((l) => l.includes(file)).join("\n"), "", "systemd-analyze warnings about the unit")
    const exec = parseUnit(readFileSync(file, "utf8")).get("Service")!.find(([k]) => k === "ExecStart")![1]
    const words = splitWords(exec)
    assert.includeMembers(words, ["--network", "host", "--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD", "--device", "/dev/loop-control"])
    assert.include(words, "b 7:* rwm")
    assert.include(words, "/var/tmp/koji:/var/tmp/koji:rshared")
    assert.strictEqual(words.at(-1), "localhost/koji-adjutant:latest")
  })

  it("the example compose service says what the quadlet says", (ctx) => {
    const py = spawnSync("python3", ["-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", COMPOSE], { encoding: "utf8" })
    if (py.status !== 0) {
      ctx.skip(`python3 with PyYAML is needed to read ${COMPOSE}: ${py.stderr.trim().split("\n").pop() ?? ""}`)
      return
    }
    type Svc = {
      image: string
      network_mode: string
      cap_add: Array<string>
      devices: Array<string>
      device_cgroup_rules: Array<string>
      security_opt: Array<string>
      volumes: Array<string | { type: string; source: string; target: string; bind?: { propagation?: string } }>
      healthcheck: { test: Array<string> }
    }
    const svc = (JSON.parse(py.stdout) as { services: Record<string, Svc> }).services["koji-adjutant"]!
    const run = quadletRun(parseUnit(readFileSync(QUADLET, "utf8")))
    const opt = (flag: string) => run.options.flatMap((o, i) => (o === flag ? [run.options[i + 1]!] : []))
    const volumes = svc.volumes.map((v) => typeof v === "string" ? v : `${v.source}:${v.target}${v.bind?.propagation === undefined ? "" : `:${v.bind.propagation}`}`)
    assert.deepStrictEqual([...volumes].sort(), [...opt("-v")].sort())
    assert.strictEqual(svc.image, run.image)
    assert.deepStrictEqual(opt("--network"), [svc.network_mode])
    assert.deepStrictEqual(opt("--cap-add"), svc.cap_add)
    assert.deepStrictEqual(opt("--device"), svc.devices)
    assert.deepStrictEqual(opt("--device-cgroup-rule"), svc.device_cgroup_rules)
    assert.deepStrictEqual(opt("--security-opt"), svc.security_opt)
    assert.deepStrictEqual(svc.healthcheck.test, ["CMD", ...splitWords(opt("--health-cmd")[0]!)])
  })

  it("podman: the image is labelled with the package version and runs the daemon with /etc/kojid/kojid.conf", () => {
    const version = (JSON.parse(readFileSync(path.join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }).version
    assert.strictEqual(podmanOut(["image", "inspect", "--format", "{{index .Config.Labels \"org.opencontainers.image.version\"}}", image]), version)
    assert.strictEqual(podmanOut(["image", "inspect", "--format", "{{json .Config.Cmd}}", image]), JSON.stringify(["-c", "/etc/kojid/kojid.conf", "--fg", "--force-lock"]))
    const info = podmanOut(["run", "--rm", "--entrypoint", "/usr/local/bin/node", image, "-e",
      "console.log(process.version); console.log(typeof require('/usr/lib/koji-adjutant/node_modules/kerberos').initializeClient)"])
    const [nodeVersion, kerberos] = info.split("\n")
    assert.match(nodeVersion ?? "", /^v24\./)
    assert.strictEqual(kerberos, "function", "the kerberos addon loads under the image's Node")
  })
})
