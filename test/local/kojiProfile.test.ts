/**
 * koji client profiles read as the koji CLI reads them (koji.read_config, cli/koji get_options),
 * from files in a temporary /etc and home.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
  expandUser, type KojiConfigError, kojiConfigPaths, type KojiProfile, type KojiProfileRequest, passwdHome, readKojiProfile
} from "../../src/local/kojiProfile.js"

interface Tree {
  readonly etc: string
  readonly home: string
  /** Writes a file under the tree's root (`etc/…` or `home/…`). */
  readonly write: (rel: string, text: string) => string
}

/** An empty etc/ and home/ under a temp dir, removed with the scope. */
const tree = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "koji-profile-"))),
  (root) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
).pipe(Effect.map((root): Tree => {
  const etc = path.join(root, "etc")
  const home = path.join(root, "home")
  fs.mkdirSync(etc)
  fs.mkdirSync(home)
  return {
    etc,
    home,
    write: (rel, text) => {
      const file = path.join(root, rel)
      fs.mkdirSync(path.dirname(file), { recursive: true })
      fs.writeFileSync(file, text)
      return file
    }
  }
}))

const noUsers = (): undefined => undefined

const request = (t: Tree, more: Partial<KojiProfileRequest> = {}): KojiProfileRequest => ({
  profile: "koji",
  paths: kojiConfigPaths(t.home, { etc: t.etc, userHome: noUsers }),
  home: t.home,
  userHome: noUsers,
  ...more
})

const read = (t: Tree, more: Partial<KojiProfileRequest> = {}): Effect.Effect<KojiProfile, KojiConfigError> =>
  readKojiProfile(request(t, more))

const fail = (t: Tree, more: Partial<KojiProfileRequest> = {}): Effect.Effect<KojiConfigError, KojiProfile> =>
  Effect.flip(read(t, more))

describe("kojiConfigPaths", () => {
  it("lists koji's files in read_config's order, later ones winning", () => {
    assert.deepStrictEqual(kojiConfigPaths("/home/u").map((p) => p.path), [
      "/etc/koji.conf.d", "/etc/koji.conf", "/home/u/.koji/config.d", "/home/u/.koji/config"
    ])
  })

  it("puts -c FILE (strict, ~ expanded) in place of the user's two entries", () => {
    assert.deepStrictEqual(kojiConfigPaths("/home/u", { configFile: "~/my.conf" }), [
      { path: "/etc/koji.conf.d" }, { path: "/etc/koji.conf" }, { path: "/home/u/my.conf", strict: true }
    ])
  })
})

describe("expandUser (os.path.expanduser)", () => {
  const users = (name: string) => (name === "builder" ? "/srv/builder/" : undefined)
  it("expands ~ and ~/ with the home directory and ~user with that user's", () => {
    assert.strictEqual(expandUser("~", "/home/u", users), "/home/u")
    assert.strictEqual(expandUser("~/a/b", "/home/u/", users), "/home/u/a/b")
    assert.strictEqual(expandUser("~builder/ca.crt", "/home/u", users), "/srv/builder/ca.crt")
  })

  it("leaves unknown users, ~ inside a path and plain paths alone; a home of / stays /", () => {
    assert.strictEqual(expandUser("~nobody-here/x", "/home/u", users), "~nobody-here/x")
    assert.strictEqual(expandUser("/a/~/b", "/home/u", users), "/a/~/b")
    assert.strictEqual(expandUser("rel/path", "/home/u", users), "rel/path")
    assert.strictEqual(expandUser("~", "/", users), "/")
    assert.strictEqual(expandUser("~/x", "/", users), "/x")
  })

  it.scoped("finds another user's home in a passwd file", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const passwd = t.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nkoji:x:990:990:Koji:/var/lib/koji:/sbin/nologin\n")
      assert.strictEqual(passwdHome("koji", passwd), "/var/lib/koji")
      assert.isUndefined(passwdHome("nobody-here", passwd))
      assert.strictEqual(expandUser("~koji/.koji/config", "/home/u", (n) => passwdHome(n, passwd)), "/var/lib/koji/.koji/config")
    }))
})

