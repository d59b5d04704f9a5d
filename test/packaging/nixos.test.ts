/**
 * flake.nix's NixOS module, evaluated by the real nix-instantiate (CI's check is only
 * `nix-instantiate --parse`): `services.koji-adjutant.settings` renders to a kojid.conf that the
 * daemon's own parser reads back with the values given, and the service it defines is the
 * packaged unit's equivalent. nixpkgs is not on this machine, so the module is applied to a
 * small stand-in for nixpkgs' `lib` and `pkgs` (just what the module calls: `mkIf` keeps or
 * drops, `writeText` returns the text); NixOS' option merging is not exercised. Skips visibly
 * without nix-instantiate, except under KOJI_ADJUTANT_REQUIRE_PODMAN=1 (CI), where it fails.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { parseConfig } from "../../src/config/AdjutantConfig.js"

const flake = path.resolve(import.meta.dirname, "../../flake.nix")
const hasNix = spawnSync("nix-instantiate", ["--version"], { stdio: "ignore" }).status === 0
const skipReason = "nix-instantiate is not installed (scripts/setup-host.sh installs nix-bin)"
if (!hasNix && process.env["KOJI_ADJUTANT_REQUIRE_PODMAN"] === "1") {
  it("nix-instantiate is installed", () => assert.fail(skipReason))
} else if (!hasNix) console.warn(`NixOS module tests skipped: ${skipReason}`)

/** Evaluates `{ flake }: EXPR` (a fixed text) with this checkout's flake.nix, to JSON. */
const evalNix = (expr: string): unknown => {
  const dir = mkdtempSync(path.join(tmpdir(), "adjutant-nix-"))
  try {
    writeFileSync(path.join(dir, "test.nix"), expr)
    const r = spawnSync("nix-instantiate", ["--eval", "--strict", "--json", "--argstr", "flake", flake, path.join(dir, "test.nix")], {
      encoding: "utf8",
      timeout: 60_000
    })
    assert.strictEqual(r.status, 0, r.stderr)
    return JSON.parse(r.stdout)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const SETTINGS = `{
  kojid = {
    server = "https://koji.example.com/kojihub";
    topurl = "https://koji.example.com/kojifiles";
    maxjobs = 4;
    offline_retry = false;
    log_level = "INFO";
    admin_emails = null;
    allowed_scms = [ "git.example.com:/rpms/*:no" "src.example.com:/*:no:fedpkg,sources" ];
  };
  adjutant = {
    log_file = "/var/log/koji-adjutant/kojid.log";
    oci_runtime = "crun";
    container_cpus = 1.5;
    insecure_registries = [ "registry.local:5000" ];
    image_rules = [ "f4*/aarch64 = registry.fedoraproject.org/fedora:41" "*/* = localhost/koji-adjutant-bootstrap:latest" ];
  };
}`

const outputs = "let o = (import flake).outputs { self = o; nixpkgs = { }; }; in o"

describe.skipIf(!hasNix)("NixOS module", () => {
  it("renders settings to a kojid.conf the daemon reads back", () => {
    const text = evalNix(`{ flake }: (${outputs}).lib.kojidConf ${SETTINGS}`)
    assert.isString(text)
    const parsed = parseConfig(String(text), "/etc/kojid/kojid.conf", {}, { exists: () => false })
    if (Either.isLeft(parsed)) assert.fail(`${parsed.left.message}\n${String(text)}`)
    const { kojid, adjutant } = parsed.right
    assert.strictEqual(kojid.server, "https://koji.example.com/kojihub")
    assert.strictEqual(kojid.maxjobs, 4)
    assert.strictEqual(kojid.offline_retry, false)
    assert.strictEqual(kojid.log_level, "INFO")
    assert.strictEqual(kojid.admin_emails, null, "null leaves the key out")
    assert.deepStrictEqual(kojid.allowed_scms.split(/\s+/).filter((w) => w !== ""), ["git.example.com:/rpms/*:no", "src.example.com:/*:no:fedpkg,sources"])
    assert.strictEqual(adjutant.oci_runtime, "crun")
    assert.strictEqual(adjutant.container_cpus, 1.5)
    assert.deepStrictEqual(adjutant.insecure_registries, ["registry.local:5000"])
    assert.deepStrictEqual(adjutant.image_rules, [
      { tag: "f4*", arch: "aarch64", image: "registry.fedoraproject.org/fedora:41" },
      { tag: "*", arch: "*", image: "localhost/koji-adjutant-bootstrap:latest" }
    ])
    assert.strictEqual(adjutant.log_file, "/var/log/koji-adjutant/kojid.log")
  })

  it("runs the daemon as a notify service with a watchdog, its directories and podman, without --verbose", () => {
    const stubs = `
      lib = rec {
        mkIf = cond: value: if cond then value else { };
        optional = cond: value: if cond then [ value ] else [ ];
        optionalString = cond: value: if cond then value else "";
        escapeShellArgs = args: builtins.concatStringsSep " " (map (a: "'" + a + "'") args);
        mkOption = o: o; mkEnableOption = d: d; literalExpression = e: e;
        types = { nullOr = t: t; oneOf = ts: ts; listOf = t: t; attrsOf = t: t; enum = v: v; submodule = m: m;
                  bool = "bool"; int = "int"; float = "float"; str = "str"; path = "path"; package = "package"; };
      };
      pkgs = { stdenv.hostPlatform.system = "x86_64-linux"; writeText = name: text: text; coreutils = "/coreutils"; };`
    const cfg = (configFile: string, extraArgs: string) =>
      `{ enable = true; package = "/pkg"; settings = ${SETTINGS}; configFile = ${configFile}; extraArgs = ${extraArgs}; }`
    const expr = (configFile: string, extraArgs: string) => `{ flake }: let ${stubs}
      m = (${outputs}).nixosModules.default {
        inherit lib pkgs;
        config = { services.koji-adjutant = ${cfg(configFile, extraArgs)}; systemd.package = "/systemd"; };
      };
      in { inherit (m.config) virtualisation environment systemd services; }`
    interface Evaluated {
      readonly virtualisation: { readonly podman: { readonly enable: boolean } }
      readonly environment: { readonly etc: Record<string, { readonly source?: string }> }
      readonly systemd: {
        readonly tmpfiles: { readonly rules: ReadonlyArray<string> }
        readonly services: Record<string, { readonly conflicts: ReadonlyArray<string>; readonly wants: ReadonlyArray<string>; readonly serviceConfig: Record<string, string> }>
      }
      readonly services: { readonly logrotate: { readonly settings: Record<string, Record<string, unknown>> } }
    }
    const m = evalNix(expr("null", "[ ]")) as Evaluated
    assert.isTrue(m.virtualisation.podman.enable)
    const service = m.systemd.services["koji-adjutant"]!
    const sc = service.serviceConfig
    assert.strictEqual(sc["Type"], "notify")
    assert.isString(sc["WatchdogSec"])
    assert.strictEqual(sc["ExecStart"], "/pkg/bin/koji-adjutant -c /etc/kojid/kojid.conf --fg --force-lock")
    assert.strictEqual(sc["ExecReload"], "/coreutils/bin/kill -USR1 $MAINPID")
    assert.strictEqual(sc["KillMode"], "mixed")
    assert.strictEqual(sc["StateDirectory"], "koji-adjutant koji-adjutant/buildroots")
    assert.strictEqual(sc["LogsDirectory"], "koji-adjutant")
    assert.include(service.conflicts, "kojid.service")
    assert.include(service.wants, "podman.socket")
    assert.include(m.systemd.tmpfiles.rules, "x /var/tmp/koji")
    assert.include(m.environment.etc["kojid/kojid.conf"]!.source!, "[adjutant]\n")
    const rotate = m.services.logrotate.settings["koji-adjutant"]!
    assert.strictEqual(rotate["files"], "/var/log/koji-adjutant/kojid.log")
    assert.strictEqual(rotate["postrotate"], "/systemd/bin/systemctl kill --signal=HUP --kill-who=main koji-adjutant.service")
    assert.notProperty(rotate, "copytruncate")

    const own = evalNix(expr('"/run/secrets/kojid.conf"', '[ "--debug" ]')) as Evaluated
    const ownSc = own.systemd.services["koji-adjutant"]!.serviceConfig
    assert.strictEqual(ownSc["ExecStart"], "/pkg/bin/koji-adjutant -c /run/secrets/kojid.conf --fg --force-lock '--debug'")
    assert.deepStrictEqual(own.environment.etc["kojid/kojid.conf"], {}, "a configFile of one's own: nothing in /etc")
    for (const v of [sc, ownSc]) assert.notInclude(JSON.stringify(v), "--verbose")
  })
})
