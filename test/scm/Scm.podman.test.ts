/**
 * Scm with real podman: checkouts from a git daemon on loopback run in the bootstrap image,
 * never on the host (koji-protocol.md §8, DESIGN §5). The checkout container uses network
 * "host" here so it can reach 127.0.0.1; production uses bridge.
 */
import { traversableTempDir } from "../support/dirs.js"
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Containers } from "../../src/containers/Containers.js"
import { DEFAULT_SCM_TIMEOUT, Scm, type ScmOptions } from "../../src/scm/Scm.js"
import { ScmError } from "../../src/scm/url.js"
import {
  containersOfHost,
  podmanInstalled,
  podmanSkipReason,
  type PodmanService,
  removeContainersOfHost,
  startPodmanService,
  testContainersOptions,
  uniqueHostName
} from "../support/podman.js"

const BOOTSTRAP = "localhost/koji-adjutant-bootstrap:latest"
const repoRoot = join(import.meta.dirname, "../..")

if (!podmanInstalled) console.warn(`skipping Scm podman tests: ${podmanSkipReason}`)

const host = uniqueHostName("scm")
let service: PodmanService
let base: string
let daemon: ChildProcess
let port: number
let tagHash: string

const git = (cwd: string, ...args: ReadonlyArray<string>): string =>
  execFileSync("git", [...args], {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.org", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.org" }
  }).trim()

const freePort = (): Promise<number> =>
  new Promise((done, fail) => {
    const s = createServer()
    s.once("error", fail)
    s.listen(0, "127.0.0.1", () => {
      const a = s.address()
      const p = typeof a === "object" && a !== null ? a.port : 0
      s.close(() => done(p))
    })
  })

/** A bare repo `<base>/repos/<name>.git` made from `files` (one commit per entry of `commits`). */
const makeRepo = (name: string, commits: ReadonlyArray<Record<string, string | { symlink: string }>>, tag?: string): void => {
  const work = join(base, "work", name)
  mkdirSync(work, { recursive: true })
  git(work, "init", "-q", "-b", "main")
  for (const files of commits) {
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(join(work, file, ".."), { recursive: true })
      if (typeof content === "string") writeFileSync(join(work, file), content)
      else symlinkSync(content.symlink, join(work, file))
    }
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "c")
    if (tag !== undefined && commits.indexOf(files) === 0) git(work, "tag", tag)
  }
  const bare = join(base, "repos", `${name}.git`)
  mkdirSync(join(bare, ".."), { recursive: true })
  execFileSync("git", ["clone", "-q", "--bare", work, bare])
}

/** Waits until a git daemon answers for `repo` (up to 10 s). */
const waitForGit = async (repo: string): Promise<void> => {
  for (let i = 0; i < 100; i++) {
    if (spawnSync("git", ["ls-remote", repo], { stdio: "ignore" }).status === 0) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`git daemon did not answer for ${repo}`)
}

const SPEC = "Name: foo\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n%description\nd\n%files\n"

const options = (overrides: Partial<ScmOptions> = {}): ScmOptions => ({
  allowedScms: "127.0.0.1*:/rpms/*:no:",
  useConfig: true,
  usePolicy: false,
  allowPassword: false,
  credentialsDir: null,
  supportRpmSourceLayout: true,
  image: BOOTSTRAP,
  user: "1000:1000",
  idmap: { base: 2000000000, size: 65536 },
  network: "host",
  timeoutSeconds: DEFAULT_SCM_TIMEOUT,
  ...overrides
})

const layer = (o: Partial<ScmOptions> = {}) =>
  Scm.layer(options(o)).pipe(Layer.provideMerge(Containers.layer(testContainersOptions(service.socket, host))))

const url = (repo: string, rev: string, module = "") => `git://127.0.0.1:${port}/rpms/${repo}.git${module === "" ? "" : `?${module}`}#${rev}`

const noPolicy = { evalPolicy: () => Effect.succeed(null), data: {} }

