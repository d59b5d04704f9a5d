/**
 * Shared setup of the daemon-image tests and bench: building the image (scripts/build-daemon-image.sh),
 * reading the example quadlet into `podman run` arguments the way podman's quadlet generator does
 * (the container the tests start is the example's, with the test's paths substituted), a
 * generated systemd unit for `systemd-analyze verify`, shared bind mounts of scratch directories
 * (same-path volumes with rshared propagation need a shared host mount), and the checks that
 * nothing was left behind (containers, mounts, loop devices).
 */
import { execFile, execFileSync, spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"

export const repoRoot = ((): string => {
  let dir = import.meta.dirname
  while (!existsSync(path.join(dir, "scripts/build-daemon-image.sh")) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return dir
})()

export const QUADLET = path.join(repoRoot, "examples/koji-adjutant.container")
export const COMPOSE = path.join(repoRoot, "examples/compose.yaml")

/** Builds the daemon image if missing (idempotent, offline once its caches are filled); returns its name. */
export const buildDaemonImage = (): Promise<string> =>
  new Promise((resolve, reject) => {
    // Not execFileSync: a build of a minute or two must not block the test worker's event loop.
    execFile("bash", [path.join(repoRoot, "scripts/build-daemon-image.sh")], { encoding: "utf8", timeout: 1_500_000 }, (err, out, errOut) => {
      process.stderr.write(errOut)
      const name = out.trim().split("\n").pop() ?? ""
      if (err !== null || !name.startsWith("localhost/koji-adjutant:")) reject(new Error(`build-daemon-image.sh failed: ${err?.message ?? ""} ${out}`))
      else resolve(name)
    })
  })

/** The image's size in MB (10^6 bytes), as `podman images` shows it. */
export const imageSizeMB = (image: string): number =>
  Number(execFileSync("podman", ["image", "inspect", "--format", "{{.Size}}", image], { encoding: "utf8" }).trim()) / 1e6

/** An INI-style unit file: section → key → values in order (repeated keys accumulate). */
export type UnitFile = ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>

/** Parses a systemd unit / quadlet file (comments, sections, `Key=value`, backslash continuations). */
export const parseUnit = (text: string): UnitFile => {
  const out = new Map<string, Array<readonly [string, string]>>()
  let section = ""
  const lines = text.replace(/\\\n/g, " ").split("\n")
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const sec = /^\[([^\]]+)\]$/.exec(line)
    if (sec !== null) {
      section = sec[1]!
      if (!out.has(section)) out.set(section, [])
      continue
    }
    const eq = line.indexOf("=")
    if (eq <= 0 || section === "") throw new Error(`line ${i + 1}: not Key=value in a section: ${line}`)
    out.get(section)!.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()])
  }
  return out
}

/** Splits a value into words as systemd does for command lines: spaces separate, double or single quotes group. */
export const splitWords = (value: string): Array<string> => {
  const words: Array<string> = []
  let cur = ""
  let quote: string | undefined
  let inWord = false
  for (const ch of value) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined
      else cur += ch
    } else if (ch === '"' || ch === "'") {
      quote = ch
      inWord = true
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur)
      cur = ""
      inWord = false
    } else {
      cur += ch
      inWord = true
    }
  }
  if (quote !== undefined) throw new Error(`unbalanced quote in ${value}`)
  if (inWord) words.push(cur)
  return words
}

/**
 * The [Container] keys this translation knows, with their `podman run` options (podman-container.unit(5),
 * podman 4.5+). A key outside this list fails the translation: the example must use only these.
 */
const CONTAINER_KEYS: Readonly<Record<string, (v: string) => ReadonlyArray<string>>> = {
  Image: () => [],
  ContainerName: (v) => ["--name", v],
  Volume: (v) => ["-v", v],
  Network: (v) => ["--network", v],
  AddCapability: (v) => splitWords(v).flatMap((c) => ["--cap-add", c]),
  DropCapability: (v) => splitWords(v).flatMap((c) => ["--cap-drop", c]),
  AddDevice: (v) => ["--device", v],
  PodmanArgs: (v) => splitWords(v),
  SecurityLabelDisable: (v) => (v === "true" ? ["--security-opt", "label=disable"] : []),
  Environment: (v) => splitWords(v).flatMap((e) => ["--env", e]),
  Label: (v) => splitWords(v).flatMap((l) => ["--label", l]),
  PublishPort: (v) => ["--publish", v],
  HealthCmd: (v) => ["--health-cmd", v],
  HealthInterval: (v) => ["--health-interval", v],
  HealthStartPeriod: (v) => ["--health-start-period", v],
  HealthRetries: (v) => ["--health-retries", v],
  HealthTimeout: (v) => ["--health-timeout", v],
  Exec: () => []
}

/** The `podman run` options, image and command of a quadlet's [Container] section. */
export interface QuadletRun {
  readonly options: ReadonlyArray<string>
  readonly image: string
  readonly exec: ReadonlyArray<string>
}

/** Translates the [Container] section; throws on a key it does not know or a missing Image. */
export const quadletRun = (unit: UnitFile): QuadletRun => {
  const entries = unit.get("Container")
  if (entries === undefined) throw new Error("no [Container] section")
  const options: Array<string> = []
  let image: string | undefined
  let exec: ReadonlyArray<string> = []
  for (const [key, value] of entries) {
    const tr = CONTAINER_KEYS[key]
    if (tr === undefined) throw new Error(`[Container] ${key} is not a quadlet key this test knows`)
    if (key === "Image") image = value
    else if (key === "Exec") exec = splitWords(value)
    else options.push(...tr(value))
  }
  if (image === undefined) throw new Error("[Container] has no Image=")
  return { options, image, exec }
}

