/**
 * The hub side of a local build from a real koji hub (`build-local --target`): what a builder's
 * buildroot reads from the hub is read from the real hub anonymously — `repoInfo`,
 * `getBuildConfig` at the repo's create_event (macros, `rpm.env.*`, `mock.*` extra), and the
 * package list mapped to the hub's rpm ids exactly as the daemon's `sessionHub` maps it
 * (`hubPackageList`: `rpmlist.jsonl` from topurl, `listTaggedRPMS` and `getExternalRepoList` at
 * the repo's event); the repo is `<topurl>/repos/<tag>/<repo id>/<arch>`. What a builder writes
 * stays local: buildroot ids are given per step (1, 2 in kojid's task order), states and package lists are recorded for the summary
 * (as the hub's buildroot tables would hold them), and uploads are copies into the step's
 * directory under `--result`.
 */
import { Effect } from "effect"
import { repoUrls } from "../buildroot/config.js"
import { type BuildrootHub, hubPackageList, localUploads } from "../buildroot/hubSide.js"
import { nvra, type PackageEntry, remoteFiles } from "../buildroot/packageList.js"
import { BuildrootError } from "../koji/faults.js"
import { RepoState } from "../koji/states.js"
import type { AnonymousHubError, AnonymousHubService } from "./anonymousHub.js"

/** A buildroot of the local build as the hub's `standard_buildroot` and `buildroot_listing` would hold it. */
export interface RecordedBuildroot {
  readonly id: number
  readonly repoId: number
  readonly arch: string
  state: "INIT" | "BUILDING" | "EXPIRED"
  /** By N-V-R.A: the entry as setBuildRootList/updateBuildRootList sent it, and whether it came with an update (`is_update`). */
  readonly listing: Map<string, { readonly entry: PackageEntry; readonly isUpdate: boolean }>
}

/** The buildroots of one local build, in the order they were made. */
export interface BuildrootRecorder {
  readonly buildroots: Map<number, RecordedBuildroot>
}

/** An empty recorder. */
export const makeRecorder = (): BuildrootRecorder => ({ buildroots: new Map() })

const nvraOf = (e: PackageEntry): string =>
  nvra({ name: String(e["name"]), version: String(e["version"]), release: String(e["release"]), arch: String(e["arch"]) })

/** A hub failure in the middle of a build is the buildroot's failure, with the hub's one-line message. */
const asHubSide = <A>(self: Effect.Effect<A, AnonymousHubError>) =>
  Effect.mapError(self, (e) => (e._tag === "HubAccessError" ? new BuildrootError({ faultString: e.message }) : e))

/** What the hub side of one build step needs. */
export interface AnonymousBuildrootHubOptions {
  /** The hub's topurl (the repo and its `rpmlist.jsonl` are read from there). */
  readonly topurl: string
  /** Where this step's logs and uploads go (`<result>/srpm`, `<result>/<arch>`). */
  readonly uploadDir: string
  readonly recorder: BuildrootRecorder
  /** The id `newBuildRoot` gives (the steps' buildroots are opened concurrently; their ids stay in kojid's task order). */
  readonly buildrootId: number
}

/** The hub side of a local build step over an anonymous client of the real hub. */
export const anonymousBuildrootHub = (client: AnonymousHubService, options: AnonymousBuildrootHubOptions): BuildrootHub => {
  const { recorder } = options
  const files = remoteFiles(options.topurl, "")
  const recorded = (id: number): RecordedBuildroot => {
    const br = recorder.buildroots.get(id)
    if (br === undefined) throw new Error(`buildroot ${id} was not made by this build`)
    return br
  }
  const record = (id: number, list: ReadonlyArray<PackageEntry>, isUpdate: boolean) =>
    Effect.sync(() => {
      const br = recorded(id)
      for (const entry of list) {
        const key = nvraOf(entry)
        if (!br.listing.has(key)) br.listing.set(key, { entry, isUpdate })
      }
    })
  return {
    ...localUploads(options.uploadDir),
    repoInfo: (repoId) =>
      asHubSide(client.repoInfo(repoId)).pipe(
        Effect.flatMap((r) => (r === null ? Effect.fail(new BuildrootError({ faultString: `No such repo: ${repoId}` })) : Effect.succeed(r)))
      ),
    getBuildConfig: (tag, event) => asHubSide(client.getBuildConfig(tag, event)),
    newBuildRoot: (repoId, arch) =>
      Effect.sync(() => {
        const id = options.buildrootId
        recorder.buildroots.set(id, { id, repoId, arch, state: "INIT", listing: new Map() })
        return id
      }),
    setBuildRootState: (id, state) =>
      Effect.sync(() => {
        recorded(id).state = state
      }).pipe(Effect.zipRight(Effect.logDebug(`buildroot ${id} → ${state}`))),
    setBuildRootList: (id, list) => record(id, list, false),
    updateBuildRootList: (id, list) => record(id, list, true),
    packageList: (installed, repo) => asHubSide(hubPackageList(client, files)(installed, repo)),
    // The local cache may hold roots of other hubs and of a daemon: a local build never prunes by repo state.
    repoState: () => Effect.succeed(RepoState.READY),
    repoUrls: (tagName, repoId, brArch) => repoUrls({ topurls: [options.topurl], topdir: "" }, tagName, repoId, brArch),
    // Repo ids are per hub: the hub's topurl is part of the cache key.
    repoIdentity: `koji repo under ${options.topurl}`
  }
}
