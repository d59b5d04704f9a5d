/**
 * `build-local` with the offline fixture: the same buildroot code with no hub builds the noarch
 * example into RPMs and logs in the result directory (real podman).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Command } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { buildLocal, buildLocalCommand, localLayer } from "../../src/local/buildLocal.js"
import { type Fixture, loadFixtureFiles } from "../buildroot/support.js"
import { podmanInstalled, podmanSkipReason, type PodmanService, startPodmanService } from "../support/podman.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

let service: PodmanService
let fixture: Fixture
let dir: string

describe.skipIf(!podmanInstalled)("build-local (real podman)", () => {
  beforeAll(async () => {
    fixture = loadFixtureFiles()
    service = await startPodmanService()
    dir = mkdtempSync(path.join(tmpdir(), "adjutant-local-"))
  }, 600_000)
  afterAll(async () => {
    await service?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it.live("podman: build-local of the noarch fixture writes the RPMs, the SRPM and the logs to the result dir", () =>
    Effect.gen(function* () {
      const result = path.join(dir, "out")
      const r = yield* buildLocal({
        srpm: path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm"),
        repo: path.join(fixture.dir, "repos/fixture-build/1/x86_64"),
        arch: "noarch",
        resultDir: result
      })
      assert.deepStrictEqual(r.rpms, [path.join(result, "fixture-hello-1.0-1.noarch.rpm")])
      assert.deepStrictEqual(r.srpms, [path.join(result, "fixture-hello-1.0-1.src.rpm")])
      for (const f of [...r.rpms, ...r.srpms]) assert.isTrue(existsSync(f), f)
      for (const l of ["mock_config.log", "root.log", "build.log", "state.log"]) assert.isTrue(existsSync(path.join(result, l)), l)
      assert.include(readFileSync(path.join(result, "build.log"), "utf8"), "Wrote: /result/fixture-hello-1.0-1.noarch.rpm")
      assert.match(readFileSync(path.join(result, "mock_config.log"), "utf8"), /# Koji buildroot id: 1\n# Koji buildroot name: local-1-0\n/)
    }).pipe(Effect.provide(localLayer(service.socket, path.join(dir, "cache"), fixture.image))), 600_000)

  it.live("podman: build-local of the failing fixture fails with the build.log tail and keeps the logs", () =>
    Effect.gen(function* () {
      const result = path.join(dir, "fail")
      const exit = yield* Effect.exit(buildLocal({
        srpm: path.join(fixture.srpms, "fixture-fail-1.0-1.src.rpm"),
        repo: path.join(fixture.dir, "repos/fixture-build/1/x86_64"),
        arch: "noarch",
        resultDir: result
      }))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "this package fails in %build on purpose")
      assert.isTrue(existsSync(path.join(result, "build.log")))
    }).pipe(Effect.provide(localLayer(service.socket, path.join(dir, "cache"), fixture.image))), 600_000)

  it.live("podman: the build-local command (as mounted in main.ts) builds with --repo/--arch/--result", () =>
    Effect.gen(function* () {
      const result = path.join(dir, "cli")
      const run = Command.run(buildLocalCommand, { name: "koji-adjutant", version: "0" })
      yield* run([
        "node", "koji-adjutant", "--repo", path.join(fixture.dir, "repos/fixture-build/1/x86_64"), "--arch", "noarch",
        "--result", result, "--podman-socket", service.socket, "--cache-dir", path.join(dir, "cache"), "--image", fixture.image,
        path.join(fixture.srpms, "fixture-hello-1.0-1.src.rpm")
      ])
      assert.isTrue(existsSync(path.join(result, "fixture-hello-1.0-1.noarch.rpm")))
      assert.isTrue(existsSync(path.join(result, "build.log")))
    }).pipe(Effect.provide(NodeContext.layer)), 600_000)
})
