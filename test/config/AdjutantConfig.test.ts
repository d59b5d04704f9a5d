import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, FastCheck, LogLevel } from "effect"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  AdjutantConfig,
  ConfigError,
  defaultAdjutantOptions,
  defaultKojidOptions,
  effectiveLogLevel,
  effectiveUlimits,
  loadConfig,
  parseConfig,
  podmanSocketPath,
  renderEffectiveConfig,
  type CommandLineFlags,
  type Config
} from "../../src/config/AdjutantConfig.js"

const FILE = "/etc/kojid/kojid.conf"
const noCerts = { exists: () => false }
const BASE = "server = https://hub.example.com/kojihub\ntopurl = https://hub.example.com/kojifiles\n"

/** A [kojid] section with server and topurl, then `body`, then `rest` (other sections). */
const text = (body: string, rest = "") => `[kojid]\n${BASE}${body}\n${rest}`

const ok = (result: Either.Either<Config, ConfigError>): Config => {
  if (Either.isLeft(result)) assert.fail(`expected a config, got: ${result.left.message}`)
  return result.right
}
const err = (result: Either.Either<Config, ConfigError>): ConfigError => {
  if (Either.isRight(result)) assert.fail("expected a ConfigError, got a config")
  return result.left
}
const parseKojid = (body: string, flags: Partial<CommandLineFlags> = {}) => parseConfig(text(body), FILE, flags, noCerts)
const parseAdjutant = (body: string) => parseConfig(text("", `[adjutant]\n${body}\n`), FILE, {}, noCerts)

/** Asserts the error names the key and the file (and the line when given). */
const assertNames = (e: ConfigError, key: string, line?: number) => {
  assert.include(e.message, key)
  assert.include(e.message, FILE)
  assert.strictEqual(e.file, FILE)
  assert.strictEqual(e.key, key)
  if (line !== undefined) {
    assert.strictEqual(e.line, line)
    assert.include(e.message, `line ${line}`)
  }
}

// Written from koji-protocol.md §9 and kojid's get_options; a changed default must fail here.
const KOJID_DEFAULTS: ReadonlyArray<readonly [string, unknown]> = [
  ["sleeptime", 15],
  ["maxjobs", 10],
  ["minspace", 8192],
  ["buildroot_basic_cleanup_delay", 120],
  ["buildroot_final_cleanup_delay", 86400],
  ["failed_buildroot_lifetime", 14400],
  ["literal_task_arches", ""],
  ["admin_emails", null],
  ["log_level", null],
  ["topdir", "/mnt/koji"],
  ["workdir", "/var/tmp/koji"],
  ["chroot_tmpdir", "/chroot_tmpdir"],
  ["pluginpath", "/usr/lib/koji-builder-plugins"],
  ["plugin", []],
  ["mockdir", "/var/lib/mock"],
  ["mockuser", "kojibuilder"],
  ["packager", "Koji"],
  ["vendor", "Koji"],
  ["distribution", "Koji"],
  ["mockhost", "koji-linux-gnu"],
  ["rpmbuild_timeout", 86400],
  ["oz_install_timeout", 0],
  ["xz_options", "-z6T0"],
  ["smtphost", "example.com"],
  ["smtp_user", null],
  ["smtp_pass", null],
  ["from_addr", "Koji Build System <buildsys@example.com>"],
  ["krb_principal", null],
  ["host_principal_format", "compile/%s@EXAMPLE.COM"],
  ["keytab", "/etc/kojid/kojid.keytab"],
  ["ccache", "/var/tmp/kojid.ccache"],
  ["cert", null],
  ["serverca", null],
  ["user", null],
  ["password", null],
  ["retry_interval", 60],
  ["max_retries", 120],
  ["offline_retry", true],
  ["offline_retry_interval", 120],
  ["timeout", null],
  ["no_ssl_verify", false],
  ["use_fast_upload", true],
  ["use_createrepo_c", true],
  ["createrepo_skip_stat", true],
  ["createrepo_update", true],
  ["distrepo_skip_stat", false],
  ["copy_old_repodata", false],
  ["mock_bootstrap_image", false],
  ["pkgurl", null],
  ["allowed_scms", ""],
  ["allowed_scms_use_config", true],
  ["allowed_scms_use_policy", false],
  ["scm_credentials_dir", null],
  ["support_rpm_source_layout", true],
  ["yum_proxy", null],
  [
    "maven_repo_ignore",
    "*.md5 *.sha1 maven-metadata*.xml _maven.repositories _remote.repositories resolver-status.properties *.lastUpdated"
  ],
  ["task_avail_delay", 300],
  ["allow_noverifyssl", false],
  ["allow_password_in_scm_url", false],
  ["build_arch_can_fail", false],
  ["log_timestamps", false],
  ["rlimits", []]
]

const INT_KEYS = [
  "sleeptime", "maxjobs", "minspace", "retry_interval", "max_retries", "offline_retry_interval",
  "failed_buildroot_lifetime", "timeout", "rpmbuild_timeout", "oz_install_timeout",
  "task_avail_delay", "buildroot_basic_cleanup_delay", "buildroot_final_cleanup_delay"
] as const
const BOOL_KEYS = [
  "offline_retry", "use_createrepo_c", "createrepo_skip_stat", "createrepo_update", "use_fast_upload",
  "support_rpm_source_layout", "build_arch_can_fail", "no_ssl_verify", "log_timestamps",
  "allow_noverifyssl", "allowed_scms_use_config", "allowed_scms_use_policy",
  "allow_password_in_scm_url", "distrepo_skip_stat", "copy_old_repodata", "mock_bootstrap_image"
] as const

