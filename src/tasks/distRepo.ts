/**
 * kojid's `distRepo` and `createdistrepo` (NewDistRepoTask, createDistRepoTask,
 * koji-protocol.md §7.10): per arch, the signed copies picked by the requested keys (in order),
 * `kojipkgs` and `pkglist`, the rpms linked under Packages/, createrepo_c in the bootstrap image,
 * every repo file plus `repo_manifest` uploaded; the parent moves each arch into place with
 * `host.distRepoMove` and finishes with `host.repoDone(repo_id, {})`.
 * Multilib (kojid's `do_multilib`): the 64-bit packages' headers are read with `rpm -qp` in the
 * bootstrap image, python-multilib's devel method picks the ones wanting a 32-bit copy
 * (multilib.ts), and dnf in the bootstrap image resolves them against the 32-bit dist repo.
 */
import type { Ref } from "../koji/refs.js"
import { Effect, Either, Schema } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { BuildError, GenericError, KojiFault } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { RepoState } from "../koji/states.js"
import { uploadWrapper } from "../hub/Uploads.js"
import { isStruct, pythonTruthy, type XmlRpcStruct, type XmlRpcValue } from "../hub/xmlrpc.js"
import { canonArch, isMultiLibArch } from "../koji/arch.js"
import { createrepoCommand, EMPTY_REPO_TEXT, formatShellCmd, fsStep, isDir, isFile, parseStatus, type RepoTaskDeps, roMount, runLogged, rwMount } from "./repoCommon.js"
import { distRepoPath } from "../koji/paths.js"
import { develSelect, DNF_DEPSOLVE_SCRIPT, dnfConfigText, HEADER_QUERYFORMAT, installedBasename, MULTILIB_ARCHMAP, parseHeaderQuery, parseMultilibConfig } from "./multilib.js"
import { AnyValue, defineHandler, Int, required, signature, type TaskContext, type TaskHandler } from "./handler.js"
import { taskRelPath } from "../koji/paths.js"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { Containers } from "../containers/Containers.js"
import { repoTaskDeps } from "./repoCommon.js"



/** createDistRepoTask.compat: the rpm arches that go into a repo of each arch. */
export const COMPAT: Readonly<Record<string, ReadonlyArray<string>>> = {
  i386: ["athlon", "i686", "i586", "i486", "i386", "noarch"],
  x86_64: ["amd64", "ia32e", "x86_64", "noarch"],
  ia64: ["ia64", "noarch"],
  ppc: ["ppc", "noarch"],
  ppc64: ["ppc64p7", "ppc64pseries", "ppc64iseries", "ppc64", "noarch"],
  ppc64le: ["ppc64le", "noarch"],
  s390: ["s390", "noarch"],
  s390x: ["s390x", "noarch"],
  sparc: ["sparcv9v", "sparcv9", "sparcv8", "sparc", "noarch"],
  sparc64: ["sparc64v", "sparc64", "noarch"],
  alpha: ["alphaev6", "alphaev56", "alphaev5", "alpha", "noarch"],
  arm: ["arm", "armv4l", "armv4tl", "armv5tel", "armv5tejl", "armv6l", "armv7l", "noarch"],
  armhfp: ["armv7hl", "armv7hnl", "noarch"],
  aarch64: ["aarch64", "noarch"],
  riscv64: ["riscv64", "noarch"],
  sw_64: ["sw_64", "noarch"],
  loongarch64: ["loongarch64", "noarch"],
  src: ["src"]
}

const TaskOpts = Schema.Record({ key: Schema.String, value: AnyValue })
const Keys = Schema.Array(Schema.String)
const TagArg = Schema.Union(Schema.Int, Schema.String, Schema.Record({ key: Schema.String, value: AnyValue }))


/** pick_key: the earliest of `keys` among the available signatures. */
export const pickKey = (keys: ReadonlyArray<string>, avail: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestIdx = Infinity
  for (const k of avail) {
    const i = keys.indexOf(k)
    if (i >= 0 && i < bestIdx) {
      best = k
      bestIdx = i
    }
  }
  return best
}

