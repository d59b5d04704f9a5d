/**
 * `build-local --target/--tag` up to the build, against the fake hub served over HTTP without
 * login: the hub from a koji client profile or --server/--topurl, target → build tag → repo →
 * build config, --repo-id and --wait-repo, the --compare-task reference; and every way it cannot
 * start — an unknown target, a tag without a repo, a hub that is down, a hub refusing anonymous
 * calls, an unknown task, a missing profile — as one line from the real program (`node
 * dist/main.js build-local`), no stack, exit 1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { beforeAll } from "vitest"
import { allowedByConfig } from "../../src/scm/allowed.js"
import { parseScmUrl } from "../../src/scm/url.js"
import { defaultConfig, localScmOptions } from "../../src/local/buildLocal.js"
import { AnonymousHub } from "../../src/local/anonymousHub.js"
import { comparePackages, comparisonLines, loadReference, parseInstalledLine, parseInstalledPkgsLog, pickReference } from "../../src/local/compareTask.js"
import { LocalBuildError } from "../../src/local/errors.js"
import { planFromHub, resolveHub } from "../../src/local/fromHub.js"
import { distMain, ensureBuilt } from "../daemon/child.js"
import { type FakeHub, type FakeHubOptions, startFakeHub } from "../fakehub/FakeHub.js"
import { addRepo, addTag, buildrootTables, setRepoState } from "../fakehub/buildroots.js"
import { addBuild, tagBuildAdmin } from "../fakehub/builds.js"
import { addTarget } from "../fakehub/targets.js"
import { tempDir } from "../support/tls.js"

/** Target f40-candidate → build tag f40-build (a READY repo), dest f40; tag empty-build has no repo. */
const world = (hub: FakeHub) => {
  const buildTag = addTag(hub.topdir, "f40-build", "x86_64", { "rpm.macro.dist": ".fc40" })
  const destTag = addTag(hub.topdir, "f40", null)
  addTarget(hub.topdir, "f40-candidate", buildTag, destTag)
  const repo = addRepo(hub.topdir, buildTag)
  const empty = addTag(hub.topdir, "empty-build", "x86_64")
  return { buildTag, destTag, repo, empty }
}

const client = (hub: FakeHub) => Effect.provide(AnonymousHub, AnonymousHub.layer({ server: hub.url }))

/** Every request the hub saw was anonymous. */
const assertAnonymous = (hub: FakeHub) => {
  assert.isAbove(hub.state.calls.length, 0)
  for (const call of hub.state.calls) assert.isUndefined(call.sessionId, `${call.method} carried a session`)
  assert.deepStrictEqual(hub.state.sessions, [])
}

/** A TCP port nothing listens on. */
const closedPort = Effect.async<number>((resume) => {
  const server = http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo // a TCP listener always has an AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** `node dist/main.js build-local ARGS` (async: the fake hub answers from this process). */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resume) => {
    execFile(process.execPath, [distMain, "build-local", ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
      resume(Effect.succeed({ code, stdout, stderr }))
    })
  })

/** The program failed with exactly this one line on stderr and no stack anywhere. */
const assertOneLineError = (r: { readonly code: number; readonly stdout: string; readonly stderr: string }, expected: string | RegExp) => {
  assert.strictEqual(r.code, 1, `exit code; stderr: ${r.stderr}`)
  const lines = r.stderr.split("\n").filter((l) => l !== "")
  assert.strictEqual(lines.length, 1, `one line on stderr, got:\n${r.stderr}`)
  const line = lines[0]!.replace(/^koji-adjutant build-local: /, "")
  if (typeof expected === "string") assert.strictEqual(line, expected)
  else assert.match(line, expected)
  assert.notMatch(r.stderr + r.stdout, /\n\s+at /, "no stack trace")
}

