/**
 * The `runroot` builder plugin (koji `plugins/builder/runroot.py`, RunRootTask, weight 2.0):
 * a buildroot of a tag's repo (hub buildroot with its package lists, filled by dnf in the
 * bootstrap image), the command run as root inside it with the default mounts and the
 * requested mounts that runroot.conf allows, output in `runroot.log`, and the plugin's result
 * "<cmd> completed successfully". Mounts are checked before anything is created.
 */
import { Effect, Either, Schema } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { type ContainerMount, Containers, type LogFrame } from "../containers/Containers.js"
import { parseRpmQa, RPM_QA_FORMAT } from "../buildroot/packageList.js"
import { containerRepos } from "../buildroot/Buildroots.js"
import { sessionHub } from "../buildroot/hubSide.js"
import { BuildError, BuildrootError, GenericError } from "../hub/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { RepoInfo, RepoState } from "../hub/schemas.js"
import { streamLogs, uploadWrapper } from "../hub/Uploads.js"
import { type XmlRpcValue } from "../hub/xmlrpc.js"
import { defaultMounts, extraMounts, readRunrootConfig, type ResolvedMount, type RunrootConfig, toBind } from "../runroot/config.js"
import { canonArch } from "./arches.js"
import { fsStep, parseStatus } from "./createrepo.js"
import { AnyValue, defineHandler, Int, Num, optional, required, signature, type TaskContext, taskRelPath } from "./handler.js"

/** What the runroot handler needs besides its task context. */
export interface RunrootDeps {
  readonly config: RunrootConfig
  readonly containers: Containers["Type"]
  /** The image whose dnf fills the buildroot (`[adjutant] bootstrap_image`). */
  readonly image: string
  readonly kojid: { readonly topdir: string; readonly topurls: ReadonlyArray<string> }
}

/** The runroot handler's dependencies; a bad runroot.conf fails here, as kojid fails to load the plugin. */
export const runrootDeps = Effect.gen(function*() {
  const config = yield* AdjutantConfig
  const containers = yield* Containers
  const rc = readRunrootConfig(config.adjutant.runroot_config)
  if (Either.isLeft(rc)) return yield* rc.left
  return { config: rc.right, containers, image: config.adjutant.bootstrap_image, kojid: config.kojid } satisfies RunrootDeps
})

/** Capabilities dnf --installroot needs in the fill container (chroot for scriptlets, ownership of files). */
const DNF_CAPS = ["SYS_CHROOT", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP", "MKNOD"]

const Command = Schema.Union(Schema.String, Schema.Array(Schema.String))

/** The plugin's result name: the first word without `=` of the command, basename'd. */
export const commandName = (command: string | ReadonlyArray<string>): string => {
  const words = (typeof command === "string" ? command.split(/\s+/).filter((w) => w !== "") : command).filter((w) => !w.includes("="))
  return words.length === 0 ? "(none)" : path.posix.basename(words[0]!)
}

/** The command as one shell string (a list is quoted word by word, as the plugin does). */
export const commandString = (command: string | ReadonlyArray<string>): string =>
  typeof command === "string" ? command : command.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ")

/** Every mount the command gets: default mounts (as configured) and the allowed extra ones (read-write). */
export const resolveMounts = (config: RunrootConfig, mounts: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const defaults = yield* defaultMounts(config)
    const extra = yield* extraMounts(config, mounts)
    const binds: Array<ContainerMount> = []
    for (const m of [...defaults, ...extra] as ReadonlyArray<ResolvedMount>) {
      const b = yield* toBind(m)
      if (binds.some((x) => x.destination === b.destination)) continue
      binds.push({ type: "bind", ...b })
    }
    return binds
  })

const appendTo = (file: string) => (frame: LogFrame) =>
  Effect.promise(() => fsp.appendFile(file, frame.data).catch(() => undefined))

/** Picks the buildroot arch for a noarch runroot: the tag's first arch this host can do. */
const noarchArch = (ctx: TaskContext, root: string | number) =>
  Effect.gen(function*() {
    const api = hostApi(ctx.session)
    const hostArches = (yield* api.getHost()).arches
    if (!hostArches) return yield* new BuildError({ faultString: "No arch list for this host" })
    const tagArches = (yield* api.getBuildConfig(root)).arches
    if (!tagArches) return yield* new BuildError({ faultString: `No arch list for tag: ${root}` })
    const canon = new Set(hostArches.split(/\s+/).filter((a) => a !== "").map(canonArch))
    for (const a of tagArches.split(/\s+/).filter((x) => x !== "")) if (canon.has(canonArch(a))) return canonArch(a)
    return yield* new BuildError({ faultString: `host does not match tag arches: ${root} (${tagArches})` })
  })