const isDebuginfo = (name: string): boolean =>
  name.endsWith("-debuginfo") || name.endsWith("-debugsource") || name.includes("-debuginfo-")

type RpmEntry = Record<string, XmlRpcValue>

/** `distRepo` (NewDistRepoTask, 0.1): `handler(tag, repo_id, keys, task_opts)`. */
export const distRepoHandler = () =>
  defineHandler({
    name: "NewDistRepoTask",
    methods: ["distRepo"],
    weight: 0.1,
    signature: signature("NewDistRepoTask.handler", {
      tag: required(TagArg),
      repo_id: required(Int),
      keys: required(Keys),
      task_opts: required(TaskOpts)
    }),
    run: ({ tag, repo_id, keys, task_opts }, ctx) =>
      Effect.gen(function*() {
        const api = hostApi(ctx.session)
        const event = typeof task_opts["event"] === "number" ? task_opts["event"] : null
        const tinfo = yield* api.getTag(isStruct(tag) ? tag : tag, { strict: true, event })
        const opts: Record<string, XmlRpcValue> = { ...task_opts }
        let arches = Array.isArray(opts["arch"]) ? opts["arch"].map(String) : []
        if (arches.length === 0) arches = (tinfo?.arches ?? "").split(/\s+/).filter((a) => a !== "")
        if (arches.length === 0) return yield* new GenericError({ faultString: "No arches specified nor for the tag!" })
        opts["arch"] = arches
        const canon = [...new Set(arches.map(canonArch))]
        const arch32s = canon.filter((a) => !isMultiLibArch(a))
        const multilib = pythonTruthy(opts["multilib"])
        const subtasks = new Map<string, number>()
        const spawn = (arch: string) => ctx.subtask("createdistrepo", [tag, repo_id, arch, keys, opts], { label: arch, arch: "noarch" })
        // 32-bit arches first: with multilib the 64-bit ones read their output.
        for (const arch of arch32s) subtasks.set(arch, yield* spawn(arch))
        if (subtasks.size > 0 && multilib) {
          yield* ctx.wait([...subtasks.values()], { all: true, failany: true })
          for (const arch of arch32s) yield* api.distRepoMove(repo_id, taskRelPath(subtasks.get(arch)!), arch)
        }
        for (const arch of canon) if (!arch32s.includes(arch)) subtasks.set(arch, yield* spawn(arch))
        yield* ctx.wait([...subtasks.values()], { all: true, failany: true })
        for (const [arch, id] of subtasks) {
          if (multilib && arch32s.includes(arch)) continue
          yield* api.distRepoMove(repo_id, taskRelPath(id), arch)
        }
        yield* api.repoDone(repo_id, {})
        return `Dist repository #${repo_id} successfully generated`
      })
  })

interface DistRun {
  readonly deps: RepoTaskDeps
  readonly ctx: TaskContext
  readonly repodir: string
  readonly uploadpath: string
}

const writeLog = (r: DistRun, name: string, text: string) =>
  Effect.gen(function*() {
    const file = path.join(r.ctx.workdir, name)
    yield* fsStep(`cannot write ${name}`, () => fsp.writeFile(file, text))
    yield* uploadWrapper(r.ctx.session, file, r.uploadpath, name)
  })

