/**
 * The RPM: scripts/build-rpm.sh builds packaging/koji-adjutant.spec (or KOJI_ADJUTANT_RPM names
 * one already built), then the package is read back with `rpm -qp` (file list, modes,
 * %config files, scriptlets, requires, provides), its payload is checked with the real tools
 * (systemd-analyze verify, systemd-tmpfiles, logrotate, groff, the packaged daemon itself), and
 * it is installed and erased in throwaway containers of the bootstrap image, beside a stand-in
 * for koji's koji-builder package that owns /etc/kojid/kojid.conf as koji.spec does.
 *
 * rpm runs in the bootstrap image when podman has it, else on the host; the install tests need
 * podman. Without either the tests skip visibly, except under KOJI_ADJUTANT_REQUIRE_PODMAN=1
 * (CI, scripts/test.sh), where they fail.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process"
import { createHash } from "node:crypto"
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"

const IMAGE = "localhost/koji-adjutant-bootstrap:latest"
const repoRoot = path.resolve(import.meta.dirname, "../..")
const version: string = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")).version
const required = process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1"

const works = (cmd: string, args: ReadonlyArray<string>): boolean => spawnSync(cmd, args, { stdio: "ignore" }).status === 0
const hasImage = works("podman", ["image", "exists", IMAGE])
const hostRpm = works("rpm", ["--version"])
const mode: "podman" | "host" | undefined = hasImage ? "podman" : hostRpm ? "host" : undefined
const skipReason = `neither podman with ${IMAGE} (scripts/setup-host.sh, scripts/build-images.sh) nor rpm is installed`
const tool = (name: string): boolean => works("sh", ["-c", 'command -v "$1" >/dev/null', "sh", name])

if (mode === undefined && required) {
  it("podman: RPM test prerequisites are installed", () => assert.fail(skipReason))
} else if (mode === undefined) console.warn(`RPM tests skipped: ${skipReason}`)
if (mode === "host") console.warn(`RPM install tests skipped: podman with ${IMAGE} is needed for a throwaway root`)

const run = (cmd: string, args: ReadonlyArray<string>, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { encoding: "utf8", timeout: 300_000, maxBuffer: 64 * 1024 * 1024, ...opts })

/** A long command without blocking the event loop (vitest's worker must keep answering). */
const runAsync = (cmd: string, args: ReadonlyArray<string>, cwd: string): Promise<SpawnSyncReturns<string>> =>
  new Promise((done) => {
    const child = spawn(cmd, args, { cwd })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()))
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()))
    child.on("close", (status, signal) => done({ pid: child.pid ?? 0, output: [null, stdout, stderr], stdout, stderr, status, signal }))
  })

const ok = (r: SpawnSyncReturns<string>, what: string): string => {
  assert.strictEqual(r.status, 0, `${what} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`)
  return r.stdout
}

let work: string
let rpmDir: string
let rpmName: string
let payload: string
let kojiBuilder: string

/** `rpm ARGS… FILE` on the package: in the bootstrap image (the directory mounted read-only) or on the host. */
const rpmQuery = (args: ReadonlyArray<string>): string =>
  mode === "podman"
    ? ok(run("podman", ["run", "--rm", "--network=none", "-v", `${rpmDir}:/r:ro,Z`, IMAGE, "rpm", ...args, `/r/${rpmName}`]), `rpm ${args.join(" ")}`)
    : ok(run("rpm", [...args, path.join(rpmDir, rpmName)]), `rpm ${args.join(" ")}`)

/** `rpm -qp --qf '[…\n]'` split into lines of fields. */
const rpmFields = (qf: string): ReadonlyArray<ReadonlyArray<string>> =>
  rpmQuery(["-qp", "--qf", qf]).split("\n").filter((l) => l !== "").map((l) => l.split(" "))

const sha = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex").slice(0, 16)

/** The stand-in for koji-builder: /etc/kojid/kojid.conf as `%config(noreplace)`, as koji.spec's %files builder. */
const KOJI_BUILDER_CONF = "[kojid]\n; koji-builder's kojid.conf\n"
const kojiBuilderSpec = [
  "Name: koji-builder",
  "Version: 1.35.0",
  "Release: 1",
  "Summary: stand-in for koji's builder package",
  "License: LGPL-2.1-or-later",
  "BuildArch: noarch",
  "%description",
  "Owns /etc/kojid/kojid.conf as koji.spec's builder package does.",
  "%install",
  "install -d %{buildroot}/etc/kojid",
  "cp /spec/kojid.conf %{buildroot}/etc/kojid/kojid.conf",
  "%files",
  "%dir /etc/kojid",
  "%config(noreplace) /etc/kojid/kojid.conf",
  ""
].join("\n")

