import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Containers, type ContainerSpec } from "../../src/containers/Containers.js"
import {
  ensureTestImage,
  podmanInstalled,
  podmanSkipReason,
  TEST_IMAGE,
  testContainersOptions,
  uniqueHostName
} from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const host = uniqueHostName("security")
let podman: { readonly socket: string }
let dir: string
const layer = () => Containers.layer(testContainersOptions(podman.socket, host))

const run = (command: string, extra: Partial<ContainerSpec> = {}) =>
  Effect.flatMap(Containers, (c) => c.run({ image: TEST_IMAGE, command: ["sh", "-c", command], role: "test", ...extra }))

const capEff = (status: string) => /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1]

describe.skipIf(!podmanInstalled)("Containers secure defaults (real podman)", () => {
  podman = podmanServiceForTests(host)
  beforeAll(async () => {
    ensureTestImage()
    dir = mkdtempSync(join(tmpdir(), "koji-adjutant-sec-"))
  })
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it.live("podman: memory, pids and cpu limits and ulimits are applied (cgroup v1 files)", () =>
    Effect.gen(function* () {
      const r = yield* run(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; ulimit -n; ulimit -u",
        { limits: { memory: 96 * 1024 * 1024, pids: 64, cpus: 0.5 } }
      )
      assert.strictEqual(r.stderr, "")
      assert.deepStrictEqual(r.stdout.trim().split("\n"), [String(96 * 1024 * 1024), "64", "50000", "100000", "4096", "4096"])
      const d = yield* run("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
      assert.deepStrictEqual(d.stdout.trim().split("\n"), [String(512 * 1024 * 1024), "512"], "configured defaults")
    }).pipe(Effect.provide(layer())))

  it.live("podman: kojid RLIMIT_* values reach the container, clamped to what the daemon may set", () =>
    Effect.gen(function* () {
      const r = yield* run("ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu")
      assert.deepStrictEqual(r.stdout.trim().split("\n"), ["2048", "3000", "100", "32768"])
    }).pipe(
      Effect.provide(
        Containers.layer(
          testContainersOptions(podman.socket, host, {
            ulimits: [
              { type: "RLIMIT_NOFILE", soft: 2048, hard: 3000 },
              // above podman's own 32768: would fail with EPERM at start unless clamped
              { type: "nproc", soft: 100, hard: 1_000_000 }
            ]
          })
        )
      )
    ))

  it.live("podman: network none has no route and only lo", () =>
    Effect.gen(function* () {
      const r = yield* run("ls /sys/class/net; tail -n +2 /proc/net/route | wc -l")
      assert.deepStrictEqual(r.stdout.trim().split("\n"), ["lo", "0"])
    }).pipe(Effect.provide(layer())))

  it.live("podman: a writable bind mount is writable, a default one is read-only, other host paths are invisible", () =>
    Effect.gen(function* () {
      const rw = join(dir, "out")
      const ro = join(dir, "src")
      const secret = join(dir, "client.pem")
      for (const d of [rw, ro]) {
        rmSync(d, { recursive: true, force: true })
        mkdirSync(d)
        // world-writable: the ro mount must refuse writes by itself, not through the mode.
        chmodSync(d, 0o777)
      }
      writeFileSync(join(ro, "input.txt"), "source\n")
      writeFileSync(secret, "-----BEGIN PRIVATE KEY-----\n")
      const r = yield* run(
        [
          "cat /src/input.txt",
          "echo result > /out/result.txt && echo rw-ok",
          "touch /src/x 2>&1 || echo ro-refused",
          `test -e ${secret} && echo secret-visible || echo secret-absent`,
          `test -e ${dir} && echo dir-visible || echo dir-absent`
        ].join("; "),
        {
          mounts: [
            { type: "bind", source: ro, destination: "/src" },
            { type: "bind", source: rw, destination: "/out", writable: true }
          ]
        }
      )
      const lines = r.stdout.trim().split("\n")
      assert.strictEqual(lines[0], "source")
      assert.strictEqual(lines[1], "rw-ok")
      assert.include(lines[2], "Read-only file system")
      assert.deepStrictEqual(lines.slice(-3), ["ro-refused", "secret-absent", "dir-absent"])
      assert.strictEqual(readFileSync(join(rw, "result.txt"), "utf8"), "result\n")
      assert.isFalse(existsSync(join(ro, "x")))
    }).pipe(Effect.provide(layer())))

  it.live("podman: every capability is dropped unless added; no_new_privileges is set", () =>
    Effect.gen(function* () {
      const none = yield* run("cat /proc/self/status")
      assert.strictEqual(capEff(none.stdout), "0000000000000000")
      assert.match(none.stdout, /^NoNewPrivs:\s*1$/m)
      const chroot = yield* run("cat /proc/self/status", { capAdd: ["SYS_CHROOT"] })
      // CAP_SYS_CHROOT is bit 18.
      assert.strictEqual(capEff(chroot.stdout), (1n << 18n).toString(16).padStart(16, "0"))
    }).pipe(Effect.provide(layer())))

  it.live("podman: a read-only root keeps /tmp and /var/tmp writable; users come from spec or build_user", () =>
    Effect.gen(function* () {
      const r = yield* run(
        "touch /etc/x 2>/dev/null && echo etc-writable || echo etc-ro; touch /tmp/a /var/tmp/b && echo tmp-ok; id -u",
        { readOnlyRoot: true, user: "1000:1000" }
      )
      assert.deepStrictEqual(r.stdout.trim().split("\n"), ["etc-ro", "tmp-ok", "1000"])
      const build = yield* run("id -u; id -g", { role: "build" })
      assert.deepStrictEqual(build.stdout.trim().split("\n"), ["1000", "1000"])
      const root = yield* run("id -u")
      assert.strictEqual(root.stdout, "0\n")
    }).pipe(Effect.provide(layer())))
})
