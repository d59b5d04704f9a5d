import { assert, describe, it } from "@effect/vitest"
import { Cause, Schema } from "effect"
import { ActionNotAllowed, BuildError, fromFault, KojiFault, ParameterError } from "../../src/koji/faults.js"
import { HubError, LoginError } from "../../src/hub/HubError.js"
import { BuildLimitExceeded, BuildrootSetupError, RpmbuildFailed, SrpmError } from "../../src/buildroot/errors.js"
import { HostileOutput } from "../../src/buildroot/results.js"
import { ConfigError } from "../../src/config/AdjutantConfig.js"
import { PodmanError } from "../../src/containers/Libpod.js"
import { UploadError } from "../../src/hub/Uploads.js"
import { RunrootConfigError } from "../../src/runroot/config.js"
import { toFault } from "../../src/daemon/toFault.js"
import { type TaskError, TaskTimeout } from "../../src/tasks/errors.js"
import { ScmError } from "../../src/scm/url.js"
import { ImageError } from "../../src/containers/Images.js"

/** A real instance of every domain error of a task, with its kojid fault code. */
const domainErrors: ReadonlyArray<readonly [TaskError, number]> = [
  [new RpmbuildFailed({ message: "RpmbuildFailed happened", exitCode: 1 }), 1005],
  [new SrpmError({ message: "SrpmError happened" }), 1005],
  [new HostileOutput({ file: "x.rpm", message: "HostileOutput happened" }), 1005],
  [new BuildLimitExceeded({ limit: "task_disk_max", message: "BuildLimitExceeded happened" }), 1005],
  [new ScmError({ reason: "checkout-failed", url: "git://example.com/r.git", message: "ScmError happened" }), 1005],
  [new BuildrootSetupError({ message: "BuildrootSetupError happened" }), 1012],
  [new PodmanError({ operation: "container.create", message: "PodmanError happened" }), 1012],
  [new ImageError({ reason: "Timeout", image: "img", message: "ImageError happened" }), 1012],
  [new UploadError({ reason: "Digest", file: "f", message: "UploadError happened" }), 1000],
  [new ConfigError({ file: "kojid.conf", message: "ConfigError happened" }), 1021],
  [new RunrootConfigError({ file: "runroot.conf", message: "RunrootConfigError happened" }), 1021],
  [new LoginError({ method: "login", message: "LoginError happened" }), 1002],
  [new HubError({ reason: "Connection", method: "host.closeTask", message: "HubError happened" }), 1]
]

describe("toFault", () => {
  it("koji faults pass through with code and string", () => {
    assert.deepStrictEqual(toFault(Cause.fail(new BuildError({ faultString: "error building package (arch noarch)" }))),
      { faultCode: 1005, faultString: "error building package (arch noarch)" })
    assert.deepStrictEqual(toFault(Cause.fail(new ParameterError({ faultString: "x" }))), { faultCode: 1019, faultString: "x" })
    assert.deepStrictEqual(toFault(Cause.fail(new ActionNotAllowed({ faultString: "no" }))), { faultCode: 1004, faultString: "no" })
    assert.deepStrictEqual(toFault(Cause.fail(new KojiFault({ faultCode: 77, faultString: "odd" }))), { faultCode: 77, faultString: "odd" })
    assert.deepStrictEqual(toFault(Cause.fail(fromFault(1000, "Task 27 is canceled"))), { faultCode: 1000, faultString: "Task 27 is canceled" })
  })

  it("every domain error maps to its code with the error's message", () => {
    for (const [e, code] of domainErrors) {
      const f = toFault(Cause.fail(e))
      assert.strictEqual(f.faultCode, code, e._tag)
      assert.strictEqual(f.faultString, `${e._tag} happened`, e._tag)
    }
  })

  it("the real domain classes map as the table says", () => {
    assert.strictEqual(toFault(Cause.fail(new HubError({ reason: "Connection", method: "host.closeTask", message: "ECONNREFUSED" }))).faultCode, 1)
    assert.strictEqual(toFault(Cause.fail(new UploadError({ reason: "Size", file: "f", message: "short" }))).faultCode, 1000)
    const t = toFault(Cause.fail(new TaskTimeout({ taskId: 5, seconds: 10 })))
    assert.deepStrictEqual(t, { faultCode: 1000, faultString: "Task 5 timed out after 10 seconds" })
    assert.strictEqual(toFault(Cause.fail(new PodmanError({ operation: "container.start", message: "gone" }))).faultCode, 1012)
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

  it("errors outside the task's error union (bugs) and defects are code 1 with the cause's text", () => {
    class SomethingNew extends Schema.TaggedError<SomethingNew>()("SomethingNew", { message: Schema.String }) {}
    const unmapped = toFault(Cause.die(new SomethingNew({ message: "SomethingNew happened" })))
    assert.strictEqual(unmapped.faultCode, 1)
    assert.include(unmapped.faultString, "SomethingNew happened")
    const defect = toFault(Cause.die(new TypeError("Cannot read properties of undefined")))
    assert.strictEqual(defect.faultCode, 1)
    assert.include(defect.faultString, "TypeError: Cannot read properties of undefined")
  })
})