/** kojid's get_rpms: the rpms of the arch's compatible arches, each with its best signature. */
const getRpms = (r: DistRun, tag: Ref | XmlRpcStruct, arch: string, keysIn: ReadonlyArray<string>, opts: XmlRpcStruct) =>
  Effect.gen(function*() {
    const keys = keysIn.map((k) => k.toLowerCase())
    const rpms: Array<RpmEntry> = []
    const builddirs = new Map<number, string>()
    for (const a of COMPAT[arch] ?? [arch, "noarch"]) {
      const [list, builds] = yield* hostApi(r.ctx.session).listTaggedRPMS(tag, {
        event: typeof opts["event"] === "number" ? opts["event"] : null, arch: a, latest: opts["latest"] ?? false, inherit: opts["inherit"] ?? false,
        rpmsigs: true
      })
      for (const b of builds) {
        if (pythonTruthy(b["draft"])) return yield* new BuildError({ faultString: `Draft build: ${String(b["nvr"])} is not allowed` })
        const vol = typeof b["volume_name"] === "string" && b["volume_name"] !== "DEFAULT" ? `vol/${b["volume_name"]}/` : ""
        builddirs.set(Number(b["id"]), path.join(r.deps.kojid.topdir, `${vol}packages/${String(b["name"])}/${String(b["version"])}/${String(b["release"])}`))
      }
      rpms.push(...list.map((x) => ({ ...x })))
    }
    const byId = new Map<number, Map<string, RpmEntry>>()
    for (const info of rpms) {
      const idx = byId.get(Number(info["id"])) ?? new Map<string, RpmEntry>()
      idx.set(String(info["sigkey"] ?? ""), info)
      byId.set(Number(info["id"]), idx)
    }
    const selected = new Map<number, RpmEntry>()
    for (const [id, idx] of byId) {
      const avail = [...idx.keys()].map((k) => k.toLowerCase())
      const best = pickKey(keys, avail)
      if (best === undefined) {
        selected.set(id, { ...idx.get([...idx.keys()][0]!)!, sigkey: null })
      } else {
        const chosen = [...idx.entries()].find(([k]) => k.toLowerCase() === best)![1]
        selected.set(id, { ...chosen, best_key: best })
      }
    }
    if (pythonTruthy(opts["write_signed_rpms"])) {
      // host.writeSignedRPM for every rpm with a chosen key, in multiCall batches of 1000 as kojid.
      const withKey = [...selected.entries()].filter(([, info]) => typeof info["best_key"] === "string")
      let log = ""
      for (let i = 0; i < withKey.length; i += 1000) {
        const batch = withKey.slice(i, i + 1000)
        const results = yield* hostApi(r.ctx.session).writeSignedRPMs(batch.map(([id, info]) => [id, String(info["best_key"])] as const))
        batch.forEach(([id, info], j) => {
          const res = results[j]
          log += res !== undefined && res._tag === "Right"
            ? `Signed RPM ${id} is written with ${String(info["best_key"])} key.\n`
            : `FAILED: Signed RPM ${id} is not written with ${String(info["best_key"])} key, error: ${res?._tag === "Left" ? res.left.faultString : "no result"}\n`
        })
      }
      if (log !== "") yield* writeLog(r, "written_signed_rpms.log", log)
    }
    const fsMissing: Array<string> = []
    const sigMissing: Array<number> = []
    const kojipkgs = new Map<string, RpmEntry>()
    const rel = (info: RpmEntry) => `${String(info["arch"])}/${String(info["name"])}-${String(info["version"])}-${String(info["release"])}.${String(info["arch"])}.rpm`
    for (const [id, info] of selected) {
      let pkgpath: string
      if (info["sigkey"] === null || info["sigkey"] === undefined) {
        sigMissing.push(id)
        if (pythonTruthy(opts["skip_missing_signatures"])) continue
        pkgpath = path.join(builddirs.get(Number(info["build_id"])) ?? "", rel(info))
      } else {
        pkgpath = path.join(builddirs.get(Number(info["build_id"])) ?? "", "data/signed", String(info["sigkey"]), rel(info))
      }
      if (!isFile(pkgpath)) fsMissing.push(pkgpath)
      else kojipkgs.set(path.basename(pkgpath), { ...info, _pkgpath: pkgpath })
    }
    if (fsMissing.length > 0) {
      yield* writeLog(r, "missing_files.log",
        "Some rpm files were missing.\nMost likely, you want to create these signed copies.\n\nMissing files:\n" +
          fsMissing.sort().map((p) => `${p}\n`).join(""))
      return yield* new GenericError({ faultString: "Packages missing from the filesystem. See missing_files.log." })
    }
    if (sigMissing.length > 0) {
      const skip = pythonTruthy(opts["skip_missing_signatures"])
      const lines = sigMissing.map((id) => {
        const s = selected.get(id)!
        return `${String(s["name"])}-${String(s["version"])}-${String(s["release"])}.${String(s["arch"])}: ${JSON.stringify([...byId.get(id)!.keys()])}\n`
      }).sort()
      yield* writeLog(r, "missing_signatures.log",
        "Some rpms were missing requested signatures.\n" +
          (skip ? "The skip_missing_signatures option was specified, so these files were excluded.\n" : "") +
          `Requested keys: ${JSON.stringify(keys)}\n\n# RPM name: available keys\n${lines.join("")}`)
      if (!skip && !pythonTruthy(opts["allow_missing_signatures"])) {
        return yield* new GenericError({ faultString: "Unsigned packages found. See missing_signatures.log" })
      }
    }
    return kojipkgs
  })