/** `runroot` (RunRootTask, 2.0): `handler(root, arch, command, keep=False, packages=[], mounts=[], repo_id=None, skip_setarch=False, weight=None, upload_logs=None, new_chroot=None)`. */
export const runrootHandler = (deps: RunrootDeps) =>
  defineHandler({
    name: "RunRootTask",
    methods: ["runroot"],
    weight: 2.0,
    signature: signature("RunRootTask.handler", {
      root: required(Schema.Union(Schema.String, Schema.Number)),
      arch: required(Schema.String),
      command: required(Command),
      keep: optional(AnyValue, false),
      packages: optional(Schema.Array(Schema.String), []),
      mounts: optional(Schema.Array(Schema.String), []),
      repo_id: optional(Schema.NullOr(Int), null),
      skip_setarch: optional(AnyValue, false),
      weight: optional(Schema.NullOr(Num), null),
      upload_logs: optional(Schema.NullOr(Schema.Array(Schema.String)), null),
      new_chroot: optional(AnyValue, null)
    }),
    run: (p, ctx) =>
      Effect.gen(function*() {
        const api = hostApi(ctx.session)
        if (p.weight !== null) yield* api.setTaskWeight(ctx.taskId, Math.max(p.weight, 0.5))
        // Only mounts the config allows: refused before a buildroot or container exists.
        const binds = yield* resolveMounts(deps.config, p.mounts)
        const brArch = p.arch === "noarch" ? yield* noarchArch(ctx, p.root) : p.arch
        let repo: RepoInfo
        if (p.repo_id !== null) {
          const r = yield* api.repoInfo(p.repo_id, true)
          if (r === null) return yield* new GenericError({ faultString: `No such repo: ${p.repo_id}` })
          if (r.tag_name !== String(p.root)) {
            return yield* new BuildError({ faultString: `build tag (${p.root}) does not match repo tag (${r.tag_name ?? "None"})` })
          }
          if (r.state !== RepoState.READY && r.state !== RepoState.EXPIRED) {
            const name = Object.entries(RepoState).find(([, v]) => v === r.state)?.[0] ?? String(r.state)
            return yield* new BuildError({ faultString: `repos in the ${name} state may not be used by runroot` })
          }
          repo = r
        } else {
          const found = yield* api.getRepo(p.root)
          if (found !== null) {
            repo = found
          } else {
            const waiter = yield* ctx.subtask("waitrepo", [p.root, null, null])
            const results = yield* ctx.wait(waiter)
            repo = yield* Schema.decodeUnknown(RepoInfo)(results.get(waiter))
          }
        }
        return yield* runInBuildroot(deps, ctx, p, repo, canonArch(brArch), binds)
      })
  })

interface RunParams {
  readonly root: string | number
  readonly command: string | ReadonlyArray<string>
  readonly packages: ReadonlyArray<string>
  readonly upload_logs: ReadonlyArray<string> | null
}