const get = (config: Config, key: string): unknown => (config.kojid as unknown as Record<string, unknown>)[key]

describe("[kojid] defaults", () => {
  it("every §9 key has kojid's default", () => {
    const config = ok(parseKojid(""))
    for (const [key, value] of KOJID_DEFAULTS) {
      assert.deepStrictEqual(get(config, key), value, key)
      assert.deepStrictEqual((defaultKojidOptions as unknown as Record<string, unknown>)[key], value, `defaultKojidOptions.${key}`)
    }
    // Nothing in KojidOptions escapes the table (server, topurl and topurls are required values).
    const covered = new Set([...KOJID_DEFAULTS.map(([k]) => k), "server", "topurl", "topurls"])
    assert.deepStrictEqual(Object.keys(config.kojid).filter((k) => !covered.has(k)), [])
    assert.strictEqual(config.kojid.server, "https://hub.example.com/kojihub")
    assert.deepStrictEqual(config.kojid.topurls, ["https://hub.example.com/kojifiles"])
    assert.deepStrictEqual(config.flags, {
      fg: false, force_lock: false, verbose: false, debug: false, debug_task: false, debug_xmlrpc: false, debug_mock: false, skip_main: false
    })
  })

  it("every default key is accepted from the file (no key of §9 is 'unknown')", () => {
    for (const [key] of KOJID_DEFAULTS) {
      if (key === "rlimits") continue
      const value = (INT_KEYS as ReadonlyArray<string>).includes(key)
        ? "7"
        : (BOOL_KEYS as ReadonlyArray<string>).includes(key)
          ? "yes"
          : key === "log_level"
            ? "INFO"
            : "x"
      const config = ok(parseKojid(`${key} = ${value}`))
      assert.notDeepEqual(get(config, key), undefined, key)
    }
  })
})

describe("[kojid] ints and booleans", () => {
  it("parses every int key with Python int() rules", () => {
    for (const key of INT_KEYS) {
      assert.strictEqual(get(ok(parseKojid(`${key} = 42`)), key), 42, key)
      assert.strictEqual(get(ok(parseKojid(`${key}=+7`)), key), 7, key)
      assert.strictEqual(get(ok(parseKojid(`${key} = -3`)), key), -3, key)
      assert.strictEqual(get(ok(parseKojid(`${key} = 1_000`)), key), 1000, key)
    }
  })

  it("rejects a bad int naming key, file and line", () => {
    for (const bad of ["abc", "1.5", "0x10", "", "1__0", "15 ; fifteen"]) {
      const e = err(parseKojid(`sleeptime = ${bad}`))
      assertNames(e, "sleeptime", 4)
      assert.include(e.message, "must be a valid integer")
    }
    assert.include(err(parseKojid("maxjobs = 10 # ten")).message, "no inline comments")
  })

  it("parses every bool key in every configparser spelling, any case", () => {
    const spellings: ReadonlyArray<readonly [string, boolean]> = [
      ["1", true], ["yes", true], ["true", true], ["on", true], ["YES", true], ["True", true], ["oN", true],
      ["0", false], ["no", false], ["false", false], ["off", false], ["NO", false], ["False", false], ["OFF", false]
    ]
    for (const key of BOOL_KEYS) {
      for (const [word, value] of spellings) {
        assert.strictEqual(get(ok(parseKojid(`${key} = ${word}`)), key), value, `${key} = ${word}`)
      }
    }
  })

  it("rejects a bad boolean naming key, file and line", () => {
    for (const bad of ["maybe", "2", "", "y", "enabled", "true false"]) {
      const e = err(parseKojid(`no_ssl_verify = ${bad}`))
      assertNames(e, "no_ssl_verify", 4)
      assert.include(e.message, "1/yes/true/on")
    }
  })
})

describe("[kojid] unknown keys and sections", () => {
  it("rejects an unknown key naming it and the file", () => {
    const e = err(parseKojid("sleep_time = 15"))
    assertNames(e, "sleep_time", 4)
    assert.include(e.message, "unknown config option")
  })

  it("rejects keepalive and ca, documented but never accepted by kojid", () => {
    for (const key of ["keepalive", "ca"]) {
      const e = err(parseKojid(`${key} = True`))
      assertNames(e, key)
      assert.include(e.message, "unknown config option")
    }
  })

  it("rejects a section other than [kojid] and [adjutant], as kojid does", () => {
    const e = err(parseConfig(text("", "[kojid-extra]\nfoo = 1\n"), FILE, {}, noCerts))
    assert.include(e.message, "invalid section found in config file")
    assert.include(e.message, "[kojid-extra]")
    assert.include(e.message, FILE)
    assert.strictEqual(e.section, "kojid-extra")
    // Section names are case-sensitive in configparser.
    assert.include(err(parseConfig("[Kojid]\nserver = https://h/kojihub\n", FILE, {}, noCerts)).message, "[Kojid]")
  })
})