const doCreaterepo = (r: DistRun, repodir: string, pkglist: string, groupdata: string, oldrepodata: string | undefined, oldpkgs: ReadonlyArray<string>, opts: XmlRpcStruct, logname: string) =>
  Effect.gen(function*() {
    yield* fsStep(`cannot create ${repodir}`, () => fsp.mkdir(repodir, { recursive: true }))
    if (!r.deps.kojid.use_createrepo_c && pythonTruthy(opts["zck"])) {
      return yield* new GenericError({ faultString: "createrepo doesn't support zchunks" })
    }
    if (pythonTruthy(opts["zck_dict_dir"]) && !pythonTruthy(opts["zck"])) {
      return yield* new GenericError({ faultString: "--zck-dict-dir makes no sense without --zck" })
    }
    const cmd = [...createrepoCommand(r.deps.kojid), "-vd", "-i", pkglist]
    if (isFile(groupdata)) cmd.push("-g", groupdata)
    if (oldrepodata !== undefined && r.deps.kojid.createrepo_update) {
      if (!isDir(oldrepodata)) {
        yield* Effect.logWarning(`old repodata is missing: ${oldrepodata}`)
      } else {
        const datadir = path.join(repodir, "repodata")
        yield* fsStep("cannot copy the old repodata", () => fsp.cp(oldrepodata, datadir, { recursive: true }))
        yield* fsStep("cannot remove old pkgorigins.gz", () => fsp.rm(path.join(datadir, "pkgorigins.gz"), { force: true }))
        cmd.push("--update")
        const skipStat = opts["createrepo_skip_stat"] === undefined || opts["createrepo_skip_stat"] === null
          ? r.deps.kojid.distrepo_skip_stat
          : pythonTruthy(opts["createrepo_skip_stat"])
        if (skipStat) cmd.push("--skip-stat")
      }
    }
    if (oldpkgs.length > 0) {
      cmd.push("--deltas")
      for (const d of oldpkgs) cmd.push("--oldpackagedirs", d)
    }
    if (pythonTruthy(opts["zck"])) cmd.push("--zck")
    if (typeof opts["zck_dict_dir"] === "string" && pythonTruthy(opts["zck"])) {
      cmd.push("--zck-dict-dir", path.normalize(opts["zck_dict_dir"]))
    }
    cmd.push(repodir)
    const { exitCode } = yield* runLogged({
      deps: r.deps, ctx: r.ctx, cmd, logName: `${logname}.log`,
      mounts: [roMount(r.deps.kojid.topdir), rwMount(r.ctx.workdir)]
    })
    if (exitCode !== 0) {
      return yield* new GenericError({ faultString: `failed to create repo: ${parseStatus(exitCode, formatShellCmd(cmd))}` })
    }
  })

const KojiPkgs = Schema.Record({ key: Schema.String, value: Schema.Record({ key: Schema.String, value: AnyValue }) })
const InstallSet = Schema.Array(Schema.Struct({ location: Schema.String, arch: Schema.String }))
const DnfFailure = Schema.Struct({ error: Schema.String })

/** Python's os.path.join(a, b): an absolute `b` replaces `a`. */
const pyJoin = (a: string, b: string): string => (b.startsWith("/") ? b : path.join(a, b))