/**
 * Runs SCRIPT in a throwaway bootstrap-image container with $1 = this package and $2 = the
 * koji-builder stand-in; `state` prints /etc/kojid as `NAME HASH` lines. Debian's rpm talks on
 * stderr (and knows nothing of the Requires), hence --nodeps and stdout only.
 */
const inContainer = (script: string, mounts: ReadonlyArray<string> = []): string =>
  ok(
    run("podman", [
      "run", "--rm", "--network=none", "--label", "io.koji.adjutant.test=rpm",
      "-v", `${rpmDir}:/r:ro,Z`, "-v", `${path.dirname(kojiBuilder)}:/kb:ro,Z`, ...mounts.flatMap((m) => ["-v", m]), IMAGE,
      "sh", "-euc",
      'state() { for f in $(ls -1A /etc/kojid 2>/dev/null); do echo "$f $(sha256sum < "/etc/kojid/$f" | cut -c1-16)"; done; }\n' + script,
      "sh", `/r/${rpmName}`, `/kb/${path.basename(kojiBuilder)}`
    ]),
    "container"
  )

const stateLines = (out: string): ReadonlyArray<string> => out.split("\n").filter((l) => l !== "")

describe.skipIf(mode === undefined)("podman: the RPM", () => {
  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "adjutant-rpm-"))
    const given = process.env["KOJI_ADJUTANT_RPM"]
    if (given !== undefined && given !== "") {
      rpmDir = path.dirname(path.resolve(given))
      rpmName = path.basename(given)
    } else {
      rpmDir = path.join(work, "rpms")
      ok(await runAsync(path.join(repoRoot, "scripts/build-rpm.sh"), ["-o", rpmDir], repoRoot), "scripts/build-rpm.sh")
      const built = readdirSync(rpmDir).filter((f) => f.endsWith(".rpm"))
      assert.strictEqual(built.length, 1, `one RPM expected in ${rpmDir}: ${built.join(", ")}`)
      rpmName = built[0]!
    }
    payload = path.join(work, "root")
    mkdirSync(payload)
    if (mode === "podman") {
      ok(run("podman", [
        "run", "--rm", "--network=none", "-v", `${rpmDir}:/r:ro,Z`, "-v", `${payload}:/out:Z`, IMAGE,
        "sh", "-euc", 'cd /out && rpm2cpio "$1" | cpio -idm --quiet', "sh", `/r/${rpmName}`
      ]), "extracting the payload")
      const spec = path.join(work, "koji-builder")
      mkdirSync(spec)
      writeFileSync(path.join(spec, "koji-builder.spec"), kojiBuilderSpec)
      writeFileSync(path.join(spec, "kojid.conf"), KOJI_BUILDER_CONF)
      ok(run("podman", [
        "run", "--rm", "--network=none", "-v", `${spec}:/spec:Z`, IMAGE,
        "sh", "-euc", 'rpmbuild --quiet --define "_topdir /tmp/rb" -bb /spec/koji-builder.spec && cp /tmp/rb/RPMS/noarch/*.rpm /spec/'
      ]), "building the koji-builder stand-in")
      kojiBuilder = path.join(spec, readdirSync(spec).find((f) => f.endsWith(".rpm"))!)
    } else {
      ok(run("sh", ["-euc", 'rpm2cpio "$1" | cpio -idm --quiet', "sh", path.join(rpmDir, rpmName)], { cwd: payload }), "extracting the payload")
    }
  }, 900_000)

  afterAll(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true })
  })

  it("is this checkout's version, for the build host's arch", () => {
    const [name, ver, arch] = rpmQuery(["-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}"]).split(" ")
    assert.strictEqual(name, "koji-adjutant")
    assert.strictEqual(ver, version)
    assert.notStrictEqual(arch, "noarch", "the native addons make it arch-specific")
  })

  it("holds the daemon with its production dependencies and nothing from development", () => {
    const files = new Set(rpmQuery(["-qp", "--list"]).split("\n").filter((l) => l !== ""))
    for (const f of [
      "/usr/bin/koji-adjutant",
      "/usr/lib/koji-adjutant/package.json",
      "/usr/lib/koji-adjutant/dist/main.js",
      "/usr/lib/koji-adjutant/dist/daemon/TaskManager.js",
      "/usr/lib/koji-adjutant/node_modules/effect/package.json",
      "/usr/lib/koji-adjutant/node_modules/@effect/platform-node/package.json",
      "/usr/lib/koji-adjutant/node_modules/prom-client/package.json",
      "/usr/lib/systemd/system/koji-adjutant.service",
      "/usr/lib/tmpfiles.d/koji-adjutant.conf",
      "/etc/sysconfig/koji-adjutant",
      "/etc/logrotate.d/koji-adjutant",
      "/etc/kojid",
      "/etc/kojid/kojid.conf",
      "/usr/share/koji-adjutant/kojid.conf",
      "/var/lib/koji-adjutant",
      "/var/lib/koji-adjutant/buildroots",
      "/var/tmp/koji"
    ]) assert.isTrue(files.has(f), `${f} is in the package`)
    assert.isTrue(files.has("/usr/share/man/man8/koji-adjutant.8") || files.has("/usr/share/man/man8/koji-adjutant.8.gz"), "the man page")
    const list = [...files]
    for (const dev of ["typescript", "@typescript/typescript-linux-x64", "vitest", "@effect/vitest", "smtp-server", "@types/smtp-server"]) {
      assert.isFalse(files.has(`/usr/lib/koji-adjutant/node_modules/${dev}/package.json`), `dev dependency ${dev} is left out`)
    }
    assert.deepStrictEqual(list.filter((f) => f.startsWith("/usr/lib/koji-adjutant/dist/testing")), [], "no fake hub")
    assert.deepStrictEqual(list.filter((f) => /^\/usr\/lib\/koji-adjutant\/(src\/|dist\/.*\.(map|ts)$)/.test(f)), [], "no sources or source maps")
    assert.deepStrictEqual(list.filter((f) => f.includes("/.build-id/") || f.includes("/obj.target/")), [], "no build-id links or addon objects")
    // The optional GSSAPI addon ships when the checkout's npm ci could compile it.
    const addon = "node_modules/kerberos/build/Release/kerberos.node"
    if (process.env["KOJI_ADJUTANT_RPM"] === undefined) {
      assert.strictEqual(files.has(`/usr/lib/koji-adjutant/${addon}`), existsSync(path.join(repoRoot, addon)), "kerberos addon as built here")
    }
  })

  it("declares the license of every package it bundles", () => {
    const declared = rpmQuery(["-qp", "--qf", "%{LICENSE}"])
    const licenses = new Map<string, string>()
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        if (entry.startsWith(".")) continue
        const pkg = path.join(dir, entry)
        if (entry.startsWith("@")) {
          walk(pkg)
          continue
        }
        const manifest = path.join(pkg, "package.json")
        if (existsSync(manifest)) {
          const license: unknown = JSON.parse(readFileSync(manifest, "utf8")).license
          licenses.set(entry, typeof license === "string" ? license : JSON.stringify(license))
        }
        if (existsSync(path.join(pkg, "node_modules"))) walk(path.join(pkg, "node_modules"))
      }
    }
    walk(path.join(payload, "usr/lib/koji-adjutant/node_modules"))
    assert.isAbove(licenses.size, 10)
    const missing = [...licenses].filter(([, l]) => !declared.includes(l)).map(([name, l]) => `${name}: ${l}`)
    assert.deepStrictEqual(missing, [], `License: ${declared}`)
  })

  it("gives the directories and files their owners and modes", () => {
    const modes = new Map(rpmFields("[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\\n]").map(([perms, user, group, name]) => [name!, `${perms} ${user}:${group}`]))
    const expect: Record<string, string> = {
      "/usr/bin/koji-adjutant": "-rwxr-xr-x root:root",
      "/etc/kojid": "drwxr-xr-x root:root",
      "/etc/kojid/kojid.conf": "-rw-r--r-- root:root",
      "/etc/sysconfig/koji-adjutant": "-rw-r--r-- root:root",
      "/var/lib/koji-adjutant": "drwxr-xr-x root:root",
      "/var/lib/koji-adjutant/buildroots": "drwxr-xr-x root:root",
      "/var/tmp/koji": "drwxr-xr-x root:root"
    }
    for (const [f, m] of Object.entries(expect)) assert.strictEqual(modes.get(f), m, f)
  })

  it("marks its config files noreplace, and kojid.conf a ghost created only when absent", () => {
    const config = rpmQuery(["-qp", "--configfiles"]).split("\n").filter((l) => l !== "").sort()
    assert.deepStrictEqual(config, ["/etc/kojid/kojid.conf", "/etc/logrotate.d/koji-adjutant", "/etc/sysconfig/koji-adjutant"])
    const flags = new Map(rpmFields("[%{FILEFLAGS:fflags} %{FILENAMES}\\n]").filter((f) => f.length === 2).map(([fl, name]) => [name!, fl!]))
    assert.strictEqual(flags.get("/etc/kojid/kojid.conf"), "cng", "kojid.conf: %ghost %config(noreplace)")
    assert.strictEqual(flags.get("/etc/sysconfig/koji-adjutant"), "cn")
    assert.strictEqual(flags.get("/etc/logrotate.d/koji-adjutant"), "cn")
  })

  it("has scriptlets that install the config if absent, preset, stop on erase and reload on upgrade", () => {
    const scripts = rpmQuery(["-qp", "--scripts"])
    const section = (name: string): string => {
      const m = new RegExp(`^${name} scriptlet[^\\n]*\\n([\\s\\S]*?)(?=^\\w+ scriptlet|(?![\\s\\S]))`, "m").exec(scripts)
      assert.isNotNull(m, `${name} scriptlet in:\n${scripts}`)
      return m![1]!
    }
    const post = section("postinstall")
    assert.match(post, /if \[ ! -e \/etc\/kojid\/kojid\.conf \] && \[ ! -L \/etc\/kojid\/kojid\.conf \]; then\s+install -p -m 0644 \/usr\/share\/koji-adjutant\/kojid\.conf \/etc\/kojid\/kojid\.conf/)
    assert.match(post, /systemd-tmpfiles --create koji-adjutant\.conf/)
    assert.match(post, /\$1 -eq 1[\s\S]*(systemctl --no-reload preset|systemd-update-helper install-system-units) koji-adjutant\.service/)
    assert.match(section("preuninstall"), /\$1 -eq 0[\s\S]*(systemctl --no-reload disable --now|systemd-update-helper remove-system-units) koji-adjutant\.service/)
    const postun = section("postuninstall")
    assert.match(postun, /\$1 -ge 1[\s\S]*(systemctl try-reload-or-restart|systemd-update-helper mark-reload-system-units) koji-adjutant\.service/)
    assert.notMatch(scripts, /try-restart|mark-restart/, "an upgrade never restarts the daemon under its running tasks")
  })

  it("requires Node.js 24, podman, runc and systemd, and nothing derived from node_modules", () => {
    const requires = rpmFields("[%{REQUIREFLAGS:deptype} %{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\\n]").map((f) => f.join(" ").trim())
    for (const r of ["manual nodejs(engine) >= 24", "manual podman", "manual runc", "post systemd", "preun systemd", "postun systemd"]) {
      assert.include(requires, r)
    }
    const names = requires.map((r) => r.split(" ")[1]!)
    assert.deepStrictEqual(names.filter((n) => /\.so|npm\(|^\/usr\/bin\/(env|node)|nodejs\(abi|libc|libstdc/.test(n)), [], requires.join("\n"))
    const provides = rpmQuery(["-qp", "--provides"]).split("\n").filter((l) => l !== "")
    assert.include(provides, `koji-adjutant = ${version}-${rpmQuery(["-qp", "--qf", "%{RELEASE}"])}`)
    assert.deepStrictEqual(provides.filter((p) => !/^(config\()?koji-adjutant(\(|\)| |$)/.test(p)), [], "nothing bundled is provided")
  })

  it("has a unit for the notify daemon that systemd-analyze verify accepts", () => {
    const unit = readFileSync(path.join(payload, "usr/lib/systemd/system/koji-adjutant.service"), "utf8")
    const keys = unit.split("\n").filter((l) => /^\w+=/.test(l))
    for (const k of [
      "Conflicts=kojid.service",
      "Type=notify",
      "EnvironmentFile=-/etc/sysconfig/koji-adjutant",
      "ExecStart=/usr/bin/koji-adjutant --fg --force-lock $OPTIONS",
      "ExecReload=/bin/kill -USR1 $MAINPID",
      "KillMode=mixed",
      "Restart=on-failure",
      "WantedBy=multi-user.target"
    ]) assert.include(keys, k)
    for (const k of ["WatchdogSec=", "TimeoutStopSec=", "After=", "Wants="]) assert.isTrue(keys.some((l) => l.startsWith(k)), k)
    for (const dep of ["podman.socket", "network-online.target"]) {
      assert.include(keys.find((l) => l.startsWith("After="))!, dep)
      assert.include(keys.find((l) => l.startsWith("Wants="))!, dep)
    }
    assert.notInclude(unit, "--verbose", "the log level comes from kojid.conf or OPTIONS")
    if (!tool("systemd-analyze")) {
      if (required) assert.fail("systemd-analyze is missing: scripts/setup-host.sh installs systemd")
      console.warn("systemd-analyze verify skipped: systemd is not installed")
      return
    }
    // A root with the package's files and this host's units (the targets and podman.socket
    // the unit names), where ExecStart, ExecReload and the man page of Documentation= resolve.
    const root = path.join(work, "verify")
    cpSync(payload, root, { recursive: true, verbatimSymlinks: true })
    const units = path.join(root, "usr/lib/systemd/system")
    for (const dir of ["/usr/lib/systemd/system", "/lib/systemd/system"]) {
      if (existsSync(dir)) ok(run("cp", ["-an", `${dir}/.`, units]), `copying ${dir}`)
    }
    for (const link of ["bin", "lib"]) if (!existsSync(path.join(root, link))) symlinkSync(`usr/${link}`, path.join(root, link))
    copyFileSync(["/usr/bin/kill", "/bin/kill"].find(existsSync)!, path.join(root, "usr/bin/kill"))
    const r = run("systemd-analyze", ["verify", `--root=${root}`, path.join(units, "koji-adjutant.service")], {
      env: { ...process.env, MANPATH: path.join(root, "usr/share/man") }
    })
    assert.strictEqual(r.status, 0, r.stderr)
    assert.strictEqual(r.stderr.trim(), "", "no warnings (systemd-analyze exits 0 on ignored keys)")
  })

  it("has tmpfiles.d, logrotate and man page files their tools accept", () => {
    const tmpfiles = path.join(payload, "usr/lib/tmpfiles.d/koji-adjutant.conf")
    if (tool("systemd-tmpfiles")) {
      const root = path.join(work, "tmpfiles")
      mkdirSync(root)
      const r = run("systemd-tmpfiles", ["--create", `--root=${root}`, tmpfiles])
      assert.strictEqual(r.status, 0, r.stderr)
      assert.strictEqual(r.stderr.trim(), "")
      assert.strictEqual(lstatSync(path.join(root, "var/tmp/koji")).mode & 0o7777, 0o755)
    } else if (required) assert.fail("systemd-tmpfiles is missing: scripts/setup-host.sh installs systemd")
    assert.match(readFileSync(tmpfiles, "utf8"), /^x \/var\/tmp\/koji$/m, "kept out of /var/tmp's ageing")

    const logrotate = readFileSync(path.join(payload, "etc/logrotate.d/koji-adjutant"), "utf8")
    assert.notMatch(logrotate.replace(/^#.*$/gm, ""), /copytruncate/, "the daemon reopens its log on SIGHUP")
    assert.match(logrotate, /postrotate\s+\/usr\/bin\/systemctl kill --signal=HUP --kill-who=main koji-adjutant\.service/)
    if (tool("logrotate")) {
      const r = run("logrotate", ["--debug", "--state", path.join(work, "logrotate.state"), path.join(payload, "etc/logrotate.d/koji-adjutant")])
      assert.strictEqual(r.status, 0, r.stderr)
      assert.include(r.stderr, "rotating pattern: /var/log/kojid.log")
      assert.notMatch(r.stderr, /error/i)
    } else if (required) assert.fail("logrotate is missing: scripts/setup-host.sh installs it")

    const man = ["koji-adjutant.8", "koji-adjutant.8.gz"].map((f) => path.join(payload, "usr/share/man/man8", f)).find(existsSync)!
    const source = man.endsWith(".gz") ? ok(run("gzip", ["-dc", man]), "gunzip") : readFileSync(man, "utf8")
    for (const word of ["check-config", "build-local", "--force-lock", "SIGUSR1", "SIGHUP", "/etc/kojid/kojid.conf", "/var/log/kojid.log"]) {
      assert.include(source.replaceAll("\\-", "-"), word)
    }
    if (tool("groff")) {
      const r = spawnSync("groff", ["-man", "-ww", "-z"], { input: source, encoding: "utf8" })
      assert.strictEqual(r.status, 0, r.stderr)
      assert.strictEqual(r.stderr.trim(), "", "groff warnings")
    } else if (required) assert.fail("groff is missing: scripts/setup-host.sh installs groff-base")
  })

  it("runs from the package's files alone, and its kojid.conf passes check-config", () => {
    const app = path.join(payload, "usr/lib/koji-adjutant")
    const env = { PATH: process.env["PATH"] ?? "/usr/bin:/bin" }
    const main = path.join(app, "dist/main.js")
    assert.strictEqual(ok(run(process.execPath, [main, "--version"], { env, cwd: work }), "--version").trim(), version)
    const template = path.join(payload, "usr/share/koji-adjutant/kojid.conf")
    assert.strictEqual(readFileSync(template, "utf8"), readFileSync(path.join(repoRoot, "examples/kojid.conf"), "utf8"))
    assert.match(ok(run(process.execPath, [main, "check-config", "-c", template], { env, cwd: work }), "check-config"), /^\[adjutant\]$/m)
    if (existsSync(path.join(app, "node_modules/kerberos/build/Release/kerberos.node"))) {
      const probe = 'if (typeof require(process.argv[1]).initializeClient !== "function") process.exit(3)'
      const r = run(process.execPath, ["-e", probe, path.join(app, "node_modules/kerberos")], { env, cwd: work })
      assert.strictEqual(r.status, 0, `the packaged kerberos addon loads: ${r.stderr}`)
    }
    const wrapper = readFileSync(path.join(payload, "usr/bin/koji-adjutant"), "utf8")
    assert.include(wrapper, 'exec "$node" /usr/lib/koji-adjutant/dist/main.js "$@"')
  })

  describe.skipIf(mode !== "podman")("installed in a container", () => {
    it("creates kojid.conf from its template, and its wrapper runs the daemon with node-24", () => {
      const out = inContainer(
        'rpm -i --nodeps "$1" 2>/dev/null; state; echo "version $(koji-adjutant --version)"; ' +
          'stat -c "%a %U %n" /var/lib/koji-adjutant /var/lib/koji-adjutant/buildroots /var/tmp/koji',
        [`${process.execPath}:/usr/bin/node-24:ro`]
      )
      const template = sha(readFileSync(path.join(payload, "usr/share/koji-adjutant/kojid.conf")))
      assert.deepStrictEqual(stateLines(out), [
        `kojid.conf ${template}`,
        `version ${version}`,
        "755 root /var/lib/koji-adjutant",
        "755 root /var/lib/koji-adjutant/buildroots",
        "755 root /var/tmp/koji"
      ])
    })

    it("keeps an existing kojid.conf, and leaves it behind when erased", () => {
      const out = inContainer(
        'mkdir -p /etc/kojid && printf "[kojid]\\n; the admin\'s\\n" > /etc/kojid/kojid.conf; ' +
          'rpm -i --nodeps "$1" 2>/dev/null; state; echo erase; rpm -e koji-adjutant 2>/dev/null; state; ' +
          'test ! -e /usr/bin/koji-adjutant && echo gone'
      )
      const admin = sha("[kojid]\n; the admin's\n")
      assert.deepStrictEqual(stateLines(out), [`kojid.conf ${admin}`, "erase", `kojid.conf ${admin}`, "gone"])
    })

    it("installs beside koji-builder in either order, and keeps kojid.conf when koji-builder goes", () => {
      const kb = sha(KOJI_BUILDER_CONF)
      const edited = sha(`${KOJI_BUILDER_CONF}; edited\n`)
      // A kojid builder being moved over: its edited kojid.conf stays through both steps.
      const migrate = inContainer(
        'rpm -i --nodeps "$2" 2>/dev/null; echo "; edited" >> /etc/kojid/kojid.conf; ' +
          'rpm -i --nodeps "$1" 2>/dev/null; state; echo erase; rpm -e koji-builder 2>/dev/null; state'
      )
      assert.deepStrictEqual(stateLines(migrate), [`kojid.conf ${edited}`, "erase", `kojid.conf ${edited}`])
      // koji-builder after koji-adjutant: no file conflict; its own copy goes to .rpmnew.
      const template = sha(readFileSync(path.join(payload, "usr/share/koji-adjutant/kojid.conf")))
      const after = inContainer('rpm -i --nodeps "$1" 2>/dev/null; rpm -i --nodeps "$2" 2>/dev/null; state; rpm -q koji-adjutant koji-builder')
      assert.deepStrictEqual(stateLines(after), [`kojid.conf ${template}`, `kojid.conf.rpmnew ${kb}`, rpmName.replace(/\.rpm$/, ""), "koji-builder-1.35.0-1.noarch"])
    })
  })
})
