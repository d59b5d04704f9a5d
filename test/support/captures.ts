/**
 * Where the recorded hub traffic is: `koji-captures/` in `shared/` beside the checkout (as the
 * project is laid out), or `KOJI_ADJUTANT_CAPTURES`. A file that imports this fails, loudly and
 * naming the path, when the captures are missing — a contract test must never pass on nothing.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"

/** `koji-captures/`. */
export const CAPTURES_DIR: string =
  process.env["KOJI_ADJUTANT_CAPTURES"] ?? join(import.meta.dirname, "..", "..", "..", "shared", "koji-captures")

if (!existsSync(CAPTURES_DIR)) {
  throw new Error(
    `koji-captures not found at ${CAPTURES_DIR}: clone koji-adjutant beside shared/ (../shared/koji-captures) ` +
      "or set KOJI_ADJUTANT_CAPTURES to the directory"
  )
}

/** `koji-captures/kojid/`: the real kojid's workflows. */
export const KOJID_CAPTURES: string = join(CAPTURES_DIR, "kojid")
