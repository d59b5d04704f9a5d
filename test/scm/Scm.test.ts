/**
 * Scm over the in-memory Containers: the container it asks for (image, user, network, mounts),
 * kojid's command order and git fallback, the build_from_scm policy path, and the spec checks.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Layer } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import type { ExecScript } from "../../src/containers/MemoryContainers.js"
import { MemoryContainers } from "../../src/containers/MemoryContainers.js"
import type { XmlRpcStruct } from "../../src/hub/xmlrpc.js"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { chooseSpec, CONTAINER_SCMDIR, DEFAULT_SCM_TIMEOUT, Scm, scmOptionsFromConfig, type ScmOptions, specSanityProblem } from "../../src/scm/Scm.js"
import { faultFor, ScmError } from "../../src/scm/url.js"

const base = mkdtempSync(join(tmpdir(), "koji-adjutant-scm-unit-"))
afterAll(() => rmSync(base, { recursive: true, force: true }))

const HASH = "0123456789abcdef0123456789abcdef01234567"

const options = (o: Partial<ScmOptions> = {}): ScmOptions => ({
  allowedScms: "pkgs.example.org:/rpms/*:no:fedpkg,sources",
  useConfig: true,
  usePolicy: false,
  allowPassword: false,
  credentialsDir: null,
  supportRpmSourceLayout: true,
  image: "localhost/koji-adjutant-bootstrap:latest",
  user: "1000:1000",
  idmap: { base: 2000000000, size: 65536 },
  network: "bridge",
  timeoutSeconds: DEFAULT_SCM_TIMEOUT,
  ...o
})

/** A fake git: `clone` makes the work tree on the host side of the mount, `fail` names commands that exit 1. */
const fakeGit = (workdir: string, fail: ReadonlyArray<string> = [], head = `${HASH}\n`): ExecScript => (_spec, cmd) => {
  const line = cmd.join(" ")
  if (fail.some((f) => line.startsWith(f))) return { exitCode: 1, stdout: "", stderr: `fatal: ${line} failed\n` }
  if (cmd[0] === "git" && cmd[1] === "clone") {
    const target = cmd[cmd.length - 1]!
    const rel = target.startsWith(CONTAINER_SCMDIR) ? target.slice(CONTAINER_SCMDIR.length + 1) : target
    mkdirSync(join(workdir, "scmroot", rel), { recursive: true })
  }
  if (line === "git rev-parse HEAD") return { exitCode: 0, stdout: head, stderr: "" }
  return { exitCode: 0, stdout: `ran ${cmd[0]}\n`, stderr: "" }
}

const setup = (o: Partial<ScmOptions>, exec: ExecScript) =>
  Scm.layer(options(o)).pipe(Layer.provideMerge(Containers.layerMemory({ exec })))

const errorOf = <A>(exit: Exit.Exit<A, unknown>): ScmError => {
  assert.isTrue(Exit.isFailure(exit))
  const err = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
  assert.instanceOf(err, ScmError)
  return err as ScmError // narrowed by the assertion above
}

const allow = { evalPolicy: () => Effect.succeed(null), data: {} }

