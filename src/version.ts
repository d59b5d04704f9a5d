/**
 * The version of the running code: package.json's, read once from beside the compiled tree
 * (dist/version.js and src/version.ts both sit one level below it), so an upgraded package
 * reports its own version after a restart. Reported by /status, koji_adjutant_build_info and
 * `koji-adjutant --version`.
 */
import { readFileSync } from "node:fs"

let cached: string | undefined

/** package.json's `version`, or "unknown" when the file is not where the package puts it. */
export const packageVersion = (): string => {
  if (cached !== undefined) return cached
  try {
    const parsed: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    cached = typeof parsed === "object" && parsed !== null && "version" in parsed && typeof parsed.version === "string" ? parsed.version : "unknown"
  } catch {
    cached = "unknown"
  }
  return cached
}
