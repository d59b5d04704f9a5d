/**
 * The command line as an admin meets it (issue 14 §4, §7), through the real `node dist/main.js`:
 * a fatal error is one line on stderr and in the log file with no stack (the stack with -d); a
 * bad command line is argparse's exit 2 without a JSON dump; --help describes every flag in plain
 * text; --debug-mock is accepted with a note; under systemd the lines carry their syslog
 * priority; what the daemon refuses at start, check-config refuses with the same words.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Command, HelpDoc } from "@effect/cli"
import * as CliConfig from "@effect/cli/CliConfig"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { COMMAND_DOCS, invocationOf, renderHelp } from "../../src/cli/help.js"
import { checkConfigCommand, kojidOptions } from "../../src/cli/commandLine.js"
import { buildLocalCommand } from "../../src/local/buildLocal.js"
import { adminCommands } from "../../src/admin/commands.js"
import { distMain, ensureBuilt } from "../daemon/child.js"

let dir = ""
beforeAll(() => {
  ensureBuilt()
  dir = mkdtempSync(path.join(os.tmpdir(), "adjutant-cli-bin-"))
}, 180_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Runs the CLI with a clean environment (no systemd variables unless given). */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !["JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET"].includes(k)))
  const r = spawnSync(process.execPath, [distMain, ...args], { encoding: "utf8", env: { ...base, ...env }, timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** A kojid.conf in the test dir; the hub is a closed port (nothing here gets as far as a login). */
const conf = (name: string, kojid: string, adjutant = "") => {
  const file = path.join(dir, `${name}.conf`)
  const log = path.join(dir, `${name}.log`)
  writeFileSync(file, [
    "[kojid]", "server = http://127.0.0.1:9/kojihub", "topurl = http://127.0.0.1:9/kojifiles", "user = builder", "password = pw",
    `workdir = ${dir}/work`, kojid, "[adjutant]", `log_file = ${log}`, `podman_socket = unix://${dir}/no-podman.sock`, adjutant, ""
  ].join("\n"))
  return { file, log: () => (existsSync(log) ? readFileSync(log, "utf8") : "") }
}

const LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[[A-Z]+\] koji\.[a-z-]+: /

describe("fatal errors", () => {
  it("a config the daemon cannot use: one CRITICAL line on stderr and in the log file, no stack, exit 1", () => {
    const c = conf("badvalue", "maxjobs = lots")
    const r = cli(["-c", c.file])
    assert.strictEqual(r.status, 1, r.stderr)
    const lines = r.stderr.trimEnd().split("\n")
    assert.strictEqual(lines.length, 1, r.stderr)
    assert.match(lines[0]!, LINE)
    assert.match(lines[0]!, /\[CRITICAL\] koji\.daemon: .*maxjobs.*badvalue\.conf/)
    assert.notInclude(r.stderr, "    at ")
    assert.notInclude(r.stderr, '{"_tag"')
    assert.strictEqual(c.log().trimEnd(), lines[0], "the same line is in log_file")
  })

  it("with -d the stack comes along", () => {
    const c = conf("badvalue-debug", "maxjobs = lots")
    const r = cli(["-c", c.file, "-d"])
    assert.strictEqual(r.status, 1)
    assert.match(r.stderr, /\[CRITICAL\] koji\.daemon: /)
    assert.match(r.stderr, /\n\s+at /)
  })

  it("an unknown plugin: the daemon stops before login with one line; check-config says the same and exits 1", () => {
    const runroot = path.join(dir, "runroot-ok.conf")
    writeFileSync(runroot, "[paths]\nsafe_roots = /mnt/koji\n")
    const c = conf("plugin", "plugin = runroot nosuch", `runroot_config = ${runroot}`)
    const daemon = cli(["-c", c.file, "--force-lock", "--debug-mock"])
    assert.strictEqual(daemon.status, 1, daemon.stderr)
    assert.match(c.log(), /\[WARNING\] koji\.daemon: --debug-mock .* ignored/)
    const critical = c.log().split("\n").filter((l) => l.includes("[CRITICAL]"))
    assert.strictEqual(critical.length, 1, c.log())
    assert.include(critical[0]!, 'plugin "nosuch" not found: koji-adjutant has runroot')
    assert.strictEqual(daemon.stderr.trimEnd(), critical[0], "without --fg only the fatal line reaches stderr")
    const check = cli(["check-config", "-c", c.file])
    assert.strictEqual(check.status, 1)
    assert.match(check.stderr, /\[ERROR\] koji\.check-config: plugin "nosuch" not found: koji-adjutant has runroot/)
    assert.notInclude(check.stderr, "runroot plugin:")
  })

  it("the runroot plugin without its runroot.conf: the daemon refuses it, and check-config", () => {
    const c = conf("runroot", "plugin = runroot", `runroot_config = ${dir}/missing-runroot.conf`)
    const daemon = cli(["-c", c.file, "--fg"])
    assert.strictEqual(daemon.status, 1, daemon.stderr)
    assert.match(daemon.stderr, /\[CRITICAL\] koji\.daemon: runroot plugin: .*missing-runroot\.conf does not exist/)
    const check = cli(["check-config", "-c", c.file])
    assert.strictEqual(check.status, 1)
    assert.match(check.stderr, /\[ERROR\] koji\.check-config: runroot plugin: .*missing-runroot\.conf does not exist/)
    writeFileSync(path.join(dir, "missing-runroot.conf"), "[paths]\nsafe_roots = /mnt/koji\n")
    const ok = cli(["check-config", "-c", c.file])
    assert.strictEqual(ok.status, 0, ok.stderr)
    rmSync(path.join(dir, "missing-runroot.conf"))
  })

  it("unreadable cert and CA files are refused by check-config as the daemon's transport refuses them", () => {
    const badCa = path.join(dir, "ca.pem")
    writeFileSync(badCa, "not a certificate\n")
    const cert = path.join(dir, "client.pem")
    writeFileSync(cert, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    const c = conf("tls", `cert = ${cert}\nserverca = ${dir}/no-such-ca.pem`)
    const r = cli(["check-config", "-c", c.file])
    assert.strictEqual(r.status, 1)
    assert.include(r.stderr, `cannot read server CA (serverca) ${dir}/no-such-ca.pem`)
    assert.include(r.stderr, `client certificate (cert) ${cert} is not usable`)
    const c2 = conf("tls2", `serverca = ${badCa}`)
    const r2 = cli(["check-config", "-c", c2.file])
    assert.strictEqual(r2.status, 1)
    assert.include(r2.stderr, `server CA (serverca) ${badCa} holds no PEM certificate`)
  })

  it("a build_userns range an account uses is refused by check-config, as Buildroots refuses it at start", () => {
    const c = conf("userns", "", "build_userns = 1:65536")
    const r = cli(["check-config", "-c", c.file])
    assert.strictEqual(r.status, 1)
    assert.match(r.stderr, /\[ERROR\] koji\.check-config: build_userns = 1:65536 holds \S+/)
  })

  it("a bad command line: the parser's message, exit 2, no JSON dump", () => {
    const r = cli(["--maxjobs", "lots"])
    assert.strictEqual(r.status, 2)
    assert.include(r.stderr, "'lots' is not a integer")
    assert.notInclude(r.stderr, "_tag")
    assert.notInclude(r.stderr, "\x1b[")
  })

  it("under systemd (--fg, INVOCATION_ID) stderr lines carry their syslog priority; the log file does not", () => {
    const c = conf("journal", "plugin = nosuch")
    const r = cli(["-c", c.file, "--fg", "--debug-mock"], { INVOCATION_ID: "0123456789abcdef" })
    assert.strictEqual(r.status, 1)
    const lines = r.stderr.trimEnd().split("\n")
    assert.isTrue(lines.length >= 2, r.stderr)
    assert.isTrue(lines.some((l) => /^<4>\d{4}-.* \[WARNING\] koji\.daemon: --debug-mock/.test(l)), r.stderr)
    assert.isTrue(lines.some((l) => /^<2>\d{4}-.* \[CRITICAL\] koji\.daemon: plugin "nosuch"/.test(l)), r.stderr)
    assert.isTrue(c.log().split("\n").filter((l) => l !== "").every((l) => LINE.test(l)), c.log())
  })

  it("log_format = json and logfmt apply to the fatal line too", () => {
    const j = conf("json", "plugin = nosuch", "log_format = json")
    const rj = cli(["-c", j.file])
    const parsed: unknown = JSON.parse(rj.stderr.trim())
    assert.deepInclude(parsed, { level: "CRITICAL", logger: "koji.daemon" })
    const l = conf("logfmt", "maxjobs = lots", "log_format = logfmt")
    const rl = cli(["-c", l.file])
    assert.match(rl.stderr.trim(), /^time=\S+ level=CRITICAL logger=koji\.daemon msg=".*maxjobs/)
    assert.strictEqual(l.log().trim(), rl.stderr.trim())
  })
})

/** Every `--flag` a @effect/cli command parses, from its own help. */
const parsedFlags = <N extends string, R, E, A>(command: Command.Command<N, R, E, A>): ReadonlyArray<string> => {
  // eslint-disable-next-line no-control-regex
  const text = HelpDoc.toAnsiText(Command.getHelp(command, CliConfig.defaultConfig)).replace(/\x1b\[[0-9;]*m/g, "")
  return [...new Set([...text.matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]))].filter((f) => !["--completions", "--log-level", "--wizard", "--version", "--help"].includes(f))
}

describe("--help", () => {
  const check = <N extends string, R, E, A>(name: string, command: Command.Command<N, R, E, A>) => {
    const parsed = parsedFlags(command)
    const documented = COMMAND_DOCS[name]!.options.flatMap((o) => [...o.flags.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]))
    for (const flag of parsed) assert.include(documented, flag, `${name || "koji-adjutant"} --help lacks ${flag}`)
    for (const flag of documented) if (flag !== "--help" && flag !== "--version") assert.include(parsed, flag, `${name || "koji-adjutant"} --help names ${flag}, which it does not parse`)
  }

  it("describes every flag each command parses, and no flag it does not", () => {
    check("", Command.make("koji-adjutant", { flags: kojidOptions }))
    check("check-config", checkConfigCommand)
    check("build-local", buildLocalCommand)
    const [status, cache, containers, images] = adminCommands
    check("status", status)
    check("cache", cache)
    check("containers", containers)
    check("images", images)
  })

  it("check-config --help shows only what applies to it", () => {
    const text = renderHelp("check-config")
    for (const flag of ["--fg", "--force-lock", "--skip-main", "--debug-mock", "--debug-xmlrpc"]) assert.notInclude(text, flag)
    assert.include(text, "--probe")
  })

  it("the binary prints it in plain text: no colour, no type boilerplate, for every command", () => {
    for (const name of Object.keys(COMMAND_DOCS)) {
      const r = cli(name === "" ? ["--help"] : [name, "--help"])
      assert.strictEqual(r.status, 0, r.stderr)
      assert.strictEqual(r.stdout, renderHelp(name))
      assert.notInclude(r.stdout, "\x1b[")
      assert.notInclude(r.stdout, "A user-defined piece of text")
      assert.notInclude(r.stdout, "This setting is optional")
    }
  })

  it("finds the command word and -c before @effect/cli parses", () => {
    assert.deepStrictEqual(invocationOf(["-c", "status", "cache", "list", "--help"]), { command: "cache", help: true, config: "status", debug: false, verbose: false })
    assert.deepStrictEqual(invocationOf(["--user", "images", "-d"]), { command: "", help: false, config: undefined, debug: true, verbose: false })
  })
})