describe("Scm.checkout (in-memory containers)", () => {
  it.effect("one container: bootstrap image, build user, bridge network, only scmroot mounted, read-only root; removed after", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#v1")
      const co = yield* scm.checkout(parsed, yield* scm.assertAllowed(parsed, allow), { taskId: 9, workdir })
      const mem = yield* MemoryContainers
      const created = yield* mem.created
      assert.strictEqual(created.length, 1)
      const spec = created[0]!.spec
      assert.strictEqual(spec.image, "localhost/koji-adjutant-bootstrap:latest")
      assert.strictEqual(spec.role, "scm")
      assert.strictEqual(spec.taskId, 9)
      assert.strictEqual(spec.user, "1000:1000")
      assert.strictEqual(spec.network, "bridge")
      assert.isTrue(spec.readOnlyRoot)
      assert.deepStrictEqual(spec.mounts, [{ type: "bind", source: join(workdir, "scmroot"), destination: CONTAINER_SCMDIR, writable: true }])
      assert.strictEqual(spec.env?.["HOME"], "/tmp")
      assert.strictEqual(spec.env?.["GIT_TERMINAL_PROMPT"], "0")
      assert.deepStrictEqual(yield* mem.live, [])
      assert.deepStrictEqual(
        created[0]!.execs.map((e) => [e.cmd.join(" "), e.options?.workDir]),
        [
          [`git clone -n git://pkgs.example.org/rpms/foo ${CONTAINER_SCMDIR}/foo`, CONTAINER_SCMDIR],
          ["git fetch origin v1:KOJI_FETCH_HEAD", `${CONTAINER_SCMDIR}/foo`],
          ["git reset --hard KOJI_FETCH_HEAD", `${CONTAINER_SCMDIR}/foo`],
          ["git rev-parse HEAD", `${CONTAINER_SCMDIR}/foo`]
        ]
      )
      assert.strictEqual(co.commit, HASH)
      assert.deepStrictEqual(co.source, { url: "git://pkgs.example.org/rpms/foo#v1", source: `git://pkgs.example.org/rpms/foo#${HASH}` })
      assert.deepStrictEqual(co.rules, { useCommon: false, sourceCmd: ["fedpkg", "sources"] })
    }).pipe(Effect.provide(setup({}, fakeGit(workdir))))
  })

  it.effect("git fetch fails (a short hash) → kojid's fallback `git reset --hard <rev>`", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#origin/abc12")
      const co = yield* scm.checkout(parsed, { useCommon: false, sourceCmd: null }, { taskId: 9, workdir })
      const execs = (yield* (yield* MemoryContainers).created)[0]!.execs.map((e) => e.cmd.join(" "))
      assert.deepStrictEqual(execs.slice(1), ["git fetch origin abc12:KOJI_FETCH_HEAD", "git reset --hard origin/abc12", "git rev-parse HEAD"])
      assert.strictEqual(co.commit, HASH)
    }).pipe(Effect.provide(setup({}, fakeGit(workdir, ["git fetch"]))))
  })

  it.effect("fallback fails too → revision-not-found (BuildError 1005), container removed", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#nope")
      const e = errorOf(yield* Effect.exit(scm.checkout(parsed, { useCommon: false, sourceCmd: null }, { taskId: 9, workdir })))
      assert.strictEqual(e.reason, "revision-not-found")
      assert.strictEqual(faultFor(e).faultCode, 1005)
      assert.include(e.message, "fatal: git reset --hard nope failed")
      assert.deepStrictEqual(yield* (yield* MemoryContainers).live, [])
    }).pipe(Effect.provide(setup({}, fakeGit(workdir, ["git fetch", "git reset --hard nope"]))))
  })

  it.effect("use_common: common cloned in scmdir; with a module the ../common link is made", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo.git?sub#v1")
      yield* scm.checkout(parsed, { useCommon: true, sourceCmd: null }, { taskId: 9, workdir })
      const execs = (yield* (yield* MemoryContainers).created)[0]!.execs.map((e) => e.cmd.join(" "))
      assert.include(execs, "git clone git://pkgs.example.org/rpms/common.git common")
      assert.include(execs, `test -e ${CONTAINER_SCMDIR}/foo/sub/../common`)
    }).pipe(
      Effect.provide(
        setup({}, (spec, cmd, o) => {
          if (cmd.join(" ") === `git clone -n git://pkgs.example.org/rpms/foo.git ${CONTAINER_SCMDIR}/foo`) mkdirSync(join(workdir, "scmroot/foo/sub"), { recursive: true })
          return fakeGit(workdir)(spec, cmd, o)
        })
      )
    )
  })

  it.effect("a bad `git rev-parse` → commit-hash (GenericError 1000, as get_source)", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#v1")
      const e = errorOf(yield* Effect.exit(scm.checkout(parsed, { useCommon: false, sourceCmd: null }, { taskId: 9, workdir })))
      assert.strictEqual(e.reason, "commit-hash")
      assert.strictEqual(faultFor(e).faultCode, 1000)
    }).pipe(Effect.provide(setup({}, fakeGit(workdir, [], "not a hash\n"))))
  })

  it.effect("git+ssh without a user → no-user before any container", () =>
    Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git+ssh://pkgs.example.org/rpms/foo#v1")
      const e = errorOf(yield* Effect.exit(scm.checkout(parsed, { useCommon: false, sourceCmd: null }, { taskId: 9, workdir: base })))
      assert.strictEqual(e.reason, "no-user")
      assert.strictEqual(e.message, "No user specified for repository access scheme: git+ssh://")
      assert.deepStrictEqual(yield* (yield* MemoryContainers).created, [])
    }).pipe(Effect.provide(setup({}, fakeGit(base)))))

  it.effect("scm_credentials_dir: mounted read-only at /credentials only when it is a directory", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    const creds = mkdtempSync(join(base, "creds-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#v1")
      yield* scm.checkout(parsed, { useCommon: false, sourceCmd: null }, { taskId: 9, workdir })
      const spec = (yield* (yield* MemoryContainers).created)[0]!.spec
      assert.deepStrictEqual(spec.mounts?.[1], { type: "bind", source: creds, destination: "/credentials" })
      assert.strictEqual(spec.env?.["HOME"], "/credentials")
    }).pipe(Effect.provide(setup({ credentialsDir: creds }, fakeGit(workdir))))
  })

  it.effect("a missing scm_credentials_dir is not mounted (kojid: os.path.isdir)", () => {
    const workdir = mkdtempSync(join(base, "w-"))
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#v1")
      yield* scm.checkout(parsed, { useCommon: false, sourceCmd: null }, { taskId: 9, workdir })
      assert.strictEqual((yield* (yield* MemoryContainers).created)[0]!.spec.mounts?.length, 1)
    }).pipe(Effect.provide(setup({ credentialsDir: join(base, "absent") }, fakeGit(workdir))))
  })
})

