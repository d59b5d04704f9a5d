/**
 * The restart's exec step without replacing the test process: what it passes to execve(2), and
 * the reasons it gives (then the daemon restarts within the process) when it cannot exec.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { currentImage, type Execve, type ProcessImage, reexec } from "../../src/daemon/reexec.js"

/** An execve that records its calls and returns (a real one would not), or throws `error`. */
const recording = (error?: Error) => {
  const calls: Array<readonly [string, ReadonlyArray<string>, Readonly<Record<string, string>>]> = []
  const execve: Execve = (file, args, env) => {
    calls.push([file, args, env])
    if (error !== undefined) throw error
  }
  return { calls, execve }
}

const image: ProcessImage = { file: process.execPath, args: ["node", "/opt/app/dist/main.js", "--fg"], env: { NOTIFY_SOCKET: "/run/systemd/notify", A: "1" } }

describe("reexec", () => {
  it("the current image is node with its own options, the script, its arguments and the whole environment", () => {
    const now = currentImage()
    assert.strictEqual(now.file, process.execPath)
    assert.deepStrictEqual(now.args, [process.argv0, ...process.execArgv, ...process.argv.slice(1)])
    assert.strictEqual(now.env["PATH"], process.env["PATH"])
    assert.strictEqual(Object.keys(now.env).length, Object.entries(process.env).filter(([, v]) => v !== undefined).length)
  })

  it.effect("passes file, argv and environment to execve unchanged", () =>
    Effect.gen(function*() {
      const { calls, execve } = recording()
      const why = yield* reexec(image, execve)
      assert.deepStrictEqual(calls, [[image.file, image.args, image.env]])
      assert.include(why, "returned")
    }))

  it.effect("a Node without process.execve: nothing is exec'd, the reason names the Node version", () =>
    Effect.gen(function*() {
      const why = yield* reexec(image, undefined)
      assert.include(why, "process.execve")
      assert.include(why, process.version)
    }))

  it.effect("an executable that is gone is not exec'd (Node 24 would abort): the reason names it", () =>
    Effect.gen(function*() {
      const { calls, execve } = recording()
      const why = yield* reexec({ ...image, file: "/nonexistent/bin/node" }, execve)
      assert.deepStrictEqual(calls, [])
      assert.include(why, "cannot exec /nonexistent/bin/node")
    }))

  it.effect("execve failing is a reason, not a crash", () =>
    Effect.gen(function*() {
      const { calls, execve } = recording(new Error("E2BIG: argument list too long"))
      const why = yield* reexec(image, execve)
      assert.strictEqual(calls.length, 1)
      assert.include(why, "E2BIG")
    }))
})
