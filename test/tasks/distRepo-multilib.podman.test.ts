/**
 * Multilib dist repos end to end (real podman): tiny i686 and x86_64 rpms built with rpmbuild
 * in the bootstrap image, a tag with both arches, distRepo with a multilib.conf. The i386 repo
 * is made and moved first; the x86_64 repo then takes the 32-bit copies python-multilib's devel
 * method selects (a library, its -devel) plus what dnf says they need (a helper), not the plain
 * tool, and the noarch package only once. A 32-bit copy dnf cannot resolve fails as kojid's
 * uncaught DepsolveError (fault 1); a selected package without a 32-bit copy writes
 * missing_multilib.log; a missing or broken config fails naming the file.
 */
import { execFileSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { afterAll, beforeAll } from "vitest"
import { makeDistRepoHandlers } from "../../src/tasks/distRepo.js"
import { dnfConfigText } from "../../src/tasks/multilib.js"
import { buildrootTables } from "../fakehub/buildroots.js"
import { addBuild, distRepoInit, repoWorld, tagBuild } from "../fakehub/newrepo.js"
import type { FakeHub } from "../fakehub/FakeHub.js"
import { ensureFixture, type Fixture } from "../fixture/manifest.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import { daemonOptions, dnfReadRepo, DONE, fixtureTopdir, repoDaemonLayers, repoHub, repoKojid, startDaemon, tempDir, waitFor } from "./newRepoSupport.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("distrepo-ml")
let podman: { readonly socket: string }
let fixture: Fixture
let rpmdir: string

const TAG = { id: 50, name: "ml-dist" }

const spec = (name: string, body: { requires?: ReadonlyArray<string>; files: ReadonlyArray<string>; noarch?: boolean; sub?: string }) => `
%global debug_package %{nil}
%global _build_id_links none
Name: ${name}
Version: 1.0
Release: 1
Summary: ${name}
License: MIT
AutoReqProv: no
${body.noarch === true ? "BuildArch: noarch" : ""}
${(body.requires ?? []).map((r) => `Requires: ${r}`).join("\n")}
%description
multilib test package
${body.sub ?? ""}
%install
${body.files.map((f) => `mkdir -p %{buildroot}$(dirname ${f}) && echo ${name} > %{buildroot}${f}`).join("\n")}
%files
${body.files.join("\n")}
`

/** The test's builds: name → [rpm name, arch][] (files under `rpmdir/<arch>/`). */
const BUILDS: ReadonlyArray<{ readonly name: string; readonly rpms: ReadonlyArray<readonly [string, string]> }> = [
  { name: "libfoo", rpms: [["libfoo", "i686"], ["libfoo-devel", "i686"], ["libfoo", "x86_64"], ["libfoo-devel", "x86_64"]] },
  { name: "foo-helper", rpms: [["foo-helper", "i686"], ["foo-helper", "x86_64"]] },
  { name: "footool", rpms: [["footool", "i686"], ["footool", "x86_64"]] },
  { name: "foo-data", rpms: [["foo-data", "noarch"]] },
  // Tagged later, one at a time: a library whose requirement nothing provides, one with no 32-bit build.
  { name: "libbroken", rpms: [["libbroken", "i686"], ["libbroken", "x86_64"]] },
  { name: "libonly64", rpms: [["libonly64", "x86_64"]] }
]
const LATER = new Set(["libbroken", "libonly64"])

/** Builds the rpms in the bootstrap image (no compiler: the specs only write files). */
const buildRpms = (image: string, dir: string): void => {
  writeFileSync(path.join(dir, "libfoo.spec"), spec("libfoo", {
    requires: ["foo-helper", "foo-data"], files: ["%{_libdir}/libfoo.so.1"],
    sub: "%package devel\nSummary: devel\nRequires: libfoo = %{version}-%{release}\n%description devel\nheaders\n%files devel\n%{_includedir}/foo.h\n"
  }).replace("%install\n", "%install\nmkdir -p %{buildroot}%{_includedir} && echo h > %{buildroot}%{_includedir}/foo.h\n"))
  writeFileSync(path.join(dir, "foo-helper.spec"), spec("foo-helper", { files: ["/usr/libexec/foo-helper"] }))
  writeFileSync(path.join(dir, "footool.spec"), spec("footool", { files: ["/usr/bin/footool"] }))
  writeFileSync(path.join(dir, "foo-data.spec"), spec("foo-data", { files: ["/usr/share/foo/data"], noarch: true }))
  writeFileSync(path.join(dir, "libbroken.spec"), spec("libbroken", { requires: ["no-such-capability"], files: ["%{_libdir}/libbroken.so.1"] }))
  writeFileSync(path.join(dir, "libonly64.spec"), spec("libonly64", { files: ["%{_libdir}/libonly64.so.1"] }))
  const script = [
    "set -e; cd /w",
    "for s in libfoo foo-helper footool libbroken; do for t in i686 x86_64; do rpmbuild -bb --target $t --define '_topdir /w/rb' --define '_rpmdir /w/rpms' $s.spec > /w/$s-$t.log 2>&1; done; done",
    "rpmbuild -bb --define '_topdir /w/rb' --define '_rpmdir /w/rpms' foo-data.spec > /w/foo-data.log 2>&1",
    "rpmbuild -bb --target x86_64 --define '_topdir /w/rb' --define '_rpmdir /w/rpms' libonly64.spec > /w/libonly64.log 2>&1"
  ].join("\n")
  execFileSync("podman", ["run", "--rm", "--network=none", "-v", `${dir}:/w`, image, "sh", "-c", script], { stdio: ["ignore", "pipe", "pipe"] })
}

const MULTILIB_CONF = `[runtime]
white = valgrind
black = httpd
    php
[devel]
white =
black = httpd-devel
`

const buildId = (name: string): number => 900 + BUILDS.findIndex((b) => b.name === name)

/** The tag, its builds and rpms (copied into the topdir's packages/). */
const loadTag = (topdir: string): void => {
  const w = repoWorld(topdir)
  w.tables.tags.set(TAG.id, { id: TAG.id, name: TAG.name, arches: "i686 x86_64", extra: {}, locked: false })
  let rpmId = 9000
  BUILDS.forEach((b, i) => {
    const id = 900 + i
    const rpms = b.rpms.map(([name, arch]) => ({ id: ++rpmId, name, arch }))
    addBuild(w, { id, name: b.name, version: "1.0", release: "1" }, rpms)
    for (const [name, arch] of b.rpms) {
      const file = `${name}-1.0-1.${arch}.rpm`
      const dst = path.join(topdir, "packages", b.name, "1.0", "1", arch, file)
      mkdirSync(path.dirname(dst), { recursive: true })
      copyFileSync(path.join(rpmdir, arch, file), dst)
    }
    if (!LATER.has(b.name)) tagBuild(w, TAG.id, id)
  })
  mkdirSync(path.join(topdir, "work", "cli-dist-repo"), { recursive: true })
  writeFileSync(path.join(topdir, "work", "cli-dist-repo", "multilib.conf"), MULTILIB_CONF)
  writeFileSync(path.join(topdir, "work", "cli-dist-repo", "broken.conf"), "[runtime]\nwhite =\nblack =\n")
}

const startDistRepo = (hub: FakeHub, multilib: string) => {
  const w = repoWorld(hub.topdir)
  const taskOpts = {
    arch: ["i686", "x86_64"], comps: null, delta: [], event: null, inherit: false, latest: true, multilib,
    split_debuginfo: false, skip_missing_signatures: false, allow_missing_signatures: true
  }
  const [repoId, event] = distRepoInit(w, Date.now() / 1000, TAG.id, [], taskOpts)
  const id = hub.createTask("distRepo", [TAG.name, repoId, [], { ...taskOpts, event }], { channel: "createrepo", priority: 15 })
  return { id, repoId }
}

const KojiPkgs = Schema.Record({
  key: Schema.String,
  value: Schema.Struct({ name: Schema.String, arch: Schema.String, _multilib: Schema.optional(Schema.Boolean), _pkgpath: Schema.String })
})

describe.skipIf(!podmanInstalled)("distRepo multilib (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = ensureFixture()
    rpmdir = mkdtempSync(path.join(tmpdir(), "adjutant-mlrpms-"))
    buildRpms(fixture.manifest.bootstrapImage, rpmdir)
    rpmdir = path.join(rpmdir, "rpms")
  }, 600_000)
  afterAll(() => {
    if (rpmdir !== undefined) rmSync(path.dirname(rpmdir), { recursive: true, force: true })
  })

  it.scopedLive("podman: the x86_64 dist repo takes the selected i686 packages and their deps; unresolvable deps, a missing 32-bit copy and a missing or broken config fail", () =>
    Effect.gen(function*() {
      const topdir = yield* fixtureTopdir(fixture)
      const hub = yield* repoHub(fixture, topdir)
      loadTag(topdir)
      const workdir = yield* tempDir("adjutant-work-")
      const kojid = repoKojid(topdir)
      const layers = repoDaemonLayers(hub, podman.socket, hostName, (containers) =>
        makeDistRepoHandlers({ kojid, image: fixture.manifest.bootstrapImage, containers }))
      yield* Effect.gen(function*() {
        yield* startDaemon(daemonOptions(workdir))

        const { id, repoId } = startDistRepo(hub, "cli-dist-repo/multilib.conf")
        yield* waitFor(() => DONE.has(hub.state.task(id)?.state ?? 0), `distRepo ${id}`)
        assert.strictEqual(hub.state.task(id)!.state, 2, JSON.stringify(hub.state.tasks.filter((t) => t.parent === id).map((t) => hub.state.taskResult(t.id))))
        assert.strictEqual(buildrootTables(topdir).repos.get(repoId)!.state, 1)
        const children = hub.state.tasks.filter((t) => t.parent === id)
        assert.deepStrictEqual(children.map((t) => t.label).sort(), ["i386", "x86_64"])
        const child64 = children.find((t) => t.label === "x86_64")!
        const child32 = children.find((t) => t.label === "i386")!
        // The 32-bit repo was moved before the 64-bit task was even made.
        const moves = hub.state.calls.filter((c) => c.method === "host.distRepoMove").map((c) => c.params[2])
        assert.deepStrictEqual(moves, ["i386", "x86_64"])
        assert.isTrue(child32.id < child64.id)

        const repodir = path.join(topdir, "repos-dist", TAG.name, String(repoId))
        const read = (arch: string) => Schema.decodeUnknownSync(KojiPkgs)(JSON.parse(readFileSync(path.join(repodir, arch, "kojipkgs"), "utf8")))
        const pkgs64 = read("x86_64")
        const mine64 = ["foo-data-1.0-1.noarch", "foo-helper-1.0-1.x86_64", "footool-1.0-1.x86_64", "libfoo-1.0-1.x86_64", "libfoo-devel-1.0-1.x86_64"]
        const multilib = ["foo-helper-1.0-1.i686", "libfoo-1.0-1.i686", "libfoo-devel-1.0-1.i686"]
        assert.deepStrictEqual(Object.keys(pkgs64).sort(), [...mine64, ...multilib].map((n) => `${n}.rpm`).sort())
        assert.deepStrictEqual(Object.entries(pkgs64).filter(([, v]) => v._multilib === true).map(([k]) => k).sort(), multilib.map((n) => `${n}.rpm`))
        assert.strictEqual(pkgs64["libfoo-1.0-1.i686.rpm"]!._pkgpath, path.join(repodir, "i386", "Packages", "l", "libfoo-1.0-1.i686.rpm"))
        const pkglist = readFileSync(path.join(repodir, "x86_64", "pkglist"), "utf8").split("\n").filter((l) => l !== "").sort()
        assert.deepStrictEqual(pkglist, Object.keys(pkgs64).map((b) => `Packages/${b[0]}/${b}`).sort())
        assert.deepStrictEqual(Object.keys(read("i386")).sort(),
          ["foo-data-1.0-1.noarch", "foo-helper-1.0-1.i686", "footool-1.0-1.i686", "libfoo-1.0-1.i686", "libfoo-devel-1.0-1.i686"].map((n) => `${n}.rpm`))
        assert.deepStrictEqual(dnfReadRepo(fixture.manifest.bootstrapImage, path.join(repodir, "x86_64")).nvras, [...mine64, ...multilib].sort())

        const up = (t: { id: number }, name: string) => hub.state.upload(`tasks/${t.id % 10000}/${t.id}/${name}`)?.toString()
        assert.strictEqual(up(child64, "dnf.conf-koji-x86_64"),
          dnfConfigText(path.join(workdir, "tasks", String(child64.id % 10000), String(child64.id), "dnf"), child64.id, path.join(repodir, "i386")))
        assert.isUndefined(up(child32, "dnf.conf-koji-i386"))
        assert.isUndefined(up(child64, "missing_multilib.log"))
        const manifest: ReadonlyArray<string> = JSON.parse(up(child64, "repo_manifest") ?? "[]")
        assert.includeMembers([...manifest], ["kojipkgs", "pkglist", "repodata/repomd.xml"])
        assert.notInclude([...manifest], "dnf.conf-koji-x86_64")

        const faultOf64 = (parent: number) =>
          Schema.decodeUnknownSync(Schema.Struct({ faultCode: Schema.Number, faultString: Schema.String }))(
            hub.state.taskResult(hub.state.tasks.find((t) => t.parent === parent && t.label === "x86_64")!.id))
        const w = repoWorld(topdir)

        tagBuild(w, TAG.id, buildId("libbroken"))
        const broken = startDistRepo(hub, "cli-dist-repo/multilib.conf")
        yield* waitFor(() => DONE.has(hub.state.task(broken.id)?.state ?? 0), `distRepo ${broken.id}`)
        assert.strictEqual(hub.state.task(broken.id)!.state, 5)
        const depsolve = faultOf64(broken.id)
        assert.strictEqual(depsolve.faultCode, 1)
        assert.match(depsolve.faultString, /^dnf\.exceptions\.DepsolveError: .*nothing provides no-such-capability needed by libbroken-1\.0-1\.i686/s)
        w.tables.tagged.set(TAG.id, w.tables.tagged.get(TAG.id)!.filter((b) => b !== buildId("libbroken")))

        tagBuild(w, TAG.id, buildId("libonly64"))
        const only64 = startDistRepo(hub, "cli-dist-repo/multilib.conf")
        yield* waitFor(() => DONE.has(hub.state.task(only64.id)?.state ?? 0), `distRepo ${only64.id}`)
        assert.deepStrictEqual(faultOf64(only64.id), { faultCode: 1000, faultString: "multilib packages missing. See missing_multilib.log" })
        const child = hub.state.tasks.find((t) => t.parent === only64.id && t.label === "x86_64")!
        assert.strictEqual(up(child, "missing_multilib.log"),
          `The following multilib files were missing:\n${path.join(topdir, "repos-dist", TAG.name, String(only64.repoId), "i386", "Packages", "l", "libonly64-1.0-1.i686.rpm")}\n`)
        w.tables.tagged.set(TAG.id, w.tables.tagged.get(TAG.id)!.filter((b) => b !== buildId("libonly64")))

        const configFaults = [
          ["cli-dist-repo/absent.conf", "cannot read the multilib config"],
          ["cli-dist-repo/broken.conf", "invalid multilib config"],
          ["/etc/hostname", "is not under"]
        ] as const
        for (const [conf, why] of configFaults) {
          const bad = startDistRepo(hub, conf)
          yield* waitFor(() => DONE.has(hub.state.task(bad.id)?.state ?? 0), `distRepo ${bad.id}`)
          assert.strictEqual(hub.state.task(bad.id)!.state, 5)
          const fault = faultOf64(bad.id)
          assert.strictEqual(fault.faultCode, 1000)
          assert.include(fault.faultString, why)
          assert.include(fault.faultString, conf.startsWith("/") ? conf : path.join(topdir, "work", conf))
          if (conf.endsWith("broken.conf")) assert.include(fault.faultString, "No section: 'devel'")
        }
        assert.deepStrictEqual(containersOfHost(hostName), [])
      }).pipe(Effect.scoped, Effect.provide(layers))
    }), 600_000)
})