/** A home with ~/.koji/config naming the fake hub as profile `fake`, a dummy SRPM and a result dir. */
const setup = (hub: FakeHub | { readonly url: string }) =>
  Effect.gen(function*() {
    const home = yield* tempDir("fromhub-home-")
    fs.mkdirSync(path.join(home, ".koji"))
    fs.writeFileSync(path.join(home, ".koji", "config"), [
      "[koji]", "server = http://127.0.0.1:9/kojihub", "",
      "[fake]", `server = ${hub.url}`, "topurl = http://127.0.0.1:9/kojifiles", ""
    ].join("\n"))
    // Only read for being a file before the hub is asked: a build never starts in these tests.
    const srpm = path.join(home, "hello-1.0-1.src.rpm")
    fs.writeFileSync(srpm, "not an rpm")
    return { home, srpm, result: path.join(home, "result"), env: { HOME: home } }
  })

describe("resolveHub: the hub of a koji client profile, as the koji CLI reads it", () => {
  it.scoped("-p NAME from ~/.koji/config; --server/--topurl win over the profile", () =>
    Effect.gen(function*() {
      const s = yield* setup({ url: "http://hub.example.com/kojihub" })
      const etc = path.join(s.home, "no-etc")
      const fake = yield* resolveHub({ profile: "fake", home: s.home, etc })
      assert.strictEqual(fake.server, "http://hub.example.com/kojihub")
      assert.strictEqual(fake.topurl, "http://127.0.0.1:9/kojifiles")
      assert.deepStrictEqual(fake.profile.files, [path.join(s.home, ".koji", "config")])
      const over = yield* resolveHub({ profile: "fake", server: "http://other/kojihub", topurl: "http://other/kojifiles", home: s.home, etc })
      assert.deepStrictEqual([over.server, over.topurl], ["http://other/kojihub", "http://other/kojifiles"])
      // No -p: the CLI's default profile `koji`.
      assert.strictEqual((yield* resolveHub({ topurl: "http://x/kojifiles", home: s.home, etc })).server, "http://127.0.0.1:9/kojihub")
      // --koji-config FILE instead of the files under ~/.koji.
      const file = path.join(s.home, "other.conf")
      fs.writeFileSync(file, "[mine]\nserver = http://mine/kojihub\ntopurl = http://mine/kojifiles\n")
      assert.strictEqual((yield* resolveHub({ profile: "mine", kojiConfig: file, home: s.home, etc })).server, "http://mine/kojihub")
    }))

  it.scoped("a missing profile, or a hub without topurl, is one line saying what to give", () =>
    Effect.gen(function*() {
      const s = yield* setup({ url: "http://hub.example.com/kojihub" })
      const etc = path.join(s.home, "no-etc")
      const missing = yield* Effect.flip(resolveHub({ profile: "nope", home: s.home, etc }))
      assert.instanceOf(missing, LocalBuildError)
      assert.include(missing.message, "no configuration for koji profile name: nope")
      assert.include(missing.message, "profiles there: [koji], [fake]")
      const empty = yield* tempDir("fromhub-empty-")
      const none = yield* Effect.flip(resolveHub({ home: empty, etc }))
      assert.include(none.message, "name the hub with -p PROFILE or --server URL --topurl URL")
      const noTopurl = yield* Effect.flip(resolveHub({ server: "http://hub/kojihub", home: empty, etc }))
      assert.strictEqual(noTopurl.message, "no topurl for the koji hub at http://hub/kojihub: set topurl in the koji profile [koji] or pass --topurl URL")
    }))
})

