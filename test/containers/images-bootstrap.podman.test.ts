/**
 * The offline bootstrap image from scripts/build-images.sh: named where tests and the README
 * find it, carries the tools buildroots need, and round-trips through a registry via Images.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Images } from "../../src/containers/Images.js"
import { Libpod } from "../../src/containers/Libpod.js"
import { podmanInstalled, podmanSkipReason, startPodmanService, type PodmanService } from "../support/podman.js"
import { registryInstalled, registrySkipReason, removeImagesNamed, startRegistry, type TestRegistry } from "../support/registry.js"

const repoRoot = resolve(import.meta.dirname, "../..")
const STATE_FILE = "/var/lib/koji-adjutant/bootstrap-image"
const runnable = podmanInstalled && registryInstalled
const skipReason = podmanInstalled ? registrySkipReason : podmanSkipReason

const expectedImage = (): string =>
  execFileSync(join(repoRoot, "scripts/build-images.sh"), ["--print"], { encoding: "utf8" }).trim()

const imageId = (ref: string): string =>
  spawnSync("podman", ["image", "inspect", "--format", "{{.Id}}", ref], { encoding: "utf8" }).stdout.trim()

if (!runnable && process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1") {
  it("bootstrap image test prerequisites are installed", () => assert.fail(skipReason))
} else if (!runnable) console.warn(`images-bootstrap.podman tests skipped: ${skipReason}`)

describe.skipIf(!runnable)("offline bootstrap image (podman)", () => {
  let image: string

  beforeAll(() => {
    image = expectedImage()
    if (spawnSync("podman", ["image", "exists", image]).status !== 0) {
      throw new Error(`${image} is not built: run scripts/build-images.sh (as root) first`)
    }
  })

  it("is named by its input hash, tagged latest, and recorded for tests and the README", () => {
    assert.match(image, /^localhost\/koji-adjutant-bootstrap:[0-9a-f]{12}$/)
    assert.strictEqual(imageId(image), imageId("localhost/koji-adjutant-bootstrap:latest"))
    assert.isTrue(existsSync(STATE_FILE), `${STATE_FILE} missing`)
    assert.strictEqual(readFileSync(STATE_FILE, "utf8").trim(), image)
    const labels = JSON.parse(
      spawnSync("podman", ["image", "inspect", "--format", "{{json .Labels}}", image], { encoding: "utf8" }).stdout
    ) as Record<string, string>
    assert.strictEqual(labels["io.koji.adjutant.image"], "bootstrap")
    assert.strictEqual(labels["io.koji.adjutant.inputs-hash"], image.split(":")[1])
  })

  it("builds an RPM, a C program and repo metadata offline, as the builder user, with rpm's db in /var/lib/rpm", () => {
    const script = [
      "set -e",
      'test "$(rpm --eval %_dbpath)" = /var/lib/rpm',
      'test "$(id -u builder):$(id -g builder)" = 1000:1000',
      "dnf --releasever=1 builddep --help >/dev/null",
      "T=/tmp/rb; mkdir -p $T/SPECS /tmp/out",
      "printf 'int main(void){return 0;}\\n' > /tmp/hello.c && gcc -o /tmp/hello /tmp/hello.c && /tmp/hello",
      "cat > $T/SPECS/t.spec <<'EOF'",
      "Name: t",
      "Version: 1",
      "Release: 1",
      "Summary: t",
      "License: MIT",
      "BuildArch: noarch",
      "%description",
      "t",
      "%install",
      "mkdir -p %{buildroot}/usr/share/t && echo t > %{buildroot}/usr/share/t/t",
      "%files",
      "/usr/share/t/t",
      "EOF",
      "rpmbuild -bb --quiet --define \"_topdir $T\" --define '_rpmdir /tmp/out' $T/SPECS/t.spec",
      "createrepo_c --quiet /tmp/out",
      "mkdir -p /tmp/merged && mergerepo_c --repo file:///tmp/out --outputdir /tmp/merged >/dev/null",
      "test -f /tmp/merged/repodata/repomd.xml",
      "rpm -qp --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n' /tmp/out/noarch/t-1-1.noarch.rpm"
    ].join("\n")
    const run = spawnSync("podman", ["run", "--rm", "--network=none", "--user", "1000:1000", image, "sh", "-c", script], {
      encoding: "utf8",
      cwd: "/tmp"
    })
    assert.strictEqual(run.status, 0, run.stderr)
    assert.strictEqual(run.stdout.trim().split("\n").pop(), "t-1-1.noarch")
  })

  describe("through a registry", () => {
    let podman: PodmanService
    let registry: TestRegistry
    beforeAll(async () => {
      podman = await startPodmanService()
      registry = await startRegistry()
    })
    afterAll(async () => {
      const left = removeImagesNamed(registry === undefined ? [] : [registry.host])
      await registry?.stop()
      await podman?.stop()
      assert.deepStrictEqual(left, [])
    })

    it.live("is pushed to a loopback registry, pulled back by Images, and satisfies a digest pin", () =>
      Effect.gen(function* () {
        registry.push(image, "koji/bootstrap:1")
        const digest = registry.digest("koji/bootstrap:1")
        const tagged = `${registry.host}/koji/bootstrap:1`
        const pinned = `${tagged}@${digest}`
        const lines: Array<string> = []
        const [pulled, pin] = yield* Effect.flatMap(Images, (images: Context.Tag.Service<Images>) =>
          Effect.all([
            images.ensure(tagged, { policy: "always", onProgress: (l) => Effect.sync(() => lines.push(l)) }),
            images.ensure(pinned)
          ])
        ).pipe(
          Effect.provide(
            Images.layer({
              bootstrap_image: pinned,
              image_rules: [],
              mock_bootstrap_image: false,
              pull_policy: "missing",
              registry_auth_file: "",
              insecure_registries: [registry.host],
              image_refresh_interval: 0,
              image_gc: false
            }).pipe(Layer.provide(Libpod.layer({ socket: podman.socket })))
          )
        )
        assert.isTrue(pulled.pulled)
        assert.strictEqual(pulled.id, imageId(image), "same content, same image id")
        // The id is shared with the local build, whose own manifest digest podman also lists.
        const repoDigests = spawnSync("podman", ["image", "inspect", "--format", "{{json .RepoDigests}}", tagged], { encoding: "utf8" }).stdout
        assert.include(repoDigests, `${registry.host}/koji/bootstrap@${digest}`)
        assert.include(repoDigests, `${registry.host}/koji/bootstrap@${pulled.digest}`)
        assert.isTrue(lines.some((l) => l.startsWith("Copying")), lines.join("\n"))
        // The pinned content is present now, so the pin is satisfied without another pull.
        assert.isFalse(pin.pulled)
        assert.strictEqual(pin.id, pulled.id)
        assert.strictEqual(pin.digest, digest)
      }))
  })
})