const runInBuildroot = (deps: RunrootDeps, ctx: TaskContext, p: RunParams, repo: RepoInfo, brArch: string, binds: ReadonlyArray<ContainerMount>) =>
  Effect.gen(function*() {
    const hub = sessionHub(ctx.session, ctx.taskId, deps.kojid)
    const tagName = repo.tag_name ?? String(p.root)
    const brootId = yield* Effect.acquireRelease(hub.newBuildRoot(repo.id, brArch), (id) =>
      hub.setBuildRootState(id, "EXPIRED").pipe(
        Effect.timeout("60 seconds"),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not expire buildroot ${id}; the daemon's cleanup will`, cause))
      ))
    const rootdir = path.join(ctx.workdir, "root")
    const meta = path.join(ctx.workdir, "meta")
    const rootLog = path.join(ctx.workdir, "root.log")
    yield* fsStep("cannot create the buildroot directories", async () => {
      await fsp.mkdir(rootdir, { recursive: true })
      await fsp.mkdir(meta, { recursive: true })
    })
    const { urls, mounts: repoBinds } = containerRepos(hub.repoUrls(tagName, repo.id, brArch))
    const network = urls.every((u) => u.startsWith("file://")) ? "none" : "host"
    const repoList = urls.map((u, i) => `--repofrompath=koji${i},${u}`).join(" ")
    const dnf = `dnf -y -q --installroot=/buildroot --releasever=1 --setopt=reposdir=/dev/null --setopt=install_weak_deps=False --nogpgcheck ` +
      `--forcearch=${brArch} ${repoList} ${urls.map((_u, i) => `--repo=koji${i}`).join(" ")}`
    const qa = `rpm --root /buildroot -qa --qf '${RPM_QA_FORMAT}' > /meta/installed.tsv`
    const fill = (what: string) =>
      Effect.gen(function*() {
        const result = yield* deps.containers.run({
          image: deps.image,
          role: "buildroot",
          taskId: ctx.taskId,
          buildrootId: brootId,
          user: "0:0",
          capAdd: DNF_CAPS,
          network,
          command: ["/bin/sh", "-c", `set -e\n${dnf} install ${what}\n${qa}\n`],
          mounts: [
            { type: "bind", source: rootdir, destination: "/buildroot", writable: true },
            { type: "bind", source: meta, destination: "/meta", writable: true },
            ...repoBinds
          ]
        }, { onOutput: appendTo(rootLog) })
        if (result.exitCode !== 0) {
          const lines = `${result.stdout}${result.stderr}`.split("\n").filter((l) => l.trim() !== "" && !/^[a-z_]+: /.test(l)).slice(-5)
          return yield* new BuildrootError({
            faultString: `could not init buildroot, dnf exited with status ${result.exitCode}; see root.log for more information\n${lines.join("\n")}`
          })
        }
        const text = yield* fsStep("cannot read the rpm list", () => fsp.readFile(path.join(meta, "installed.tsv"), "utf8"))
        const repoRef = { tagId: repo.tag_id ?? 0, tagName, repoId: repo.id, createEvent: repo.create_event, brArch }
        return yield* hub.packageList(parseRpmQa(text), repoRef)
      })
    const uploadpath = taskRelPath(ctx.taskId)
    return yield* Effect.scoped(Effect.gen(function*() {
      yield* streamLogs(ctx.session, [{ local: rootLog, remote: "root.log" }], uploadpath)
      yield* hub.setBuildRootList(brootId, yield* fill("@build"))
      yield* hub.setBuildRootState(brootId, "BUILDING")
      if (p.packages.length > 0) {
        yield* hub.updateBuildRootList(brootId, yield* fill(p.packages.map((x) => `'${x.replaceAll("'", "'\\''")}'`).join(" ")))
      }
      // /builddir is a fresh directory of the task: the root's own may belong to the build user.
      const builddir = path.join(ctx.workdir, "builddir")
      yield* fsStep("cannot prepare /builddir", async () => {
        await fsp.mkdir(builddir, { recursive: true })
        for (const d of ["builddir", "tmp", "var/tmp", "dev", "proc"]) await fsp.mkdir(path.join(rootdir, d), { recursive: true })
        await fsp.chmod(path.join(rootdir, "tmp"), 0o1777)
        for (const b of binds) if (b.type === "bind") await fsp.mkdir(path.join(rootdir, b.destination), { recursive: true })
      })
      const runrootLog = path.join(builddir, "runroot.log")
      yield* Effect.logInfo(`Runroot mounts: ${JSON.stringify(binds)}`)
      const result = yield* Effect.scoped(Effect.gen(function*() {
        yield* streamLogs(ctx.session, [{ local: runrootLog, remote: "runroot.log" }], uploadpath)
        return yield* deps.containers.run({
          rootfs: { path: rootdir, overlay: false },
          role: "runroot",
          taskId: ctx.taskId,
          buildrootId: brootId,
          user: "0:0",
          // kojid's runroot buildroot is made with setup_dns=True: the command has the host's network.
          network: "host",
          env: { HOME: "/builddir", PATH: "/usr/bin:/bin:/usr/sbin:/sbin", LANG: "C.UTF-8" },
          workDir: "/builddir",
          command: ["/bin/sh", "-c", `{ ${commandString(p.command)}; } < /dev/null > /builddir/runroot.log 2>&1`],
          mounts: [{ type: "bind", source: builddir, destination: "/builddir", writable: true }, ...binds]
        })
      }))
      for (const log of p.upload_logs ?? []) {
        const local = log.startsWith("/builddir/") ? path.join(builddir, log.slice("/builddir/".length)) : path.join(rootdir, log)
        if (fs.existsSync(local)) yield* uploadWrapper(ctx.session, local, uploadpath, path.basename(log))
        else yield* Effect.logWarning(`upload_logs: ${log} does not exist in the buildroot`)
      }
      const cmd = commandName(p.command)
      if (result.exitCode !== 0) {
        // What the shell itself said (a redirection or exec failure) is not in runroot.log.
        const said = result.stderr.trim().split("\n").slice(-3).join("\n")
        return yield* new BuildrootError({ faultString: said === "" ? parseStatus(result.exitCode, cmd) : `${parseStatus(result.exitCode, cmd)}\n${said}` })
      }
      return `${cmd} completed successfully` as XmlRpcValue
    }))
  })
