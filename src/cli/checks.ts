/**
 * What `check-config` checks beyond the file itself. `startupProblems` is everything the daemon
 * refuses to start with once the file has parsed: a plugin it does not have (kojid refuses an
 * unknown plugin), the runroot plugin without a readable runroot.conf, a `cert` or `serverca` it
 * cannot read or use, a `build_userns` range some account uses. `runProbes` (`--probe`) tries
 * what the daemon talks to — the podman socket, the configured images, topdir, each topurl and an
 * anonymous hub call — and prints one checklist line for each.
 */
import { Console, Effect, Either } from "effect"
import * as fs from "node:fs"
import * as tls from "node:tls"
import { buildrootsOptionsFromConfig, checkBuildIds } from "../buildroot/Buildroots.js"
import { configuredImages } from "../containers/ImagePolicy.js"
import { selinuxEnabled } from "../containers/spec.js"
import { imagesOptionsFromConfig, parseImageReference } from "../containers/Images.js"
import { Libpod } from "../containers/Libpod.js"
import { hubOptionsFromConfig, KojiHub } from "../hub/KojiHub.js"
import { runrootConfigProblem } from "../runroot/config.js"
import { pluginModules } from "../tasks/TaskRegistry.js"
import { type Config, podmanSocketPath } from "../config/AdjutantConfig.js"

const message = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e))

/** The daemon's answer to `plugin`: every name must be a plugin it has (TaskRegistry.layerConfig). */
export const pluginProblems = (config: Config): ReadonlyArray<string> =>
  config.kojid.plugin
    .filter((name) => pluginModules[name] === undefined)
    .map((name) => `plugin ${JSON.stringify(name)} not found: koji-adjutant has ${Object.keys(pluginModules).join(", ")} (plugin in [kojid] of ${config.file})`)

/** A PEM file the hub transport reads: readable, and (for `cert`) a certificate with its key. */
const pemProblem = (what: string, file: string, withKey: boolean): string | undefined => {
  let pem: string
  try {
    pem = fs.readFileSync(file, "utf8")
  } catch (e) {
    return `cannot read ${what} ${file}: ${message(e)}`
  }
  try {
    tls.createSecureContext(withKey ? { cert: pem, key: pem } : { ca: pem })
    if (!/-----BEGIN [A-Z ]*CERTIFICATE-----/.test(pem)) return `${what} ${file} holds no PEM certificate`
    return undefined
  } catch (e) {
    return `${what} ${file} is not usable: ${message(e)}${withKey ? " (kojid's cert is one PEM file with the certificate and its private key)" : ""}`
  }
}

/** `cert` (used when the file exists, as kojid) and `serverca` (always read when set). */
export const tlsProblems = (config: Config): ReadonlyArray<string> => {
  const out: Array<string> = []
  const cert = config.kojid.cert
  if (cert !== null && cert !== "" && fs.existsSync(cert)) {
    const p = pemProblem("client certificate (cert)", cert, true)
    if (p !== undefined) out.push(p)
  }
  const ca = config.kojid.serverca
  if (ca !== null && ca !== "") {
    const p = pemProblem("server CA (serverca)", ca, false)
    if (p !== undefined) out.push(p)
  }
  return out
}

/** Everything the daemon would refuse to start with (the config file itself has parsed). */
export const startupProblems = (config: Config): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function*() {
    const problems: Array<string> = [...pluginProblems(config)]
    if (config.kojid.plugin.includes("runroot")) {
      const p = runrootConfigProblem(config.adjutant.runroot_config)
      if (p !== undefined) problems.push(p)
    }
    problems.push(...tlsProblems(config))
    const ids = yield* Effect.either(checkBuildIds(buildrootsOptionsFromConfig(config, () => Effect.die("unused"))))
    if (Either.isLeft(ids)) problems.push(ids.left.message)
    return problems
  })

/** One checklist line. */
export interface ProbeResult {
  readonly status: "ok" | "FAIL" | "note"
  readonly what: string
  readonly detail: string
}

const ok = (what: string, detail: string): ProbeResult => ({ status: "ok", what, detail })
const fail = (what: string, detail: string): ProbeResult => ({ status: "FAIL", what, detail })
const note = (what: string, detail: string): ProbeResult => ({ status: "note", what, detail })