/** A command in the bootstrap image (no network, the topdir read-only, the workdir writable); fails with `what` and its stderr. */
const runInImage = (r: DistRun, cmd: ReadonlyArray<string>, what: string) =>
  Effect.gen(function*() {
    const res = yield* r.deps.containers.run(
      {
        image: r.deps.image, command: cmd, role: "createrepo", taskId: r.ctx.taskId,
        mounts: [roMount(r.deps.kojid.topdir), rwMount(r.ctx.workdir)], network: "none"
      },
      { maxOutputBytes: 64 * 1024, outputOnFailureOnly: true }
    )
    return { exitCode: res.exitCode, stderr: `${res.stderr}${res.stdout}`.trim().split("\n").slice(-10).join("\n"), what }
  })

/**
 * kojid's `do_multilib(arch, archmap[arch], opts['multilib'])`: the 64-bit packages that
 * python-multilib's devel method selects bring their 32-bit copy from the 32-bit dist repo
 * (already moved into place by the parent), and dnf adds what those need from that repo;
 * every one joins `kojipkgs` with `_multilib: true`. Uploads `dnf.conf-koji-<arch>`, and
 * `missing_multilib.log` when a package is not in the 32-bit repo.
 * Differs from kojid only where kojid cannot work: the 32-bit rpms are looked for where
 * distRepoMove puts them (`<mldir>/Packages/<letter>/`; kojid leaves out `Packages/`), and the
 * config must lie under `<topdir>/work` (where `koji dist-repo --multilib` uploads it).
 */
