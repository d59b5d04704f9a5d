/**
 * distRepo / createdistrepo end to end (real podman): the signed copy chosen by key order,
 * unsigned rpms allowed or refused (missing_signatures.log), kojipkgs/pkglist/repo_manifest
 * uploaded, distRepoMove putting the repo and its rpms in place, repoDone READY, and dnf
 * reading the dist repo back; `write_signed_rpms` asking the hub (host.writeSignedRPM, one
 * multiCall) for the signed copy of every rpm with a requested key, as kojid does.
 */
import { linkSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { beforeAll } from "vitest"
import { makeDistRepoHandlers, pickKey } from "../../src/tasks/distRepo.js"
import { buildrootTables } from "../fakehub/buildroots.js"
import { distRepoInit, repoWorld } from "../fakehub/newrepo.js"
import { ripRpmSighdr, signedPath, storeRpmSig } from "../fakehub/signed.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import { ensureFixture, type Fixture } from "../fixture/manifest.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { daemonOptions, dnfReadRepo, DONE, fixtureTopdir, repoDaemonLayers, repoHub, repoKojid, startDaemon, tempDir, waitFor } from "./newRepoSupport.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("distrepo")
let podman: { readonly socket: string }
let fixture: Fixture
const KEY = "abcd1234"

const startDistRepo = (hub: FakeHub, opts: Record<string, boolean | string>, keys: ReadonlyArray<string> = ["feedface", KEY]) => {
  const w = repoWorld(hub.topdir)
  const taskOpts = {
    arch: ["x86_64"], comps: null, delta: [], event: null, inherit: false, latest: true, multilib: false,
    split_debuginfo: false, skip_missing_signatures: false, allow_missing_signatures: false, ...opts
  }
  const [repoId, event] = distRepoInit(w, Date.now() / 1000, fixture.manifest.tag.id, [...keys], taskOpts)
  const id = hub.createTask("distRepo", [fixture.manifest.tag.name, repoId, [...keys], { ...taskOpts, event }], { channel: "createrepo", priority: 15 })
  return { id, repoId }
}

describe("distRepo key choice", () => {
  it("picks the earliest requested key that the rpm has", () => {
    assert.strictEqual(pickKey(["a", "b"], ["b", "a"]), "a")
    assert.strictEqual(pickKey(["a", "b"], ["c", "b"]), "b")
    assert.isUndefined(pickKey(["a"], ["", "c"]))
  })
})

describe.skipIf(!podmanInstalled)("distRepo (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = ensureFixture()
  }, 600_000)

  it.scopedLive("podman: a dist repo with the signed copy by key order; unsigned rpms refused unless allowed", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      const extra = fixture.manifest.rpms.find((r) => r.name === "fixture-extra" && r.arch === "noarch")!
      const build = fixture.manifest.builds.find((b) => b.id === extra.build_id)!
      // A signed copy of fixture-extra (the same bytes will do for the repo).
      const signed = path.join(topdir, "packages", build.name, build.version, build.release, "data/signed", KEY, "noarch", path.basename(extra.path))
      mkdirSync(path.dirname(signed), { recursive: true })
      linkSync(path.join(topdir, extra.path), signed)
      repoWorld(topdir).sigkeys.set(extra.id, [KEY])
      const workdir = yield* tempDir("adjutant-work-")
      const kojid = repoKojid(topdir)
      const layers = repoDaemonLayers(hub, podman.socket, hostName, (containers) =>
        makeDistRepoHandlers({ kojid, image: fixture.manifest.bootstrapImage, containers }))
      yield* Effect.gen(function*() {
        yield* startDaemon(daemonOptions(workdir))

        const refused = startDistRepo(hub, {})
        yield* waitFor(() => DONE.has(hub.state.task(refused.id)?.state ?? 0), `distRepo ${refused.id}`)
        assert.strictEqual(hub.state.task(refused.id)!.state, 5)
        const child = hub.state.tasks.find((t) => t.parent === refused.id)!
        assert.deepStrictEqual(hub.state.taskResult(child.id), { faultCode: 1000, faultString: "Unsigned packages found. See missing_signatures.log" })
        const missing = hub.state.upload(`tasks/${child.id}/${child.id}/missing_signatures.log`)?.toString() ?? ""
        assert.include(missing, "fixture-base-1.0-1.x86_64")
        assert.notInclude(missing, "fixture-extra")

        const { id, repoId } = startDistRepo(hub, { allow_missing_signatures: true })
        yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `distRepo ${id}`)
        assert.strictEqual(hub.state.task(id)!.state, 2, JSON.stringify(hub.state.taskResult(id)))
        assert.strictEqual(hub.state.taskResult(id), `Dist repository #${repoId} successfully generated`)
        const sub = hub.state.tasks.find((t) => t.parent === id)!
        assert.strictEqual(sub.method, "createdistrepo")
        assert.strictEqual(sub.label, "x86_64")
        assert.isNull(hub.state.taskResult(sub.id))
        assert.strictEqual(buildrootTables(topdir).repos.get(repoId)!.state, 1)
        const archdir = path.join(topdir, "repos-dist", fixture.manifest.tag.name, String(repoId), "x86_64")
        const kojipkgs = Schema.decodeUnknownSync(Schema.Record({ key: Schema.String, value: Schema.Struct({ sigkey: Schema.NullOr(Schema.String) }) }))(
          JSON.parse(readFileSync(path.join(archdir, "kojipkgs"), "utf8")))
        assert.strictEqual(kojipkgs[path.basename(extra.path)]!.sigkey, KEY)
        assert.isNull(kojipkgs["fixture-base-1.0-1.x86_64.rpm"]!.sigkey)
        assert.include(readFileSync(path.join(archdir, "pkglist"), "utf8"), `Packages/f/${path.basename(extra.path)}\n`)
        assert.include(readdirSync(path.join(archdir, "repodata")), "repomd.xml")
        assert.strictEqual(readlinkSync(path.join(topdir, "repos-dist", fixture.manifest.tag.name, "latest")), String(repoId))
        const expected = fixture.manifest.rpms.filter((r) => r.arch !== "src").map((r) => `${r.name}-${r.version}-${r.release}.${r.arch}`).sort()
        assert.deepStrictEqual(dnfReadRepo(fixture.manifest.bootstrapImage, archdir).nvras, expected)
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }).pipe(Effect.scoped, Effect.provide(layers))
    }), 600_000)
  it.scopedLive("podman: use_createrepo_c = False runs /usr/bin/createrepo; zck without createrepo_c and --zck-dict-dir without --zck are refused", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      const workdir = yield* tempDir("adjutant-work-")
      const kojid = repoKojid(topdir, { use_createrepo_c: false })
      const layers = repoDaemonLayers(hub, podman.socket, hostName, (containers) =>
        makeDistRepoHandlers({ kojid, image: fixture.manifest.bootstrapImage, containers }))
      const faultOfChild = (id: number) => hub.state.taskResult(hub.state.tasks.find((t) => t.parent === id)!.id)
      yield* Effect.gen(function*() {
        yield* startDaemon(daemonOptions(workdir))
        const zck = startDistRepo(hub, { allow_missing_signatures: true, zck: true })
        const dict = startDistRepo(hub, { allow_missing_signatures: true, zck_dict_dir: "/usr/share/dicts" })
        const plain = startDistRepo(hub, { allow_missing_signatures: true })
        for (const t of [zck, dict, plain]) yield* waitFor(() => DONE.has(hub.state.task(t.id)?.state ?? 0), `distRepo ${t.id}`)
        assert.deepStrictEqual(faultOfChild(zck.id), { faultCode: 1000, faultString: "createrepo doesn't support zchunks" })
        assert.deepStrictEqual(faultOfChild(dict.id), { faultCode: 1000, faultString: "--zck-dict-dir makes no sense without --zck" })
        // The bootstrap image has only createrepo_c: the old tool's command line fails, naming it.
        const f = Schema.decodeUnknownSync(Schema.Struct({ faultCode: Schema.Number, faultString: Schema.String }))(faultOfChild(plain.id))
        assert.strictEqual(f.faultCode, 1000)
        assert.match(f.faultString, /\/usr\/bin\/createrepo -vd -i /)
        assert.notInclude(f.faultString, "--error-exit-val")
        for (const t of [zck, dict, plain]) assert.strictEqual(hub.state.task(t.id)!.state, 5)
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }).pipe(Effect.scoped, Effect.provide(layers))
    }), 600_000)

  it.scopedLive("podman: write_signed_rpms asks host.writeSignedRPM for every rpm with a requested key; a failed write is logged and the repo fails", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      const w = repoWorld(topdir)
      const binaries = fixture.manifest.rpms.filter((r) => r.arch !== "src")
      const gcc = binaries.find((r) => r.name === "fixture-gcc")!
      const extra = binaries.find((r) => r.name === "fixture-extra")!
      // Every binary rpm has a stored signature (its own header will do); fixture-extra's signed
      // copy exists already; fixture-gcc's signature row has no cached header at first.
      for (const r of binaries) if (r.id !== gcc.id) storeRpmSig(w, r.id, KEY, ripRpmSighdr(path.join(topdir, r.path)))
      w.sigkeys.set(gcc.id, [KEY])
      const extraSigned = signedPath(w, w.tables.rpms.get(extra.id)!, KEY)
      mkdirSync(path.dirname(extraSigned), { recursive: true })
      linkSync(path.join(topdir, extra.path), extraSigned)
      const extraInode = statSync(extraSigned).ino
      const workdir = yield* tempDir("adjutant-work-")
      const kojid = repoKojid(topdir)
      const layers = repoDaemonLayers(hub, podman.socket, hostName, (containers) =>
        makeDistRepoHandlers({ kojid, image: fixture.manifest.bootstrapImage, containers }))
      const asked = (from: number) =>
        hub.state.calls.filter((c) => c.seq > from && (c.method === "multiCall" || c.method === "system.multicall"))
          .flatMap((c) => (Array.isArray(c.params[0]) ? c.params[0] : []))
          .flatMap((call) => (call !== null && typeof call === "object" && "methodName" in call && call["methodName"] === "host.writeSignedRPM" ? [call["params"]] : []))
          .sort((a, b) => (Array.isArray(a) && Array.isArray(b) ? Number(a[0]) - Number(b[0]) : 0))
      const expected = binaries.map((r) => [r.id, KEY]).sort((a, b) => Number(a[0]) - Number(b[0]))
      yield* Effect.gen(function*() {
        yield* startDaemon(daemonOptions(workdir))

        const before = hub.state.calls.length
        const failed = startDistRepo(hub, { write_signed_rpms: true }, [KEY])
        yield* waitFor(() => DONE.has(hub.state.task(failed.id)?.state ?? 0), `distRepo ${failed.id}`)
        assert.strictEqual(hub.state.task(failed.id)!.state, 5)
        assert.deepStrictEqual(asked(before), expected)
        const child = hub.state.tasks.find((t) => t.parent === failed.id)!
        assert.deepStrictEqual(hub.state.taskResult(child.id), { faultCode: 1000, faultString: "Packages missing from the filesystem. See missing_files.log." })
        const log = hub.state.upload(`tasks/${child.id}/${child.id}/written_signed_rpms.log`)?.toString() ?? ""
        for (const r of binaries) {
          if (r.id === gcc.id) assert.include(log, `FAILED: Signed RPM ${r.id} is not written with ${KEY} key, error: <class 'FileNotFoundError'>: [Errno 2] No such file or directory: '`)
          else assert.include(log, `Signed RPM ${r.id} is written with ${KEY} key.\n`)
        }
        assert.include(hub.state.upload(`tasks/${child.id}/${child.id}/missing_files.log`)?.toString() ?? "", `data/signed/${KEY}/x86_64/fixture-gcc-1.0-1.x86_64.rpm`)
        // The hub left the existing signed copy alone and spliced the others from their headers.
        assert.strictEqual(statSync(extraSigned).ino, extraInode)
        for (const r of binaries) {
          if (r.id === gcc.id || r.id === extra.id) continue
          assert.deepStrictEqual(readFileSync(signedPath(w, w.tables.rpms.get(r.id)!, KEY)), readFileSync(path.join(topdir, r.path)))
        }

        storeRpmSig(w, gcc.id, KEY, ripRpmSighdr(path.join(topdir, gcc.path)))
        const again = hub.state.calls.length
        const { id, repoId } = startDistRepo(hub, { write_signed_rpms: true }, [KEY])
        yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `distRepo ${id}`)
        assert.strictEqual(hub.state.task(id)!.state, 2, JSON.stringify(hub.state.tasks.filter((t) => t.parent === id).map((t) => hub.state.taskResult(t.id))))
        assert.deepStrictEqual(asked(again), expected)
        const sub = hub.state.tasks.find((t) => t.parent === id)!
        assert.notInclude(hub.state.upload(`tasks/${sub.id}/${sub.id}/written_signed_rpms.log`)?.toString() ?? "FAILED", "FAILED")
        const archdir = path.join(topdir, "repos-dist", fixture.manifest.tag.name, String(repoId), "x86_64")
        const kojipkgs = Schema.decodeUnknownSync(Schema.Record({ key: Schema.String, value: Schema.Struct({ sigkey: Schema.NullOr(Schema.String) }) }))(
          JSON.parse(readFileSync(path.join(archdir, "kojipkgs"), "utf8")))
        assert.deepStrictEqual(Object.values(kojipkgs).map((v) => v.sigkey), binaries.map(() => KEY))
        assert.deepStrictEqual(dnfReadRepo(fixture.manifest.bootstrapImage, archdir).nvras,
          binaries.map((r) => `${r.name}-${r.version}-${r.release}.${r.arch}`).sort())
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }).pipe(Effect.scoped, Effect.provide(layers))
    }), 600_000)
})