describe("planFromHub: target → build tag → repo → build config, anonymously", () => {
  it.scoped("a target's build tag, its current repo and the config at the repo's event", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const w = world(hub)
      const plan = yield* Effect.flatMap(client(hub), (c) => planFromHub(c, { target: "f40-candidate" }))
      assert.deepStrictEqual(plan.buildTag, { id: w.buildTag, name: "f40-build" })
      assert.strictEqual(plan.destTag, w.destTag)
      assert.strictEqual(plan.repo.id, w.repo)
      assert.isFalse(plan.repoGiven)
      assert.deepStrictEqual(plan.config.extra, { "rpm.macro.dist": ".fc40" })
      const config = hub.state.calls.find((c) => c.method === "getBuildConfig")
      assert.deepStrictEqual(config?.params, [w.buildTag, { event: plan.repo.create_event, __starstar: true }])
      assert.deepStrictEqual(hub.state.calls.map((c) => c.method), ["getBuildTarget", "getRepo", "getBuildConfig"])
      assertAnonymous(hub)
      // --tag: the tag itself is the build tag and the destination.
      const byTag = yield* Effect.flatMap(client(hub), (c) => planFromHub(c, { tag: "f40-build" }))
      assert.deepStrictEqual([byTag.target, byTag.destTag, byTag.repo.id], [null, w.buildTag, w.repo])
    }))

  it.scoped("--repo-id: an older or expired repo of the tag is used; another tag's, a missing or a deleted one is refused", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const w = world(hub)
      const newer = addRepo(hub.topdir, w.buildTag)
      setRepoState(hub.topdir, w.repo, 2)
      const plan = (repoId: number) => Effect.flatMap(client(hub), (c) => planFromHub(c, { target: "f40-candidate", repoId }))
      const old = yield* plan(w.repo)
      assert.deepStrictEqual([old.repo.id, old.repoGiven], [w.repo, true])
      assert.strictEqual((yield* plan(newer)).repo.id, newer)
      const other = addRepo(hub.topdir, w.empty)
      assert.strictEqual((yield* Effect.flip(plan(other))).message, "Repo/Target mismatch: empty-build/f40-build")
      assert.strictEqual((yield* Effect.flip(plan(999))).message, `No such repo: 999 (on the koji hub at ${hub.url})`)
      setRepoState(hub.topdir, newer, 3)
      assert.strictEqual((yield* Effect.flip(plan(newer))).message, `Bad repo: ${newer} (DELETED)`)
    }))

  it.scopedLive("--wait-repo waits for a repo newer than the tag's last change", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const w = world(hub)
      tagBuildAdmin(hub.topdir, w.buildTag, addBuild(hub.topdir, { name: "hello", version: "1.0", release: "1" }))
      const waiting = yield* Effect.fork(Effect.flatMap(client(hub), (c) =>
        planFromHub(c, { target: "f40-candidate", waitRepo: true, wait: { pause: "20 millis", timeout: "10 seconds" } })))
      yield* Effect.sleep("150 millis")
      const fresh = addRepo(hub.topdir, w.buildTag)
      const plan = yield* Fiber.join(waiting)
      assert.strictEqual(plan.repo.id, fresh)
      assert.isAbove(hub.state.calls.filter((c) => c.method === "repo.get").length, 1)
      assertAnonymous(hub)
    }))
})