/** systemd's quoting of one ExecStart word. */
const quoteWord = (w: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `"${w.replace(/(["\\])/g, "\\$1")}"`)

/**
 * The service unit podman's quadlet generator makes of `unit` (its shape for a system unit:
 * [Unit] and [Install] kept, `podman run` with --cidfile/--replace/--rm/--sdnotify=conmon -d,
 * Type=notify, the [Service] keys kept), for `systemd-analyze verify`.
 */
export const generatedService = (unit: UnitFile, name: string): string => {
  const run = quadletRun(unit)
  const section = (s: string) => (unit.get(s) ?? []).map(([k, v]) => `${k}=${v}`)
  const cmd = [
    "/usr/bin/podman", "run", `--cidfile=%t/%N.cid`, "--replace", "--rm", "--cgroups=split", "--sdnotify=conmon", "-d",
    ...run.options, run.image, ...run.exec
  ]
  return [
    "[Unit]", ...section("Unit"), `SourcePath=/etc/containers/systemd/${name}.container`, "RequiresMountsFor=%t/containers", "",
    "[Service]", "Environment=PODMAN_SYSTEMD_UNIT=%n", "KillMode=mixed",
    `ExecStop=/usr/bin/podman rm -f -i --cidfile=%t/%N.cid`, `ExecStopPost=-/usr/bin/podman rm -f -i --cidfile=%t/%N.cid`,
    "Delegate=yes", "Type=notify", "NotifyAccess=all", "SyslogIdentifier=%N",
    `ExecStart=${cmd.map(quoteWord).join(" ")}`, ...section("Service"), "",
    "[Install]", ...section("Install"), ""
  ].join("\n")
}

/** podman's own quadlet generator, where this podman has one (4.4+). */
export const quadletBinary: string | undefined = ["/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet"].find((p) => existsSync(p))

/** Makes `dir` a shared mount of its own (what systemd does for / at boot), so rshared volumes below it reach the host. */
export const shareMount = (dir: string): void => {
  execFileSync("mount", ["--bind", dir, dir])
  execFileSync("mount", ["--make-shared", dir])
}

/** Mount points at or below `dir` (from /proc/self/mountinfo), deepest last. */
export const mountsUnder = (dir: string): ReadonlyArray<string> =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => (l.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))

/** Unmounts everything at or below `dir`, deepest first (lazily when busy). */
export const unmountAll = (dir: string): void => {
  for (const m of [...mountsUnder(dir)].sort((a, b) => b.length - a.length)) {
    if (spawnSync("umount", [m]).status !== 0) spawnSync("umount", ["-l", m])
  }
}

/** Loop devices whose backing file is below `dir`. */
export const loopDevicesUnder = (dir: string): ReadonlyArray<string> =>
  readdirSync("/sys/block")
    .filter((d) => d.startsWith("loop"))
    .filter((d) => {
      try {
        const f = readFileSync(`/sys/block/${d}/loop/backing_file`, "utf8").trim()
        return f.startsWith(`${dir}/`)
      } catch {
        return false
      }
    })

/** Names of containers (any state) with a label `key=value`. */
export const containersLabelled = (label: string): ReadonlyArray<string> =>
  execFileSync("podman", ["ps", "-a", "--filter", `label=${label}`, "--format", "{{.Names}}"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l !== "")

/**
 * `podman run` arguments of the example quadlet for a test: its host paths replaced by the
 * test's (`paths`: example path → test path, both sides of a same-path volume; `sources`: the
 * source only), the container's name and the health check's port replaced, labels added.
 */
export const exampleRunArgs = (
  run: QuadletRun,
  subst: {
    readonly paths: ReadonlyMap<string, string>
    /** Example volume source → test source, the destination kept (the socket, /etc/kojid). */
    readonly sources: ReadonlyMap<string, string>
    readonly statusPort: number
    readonly name: string
    readonly labels: ReadonlyArray<string>
    /** A volume to use instead of the one at this destination (by example destination). */
    readonly replaceVolume?: { readonly destination: string; readonly volume: string }
  }
): Array<string> => {
  const out: Array<string> = []
  const opts = [...run.options]
  for (let i = 0; i < opts.length; i++) {
    const o = opts[i]!
    const v = opts[i + 1] ?? ""
    if (o === "-v") {
      i++
      const [src = "", dst = "", mode] = v.split(":")
      if (subst.replaceVolume !== undefined && dst === subst.replaceVolume.destination) {
        out.push("-v", subst.replaceVolume.volume)
        continue
      }
      const source = subst.sources.get(src) ?? subst.paths.get(src) ?? src
      const target = subst.sources.has(src) ? dst : subst.paths.get(dst) ?? dst
      if (!existsSync(source)) throw new Error(`volume source ${source} (example ${src}) does not exist on this host`)
      out.push("-v", [source, target, ...(mode === undefined ? [] : [mode])].join(":"))
    } else if (o === "--name") {
      i++
      out.push("--name", subst.name)
    } else if (o === "--health-cmd") {
      i++
      out.push("--health-cmd", v.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${subst.statusPort}`))
    } else {
      out.push(o)
    }
  }
  for (const l of subst.labels) out.push("--label", l)
  return out
}