const doMultilib = (r: DistRun, repoId: number, tagName: string, arch: string, conf: string, kojipkgs: Map<string, RpmEntry>) =>
  Effect.gen(function*() {
    const mlArch = MULTILIB_ARCHMAP[arch]
    if (mlArch === undefined) return yield* new GenericError({ faultString: `No multilib arch for ${arch}` })
    const topdir = r.deps.kojid.topdir
    const mldir = path.join(distRepoPath(topdir, repoId, tagName), canonArch(mlArch))
    const mlPath = (bnp: string) => path.join(mldir, "Packages", bnp[0]!.toLowerCase(), bnp)

    const mlPkgFile = path.join(mldir, "kojipkgs")
    const mlPkgs = yield* fsStep(`cannot read the multilib repo's ${mlPkgFile}`, () => fsp.readFile(mlPkgFile, "utf8")).pipe(
      Effect.flatMap((text) => Effect.try({ try: () => JSON.parse(text) as unknown, catch: (e) => new GenericError({ faultString: `${mlPkgFile}: ${String(e)}` }) })),
      Effect.flatMap((v) => Schema.decodeUnknown(KojiPkgs)(v).pipe(Effect.mapError((e) => new GenericError({ faultString: `${mlPkgFile}: ${e.message}` }))))
    )
    const workTop = path.join(topdir, "work")
    const confPath = path.resolve(pyJoin(workTop, conf))
    if (!confPath.startsWith(`${workTop}/`)) {
      return yield* new GenericError({ faultString: `multilib config ${confPath} is not under ${workTop}` })
    }
    const confText = yield* fsStep(`cannot read the multilib config ${confPath}`, () => fsp.readFile(confPath, "utf8"))
    const mlConf = parseMultilibConfig(confText)
    if (Either.isLeft(mlConf)) return yield* new GenericError({ faultString: `invalid multilib config ${confPath}: ${mlConf.left.reason}` })

    // Step 1: which of our packages are multilib (python-multilib DevelMultilibMethod).
    const fsMissing = new Set<string>()
    const mlTrue = new Set<string>()
    const entries = [...kojipkgs.entries()]
    if (entries.length > 0) {
      const listFile = path.join(r.ctx.workdir, "multilib-headers.list")
      const outFile = path.join(r.ctx.workdir, "multilib-headers.txt")
      yield* fsStep("cannot write the rpm list", () => fsp.writeFile(listFile, entries.map(([, info]) => `${String(info["_pkgpath"])}\n`).join("")))
      const q = yield* runInImage(r, [
        "/bin/sh", "-c", 'xargs -d "\\n" -a "$1" rpm -qp --nosignature --nodigest --queryformat "$2" > "$3"', "sh", listFile, HEADER_QUERYFORMAT, outFile
      ], "rpm header query")
      if (q.exitCode !== 0) return yield* new GenericError({ faultString: `cannot read the rpm headers (exit ${q.exitCode}): ${q.stderr}` })
      const headers = parseHeaderQuery(yield* fsStep("cannot read the rpm headers", () => fsp.readFile(outFile, "utf8")))
      if (headers.length !== entries.length || headers.some((h, i) => h.name !== String(entries[i]![1]["name"]))) {
        return yield* new GenericError({ faultString: `rpm header query gave ${headers.length} packages for ${entries.length} rpms` })
      }
      for (const [i, [bnp]] of entries.entries()) {
        if (!develSelect(mlConf.right, headers[i]!)) continue
        const mlBnp = bnp.split(arch).join(mlArch)
        if (!(mlBnp in mlPkgs)) {
          yield* Effect.logError(`${mlPath(mlBnp)} (multilib) is not on the filesystem`)
          fsMissing.add(mlPath(mlBnp))
          continue
        }
        mlTrue.add(mlBnp)
      }
    }

    // Steps 2–4: dnf over the 32-bit repo resolves what the selected packages need.
    yield* Effect.logInfo(`Resolving multilib for ${arch} using method devel`)
    const dnfdir = path.join(r.ctx.workdir, "dnf")
    const dnfConf = path.join(dnfdir, `dnf.conf-koji-${arch}`)
    yield* fsStep("cannot write the dnf config", async () => {
      await fsp.mkdir(path.join(dnfdir, "dnfcache"), { recursive: true })
      await fsp.mkdir(path.join(dnfdir, "var/lib/rpm"), { recursive: true })
      await fsp.writeFile(dnfConf, dnfConfigText(dnfdir, r.ctx.taskId, mldir))
    })
    yield* uploadWrapper(r.ctx.session, dnfConf, r.uploadpath, path.basename(dnfConf))
    yield* Effect.logInfo(`Resolving dependencies for arch ${arch}`)
    const mlNeeded = new Map<string, string>()
    // With nothing to install the transaction is empty: no container needed.
    if (mlTrue.size > 0) {
      const listFile = path.join(r.ctx.workdir, "multilib-install.list")
      const outFile = path.join(r.ctx.workdir, "multilib-install.json")
      const nvra = (e: RpmEntry) => `${String(e["name"])}-${String(e["version"])}-${String(e["release"])}.${String(e["arch"])}`
      yield* fsStep("cannot write the install list", () => fsp.writeFile(listFile, [...mlTrue].map((b) => `${nvra(mlPkgs[b]!)}\n`).join("")))
      // koji.arch.archDifference(compat[biarch[arch]][0], arch) is 0 for every archmap arch: the transaction arch is `arch`.
      const d = yield* runInImage(r, ["python3", "-c", DNF_DEPSOLVE_SCRIPT, dnfConf, arch, listFile, outFile], "dnf depsolve")
      if (d.exitCode === 3) {
        yield* Effect.logError("dnf depsolve was unsuccessful")
        const failure = yield* fsStep("cannot read the dnf result", () => fsp.readFile(outFile, "utf8")).pipe(
          Effect.flatMap((text) => Schema.decodeUnknown(Schema.parseJson(DnfFailure))(text)),
          Effect.mapError((e) => new GenericError({ faultString: `dnf result: ${e.message}` }))
        )
        // kojid lets dnf's exception end the task: a non-koji exception is fault 1 (koji-protocol.md §4.5).
        return yield* new KojiFault({ faultCode: 1, faultString: failure.error })
      }
      if (d.exitCode !== 0) return yield* new GenericError({ faultString: `dnf depsolve failed (exit ${d.exitCode}): ${d.stderr}` })
      yield* Effect.logInfo("dnf depsolve successfully finished")
      const installSet = yield* fsStep("cannot read the dnf result", () => fsp.readFile(outFile, "utf8")).pipe(
        Effect.flatMap((text) => Schema.decodeUnknown(Schema.parseJson(InstallSet))(text)),
        Effect.mapError((e) => new GenericError({ faultString: `dnf result: ${e.message}` }))
      )
      for (const po of installSet) {
        const depPath = mlPath(installedBasename(po.location))
        mlNeeded.set(depPath, po.arch)
        if (!fs.existsSync(depPath)) {
          yield* Effect.logError(`${depPath} (multilib dep) not on filesystem`)
          fsMissing.add(depPath)
        }
      }
    }
    if (fsMissing.size > 0) {
      yield* writeLog(r, "missing_multilib.log", `The following multilib files were missing:\n${[...fsMissing].map((p) => `${p}\n`).join("")}`)
      return yield* new GenericError({ faultString: "multilib packages missing. See missing_multilib.log" })
    }

    // Step 5: the multilib packages join kojipkgs.
    for (const [depPath, depArch] of mlNeeded) {
      const bnp = path.basename(depPath)
      if (kojipkgs.has(bnp)) {
        // noarch packages are in both repos; anything else is worth a word.
        if (depArch !== "noarch") yield* Effect.logWarning(`Multilib duplicate: ${bnp}`)
        continue
      }
      const info = mlPkgs[bnp]
      if (info === undefined) return yield* new GenericError({ faultString: `${bnp} is not in ${mlPkgFile}` })
      kojipkgs.set(bnp, { ...info, _pkgpath: depPath, _multilib: true })
    }
  })