describe("--compare-task: a koji task's buildroot packages, read anonymously", () => {
  it.scoped("the hub's buildroot listing of the task, else its installed_pkgs.log", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      const w = world(hub)
      const t = buildrootTables(hub.topdir)
      const rpm = (name: string, version: string, epoch: number | null = null) => {
        const id = ++t.seq.rpm
        t.rpms.set(id, { id, name, version, release: "1.fc40", epoch, arch: "x86_64", payloadhash: "00", size: 1, buildtime: 1, buildId: null, externalRepoId: null, draft: false })
        return id
      }
      const listed = hub.createTask("buildArch", ["x.src.rpm", w.buildTag, "x86_64", true, {}], { arch: "x86_64" })
      const brootId = ++t.seq.buildroot
      t.buildroots.set(brootId, {
        id: brootId, hostId: 1, repoId: w.repo, arch: "x86_64", taskId: listed, state: 3, createEvent: 1, createTs: 1,
        retireEvent: null, retireTs: null, listing: new Map([[rpm("bash", "5.2"), false], [rpm("gcc", "14.1", 1), true]])
      })
      const logged = hub.createTask("buildArch", ["x.src.rpm", w.buildTag, "x86_64", true, {}], { arch: "x86_64" })
      const dir = path.join(hub.topdir, "work", "tasks", String(logged % 10000), String(logged))
      fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, "installed_pkgs.log"), "bash-5.2-2.fc40.x86_64 1 2 abc installed\nzlib-1:1.3-1.fc40.x86_64 1 2 def installed\n")

      const c = yield* client(hub)
      const fromListing = yield* loadReference(c, listed)
      const br = pickReference(fromListing, "build", "x86_64")!
      assert.deepStrictEqual([br.taskId, br.source], [listed, `buildroot ${brootId}`])
      assert.deepStrictEqual(br.packages.map((p) => `${p.name} ${p.epoch} ${p.version}`), ["bash null 5.2", "gcc 1 14.1"])
      assert.isUndefined(pickReference(fromListing, "srpm-build", "x86_64"))
      const fromLog = yield* loadReference(c, logged)
      assert.deepStrictEqual(pickReference(fromLog, "build", "x86_64")?.source, "installed_pkgs.log")
      assert.deepStrictEqual(fromLog.buildroots[0]?.packages.map((p) => `${p.name}-${p.epoch}:${p.version}`), ["bash-null:5.2", "zlib-1:1.3"])
      const unknown = yield* Effect.flip(loadReference(c, 99999))
      assert.strictEqual(unknown.message, `--compare-task 99999: the koji hub at ${hub.url} has no such task`)
      const empty = hub.createTask("buildArch", ["y.src.rpm", w.buildTag, "x86_64", true, {}], { arch: "x86_64" })
      assert.include((yield* Effect.flip(loadReference(c, empty))).message, "have no buildroot listing or installed_pkgs.log")
      assertAnonymous(hub)
    }))

  it("mock's installed_pkgs.log lines, epochs included; and the differences by name and arch", () => {
    assert.deepStrictEqual(parseInstalledLine("perl-libs-4:5.38.2-506.fc40.x86_64 1 2 abc installed"), {
      name: "perl-libs", epoch: 4, version: "5.38.2", release: "506.fc40", arch: "x86_64"
    })
    assert.isUndefined(parseInstalledLine("garbage"))
    assert.strictEqual(parseInstalledPkgsLog("a-1-1.noarch 1 1 x installed\n\nb-2-2.x86_64\n").length, 2)
    const p = (name: string, version: string, arch = "x86_64") => ({ name, epoch: null, version, release: "1", arch })
    const c = comparePackages([p("bash", "5.2"), p("gcc", "14"), p("make", "4"), p("glibc", "2.39", "i686")], [p("bash", "5.2"), p("gcc", "13"), p("glibc", "2.39"), p("zlib", "1.3")])
    assert.strictEqual(c.same, 1)
    assert.deepStrictEqual(c.onlyHere.map((x) => `${x.name}.${x.arch}`), ["glibc.i686", "make.x86_64"])
    assert.deepStrictEqual(c.onlyThere.map((x) => `${x.name}.${x.arch}`), ["glibc.x86_64", "zlib.x86_64"])
    assert.deepStrictEqual(comparisonLines("task 7", c), [
      "compared with task 7: 1 the same, 5 different",
      "  differs:    gcc.x86_64 14-1 here, 13-1 there",
      "  only here:  glibc-2.39-1.i686",
      "  only here:  make-4-1.x86_64",
      "  only there: glibc-2.39-1.x86_64",
      "  only there: zlib-1.3-1.x86_64"
    ])
    assert.deepStrictEqual(comparisonLines("task 7", comparePackages([p("a", "1")], [p("a", "1")])), ["same packages as task 7 (1)"])
  })
})

describe("localScmOptions: which SCM URLs a local build takes", () => {
  it.effect("without -c any URL, with kojid's defaults for the rest; with -c kojid.conf's allowed_scms; never the hub's policy", () =>
    Effect.gen(function*() {
      const config = yield* defaultConfig()
      const url = yield* parseScmUrl("git+https://src.example.org/rpms/hello.git#abc123", { allowPassword: false })
      const any = localScmOptions(config, "any", undefined)
      assert.isFalse(any.usePolicy)
      assert.strictEqual(any.image, config.adjutant.bootstrap_image)
      assert.deepStrictEqual(Either.getOrThrow(allowedByConfig(url, any.allowedScms)), { useCommon: false, sourceCmd: ["make", "sources"] })
      // kojid.conf's allowed_scms is empty by default: a builder with that file refuses every URL.
      const fromFile = localScmOptions({ ...config, kojid: { ...config.kojid, allowed_scms_use_policy: true } }, "config", "img:1")
      assert.deepStrictEqual([fromFile.allowedScms, fromFile.useConfig, fromFile.usePolicy, fromFile.image], ["", true, false, "img:1"])
      assert.isTrue(Either.isLeft(allowedByConfig(url, fromFile.allowedScms)))
    }))
})

