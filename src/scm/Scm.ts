/**
 * The SCM service (koji-protocol.md §7.3, §8; DESIGN §5): parses and vets SCM URLs as kojid's
 * `koji.daemon.SCM` does, and checks them out **inside a container** — never on the host —
 * with kojid's commands, network on only for the checkout, and no credentials but
 * `scm_credentials_dir` (read-only at /credentials). Also finds and checks the spec file as
 * `BuildSRPMFromSCMTask` does, and runs the `source_cmd` in a container.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Context, Effect, Either, Layer } from "effect"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { type Container, type ContainerMount, Containers, type ContainerSpec, PodmanError } from "../containers/Containers.js"
import { hostIdsOf, type IdMap } from "../containers/idmap.js"
import type { XmlRpcStruct } from "../hub/xmlrpc.js"
import {
  allowedByConfig,
  allowedByPolicyResult,
  buildFromScmPolicyData,
  DEFAULT_SCM_RULES,
  parseAllowedScms,
  type PolicyValue,
  type ScmRules
} from "./allowed.js"
import { type CheckoutPlan, checkoutPlan, maskPassword, parseScmUrl, ScmError, type ScmCommand, type ScmUrl, sourceUrl } from "./url.js"

export { faultCodeFor, faultFor, isScmUrl, ScmError } from "./url.js"
export type { ScmErrorReason, ScmUrl } from "./url.js"
export type { ScmRules } from "./allowed.js"

/** Where the SCM directory is mounted in the checkout container (kojid: `<chroot_tmpdir>/scmroot`). */
export const CONTAINER_SCMDIR = "/chroot_tmpdir/scmroot"

/** Where `scm_credentials_dir` is mounted, as kojid binds it into the SRPM buildroot. */
export const CONTAINER_CREDENTIALS = "/credentials"

/** Options of the Scm service. */
export interface ScmOptions {
  /** kojid.conf `allowed_scms`. */
  readonly allowedScms: string
  /** `allowed_scms_use_config` (default true). */
  readonly useConfig: boolean
  /** `allowed_scms_use_policy` (default false). */
  readonly usePolicy: boolean
  /** `allow_password_in_scm_url`. */
  readonly allowPassword: boolean
  /** `scm_credentials_dir`: mounted read-only at /credentials when it is a directory. */
  readonly credentialsDir: string | null
  /** `support_rpm_source_layout`: also look in SPECS/ and use SOURCES/. */
  readonly supportRpmSourceLayout: boolean
  /** The image the checkout runs in (needs git; cvs/svn for those schemes). */
  readonly image: string
  /** `uid:gid` the checkout runs as; the SCM directory is given to it (kojid chowns to mockuser). */
  readonly user: string
  /** The build user namespace (`build_userns`): a checkout runs the package's code too. Null: host ids. */
  readonly idmap: IdMap | null
  /** Network of the checkout container: bridge in production (SCM hosts are remote). */
  readonly network: "bridge" | "host" | "none"
  /** Wall-clock limit of one checkout container, seconds. */
  readonly timeoutSeconds: number
}

/** Default checkout time limit (a clone that hangs must not hold the task forever). */
export const DEFAULT_SCM_TIMEOUT = 3600

/** A finished checkout. */
export interface ScmCheckout {
  readonly scm: ScmUrl
  readonly rules: ScmRules
  /** Host directory holding the checkout (`<workdir>/scmroot`), mounted at CONTAINER_SCMDIR. */
  readonly scmdir: string
  /** Host path of the module directory. */
  readonly sourcedir: string
  /** `sourcedir` relative to scmdir ("" = scmdir). */
  readonly sourcedirRelative: string
  /** `git rev-parse HEAD`; null for CVS/SVN. */
  readonly commit: string | null
  /** `SCM.get_source()`: `{url, source}` — source has the commit hash as fragment for git. */
  readonly source: { readonly url: string; readonly source: string }
  /** Host path of checkout.log (kojid's log name; upload it with the task's logs). */
  readonly logFile: string
}

/** The spec file chosen as BuildSRPMFromSCMTask chooses it, and where the sources are. */
export interface ScmSpec {
  /** Host path. */
  readonly specFile: string
  /** Relative to scmdir. */
  readonly specFileRelative: string
  /** Host path: `<sourcedir>/SOURCES` with the RPM source layout, else sourcedir. */
  readonly sourcesDir: string
  /** Relative to scmdir. */
  readonly sourcesDirRelative: string
}

