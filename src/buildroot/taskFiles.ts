/**
 * Files of build tasks: fetching an input SRPM from `<topurl>/work/<path>` (koji-protocol.md
 * §6.3; kojid's `localPath("work/…")`), and sorting a result directory the way BuildArchTask does.
 */
import { Effect } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { BuildError } from "../hub/faults.js"
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
    yield* Effect.promise(() => fsp.mkdir(dir, { recursive: true }).then(() => fsp.writeFile(local, data)))
    return local
  })

/** A result directory sorted as kojid does: `.log` skipped, `.src.rpm`, other `.rpm`, the rest unexpected. */
export const sortResults = (dir: string) =>
  Effect.promise(async () => {
    const names = (await fsp.readdir(dir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name).sort()
    return {
      srpms: names.filter((f) => f.endsWith(".src.rpm")),
      rpms: names.filter((f) => f.endsWith(".rpm") && !f.endsWith(".src.rpm")),
      unexpected: names.filter((f) => !f.endsWith(".rpm") && !f.endsWith(".log"))
    }
  })
