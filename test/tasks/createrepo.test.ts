/**
 * kojid's mergerepo_c command lines (merge modes, blocklist, `$arch`, arch filtering,
 * --arch-expand by version, mixed modes refused) and its shell formatting of failures.
 */
import { assert, describe, it } from "@effect/vitest"
import type { ExternalRepo } from "../../src/hub/schemas.js"
import { mergeCommand } from "../../src/tasks/createrepo.js"
import { formatShellCmd, parseStatus } from "../../src/tasks/repoCommon.js"

const ext = (url: string, more: Partial<ExternalRepo> = {}): ExternalRepo => ({
  external_repo_id: 1, external_repo_name: "e", url, priority: 5, ...more
})

describe("createrepo merge command", () => {
  it("koji mode: --koji, blocklist, arch, output, --arch-expand, comps, premerge repo first", () => {
    const r = mergeCommand([ext("http://x/$arch/os/")], "x86_64", "/w/repo_3_premerge", "/w/repo", "/t/repos/f/3/x86_64", "/t/groups/comps.xml", [0, 17, 3])
    assert.deepStrictEqual(r, {
      cmd: [
        "/usr/bin/mergerepo_c", "--koji", "-b", "/t/repos/f/3/x86_64/blocklist", "-a", "x86_64", "-o", "/w/repo", "--arch-expand",
        "-g", "/t/groups/comps.xml", "-r", "file:///w/repo_3_premerge/", "-r", "http://x/x86_64/os/"
      ],
      urls: ["file:///w/repo_3_premerge/", "http://x/x86_64/os/"]
    })
  })

  it("simple and bare modes, arch filtering, old mergerepo_c, mixed modes", () => {
    const simple = mergeCommand([ext("u1", { merge_mode: "simple" })], "aarch64", "/p", "/o", "/r", undefined, [0, 15, 0])
    assert.isFalse(typeof simple === "string")
    if (typeof simple !== "string") {
      assert.deepStrictEqual(simple.cmd.slice(0, 3), ["/usr/bin/mergerepo_c", "--koji", "--simple"])
      assert.notInclude(simple.cmd, "--arch-expand")
    }
    const bare = mergeCommand([ext("u1", { merge_mode: "bare" }), ext("u2", { merge_mode: "bare", arches: "x86_64 i686" })], "aarch64", "/p", "/o", "/r", undefined, [0, 17, 3])
    if (typeof bare === "string") throw new Error(bare)
    assert.deepStrictEqual(bare.cmd.slice(0, 3), ["/usr/bin/mergerepo_c", "--pkgorigins", "--all"])
    assert.notInclude(bare.cmd, "-b")
    assert.deepStrictEqual(bare.urls, ["file:///p/", "u1"])
    assert.strictEqual(mergeCommand([ext("u", { merge_mode: "simple" })], "x86_64", "/p", "/o", "/r", undefined, undefined),
      "mergerepo_c is not installed or has low version: None (0.13.0 needed for --simple)")
    const mixed = mergeCommand([ext("a"), ext("b", { merge_mode: "bare" })], "x86_64", "/p", "/o", "/r", undefined, [0, 17, 3])
    assert.strictEqual(mixed, "Found multiple merge modes for external repos: koji, bare\n")
  })

  it("formats failures as koji's format_shell_cmd and parseStatus", () => {
    const cmd = ["/usr/bin/createrepo_c", "--error-exit-val", "-vd", "-o", "/a/very/long/output/directory/for/the/task/repo", "-i", "/b/pkglist"]
    assert.strictEqual(formatShellCmd(cmd), "/usr/bin/createrepo_c --error-exit-val -vd -o \\\n/a/very/long/output/directory/for/the/task/repo -i /b/pkglist")
    assert.strictEqual(parseStatus(2, "x"), "x exited with status 2")
    assert.strictEqual(parseStatus(-1, "x"), "x was killed by signal 9")
  })
})