/** The root a source command runs in (the SRPM buildroot: an image or a buildroot rootfs). */
export interface SourceCmdRoot {
  readonly image?: string | undefined
  readonly rootfs?: { readonly path: string; readonly overlay: boolean } | undefined
  /** Default: the Scm user. */
  readonly user?: string | undefined
  /** Default: the Scm network (kojid turns DNS on for SRPM buildroots: source commands fetch). */
  readonly network?: "bridge" | "host" | "none" | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Extra mounts (e.g. the repo); the SCM directory is mounted writable at CONTAINER_SCMDIR. */
  readonly mounts?: ReadonlyArray<ContainerMount> | undefined
}

/** The hub's `evalPolicy(name, data)`, as the caller's session provides it. */
export type EvalPolicy<E> = (name: string, data: XmlRpcStruct) => Effect.Effect<string | null, E>

/** Parses, vets and checks out SCM sources in containers. */
export class Scm extends Context.Tag("Scm")<
  Scm,
  {
    readonly options: ScmOptions
    /** `SCM(url, allow_password=allow_password_in_scm_url)`. */
    readonly parse: (url: string) => Effect.Effect<ScmUrl, ScmError>
    /**
     * `SCM.assert_allowed`: `allowed_scms` when `allowed_scms_use_config`, then the hub's
     * `build_from_scm` policy when `allowed_scms_use_policy`; returns use_common/source_cmd.
     */
    readonly assertAllowed: <E>(
      scm: ScmUrl,
      policy: { readonly evalPolicy: EvalPolicy<E>; readonly data: Readonly<Record<string, PolicyValue>> }
    ) => Effect.Effect<ScmRules, ScmError | E>
    /** `SCM.checkout` + `get_source` in a container; writes `<workdir>/checkout.log`. */
    readonly checkout: (
      scm: ScmUrl,
      rules: ScmRules,
      options: { readonly taskId: number; readonly workdir: string; readonly network?: "bridge" | "host" | "none" | undefined }
    ) => Effect.Effect<ScmCheckout, ScmError | PodmanError>
    /** The one spec file (top level, or SPECS/ with the RPM source layout), with kojid's spec checks. */
    readonly findSpec: (checkout: ScmCheckout) => Effect.Effect<ScmSpec, ScmError>
    /** Runs the source command (`rules.sourceCmd`) in `root` with cwd = the module directory; no-op when none. */
    readonly runSourceCmd: (
      checkout: ScmCheckout,
      root: SourceCmdRoot,
      options: { readonly taskId: number; readonly logFile?: string | undefined }
    ) => Effect.Effect<void, ScmError | PodmanError>
  }
>() {
  /** The service with explicit options (needs Containers). */
  static layer = (options: ScmOptions): Layer.Layer<Scm, never, Containers> => Layer.effect(Scm, makeScm(options))

  /** The service configured from kojid.conf (`allowed_scms*`, `scm_credentials_dir`, …) and `[adjutant]`. */
  static layerConfig: Layer.Layer<Scm, never, Containers | AdjutantConfig> = Layer.unwrapEffect(
    Effect.map(AdjutantConfig, (config) => Scm.layer(scmOptionsFromConfig(config)))
  )
}

/** ScmOptions from the daemon config (`[kojid]` SCM keys, `[adjutant]` scm_network and scm_timeout). */
export const scmOptionsFromConfig = (config: AdjutantConfig["Type"]): ScmOptions => ({
  allowedScms: config.kojid.allowed_scms,
  useConfig: config.kojid.allowed_scms_use_config,
  usePolicy: config.kojid.allowed_scms_use_policy,
  allowPassword: config.kojid.allow_password_in_scm_url,
  credentialsDir: config.kojid.scm_credentials_dir,
  supportRpmSourceLayout: config.kojid.support_rpm_source_layout,
  image: config.adjutant.bootstrap_image,
  user: config.adjutant.build_user,
  idmap: config.adjutant.build_userns,
  network: config.adjutant.scm_network,
  timeoutSeconds: config.adjutant.scm_timeout
})

// ---------------------------------------------------------------------------------------------
// Spec checks (BuildSRPMFromSCMTask.spec_sanity_checks)

/**
 * Why kojid refuses this spec, or undefined. kojid means to refuse a spec that sets
 * `Packager:`, `Distribution:` or `Vendor:` or `%define`s packager/distribution/vendor (the
 * build system sets them), but its `re.match(…, spec, re.M)` anchors at the start of the text,
 * so only a spec that *begins* with such a line is refused. We refuse exactly what kojid
 * refuses: a spec that builds under kojid must build here.
 */
