/**
 * `buildSRPMFromSCM` through the daemon against the fake hub, with the real SCM URL rules and
 * `allowed_scms` check (the Scm service over in-memory containers) and stub checkout, spec and
 * buildroot: kojid's calls (scm-build session 115), the result with the commit-hash source, and
 * the faults of a not-allowed URL, a password in the URL, a missing repo id and a policy denial.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import type { Buildroot } from "../../src/buildroot/Buildroots.js"
import { takeResults } from "../../src/buildroot/results.js"
import { Containers } from "../../src/containers/Containers.js"
import { decodeResponse, type XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { makeScm, type ScmCheckout, type ScmOptions } from "../../src/scm/Scm.js"
import { buildSrpmFromScmHandler } from "../../src/tasks/buildSRPMFromSCM.js"
import { type FakeHub, TaskState } from "../fakehub/FakeHub.js"
import { buildrootTables } from "../fakehub/buildroots.js"
import { setPolicy } from "../fakehub/policies.js"
import { daemonLayer, fakeHub, HOST, startDaemon, tempWorkdir, testOptions, until } from "../daemon/harness.js"
import { makeRpm, setupWorld } from "./buildSupport.js"

const COMMIT = "2e934f2fc7b73df3a2d00a9d3169290bd8673ab9"

const scmOptions = (patch: Partial<ScmOptions>): ScmOptions => ({
  allowedScms: "127.0.0.1:/harness-*.git:no:", useConfig: true, usePolicy: false, allowPassword: false, credentialsDir: null,
  supportRpmSourceLayout: false, image: "bootstrap", user: "1000:1000", idmap: null, network: "none", timeoutSeconds: 60, ...patch
})

const run = (url: string, opts: Record<string, XmlRpcValue> | null, scmPatch: Partial<ScmOptions> = {}, prepare?: (hub: FakeHub) => void) =>
  Effect.gen(function*() {
    const hub = yield* fakeHub()
    const workdir = yield* tempWorkdir
    const world = setupWorld(hub.topdir, { packages: ["harness-scm"] })
    prepare?.(hub)
    const realScm = yield* makeScm(scmOptions(scmPatch)).pipe(Effect.provide(Containers.layerMemory({ hostName: HOST })))
    const opened: Array<number> = []
    const resultDirs = new Map<number, string>()
    const deps = {
      scm: {
        parse: realScm.parse,
        assertAllowed: realScm.assertAllowed,
        checkout: (scm: Parameters<typeof realScm.checkout>[0], rules: Parameters<typeof realScm.checkout>[1], o: { readonly taskId: number; readonly workdir: string }) =>
          Effect.sync((): ScmCheckout => {
            const scmdir = path.join(o.workdir, "scmroot")
            fs.mkdirSync(path.join(scmdir, "harness-scm"), { recursive: true })
            fs.writeFileSync(path.join(o.workdir, "checkout.log"), "$ git clone -n …\n")
            return {
              scm, rules, scmdir, sourcedir: path.join(scmdir, "harness-scm"), sourcedirRelative: "harness-scm", commit: COMMIT,
              source: { url: scm.url, source: `git://127.0.0.1/harness-scm.git#${COMMIT}` }, logFile: path.join(o.workdir, "checkout.log")
            }
          }),
        findSpec: (co: ScmCheckout) =>
          Effect.succeed({
            specFile: path.join(co.sourcedir, "harness-scm.spec"), specFileRelative: "harness-scm/harness-scm.spec",
            sourcesDir: co.sourcedir, sourcesDirRelative: "harness-scm"
          })
      },
      openBuildroot: (req: { readonly taskId: number; readonly workdir: string }) =>
        Effect.sync((): Buildroot => {
          const t = buildrootTables(hub.topdir)
          const id = ++t.seq.buildroot
          t.buildroots.set(id, {
            id, hostId: hub.state.host(HOST)!.id, repoId: world.repoId, arch: "x86_64", taskId: req.taskId, state: 0,
            createEvent: 0, createTs: 0, retireEvent: null, retireTs: null, listing: new Map()
          })
          opened.push(id)
          const resultDir = path.join(req.workdir, "result")
          fs.mkdirSync(resultDir, { recursive: true })
          resultDirs.set(id, resultDir)
          const scratchDir = path.join(req.workdir, "scratch")
          fs.mkdirSync(scratchDir, { recursive: true })
          return {
            id, name: `build-tag-${id}-${world.repoId}`, repo: { id: world.repoId, state: 1, create_event: 0 },
            config: { id: world.buildTag, name: "build-tag" }, brArch: "x86_64", warm: false, scratchDir,
            mockResultDir: `/var/lib/mock/build-tag-${id}-${world.repoId}/result`,
            build: () => Effect.void, rebuildSrpm: () => Effect.void, run: () => Effect.die("not used by buildSRPMFromSCM"),
            collect: (o) => takeResults(resultDir, o.outDir, { maxBytes: 1 << 30, limitKey: "result_max_size" }),
            finishLogs: Effect.succeed(["build.log", "root.log"]),
            truncatedLogs: Effect.succeed([]),
            expire: Effect.sync(() => void (t.buildroots.get(id)!.state = 3)),
            readyMs: () => undefined
          }
        }),
      buildSrpm: (broot: Buildroot) =>
        Effect.sync(() => fs.writeFileSync(path.join(resultDirs.get(broot.id)!, "harness-scm-1.0-1.src.rpm"),
          makeRpm({ name: "harness-scm", version: "1.0", release: "1", arch: "noarch", source: true })))
    }
    const id = hub.createTask("buildSRPMFromSCM", [url, world.buildTag, opts], { label: "srpm" })
    yield* startDaemon(testOptions(workdir)).pipe(Effect.provide(daemonLayer(hub, [buildSrpmFromScmHandler(deps)])))
    yield* until(() => [TaskState.CLOSED, TaskState.FAILED].includes(hub.state.task(id)?.state as 2 | 5), "task done")
    const session = hub.state.calls.find((c) => (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === id)?.sessionId
    const calls = hub.state.calls.filter((c) => c.sessionId === session)
    const r = decodeResponse(hub.state.task(id)?.result ?? "")
    const f = Either.isLeft(r) ? (r.left as { faultCode: number; faultString: string }) : null
    return { hub, id, world, calls, r, opened, fault: f === null ? null : { faultCode: f.faultCode, faultString: f.faultString } }
  })

const URL = `git://127.0.0.1/harness-scm.git#${COMMIT}`

describe("buildSRPMFromSCM (fake hub, stub checkout and buildroot)", () => {
  it.scoped("kojid's calls, the SRPM uploaded, result {srpm, logs, brootid, source} with the commit hash", () =>
    Effect.gen(function*() {
      const { hub, id, world, calls, r, opened } = yield* run(URL, { repo_id: 1, scratch: null })
      assert.strictEqual(hub.state.task(id)?.state, TaskState.CLOSED, JSON.stringify(r))
      const rel = `tasks/${id % 10000}/${id}`
      assert.deepStrictEqual(r, Either.right({
        srpm: `${rel}/harness-scm-1.0-1.src.rpm`,
        logs: [`${rel}/build.log`, `${rel}/root.log`],
        brootid: opened[0]!,
        source: { url: URL, source: `git://127.0.0.1/harness-scm.git#${COMMIT}` }
      }))
      // scm-build 1105–1115 up to the buildroot (whose own calls the stub does not make)
      assert.deepStrictEqual(calls.slice(0, 6).map((c) => c.method),
        ["getTaskInfo", "getChannel", "repoInfo", "getTag", "host.getHost", "getBuildConfig"])
      assert.deepStrictEqual(calls[0]!.params, [id, { request: true, strict: true, __starstar: true }])
      assert.deepStrictEqual(calls[3]!.params, [world.buildTag, { strict: true, event: buildrootTables(hub.topdir).repos.get(1)!.createEvent, __starstar: true }])
      assert.isTrue(hub.state.uploads.some((u) => u.path === `${rel}/harness-scm-1.0-1.src.rpm`))
      assert.isTrue(hub.state.uploads.some((u) => u.path === `${rel}/checkout.log`))
      assert.strictEqual(buildrootTables(hub.topdir).buildroots.get(opened[0]!)!.state, 3)
    }))

  it.scoped("bad input: a URL not in allowed_scms → BuildError naming host and repository", () =>
    Effect.gen(function*() {
      const { fault, opened } = yield* run(`git://evil.example.com/harness-scm.git#${COMMIT}`, { repo_id: 1 })
      assert.deepStrictEqual(fault, { faultCode: 1005, faultString: "evil.example.com:/harness-scm.git is not in the list of allowed SCMs" })
      assert.lengthOf(opened, 0)
    }))

  it.scoped("bad input: user:password@ in the URL → GenericError, the password not echoed", () =>
    Effect.gen(function*() {
      const { fault, calls } = yield* run(`git://me:secret@127.0.0.1/harness-scm.git#${COMMIT}`, { repo_id: 1 })
      assert.strictEqual(fault?.faultCode, 1000)
      assert.notInclude(fault?.faultString ?? "", "secret")
      assert.strictEqual(calls[0]?.method, "host.failTask", "no hub call before the URL is refused")
    }))

  it.scoped("bad input: no repo_id → BuildError 'A repo id must be provided'", () =>
    Effect.gen(function*() {
      const { fault } = yield* run(URL, {})
      assert.deepStrictEqual(fault, { faultCode: 1005, faultString: "A repo id must be provided" })
    }))

  it.scoped("build_from_scm policy (allowed_scms_use_policy): a deny with a reason → BuildError with it", () =>
    Effect.gen(function*() {
      const { fault, calls } = yield* run(URL, { repo_id: 1 }, { useConfig: false, usePolicy: true },
        (h) => setPolicy(h.topdir, "build_from_scm", "deny only release branches"))
      assert.deepStrictEqual(fault, { faultCode: 1005, faultString: "SCM: 127.0.0.1:/harness-scm.git is not allowed, reason: only release branches" })
      const ev = calls.find((c) => c.method === "evalPolicy")!
      assert.strictEqual(ev.params[0], "build_from_scm")
      assert.deepInclude(ev.params[1] as Record<string, XmlRpcValue>, { scm_host: "127.0.0.1", scm_repository: "/harness-scm.git", user_id: 1, channel: "default" })
    }))
})