describe("build-local --target (the real program): what stops it is one line", () => {
  beforeAll(() => ensureBuilt(), 180_000)

  it.scopedLive("an unknown target, through -p PROFILE from ~/.koji/config", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      world(hub)
      const s = yield* setup(hub)
      const r = yield* cli(["-p", "fake", "--target", "no-such-target", "--result", s.result, s.srpm], s.env)
      assertOneLineError(r, `unknown build target: no-such-target (on the koji hub at ${hub.url})`)
      assertAnonymous(hub)
      const missing = yield* cli(["-p", "nope", "--target", "f40-candidate", s.srpm], s.env)
      assertOneLineError(missing, /^no configuration for koji profile name: nope \(read .*\.koji\/config; profiles there: \[koji\], \[fake\]\)$/)
    }))

  it.scopedLive("a build tag without a repo", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      world(hub)
      const s = yield* setup(hub)
      const r = yield* cli(["--server", hub.url, "--topurl", "http://127.0.0.1:9/kojifiles", "--tag", "empty-build", "--result", s.result, s.srpm], s.env)
      assertOneLineError(r, `the build tag empty-build has no current repo on the koji hub at ${hub.url}: wait for one with --wait-repo, or name one with --repo-id N`)
    }))

  it.scopedLive("a hub that is down", () =>
    Effect.gen(function*() {
      const server = `http://127.0.0.1:${yield* closedPort}/kojihub`
      const s = yield* setup({ url: server })
      const r = yield* cli(["-p", "fake", "--target", "f40-candidate", "--result", s.result, s.srpm], s.env)
      assertOneLineError(r, new RegExp(`^cannot reach the koji hub at ${server.replace(/\./g, "\\.")}: .*ECONNREFUSED`))
    }))

  it.scopedLive("a hub that refuses anonymous calls (AuthError, or HTTP 401 from its web server)", () =>
    Effect.gen(function*() {
      for (const [inject, why] of [
        [{ fault: [1002, "Not logged-in"] as const }, "AuthError: Not logged-in"],
        [{ http: 401 }, "HTTP 401 Unauthorized"]
      ] as const) {
        const options: FakeHubOptions = { inject: (req) => (req.sessionId === undefined ? inject : undefined) }
        const hub = yield* startFakeHub(options)
        world(hub)
        const s = yield* setup(hub)
        const r = yield* cli(["-p", "fake", "--target", "f40-candidate", "--result", s.result, s.srpm], s.env)
        assertOneLineError(r, `the koji hub at ${hub.url} requires login: it refused the anonymous call getBuildTarget (${why})`)
      }
    }))

  it.scopedLive("a --compare-task the hub does not know, before anything is built", () =>
    Effect.gen(function*() {
      const hub = yield* startFakeHub()
      world(hub)
      const s = yield* setup(hub)
      const r = yield* cli(["-p", "fake", "--target", "f40-candidate", "--compare-task", "4242", "--result", s.result, s.srpm], s.env)
      assertOneLineError(r, `--compare-task 4242: the koji hub at ${hub.url} has no such task`)
      assert.deepStrictEqual(fs.readdirSync(s.result), [], "nothing was built")
    }))

  it.scopedLive("options that do not go together", () =>
    Effect.gen(function*() {
      const s = yield* setup({ url: "http://127.0.0.1:9/kojihub" })
      assertOneLineError(
        yield* cli(["--repo", "/nonexistent", "--target", "t", s.srpm], s.env),
        "--repo builds without a hub and --target/--tag from one: give one or the other"
      )
      assertOneLineError(yield* cli(["--repo", "/nonexistent", "--compare-task", "1", s.srpm], s.env), "--compare-task need --target or --tag (--repo builds without a hub)")
      assertOneLineError(yield* cli([s.srpm], s.env), /^give --target TARGET \(or --tag BUILD_TAG\)/)
      assertOneLineError(yield* cli(["-p", "fake", "--target", "t", "--repo-id", "1", "--wait-repo", s.srpm], s.env), "give --repo-id or --wait-repo, not both")
      assertOneLineError(yield* cli(["-p", "fake", "--target", "t", path.join(s.home, "missing.src.rpm")], s.env), `cannot read the SRPM ${path.join(s.home, "missing.src.rpm")}: no such file`)
    }))
})