export const specSanityProblem = (spec: string): string | undefined => {
  for (const tag of ["Packager", "Distribution", "Vendor"]) {
    if (spec.startsWith(`${tag}:`)) return `${tag} is not allowed to be set in spec file`
  }
  for (const tag of ["packager", "distribution", "vendor"]) {
    if (new RegExp(`^%define\\s+${tag}\\s+`).test(spec)) return `${tag} is not allowed to be defined in spec file`
  }
  return undefined
}

/**
 * BuildSRPMFromSCMTask's choice among spec files (paths relative to sourcedir, as found):
 * one is taken; several → the one named after the checkout directory (top level or SPECS/),
 * else an error naming them.
 */
export const chooseSpec = (
  found: ReadonlyArray<string>,
  sourcedirName: string
): Either.Either<string, { readonly reason: "no-spec" | "multiple-specs"; readonly message: string }> => {
  if (found.length === 0) return Either.left({ reason: "no-spec", message: "No spec file found" })
  if (found.length === 1) return Either.right(found[0]!)
  const preferred = [`${sourcedirName}.spec`, `SPECS/${sourcedirName}.spec`].find((p) => found.includes(p))
  return preferred !== undefined
    ? Either.right(preferred)
    : Either.left({
        reason: "multiple-specs",
        message: `Multiple spec files found but none is matching SCM checkout dir name: ${found.join(", ")}`
      })
}

/** Largest spec file read for the checks. */
const MAX_SPEC_BYTES = 16 * 1024 * 1024

/** How many bytes of a failed command's output go into the error message. */
const OUTPUT_TAIL = 2000

const tail = (s: string): string => (s.length > OUTPUT_TAIL ? `…${s.slice(-OUTPUT_TAIL)}` : s).trim()

/** Whether `child` is `parent` or inside it (both absolute and resolved). */
const isInside = (parent: string, child: string): boolean => child === parent || child.startsWith(parent.endsWith("/") ? parent : `${parent}/`)

/** What the service's steps share. */
interface ScmService {
  readonly options: ScmOptions
  readonly containers: Containers["Type"]
}

/** Where a checkout goes and how its container reaches the SCM host. */
interface CheckoutOptions {
  readonly taskId: number
  readonly workdir: string
  readonly network?: "bridge" | "host" | "none" | undefined
}

const assertAllowed = (options: ScmOptions) => <E>(
  scm: ScmUrl,
  policy: { readonly evalPolicy: EvalPolicy<E>; readonly data: Readonly<Record<string, PolicyValue>> }
): Effect.Effect<ScmRules, ScmError | E> =>
  Effect.gen(function* () {
    let rules = DEFAULT_SCM_RULES
    if (options.useConfig) {
      const ignored = parseAllowedScms(options.allowedScms).ignored
      if (ignored.length > 0) yield* Effect.logWarning("Ignoring incorrectly formatted SCM host:repository entries").pipe(Effect.annotateLogs({ ignored }))
      rules = yield* allowedByConfig(scm, options.allowedScms, rules)
    }
    if (options.usePolicy) {
      const action = yield* policy.evalPolicy("build_from_scm", buildFromScmPolicyData(scm, policy.data))
      rules = yield* allowedByPolicyResult(scm, action, rules)
    }
    return rules
  }).pipe(Effect.withSpan("Scm.assertAllowed", { attributes: { url: maskPassword(scm.url) } }))

const credentialsMount = Effect.fnUntraced(function* (options: ScmOptions) {
  const dir = options.credentialsDir
  if (dir === null || dir === "") return [] as ReadonlyArray<ContainerMount>
  // kojid binds it only when it is a directory (os.path.isdir).
  const isDir = yield* Effect.promise(() => fs.stat(dir).then((s) => s.isDirectory(), () => false))
  return isDir ? [{ type: "bind" as const, source: dir, destination: CONTAINER_CREDENTIALS }] : []
})

const environment = (hasCredentials: boolean): Record<string, string> => ({
  // No prompt can be answered: fail instead of hanging on a password question.
  GIT_TERMINAL_PROMPT: "0",
  // An admin may put .gitconfig/.ssh/.netrc under scm_credentials_dir; otherwise nothing.
  HOME: hasCredentials ? CONTAINER_CREDENTIALS : "/tmp",
  LANG: "C.UTF-8"
})