describe("INI reading as configparser", () => {
  it("takes key: value, comments, case-insensitive keys and continuation lines", () => {
    const config = ok(
      parseConfig(
        [
          "# a comment",
          "; another",
          "[kojid]",
          "Server: https://hub.example.com/kojihub",
          "TOPURL = https://a.example.com/kojifiles",
          "    https://b.example.com/kojifiles",
          "  ; an indented comment is still a comment",
          "",
          "\thttps://c.example.com/kojifiles",
          "from_addr = Koji <koji@example.com> = ok",
          "host_principal_format = compile/%s@EXAMPLE.COM"
        ].join("\r\n"),
        FILE,
        {},
        noCerts
      )
    )
    assert.strictEqual(config.kojid.server, "https://hub.example.com/kojihub")
    assert.deepStrictEqual(config.kojid.topurls, [
      "https://a.example.com/kojifiles",
      "https://b.example.com/kojifiles",
      "https://c.example.com/kojifiles"
    ])
    assert.strictEqual(config.kojid.topurl, "https://a.example.com/kojifiles")
    assert.strictEqual(config.kojid.from_addr, "Koji <koji@example.com> = ok")
    assert.strictEqual(config.kojid.host_principal_format, "compile/%s@EXAMPLE.COM")
  })

  it("rejects a key set twice in one section, naming both lines", () => {
    const e = err(parseKojid("maxjobs = 5\nMaxJobs = 6"))
    assertNames(e, "maxjobs")
    assert.strictEqual(e.line, 5)
    assert.include(e.message, "lines 4 and 5")
  })

  it("rejects text before any section, and a line that is not key = value", () => {
    assert.include(err(parseConfig("server = x\n[kojid]\n", FILE)).message, "no section header")
    const e = err(parseKojid("just words"))
    assert.strictEqual(e.line, 4)
    assert.include(e.message, FILE)
  })

  it("applies [DEFAULT] to [kojid], with [kojid] winning", () => {
    const config = ok(parseConfig(`[DEFAULT]\nmaxjobs = 3\nsleeptime = 5\n${text("sleeptime = 9")}`, FILE, {}, noCerts))
    assert.strictEqual(config.kojid.maxjobs, 3)
    assert.strictEqual(config.kojid.sleeptime, 9)
    assert.strictEqual(err(parseConfig(`[DEFAULT]\nbogus = 1\n${text("")}`, FILE, {}, noCerts)).key, "bogus")
  })
})

describe("[kojid] RLIMIT_*, plugins, topurl, required keys", () => {
  it("parses RLIMIT_* as soft [hard], any key case, stored upper-case", () => {
    const config = ok(parseKojid("RLIMIT_NOFILE = 1024\nrlimit_nproc = 1024 2048\nRlimit_Core = -1 -1\nRLIMIT_AS ="))
    assert.deepStrictEqual(config.kojid.rlimits, [
      { resource: "RLIMIT_NOFILE", soft: 1024, hard: null },
      { resource: "RLIMIT_NPROC", soft: 1024, hard: 2048 },
      { resource: "RLIMIT_CORE", soft: -1, hard: -1 }
    ])
  })

  it("rejects bad RLIMIT values and unknown resources", () => {
    for (const bad of ["abc", "1 2 3", "-5", "2048 1024", "10 x", "1.5"]) {
      const e = err(parseKojid(`RLIMIT_NOFILE = ${bad}`))
      assertNames(e, "RLIMIT_NOFILE", 4)
    }
    const e = err(parseKojid("rlimit_nofiles = 10"))
    assert.include(e.message, "RLIMIT_NOFILES")
    assert.include(e.message, FILE)
  })

  it("reads plugin and plugins as one list, the later line winning (kojid assigns both to options.plugin)", () => {
    assert.deepStrictEqual(ok(parseKojid("plugin = runroot  save_failed_tree")).kojid.plugin, ["runroot", "save_failed_tree"])
    assert.deepStrictEqual(ok(parseKojid("plugins = runroot")).kojid.plugin, ["runroot"])
    assert.deepStrictEqual(ok(parseKojid("plugin = runroot\nplugins = save_failed_tree")).kojid.plugin, ["save_failed_tree"])
    assert.deepStrictEqual(ok(parseKojid("plugins = save_failed_tree\nplugin = runroot")).kojid.plugin, ["runroot"])
    assert.deepStrictEqual(ok(parseKojid("plugin =")).kojid.plugin, [])
    assert.deepStrictEqual(ok(parseKojid("plugin = runroot", { plugin: ["a", "b"] })).kojid.plugin, ["a", "b"])
  })

  it("splits topurl on whitespace; topurl is the first", () => {
    const config = ok(parseConfig("[kojid]\nserver=https://h/kojihub\ntopurl = https://a/kf  https://b/kf\thttps://c/kf\n", FILE, {}, noCerts))
    assert.deepStrictEqual(config.kojid.topurls, ["https://a/kf", "https://b/kf", "https://c/kf"])
    assert.strictEqual(config.kojid.topurl, "https://a/kf")
  })

  it("requires server and topurl, naming the file", () => {
    const noServer = err(parseConfig("[kojid]\ntopurl = https://h/kf\n", FILE, {}, noCerts))
    assert.include(noServer.message, "the server option is required")
    assert.include(noServer.message, FILE)
    assert.strictEqual(noServer.key, "server")
    const noTopurl = err(parseConfig("[kojid]\nserver = https://h/kojihub\n", FILE, {}, noCerts))
    assert.include(noTopurl.message, "the topurl option is required")
    assert.strictEqual(noTopurl.key, "topurl")
    assert.strictEqual(err(parseConfig("[kojid]\nserver = hub.example.com\ntopurl = https://h/kf\n", FILE, {}, noCerts)).key, "server")
    // Flags alone are enough, as with kojid.
    const flagsOnly = ok(parseConfig("", FILE, { server: "https://h/kojihub", topurl: "https://h/kf" }, noCerts))
    assert.strictEqual(flagsOnly.kojid.server, "https://h/kojihub")
  })

  it("validates log_level as a Python logging level name", () => {
    assert.strictEqual(ok(parseKojid("log_level = DEBUG")).kojid.log_level, "DEBUG")
    assertNames(err(parseKojid("log_level = debug")), "log_level", 4)
  })
})