/** Every regular file of the repo (not the rpm symlinks), relative to it. */
const repoFiles = async (dir: string, rel = ""): Promise<Array<string>> => {
  const out: Array<string> = []
  for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel === "" ? e.name : `${rel}/${e.name}`
    if (e.isSymbolicLink()) continue
    if (e.isDirectory()) out.push(...await repoFiles(dir, r))
    else if (e.isFile()) out.push(r)
  }
  return out
}

/** `createdistrepo` (createDistRepoTask, 1.5): `handler(tag, repo_id, arch, keys, opts)`; returns nil as kojid. */
export const createDistRepoHandler = (deps: RepoTaskDeps) =>
  defineHandler({
    name: "createDistRepoTask",
    methods: ["createdistrepo"],
    weight: 1.5,
    signature: signature("createDistRepoTask.handler", {
      tag: required(TagArg),
      repo_id: required(Int),
      arch: required(Schema.String),
      keys: required(Keys),
      opts: required(TaskOpts)
    }),
    run: ({ tag, repo_id, arch, keys, opts }, ctx) =>
      Effect.gen(function*() {
        const api = hostApi(ctx.session)
        const rinfo = yield* api.repoInfo(repo_id, true)
        if (rinfo === null) return yield* new GenericError({ faultString: `No such repo: ${repo_id}` })
        if (rinfo.state !== RepoState.INIT) {
          return yield* new GenericError({ faultString: `Repo ${rinfo.id} not in INIT state (got ${rinfo.state})` })
        }
        const tagName = rinfo.tag_name ?? String(tag)
        const groupdata = path.join(distRepoPath(deps.kojid.topdir, repo_id, tagName), "groups", "comps.xml")
        const r: DistRun = { deps, ctx, repodir: path.join(ctx.workdir, "repo"), uploadpath: taskRelPath(ctx.taskId) }
        yield* fsStep(`cannot create ${r.repodir}`, () => fsp.mkdir(r.repodir, { recursive: true }))
        const oldpkgs: Array<string> = []
        for (const d of Array.isArray(opts["delta"]) ? opts["delta"] : []) {
          const old = yield* api.repoInfo(Number(d), true)
          if (old === null || old.dist !== true) return yield* new GenericError({ faultString: "Base repo for deltas must also be a dist repo" })
          const p = distRepoPath(deps.kojid.topdir, old.id, old.tag_name ?? "")
          if (!fs.existsSync(p)) return yield* new GenericError({ faultString: `Base drpm repo missing: ${p}` })
          oldpkgs.push(p)
        }
        const oldrepo = yield* api.getRepo(rinfo.tag_id ?? tagName, { dist: true, state: RepoState.READY })
        const kojipkgs = yield* getRpms(r, tag, arch, keys, opts)
        const multilib = opts["multilib"]
        if (pythonTruthy(multilib) && isMultiLibArch(arch)) {
          yield* doMultilib(r, repo_id, rinfo.tag_name ?? tagName, arch, typeof multilib === "string" ? multilib : String(multilib), kojipkgs)
        }
        const subrepos = new Set<string>()
        for (const info of kojipkgs.values()) {
          if (pythonTruthy(opts["split_debuginfo"]) && isDebuginfo(String(info["name"]))) {
            info["_subrepo"] = "debug"
            subrepos.add("debug")
          }
        }
        yield* fsStep("cannot write kojipkgs", () =>
          fsp.writeFile(path.join(r.repodir, "kojipkgs"), JSON.stringify(Object.fromEntries(kojipkgs), null, 4)))
        const main: Array<string> = []
        const sub = new Map<string, Array<string>>()
        for (const [bnp, info] of kojipkgs) {
          const letter = bnp[0]!.toLowerCase()
          const s = info["_subrepo"]
          if (typeof s === "string") sub.set(s, [...(sub.get(s) ?? []), `../Packages/${letter}/${bnp}\n`])
          else main.push(`Packages/${letter}/${bnp}\n`)
        }
        yield* fsStep("cannot write pkglist", async () => {
          await fsp.writeFile(path.join(r.repodir, "pkglist"), main.join(""))
          for (const [s, lines] of sub) {
            await fsp.mkdir(path.join(r.repodir, s), { recursive: true })
            await fsp.writeFile(path.join(r.repodir, s, "pkglist"), lines.join(""))
          }
          for (const [bnp, info] of kojipkgs) {
            const dir = path.join(r.repodir, "Packages", bnp[0]!.toLowerCase())
            await fsp.mkdir(dir, { recursive: true })
            await fsp.symlink(String(info["_pkgpath"]), path.join(dir, bnp))
          }
        })
        const oldrepodir = oldrepo === null ? undefined : distRepoPath(deps.kojid.topdir, oldrepo.id, oldrepo.tag_name ?? tagName)
        yield* doCreaterepo(r, r.repodir, path.join(r.repodir, "pkglist"), groupdata,
          oldrepodir === undefined ? undefined : path.join(oldrepodir, arch, "repodata"), oldpkgs, opts, "createrepo")
        for (const s of subrepos) {
          yield* doCreaterepo(r, path.join(r.repodir, s), path.join(r.repodir, s, "pkglist"), groupdata,
            oldrepodir === undefined ? undefined : path.join(oldrepodir, arch, s, "repodata"), oldpkgs, opts, `createrepo_${s}`)
        }
        if (kojipkgs.size === 0) {
          yield* fsStep("cannot write EMPTY_REPO", async () => {
            await fsp.mkdir(path.join(r.repodir, "repodata"), { recursive: true })
            await fsp.writeFile(path.join(r.repodir, "repodata", "EMPTY_REPO"), EMPTY_REPO_TEXT)
          })
        }
        const files = yield* fsStep("cannot list the repo", () => repoFiles(r.repodir))
        for (const rel of files) {
          const dir = path.posix.dirname(rel)
          yield* uploadWrapper(ctx.session, path.join(r.repodir, rel), dir === "." ? r.uploadpath : `${r.uploadpath}/${dir}`, path.posix.basename(rel))
        }
        const manifest = path.join(ctx.workdir, "repo_manifest")
        yield* fsStep("cannot write repo_manifest", () => fsp.writeFile(manifest, JSON.stringify(files, null, 4)))
        yield* uploadWrapper(ctx.session, manifest, r.uploadpath, "repo_manifest")
        return null
      })
  })

/** distRepo and createdistrepo bound to their dependencies. */
export const makeDistRepoHandlers = (deps: RepoTaskDeps): ReadonlyArray<TaskHandler> => [distRepoHandler(), createDistRepoHandler(deps)]

/** `distRepo` and `createdistrepo`, with kojid.conf's repo options and the Containers service. */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, never, AdjutantConfig | Containers> =
  Effect.map(repoTaskDeps, makeDistRepoHandlers)
