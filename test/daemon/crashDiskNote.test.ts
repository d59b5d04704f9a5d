/** fullDiskNote: what a failed task's fault adds when the workdir's or the cache's file system is full. */
import * as os from "node:os"
import { assert, describe, it } from "vitest"
import { freeMB, fullDiskNote } from "../../src/daemon/Readiness.js"

describe("fullDiskNote", () => {
  const tmp = os.tmpdir()
  it("names a file system with less than minspace free, with what is left", () => {
    const note = fullDiskNote([tmp, tmp], freeMB(tmp) + 1000, "rpmbuild failed")
    assert.match(note, new RegExp(`^\\n\\(no space left on the file system of ${tmp} \\(\\d+ MB free\\): the likely cause of this failure\\)$`))
  })
  it("says nothing when there is room, or when the fault already says so", () => {
    if (freeMB(tmp) > 1024) assert.strictEqual(fullDiskNote([tmp], 0, "rpmbuild failed"), "")
    assert.strictEqual(fullDiskNote([tmp], freeMB(tmp) + 1000, "cannot write x: no space left on device"), "")
  })
})
