/**
 * Images against real registries on loopback (Debian's docker-registry) and a real podman API
 * service: pull policies, digest pins, credentials, TLS, unreachable registries, refresh, GC.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ImageError, Images, type ImagesOptions } from "../../src/containers/Images.js"
import { Libpod } from "../../src/containers/Libpod.js"
import { podmanInstalled, podmanSkipReason, startPodmanService, type PodmanService } from "../support/podman.js"
import {
  freePort,
  makeTinyImage,
  publishTinyImage,
  registryInstalled,
  registrySkipReason,
  removeImagesNamed,
  startRegistry,
  type TestRegistry
} from "../support/registry.js"

const runnable = podmanInstalled && registryInstalled
if (!runnable && process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1") {
  it("registry test prerequisites are installed", () => assert.fail(podmanInstalled ? registrySkipReason : podmanSkipReason))
} else if (!runnable) console.warn(`registry.podman tests skipped: ${podmanInstalled ? registrySkipReason : podmanSkipReason}`)

const USER = "adjutant"
const PASSWORD = "s3cret-" + randomBytes(4).toString("hex")
const run = randomBytes(3).toString("hex")
const OWNED_LABEL = `io.koji.adjutant.test-${run}`

let podman: PodmanService
let plain: TestRegistry
let secure: TestRegistry
let dir: string

const exists = (ref: string): boolean => spawnSync("podman", ["image", "exists", ref]).status === 0
const idOf = (ref: string): string => spawnSync("podman", ["image", "inspect", "--format", "{{.Id}}", ref], { encoding: "utf8" }).stdout.trim()

const authFile = (entries: Record<string, { username: string; password: string }>): string => {
  const file = join(dir, `auth-${randomBytes(3).toString("hex")}.json`)
  const auths = Object.fromEntries(
    Object.entries(entries).map(([host, c]) => [host, { auth: Buffer.from(`${c.username}:${c.password}`).toString("base64") }])
  )
  writeFileSync(file, JSON.stringify({ auths }))
  return file
}

const baseOptions = (): ImagesOptions => ({
  bootstrap_image: `localhost/koji-adjutant-none-${run}:1`,
  image_rules: [],
  mock_bootstrap_image: false,
  pull_policy: "missing",
  registry_auth_file: "",
  insecure_registries: [plain.host],
  image_refresh_interval: 0,
  image_gc: true,
  ownedLabel: OWNED_LABEL
})

const withImages = <A, E>(
  options: Partial<ImagesOptions>,
  body: (images: Context.Tag.Service<Images>) => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.flatMap(Images, body).pipe(
    Effect.provide(Images.layer({ ...baseOptions(), ...options }).pipe(Layer.provide(Libpod.layer({ socket: podman.socket }))))
  )

const expectImageError = <A>(effect: Effect.Effect<A, ImageError>) =>
  Effect.flatMap(Effect.either(effect), (e) =>
    Either.isLeft(e) ? Effect.succeed(e.left) : Effect.dieMessage(`expected an ImageError, got ${JSON.stringify(e.right)}`)
  )

describe.skipIf(!runnable)("Images with a real registry (podman)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "koji-adjutant-images-"))
    podman = await startPodmanService()
    plain = await startRegistry()
    secure = await startRegistry({ tls: true, credentials: { username: USER, password: PASSWORD } })
  })

  afterAll(async () => {
    const left = removeImagesNamed([plain?.host, secure?.host, "localhost/koji-adjutant-test-"].filter((p) => p !== undefined))
    await secure?.stop()
    await plain?.stop()
    await podman?.stop()
    rmSync(dir, { recursive: true, force: true })
    assert.deepStrictEqual(left, [], "images left behind by the registry tests")
  })

  it.live("policy missing pulls once with progress lines, then uses the local image", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/missing:1")
      const ref = `${plain.host}/p/missing:1`
      const progress: Array<string> = []
      const first = yield* withImages({}, (images) =>
        images.ensure(ref, { onProgress: (line) => Effect.sync(() => progress.push(line)) })
      )
      assert.isTrue(first.pulled)
      assert.strictEqual(first.id, idOf(ref))
      assert.isTrue(progress.some((l) => l.includes("Writing manifest")), progress.join("\n"))
      assert.strictEqual(first.digest, plain.digest("p/missing:1"))
      const second = yield* withImages({}, (images) => images.ensure(ref))
      assert.isFalse(second.pulled)
      assert.strictEqual(second.id, first.id)
    }))

  it.live("policy always pulls again and follows a moved tag; missing keeps the local copy; refresh moves it", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/moving:stable")
      const ref = `${plain.host}/p/moving:stable`
      const v1 = yield* withImages({}, (images) => images.ensure(ref))
      publishTinyImage(plain, "p/moving:stable")
      const kept = yield* withImages({}, (images) => images.ensure(ref, { policy: "missing" }))
      assert.isFalse(kept.pulled)
      assert.strictEqual(kept.id, v1.id)
      const v2 = yield* withImages({}, (images) => images.ensure(ref, { policy: "always" }))
      assert.isTrue(v2.pulled)
      assert.notStrictEqual(v2.id, v1.id)
      publishTinyImage(plain, "p/moving:stable")
      yield* withImages({ bootstrap_image: ref }, (images) => images.refresh)
      const v3 = idOf(ref)
      assert.notStrictEqual(v3, v2.id)
      assert.strictEqual(v3, (yield* withImages({ pull_policy: "never" }, (images) => images.ensure(ref))).id)
      // The ids the tag no longer names are dangling now; only the pulling Images instance records
      // them, so remove them here.
      spawnSync("podman", ["rmi", v1.id, v2.id], { stdio: "ignore" })
    }))

  it.live("policy never: a present image is used, an absent one fails with PolicyNever and pulls nothing", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/never:1")
      const ref = `${plain.host}/p/never:1`
      const err = yield* expectImageError(withImages({ pull_policy: "never" }, (images) => images.ensure(ref)))
      assert.strictEqual(err.reason, "PolicyNever")
      assert.include(err.message, ref)
      assert.isFalse(exists(ref))
      yield* withImages({}, (images) => images.ensure(ref))
      const used = yield* withImages({ pull_policy: "never" }, (images) => images.ensure(ref))
      assert.isFalse(used.pulled)
    }))

  it.live("digest pins: name@digest and name:tag@digest pull and verify; a moved tag is DigestMismatch; an unknown digest is NotFound", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/pinned:1")
      const digest = plain.digest("p/pinned:1")
      const byDigest = yield* withImages({}, (images) => images.ensure(`${plain.host}/p/pinned@${digest}`))
      assert.isTrue(byDigest.pulled)
      assert.strictEqual(byDigest.digest, digest)
      const tagAndDigest = yield* withImages({}, (images) => images.ensure(`${plain.host}/p/pinned:1@${digest}`, { policy: "always" }))
      assert.strictEqual(tagAndDigest.id, byDigest.id)

      publishTinyImage(plain, "p/pinned:1")
      const moved = plain.digest("p/pinned:1")
      assert.notStrictEqual(moved, digest)
      // Pinned content present locally satisfies the pin without asking the registry.
      const local = yield* withImages({}, (images) => images.ensure(`${plain.host}/p/pinned:1@${digest}`, { policy: "always" }))
      assert.isFalse(local.pulled)
      spawnSync("podman", ["rmi", `${plain.host}/p/pinned@${digest}`], { stdio: "ignore" })
      spawnSync("podman", ["rmi", `${plain.host}/p/pinned:1`], { stdio: "ignore" })
      assert.isFalse(exists(`${plain.host}/p/pinned@${digest}`))
      const mismatch = yield* expectImageError(
        withImages({}, (images) => images.ensure(`${plain.host}/p/pinned:1@${digest}`))
      )
      assert.strictEqual(mismatch.reason, "DigestMismatch")
      assert.include(mismatch.message, digest)
      assert.include(mismatch.message, moved)

      const unknown = `sha256:${"0".repeat(64)}`
      const notFound = yield* expectImageError(withImages({}, (images) => images.ensure(`${plain.host}/p/pinned@${unknown}`)))
      assert.strictEqual(notFound.reason, "NotFound")
      assert.include(notFound.message, unknown)
    }))

  it.live("credentials: the auth file's entry is sent; a wrong password is Auth; TLS verify on a self-signed registry is Tls unless listed insecure", () =>
    Effect.gen(function* () {
      publishTinyImage(secure, "s/auth:1")
      const ref = `${secure.host}/s/auth:1`
      const good = authFile({ [secure.host]: { username: USER, password: PASSWORD } })
      const bad = authFile({ [secure.host]: { username: USER, password: "wrong" } })

      const tls = yield* expectImageError(withImages({ registry_auth_file: good }, (images) => images.ensure(ref)))
      assert.strictEqual(tls.reason, "Tls")
      assert.include(tls.message, secure.host)
      assert.include(tls.message, "insecure_registries")

      const insecure = [plain.host, secure.host]
      const wrong = yield* expectImageError(
        withImages({ registry_auth_file: bad, insecure_registries: insecure }, (images) => images.ensure(ref))
      )
      assert.strictEqual(wrong.reason, "Auth")
      assert.include(wrong.message, bad)

      const none = yield* expectImageError(withImages({ insecure_registries: insecure }, (images) => images.ensure(ref)))
      assert.strictEqual(none.reason, "Auth")

      const ok = yield* withImages({ registry_auth_file: good, insecure_registries: insecure }, (images) => images.ensure(ref))
      assert.isTrue(ok.pulled)
      assert.isTrue(exists(ref))
    }))

  it.live("a missing auth file and a malformed one are Auth errors naming the file", () =>
    Effect.gen(function* () {
      const ref = `${secure.host}/s/auth:1`
      const missing = join(dir, "no-such-auth.json")
      const e1 = yield* expectImageError(withImages({ registry_auth_file: missing }, (images) => images.ensure(ref, { policy: "always" })))
      assert.strictEqual(e1.reason, "Auth")
      assert.include(e1.message, missing)
      const garbled = join(dir, "garbled.json")
      writeFileSync(garbled, "{not json")
      const e2 = yield* expectImageError(withImages({ registry_auth_file: garbled }, (images) => images.ensure(ref, { policy: "always" })))
      assert.strictEqual(e2.reason, "Auth")
      assert.include(e2.message, garbled)
    }))

  it.live("a plain-HTTP registry not listed insecure fails with Tls, not a hang", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/plainhttp:1")
      const ref = `${plain.host}/p/plainhttp:1`
      const err = yield* expectImageError(withImages({ insecure_registries: [] }, (images) => images.ensure(ref)))
      assert.strictEqual(err.reason, "Tls")
      assert.include(err.message, plain.host)
    }))

  it.live("an unreachable registry (closed port) is Unreachable and names the registry", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const host = `127.0.0.1:${port}`
      const err = yield* expectImageError(withImages({ insecure_registries: [host] }, (images) => images.ensure(`${host}/x/y:1`)))
      assert.strictEqual(err.reason, "Unreachable")
      assert.include(err.message, host)
    }))

  it.live("a registry that accepts connections but never answers fails with Timeout after pullTimeout", () =>
    Effect.gen(function* () {
      const sockets: Array<net.Socket> = []
      const server = net.createServer((s) => void sockets.push(s))
      yield* Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void)))
      const address = server.address()
      const host = `127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`
      const started = Date.now()
      const err = yield* expectImageError(
        withImages({ insecure_registries: [host], pullTimeout: "1500 millis" }, (images) => images.ensure(`${host}/x/y:1`))
      ).pipe(
        Effect.ensuring(
          Effect.async<void>((resume) => {
            for (const s of sockets) s.destroy()
            server.close(() => resume(Effect.void))
          })
        )
      )
      assert.strictEqual(err.reason, "Timeout")
      assert.include(err.message, host)
      assert.isBelow(Date.now() - started, 10_000)
    }))

  it.live("a missing tag is NotFound; a bad reference is InvalidReference; a missing localhost image names the build script", () =>
    Effect.gen(function* () {
      const nf = yield* expectImageError(withImages({}, (images) => images.ensure(`${plain.host}/p/absent:9`)))
      assert.strictEqual(nf.reason, "NotFound")
      const bad = yield* expectImageError(withImages({}, (images) => images.ensure("Bad..Ref:x")))
      assert.strictEqual(bad.reason, "InvalidReference")
      const local = yield* expectImageError(withImages({}, (images) => images.ensure(`localhost/koji-adjutant-none-${run}:1`, { policy: "always" })))
      assert.strictEqual(local.reason, "NotFound")
      assert.include(local.message, "scripts/build-images.sh")
    }))

  it.live("readiness is false until a configured image is present", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/ready:1")
      const ref = `${plain.host}/p/ready:1`
      const options = { bootstrap_image: `localhost/koji-adjutant-none-${run}:1`, image_rules: [{ tag: "f*", arch: null, image: ref }] }
      assert.isFalse(yield* withImages(options, (images) => images.readiness))
      yield* withImages(options, (images) => images.forTask({ tag: "f41-build", arch: "x86_64" }))
      assert.isTrue(yield* withImages(options, (images) => images.readiness))
    }))

  it.live("gc removes what we pulled and no rule references, keeps referenced ones, other images and in-use ones; state survives a restart", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "g/kept:1")
      publishTinyImage(plain, "g/dropped:1")
      publishTinyImage(plain, "g/earlier:1")
      const kept = `${plain.host}/g/kept:1`
      const dropped = `${plain.host}/g/dropped:1`
      const earlier = `${plain.host}/g/earlier:1`
      const stranger = makeTinyImage(`koji-adjutant-test-stranger-${run}:1`)
      const labelled = makeTinyImage(`koji-adjutant-test-labelled-${run}:1`, { [OWNED_LABEL]: "bootstrap" })
      const stateFile = join(dir, "images-state.json")

      // A previous daemon run pulled `earlier`; only the state file remembers it.
      yield* withImages({ stateFile }, (images) => images.ensure(earlier))
      assert.include(readFileSync(stateFile, "utf8"), earlier)

      const report = yield* withImages({ stateFile, bootstrap_image: kept, keepRecent: 0 }, (images) =>
        Effect.gen(function* () {
          yield* images.ensure(kept)
          yield* images.ensure(dropped)
          return yield* images.gc
        })
      )
      assert.includeMembers([...report.removed], [dropped, earlier, labelled])
      assert.include([...report.kept], kept)
      assert.isTrue(exists(kept))
      assert.isFalse(exists(dropped))
      assert.isFalse(exists(earlier))
      assert.isFalse(exists(labelled))
      assert.isTrue(exists(stranger), "an image we neither pulled nor labelled is never removed")
      spawnSync("podman", ["rmi", stranger], { stdio: "ignore" })

      // Used recently (keepRecent) although no rule names it: kept.
      const recent = yield* withImages({ bootstrap_image: kept }, (images) =>
        Effect.gen(function* () {
          yield* images.ensure(dropped)
          return yield* images.gc
        })
      )
      assert.include([...recent.kept], dropped)
      assert.isTrue(exists(dropped))

      // In use by a container: gc keeps it and never forces.
      const ctr = `koji-adjutant-test-gc-${run}`
      spawnSync("podman", ["create", "--name", ctr, dropped, "/content"], { stdio: "ignore" })
      const inUse = yield* withImages({ bootstrap_image: kept, keepRecent: 0 }, (images) =>
        Effect.gen(function* () {
          yield* images.ensure(dropped, { policy: "always" })
          return yield* images.gc
        })
      )
      spawnSync("podman", ["rm", "-f", ctr], { stdio: "ignore" })
      assert.include([...inUse.kept], dropped)
      assert.isTrue(exists(dropped))
    }))

  it.live("the maintained layer warms configured images at start, then refreshes moving tags and collects on its interval", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "m/base:1")
      publishTinyImage(plain, "m/extra:1")
      const ref = `${plain.host}/m/base:1`
      const extra = `${plain.host}/m/extra:1`
      const poll = (what: string, check: () => boolean) =>
        Effect.gen(function* () {
          for (let i = 0; i < 100; i++) {
            if (check()) return
            yield* Effect.sleep("100 millis")
          }
          assert.fail(`timed out waiting for ${what}`)
        })
      const layer = Images.layerMaintained({ ...baseOptions(), bootstrap_image: ref, image_refresh_interval: 1, keepRecent: 0 }).pipe(
        Layer.provide(Libpod.layer({ socket: podman.socket }))
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const images = yield* Layer.build(layer).pipe(Effect.map(Context.get(Images)))
          yield* poll("the warm-up pull", () => exists(ref))
          assert.isTrue(yield* images.readiness)
          const v1 = idOf(ref)
          yield* images.ensure(extra)
          publishTinyImage(plain, "m/base:1")
          yield* poll("the refresh to follow the moved tag", () => idOf(ref) !== v1)
          yield* poll("gc to remove the unreferenced image", () => !exists(extra))
          yield* poll("gc to remove the image the moved tag left dangling", () => !exists(v1))
          assert.isTrue(exists(ref))
        })
      )
    }))

  it.live("the maintained layer keeps trying an image that is missing at start, and the host becomes ready once it can be pulled", () =>
    Effect.gen(function* () {
      const ref = `${plain.host}/m/late-${run}:1`
      const poll = (what: string, check: () => boolean) =>
        Effect.gen(function* () {
          for (let i = 0; i < 100; i++) {
            if (check()) return
            yield* Effect.sleep("100 millis")
          }
          assert.fail(`timed out waiting for ${what}`)
        })
      const layer = Images.layerMaintained({ ...baseOptions(), bootstrap_image: ref, image_refresh_interval: 0, unavailableRetry: "200 millis" }).pipe(
        Layer.provide(Libpod.layer({ socket: podman.socket }))
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const images = yield* Layer.build(layer).pipe(Effect.map(Context.get(Images)))
          yield* Effect.sleep("500 millis")
          assert.isFalse(yield* images.readiness, "not ready while the image is in no registry")
          publishTinyImage(plain, `m/late-${run}:1`)
          yield* poll("the retried pull", () => exists(ref))
          assert.isTrue(yield* images.readiness)
        })
      )
    }))

  it.live("concurrent ensures of one image pull it once", () =>
    Effect.gen(function* () {
      publishTinyImage(plain, "p/concurrent:1")
      const ref = `${plain.host}/p/concurrent:1`
      const results = yield* withImages({}, (images) => Effect.all([images.ensure(ref), images.ensure(ref), images.ensure(ref)], { concurrency: "unbounded" }))
      assert.strictEqual(results.filter((r) => r.pulled).length, 1)
      assert.strictEqual(new Set(results.map((r) => r.id)).size, 1)
    }))
})
