/**
 * runroot.conf parsing and the plugin's mount rules (no podman): sections in numeric order,
 * path_subs, safe roots, `..` escapes, ro → rw for requested mounts, bad configs; upload_logs confined to the buildroot.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { defaultMounts, extraMounts, parseRunrootConfig, pathParams, readRunrootConfig, toBind } from "../../src/runroot/config.js"
import { commandName, commandString, inRoot } from "../../src/tasks/runroot.js"

const CONF = `[runroot]
internal_dev_setup = False

[paths]
default_mounts = /mnt/koji/packages,/mnt/iso
safe_roots = /mnt/koji/compose
path_subs =
  /mnt/koji/compose/old/,/mnt/koji/compose/new/

[path10]
mountpoint = /mnt/koji/compose
path = /srv/compose
fstype = none
options = ro,bind

[path2]
mountpoint = /mnt/koji
path = nfs.example.com:/koji
fstype = nfs
options = ro,hard,intr

[path3]
mountpoint = /mnt/iso
path = /srv/iso
fstype = none
options = ro,bind
`

const config = Either.getOrThrow(parseRunrootConfig(CONF, "runroot.conf"))

describe("runroot.conf", () => {
  it("parses sections in numeric order and the [paths] lists", () => {
    assert.deepStrictEqual(config.paths.map((p) => p.mountpoint), ["/mnt/koji", "/mnt/iso", "/mnt/koji/compose"])
    assert.deepStrictEqual(config.defaultMounts, ["/mnt/koji/packages", "/mnt/iso"])
    assert.deepStrictEqual(config.safeRoots, ["/mnt/koji/compose"])
    assert.deepStrictEqual(config.pathSubs, [["/mnt/koji/compose/old/", "/mnt/koji/compose/new/"]])
    assert.isFalse(config.internalDevSetup)
  })

  it("resolves paths through the first matching mountpoint, ro becoming rw for requested mounts", () => {
    // /mnt/koji (path2) comes first in numeric order, as in the plugin.
    assert.deepStrictEqual(Either.getOrThrow(pathParams(config, "/mnt/koji/packages")), {
      source: "nfs.example.com:/koji/packages", mountpoint: "/mnt/koji/packages", fstype: "nfs", options: ["ro", "hard", "intr"]
    })
    assert.deepStrictEqual(Either.getOrThrow(pathParams(config, "/mnt/iso", true)).options, ["rw", "bind"])
    assert.strictEqual(Either.getOrThrow(defaultMounts(config)).length, 2)
    const m = Either.getOrThrow(extraMounts(config, ["/mnt/koji/compose/old/x/../y"]))
    assert.strictEqual(m[0]!.mountpoint, "/mnt/koji/compose/new/y")
    assert.deepStrictEqual(m[0]!.options, ["rw", "hard", "intr"])
  })

  it("refuses mounts outside the safe roots", () => {
    for (const bad of ["/etc", "/mnt/koji/compose/../../etc", "/mnt/koji/packages"]) {
      const r = extraMounts(config, [bad])
      assert.isTrue(Either.isLeft(r), bad)
      if (Either.isLeft(r)) assert.match(r.left.faultString, /^read-write mount point is not safe: /)
    }
  })

  it("gives containers bind mounts only, with existing sources", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "runroot-conf-"))
    try {
      mkdirSync(path.join(dir, "iso"))
      const ok = toBind({ source: path.join(dir, "iso"), mountpoint: "/mnt/iso", fstype: "none", options: ["ro", "bind"] })
      assert.deepStrictEqual(Either.getOrThrow(ok), { source: path.join(dir, "iso"), destination: "/mnt/iso", writable: false })
      const missing = toBind({ source: path.join(dir, "nope"), mountpoint: "/mnt/x", fstype: "none", options: ["rw", "bind"] })
      assert.isTrue(Either.isLeft(missing) && missing.left.faultString.startsWith("No such directory or mount: "))
      const nfs = toBind({ source: "h:/x", mountpoint: "/mnt/x", fstype: "nfs", options: ["ro"] })
      assert.isTrue(Either.isLeft(nfs) && nfs.left.faultString.includes("only bind mounts"))
      const bg = toBind({ source: dir, mountpoint: "/mnt/x", fstype: "none", options: ["bind", "bg"] })
      assert.isTrue(Either.isLeft(bg) && bg.left.faultString === "bad config: background mount not allowed")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("rejects bad configs with the plugin's messages; a missing file allows nothing", () => {
    const rel = parseRunrootConfig("[paths]\nsafe_roots = relative/path\n", "f")
    assert.isTrue(Either.isLeft(rel) && rel.left.message.startsWith("bad config: all paths (default_mounts, safe_roots, path_subs) needs to be absolute"))
    const sub = parseRunrootConfig("[paths]\npath_subs =\n  /a,/b,/c\n", "f")
    assert.isTrue(Either.isLeft(sub) && sub.left.message.startsWith("bad runroot substitution"))
    const missing = parseRunrootConfig("[path0]\nmountpoint = /mnt\n", "f")
    assert.isTrue(Either.isLeft(missing) && missing.left.message === "bad config: missing options in path0 section")
    const none = Either.getOrThrow(readRunrootConfig("/nonexistent/runroot.conf"))
    assert.deepStrictEqual(none.safeRoots, [])
    assert.isTrue(Either.isLeft(extraMounts(none, ["/mnt/anything"])))
  })

  it("names the command as the plugin's result does", () => {
    assert.strictEqual(commandName("FOO=1 /usr/bin/pungi --config x"), "pungi")
    assert.strictEqual(commandName(["/bin/sh", "-c", "true"]), "sh")
    assert.strictEqual(commandName(""), "(none)")
    assert.strictEqual(commandString(["echo", "it's"]), "'echo' 'it'\\''s'")
  })
})

describe("upload_logs", () => {
  it("reads only regular files inside the buildroot", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "runroot-root-"))
    try {
      const root = path.join(dir, "root")
      mkdirSync(path.join(root, "tmp"), { recursive: true })
      writeFileSync(path.join(root, "tmp", "pungi.log"), "log\n")
      writeFileSync(path.join(dir, "host-secret"), "secret\n")
      symlinkSync(path.join(dir, "host-secret"), path.join(root, "tmp", "escape"))
      symlinkSync("pungi.log", path.join(root, "tmp", "inside"))
      assert.strictEqual(inRoot(root, "/tmp/pungi.log"), path.join(realpathSync(root), "tmp", "pungi.log"))
      assert.strictEqual(inRoot(root, "/tmp/inside"), path.join(realpathSync(root), "tmp", "pungi.log"))
      assert.isUndefined(inRoot(root, "/tmp/escape"))
      assert.isUndefined(inRoot(root, "/../host-secret"))
      assert.isUndefined(inRoot(root, "/tmp"))
      assert.isUndefined(inRoot(root, "/tmp/missing.log"))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
