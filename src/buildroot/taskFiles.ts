/**
 * Files of build tasks: fetching an input SRPM from `<topurl>/work/<path>` (koji-protocol.md
 * §6.3; kojid's `localPath("work/…")`). Result directories are read by results.ts.
 */
import { Effect } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { BuildError } from "../koji/faults.js"
import { fsError } from "./errors.js"
import { remoteFiles } from "./packageList.js"

/** Downloads `work/<relpath>` into `dir`; BuildError `<what> missing` when it is not there. */
export const fetchWorkFile = (
  options: { readonly topurls: ReadonlyArray<string>; readonly topdir: string },
  relpath: string,
  dir: string,
  what = "SRPM file"
) =>
  Effect.gen(function* () {
    const normalised = path.posix.normalize(relpath)
    if (normalised.startsWith("..") || path.posix.isAbsolute(normalised)) {
      return yield* new BuildError({ faultString: `${what} missing: ${relpath}` })
    }
    const data = yield* remoteFiles(options.topurls[0], options.topdir).read(`work/${normalised}`).pipe(
      Effect.mapError((e) => new BuildError({ faultString: `${what} missing: work/${normalised} (${e.faultString})` }))
    )
    if (data === null) return yield* new BuildError({ faultString: `${what} missing: work/${normalised}` })
    const local = path.join(dir, path.posix.basename(normalised))
    yield* Effect.tryPromise({ try: () => fsp.mkdir(dir, { recursive: true }).then(() => fsp.writeFile(local, data)), catch: fsError("write", local) })
    return local
  })