describe("command-line flags", () => {
  it("override the file's values (kojid's precedence)", () => {
    const config = ok(
      parseKojid("maxjobs = 5\nsleeptime = 30\nuser = fileuser\nworkdir = /srv/work", {
        maxjobs: 2,
        sleeptime: 1,
        minspace: 10,
        user: "kojibuilder1",
        password: "pw",
        server: "https://other.example.com/kojihub",
        topurl: "https://x/kf https://y/kf",
        topdir: "/srv/koji",
        admin_emails: "root@example.com",
        chroot_tmpdir: "/tmp2",
        pluginpath: "/p",
        mockdir: "/m",
        mockuser: "mu",
        fg: true,
        force_lock: true,
        verbose: true
      })
    )
    assert.strictEqual(config.kojid.maxjobs, 2)
    assert.strictEqual(config.kojid.sleeptime, 1)
    assert.strictEqual(config.kojid.minspace, 10)
    assert.strictEqual(config.kojid.user, "kojibuilder1")
    assert.strictEqual(config.kojid.password, "pw")
    assert.strictEqual(config.kojid.server, "https://other.example.com/kojihub")
    assert.deepStrictEqual(config.kojid.topurls, ["https://x/kf", "https://y/kf"])
    assert.strictEqual(config.kojid.topdir, "/srv/koji")
    assert.strictEqual(config.kojid.workdir, "/srv/work")
    assert.strictEqual(config.kojid.admin_emails, "root@example.com")
    assert.strictEqual(config.kojid.chroot_tmpdir, "/tmp2")
    assert.strictEqual(config.kojid.pluginpath, "/p")
    assert.strictEqual(config.kojid.mockdir, "/m")
    assert.strictEqual(config.kojid.mockuser, "mu")
    assert.isTrue(config.flags.fg && config.flags.force_lock && config.flags.verbose)
    assert.isFalse(config.flags.debug)
    assert.strictEqual(effectiveLogLevel(config), LogLevel.Info)
  })

  it("log level: --debug > --verbose > log_level > WARNING", () => {
    assert.strictEqual(effectiveLogLevel(ok(parseKojid(""))), LogLevel.Warning)
    assert.strictEqual(effectiveLogLevel(ok(parseKojid("log_level = ERROR"))), LogLevel.Error)
    assert.strictEqual(effectiveLogLevel(ok(parseKojid("log_level = ERROR", { verbose: true }))), LogLevel.Info)
    assert.strictEqual(effectiveLogLevel(ok(parseKojid("", { verbose: true, debug: true }))), LogLevel.Debug)
  })
})

