import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { AdjutantConfig } from "../../src/config/AdjutantConfig.js"
import { containersOptionsFromConfig } from "../../src/containers/Containers.js"
import { ownerOf } from "../../src/containers/labels.js"
import {
  capabilityName,
  clampUlimits,
  type ContainerSpec,
  containerName,
  DEFAULT_ULIMITS,
  mergeUlimits,
  parseProcLimits,
  rlimitName,
  selinuxEnabled,
  specProblem,
  toSpecGenerator
} from "../../src/containers/spec.js"

const options = {
  hostName: "builder01.example.com",
  defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 2 },
  stopTimeout: 10,
  buildUser: "1000:1000"
}
const base: ContainerSpec = { image: "localhost/img:1", command: ["rpmbuild", "-bs"], role: "buildroot", taskId: 1001, buildrootId: 55 }
const gen = (spec: Partial<ContainerSpec> = {}, opts: Partial<typeof options & { ociRuntime: string; cgroupParent: string; selinux: boolean }> = {}) =>
  toSpecGenerator({ ...base, ...spec }, { ...options, ...opts }, "kojiadj-x", DEFAULT_ULIMITS)

const PROC_LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max stack size            8388608              unlimited            bytes
Max core file size        0                    unlimited            bytes
Max processes             96364                96364                processes
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`

describe("spec: secure defaults", () => {
  it("a minimal spec gets every default", () => {
    const g = gen()
    assert.strictEqual(g.privileged, false)
    assert.deepStrictEqual(g.cap_drop, ["ALL"])
    assert.deepStrictEqual(g.cap_add, [])
    assert.strictEqual(g.no_new_privileges, true)
    assert.deepStrictEqual(g.netns, { nsmode: "none" })
    assert.strictEqual(g.init, true)
    assert.strictEqual(g.read_only_filesystem, false)
    assert.strictEqual(g.stop_timeout, 10)
    assert.deepStrictEqual(g.labels, {
      "io.koji.adjutant.host": "builder01.example.com",
      "io.koji.adjutant.role": "buildroot",
      "io.koji.adjutant.task": "1001",
      "io.koji.adjutant.buildroot": "55"
    })
    assert.deepStrictEqual(g.resource_limits, {
      memory: { limit: 2 * 1024 ** 3, swap: 2 * 1024 ** 3 },
      pids: { limit: 1024 },
      cpu: { quota: 200_000, period: 100_000 }
    })
    assert.deepStrictEqual(g.r_limits, DEFAULT_ULIMITS)
    assert.strictEqual(g.image, "localhost/img:1")
    assert.isUndefined(g.user)
    assert.isUndefined(g.timeout)
    assert.deepStrictEqual(g.mounts, [])
    for (const k of ["rootfs", "oci_runtime", "cgroup_parent", "hostname", "work_dir", "env"]) assert.notProperty(g, k)
  })

  it("bind mounts are read-only unless writable; tmpfs gets a size", () => {
    const g = gen({
      mounts: [
        { type: "bind", source: "/h/src", destination: "/src" },
        { type: "bind", source: "/h/out", destination: "/out", writable: true },
        { type: "tmpfs", destination: "/scratch", size: "64m" }
      ]
    })
    assert.deepStrictEqual(g.mounts, [
      { destination: "/src", type: "bind", source: "/h/src", options: ["rbind", "ro"] },
      { destination: "/out", type: "bind", source: "/h/out", options: ["rbind", "rw"] },
      { destination: "/scratch", type: "tmpfs", source: "tmpfs", options: ["rw", "size=64m", "mode=1777"] }
    ])
  })

  it("a read-only root gets tmpfs on /tmp and /var/tmp unless the spec mounts them", () => {
    const g = gen({ readOnlyRoot: true, mounts: [{ type: "bind", source: "/h/tmp", destination: "/tmp", writable: true }] })
    assert.strictEqual(g.read_only_filesystem, true)
    assert.deepStrictEqual(g.mounts.map((m) => `${m.type}:${m.destination}`), ["bind:/tmp", "tmpfs:/var/tmp"])
    assert.deepStrictEqual(gen({ readOnlyRoot: true }).mounts.map((m) => m.destination), ["/tmp", "/var/tmp"])
  })

  it("only the asked-for capabilities, network and limits are widened", () => {
    const g = gen({ capAdd: ["sys_chroot", "CAP_CHOWN"], network: "bridge", limits: { cpus: 1.5, memory: 0, pids: 0 } })
    assert.deepStrictEqual(g.cap_drop, ["ALL"])
    assert.deepStrictEqual(g.cap_add, ["CAP_SYS_CHROOT", "CAP_CHOWN"])
    assert.deepStrictEqual(g.netns, { nsmode: "bridge" })
    assert.deepStrictEqual(g.resource_limits, { cpu: { quota: 150_000, period: 100_000 } }, "0 means unlimited")
    assert.strictEqual(capabilityName(" Net_Raw "), "CAP_NET_RAW")
  })

  it("user: the spec's, else build_user for role build only", () => {
    assert.strictEqual(gen({ role: "build" }).user, "1000:1000")
    assert.strictEqual(gen({ role: "build", user: "mockbuild" }).user, "mockbuild")
    assert.isUndefined(gen({ role: "scm" }).user)
  })

  it("rootfs, timeout, runtime, cgroup parent and the rest are passed through", () => {
    const g = gen(
      { image: undefined, rootfs: { path: "/var/lib/br/55", overlay: true }, timeoutSeconds: 2.5, init: false, hostname: "h", workDir: "/w", env: { A: "1" } },
      { ociRuntime: "crun", cgroupParent: "/koji" }
    )
    assert.notProperty(g, "image")
    assert.strictEqual(g.rootfs, "/var/lib/br/55")
    assert.strictEqual(g.rootfs_overlay, true)
    assert.strictEqual(g.timeout, 3)
    assert.strictEqual(g.init, false)
    assert.strictEqual(g.oci_runtime, "crun")
    assert.strictEqual(g.cgroup_parent, "/koji")
    assert.deepStrictEqual([g.hostname, g.work_dir, g.env], ["h", "/w", { A: "1" }])
  })

  it("specProblem rejects what podman would misread", () => {
    assert.isUndefined(specProblem(base))
    assert.match(specProblem({ ...base, image: undefined }) ?? "", /exactly one of image and rootfs/)
    assert.match(specProblem({ ...base, rootfs: { path: "/r", overlay: false } }) ?? "", /exactly one/)
    assert.match(specProblem({ ...base, command: [] }) ?? "", /command is empty/)
    assert.match(
      specProblem({ ...base, mounts: [{ type: "tmpfs", destination: "/tmp" }, { type: "bind", source: "/a", destination: "/tmp" }] }) ?? "",
      /two mounts on \/tmp/
    )
  })

  it("containerName is a valid podman name carrying role and task", () => {
    const n = containerName({ ...base, role: "build/arch x" }, "0a1b2c3d")
    assert.strictEqual(n, "kojiadj-build_arch_x-t1001-0a1b2c3d")
    assert.match(n, /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/)
    assert.strictEqual(containerName({ ...base, name: "given" }, "x"), "given")
  })

  it("labels read back to their owner", () => {
    assert.deepStrictEqual(ownerOf(gen().labels), { host: "builder01.example.com", taskId: 1001, buildrootId: 55, role: "buildroot" })
    assert.isUndefined(ownerOf({ other: "x" }))
  })
})

describe("spec: ulimits", () => {
  it("RLIMIT_* names become podman's short names (RLIMIT_NOFILE fails at start, notes §5.2)", () => {
    assert.strictEqual(rlimitName("RLIMIT_NOFILE"), "nofile")
    assert.strictEqual(rlimitName("RLIMIT_AS"), "as")
    assert.strictEqual(rlimitName("nproc"), "nproc")
  })

  it("later lists override earlier ones by resource", () => {
    assert.deepStrictEqual(mergeUlimits(DEFAULT_ULIMITS, [{ type: "RLIMIT_NOFILE", soft: 100, hard: 200 }, { type: "RLIMIT_CORE", soft: 0, hard: 0 }]), [
      { type: "nofile", soft: 100, hard: 200 },
      { type: "nproc", soft: 4096, hard: 4096 },
      { type: "core", soft: 0, hard: 0 }
    ])
  })

  it("parses /proc/self/limits", () => {
    const l = parseProcLimits(PROC_LIMITS)
    assert.deepStrictEqual(l.get("nofile"), { soft: 20000, hard: 20000 })
    assert.deepStrictEqual(l.get("nproc"), { soft: 96364, hard: 96364 })
    assert.deepStrictEqual(l.get("stack"), { soft: 8388608, hard: Infinity })
    assert.deepStrictEqual(l.get("cpu"), { soft: Infinity, hard: Infinity })
    assert.strictEqual(l.size, 6)
  })

  it("clamps to the daemon's hard limits and podman's nproc cap of 32768", () => {
    const host = parseProcLimits(PROC_LIMITS)
    assert.deepStrictEqual(
      clampUlimits(
        [
          { type: "nofile", soft: 30000, hard: 50000 },
          { type: "nproc", soft: 100, hard: 96364 },
          { type: "stack", soft: 1024, hard: Infinity },
          { type: "msgqueue", soft: 5, hard: 10 }
        ],
        host
      ),
      [
        { type: "nofile", soft: 20000, hard: 20000 },
        { type: "nproc", soft: 100, hard: 32768 },
        { type: "stack", soft: 1024, hard: Infinity },
        { type: "msgqueue", soft: 5, hard: 10 }
      ]
    )
  })

  it("unlimited is sent as the largest exact integer; all-unlimited entries are left out", () => {
    const g = toSpecGenerator(base, options, "n", [
      { type: "stack", soft: 1024, hard: Infinity },
      { type: "cpu", soft: Infinity, hard: Infinity }
    ])
    assert.deepStrictEqual(g.r_limits, [{ type: "stack", soft: 1024, hard: Number.MAX_SAFE_INTEGER }])
  })

  it.effect("config: kojid RLIMIT_* over default_ulimits, -1 as unlimited, user as host label", () =>
    Effect.gen(function* () {
      const config = yield* AdjutantConfig
      const o = containersOptionsFromConfig(config)
      assert.strictEqual(o.socket, "/run/podman/podman.sock")
      assert.strictEqual(o.hostName, "builder01")
      assert.strictEqual(o.ociRuntime, "runc")
      assert.deepStrictEqual(o.ulimits, [
        { type: "nofile", soft: 2048, hard: 4096 },
        { type: "nproc", soft: 4096, hard: 4096 },
        { type: "core", soft: Infinity, hard: Infinity }
      ])
      assert.deepStrictEqual(o.defaultLimits, { memory: 4 * 1024 ** 3, pids: 4096, cpus: 0 })
      assert.strictEqual(o.buildUser, "1000:1000")
    }).pipe(
      Effect.provide(
        AdjutantConfig.layerTest({
          kojid: {
            user: "builder01",
            rlimits: [
              { resource: "RLIMIT_NOFILE", soft: 2048, hard: null },
              { resource: "RLIMIT_CORE", soft: -1, hard: -1 }
            ]
          }
        })
      )
    ))
})

describe("SELinux", () => {
  it("with SELinux enabled every container runs with label=disable; without, no label option", () => {
    const on = gen({ mounts: [{ type: "bind", source: "/mnt/koji", destination: "/mnt/koji" }] }, { selinux: true })
    assert.deepStrictEqual(on.selinux_opts, ["disable"])
    assert.deepStrictEqual(on.annotations, { "io.podman.annotations.label": "disable" })
    // No relabeling: the binds keep their options, no z/Z is added to topdir or the cache.
    assert.isFalse(on.mounts.some((m) => m.options.some((o) => o === "z" || o === "Z")))
    assert.deepStrictEqual(on.mounts.map((m) => m.options), gen({ mounts: [{ type: "bind", source: "/mnt/koji", destination: "/mnt/koji" }] }).mounts.map((m) => m.options))
    for (const off of [gen({}, { selinux: false }), gen({})]) {
      assert.isUndefined(off.selinux_opts)
      assert.isUndefined(off.annotations)
    }
  })

  it("is detected from selinuxfs, as libselinux does", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "adjutant-selinux-"))
    try {
      assert.isFalse(selinuxEnabled(root))
      mkdirSync(path.join(root, "sys/fs/selinux"), { recursive: true })
      writeFileSync(path.join(root, "sys/fs/selinux/enforce"), "1")
      assert.isTrue(selinuxEnabled(root))
      assert.isTrue(selinuxEnabled(`${root}/`))
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})