/** Parse, vet and check out as the buildSRPMFromSCM handler will. */
const checkoutOf = (u: string, workdir: string) =>
  Effect.gen(function* () {
    const scm = yield* Scm
    const parsed = yield* scm.parse(u)
    const rules = yield* scm.assertAllowed(parsed, noPolicy)
    return yield* scm.checkout(parsed, rules, { taskId: 77, workdir })
  })

const freshWorkdir = () => mkdtempSync(join(base, "task-"))

const failure = <A>(exit: Exit.Exit<A, unknown>): ScmError => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const e = Exit.isFailure(exit) ? exit.cause : undefined
  const err = e !== undefined && e._tag === "Fail" ? e.error : undefined
  assert.instanceOf(err, ScmError, String(e))
  return err as ScmError // narrowed by the assertion above
}

describe.skipIf(!podmanInstalled)("Scm checkout in a container (real podman, git daemon on loopback)", () => {
  beforeAll(async () => {
    if (spawnSync("podman", ["image", "exists", BOOTSTRAP]).status !== 0) {
      execFileSync(join(repoRoot, "scripts/build-images.sh"), { stdio: ["ignore", "ignore", "inherit"] })
    }
    service = await startPodmanService()
    base = traversableTempDir("koji-adjutant-scm-")
    makeRepo("foo", [{ "foo.spec": SPEC, "README": "v1\n" }, { "README": "v2\n" }], "foo-1-1")
    makeRepo("common", [{ "Makefile.common": "x\n" }])
    makeRepo("layout", [{ "SPECS/layout.spec": SPEC.replace("foo", "layout"), "SOURCES/a.tar": "a", "SPECS/other.spec": SPEC }])
    makeRepo("packager", [{ "packager.spec": `Packager: Mallory\n${SPEC}` }]) // first line: kojid's re.match sees only the start
    makeRepo("escape", [{ "escape.spec": SPEC, "mod": { symlink: "/etc" } }])
    makeRepo("twospecs", [{ "a.spec": SPEC, "b.spec": SPEC }])
    tagHash = git(join(base, "work", "foo"), "rev-parse", "foo-1-1")
    port = await freePort()
    daemon = spawn("git", ["daemon", "--reuseaddr", "--export-all", `--base-path=${join(base, "repos")}`, "--listen=127.0.0.1", `--port=${port}`, join(base, "repos")], {
      stdio: "ignore"
    })
    // /rpms/<name>.git is served from <base>/repos/rpms: link it.
    symlinkSync(join(base, "repos"), join(base, "repos", "rpms"))
    await waitForGit(`git://127.0.0.1:${port}/rpms/foo.git`)
  })

  afterAll(async () => {
    daemon?.kill("SIGTERM")
    const left = containersOfHost(host)
    removeContainersOfHost(host)
    await service?.stop()
    if (base !== undefined) rmSync(base, { recursive: true, force: true })
    assert.deepStrictEqual(left, [], "no container may be left behind")
  })

  it.live("checks out a tag in a container, records the commit hash and writes checkout.log", () =>
    Effect.gen(function* () {
      const workdir = freshWorkdir()
      const co = yield* checkoutOf(url("foo", "foo-1-1"), workdir)
      assert.strictEqual(co.commit, tagHash)
      assert.strictEqual(co.source.url, url("foo", "foo-1-1"))
      assert.strictEqual(co.source.source, `git://127.0.0.1:${port}/rpms/foo.git#${tagHash}`)
      assert.strictEqual(co.sourcedir, join(workdir, "scmroot", "foo"))
      assert.strictEqual(readFileSync(join(co.sourcedir, "README"), "utf8"), "v1\n")
      // The build user (1000 in the containers) is build_userns base + 1000 on the host.
      assert.strictEqual(statSync(co.sourcedir).uid, 2000000000 + 1000, "the tree belongs to the build user, as kojid chowns it to mockuser")
      const log = readFileSync(co.logFile, "utf8")
      assert.include(log, `$ git clone -n git://127.0.0.1:${port}/rpms/foo.git /chroot_tmpdir/scmroot/foo`)
      assert.include(log, "$ git fetch origin foo-1-1:KOJI_FETCH_HEAD")
      assert.include(log, "$ git reset --hard KOJI_FETCH_HEAD")
      const spec = yield* (yield* Scm).findSpec(co)
      assert.strictEqual(spec.specFileRelative, "foo/foo.spec")
      assert.strictEqual(spec.sourcesDirRelative, "foo")
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer())))

  it.live("a branch name and a full commit hash both check out", () =>
    Effect.gen(function* () {
      const head = git(join(base, "work", "foo"), "rev-parse", "main")
      const byBranch = yield* checkoutOf(url("foo", "main"), freshWorkdir())
      assert.strictEqual(byBranch.commit, head)
      const byHash = yield* checkoutOf(url("foo", tagHash), freshWorkdir())
      assert.strictEqual(byHash.commit, tagHash)
    }).pipe(Effect.provide(layer())))

  it.live("a revision that does not exist → ScmError revision-not-found naming it (BuildError)", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(checkoutOf(url("foo", "no-such-tag"), freshWorkdir()))
      const e = failure(exit)
      assert.strictEqual(e.reason, "revision-not-found")
      assert.include(e.message, 'revision "no-such-tag" was not found')
      assert.include(e.message, 'Error running GIT command "git reset --hard no-such-tag"')
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer())))

  it.live("a repository that does not exist → checkout-failed with git's words", () =>
    Effect.gen(function* () {
      const e = failure(yield* Effect.exit(checkoutOf(url("nothere", "main"), freshWorkdir())))
      assert.strictEqual(e.reason, "checkout-failed")
      assert.include(e.message, 'Error running GIT command "git clone -n')
    }).pipe(Effect.provide(layer())))

  it.live("not in allowed_scms → not-allowed before any container is made", () =>
    Effect.gen(function* () {
      const e = failure(yield* Effect.exit(checkoutOf(url("foo", "main"), freshWorkdir())))
      assert.strictEqual(e.reason, "not-allowed")
      assert.strictEqual(e.message, `127.0.0.1:${port}:/rpms/foo.git is not in the list of allowed SCMs`)
    }).pipe(Effect.provide(layer({ allowedScms: "pkgs.example.org:/rpms/*" }))))

  it.live("user:password@ in the URL is rejected (GenericError), the password never echoed", () =>
    Effect.gen(function* () {
      const e = failure(yield* Effect.exit(checkoutOf(`git://bob:s3cret@127.0.0.1:${port}/rpms/foo.git#main`, freshWorkdir())))
      assert.strictEqual(e.reason, "password-in-url")
      assert.notInclude(e.message + e.url, "s3cret")
    }).pipe(Effect.provide(layer())))

  it.live("use_common clones <dir>/common beside the checkout", () =>
    Effect.gen(function* () {
      const co = yield* checkoutOf(url("foo", "main"), freshWorkdir())
      assert.isTrue(co.rules.useCommon)
      assert.isTrue(existsSync(join(co.scmdir, "common", "Makefile.common")))
      assert.include(readFileSync(co.logFile, "utf8"), `$ git clone git://127.0.0.1:${port}/rpms/common.git common`)
    }).pipe(Effect.provide(layer({ allowedScms: "127.0.0.1*:/rpms/*" }))))

  it.live("RPM source layout: SPECS/<dir>.spec chosen among several, SOURCES/ used", () =>
    Effect.gen(function* () {
      const scm = yield* Scm
      const co = yield* checkoutOf(url("layout", "main"), freshWorkdir())
      const spec = yield* scm.findSpec(co)
      assert.strictEqual(spec.specFileRelative, "layout/SPECS/layout.spec")
      assert.strictEqual(spec.sourcesDirRelative, "layout/SOURCES")
      const two = yield* checkoutOf(url("twospecs", "main"), freshWorkdir())
      const e = failure(yield* Effect.exit(scm.findSpec(two)))
      assert.strictEqual(e.reason, "multiple-specs")
    }).pipe(Effect.provide(layer())))

  it.live("a spec setting Packager: is refused (BuildSRPMFromSCMTask.spec_sanity_checks)", () =>
    Effect.gen(function* () {
      const co = yield* checkoutOf(url("packager", "main"), freshWorkdir())
      const e = failure(yield* Effect.exit((yield* Scm).findSpec(co)))
      assert.strictEqual(e.reason, "spec-tag")
      assert.strictEqual(e.message, "Packager is not allowed to be set in spec file")
    }).pipe(Effect.provide(layer())))

  it.live("a module that is a symlink out of the checkout is refused", () =>
    Effect.gen(function* () {
      const e = failure(yield* Effect.exit(checkoutOf(url("escape", "main", "mod"), freshWorkdir())))
      assert.strictEqual(e.reason, "checkout-failed")
      assert.include(e.message, "leads outside the checkout")
    }).pipe(Effect.provide(layer())))

  it.live("bridge network (the production default) reaches an SCM host at the bridge gateway", () =>
    Effect.gen(function* () {
      const gateway = execFileSync("podman", ["network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Gateway}}{{end}}"], {
        encoding: "utf8"
      }).trim()
      assert.match(gateway, /^\d+\.\d+\.\d+\.\d+$/, "podman's default network has an IPv4 gateway")
      const bridgePort = yield* Effect.promise(freePort)
      // Listens on the bridge address only: reachable from containers and this host, not beyond.
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawn("git", ["daemon", "--reuseaddr", "--export-all", `--base-path=${join(base, "repos")}`, `--listen=${gateway}`, `--port=${bridgePort}`, join(base, "repos")], {
            stdio: "ignore"
          })
        ),
        (p) => Effect.sync(() => p.kill("SIGTERM"))
      )
      const repo = `git://${gateway}:${bridgePort}/rpms/foo.git`
      yield* Effect.promise(() => waitForGit(repo))
      const co = yield* checkoutOf(`${repo}#foo-1-1`, freshWorkdir())
      assert.strictEqual(co.commit, tagHash)
      assert.strictEqual((yield* Scm).options.network, "bridge")
    }).pipe(Effect.scoped, Effect.provide(layer({ network: "bridge", allowedScms: "*:/rpms/*:no:" }))))

  it.live("host files (a stand-in client cert) are invisible; only scm_credentials_dir is mounted, read-only", () => {
    const secretDir = mkdtempSync(join(base, "etc-kojid-"))
    writeFileSync(join(secretDir, "client.crt"), "PRIVATE KEY")
    const creds = mkdtempSync(join(base, "creds-"))
    writeFileSync(join(creds, "token"), "scm-token")
    // The build user must be able to read it, as mockuser must under kojid.
    chmodSync(creds, 0o755)
    chmodSync(join(creds, "token"), 0o644)
    const probe = [
      `test ! -e ${secretDir}/client.crt`,
      `test ! -e ${repoRoot}/package.json`,
      "test \"$(cat /credentials/token)\" = scm-token",
      "! touch /credentials/x 2>/dev/null",
      "test -f foo.spec",
      "echo fetched > sources-fetched"
    ].join(" && ")
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse(url("foo", "main"))
      const co = yield* scm.checkout(parsed, { useCommon: false, sourceCmd: ["sh", "-c", probe] }, { taskId: 78, workdir: freshWorkdir() })
      // The checkout container itself ran git with HOME=/credentials; the probe runs the same way.
      yield* scm.runSourceCmd(co, {}, { taskId: 78 })
      assert.strictEqual(readFileSync(join(co.sourcedir, "sources-fetched"), "utf8"), "fetched\n")
      assert.isFalse(existsSync(join(creds, "x")))
      const failing = { ...co, rules: { useCommon: false, sourceCmd: ["sh", "-c", `cat ${secretDir}/client.crt`] } }
      const e = failure(yield* Effect.exit(scm.runSourceCmd(failing, {}, { taskId: 78 })))
      assert.strictEqual(e.reason, "source-cmd-failed")
      assert.notInclude(e.message, "PRIVATE KEY")
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer({ credentialsDir: creds })))
  })
})
