/**
 * Hostile packages and cancellation through the daemon with real podman: a spec that tries the
 * network, reads the daemon's client certificate, writes outside its build dir, forks without
 * bound or fills the disk fails its own task with BuildError (the build.log tail says why); a
 * task canceled during rpmbuild loses its containers and its buildroot is EXPIRED; nothing is
 * left behind.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import { buildrootTables } from "../fakehub/buildroots.js"
import { containersOfHost, podmanInstalled, podmanSkipReason, uniqueHostName } from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"
import {
  buildrootsOptions, daemonLayers, daemonOptions, type Fixture, fixtureHub, loadFixtureFiles, scopedTopdir, startDaemon, tempDir,
  uploadSrpm, waitFor
} from "../buildroot/support.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const hostName = uniqueHostName("hostile")
let podman: { readonly socket: string }
let fixture: Fixture
let dir: string
let certFile: string

const spec = (name: string, build: string) => `Name: ${name}
Version: 1.0
Release: 1
Summary: hostile test package
License: MIT
BuildArch: noarch
%description
A package that misbehaves in %build.
%prep
%build
${build}
%install
mkdir -p %{buildroot}/usr/share/${name}
echo ok > %{buildroot}/usr/share/${name}/ok
%files
/usr/share/${name}/ok
`

/** Makes an SRPM from a spec text with the bootstrap image (offline). */
const makeSrpm = (name: string, build: string): string => {
  const d = path.join(dir, name)
  mkdirSync(d, { recursive: true })
  writeFileSync(path.join(d, `${name}.spec`), spec(name, build))
  execFileSync("podman", [
    "run", "--rm", "--network=none", "-v", `${d}:/w`, fixture.image, "rpmbuild", "-bs", "--define", "_topdir /tmp/t",
    "--define", "_sourcedir /w", "--define", "_srcrpmdir /w", `/w/${name}.spec`
  ], { stdio: "ignore" })
  return path.join(d, readdirSync(d).find((f) => f.endsWith(".src.rpm"))!)
}

describe.skipIf(!podmanInstalled)("hostile builds and cancel (real podman)", () => {
  podman = podmanServiceForTests(hostName)
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    dir = mkdtempSync(path.join(tmpdir(), "adjutant-hostile-"))
    certFile = path.join(dir, "client.pem")
    writeFileSync(certFile, "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n", { mode: 0o644 })
  }, 600_000)
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it.live("podman: network, the client cert, writes outside the build dir, a fork bomb and a disk filler each fail their task", () =>
    Effect.gen(function* () {
      const cases = {
        "hostile-net": [
          `bash -c 'exec 3<>/dev/tcp/1.1.1.1/53' 2>&1 || { echo "HOSTILE: network blocked"; exit 1; }`,
          "echo HOSTILE: network reachable"
        ].join("\n"),
        "hostile-cert": `cat ${certFile} || { echo "HOSTILE: cert not visible"; exit 1; }\necho HOSTILE: cert leaked`,
        "hostile-write": `echo x > /etc/hostile || { echo "HOSTILE: read-only"; exit 1; }\necho HOSTILE: wrote /etc`,
        // set +x: with rpm's xtrace on, each forked child prints "+ sleep 120" late, pushing the
        // shell's fork error out of the 20-line log tail the fault carries.
        "hostile-fork": `set +x\ni=0\nwhile [ $i -lt 3000 ]; do sleep 120 & i=$((i+1)); done\necho HOSTILE: forked 3000`,
        "hostile-disk": `dd if=/dev/zero of=big bs=1M count=4096 || { echo "HOSTILE: disk full"; exit 1; }\necho HOSTILE: wrote 4 GiB`
      } as const
      const expect: Record<keyof typeof cases, RegExp> = {
        "hostile-net": /HOSTILE: network blocked/,
        "hostile-cert": /HOSTILE: cert not visible/,
        "hostile-write": /HOSTILE: read-only|Read-only file system/,
        "hostile-fork": /Cannot fork|fork|Resource temporarily unavailable/i,
        "hostile-disk": /HOSTILE: disk full|No space left on device/
      }
      const topdir = yield* scopedTopdir(fixture)
      const workdir = yield* tempDir("adjutant-work-")
      const hub = yield* fixtureHub(fixture, topdir)
      const ids = new Map<string, number>()
      for (const [name, build] of Object.entries(cases)) {
        const rel = uploadSrpm(topdir, makeSrpm(name, build), name)
        ids.set(name, hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" }))
      }
      yield* Effect.gen(function* () {
        yield* startDaemon(daemonOptions(workdir))
        yield* waitFor(() => [...ids.values()].every((id) => [2, 3, 5].includes(hub.state.task(id)?.state ?? 0)), "hostile tasks to finish", "600 seconds")
        yield* Effect.sleep("300 millis")
      }).pipe(Effect.scoped, Effect.provide(daemonLayers(hub, podman.socket, hostName, buildrootsOptions(fixture, topdir, path.join(dir, "cache")), { pids: 200, memory: 1024 ** 3 })))
      for (const [name, id] of ids) {
        const r = hub.state.taskResult(id) as Record<string, unknown>
        assert.strictEqual(hub.state.task(id)!.state, 5, `${name} must fail: ${JSON.stringify(r)}`)
        assert.strictEqual(r["faultCode"], 1005, name)
        assert.match(String(r["faultString"]), /^error building package \(arch noarch\), rpmbuild exited with status \d+; see build\.log/, name)
        assert.match(String(r["faultString"]), expect[name as keyof typeof cases], `${name}: ${String(r["faultString"])}`)
      }
      for (const br of buildrootTables(topdir).buildroots.values()) assert.strictEqual(br.state, 3)
      assert.deepStrictEqual(containersOfHost(hostName), [])
    }).pipe(Effect.scoped), 900_000)

  it.live("podman: canceling a task during rpmbuild removes its containers and expires its buildroot", () =>
    Effect.gen(function* () {
      const topdir = yield* scopedTopdir(fixture)
      const workdir = yield* tempDir("adjutant-work-")
      const hub = yield* fixtureHub(fixture, topdir)
      const rel = uploadSrpm(topdir, makeSrpm("slow-build", "echo SLOW-STARTED\nsleep 600"), "slow")
      const id = hub.createTask("buildArch", [rel, "fixture-build", "noarch", true, { repo_id: 1 }], { arch: "noarch" })
      yield* Effect.gen(function* () {
        yield* startDaemon(daemonOptions(workdir))
        yield* waitFor(() => (hub.state.upload(`tasks/${id % 10000}/${id}/build.log`)?.toString() ?? "").includes("SLOW-STARTED"), "rpmbuild to start")
        assert.isTrue(containersOfHost(hostName).some((n) => n.includes("-build-")), "the build container runs")
        hub.cancelTask(id)
        yield* waitFor(() => containersOfHost(hostName).length === 0, "containers to go", "60 seconds")
        yield* waitFor(() => [...buildrootTables(topdir).buildroots.values()].every((b) => b.state === 3), "buildroot EXPIRED", "60 seconds")
      }).pipe(Effect.scoped, Effect.provide(daemonLayers(hub, podman.socket, hostName, buildrootsOptions(fixture, topdir, path.join(dir, "cache")))))
      assert.strictEqual(hub.state.task(id)!.state, 3)
      const [br] = [...buildrootTables(topdir).buildroots.values()]
      assert.strictEqual(br!.state, 3)
      assert.deepStrictEqual(containersOfHost(hostName), [])
    }).pipe(Effect.scoped), 600_000)
})
