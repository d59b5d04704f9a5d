import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { classifyPullError, imagesOptionsFromConfig, parseImageReference, registryAuthHeader, type ImageReference } from "../../src/containers/Images.js"

const ref = (image: string): ImageReference => Either.getOrThrow(parseImageReference(image))
const D = `sha256:${"ab".repeat(32)}`

describe("parseImageReference", () => {
  const table: ReadonlyArray<readonly [string, Partial<ImageReference> | string]> = [
    ["registry.fedoraproject.org/fedora:40", { registry: "registry.fedoraproject.org", name: "registry.fedoraproject.org/fedora", tag: "40", digest: undefined, qualified: true }],
    ["127.0.0.1:5000/a/b", { registry: "127.0.0.1:5000", name: "127.0.0.1:5000/a/b", tag: undefined, qualified: true }],
    [`quay.io/centos/centos@${D}`, { registry: "quay.io", tag: undefined, digest: D }],
    [`quay.io/centos/centos:stream9@${D}`, { registry: "quay.io", tag: "stream9", digest: D }],
    ["localhost/koji-adjutant-bootstrap:latest", { registry: "localhost", tag: "latest", qualified: true }],
    ["fedora:40", { registry: "docker.io", name: "fedora", tag: "40", qualified: false }],
    ["library/fedora", { registry: "docker.io", name: "library/fedora", qualified: false }],
    ["host:5000/x:tag-1.2_3", { registry: "host:5000", tag: "tag-1.2_3" }],
    ["", "empty"],
    ["Bad..Ref:x", "repository"],
    ["quay.io/UPPER:1", "repository"],
    ["quay.io/a@sha256:xyz", "digest"],
    ["quay.io/a:bad tag", "tag"]
  ]
  for (const [input, expected] of table) {
    it(JSON.stringify(input), () => {
      const parsed = parseImageReference(input)
      if (typeof expected === "string") {
        assert.isTrue(Either.isLeft(parsed))
        if (Either.isLeft(parsed)) assert.include(parsed.left, expected)
      } else {
        assert.isTrue(Either.isRight(parsed), String(Either.isLeft(parsed) ? parsed.left : ""))
        if (Either.isRight(parsed)) for (const [k, v] of Object.entries(expected)) assert.deepStrictEqual(parsed.right[k as keyof ImageReference], v, k)
      }
    })
  }
})

const decodeHeader = (header: string | undefined): unknown => {
  assert.isDefined(header)
  // Go's base64.URLEncoding: URL alphabet, padded.
  assert.match(header ?? "", /^[A-Za-z0-9_-]*={0,2}$/)
  assert.strictEqual((header ?? "").length % 4, 0)
  return JSON.parse(Buffer.from(header ?? "", "base64url").toString("utf8"))
}

describe("registryAuthHeader", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64")
  const file = JSON.stringify({
    auths: {
      "quay.io": { auth: b64("general:pw1") },
      "quay.io/team": { auth: b64("team:pw:with:colons") },
      "https://registry.example:8443/v2/": { username: "u", password: "p" },
      "other.example": { auth: b64("x:y") }
    }
  })
  it("sends only the image's registry, decoding base64 user:password", () => {
    assert.deepStrictEqual(decodeHeader(Either.getOrThrow(registryAuthHeader(file, ref("quay.io/else/img:1")))), {
      "quay.io": { username: "general", password: "pw1" }
    })
  })
  it("prefers the most specific host/namespace key; passwords may contain colons", () => {
    assert.deepStrictEqual(decodeHeader(Either.getOrThrow(registryAuthHeader(file, ref("quay.io/team/img:1")))), {
      "quay.io": { username: "team", password: "pw:with:colons" }
    })
  })
  it("accepts scheme and /v2/ suffixed keys and plain username/password", () => {
    assert.deepStrictEqual(decodeHeader(Either.getOrThrow(registryAuthHeader(file, ref("registry.example:8443/a:1")))), {
      "registry.example:8443": { username: "u", password: "p" }
    })
  })
  it("no entry: no header", () => {
    assert.isUndefined(Either.getOrThrow(registryAuthHeader(file, ref("ghcr.io/a/b:1"))))
    assert.isUndefined(Either.getOrThrow(registryAuthHeader("{}", ref("ghcr.io/a/b:1"))))
  })
  it("a namespace key does not match a sibling prefix", () => {
    assert.deepStrictEqual(decodeHeader(Either.getOrThrow(registryAuthHeader(file, ref("quay.io/teamx/img:1")))), {
      "quay.io": { username: "general", password: "pw1" }
    })
  })
  it("rejects non-JSON and an auth without a colon", () => {
    assert.isTrue(Either.isLeft(registryAuthHeader("{nope", ref("quay.io/a:1"))))
    const bad = JSON.stringify({ auths: { "quay.io": { auth: b64("nocolon") } } })
    assert.isTrue(Either.isLeft(registryAuthHeader(bad, ref("quay.io/a:1"))))
  })
})

describe("classifyPullError", () => {
  const r = ref("reg.example:5000/a/b:1")
  const ctx = { tlsVerify: true, authFile: "/etc/kojid/auth.json" }
  const table: ReadonlyArray<readonly [string, string, ReadonlyArray<string>]> = [
    ['pinging container registry reg.example:5000: Get "https://reg.example:5000/v2/": dial tcp 10.0.0.1:5000: connect: connection refused', "Unreachable", ["reg.example:5000"]],
    ["dial tcp: lookup reg.example: no such host", "Unreachable", ["reg.example:5000"]],
    ["reading manifest 1 in reg.example:5000/a/b: unauthorized: authentication required", "Auth", ["/etc/kojid/auth.json", "reg.example:5000"]],
    ['Get "https://reg.example:5000/v2/": x509: certificate signed by unknown authority', "Tls", ["certs.d/reg.example:5000/ca.crt", "insecure_registries"]],
    ['Get "https://reg.example:5000/v2/": http: server gave HTTP response to HTTPS client', "Tls", ["plain HTTP", "insecure_registries"]],
    ["reading manifest 1 in reg.example:5000/a/b: manifest unknown: manifest unknown", "NotFound", ["tag 1"]],
    ["something odd happened", "Podman", ["reg.example:5000"]]
  ]
  for (const [text, reason, mentions] of table) {
    it(`${reason}: ${text.slice(0, 60)}`, () => {
      const e = classifyPullError(r, text, ctx)
      assert.strictEqual(e.reason, reason)
      assert.strictEqual(e.image, r.original)
      for (const m of mentions) assert.include(e.message, m)
      assert.include(e.message, text, "podman's own text is kept")
    })
  }
})

describe("imagesOptionsFromConfig", () => {
  it.effect("state file and pull timeout come from [adjutant] image_state_file and image_pull_timeout", () =>
    Effect.gen(function* () {
      const defaults = imagesOptionsFromConfig(yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest()))
      assert.strictEqual(defaults.stateFile, "/var/lib/koji-adjutant/images.json")
      assert.isTrue(Duration.equals(Duration.decode(defaults.pullTimeout ?? 0), Duration.minutes(30)))
      const set = imagesOptionsFromConfig(
        yield* Effect.provide(AdjutantConfig, AdjutantConfig.layerTest({ adjutant: { image_state_file: "/srv/images.json", image_pull_timeout: 45 } }))
      )
      assert.strictEqual(set.stateFile, "/srv/images.json")
      assert.isTrue(Duration.equals(Duration.decode(set.pullTimeout ?? 0), Duration.seconds(45)))
    }))
})
