import { execFileSync } from "node:child_process"
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Exit, Fiber, Schedule, Stream } from "effect"
import { beforeAll } from "vitest"
import { Containers, type ContainerSpec, type LogFrame } from "../../src/containers/Containers.js"
import { LABEL_HOST, LABEL_ROLE, LABEL_TASK } from "../../src/containers/labels.js"
import { Libpod, PodmanError } from "../../src/containers/Libpod.js"
import {
  containersOfHost,
  ensureTestImage,
  podmanInstalled,
  podmanSkipReason,
  TEST_IMAGE,
  testContainersOptions,
  uniqueHostName
} from "../support/podman.js"
import { podmanServiceForTests } from "../support/podmanHooks.js"

if (!podmanInstalled) console.warn(`skipping podman tests: ${podmanSkipReason}`)

const host = uniqueHostName("containers")
let podman: { readonly socket: string }
const layer = () => Containers.layer(testContainersOptions(podman.socket, host))

const spec = (command: ReadonlyArray<string>, extra: Partial<ContainerSpec> = {}): ContainerSpec => ({
  image: TEST_IMAGE,
  command,
  role: "test",
  taskId: 42,
  ...extra
})

const makeTar = (files: Record<string, string>): Uint8Array => {
  const dir = mkdtempSync(join(tmpdir(), "koji-adjutant-tar-"))
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
    return execFileSync("tar", ["--numeric-owner", "-C", dir, "-cf", "-", ...Object.keys(files)])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const tarEntry = (tar: Uint8Array, name: string): string =>
  execFileSync("tar", ["-xOf", "-", name], { input: tar, encoding: "utf8" })

const text = (frames: Iterable<LogFrame>, stream: "stdout" | "stderr") =>
  Buffer.concat([...frames].filter((f) => f.stream === stream).map((f) => f.data)).toString("utf8")

describe.skipIf(!podmanInstalled)("Containers (real podman)", () => {
  podman = podmanServiceForTests(host)
  beforeAll(() => ensureTestImage())

  it.live("podman: run keeps exit code, stdout and stderr apart", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const r = yield* containers.run(spec(["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"]))
      assert.strictEqual(r.exitCode, 3)
      assert.strictEqual(r.stdout, "out1\nout2\n")
      assert.strictEqual(r.stderr, "err1\n")
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer())))

  it.live("podman: interrupting a followed log stream of a silent container returns at once", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      yield* Effect.scoped(
        Effect.gen(function* () {
          const c = yield* containers.create(spec(["sleep", "300"]))
          yield* c.start
          const follower = yield* Effect.fork(Stream.runDrain(c.logs({ follow: true })))
          yield* Effect.sleep(Duration.millis(300))
          const exit = yield* Fiber.interrupt(follower).pipe(Effect.timeout(Duration.seconds(5)), Effect.either)
          assert.isTrue(exit._tag === "Right", "interrupting the log follower hung behind a silent stream")
        })
      )
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer())))

  it.live("podman: run keeps only the tail of an oversized output", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const r = yield* containers.run(spec(["seq", "1", "2000"]), { maxOutputBytes: 10 })
      assert.strictEqual(r.exitCode, 0)
      assert.match(r.stdout, /^\[koji-adjutant: \d+ earlier bytes of stdout dropped\]\n/)
      assert.isTrue(r.stdout.endsWith("\n1999\n2000\n"))
    }).pipe(Effect.provide(layer())))

  it.live("podman: create/start/exec/archive/logs/kill round trip with labels", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const libpod = yield* Libpod
      const name = yield* Effect.scoped(
        Effect.gen(function* () {
          const c = yield* containers.create(spec(["sh", "-c", "echo started; exec sleep 300"], { buildrootId: 7 }))
          yield* c.putArchive("/work/in", makeTar({ "hello.txt": "hello from the host\n" }))
          yield* c.start
          const cat = yield* c.exec(["cat", "/work/in/hello.txt"])
          assert.deepStrictEqual(cat, { exitCode: 0, stdout: "hello from the host\n", stderr: "" })
          const env = yield* c.exec(["sh", "-c", 'echo "$XV $(pwd) $(id -u)"; echo oops >&2; exit 5'], {
            env: { XV: "hi" },
            workDir: "/etc",
            user: "1000:1000"
          })
          assert.deepStrictEqual(env, { exitCode: 5, stdout: "hi /etc 1000\n", stderr: "oops\n" })
          const missing = yield* c.exec(["no-such-command"])
          assert.notStrictEqual(missing.exitCode, 0)
          assert.include(missing.stderr, "no-such-command")
          yield* c.exec(["sh", "-c", "echo made inside > /work/out.txt"])
          const tar = yield* c.getArchive("/work/out.txt")
          assert.strictEqual(tarEntry(tar, "out.txt"), "made inside\n")
          const info = yield* c.inspect
          assert.strictEqual(info.State.Status, "running")
          assert.strictEqual(info.Config.Labels?.[LABEL_HOST], host)
          assert.strictEqual(info.Config.Labels?.[LABEL_TASK], "42")
          assert.strictEqual(info.Config.Labels?.[LABEL_ROLE], "test")
          assert.strictEqual(info.Config.Labels?.["io.koji.adjutant.buildroot"], "7")
          const owned = yield* containers.listOwned()
          assert.deepStrictEqual(owned.map((o) => o.name), [c.name])
          yield* c.kill("SIGKILL")
          assert.strictEqual(yield* c.wait, 137)
          const logs = yield* Stream.runCollect(c.logs())
          assert.strictEqual(text(logs, "stdout"), "started\n")
          return c.name
        })
      )
      assert.isFalse(yield* libpod.remove(name), "removed when the scope closed")
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer())))

  it.live("podman: logs follow streams output while the container runs", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const seen: Array<{ frame: string; at: number }> = []
      const t0 = Date.now()
      const r = yield* containers.run(spec(["sh", "-c", "echo first; sleep 0.5; echo second >&2; echo third"]), {
        onOutput: (f) => Effect.sync(() => seen.push({ frame: `${f.stream}:${Buffer.from(f.data).toString()}`, at: Date.now() - t0 }))
      })
      assert.strictEqual(r.exitCode, 0)
      assert.strictEqual(r.stdout, "first\nthird\n")
      assert.strictEqual(r.stderr, "second\n")
      // stdout and stderr are separate pipes: their relative order after the pause is not fixed.
      assert.strictEqual(seen[0]!.frame, "stdout:first\n")
      assert.deepStrictEqual(seen.map((s) => s.frame).sort(), ["stderr:second\n", "stdout:first\n", "stdout:third\n"])
      // "first" arrived live, before the command's half-second pause ended.
      assert.isBelow(seen[0]!.at, seen[2]!.at - 300)
    }).pipe(Effect.provide(layer())))

  it.live("podman: a followed log stream of a created container ends when it exits", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const frames = yield* Effect.scoped(
        Effect.gen(function* () {
          const c = yield* containers.create(spec(["sh", "-c", "echo a; echo b >&2"]))
          yield* c.start
          return yield* Stream.runCollect(c.logs({ follow: true }))
        })
      )
      assert.strictEqual(text(frames, "stdout"), "a\n")
      assert.strictEqual(text(frames, "stderr"), "b\n")
    }).pipe(Effect.provide(layer())))

  it.live("podman: interrupting a fiber that holds a running container removes it", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const fiber = yield* Effect.scoped(
        Effect.gen(function* () {
          const c = yield* containers.create(spec(["sleep", "300"]))
          yield* c.start
          return yield* Effect.never
        })
      ).pipe(Effect.fork)
      yield* Effect.gen(function* () {
        const owned = yield* containers.listOwned()
        if (!owned.some((o) => o.state === "running")) return yield* Effect.fail("not yet")
      }).pipe(Effect.retry({ times: 100, schedule: Schedule.spaced(Duration.millis(50)) }))
      assert.strictEqual(containersOfHost(host).length, 1)
      const t0 = Date.now()
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      assert.deepStrictEqual(containersOfHost(host), [])
      assert.isBelow(Date.now() - t0, 5000)
    }).pipe(Effect.provide(layer())))

  it.live("podman: a container ignoring SIGTERM is still removed within the stop timeout", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const t0 = Date.now()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const c = yield* containers.create(spec(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"], { init: false }))
          yield* c.start
          yield* Stream.runHead(c.logs({ follow: true }))
        })
      )
      const elapsed = Date.now() - t0
      assert.deepStrictEqual(containersOfHost(host), [])
      // stop timeout is 2 s in the test options; then SIGKILL.
      assert.isBelow(elapsed, 2000 + 4000)
    }).pipe(Effect.provide(layer())))

  it.live("podman: timeoutSeconds kills the command (exit -1)", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const t0 = Date.now()
      const r = yield* containers.run(spec(["sleep", "60"], { timeoutSeconds: 1 }))
      assert.strictEqual(r.exitCode, -1)
      assert.isBelow(Date.now() - t0, 10_000)
    }).pipe(Effect.provide(layer())))

  it.live("podman: a directory as the root (rootfs with overlay) runs and stays pristine", () =>
    Effect.gen(function* () {
      const root = mkdtempSync(join(tmpdir(), "koji-adjutant-rootfs-"))
      try {
        for (const d of ["bin", "etc", "tmp", "proc", "sys", "dev", "run"]) mkdirSync(join(root, d))
        copyFileSync("/bin/busybox", join(root, "bin/busybox"))
        chmodSync(join(root, "bin/busybox"), 0o755)
        for (const applet of ["sh", "cat", "echo", "ls"]) symlinkSync("busybox", join(root, "bin", applet))
        writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")
        const before = execFileSync("ls", ["-R", root], { encoding: "utf8" })
        const containers = yield* Containers
        const r = yield* containers.run({
          rootfs: { path: root, overlay: true },
          command: ["/bin/sh", "-c", "echo changed > /etc/new && cat /etc/new && ls /bin"],
          role: "build",
          user: "0:0"
        })
        assert.deepStrictEqual(r.stdout.split("\n").slice(0, 2), ["changed", "busybox"])
        assert.strictEqual(r.exitCode, 0)
        assert.strictEqual(execFileSync("ls", ["-R", root], { encoding: "utf8" }), before, "rootfs unchanged")
      } finally {
        rmSync(root, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(layer())))

  it.live("podman: a command missing from the image is a PodmanError naming it", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const withInit = yield* Effect.flip(containers.run(spec(["no-such-command", "x"])))
      assert.instanceOf(withInit, PodmanError)
      assert.include(withInit.message, "no-such-command")
      assert.include(withInit.message, TEST_IMAGE)
      const noInit = yield* Effect.flip(containers.run(spec(["no-such-command"], { init: false })))
      assert.strictEqual(noInit.operation, "container.start")
      assert.include(noInit.message, "no-such-command")
      assert.deepStrictEqual(containersOfHost(host), [])
    }).pipe(Effect.provide(layer())))

  it.live("podman: a missing image is a PodmanError naming it and the script that builds it", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const e = yield* Effect.flip(containers.run(spec(["true"], { image: "localhost/koji-adjutant-nope:1" })))
      assert.strictEqual(e.operation, "container.create")
      assert.strictEqual(e.target, "localhost/koji-adjutant-nope:1")
      assert.include(e.message, "localhost/koji-adjutant-nope:1")
      assert.include(e.message, "scripts/build-images.sh")
      const libpod = yield* Libpod
      assert.isFalse(yield* libpod.imageExists("localhost/koji-adjutant-nope:1"))
      assert.isTrue(yield* libpod.imageExists(TEST_IMAGE))
      const img = yield* libpod.imageInspect(TEST_IMAGE)
      assert.include(img.RepoTags ?? [], TEST_IMAGE)
    }).pipe(Effect.provide(layer())))

  it.live("podman: an invalid spec fails before anything is created", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const e = yield* Effect.flip(containers.run({ command: ["true"], role: "test" }))
      assert.include(e.message, "exactly one of image and rootfs")
    }).pipe(Effect.provide(layer())))

  it.live("podman: a missing socket names the socket and how to start the service", () =>
    Effect.gen(function* () {
      const containers = yield* Containers
      const e = yield* Effect.flip(containers.run(spec(["true"])))
      assert.include(e.message, "/nonexistent/podman.sock")
      assert.include(e.message, "podman system service")
      assert.include(e.message, "podman.socket")
      const libpod = yield* Libpod
      const p = yield* Effect.flip(libpod.ping)
      assert.strictEqual(p.operation, "ping")
    }).pipe(Effect.provide(Containers.layer(testContainersOptions("/nonexistent/podman.sock", host)))))

  it.live("podman: ping, version and many concurrent runs share the connection pool", () =>
    Effect.gen(function* () {
      const libpod = yield* Libpod
      yield* libpod.ping
      const v = yield* libpod.version
      assert.match(v.ApiVersion, /^\d+\.\d+/)
      const containers = yield* Containers
      const results = yield* Effect.forEach(
        Chunk.range(1, 6),
        (i) => containers.run(spec(["sh", "-c", `echo ${i}`])),
        { concurrency: 6 }
      )
      assert.deepStrictEqual(results.map((r) => r.stdout), ["1\n", "2\n", "3\n", "4\n", "5\n", "6\n"])
    }).pipe(Effect.provide(layer())))
})