describe("scmOptionsFromConfig", () => {
  it.effect("checkout network and time limit come from [adjutant] scm_network and scm_timeout", () =>
    Effect.gen(function* () {
      const defaults = scmOptionsFromConfig(yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest()))
      assert.strictEqual(defaults.network, "bridge")
      assert.strictEqual(defaults.timeoutSeconds, 3600)
      const set = scmOptionsFromConfig(
        yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest({ adjutant: { scm_network: "host", scm_timeout: 90 } }))
      )
      assert.strictEqual(set.network, "host")
      assert.strictEqual(set.timeoutSeconds, 90)
    }))
})

describe("Scm.assertAllowed (config, then build_from_scm policy)", () => {
  it.effect("policy only: evalPolicy('build_from_scm', scm_* + extra); its options apply", () => {
    const calls: Array<[string, XmlRpcStruct]> = []
    const evalPolicy = (name: string, data: XmlRpcStruct) =>
      Effect.sync(() => {
        calls.push([name, data])
        return "allow use_common fedpkg sources"
      })
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://anyhost.example.com/x/y#r")
      const rules = yield* scm.assertAllowed(parsed, { evalPolicy, data: { user_id: 3, channel: "default", scratch: false } })
      assert.deepStrictEqual(rules, { useCommon: true, sourceCmd: ["fedpkg", "sources"] })
      assert.strictEqual(calls.length, 1)
      assert.strictEqual(calls[0]![0], "build_from_scm")
      assert.deepStrictEqual(calls[0]![1], {
        scm_url: "git://anyhost.example.com/x/y#r",
        scm_scheme: "git://",
        scm_user: null,
        scm_host: "anyhost.example.com",
        scm_repository: "/x/y",
        scm_module: "",
        scm_revision: "r",
        scm_type: "GIT",
        user_id: 3,
        channel: "default",
        scratch: false
      })
    }).pipe(Effect.provide(setup({ useConfig: false, usePolicy: true }, fakeGit(base))))
  })

  it.effect("config refuses first: the policy is not asked", () => {
    let asked = 0
    return Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://evil.example.com/rpms/foo#r")
      const e = errorOf(
        yield* Effect.exit(scm.assertAllowed(parsed, { evalPolicy: () => Effect.sync(() => (asked++, "allow")), data: {} }))
      )
      assert.strictEqual(e.reason, "not-allowed")
      assert.strictEqual(asked, 0)
    }).pipe(Effect.provide(setup({ usePolicy: true }, fakeGit(base))))
  })

  it.effect("policy deny → policy-denied with the reason", () =>
    Effect.gen(function* () {
      const scm = yield* Scm
      const parsed = yield* scm.parse("git://pkgs.example.org/rpms/foo#r")
      const e = errorOf(yield* Effect.exit(scm.assertAllowed(parsed, { evalPolicy: () => Effect.succeed("deny admins only"), data: {} })))
      assert.strictEqual(e.message, "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: admins only")
    }).pipe(Effect.provide(setup({ usePolicy: true }, fakeGit(base)))))
})

describe("spec checks (BuildSRPMFromSCMTask)", () => {
  const rows: ReadonlyArray<[string, string | undefined]> = [
    ["Name: foo\nVersion: 1\n", undefined],
    ["Packager: me\nName: foo\n", "Packager is not allowed to be set in spec file"],
    ["Vendor: ACME\nName: foo\n", "Vendor is not allowed to be set in spec file"],
    ["Distribution: X\n", "Distribution is not allowed to be set in spec file"],
    ["%define packager me\n", "packager is not allowed to be defined in spec file"],
    ["%define   vendor ACME\nName: foo\n", "vendor is not allowed to be defined in spec file"],
    // kojid's re.match only sees the start of the spec: later lines pass, as they do under kojid.
    ["Name: foo\nVendor: ACME\n", undefined],
    ["Name: foo\nDistribution: X\n", undefined],
    ["Name: foo\n%define   vendor ACME\n", undefined],
    ["%global packager me\n", undefined],
    ["# Packager: in a comment\n", undefined],
    ["%define packagerx 1\n", undefined],
    ["%description\nThe Vendor: field is mentioned\n", undefined]
  ]
  for (const [spec, want] of rows) {
    it(`spec_sanity_checks: ${JSON.stringify(spec)} → ${want ?? "ok"}`, () => {
      assert.strictEqual(specSanityProblem(spec), want)
    })
  }

  it("one spec taken; several → the one named after the checkout dir (top level or SPECS/), else an error", () => {
    assert.deepStrictEqual(chooseSpec(["x.spec"], "foo"), Either.right("x.spec"))
    assert.deepStrictEqual(chooseSpec(["a.spec", "foo.spec"], "foo"), Either.right("foo.spec"))
    assert.deepStrictEqual(chooseSpec(["SPECS/a.spec", "SPECS/foo.spec"], "foo"), Either.right("SPECS/foo.spec"))
    assert.strictEqual(Either.getLeft(chooseSpec([], "foo")).pipe((o) => (o._tag === "Some" ? o.value.reason : "")), "no-spec")
    assert.strictEqual(Either.getLeft(chooseSpec(["a.spec", "b.spec"], "foo")).pipe((o) => (o._tag === "Some" ? o.value.reason : "")), "multiple-specs")
  })
})
