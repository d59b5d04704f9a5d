/**
 * The running daemon's version: the `version` of the package.json installed beside `dist/` (the
 * RPM, the container image and the Nix package all ship it), read once when this module loads.
 * A restart execs a fresh process (src/daemon/reexec.ts), which reads it again, so after an
 * upgrade and a restart the log, `/status`, `--version` and the heartbeat's host data name the
 * code that actually runs.
 */
import { readFileSync } from "node:fs"

/** `version` of the package.json at `url`, or undefined when it cannot be read. */
export const readPackageVersion = (url: URL): string | undefined => {
  try {
    const json: unknown = JSON.parse(readFileSync(url, "utf8"))
    if (typeof json === "object" && json !== null && "version" in json && typeof json.version === "string" && json.version !== "") {
      return json.version
    }
    return undefined
  } catch {
    return undefined
  }
}

/** This installation's version (dist/version.js and src/version.ts both sit one level below package.json). */
export const version: string = readPackageVersion(new URL("../package.json", import.meta.url)) ?? "unknown"

/** One line naming what runs: `koji-adjutant 0.1.0 (Node v24.11.0, pid 1234)`. */
export const runningVersion = (): string => `koji-adjutant ${version} (Node ${process.version}, pid ${process.pid})`
