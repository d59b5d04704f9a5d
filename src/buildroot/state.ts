/**
 * A live buildroot as its steps (steps.ts) see it: what `Buildroots.open` settled (hub ids, repo,
 * tag config, layout, dnf, the task's copy of the root) and the little that changes while the
 * task runs.
 */
import type { Effect } from "effect"
import type { Containers } from "../containers/Containers.js"
import type { IdMap } from "../containers/idmap.js"
import type { RepoInfo, TagInfo } from "../hub/schemas.js"
import type { BuildrootInputs } from "./config.js"
import type { Dnf } from "./dnf.js"
import type { BuildrootHub, HubSideError } from "./hubSide.js"
import type { BuildrootLog, Layout } from "./layout.js"
import type { InstalledRpm } from "./packageList.js"
import type { BuildrootRequest, BuildrootsOptions } from "./types.js"

/** What changes while a buildroot lives. */
export interface BuildrootStatus {
  /** The task root's rpmdb listing, as last reported to the hub. */
  installed: ReadonlyArray<InstalledRpm>
  /** setBuildRootState(BUILDING) was sent. */
  building: boolean
  /** When the first rpmbuild started (benchmark). */
  readyAt: number | undefined
  /** Logs added by `run` (runroot.log), streamed with the others. */
  readonly runLogs: Array<string>
  /** Log streaming stopped (finishLogs). */
  logsFinished: boolean
}

/** One buildroot of one task. */
export interface BuildrootState {
  readonly request: BuildrootRequest
  readonly options: BuildrootsOptions
  readonly containers: Containers["Type"]
  readonly hub: BuildrootHub
  readonly id: number
  readonly name: string
  readonly repo: RepoInfo
  readonly config: TagInfo
  readonly inputs: BuildrootInputs
  /** The user namespace of this root's containers (null: host ids). */
  readonly idmap: IdMap | null
  readonly layout: Layout
  readonly log: BuildrootLog
  readonly dnf: Dnf
  /** Host path of the task's copy of the root. */
  readonly root: string
  /** The build environment: locale, PATH and the tag's `rpm.env.*`. */
  readonly env: Readonly<Record<string, string>>
  /** The repo facts `packageList` maps rpms with. */
  readonly listRepo: { readonly tagId: number; readonly tagName: string; readonly repoId: number; readonly createEvent: number; readonly brArch: string }
  readonly openedAt: number
  readonly status: BuildrootStatus
  /** setBuildRootState(EXPIRED), once. */
  readonly expire: Effect.Effect<void, HubSideError>
}