/** The podman socket and the configured images. */
const probePodman = (config: Config): Effect.Effect<ReadonlyArray<ProbeResult>> =>
  Effect.gen(function*() {
    const libpod = yield* Libpod
    const socket = podmanSocketPath(config.adjutant)
    const version = yield* Effect.either(libpod.version)
    if (Either.isLeft(version)) return [fail("podman", version.left.message)]
    const out: Array<ProbeResult> = [ok("podman", `${socket} answers (podman ${version.right.Version})`)]
    const policy = config.adjutant.pull_policy
    for (const image of configuredImages(imagesOptionsFromConfig(config))) {
      const ref = parseImageReference(image)
      if (Either.isLeft(ref)) {
        out.push(fail("image", `${image}: ${ref.left}`))
        continue
      }
      const local = ref.right.digest !== undefined ? `${ref.right.name}@${ref.right.digest}` : `${ref.right.name}:${ref.right.tag ?? "latest"}`
      const exists = yield* Effect.either(libpod.imageExists(local))
      if (Either.isLeft(exists)) out.push(fail("image", `${image}: ${exists.left.message}`))
      else if (exists.right) out.push(ok("image", `${image} is in podman's storage`))
      else if (policy === "never" || ref.right.registry === "localhost") out.push(fail("image", `${image} is not in podman's storage and cannot be pulled (pull_policy = ${policy})`))
      else out.push(note("image", `${image} is not in podman's storage yet: the daemon pulls it at start (pull_policy = ${policy})`))
    }
    return out
  }).pipe(Effect.provide(Libpod.layer({ socket: podmanSocketPath(config.adjutant) })))

/** topdir: read by tasks where it is mounted (else they use topurl). */
const probeTopdir = (config: Config): ProbeResult => {
  const dir = config.kojid.topdir
  try {
    const st = fs.statSync(dir)
    if (!st.isDirectory()) return fail("topdir", `${dir} is not a directory`)
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK)
    return ok("topdir", `${dir} is readable${fs.existsSync(`${dir}/repos`) ? "" : " (no repos/ below it: not koji's topdir?)"}`)
  } catch (e) {
    return note("topdir", `${dir}: ${message(e)}; tasks read the hub's files from topurl instead`)
  }
}

/** Each topurl answers HTTP (a 403 for a directory listing counts: the server is there). */
const probeTopurl = (url: string): Effect.Effect<ProbeResult> =>
  Effect.tryPromise({
    try: async () => {
      const res = await fetch(url, { method: "GET", redirect: "manual", signal: AbortSignal.timeout(15_000) })
      await res.body?.cancel()
      return res.status
    },
    catch: (e) => (e instanceof Error && e.cause instanceof Error ? e.cause.message : message(e))
  }).pipe(
    Effect.map((status) => (status < 500 ? ok("topurl", `${url} answers (HTTP ${status})`) : fail("topurl", `${url} answers HTTP ${status}`))),
    Effect.catchAll((why) => Effect.succeed(fail("topurl", `${url}: ${why}`)))
  )

/** An anonymous `getAPIVersion` (and the host's row when kojid.conf names the user), with the daemon's TLS settings. */
const probeHub = (config: Config): Effect.Effect<ReadonlyArray<ProbeResult>> =>
  Effect.gen(function*() {
    const hub = yield* KojiHub
    const server = config.kojid.server
    const version = yield* Effect.either(hub.anonymous.call("getAPIVersion"))
    if (Either.isLeft(version)) return [fail("hub", `${server}: ${message(version.left)}`)]
    const out: Array<ProbeResult> = [ok("hub", `${server} answers an anonymous call (API version ${String(version.right)})`)]
    const user = config.kojid.user
    if (user !== null && user !== "") {
      const host = yield* Effect.either(hub.anonymous.call("getHost", [user]))
      if (Either.isLeft(host)) out.push(fail("host", `getHost(${user}): ${message(host.left)}`))
      else if (host.right === null) out.push(fail("host", `the hub has no host ${user}: koji add-host ${user} ARCHES`))
      else out.push(ok("host", `${user} exists on the hub`))
    }
    return out
  }).pipe(
    Effect.provide(KojiHub.layerWithTransport({ ...hubOptionsFromConfig(config), timeout: Math.min(config.kojid.timeout ?? 30, 30), maxRetries: 0, anonRetry: false, recoveryProbeInterval: 0 })),
    Effect.catchAll((e) => Effect.succeed([fail("hub", `${config.kojid.server}: ${e.message}`)]))
  )

/** SELinux: the containers' labels follow it (spec.ts `selinux`). */
const probeSelinux = (): ProbeResult => {
  if (!selinuxEnabled()) return ok("selinux", "not enabled")
  let mode = "enabled"
  try {
    mode = fs.readFileSync("/sys/fs/selinux/enforce", "utf8").trim() === "1" ? "enforcing" : "permissive"
  } catch {
    // enabled, mode unknown
  }
  return note("selinux", `${mode}: containers run with label=disable (README: SELinux)`)
}

/** Runs every probe, prints the checklist and returns how many failed. */
export const runProbes = (config: Config): Effect.Effect<number> =>
  Effect.gen(function*() {
    const [podman, topurls, hub] = yield* Effect.all([
      probePodman(config),
      Effect.forEach(config.kojid.topurls, probeTopurl),
      probeHub(config)
    ], { concurrency: "unbounded" })
    const results = [...podman, probeSelinux(), probeTopdir(config), ...topurls, ...hub]
    yield* Console.log("\n# probe")
    for (const r of results) yield* Console.log(`${r.status.padEnd(4)}  ${r.what.padEnd(7)} ${r.detail}`)
    return results.filter((r) => r.status === "FAIL").length
  })
