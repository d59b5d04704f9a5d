/**
 * The host side of the hostile-package suite: what a hostile build could have changed on the
 * machine, looked at directly — processes (/proc), mounts (/proc/self/mountinfo), loop devices
 * (`losetup`), containers (podman), setuid/setgid files, sentinel files, disk use. `HostWatch`
 * samples while builds run (a build's processes and the files it leaves exist only then);
 * `hostProblems` checks what must hold once a batch is over. No vitest here: the bench imports it.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { IdMap } from "../../src/containers/idmap.js"

/** Markers hostile builds put in their own command lines (so their processes can be found). */
export const PROC_MARKER = "HOSTILE_"

/** Ids of the host's accounts. */
export interface Accounts {
  readonly uids: ReadonlySet<number>
  readonly gids: ReadonlySet<number>
}

const idsOf = (file: string): ReadonlySet<number> => {
  let text = ""
  try {
    text = fs.readFileSync(file, "utf8")
  } catch {
    return new Set()
  }
  return new Set(text.split("\n").map((l) => Number(l.split(":")[2])).filter((n) => Number.isInteger(n)))
}

/** The uids of /etc/passwd and gids of /etc/group. */
export const hostAccounts = (): Accounts => ({ uids: idsOf("/etc/passwd"), gids: idsOf("/etc/group") })

/** True when `id` is a host id of the build user namespace. */
export const inRange = (map: IdMap, id: number): boolean => id >= map.base && id < map.base + map.size

/** One process as /proc shows it. */
export interface ProcSeen {
  readonly pid: number
  /** Real, effective, saved and file-system uids. */
  readonly uids: ReadonlyArray<number>
  readonly gids: ReadonlyArray<number>
  readonly capEff: bigint
  readonly noNewPrivs: boolean
  readonly cmdline: string
  readonly firstSeen: number
  lastSeen: number
}