const prepareScmdir = Effect.fnUntraced(function* (options: ScmOptions, workdir: string, url: string) {
  const scmdir = path.join(path.resolve(workdir), "scmroot")
  yield* Effect.tryPromise({
    try: async () => {
      await fs.rm(scmdir, { recursive: true, force: true })
      await fs.mkdir(scmdir, { recursive: true, mode: 0o755 })
      const ids = hostIdsOf(options.idmap, options.user)
      if (ids !== undefined && process.getuid?.() === 0) await fs.chown(scmdir, ids.uid, ids.gid)
    },
    catch: (e) =>
      new ScmError({ reason: "checkout-failed", url, message: `cannot prepare the SCM directory ${scmdir}: ${String(e)}` })
  })
  return scmdir
})

/** The checkout container: idle until the checkout's commands are exec'd in it. */
const checkoutSpec = (options: ScmOptions, opts: CheckoutOptions, scmdir: string, creds: ReadonlyArray<ContainerMount>): ContainerSpec => ({
  image: options.image,
  command: ["sleep", "infinity"],
  role: "scm",
  taskId: opts.taskId,
  user: options.user,
  idmap: options.idmap ?? undefined,
  network: opts.network ?? options.network,
  mounts: [{ type: "bind", source: scmdir, destination: CONTAINER_SCMDIR, writable: true }, ...creds],
  env: environment(creds.length > 0),
  readOnlyRoot: true,
  timeoutSeconds: options.timeoutSeconds
})

/** A running checkout: its container, its log, and the URL it names in errors. */
interface CheckoutRun {
  readonly scm: ScmUrl
  /** The URL with any password masked. */
  readonly url: string
  readonly container: Container
  readonly logFile: string
}

/** Runs one command, logged as kojid's log_output does (`$ cmd` then the output). */
const runLogged = (co: CheckoutRun, cmd: ScmCommand, log = true) =>
  Effect.gen(function* () {
    if (log) yield* Effect.promise(() => fs.appendFile(co.logFile, `$ ${cmd.argv.join(" ")}\n`))
    const r = yield* co.container.exec(cmd.argv, { workDir: cmd.cwd, ...(cmd.env === undefined ? {} : { env: cmd.env }) })
    if (log) yield* Effect.promise(() => fs.appendFile(co.logFile, r.stdout + r.stderr))
    return r
  })

const commandFailed = (co: CheckoutRun, cmd: ScmCommand, output: string, reason: "checkout-failed" | "revision-not-found", extra = "") =>
  new ScmError({
    reason,
    url: co.url,
    message:
      `Error running ${co.scm.scmtype} command "${cmd.argv.join(" ")}", see checkout.log for details${extra}` +
      (output.trim() === "" ? "" : `\n${tail(output)}`)
  })

/** The checkout, then the update commands; when an update fails, the recovery (the revision must exist). */
const checkOutRevision = (co: CheckoutRun, plan: CheckoutPlan) =>
  Effect.gen(function* () {
    const first = yield* runLogged(co, plan.checkout)
    if (first.exitCode !== 0) return yield* commandFailed(co, plan.checkout, first.stdout + first.stderr, "checkout-failed")
    let updated = true
    for (const cmd of plan.update) {
      const r = yield* runLogged(co, cmd)
      if (r.exitCode !== 0) {
        updated = false
        break
      }
    }
    if (!updated && plan.recovery !== null) {
      const r = yield* runLogged(co, plan.recovery)
      if (r.exitCode !== 0) {
        return yield* commandFailed(
          co,
          plan.recovery,
          r.stdout + r.stderr,
          "revision-not-found",
          `: revision "${co.scm.revision}" was not found in ${co.scm.host}${co.scm.repository}`
        )
      }
    }
  })

/** `use_common`: the common repository checked out beside the module and linked into it. */
const checkOutCommon = (co: CheckoutRun, plan: CheckoutPlan) =>
  Effect.gen(function* () {
    const r = yield* runLogged(co, plan.common)
    if (r.exitCode !== 0) {
      return yield* commandFailed(
        co,
        plan.common,
        r.stdout + r.stderr,
        "checkout-failed",
        " (use_common is on: set the third field of the allowed_scms entry to \"no\" if there is no common repository)"
      )
    }
    const exists = yield* runLogged(co, { argv: ["test", "-e", plan.commonLink.path], cwd: CONTAINER_SCMDIR }, false)
    if (exists.exitCode !== 0) {
      const ln = yield* runLogged(co, { argv: ["ln", "-s", plan.commonLink.target, plan.commonLink.path], cwd: CONTAINER_SCMDIR }, false)
      if (ln.exitCode !== 0) return yield* commandFailed(co, { argv: ["ln", "-s", plan.commonLink.target, plan.commonLink.path], cwd: "" }, ln.stderr, "checkout-failed")
    }
  })

