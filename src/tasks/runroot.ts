/**
 * The `runroot` builder plugin (koji `plugins/builder/runroot.py`, RunRootTask, weight 2.0):
 * a buildroot of a tag's repo from the Buildroots service (the populated root cached per repo,
 * the task working in its own copy), the requested packages installed into that copy, the
 * command run as root in it with the default mounts and the requested mounts that runroot.conf
 * allows, output in `runroot.log`, and the plugin's result "<cmd> completed successfully".
 * Mounts are checked before anything is created.
 */
import { Effect, Either, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { type ContainerMount } from "../containers/Containers.js"
import { Buildroots } from "../buildroot/Buildroots.js"
import { copyLogCapped } from "../buildroot/results.js"
import { sessionHub } from "../buildroot/hubSide.js"
import { BuildError, BuildrootError, GenericError } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { RepoInfo } from "../hub/schemas.js"
import { RepoState, stateName } from "../koji/states.js"
import { uploadWrapper } from "../hub/Uploads.js"
import { type XmlRpcValue } from "../hub/xmlrpc.js"
import { defaultMounts, extraMounts, readRunrootConfig, type ResolvedMount, type RunrootConfig, runrootConfigProblem, toBind, RunrootConfigError } from "../runroot/config.js"
import { canonArch } from "../koji/arch.js"
import { parseStatus } from "./repoCommon.js"
import { AnyValue, defineHandler, Int, Num, optional, required, signature, type TaskContext, type TaskHandler } from "./handler.js"

/** What the runroot handler needs besides its task context. */
export interface RunrootDeps {
  readonly config: RunrootConfig
  /** The buildroots of the RPM builds: the runroot's root comes from their cache. */
  readonly buildroots: Buildroots["Type"]
}

/** The runroot handler's dependencies; a bad runroot.conf fails here, as kojid fails to load the plugin. */
export const runrootDeps = Effect.gen(function*() {
  const config = yield* AdjutantConfig
  const buildroots = yield* Buildroots
  const problem = runrootConfigProblem(config.adjutant.runroot_config)
  if (problem !== undefined) return yield* new RunrootConfigError({ file: config.adjutant.runroot_config, message: problem })
  const rc = readRunrootConfig(config.adjutant.runroot_config)
  if (Either.isLeft(rc)) return yield* rc.left
  return { config: rc.right, buildroots } satisfies RunrootDeps
})

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
            const name = stateName(RepoState, r.state)
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
            repo = yield* Schema.decodeUnknown(RepoInfo)(results.get(waiter)).pipe(
              Effect.mapError(() => new GenericError({ faultString: `waitrepo returned an unexpected result: ${JSON.stringify(results.get(waiter) ?? null)}` }))
            )
          }
        }
        return yield* runInBuildroot(deps, ctx, p, repo, canonArch(brArch), binds)
      })
  })

/**
 * The host path of `file` inside the root, when it is a regular file there: the command ran as
 * root and may have left `..` or symlinks pointing at the host's own files.
 */
export const inRoot = (rootdir: string, file: string): string | undefined => {
  try {
    const root = fs.realpathSync(rootdir)
    const real = fs.realpathSync(path.join(root, file))
    if (!real.startsWith(`${root}/`) || !fs.statSync(real).isFile()) return undefined
    return real
  } catch {
    return undefined
  }
}

interface RunParams {
  readonly root: string | number
  readonly command: string | ReadonlyArray<string>
  readonly packages: ReadonlyArray<string>
  readonly upload_logs: ReadonlyArray<string> | null
}

const runInBuildroot = (deps: RunrootDeps, ctx: TaskContext, p: RunParams, repo: RepoInfo, brArch: string, binds: ReadonlyArray<ContainerMount>) =>
  Effect.scoped(Effect.gen(function*() {
    const hub = sessionHub(ctx.session, ctx.taskId, deps.buildroots.options.kojid)
    // kojid's BuildRoot(..., setup_dns=True): the command has the host's network. It runs as the
    // host's root, as mock --chroot does: an admin's runroot writes to the rw mounts of runroot.conf.
    const broot = yield* deps.buildroots.open({
      taskId: ctx.taskId, tag: p.root, arch: brArch, repoId: repo.id, installGroup: "build", workdir: ctx.workdir, network: true,
      hostIds: true
    }, hub)
    yield* Effect.logInfo(`Runroot mounts: ${JSON.stringify(binds)}`)
    const result = yield* broot.run({
      command: ["/bin/sh", "-c", `{ ${commandString(p.command)}; } < /dev/null`],
      user: "root",
      mounts: binds,
      installPackages: p.packages,
      log: "runroot.log",
      role: "runroot"
    })
    for (const log of p.upload_logs ?? []) {
      const local = inRoot(result.rootdir, log)
      if (local === undefined) {
        yield* Effect.logWarning(`upload_logs: ${JSON.stringify(log)} is not a file in the buildroot`)
        continue
      }
      // The command wrote it: a capped copy (head and tail past log_max_size) is what goes up.
      const copy = path.join(ctx.workdir, `upload-${path.basename(log)}`)
      yield* copyLogCapped(local, copy, deps.buildroots.options.logMaxSize)
      yield* uploadWrapper(ctx.session, copy, hub.uploadPath, path.basename(log))
    }
    const cmd = commandName(p.command)
    if (result.exitCode !== 0) {
      // What the shell itself said (it could not start the command) is not in runroot.log.
      const said = result.stray.trim().split("\n").slice(-3).join("\n")
      return yield* new BuildrootError({ faultString: said === "" ? parseStatus(result.exitCode, cmd) : `${parseStatus(result.exitCode, cmd)}\n${said}` })
    }
    return `${cmd} completed successfully` as XmlRpcValue
  }))

/**
 * The runroot plugin's handler (kojid.conf `plugin = runroot`), over the Buildroots service and
 * `runroot.conf`; a bad runroot.conf fails here, as kojid fails to load the plugin.
 */
export const handlers: Effect.Effect<ReadonlyArray<TaskHandler>, RunrootConfigError, AdjutantConfig | Buildroots> =
  Effect.map(runrootDeps, (deps) => [runrootHandler(deps)])
