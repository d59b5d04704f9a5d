import { Command } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, LogLevel } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { vi } from "vitest"
import { checkConfigCommand, kojidOptions } from "../../src/cli/commandLine.js"
import type { CommandLineFlags } from "../../src/config/AdjutantConfig.js"
import { stderrLoggerLayer } from "../../src/daemon/Logging.js"

const run = Command.run(checkConfigCommand, { name: "koji-adjutant", version: "test" })

/** Runs check-config with argv, capturing stdout and the log lines on stderr (kojid format, as the CLI). */
const runCaptured = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const out: Array<string> = []
    const err: Array<string> = []
    const log = vi.spyOn(console, "log").mockImplementation((...a: Array<unknown>) => void out.push(a.join(" ")))
    const write = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      err.push(String(chunk))
      return true
    })
    const exit = yield* Effect.exit(run(["node", "koji-adjutant", ...args])).pipe(
      Effect.provide(stderrLoggerLayer({ format: "kojid", area: "check-config", level: LogLevel.Info })),
      Effect.ensuring(Effect.sync(() => { log.mockRestore(); write.mockRestore() }))
    )
    return { exit, stdout: out.join("\n"), stderr: err.join("") }
  }).pipe(Effect.provide(NodeContext.layer))

const withConfig = <A, E>(content: string, f: (file: string) => Effect.Effect<A, E>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "adjutant-cli-"))),
    (dir) => {
      const file = join(dir, "kojid.conf")
      writeFileSync(file, content)
      return f(file)
    },
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

const GOOD = `[kojid]
server = https://hub.example.com/kojihub
topurl = https://hub.example.com/kojifiles
maxjobs = 5
password = sekrit
[adjutant]
container_pids = 123
`

describe("check-config", () => {
  it.live("prints the effective configuration with flags applied and secrets redacted", () =>
    withConfig(GOOD, (file) =>
      Effect.gen(function* () {
        const { exit, stdout, stderr } = yield* runCaptured(["-c", file, "--maxjobs", "3", "--plugin", "runroot", "--plugin", "x", "-v"])
        // The effective values are printed; "x" is no plugin of ours, so the daemon would not start: exit 1.
        assert.isTrue(Exit.isFailure(exit), String(exit))
        assert.match(stderr, /\[ERROR\] koji\.check-config: plugin "x" not found: koji-adjutant has runroot/)
        assert.match(stdout, /^maxjobs = 3$/m)
        assert.match(stdout, /^plugin = runroot x$/m)
        assert.match(stdout, /^container_pids = 123$/m)
        assert.match(stdout, /^password = \*{8}$/m)
        assert.notInclude(stdout, "sekrit")
        assert.include(stdout, `read from ${file}`)
        assert.include(stdout, "verbose=true")
      })
    )
  )

  it.live("fails with the ConfigError message naming key and file", () =>
    withConfig(GOOD.replace("maxjobs = 5", "maxjobs = lots"), (file) =>
      Effect.gen(function* () {
        const { exit, stderr, stdout } = yield* runCaptured(["--config", file])
        assert.isTrue(Exit.isFailure(exit))
        assert.include(stderr, "maxjobs")
        assert.include(stderr, file)
        assert.include(stderr, "must be a valid integer")
        assert.strictEqual(stderr.trimEnd().split("\n").length, 1, stderr)
        assert.match(stderr, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[ERROR\] koji\.check-config: /)
        assert.notInclude(stderr, "    at ")
        assert.strictEqual(stdout, "")
      })
    )
  )

  it.live("rejects an unknown key in [adjutant]", () =>
    withConfig(GOOD + "podman_sokcet = /run/podman.sock\n", (file) =>
      Effect.gen(function* () {
        const { exit, stderr } = yield* runCaptured(["-c", file])
        assert.isTrue(Exit.isFailure(exit))
        assert.include(stderr, "unknown config option: podman_sokcet in [adjutant]")
      })
    )
  )
})

describe("kojidOptions", () => {
  it.live("parses kojid's flags into Partial<CommandLineFlags>", () =>
    Effect.gen(function* () {
      let seen: Partial<CommandLineFlags> | undefined
      const probe = Command.make("kojid", { flags: kojidOptions }, ({ flags }) => Effect.sync(() => { seen = flags }))
      yield* Command.run(probe, { name: "kojid", version: "test" })([
        "node", "kojid", "-c", "/tmp/k.conf", "--fg", "--force-lock", "-v", "-d", "--debug-task", "--debug-xmlrpc", "--debug-mock",
        "--skip-main", "--user", "u", "--password", "p", "--maxjobs", "2", "--minspace", "100", "--sleeptime", "1",
        "--admin-emails", "a@b", "--topdir", "/t", "--topurl", "https://x/kf", "--workdir", "/w", "--chroot-tmpdir", "/c",
        "--pluginpath", "/pp", "--plugin", "runroot", "--mockdir", "/m", "--mockuser", "mu", "-s", "https://x/kojihub"
      ])
      assert.deepStrictEqual(seen, {
        config: "/tmp/k.conf", fg: true, force_lock: true, verbose: true, debug: true, debug_task: true,
        debug_xmlrpc: true, debug_mock: true, skip_main: true, user: "u", password: "p", maxjobs: 2, minspace: 100, sleeptime: 1,
        admin_emails: "a@b", topdir: "/t", topurl: "https://x/kf", workdir: "/w", chroot_tmpdir: "/c",
        pluginpath: "/pp", plugin: ["runroot"], mockdir: "/m", mockuser: "mu", server: "https://x/kojihub"
      })
      yield* Command.run(probe, { name: "kojid", version: "test" })(["node", "kojid"])
      assert.deepStrictEqual(seen, {
        config: "/etc/kojid/kojid.conf", fg: false, force_lock: false, verbose: false, debug: false,
        debug_task: false, debug_xmlrpc: false, debug_mock: false, skip_main: false
      })
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