/** `git rev-parse HEAD`; null for CVS/SVN. */
const commitHash = (co: CheckoutRun, plan: CheckoutPlan) =>
  Effect.gen(function* () {
    if (plan.gitdir === null) return null
    const head = yield* runLogged(co, { argv: ["git", "rev-parse", "HEAD"], cwd: plan.gitdir }, false)
    const hash = head.stdout.trim()
    if (head.exitCode !== 0 || !/^[0-9a-f]{40,64}$/.test(hash)) {
      return yield* new ScmError({ reason: "commit-hash", url: co.url, message: `Error getting commit hash for git: ${tail(head.stderr)}` })
    }
    return hash
  })

/** The module directory; the tree came from outside, so it must not lead out of scmdir by a symlink. */
const moduleDir = (scm: ScmUrl, url: string, scmdir: string, plan: CheckoutPlan) =>
  Effect.gen(function* () {
    const sourcedir = plan.sourcedirRelative === "" ? scmdir : path.join(scmdir, plan.sourcedirRelative)
    const real = yield* Effect.promise(() =>
      Promise.all([fs.realpath(scmdir), fs.realpath(sourcedir).catch(() => undefined)])
    )
    if (real[1] === undefined || !isInside(real[0], real[1])) {
      return yield* new ScmError({
        reason: "checkout-failed",
        url,
        message:
          real[1] === undefined
            ? `The module directory ${scm.module === "" ? "(top level)" : scm.module} does not exist in the checkout`
            : `The module directory ${scm.module} leads outside the checkout`
      })
    }
    return sourcedir
  })

const checkout = (s: ScmService) =>
  Effect.fn("Scm.checkout")(function* (scm: ScmUrl, rules: ScmRules, opts: CheckoutOptions) {
    const url = maskPassword(scm.url)
    const plan: CheckoutPlan = yield* checkoutPlan(scm, CONTAINER_SCMDIR)
    const scmdir = yield* prepareScmdir(s.options, opts.workdir, url)
    const logFile = path.join(path.resolve(opts.workdir), "checkout.log")
    yield* Effect.promise(() => fs.writeFile(logFile, ""))
    const creds = yield* credentialsMount(s.options)
    const commit = yield* Effect.scoped(
      Effect.gen(function* () {
        const container = yield* s.containers.create(checkoutSpec(s.options, opts, scmdir, creds))
        yield* container.start
        const co: CheckoutRun = { scm, url, container, logFile }
        yield* checkOutRevision(co, plan)
        if (rules.useCommon) yield* checkOutCommon(co, plan)
        return yield* commitHash(co, plan)
      })
    )
    const sourcedir = yield* moduleDir(scm, url, scmdir, plan)
    yield* Effect.logInfo("SCM checkout done").pipe(Effect.annotateLogs({ url, commit: commit ?? "" }))
    return {
      scm,
      rules,
      scmdir,
      sourcedir,
      sourcedirRelative: plan.sourcedirRelative,
      commit,
      source: { url: scm.url, source: sourceUrl(scm, commit) },
      logFile
    } satisfies ScmCheckout
  })

const listSpecs = (dir: string) =>
  Effect.promise(() =>
    fs
      .readdir(dir, { withFileTypes: true })
      // glob("*.spec") skips dot files and matches any kind of entry.
      .then((entries) => entries.filter((e) => e.name.endsWith(".spec") && !e.name.startsWith(".")).map((e) => e.name).sort())
      .catch(() => [] as Array<string>)
  )

/** The spec file's text, read only when it is a regular file inside the checkout and not too large. */
const readSpec = (co: ScmCheckout, url: string, specFile: string, chosen: string) =>
  Effect.tryPromise({
    try: async () => {
      const [realScm, real] = await Promise.all([fs.realpath(co.scmdir), fs.realpath(specFile)])
      if (!isInside(realScm, real)) throw new Error("it leads outside the checkout")
      const st = await fs.stat(real)
      if (!st.isFile()) throw new Error("it is not a regular file")
      if (st.size > MAX_SPEC_BYTES) throw new Error(`it is larger than ${MAX_SPEC_BYTES} bytes`)
      return await fs.readFile(real, "utf8")
    },
    catch: (e) =>
      new ScmError({ reason: "no-spec", url, message: `Cannot read spec file ${chosen}: ${e instanceof Error ? e.message : String(e)}` })
  })

