/** koji's paths (koji.PathInfo): where tasks, repos and dist repos live under topdir/topurl. */
import { Context, Layer } from "effect"
import * as path from "node:path"

/** Where a builder reads koji's file tree: `topurl` (one or several) or, without one, `topdir`. */
export interface HubFiles {
  readonly topurls: ReadonlyArray<string>
  readonly topdir: string
}

/** The daemon's koji file tree (kojid.conf `topurl`/`topdir`), handed to every task. */
export class HubFileTree extends Context.Tag("HubFileTree")<HubFileTree, HubFiles>() {
  /** These locations. */
  static layer = (files: HubFiles): Layer.Layer<HubFileTree> => Layer.succeed(HubFileTree, files)
}

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