describe("readKojiProfile", () => {
  it.scoped("later files win: /etc/koji.conf.d, /etc/koji.conf, ~/.koji/config.d, ~/.koji/config", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const f1 = t.write("etc/koji.conf.d/site.conf",
        "[koji]\nserver = https://one/kojihub\nweburl = https://one/koji\ntopurl = https://one/kojifiles\ntopdir = /one\n")
      const f2 = t.write("etc/koji.conf", "[koji]\nserver = https://two/kojihub\nweburl = https://two/koji\ntopurl = https://two/kojifiles\n")
      const f3 = t.write("home/.koji/config.d/mine.conf", "[koji]\nserver = https://three/kojihub\nweburl = https://three/koji\n")
      const f4 = t.write("home/.koji/config", "[koji]\nweburl = https://four/koji\n")
      const p = yield* read(t)
      assert.strictEqual(p.topdir, "/one")
      assert.strictEqual(p.topurl, "https://two/kojifiles")
      assert.strictEqual(p.server, "https://three/kojihub")
      assert.strictEqual(p.weburl, "https://four/koji")
      assert.deepStrictEqual(p.files, [f1, f2, f3, f4])
      assert.isTrue(p.found)
      assert.strictEqual(p.profile, "koji")
    }))

  it.scoped("reads a config.d directory's *.conf files in name order, nothing else", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf.d/10-a.conf", "[koji]\nserver = https://a/kojihub\ntopurl = https://a/files\n")
      t.write("etc/koji.conf.d/9-c.conf", "[koji]\nserver = https://c/kojihub\n")
      t.write("etc/koji.conf.d/20-b.conf", "[koji]\nserver = https://b/kojihub\ntopurl = https://b/files\n")
      t.write("etc/koji.conf.d/zz.conf.rpmsave", "[koji]\nserver = https://rpmsave/kojihub\n")
      t.write("etc/koji.conf.d/README", "not a config\n")
      fs.mkdirSync(path.join(t.etc, "koji.conf.d", "zz-dir.conf"))
      const p = yield* read(t)
      // "10-a" < "20-b" < "9-c": names compare as strings, so 9-c comes last and wins.
      assert.strictEqual(p.server, "https://c/kojihub")
      assert.strictEqual(p.topurl, "https://b/files")
      assert.deepStrictEqual(p.files.map((f) => path.basename(f)), ["10-a.conf", "20-b.conf", "9-c.conf"])
    }))

  it.scoped("[koji] is the default profile; another profile is its own section, names case-sensitive", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\nserver = https://prod/kojihub\n\n[stg]\nserver = https://stg/kojihub\n")
      assert.strictEqual((yield* read(t)).server, "https://prod/kojihub")
      const stg = yield* read(t, { profile: "stg" })
      assert.strictEqual(stg.server, "https://stg/kojihub")
      assert.strictEqual(stg.profile, "stg")
      const upper = yield* fail(t, { profile: "Koji" })
      assert.strictEqual(upper.reason, "MissingProfile")
    }))

  it.scoped("a missing profile is one line naming the profile, the files read and the profiles there", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const f = t.write("etc/koji.conf", "[koji]\nserver = https://prod/kojihub\n[stg]\nserver = https://stg/kojihub\n")
      const e = yield* fail(t, { profile: "fedora" })
      assert.strictEqual(e.reason, "MissingProfile")
      assert.strictEqual(e.profile, "fedora")
      assert.include(e.message, "no configuration for koji profile name: fedora")
      assert.include(e.message, f)
      assert.include(e.message, "[koji], [stg]")
      assert.notInclude(e.message, "\n")
    }))

  it.scoped("with no config file at all the error says where it looked", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const e = yield* fail(t)
      assert.strictEqual(e.reason, "MissingProfile")
      assert.include(e.message, "no koji config file found")
      assert.include(e.message, path.join(t.etc, "koji.conf"))
      assert.include(e.message, path.join(t.home, ".koji", "config"))
    }))

  it.scoped("a profile that is not required falls back to koji's defaults and the overrides", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const p = yield* read(t, { required: false, overrides: { server: "https://given/kojihub", topurl: "https://given/kojifiles" } })
      assert.isFalse(p.found)
      assert.strictEqual(p.server, "https://given/kojihub")
      assert.strictEqual(p.topurl, "https://given/kojifiles")
      assert.strictEqual(p.weburl, "http://localhost/koji")
      assert.strictEqual(p.topdir, "/mnt/koji")
      assert.strictEqual(p.timeout, 43200)
      assert.strictEqual(p.poll_interval, 6)
      assert.isFalse(p.anon_retry)
      assert.isFalse(p.offline_retry)
      assert.strictEqual(p.cert, "")
      assert.strictEqual(p.serverca, "")
    }))

  it.scoped("command-line values win over the files, as the CLI's options do", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\nserver = https://file/kojihub\ntopurl = https://file/kojifiles\nweburl = https://file/koji\n")
      const p = yield* read(t, { overrides: { server: "https://flag/kojihub", topdir: "~/topdir" } })
      assert.strictEqual(p.server, "https://flag/kojihub")
      assert.strictEqual(p.topurl, "https://file/kojifiles")
      assert.strictEqual(p.topdir, path.join(t.home, "topdir"))
    }))

  it.scoped("-c FILE replaces the user's files and must exist", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\nserver = https://etc/kojihub\ntopurl = https://etc/files\n")
      t.write("home/.koji/config", "[koji]\nserver = https://user/kojihub\n")
      const other = t.write("home/other.conf", "[koji]\nserver = https://other/kojihub\n")
      const paths = kojiConfigPaths(t.home, { etc: t.etc, configFile: "~/other.conf", userHome: noUsers })
      const p = yield* read(t, { paths })
      assert.strictEqual(p.server, "https://other/kojihub")
      assert.strictEqual(p.topurl, "https://etc/files")
      assert.deepStrictEqual(p.files, [path.join(t.etc, "koji.conf"), other])
      const missing = yield* fail(t, { paths: kojiConfigPaths(t.home, { etc: t.etc, configFile: "~/nope.conf" }) })
      assert.strictEqual(missing.reason, "BadFile")
      assert.include(missing.message, `Config file ${path.join(t.home, "nope.conf")} can't be opened.`)
      fs.mkdirSync(path.join(t.home, "empty.d"))
      const empty = yield* fail(t, { paths: kojiConfigPaths(t.home, { etc: t.etc, configFile: "~/empty.d" }) })
      assert.include(empty.message, `No config files found in directory: ${path.join(t.home, "empty.d")}`)
    }))

  it.scoped("types values as koji does and ignores options koji does not know", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", [
        "[koji]", "server = https://hub/kojihub", "max_retries = 3", "timeout = 1_000", "anon_retry = yes",
        "offline_retry = On", "use_fast_upload = 0", "no_ssl_verify = true", "authtype = kerberos", "pyver = 3",
        "krb_rdns = false", "krbservice = host", ""
      ].join("\n"))
      const p = yield* read(t)
      assert.strictEqual(p.max_retries, 3)
      assert.strictEqual(p.timeout, 1000)
      assert.isTrue(p.anon_retry)
      assert.isTrue(p.offline_retry)
      assert.isFalse(p.use_fast_upload)
      assert.isTrue(p.no_ssl_verify)
      assert.strictEqual(p.authtype, "kerberos")
      assert.strictEqual(p.pyver, 3)
      assert.notProperty(p, "krb_rdns")
    }))

  it.scoped("no_ssl_verify = False keeps verification on (koji would read the string as true)", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\nno_ssl_verify = False\n")
      assert.isFalse((yield* read(t)).no_ssl_verify)
    }))

  it.scoped("a bad value is one line naming the option, the profile, the file and the line", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const f = t.write("home/.koji/config", "[koji]\nserver = https://hub/kojihub\ntimeout = ten\n")
      const e = yield* fail(t)
      assert.strictEqual(e.reason, "BadValue")
      assert.strictEqual(e.key, "timeout")
      assert.strictEqual(e.file, f)
      assert.strictEqual(e.line, 3)
      assert.include(e.message, "value for timeout config option must be a valid integer")
      assert.include(e.message, `${f}, line 3`)
      assert.include(e.message, "[koji]")
      t.write("home/.koji/config", "[koji]\ntimeout = 60 # a minute\n")
      assert.include((yield* fail(t)).message, "no inline comments")
      t.write("home/.koji/config", "[koji]\nanon_retry = maybe\n")
      const b = yield* fail(t)
      assert.strictEqual(b.key, "anon_retry")
      assert.include(b.message, "must be a boolean")
    }))

  it.scoped("a bad value in another profile does not matter", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\nserver = https://hub/kojihub\n[broken]\ntimeout = ten\nserver = http://x/%zz\n")
      assert.strictEqual((yield* read(t)).server, "https://hub/kojihub")
    }))

  it.scoped("expands %(name)s from the profile and [DEFAULT], %% is a literal %, a lone % is an error", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", [
        "[DEFAULT]", "base = https://koji.example.com", "topdir = /mnt/koji-default", "",
        "[koji]", "server = %(base)s/kojihub", "topurl = %(BASE)s/kojifiles", "weburl = %(web)s", "web = %(base)s/koji%%20ui", ""
      ].join("\n"))
      const p = yield* read(t)
      assert.strictEqual(p.server, "https://koji.example.com/kojihub")
      assert.strictEqual(p.topurl, "https://koji.example.com/kojifiles")
      assert.strictEqual(p.weburl, "https://koji.example.com/koji%20ui")
      assert.strictEqual(p.topdir, "/mnt/koji-default")

      t.write("home/.koji/config", "[koji]\nweburl = https://hub/koji%20ui\n")
      const lone = yield* fail(t)
      assert.strictEqual(lone.reason, "BadValue")
      assert.strictEqual(lone.key, "weburl")
      assert.include(lone.message, "'%' must be followed by '%' or '('")

      t.write("home/.koji/config", "[koji]\nweburl = %(nothere)s/koji\n")
      assert.include((yield* fail(t)).message, "%(nothere)s")

      t.write("home/.koji/config", "[koji]\na = %(b)s\nb = %(a)s\n")
      assert.include((yield* fail(t)).message, "nested too deeply")
    }))

  it.scoped("a file configparser cannot read is an error naming the file and line", () =>
    Effect.gen(function*() {
      const t = yield* tree
      const f = t.write("etc/koji.conf", "server = https://hub/kojihub\n")
      const e = yield* fail(t)
      assert.strictEqual(e.reason, "BadFile")
      assert.strictEqual(e.file, f)
      assert.strictEqual(e.line, 1)
      assert.include(e.message, "no section header")

      t.write("etc/koji.conf", "[koji]\nserver = https://a/kojihub\nserver = https://b/kojihub\n")
      assert.include((yield* fail(t)).message, "set twice")

      fs.writeFileSync(f, Buffer.from([0x5b, 0x6b, 0x6f, 0x6a, 0x69, 0x5d, 0x0a, 0xff, 0xfe, 0x0a]))
      assert.include((yield* fail(t)).message, "not UTF-8")
    }))

  it.scoped("cert and serverca default to ~/.koji/client.crt and serverca.crt when they exist; ~ is expanded", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\nserver = https://hub/kojihub\n")
      const none = yield* read(t)
      assert.strictEqual(none.cert, "")
      assert.strictEqual(none.serverca, "")

      const crt = t.write("home/.koji/client.crt", "PEM")
      const ca = t.write("home/.koji/serverca.crt", "PEM")
      const found = yield* read(t)
      assert.strictEqual(found.cert, crt)
      assert.strictEqual(found.serverca, ca)

      t.write("etc/koji.conf", "[koji]\ncert = ~/certs/me.pem\nserverca = ~builder/ca.pem\ntopdir = ~/mnt/koji\n")
      const set = yield* read(t, { userHome: (n) => (n === "builder" ? "/srv/builder" : undefined) })
      assert.strictEqual(set.cert, path.join(t.home, "certs", "me.pem"))
      assert.strictEqual(set.serverca, "/srv/builder/ca.pem")
      assert.strictEqual(set.topdir, path.join(t.home, "mnt", "koji"))
    }))

  it.scoped("the obsolete pkgurl gives topurl without /packages, with koji's warning", () =>
    Effect.gen(function*() {
      const t = yield* tree
      t.write("etc/koji.conf", "[koji]\npkgurl = https://hub/kojifiles/packages/\n")
      const p = yield* read(t)
      assert.strictEqual(p.topurl, "https://hub/kojifiles")
      assert.deepStrictEqual(p.warnings, ['Warning: the pkgurl option is obsolete, using topurl="https://hub/kojifiles"'])

      t.write("etc/koji.conf", "[koji]\npkgurl = https://hub/packages\ntopurl = https://hub/files\n")
      const both = yield* read(t)
      assert.strictEqual(both.topurl, "https://hub/files")
      assert.deepStrictEqual(both.warnings, ["Warning: the pkgurl option is obsolete"])
    }))
})