describe("cert and serverca defaults", () => {
  it("default to the /etc/kojid files only when they exist", () => {
    const dir = mkdtempSync(join(tmpdir(), "adjutant-config-"))
    try {
      const env = { defaultCert: join(dir, "client.crt"), defaultServerca: join(dir, "serverca.crt") }
      const none = ok(parseConfig(text(""), FILE, {}, env))
      assert.isNull(none.kojid.cert)
      assert.isNull(none.kojid.serverca)
      writeFileSync(env.defaultCert, "cert")
      const certOnly = ok(parseConfig(text(""), FILE, {}, env))
      assert.strictEqual(certOnly.kojid.cert, env.defaultCert)
      assert.isNull(certOnly.kojid.serverca)
      writeFileSync(env.defaultServerca, "ca")
      const both = ok(parseConfig(text(""), FILE, {}, env))
      assert.strictEqual(both.kojid.serverca, env.defaultServerca)
      const configured = ok(parseConfig(text("cert = /srv/my.pem"), FILE, {}, env))
      assert.strictEqual(configured.kojid.cert, "/srv/my.pem")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("[adjutant]", () => {
  it("has the documented defaults", () => {
    const a = ok(parseKojid("")).adjutant
    assert.deepStrictEqual(a, defaultAdjutantOptions)
    assert.strictEqual(a.podman_socket, "unix:///run/podman/podman.sock")
    assert.strictEqual(a.oci_runtime, "runc")
    assert.isFalse(a.rootless)
    assert.strictEqual(a.bootstrap_image, "localhost/koji-adjutant-bootstrap:latest")
    assert.deepStrictEqual(a.image_rules, [])
    assert.strictEqual(a.pull_policy, "missing")
    assert.strictEqual(a.registry_auth_file, "")
    assert.deepStrictEqual(a.insecure_registries, [])
    assert.strictEqual(a.image_refresh_interval, 86400)
    assert.isTrue(a.image_gc)
    assert.strictEqual(a.container_memory, 4 * 1024 * 1024 * 1024)
    assert.strictEqual(a.container_pids, 4096)
    assert.strictEqual(a.container_cpus, 0)
    assert.strictEqual(a.container_stop_timeout, 10)
    assert.deepStrictEqual(a.default_ulimits, [
      { name: "nofile", soft: 4096, hard: 4096 },
      { name: "nproc", soft: 4096, hard: 4096 }
    ])
    assert.strictEqual(a.cgroup_parent, "")
    assert.strictEqual(a.build_user, "1000:1000")
    assert.strictEqual(a.reaper_interval, 300)
    assert.strictEqual(a.login_tls_max_version, "TLSv1.2")
    assert.strictEqual(a.tls_max_version, "TLSv1.3")
    assert.strictEqual(a.tls_min_version, "TLSv1.2")
    assert.strictEqual(a.buildroot_cache_dir, "/var/lib/koji-adjutant/buildroots")
    assert.strictEqual(a.buildroot_cache_max, 20)
    assert.strictEqual(a.status_listen, "")
    assert.strictEqual(a.log_file, "/var/log/kojid.log")
    assert.strictEqual(a.task_timeout, 0)
    assert.strictEqual(a.runroot_config, "/etc/kojid/plugins/runroot.conf")
    assert.strictEqual(a.scm_network, "bridge")
    assert.strictEqual(a.scm_timeout, 3600)
    assert.strictEqual(a.image_state_file, "/var/lib/koji-adjutant/images.json")
    assert.strictEqual(a.image_pull_timeout, 1800)
    assert.isTrue(a.batch_hub_calls)
    assert.strictEqual(a.podman_storage, "/var/lib/containers/storage")
  })

  it("parses every key", () => {
    const a = ok(
      parseAdjutant(
        [
          "podman_socket = /run/user/1000/podman/podman.sock",
          "oci_runtime = crun",
          "rootless = yes",
          "bootstrap_image = quay.io/fedora/fedora:40",
          "image_rules =",
          "    f40-build = registry.example.com/fedora:40",
          "    el9-*/aarch64 = registry.example.com/centos:stream9-arm",
          "pull_policy = always",
          "registry_auth_file = /etc/containers/auth.json",
          "insecure_registries = registry.local:5000 10.0.0.1 [::1]:5000",
          "image_refresh_interval = 0",
          "image_gc = off",
          "container_memory = 512m",
          "container_pids = 0",
          "container_cpus = 1.5",
          "container_stop_timeout = 30",
          "default_ulimits = nofile=1024:2048 core=0 stack=-1:-1",
          "cgroup_parent = machine.slice",
          "build_user = mockbuild",
          "build_userns = 3000000000:131072",
          "task_disk_max = 4g",
          "result_max_size = 1g",
          "log_max_size = 0",
          "reaper_interval = 60",
          "login_tls_max_version = TLSv1.3",
          "tls_max_version = TLSv1.3",
          "tls_min_version = TLSv1.3",
          "buildroot_cache_dir = /srv/cache",
          "buildroot_cache_max = 0",
          "buildroot_cache_max_bytes = 100g",
          "buildroot_registry = registry.example.com:5000/koji/builders",
          "status_listen = 127.0.0.1:9090",
          "log_file =",
          "log_format = json",
          "task_timeout = 7200",
          "runroot_config = /etc/kojid/runroot.conf",
          "scm_network = host",
          "scm_timeout = 600",
          "image_state_file = /srv/adjutant/images.json",
          "image_pull_timeout = 120",
          "batch_hub_calls = False",
          "podman_storage = /srv/containers/storage"
        ].join("\n")
      )
    ).adjutant
    assert.deepStrictEqual(a, {
      podman_socket: "unix:///run/user/1000/podman/podman.sock",
      oci_runtime: "crun",
      rootless: true,
      bootstrap_image: "quay.io/fedora/fedora:40",
      image_rules: [
        { tag: "f40-build", arch: null, image: "registry.example.com/fedora:40" },
        { tag: "el9-*", arch: "aarch64", image: "registry.example.com/centos:stream9-arm" }
      ],
      pull_policy: "always",
      registry_auth_file: "/etc/containers/auth.json",
      insecure_registries: ["registry.local:5000", "10.0.0.1", "[::1]:5000"],
      image_refresh_interval: 0,
      image_gc: false,
      container_memory: 512 * 1024 * 1024,
      container_pids: 0,
      container_cpus: 1.5,
      container_stop_timeout: 30,
      default_ulimits: [
        { name: "nofile", soft: 1024, hard: 2048 },
        { name: "core", soft: 0, hard: 0 },
        { name: "stack", soft: -1, hard: -1 }
      ],
      cgroup_parent: "machine.slice",
      build_user: "mockbuild",
      build_userns: { base: 3000000000, size: 131072 },
      task_disk_max: 4 * 1024 ** 3,
      result_max_size: 1024 ** 3,
      log_max_size: 0,
      reaper_interval: 60,
      login_tls_max_version: "TLSv1.3",
      tls_max_version: "TLSv1.3",
      tls_min_version: "TLSv1.3",
      buildroot_cache_dir: "/srv/cache",
      buildroot_cache_max: 0,
      buildroot_cache_max_bytes: 100 * 1024 ** 3,
      buildroot_registry: "registry.example.com:5000/koji/builders",
      status_listen: "127.0.0.1:9090",
      log_file: "",
      log_format: "json",
      task_timeout: 7200,
      runroot_config: "/etc/kojid/runroot.conf",
      scm_network: "host",
      scm_timeout: 600,
      image_state_file: "/srv/adjutant/images.json",
      image_pull_timeout: 120,
      batch_hub_calls: false,
      podman_storage: "/srv/containers/storage"
    })
    assert.strictEqual(ok(parseAdjutant("scm_network = none")).adjutant.scm_network, "none")
    assert.strictEqual(podmanSocketPath(a), "/run/user/1000/podman/podman.sock")
    assert.strictEqual(ok(parseAdjutant("podman_socket = unix:///x.sock")).adjutant.podman_socket, "unix:///x.sock")
    assert.strictEqual(ok(parseAdjutant("oci_runtime =")).adjutant.oci_runtime, "")
    assert.strictEqual(ok(parseAdjutant("container_memory = 2G")).adjutant.container_memory, 2 * 1024 ** 3)
    assert.strictEqual(ok(parseAdjutant("container_memory = 1048576")).adjutant.container_memory, 1048576)
    assert.strictEqual(ok(parseAdjutant("container_memory = 0")).adjutant.container_memory, 0)
  })

  it("rejects bad values naming the key and the file", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["podman_socket", "tcp://host:8080"],
      ["podman_socket", "relative/podman.sock"],
      ["oci_runtime", "kata"],
      ["rootless", "maybe"],
      ["bootstrap_image", ""],
      ["bootstrap_image", "two words"],
      ["image_rules", "\n    f40-build registry/fedora:40"],
      ["image_rules", "\n    = registry/fedora:40"],
      ["image_rules", "\n    f40/ = registry/fedora:40"],
      ["image_rules", "\n    f40 ="],
      ["pull_policy", "sometimes"],
      ["registry_auth_file", "auth.json"],
      ["insecure_registries", "http://registry.local"],
      ["insecure_registries", "host:99999"],
      ["image_refresh_interval", "-1"],
      ["image_refresh_interval", "1d"],
      ["image_gc", "2"],
      ["container_memory", "4 gigs"],
      ["container_memory", "-1"],
      ["container_pids", "many"],
      ["container_cpus", "-1"],
      ["container_cpus", "two"],
      ["container_stop_timeout", "1.5"],
      ["default_ulimits", "nofile"],
      ["default_ulimits", "files=10:10"],
      ["default_ulimits", "nofile=2048:1024"],
      ["default_ulimits", "nofile=-2"],
      ["build_user", "root"],
      ["build_user", "0:0"],
      ["build_user", "a b"],
      ["build_user", ""],
      ["build_userns", "auto"],
      ["build_userns", "0:65536"],
      ["build_userns", "100000:1000"],
      ["build_userns", "4294967000:65536"],
      ["task_disk_max", "big"],
      ["result_max_size", "-1"],
      ["log_max_size", "1.5g"],
      ["reaper_interval", "x"],
      ["login_tls_max_version", "TLSv1.4"],
      ["tls_max_version", "tls1.3"],
      ["tls_min_version", "SSLv3"],
      ["buildroot_cache_dir", ""],
      ["buildroot_cache_dir", "cache"],
      ["buildroot_cache_max", "-3"],
      ["buildroot_cache_max_bytes", "lots"],
      ["buildroot_registry", "registry.example.com"],
      ["buildroot_registry", "registry.example.com/Koji"],
      ["buildroot_registry", "https://registry.example.com/koji"],
      ["status_listen", "9090"],
      ["status_listen", "localhost"],
      ["status_listen", "localhost:70000"],
      ["log_file", "kojid.log"],
      ["log_format", "syslog"],
      ["log_format", "JSON"],
      ["task_timeout", "soon"],
      ["runroot_config", "runroot.conf"],
      ["scm_network", "slirp4netns"],
      ["scm_network", ""],
      ["scm_timeout", "0"],
      ["scm_timeout", "1h"],
      ["image_state_file", ""],
      ["image_state_file", "images.json"],
      ["image_pull_timeout", "0"],
      ["image_pull_timeout", "-5"],
      ["batch_hub_calls", "sometimes"],
      ["podman_storage", ""],
      ["podman_storage", "storage"]
    ]
    for (const [key, value] of cases) {
      const e = err(parseAdjutant(`${key} = ${value}`))
      assertNames(e, key)
      assert.strictEqual(e.section, "adjutant", `${key} = ${value}`)
      assert.strictEqual(e.line, 6, `${key} = ${value}`)
    }
  })

  it("rejects TLS caps below tls_min_version", () => {
    const e = err(parseAdjutant("tls_min_version = TLSv1.3"))
    assertNames(e, "login_tls_max_version")
    assert.include(e.message, "tls_min_version")
    assert.strictEqual(err(parseAdjutant("tls_max_version = TLSv1.2\ntls_min_version = TLSv1.3\nlogin_tls_max_version = TLSv1.3")).key, "tls_max_version")
    assert.strictEqual(ok(parseAdjutant("tls_min_version = TLSv1\nlogin_tls_max_version = TLSv1.1")).adjutant.login_tls_max_version, "TLSv1.1")
  })

  it("rejects an unknown key naming it and the file; kojid keys are not adjutant keys", () => {
    for (const key of ["podman_sock", "maxjobs"]) {
      const e = err(parseAdjutant(`${key} = 1`))
      assertNames(e, key, 6)
      assert.include(e.message, "unknown config option")
      assert.include(e.message, "[adjutant]")
    }
    // [DEFAULT] belongs to [kojid]: it does not leak into [adjutant].
    assert.isTrue(Either.isRight(parseConfig(`[DEFAULT]\nmaxjobs = 3\n${text("", "[adjutant]\nimage_gc = no\n")}`, FILE, {}, noCerts)))
  })

  it("RLIMIT_* overrides default_ulimits per resource", () => {
    const config = ok(parseConfig(text("RLIMIT_NOFILE = 1024\nRLIMIT_CORE = 0 0\nRLIMIT_NPROC = 8192", "[adjutant]\ndefault_ulimits = nofile=4096:8192 nproc=4096:4096\n"), FILE, {}, noCerts))
    assert.deepStrictEqual(effectiveUlimits(config), [
      { name: "nofile", soft: 1024, hard: 8192 },
      { name: "nproc", soft: 8192, hard: 8192 },
      { name: "core", soft: 0, hard: 0 }
    ])
  })
})

describe("renderEffectiveConfig", () => {
  const secretConfig = () =>
    ok(
      parseConfig(
        text(
          "user = kojibuilder1\npassword = hunter2\nsmtp_user = mailer\nsmtp_pass = mailpass\nyum_proxy = http://proxyuser:proxypw@proxy.example.com:3128\nRLIMIT_NOFILE = 1024 2048\nplugin = runroot",
          "[adjutant]\nimage_rules =\n  f40* = registry/fedora:40\n  */s390x = registry/s390x:1\n"
        ),
        FILE,
        { fg: true },
        noCerts
      )
    )

  it("redacts password, smtp_pass and passwords inside URLs", () => {
    const out = renderEffectiveConfig(secretConfig())
    for (const secret of ["hunter2", "mailpass", "proxypw"]) assert.notInclude(out, secret)
    assert.match(out, /^password = \*{8}$/m)
    assert.match(out, /^smtp_pass = \*{8}$/m)
    assert.include(out, "yum_proxy = http://proxyuser:********@proxy.example.com:3128")
    assert.match(out, /^user = kojibuilder1$/m)
    assert.match(out, /^smtp_user = mailer$/m)
    assert.match(out, /^;admin_emails =$/m)
    assert.match(out, /^RLIMIT_NOFILE = 1024 2048$/m)
    assert.match(out, /^maxjobs = 10$/m)
    assert.match(out, /^offline_retry = True$/m)
    assert.match(out, /^container_memory = 4g$/m)
    assert.include(out, FILE)
    assert.include(out, "fg=true")
  })

  it("parses back to the same configuration (secrets aside)", () => {
    const config = secretConfig()
    const again = ok(parseConfig(renderEffectiveConfig(config), FILE, { fg: true }, noCerts))
    assert.deepStrictEqual(
      { ...again.kojid, password: "hunter2", smtp_pass: "mailpass", yum_proxy: config.kojid.yum_proxy },
      config.kojid
    )
    assert.deepStrictEqual(again.adjutant, config.adjutant)
    assert.deepStrictEqual(ok(parseConfig(renderEffectiveConfig(ok(parseKojid(""))), FILE, {}, noCerts)), ok(parseKojid("")))
  })
})

// Modelled on the sample builder/kojid.conf shipped with koji: mostly commented-out defaults.
const REALISTIC = `[kojid]
; The number of seconds to sleep between tasks
; sleeptime=15

; The maximum number of jobs that kojid will handle at a time
maxjobs=8

; The minimum amount of free space (in MBs) required for each build root
; minspace=8192

; The directory root where work data can be found from the koji hub
topdir=/mnt/koji

; The directory root for temporary storage
workdir=/tmp/koji

; The URL for the xmlrpc server
server=https://koji.example.org/kojihub

; The URL for the file access
topurl=https://koji.example.org/kojifiles

; use createrepo_c rather than createrepo
use_createrepo_c=True

; A space-separated list of tuples from which kojid is allowed to checkout.
;     host:repository[:use_common[:source_cmd]]
allowed_scms=scm.example.com:/cvs/example git.example.org:/example svn.example.org:/users/*:no
    src.example.org:/rpms/*:false:fedpkg,sources

; The mail host to use for sending email notifications
smtphost=smtp.example.org

;smtp_user=user@example.com
;smtp_pass=CHANGEME

; The From address used when sending email notifications
from_addr=Koji Build System <buildsys@example.org>

;the format of the principal used by the build hosts
;%s will be replaced by the FQDN of the host
host_principal_format = compile/%s@EXAMPLE.ORG

;client certificate
cert = /etc/kojid/client.crt

;certificate of the CA that issued the HTTP server certificate
serverca = /etc/kojid/serverca.crt

;if set to True, failing subtask will not automatically cancel other siblings
;build_arch_can_fail = False

;enabled plugins
plugin =

;path where builder plugins are located, there could be multiple paths delimited by :
;pluginpath = /usr/lib/koji-builder-plugins

RLIMIT_NOFILE = 65536
`

describe("a realistic kojid.conf", () => {
  it("parses", () => {
    const config = ok(parseConfig(REALISTIC, FILE, {}, noCerts))
    assert.strictEqual(config.kojid.maxjobs, 8)
    assert.strictEqual(config.kojid.workdir, "/tmp/koji")
    assert.strictEqual(config.kojid.sleeptime, 15)
    assert.isTrue(config.kojid.use_createrepo_c)
    assert.strictEqual(
      config.kojid.allowed_scms,
      "scm.example.com:/cvs/example git.example.org:/example svn.example.org:/users/*:no\nsrc.example.org:/rpms/*:false:fedpkg,sources"
    )
    assert.strictEqual(config.kojid.cert, "/etc/kojid/client.crt")
    assert.strictEqual(config.kojid.host_principal_format, "compile/%s@EXAMPLE.ORG")
    assert.deepStrictEqual(config.kojid.plugin, [])
    assert.deepStrictEqual(config.kojid.rlimits, [{ resource: "RLIMIT_NOFILE", soft: 65536, hard: null }])
    assert.isNull(config.kojid.smtp_pass)
  })
})

describe("loading files", () => {
  const withDir = <A>(f: (dir: string) => Effect.Effect<A, unknown>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "adjutant-config-"))),
      f,
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )

  it.effect("layerFile reads the file and applies flags", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const file = join(dir, "kojid.conf")
        writeFileSync(file, text("maxjobs = 4", "[adjutant]\ncontainer_pids = 99\n"))
        const config = yield* AdjutantConfig.pipe(
          Effect.provide(AdjutantConfig.layerFile(file, { sleeptime: 2 }, noCerts))
        )
        assert.strictEqual(config.file, file)
        assert.strictEqual(config.kojid.maxjobs, 4)
        assert.strictEqual(config.kojid.sleeptime, 2)
        assert.strictEqual(config.adjutant.container_pids, 99)
      })
    )
  )

  it.effect("a bad file fails the layer with a ConfigError naming key and file", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const file = join(dir, "kojid.conf")
        writeFileSync(file, text("keepalive = True"))
        const e = yield* Effect.flip(AdjutantConfig.pipe(Effect.provide(AdjutantConfig.layer({ config: file }))))
        assert.strictEqual(e._tag, "ConfigError")
        assert.strictEqual(e.key, "keepalive")
        assert.strictEqual(e.file, file)
        assert.include(e.message, file)
      })
    )
  )

  it.effect("a missing file is not fatal by itself (kojid), but server is then required", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const file = join(dir, "absent.conf")
        const e = yield* Effect.flip(loadConfig(file, {}, noCerts))
        assert.include(e.message, "the server option is required")
        assert.include(e.message, `${file} does not exist`)
        const config = yield* loadConfig(file, { server: "https://h/kojihub", topurl: "https://h/kf" }, noCerts)
        assert.strictEqual(config.kojid.maxjobs, 10)
      })
    )
  )

  it.effect("a directory reads its *.conf files in name order, later ones winning", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const conf = join(dir, "kojid.d")
        mkdirSync(conf)
        writeFileSync(join(conf, "10-base.conf"), text("maxjobs = 4\nsleeptime = 20"))
        writeFileSync(join(conf, "20-local.conf"), "[kojid]\nmaxjobs = 6\n[adjutant]\nimage_gc = no\n")
        writeFileSync(join(conf, "30-ignored.txt"), "[kojid]\nmaxjobs = 99\n")
        const config = yield* loadConfig(conf, {}, noCerts)
        assert.strictEqual(config.kojid.maxjobs, 6)
        assert.strictEqual(config.kojid.sleeptime, 20)
        assert.isFalse(config.adjutant.image_gc)
        writeFileSync(join(conf, "40-bad.conf"), "[kojid]\nbogus = 1\n")
        const e = yield* Effect.flip(loadConfig(conf, {}, noCerts))
        assert.strictEqual(e.file, join(conf, "40-bad.conf"))
        assert.strictEqual(e.line, 2)
      })
    )
  )

  it.effect("layerTest gives defaults plus overrides", () =>
    Effect.gen(function* () {
      const config = yield* AdjutantConfig
      assert.strictEqual(config.kojid.maxjobs, 3)
      assert.strictEqual(config.kojid.sleeptime, 15)
      assert.strictEqual(config.kojid.server, "http://localhost/kojihub")
      assert.deepStrictEqual(config.kojid.topurls, ["http://localhost/kojifiles"])
      assert.strictEqual(config.adjutant.container_pids, 7)
      assert.strictEqual(config.adjutant.bootstrap_image, defaultAdjutantOptions.bootstrap_image)
    }).pipe(Effect.provide(AdjutantConfig.layerTest({ kojid: { maxjobs: 3 }, adjutant: { container_pids: 7 } })))
  )
})

