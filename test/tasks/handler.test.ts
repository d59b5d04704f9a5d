import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { Num, Int, optional, required, signature, splitRequest } from "../../src/tasks/handler.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import { makeRegistry } from "../../src/tasks/TaskRegistry.js"

const sleepSig = signature("SleepTask.handler", { n: required(Num) })
const forkSig = signature("ForkTask.handler", { n: optional(Int, 5), m: optional(Num, 37) })

const message = <A>(e: Either.Either<A, { faultString: string; faultCode: number }>): string => {
  assert.isTrue(Either.isLeft(e))
  if (Either.isRight(e)) return ""
  assert.strictEqual(e.left.faultCode, 1019)
  return e.left.faultString
}

describe("signature binding (Python semantics, ParameterError 1019)", () => {
  it("binds positional and keyword arguments, defaults filled", () => {
    assert.deepStrictEqual(Either.getOrThrow(sleepSig.bind([3])).n, 3)
    const f = Either.getOrThrow(forkSig.bind([2, { m: 1, __starstar: true }]))
    assert.strictEqual(f.n, 2)
    assert.strictEqual(f.m, 1)
    const d = Either.getOrThrow(forkSig.bind([]))
    assert.deepStrictEqual([d.n, d.m], [5, 37])
  })

  it("too many arguments: worded as kojid's capture (self counted)", () => {
    assert.strictEqual(message(sleepSig.bind(["[", "3", "]"])), "SleepTask.handler() takes 2 positional arguments but 4 were given")
    assert.strictEqual(message(forkSig.bind([1, 2, 3])), "ForkTask.handler() takes from 1 to 3 positional arguments but 4 were given")
  })

  it("missing, unexpected and duplicate arguments name the parameter", () => {
    assert.strictEqual(message(sleepSig.bind([])), "SleepTask.handler() missing 1 required positional argument: 'n'")
    assert.strictEqual(message(sleepSig.bind([1, { x: 1, __starstar: true }])), "SleepTask.handler() got an unexpected keyword argument 'x'")
    assert.strictEqual(message(sleepSig.bind([1, { n: 1, __starstar: true }])), "SleepTask.handler() got multiple values for argument 'n'")
  })

  it("a value of the wrong type names the parameter", () => {
    const msg = message(sleepSig.bind(["[3]"]))
    assert.include(msg, "parameter 'n'")
    assert.include(msg, "\"[3]\"")
  })

  it("a struct without __starstar is a positional argument", () => {
    assert.deepStrictEqual(splitRequest([1, { a: 1 }]).args.length, 2)
    assert.deepStrictEqual(splitRequest([1, { a: 1, __starstar: true }]).kwargs, { a: 1 })
  })
})

describe("generic handlers", () => {
  it("have kojid's methods, weights and foreground flags", () => {
    const reg = makeRegistry(genericHandlers)
    const expect: Record<string, [number, boolean]> = {
      someMethod: [1.0, true], sleep: [0.25, false], fork: [1.0, false], waittest: [0.1, false],
      subtask: [0.1, false], default: [0.1, false], shutdown: [0.0, true], restart: [0.1, true],
      restartVerify: [0.1, true], restartHosts: [0.1, false], dependantTask: [0.2, false]
    }
    for (const [method, [weight, fg]] of Object.entries(expect)) {
      const h = reg.get(method)
      assert.isDefined(h, method)
      assert.strictEqual(h!.weight([]), weight, method)
      assert.strictEqual(h!.foreground, fg, method)
    }
    assert.sameMembers([...reg.methods], Object.keys(expect))
    assert.isUndefined(reg.get("buildArch"))
  })
})
