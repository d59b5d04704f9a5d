/**
 * `build-local --target` through the real program (`node dist/main.js`) with real podman,
 * against the fake hub served over HTTP without login and the offline fixture's topdir served
 * as its topurl: the fixture SRPM (hub named by a koji client profile, the bootstrap image from
 * the tag's `mock.bootstrap_image`, macros and environment from the tag extra, --compare-task
 * against a task the hub knows) and the fixture's git repository (served by `git daemon`,
 * `allowed_scms` from -c kojid.conf).
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Exit, Scope } from "effect"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { readRpmHeader } from "../../src/buildroot/rpmHeader.js"
import { type Fixture, loadFixtureFiles } from "../buildroot/support.js"
import { distMain, ensureBuilt } from "../daemon/child.js"
import { type GitDaemon, startGitDaemon } from "../e2e/support.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import { addTag, buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { addTarget } from "../fakehub/targets.js"
import { traversableTempDir } from "../support/dirs.js"
import { readManifest, serveFixture, type ServedFixture } from "../fixture/manifest.js"
import { podmanInstalled, podmanSkipReason, type PodmanService, startPodmanService } from "../support/podman.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const scope = Effect.runSync(Scope.make())
let fixture: Fixture
let service: PodmanService
let served: ServedFixture
let git: GitDaemon
let hub: FakeHub
let base: string
let home: string

/** `node dist/main.js build-local ARGS`, asynchronously (the fake hub answers from this process). */
const cli = (args: ReadonlyArray<string>): Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }> =>
  new Promise((done) => {
    execFile(process.execPath, [distMain, "build-local", ...args], { env: { ...process.env, HOME: home }, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => done({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr }))
  })

/** A kojid.conf for the local build: podman, cache, and what the test varies. */
const kojidConf = (name: string, lines: { readonly kojid?: ReadonlyArray<string>; readonly adjutant?: ReadonlyArray<string> }): string => {
  const file = path.join(base, name)
  fs.writeFileSync(file, [
    "[kojid]", ...(lines.kojid ?? []),
    "[adjutant]", `podman_socket = unix://${service.socket}`, `buildroot_cache_dir = ${path.join(base, "cache")}`, ...(lines.adjutant ?? []), ""
  ].join("\n"))
  return file
}

const lineOf = (out: string, prefix: string): string | undefined => out.split("\n").find((l) => l.startsWith(prefix))

describe.skipIf(!podmanInstalled)("build-local --target from a hub, anonymously (real podman)", () => {
  beforeAll(async () => {
    ensureBuilt()
    fixture = loadFixtureFiles()
    service = await startPodmanService()
    base = traversableTempDir("adjutant-fromhub-")
    home = path.join(base, "home")
    served = await serveFixture(fixture.dir)
    hub = await Effect.runPromise(Scope.extend(startFakeHub({ topdir: path.join(base, "hubtop") }), scope))
    loadFixture(hub.topdir, fixture.manifest, {
      tagExtra: { "mock.bootstrap_image": fixture.image, "rpm.macro.dist": ".fx1", "rpm.env.FIXTURE_ENV": "from-the-tag" }
    })
    const dest = addTag(hub.topdir, "fixture-dest", null)
    addTarget(hub.topdir, "fixture-candidate", fixture.manifest.tag.id, dest)
    fs.mkdirSync(path.join(home, ".koji"), { recursive: true })
    fs.writeFileSync(path.join(home, ".koji", "config"), `[fixture]\nserver = ${hub.url}\ntopurl = ${served.url}\n`)
    const gitBase = path.join(base, "git")
    fs.mkdirSync(gitBase)
    fs.symlinkSync(path.join(fixture.dir, "git", "fixture-hello.git"), path.join(gitBase, "fixture-hello.git"))
    git = await startGitDaemon(gitBase, "fixture-hello.git")
  }, 600_000)
  afterAll(async () => {
    await git?.stop()
    await served?.close()
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await service?.stop()
    if (base !== undefined) fs.rmSync(base, { recursive: true, force: true })
  }, 120_000)

  it("podman: the fixture SRPM for target fixture-candidate: the hub's repo, config and tag image, its rpm ids, and --compare-task", async () => {
    // A buildArch task the hub knows, whose buildroot had an older fixture-setup, no fixture-gcc and a bash.
    const t = buildrootTables(hub.topdir)
    const rpmsByName = new Map(fixture.manifest.rpms.filter((r) => r.arch !== "src").map((r) => [r.name, r.id]))
    const older = ++t.seq.rpm
    t.rpms.set(older, { id: older, name: "fixture-setup", version: "0.9", release: "1", epoch: null, arch: "noarch", payloadhash: "00", size: 1, buildtime: 1, buildId: null, externalRepoId: null, draft: false })
    const bash = ++t.seq.rpm
    t.rpms.set(bash, { id: bash, name: "bash", version: "5.2", release: "1.fc40", epoch: null, arch: "x86_64", payloadhash: "00", size: 1, buildtime: 1, buildId: null, externalRepoId: null, draft: false })
    const task = hub.createTask("buildArch", ["cli-build/x/fixture-hello-1.0-1.src.rpm", "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" })
    const brootId = ++t.seq.buildroot
    t.buildroots.set(brootId, {
      id: brootId, hostId: 1, repoId: 1, arch: "x86_64", taskId: task, state: 3, createEvent: 1, createTs: 1, retireEvent: null, retireTs: null,
      listing: new Map([[rpmsByName.get("fixture-base")!, false], [older, false], [bash, false]])
    })

    const result = path.join(base, "srpm-result")
    // The default image does not exist and is never pulled: only the tag's mock.bootstrap_image can serve.
    const conf = kojidConf("srpm.conf", {
      kojid: ["mock_bootstrap_image = True"],
      adjutant: ["bootstrap_image = localhost/koji-adjutant-no-such-image:latest", "pull_policy = never"]
    })
    const r = await cli(["-c", conf, "-p", "fixture", "--target", "fixture-candidate", "--compare-task", String(task), "--result", result,
      path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm")])
    assert.strictEqual(r.code, 0, `build-local failed:\n${r.stderr}\n${r.stdout.slice(-4000)}`)
    // stderr carries build-local's log (progress, and podman's hiccups as warnings), never an error.
    assert.include(r.stderr, "[INFO] koji.build-local: building from ")
    assert.deepStrictEqual(r.stderr.split("\n").filter((l) => / \[(ERROR|CRITICAL)\] /.test(l)), [])
    const out = r.stdout
    if (process.env["SHOW_OUTPUT"] === "1") console.log(out)

    assert.strictEqual(lineOf(out, "built "), `built fixture-hello-1.0-1 for noarch from target fixture-candidate (build tag fixture-build), repo 1 (event ${fixture.manifest.repo.create_event}) of ${hub.url}`)
    for (const f of ["fixture-hello-1.0-1.noarch.rpm", "fixture-hello-1.0-1.src.rpm"]) {
      assert.include(out, `\n  ${f}\n`)
      assert.isTrue(fs.existsSync(path.join(result, f)), f)
    }
    assert.strictEqual(lineOf(out, "results and logs: "), `results and logs: ${result}`)
    // The SRPM step (RebuildSRPM) and the build (buildArch noarch), each with kojid's logs in its directory.
    assert.isTrue(fs.existsSync(path.join(result, "srpm", "fixture-hello-1.0-1.src.rpm")))
    for (const dir of ["srpm", "build"]) {
      for (const log of ["mock_config.log", "root.log", "build.log", "state.log", "installed_pkgs.log"]) {
        assert.isTrue(fs.existsSync(path.join(result, dir, log)), `${dir}/${log}`)
      }
    }
    assert.include(fs.readFileSync(path.join(result, "build", "build.log"), "utf8"), "Wrote: /result/fixture-hello-1.0-1.noarch.rpm")
    const srpmConfig = fs.readFileSync(path.join(result, "srpm", "mock_config.log"), "utf8")
    assert.include(srpmConfig, "config_opts['chroot_setup_cmd'] = 'install @srpm-build'")
    const buildConfig = fs.readFileSync(path.join(result, "build", "mock_config.log"), "utf8")
    assert.match(buildConfig, /# Koji buildroot id: 2\n# Koji buildroot name: fixture-build-2-1\n# Koji repo id: 1\n# Koji tag: fixture-build\n/)
    assert.include(buildConfig, "config_opts['chroot_setup_cmd'] = 'install @build'")
    assert.include(buildConfig, `baseurl=${served.url}/repos/fixture-build/1/x86_64`)
    assert.include(buildConfig, `# bootstrap image: ${fixture.image} (${fixture.imageId})`)
    assert.include(buildConfig, "config_opts['macros']['%dist'] = '.fx1'")
    assert.include(buildConfig, "config_opts['environment']['FIXTURE_ENV'] = 'from-the-tag'")
    // The SRPM went through the srpm-build buildroot: it carries the build system's tags.
    const srpm = await Effect.runPromise(readRpmHeader(path.join(result, "fixture-hello-1.0-1.src.rpm")))
    assert.strictEqual(srpm.vendor, "Koji")

    // The buildroots' package lists as the hub would record them: the fixture's rpm ids from rpmlist.jsonl.
    const groups = fixture.manifest.groups
    assert.match(out, new RegExp(`\\nbuildroot 1 \\(srpm-build, x86_64\\): \\d+ packages, as the hub would record them:\\n`))
    assert.match(out, new RegExp(`\\nbuildroot 2 \\(build, x86_64\\): \\d+ packages, as the hub would record them:\\n`))
    for (const name of groups["build"] ?? []) {
      const rpm = fixture.manifest.rpms.find((x) => x.name === name && x.arch !== "src")!
      assert.include(out, `\n  ${rpm.name}-${rpm.version}-${rpm.release}.${rpm.arch}  (rpm ${rpm.id})\n`)
    }
    // --compare-task: the build buildroot against the task's.
    const gcc = fixture.manifest.rpms.find((x) => x.name === "fixture-gcc" && x.arch !== "src")!
    assert.include(out, `\ncompared with task ${task} (buildArch, buildroot ${brootId}): `)
    assert.include(out, "\n  differs:    fixture-setup.noarch 1.0-1 here, 0.9-1 there\n")
    assert.include(out, `\n  only here:  fixture-gcc-${gcc.version}-${gcc.release}.${gcc.arch}\n`)
    assert.include(out, "\n  only there: bash-5.2-1.fc40.x86_64\n")

    // Everything the program asked the hub was anonymous, and it wrote nothing there.
    assert.isAbove(hub.state.calls.length, 0)
    for (const c of hub.state.calls) assert.isUndefined(c.sessionId, `${c.method} carried a session`)
    assert.deepStrictEqual(hub.state.sessions, [])
    assert.deepStrictEqual(hub.state.calls.filter((c) => c.method.startsWith("host.")), [])
  }, 900_000)

  it("podman: the fixture's git repository by tag, allowed by allowed_scms from -c; another repository is refused", async () => {
    const scm = readManifest(path.join(fixture.dir, "fixture.json")).scm["fixture-hello"]!
    const url = `git://127.0.0.1:${git.port}/fixture-hello.git#${scm.tag}`
    const result = path.join(base, "scm-result")
    const conf = kojidConf("scm.conf", {
      kojid: ["allowed_scms = 127.0.0.1*:/fixture-*.git:no:"],
      // The checkout container reaches the git daemon on the host's loopback.
      adjutant: [`bootstrap_image = ${fixture.image}`, "scm_network = host"]
    })
    const r = await cli(["-c", conf, "--server", hub.url, "--topurl", served.url, "--target", "fixture-candidate", "--result", result, url])
    assert.strictEqual(r.code, 0, `build-local failed:\n${r.stderr}\n${r.stdout.slice(-4000)}`)
    assert.strictEqual(lineOf(r.stdout, "source: "), `source: git://127.0.0.1:${git.port}/fixture-hello.git#${scm.commit}`)
    assert.match(r.stdout, /(^|\n)built fixture-hello-1\.0-1 for noarch from target fixture-candidate/)
    assert.isTrue(fs.existsSync(path.join(result, "fixture-hello-1.0-1.noarch.rpm")))
    assert.isTrue(fs.existsSync(path.join(result, "srpm", "fixture-hello-1.0-1.src.rpm")))
    assert.include(fs.readFileSync(path.join(result, "srpm", "checkout.log"), "utf8"), `git clone -n git://127.0.0.1:${git.port}/fixture-hello.git`)
    // kojid turns the network on in the SRPM buildroot of an SCM build.
    assert.include(fs.readFileSync(path.join(result, "srpm", "mock_config.log"), "utf8"), "config_opts['rpmbuild_networking'] = True")

    const refused = await cli(["-c", conf, "--server", hub.url, "--topurl", served.url, "--target", "fixture-candidate",
      "--result", path.join(base, "refused"), `git://127.0.0.1:${git.port}/other.git#main`])
    assert.strictEqual(refused.code, 1)
    assert.strictEqual(refused.stderr.split("\n").filter((l) => !/ \[INFO\] /.test(l))[0], `koji-adjutant build-local: 127.0.0.1:${git.port}:/other.git is not in the list of allowed SCMs`)
    assert.notMatch(refused.stderr, /\n\s+at /)
  }, 900_000)
})