const findSpec = (options: ScmOptions) =>
  Effect.fn("Scm.findSpec")(function* (co: ScmCheckout) {
    const url = maskPassword(co.scm.url)
    let found = yield* listSpecs(co.sourcedir)
    if (found.length === 0 && options.supportRpmSourceLayout) found = (yield* listSpecs(path.join(co.sourcedir, "SPECS"))).map((f) => `SPECS/${f}`)
    const chosen = chooseSpec(found, path.basename(co.sourcedir))
    if (Either.isLeft(chosen)) return yield* new ScmError({ reason: chosen.left.reason, url, message: chosen.left.message })
    const specFile = path.join(co.sourcedir, chosen.right)
    const text = yield* readSpec(co, url, specFile, chosen.right)
    const problem = specSanityProblem(text)
    if (problem !== undefined) return yield* new ScmError({ reason: "spec-tag", url, message: problem })
    const alt = path.join(co.sourcedir, "SOURCES")
    const useAlt =
      options.supportRpmSourceLayout && (yield* Effect.promise(() => fs.lstat(alt).then((s) => s.isDirectory(), () => false)))
    const sourcesDir = useAlt ? alt : co.sourcedir
    return {
      specFile,
      specFileRelative: path.relative(co.scmdir, specFile),
      sourcesDir,
      sourcesDirRelative: path.relative(co.scmdir, sourcesDir)
    } satisfies ScmSpec
  })

/** The source command's container: the given root, the SCM directory writable at CONTAINER_SCMDIR. */
const sourceCmdSpec = (
  options: ScmOptions, co: ScmCheckout, root: SourceCmdRoot, taskId: number, cmd: ReadonlyArray<string>, creds: ReadonlyArray<ContainerMount>
): ContainerSpec => ({
  ...(root.image !== undefined ? { image: root.image } : {}),
  ...(root.rootfs !== undefined ? { rootfs: root.rootfs } : {}),
  ...(root.image === undefined && root.rootfs === undefined ? { image: options.image } : {}),
  command: cmd,
  role: "scm",
  taskId,
  user: root.user ?? options.user,
  idmap: options.idmap ?? undefined,
  network: root.network ?? options.network,
  workDir: co.sourcedirRelative === "" ? CONTAINER_SCMDIR : `${CONTAINER_SCMDIR}/${co.sourcedirRelative}`,
  mounts: [
    { type: "bind", source: co.scmdir, destination: CONTAINER_SCMDIR, writable: true },
    ...creds,
    ...(root.mounts ?? [])
  ],
  env: { ...environment(creds.length > 0), ...root.env },
  timeoutSeconds: options.timeoutSeconds
})

const runSourceCmd = (s: ScmService) =>
  Effect.fn("Scm.runSourceCmd")(function* (
    co: ScmCheckout,
    root: SourceCmdRoot,
    opts: { readonly taskId: number; readonly logFile?: string | undefined }
  ) {
    const cmd = co.rules.sourceCmd
    if (cmd === null || cmd.length === 0) return
    const logFile = opts.logFile ?? co.logFile
    const creds = yield* credentialsMount(s.options)
    const result = yield* s.containers.run(sourceCmdSpec(s.options, co, root, opts.taskId, cmd, creds))
    yield* Effect.promise(() => fs.appendFile(logFile, `$ ${cmd.join(" ")}\n${result.stdout}${result.stderr}`))
    if (result.exitCode !== 0) {
      return yield* new ScmError({
        reason: "source-cmd-failed",
        url: maskPassword(co.scm.url),
        message:
          `error retrieving sources, "${cmd.join(" ")}" exited with status ${result.exitCode}; ` +
          `see ${path.basename(logFile)} for more information` +
          (result.stderr.trim() === "" ? "" : `\n${tail(result.stderr)}`)
      })
    }
  })

/** Builds the Scm service. */
export const makeScm = (options: ScmOptions) =>
  Effect.map(Containers, (containers) => {
    const s: ScmService = { options, containers }
    return Scm.of({
      options,
      parse: Effect.fn("Scm.parse")(function* (url: string) {
        return yield* parseScmUrl(url, { allowPassword: options.allowPassword })
      }),
      assertAllowed: assertAllowed(options),
      checkout: checkout(s),
      findSpec: findSpec(options),
      runSourceCmd: runSourceCmd(s)
    })
  })
