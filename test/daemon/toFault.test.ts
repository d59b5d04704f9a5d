import { assert, describe, it } from "@effect/vitest"
import { Cause, Schema } from "effect"
import { ActionNotAllowed, BuildError, fromFault, KojiFault, ParameterError } from "../../src/hub/faults.js"
import { HubError } from "../../src/hub/HubError.js"
import { domainFaultTable, toFault } from "../../src/daemon/toFault.js"
import { TaskTimeout } from "../../src/tasks/handler.js"
import { ScmError } from "../../src/scm/url.js"
import { ImageError } from "../../src/containers/Images.js"

/** A stand-in for any domain error class with the given tag. */
const domainError = (tag: string) => {
  class E extends Schema.TaggedError<E>()(tag, { message: Schema.String }) {}
  return new E({ message: `${tag} happened` })
}

describe("toFault", () => {
  it("koji faults pass through with code and string", () => {
    assert.deepStrictEqual(toFault(Cause.fail(new BuildError({ faultString: "error building package (arch noarch)" }))),
      { faultCode: 1005, faultString: "error building package (arch noarch)" })
    assert.deepStrictEqual(toFault(Cause.fail(new ParameterError({ faultString: "x" }))), { faultCode: 1019, faultString: "x" })
    assert.deepStrictEqual(toFault(Cause.fail(new ActionNotAllowed({ faultString: "no" }))), { faultCode: 1004, faultString: "no" })
    assert.deepStrictEqual(toFault(Cause.fail(new KojiFault({ faultCode: 77, faultString: "odd" }))), { faultCode: 77, faultString: "odd" })
    assert.deepStrictEqual(toFault(Cause.fail(fromFault(1000, "Task 27 is canceled"))), { faultCode: 1000, faultString: "Task 27 is canceled" })
  })

  it("every row of the domain table maps to its code with the error's message", () => {
    for (const [tag, rule] of Object.entries(domainFaultTable)) {
      const f = toFault(Cause.fail(domainError(tag)))
      assert.strictEqual(f.faultCode, rule.faultCode, tag)
      assert.strictEqual(f.faultString, `${tag} happened`, tag)
    }
  })

  it("the real domain classes map as the table says", () => {
    assert.strictEqual(toFault(Cause.fail(new HubError({ reason: "Connection", method: "host.closeTask", message: "ECONNREFUSED" }))).faultCode, 1)
    assert.strictEqual(toFault(Cause.fail(domainError("UploadError"))).faultCode, 1000)
    const t = toFault(Cause.fail(new TaskTimeout({ taskId: 5, seconds: 10 })))
    assert.deepStrictEqual(t, { faultCode: 1000, faultString: "Task 5 timed out after 10 seconds" })
    assert.strictEqual(toFault(Cause.fail(domainError("PodmanError"))).faultCode, 1012)
  })

  it("ScmError maps by reason as kojid: GenericError for URL and commit-hash problems, BuildError otherwise", () => {
    const rows: ReadonlyArray<readonly [ScmError["reason"], number]> = [
      // SCM.__init__/_parse_url raise GenericError; get_source's failed rev-parse too.
      ["invalid-url", 1000],
      ["password-in-url", 1000],
      ["commit-hash", 1000],
      ["no-user", 1005],
      ["not-allowed", 1005],
      ["policy-denied", 1005],
      ["checkout-failed", 1005],
      ["revision-not-found", 1005],
      ["no-spec", 1005],
      ["multiple-specs", 1005],
      ["spec-tag", 1005],
      ["source-cmd-failed", 1005]
    ]
    assert.strictEqual(rows.length, ScmError.fields.reason.literals.length)
    for (const [reason, code] of rows) {
      const message = `Invalid scm url: ${reason}`
      const f = toFault(Cause.fail(new ScmError({ reason, url: "git://example.com/r.git#abc", message })))
      assert.deepStrictEqual(f, { faultCode: code, faultString: message }, reason)
    }
  })

  it("ImageError is a BuildrootError (1012) with its message", () => {
    const e = new ImageError({ reason: "Timeout", image: "localhost/koji-adjutant-bootstrap:1", message: "pull timed out" })
    assert.deepStrictEqual(toFault(Cause.fail(e)), { faultCode: 1012, faultString: "pull timed out" })
  })

  it("unmapped errors and defects are code 1 with the cause's text", () => {
    const unmapped = toFault(Cause.fail(domainError("SomethingNew")))
    assert.strictEqual(unmapped.faultCode, 1)
    assert.include(unmapped.faultString, "SomethingNew happened")
    const defect = toFault(Cause.die(new TypeError("Cannot read properties of undefined")))
    assert.strictEqual(defect.faultCode, 1)
    assert.include(defect.faultString, "TypeError: Cannot read properties of undefined")
  })
})