const readProc = (pid: string): Omit<ProcSeen, "firstSeen" | "lastSeen"> | undefined => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const field = (name: string): string => status.split("\n").find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim() ?? ""
    const nums = (s: string): Array<number> => s.split(/\s+/).filter((x) => x !== "").map(Number)
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`).toString("utf8").replace(/\0/g, " ").trim()
    return {
      pid: Number(pid),
      uids: nums(field("Uid")),
      gids: nums(field("Gid")),
      capEff: BigInt(`0x${field("CapEff") || "0"}`),
      noNewPrivs: field("NoNewPrivs") === "1",
      cmdline
    }
  } catch {
    return undefined // the process ended while it was read
  }
}

/** Processes with a uid in `map` or a hostile marker in their command line, now. */
export const suspectProcesses = (map: IdMap): ReadonlyArray<Omit<ProcSeen, "firstSeen" | "lastSeen">> => {
  const out: Array<Omit<ProcSeen, "firstSeen" | "lastSeen">> = []
  for (const pid of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue
    const p = readProc(pid)
    if (p !== undefined && (p.uids.some((u) => inRange(map, u)) || p.cmdline.includes(PROC_MARKER))) out.push(p)
  }
  return out
}

/** An entry a build left in its result area, seen on the task disk while the build ran. */
export interface ResultEntry {
  readonly path: string
  readonly name: string
  readonly uid: number
  readonly gid: number
  readonly mode: number
}

/** What the watch saw while a batch ran. */
export interface WatchReport {
  /** Processes of the build range or with a marker, by pid. */
  readonly procs: ReadonlyArray<ProcSeen>
  /** Peak bytes allocated on the host by each task directory (its disk image and copies, not crossing mounts). */
  readonly peakTaskBytes: ReadonlyMap<string, number>
  /** Entries of the builds' result areas (on their task disks). */
  readonly resultEntries: ReadonlyArray<ResultEntry>
  /** setuid/setgid files found under the watched roots outside any mount (the task disks). */
  readonly setuidOutsideDisk: ReadonlyArray<string>
  /** Mounts seen under the test's base directory: mount point, type, options. */
  readonly mounts: ReadonlyArray<{ readonly point: string; readonly fstype: string; readonly options: string }>
  /** Peak growth of the used bytes of the base directory's file system. */
  readonly fsPeakGrowth: number
}

/** Used bytes of the file system holding `dir`. */
export const fsUsed = (dir: string): number => {
  const s = fs.statfsSync(dir)
  return (s.blocks - s.bfree) * s.bsize
}

/** Bytes allocated under `dir` on its own file system (sparse files count what they hold). */
export const allocatedBytes = (dir: string, onFile?: (p: string, st: fs.Stats) => void): number => {
  let root: fs.Stats
  try {
    root = fs.lstatSync(dir)
  } catch {
    return 0
  }
  let total = 0
  const walk = (d: string): void => {
    let names: Array<string>
    try {
      names = fs.readdirSync(d)
    } catch {
      return
    }
    for (const n of names) {
      const p = path.join(d, n)
      let st: fs.Stats
      try {
        st = fs.lstatSync(p)
      } catch {
        continue
      }
      if (st.dev !== root.dev) continue
      total += st.blocks * 512
      onFile?.(p, st)
      if (st.isDirectory()) walk(p)
    }
  }
  total += root.blocks * 512
  if (root.isDirectory()) walk(dir)
  return total
}

/** Mount points (with type and options) under `base`, from /proc/self/mountinfo. */
export const mountsUnder = (base: string): ReadonlyArray<{ readonly point: string; readonly fstype: string; readonly options: string }> =>
  fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").flatMap((line) => {
    const f = line.split(" ")
    if (f.length < 10) return []
    const point = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    const sep = f.indexOf("-")
    return point === base || point.startsWith(`${base}/`) ? [{ point, fstype: f[sep + 1] ?? "", options: `${f[5]},${f[sep + 3] ?? ""}` }] : []
  })

/**
 * Samples the host every `intervalMs` while builds run: suspect processes, the bytes each task
 * directory takes, the entries of each task's result area, setuid files outside the task disks,
 * the mounts under `base` and the file system's used bytes.
 */
export const startWatch = (options: {
  readonly base: string
  readonly idmap: IdMap
  /** The task directories now (daemon: <workdir>/tasks/N/ID; build-local: $TMPDIR/koji-adjutant-local-*). */
  readonly taskDirs: () => ReadonlyArray<string>
  readonly intervalMs?: number
}): { readonly stop: () => WatchReport } => {
  const procs = new Map<string, ProcSeen>()
  const peak = new Map<string, number>()
  const entries = new Map<string, ResultEntry>()
  const setuid = new Set<string>()
  const mounts = new Map<string, { readonly point: string; readonly fstype: string; readonly options: string }>()
  const fsBefore = fsUsed(options.base)
  let fsPeak = fsBefore
  const sample = () => {
    const now = Date.now()
    for (const p of suspectProcesses(options.idmap)) {
      const key = `${p.pid} ${p.cmdline}`
      const seen = procs.get(key)
      if (seen === undefined) procs.set(key, { ...p, firstSeen: now, lastSeen: now })
      else seen.lastSeen = now
    }
    for (const dir of options.taskDirs()) {
      const bytes = allocatedBytes(dir, (p, st) => {
        if (st.isFile() && (st.mode & 0o6000) !== 0) setuid.add(p)
      })
      peak.set(dir, Math.max(peak.get(dir) ?? 0, bytes))
      const result = path.join(dir, "broot", "result")
      let names: Array<string> = []
      try {
        names = fs.readdirSync(result)
      } catch {
        // not made yet, or gone with the task
      }
      for (const n of names) {
        const p = path.join(result, n)
        try {
          const st = fs.lstatSync(p)
          entries.set(p, { path: p, name: n, uid: st.uid, gid: st.gid, mode: st.mode })
        } catch {
          // removed meanwhile
        }
      }
    }
    for (const m of mountsUnder(options.base)) mounts.set(m.point, m)
    fsPeak = Math.max(fsPeak, fsUsed(options.base))
  }
  sample()
  const timer = setInterval(sample, options.intervalMs ?? 250)
  return {
    stop: () => {
      clearInterval(timer)
      sample()
      return {
        procs: [...procs.values()],
        peakTaskBytes: peak,
        resultEntries: [...entries.values()],
        setuidOutsideDisk: [...setuid],
        mounts: [...mounts.values()],
        fsPeakGrowth: fsPeak - fsBefore
      }
    }
  }
}

/**
 * `find ARGS` with NUL-separated output, split. find exits 1 when a file vanished or a directory
 * could not be read while it walked (other users' temp files come and go): what it printed stands.
 */
const find = (args: ReadonlyArray<string>): Array<string> => {
  try {
    return execFileSync("find", args, { stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 * 1024 * 1024 }).toString("utf8").split("\0")
  } catch (e) {
    const out = typeof e === "object" && e !== null && "stdout" in e && Buffer.isBuffer(e.stdout) ? e.stdout : Buffer.alloc(0)
    return out.toString("utf8").split("\0")
  }
}

/** setuid/setgid regular files under `dir` (not crossing mounts): owner uid and path. */
export const setuidFiles = (dir: string): ReadonlyArray<{ readonly uid: number; readonly path: string }> => {
  if (!fs.existsSync(dir)) return []
  const out = find([dir, "-xdev", "-type", "f", "(", "-perm", "-4000", "-o", "-perm", "-2000", ")", "-printf", "%U\\0%p\\0"])
  const files: Array<{ readonly uid: number; readonly path: string }> = []
  for (let i = 0; i + 1 < out.length; i += 2) files.push({ uid: Number(out[i]), path: out[i + 1]! })
  return files
}

/** Files named `prefix*` under `dirs` (each not crossing mounts; `depth` for a shallow look). */
export const filesNamed = (prefix: string, dirs: ReadonlyArray<{ readonly dir: string; readonly depth?: number }>): ReadonlyArray<string> =>
  dirs.flatMap(({ dir, depth }) => {
    if (!fs.existsSync(dir)) return []
    const args = [dir, "-xdev", ...(depth === undefined ? [] : ["-maxdepth", String(depth)]), "-name", `${prefix}*`, "-print0"]
    return find(args).filter((p) => p !== "")
  })

/** Loop devices whose backing file is under `base`. */
export const loopsUnder = (base: string): ReadonlyArray<string> => {
  const out = execFileSync("losetup", ["-J", "-l"], { encoding: "utf8" }).trim()
  if (out === "") return []
  const parsed: unknown = JSON.parse(out)
  const devices = typeof parsed === "object" && parsed !== null && "loopdevices" in parsed && Array.isArray(parsed.loopdevices) ? parsed.loopdevices : []
  return devices.flatMap((d: unknown) => {
    if (typeof d !== "object" || d === null || !("back-file" in d) || typeof d["back-file"] !== "string") return []
    const file = d["back-file"]
    return file.startsWith(`${base}/`) ? [`${"name" in d ? String(d.name) : "?"} → ${file}`] : []
  })
}

/** Containers (any state) labelled `io.koji.adjutant.host=<label>`. */
export const containersLabelled = (label: string): ReadonlyArray<string> =>
  execFileSync("podman", ["ps", "-a", "--filter", `label=io.koji.adjutant.host=${label}`, "--format", "{{.ID}} {{.Names}}"], { encoding: "utf8" })
    .split("\n").filter((l) => l !== "")

/** Containers of build-local (labelled by machine) with a mount from under `base`. */
export const localContainersUnder = (base: string): ReadonlyArray<string> =>
  containersLabelled(`build-local-${os.hostname()}`).flatMap((line) => {
    const id = line.split(" ")[0]!
    try {
      const sources = execFileSync("podman", ["inspect", "--format", "{{range .Mounts}}{{.Source}}\n{{end}}", id], { encoding: "utf8" })
      return sources.split("\n").some((s) => s.startsWith(`${base}/`)) ? [line] : []
    } catch {
      return [] // removed meanwhile
    }
  })

/** What must hold on the host once a batch is over. */
export interface HostCheck {
  readonly base: string
  readonly idmap: IdMap
  /** The daemon's container host label, or "local" for build-local's machine label (filtered by mounts under base). */
  readonly containers: { readonly label: string } | "local"
  /** Buildroot caches under base: their roots hold package files (setuid ones allowed, owned by build-range ids). */
  readonly cacheDirs: ReadonlyArray<string>
  /** setuid/setgid files of /tmp before the batch (other users' files are not ours to judge). */
  readonly tmpSetuidBefore: ReadonlySet<string>
  /** File name prefix hostile builds try to write outside their area. */
  readonly sentinel: string
  /** fsUsed(base), the bytes under base and the caches' bytes before the batch. */
  readonly fsBefore: number
  readonly baseBytesBefore: number
  readonly cacheBytesBefore: number
  /** Growth allowed beyond the caches: of the bytes under base (what the batch keeps: uploads, logs, copies), and of the whole file system (others write there too). */
  readonly baseGrowthMax: number
  readonly fsGrowthMax: number
}

/** Sum of allocated bytes of the caches. */
export const cacheBytes = (dirs: ReadonlyArray<string>): number => dirs.reduce((n, d) => n + allocatedBytes(d), 0)

/** Every way the host differs from what it must be after a batch; empty when it is unchanged. */
export const hostProblems = (c: HostCheck): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const containers = c.containers === "local" ? localContainersUnder(c.base) : containersLabelled(c.containers.label)
  for (const x of containers) problems.push(`container left: ${x}`)
  for (const m of mountsUnder(c.base)) problems.push(`mount left: ${m.point} (${m.fstype})`)
  for (const l of loopsUnder(c.base)) problems.push(`loop device left: ${l}`)
  for (const p of suspectProcesses(c.idmap)) problems.push(`process left: pid ${p.pid} uid ${p.uids.join("/")}: ${p.cmdline}`)
  const inCache = (p: string) => c.cacheDirs.some((d) => p.startsWith(`${d}/`))
  for (const f of setuidFiles(c.base)) {
    if (!inCache(f.path)) problems.push(`setuid/setgid file outside the caches: ${JSON.stringify(f.path)} (uid ${f.uid})`)
    else if (!inRange(c.idmap, f.uid)) problems.push(`setuid/setgid file in a cached root owned by host uid ${f.uid}: ${JSON.stringify(f.path)}`)
  }
  // Other suites on the machine fill buildroots under /tmp in their own id ranges: a new file there
  // is ours when our builds (our range) or the daemon (a host account) own it.
  const accounts = hostAccounts()
  for (const f of setuidFiles("/tmp")) {
    if (c.tmpSetuidBefore.has(f.path) || f.path.startsWith(`${c.base}/`)) continue
    if (inRange(c.idmap, f.uid) || accounts.uids.has(f.uid)) problems.push(`new setuid/setgid file in /tmp: ${JSON.stringify(f.path)} (uid ${f.uid})`)
  }
  const sentinels = filesNamed(c.sentinel, [
    { dir: "/", depth: 1 }, { dir: "/etc" }, { dir: "/root" }, { dir: "/tmp" }, { dir: "/var/tmp" }, { dir: "/home" }, { dir: "/srv" },
    { dir: "/opt" }, { dir: "/usr/local" }, { dir: "/var/lib/koji-adjutant" }, { dir: "/run", depth: 3 }, { dir: c.base }
  ])
  for (const s of new Set(sentinels)) problems.push(`a build wrote outside its area: ${JSON.stringify(s)}`)
  const caches = cacheBytes(c.cacheDirs) - c.cacheBytesBefore
  const baseGrowth = allocatedBytes(c.base) - c.baseBytesBefore - caches
  if (baseGrowth > c.baseGrowthMax) problems.push(`the test's directories grew by ${baseGrowth} bytes beyond the buildroot caches (bound ${c.baseGrowthMax})`)
  const fsGrowth = fsUsed(c.base) - c.fsBefore - caches
  if (fsGrowth > c.fsGrowthMax) problems.push(`the host file system grew by ${fsGrowth} bytes beyond the buildroot caches (bound ${c.fsGrowthMax})`)
  return problems
}
