// Container overhead: our Containers service (create, start, wait, remove over the libpod API)
// against the podman CLI, both in this run. The figure is the measure: the CLI as
// `podman run --rm IMAGE true`. Our containers have no network by default, and the CLI's
// default bridge network costs it ~190 ms (podman-notes §6), so the run also times
// `podman run --rm --network=none IMAGE true` and prints that stricter ratio (near 1.0: both
// paths then do the same podman work) on the line before the figure.
// Usage: npm run bench -- container-overhead [--image IMG] [--runs 20] [--rounds 9]
// Uses KOJI_ADJUTANT_PODMAN_SOCKET when set, else starts its own podman service.
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { ensureTestImage, startPodmanService, TEST_IMAGE, testContainersOptions, uniqueHostName } from "../../test/support/podman.js"

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const image = arg("image", TEST_IMAGE)
const runs = Number(arg("runs", "20"))
const rounds = Number(arg("rounds", "9"))

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const timed = async (f: () => Promise<void>): Promise<number> => {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

const main = async () => {
  if (image === TEST_IMAGE) ensureTestImage()
  const scratch = mkdtempSync(join(tmpdir(), "koji-adjutant-bench-"))
  const service = await startPodmanService()
  const host = uniqueHostName("bench")
  const disposers: Array<() => Promise<void>> = []
  try {
    const cliWith = (extra: ReadonlyArray<string>) => () =>
      new Promise<void>((ok, ko) => {
        // cwd: conmon drops `oom` files into the podman process's cwd (notes §3).
        const p = spawn("podman", ["run", "--rm", ...extra, image, "true"], { cwd: scratch, stdio: ["ignore", "ignore", "pipe"] })
        let err = ""
        p.stderr.on("data", (b: Buffer) => (err += b.toString()))
        p.on("exit", (code) => (code === 0 ? ok() : ko(new Error(`podman run exited ${code}: ${err}`))))
      })

    const runtime = ManagedRuntime.make(
      Containers.layer(testContainersOptions(service.socket, host)).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning)))
    )
    const once = Effect.scoped(
      Effect.gen(function* () {
        const containers = yield* Containers
        const c = yield* containers.create({ image, command: ["true"], role: "test" })
        yield* c.start
        const code = yield* c.wait
        if (code !== 0) return yield* Effect.die(new Error(`exit ${code}`))
      })
    )
    const service1 = () => runtime.runPromise(once)
    disposers.push(() => runtime.dispose())

    const cli = cliWith([])
    const cliNoNet = cliWith(["--network=none"])
    for (let i = 0; i < 3; i++) {
      await cli()
      await cliNoNet()
      await service1()
    }
    const seq = { cli: [] as Array<number>, cliNoNet: [] as Array<number>, service: [] as Array<number> }
    // Interleaved so that drift on a shared machine hits every side alike.
    for (let i = 0; i < runs; i++) {
      seq.cli.push(await timed(cli))
      seq.cliNoNet.push(await timed(cliNoNet))
      seq.service.push(await timed(service1))
    }
    const four = (f: () => Promise<void>) => () => Promise.all([f(), f(), f(), f()]).then(() => {})
    const conc = { cli: [] as Array<number>, cliNoNet: [] as Array<number>, service: [] as Array<number> }
    for (let i = 0; i < rounds; i++) {
      conc.cli.push(await timed(four(cli)))
      conc.cliNoNet.push(await timed(four(cliNoNet)))
      conc.service.push(await timed(four(service1)))
    }
    const f = (n: number) => `${n.toFixed(1)} ms`
    /** The worse of the sequential and the concurrent ratio of the service against one CLI form. */
    const worse = (side: "cli" | "cliNoNet") =>
      Math.max(median(seq.service) / median(seq[side]), median(conc.service) / median(conc[side]))
    console.log(`image ${image}, ${runs} sequential runs, ${rounds} rounds of 4 concurrent`)
    console.log(`sequential  cli (podman run --rm):                 median ${f(median(seq.cli))}  min ${f(Math.min(...seq.cli))}`)
    console.log(`sequential  cli (podman run --rm --network=none):  median ${f(median(seq.cliNoNet))}  min ${f(Math.min(...seq.cliNoNet))}`)
    console.log(`sequential  service (create+start+wait+remove):    median ${f(median(seq.service))}  min ${f(Math.min(...seq.service))}`)
    console.log(`4 concurrent (wall): cli ${f(median(conc.cli))}, cli --network=none ${f(median(conc.cliNoNet))}, service ${f(median(conc.service))}`)
    console.log(`stricter, against the CLI without network (the same podman work): service/cli = ${worse("cliNoNet").toFixed(2)}`)
    console.log(`container-overhead: service/cli = ${worse("cli").toFixed(2)} (target <= 1.00)`)
  } finally {
    for (const d of disposers) await d()
    await service.stop()
    rmSync(scratch, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
