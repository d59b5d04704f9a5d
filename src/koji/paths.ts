/** koji's paths (koji.PathInfo): where tasks, repos and dist repos live under topdir/topurl. */
import * as path from "node:path"

/** `tasks/<id % 10000>/<id>` under `work/` and a builder's workdir (koji.pathinfo.taskrelpath). */
export const taskRelPath = (taskId: number): string => `tasks/${taskId % 10000}/${taskId}`

/** `repos/<tag>/<repo_id>` under topdir/topurl (koji.PathInfo.repo, relative). */
export const repoRelDir = (tagName: string, repoId: number): string => `repos/${tagName}/${repoId}`

/** `koji.pathinfo.repo(repo_id, tag)` under `topdir`. */
export const repoPath = (topdir: string, repoId: number, tagName: string): string =>
  path.join(topdir, "repos", tagName, String(repoId))

/** `koji.pathinfo.distrepo(repo_id, tag)` under `topdir` (default volume). */
export const distRepoPath = (topdir: string, repoId: number, tagName: string): string =>
  path.join(topdir, "repos-dist", tagName, String(repoId))
