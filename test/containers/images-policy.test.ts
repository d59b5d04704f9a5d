import { assert, describe, it } from "@effect/vitest"
import { configuredImages, globMatch, selectImage, type ImagePolicyConfig } from "../../src/containers/ImagePolicy.js"

const base: ImagePolicyConfig = {
  bootstrap_image: "localhost/koji-adjutant-bootstrap:latest",
  image_rules: [
    { tag: "f4[0-9]-build", arch: "aarch64", image: "registry.example/fedora:40-arm" },
    { tag: "f4?-build", arch: null, image: "registry.example/fedora:40" },
    { tag: "epel9-*", arch: "x86_64", image: "registry.example/centos:stream9" },
    { tag: "epel*", arch: null, image: "registry.example/ubi:9" },
    { tag: "[!a-e]*-legacy", arch: "i?86", image: "registry.example/old:1" }
  ],
  mock_bootstrap_image: false
}

describe("ImagePolicy.selectImage", () => {
  const table: ReadonlyArray<{
    readonly name: string
    readonly config?: Partial<ImagePolicyConfig>
    readonly tag: string | null
    readonly arch: string
    readonly extra?: Record<string, unknown> | null
    readonly image: string
    readonly source: "tag-extra" | "rule" | "default"
    readonly index?: number
  }> = [
    { name: "no rule matches: default", tag: "rhel-8-build", arch: "x86_64", image: base.bootstrap_image, source: "default" },
    { name: "no tag: default", tag: null, arch: "x86_64", image: base.bootstrap_image, source: "default" },
    { name: "tag and arch glob", tag: "f41-build", arch: "aarch64", image: "registry.example/fedora:40-arm", source: "rule", index: 0 },
    { name: "first match wins over a later match", tag: "f41-build", arch: "x86_64", image: "registry.example/fedora:40", source: "rule", index: 1 },
    { name: "arch glob must match too", tag: "epel9-build", arch: "ppc64le", image: "registry.example/ubi:9", source: "rule", index: 3 },
    { name: "arch matches", tag: "epel9-build", arch: "x86_64", image: "registry.example/centos:stream9", source: "rule", index: 2 },
    { name: "negated class and ?", tag: "zeta-legacy", arch: "i686", image: "registry.example/old:1", source: "rule", index: 4 },
    { name: "negated class excludes", tag: "beta-legacy", arch: "i686", image: base.bootstrap_image, source: "default" },
    { name: "glob is anchored", tag: "xf41-build", arch: "x86_64", image: base.bootstrap_image, source: "default" },
    { name: "glob is case-sensitive", tag: "EPEL9-build", arch: "x86_64", image: base.bootstrap_image, source: "default" },
    {
      name: "tag extra ignored while mock_bootstrap_image is off",
      tag: "f41-build",
      arch: "x86_64",
      extra: { "mock.bootstrap_image": "quay.example/custom:1" },
      image: "registry.example/fedora:40",
      source: "rule",
      index: 1
    },
    {
      name: "tag extra wins when mock_bootstrap_image is on",
      config: { mock_bootstrap_image: true },
      tag: "f41-build",
      arch: "x86_64",
      extra: { "mock.bootstrap_image": " quay.example/custom:1 " },
      image: "quay.example/custom:1",
      source: "tag-extra"
    },
    {
      name: "non-string tag extra is ignored",
      config: { mock_bootstrap_image: true },
      tag: "rhel-8-build",
      arch: "x86_64",
      extra: { "mock.bootstrap_image": true },
      image: base.bootstrap_image,
      source: "default"
    },
    {
      name: "empty tag extra is ignored",
      config: { mock_bootstrap_image: true },
      tag: "epel8",
      arch: "x86_64",
      extra: { "mock.bootstrap_image": "" },
      image: "registry.example/ubi:9",
      source: "rule",
      index: 3
    },
    {
      name: "null extra",
      config: { mock_bootstrap_image: true },
      tag: "epel8",
      arch: "x86_64",
      extra: null,
      image: "registry.example/ubi:9",
      source: "rule",
      index: 3
    },
    { name: "no rules at all", config: { image_rules: [] }, tag: "f41-build", arch: "x86_64", image: base.bootstrap_image, source: "default" }
  ]
  for (const row of table) {
    it(row.name, () => {
      const choice = selectImage({ ...base, ...row.config }, { tag: row.tag, arch: row.arch, tagExtra: row.extra })
      assert.strictEqual(choice.image, row.image)
      assert.strictEqual(choice.source, row.source)
      if (choice.source === "rule") assert.strictEqual(choice.index, row.index)
    })
  }
})

describe("ImagePolicy.globMatch (Python fnmatchcase)", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    ["*", "", true],
    ["*", "a/b", true],
    ["f?", "f4", true],
    ["f?", "f", false],
    ["f[0-9]", "f7", true],
    ["f[0-9]", "fx", false],
    ["f[!0-9]", "fx", true],
    ["f[!0-9]", "f7", false],
    ["[]]", "]", true],
    ["[!]]", "]", false],
    ["a[", "a[", true],
    ["a.b", "axb", false],
    ["a+b", "a+b", true],
    ["(x)|y", "(x)|y", true],
    ["x^y$", "x^y$", true],
    ["[a-c^]", "^", true],
    ["[\\]", "\\", true]
  ]
  for (const [glob, value, expected] of table) {
    it(`${JSON.stringify(glob)} ~ ${JSON.stringify(value)} is ${expected}`, () => {
      assert.strictEqual(globMatch(glob, value), expected)
    })
  }
})

describe("ImagePolicy.configuredImages", () => {
  it("lists the default and rule images once each, default first", () => {
    assert.deepStrictEqual(
      configuredImages({
        bootstrap_image: "a:1",
        image_rules: [
          { tag: "x", arch: null, image: "b:1" },
          { tag: "y", arch: null, image: "a:1" },
          { tag: "z", arch: "x86_64", image: "b:1" }
        ]
      }),
      ["a:1", "b:1"]
    )
  })
})
