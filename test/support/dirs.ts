/**
 * Scratch directories for tests that run containers in the build user namespace: the mapped
 * root of a container must pass through every directory above its root, as the daemon's
 * workdir must allow in production (README: "What a build cannot do to the builder").
 */
import { chmodSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"

/** `mkdtemp` under the system temp dir, made traversable (0711) for mapped containers. */
export const traversableTempDir = (prefix: string): string => {
  const d = mkdtempSync(path.join(tmpdir(), prefix))
  chmodSync(d, 0o711)
  return d
}