describe("examples/kojid.conf", () => {
  const path = join(import.meta.dirname, "../../examples/kojid.conf")

  it.effect("parses, and documents every [kojid] and [adjutant] key", () =>
    Effect.gen(function* () {
      const config = yield* loadConfig(path, {}, noCerts)
      assert.strictEqual(config.kojid.server, "https://koji.example.com/kojihub")
      assert.deepStrictEqual(config.adjutant.image_rules, [
        { tag: "f4[0-9]-build", arch: null, image: "registry.fedoraproject.org/fedora:41" },
        { tag: "el9-*", arch: "aarch64", image: "quay.io/centos/centos:stream9" }
      ])
      const content = readFileSync(path, "utf8")
      for (const key of [...Object.keys(defaultKojidOptions), ...Object.keys(defaultAdjutantOptions)]) {
        if (key === "topurls" || key === "rlimits") continue
        assert.match(content, new RegExp(`^;? ?${key} ?=`, "m"), `${key} is not documented in examples/kojid.conf`)
      }
    })
  )
})

describe("render ∘ parse (property)", () => {
  it("any int, bool and text values survive renderEffectiveConfig and parse back unchanged", () => {
    const word = FastCheck.stringMatching(/^[A-Za-z0-9/_.:%@<>,*-]([A-Za-z0-9/_.:%@<>,* -]{0,20}[A-Za-z0-9/_.:%@<>,*-])?$/)
    const textKeys = ["literal_task_arches", "packager", "vendor", "mockhost", "allowed_scms", "from_addr", "xz_options", "keytab"] as const
    FastCheck.assert(
      FastCheck.property(
        FastCheck.record({
          ints: FastCheck.array(FastCheck.tuple(FastCheck.constantFrom(...INT_KEYS), FastCheck.integer({ min: -1e12, max: 1e12 })), { maxLength: 6 }),
          bools: FastCheck.array(FastCheck.tuple(FastCheck.constantFrom(...BOOL_KEYS), FastCheck.boolean()), { maxLength: 6 }),
          texts: FastCheck.array(FastCheck.tuple(FastCheck.constantFrom(...textKeys), FastCheck.array(word, { minLength: 1, maxLength: 3 })), { maxLength: 4 })
        }),
        ({ ints, bools, texts }) => {
          const lines = new Map<string, string>()
          for (const [k, v] of ints) lines.set(k, String(v))
          for (const [k, v] of bools) lines.set(k, v ? "on" : "off")
          for (const [k, v] of texts) lines.set(k, v.join("\n    "))
          const body = [...lines].map(([k, v]) => `${k} = ${v}`).join("\n")
          const config = ok(parseKojid(body))
          const again = ok(parseConfig(renderEffectiveConfig(config), FILE, {}, noCerts))
          assert.deepStrictEqual(again, config)
        }
      ),
      { numRuns: 200 }
    )
  })
})
