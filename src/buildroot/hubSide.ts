/**
 * The hub side of a buildroot (koji-protocol.md §5.1–5.2) behind one interface, so that the same
 * buildroot code serves the daemon (a task's hub session) and `build-local` (no hub: ids are
 * local, lists and states are only logged, files land in the result directory).
 */
import { Effect, type Scope } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import type { Fault } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { type Ref } from "../koji/refs.js"
import type { HubError } from "../hub/HubError.js"
import type { Session } from "../hub/KojiHub.js"
import type { ExternalRepo, RepoInfo, TagInfo } from "../hub/schemas.js"
import type { XmlRpcValue } from "../hub/xmlrpc.js"
import { type StreamedLog, streamLogs, UploadError, uploadWrapper } from "../hub/Uploads.js"
import type { BuildrootError } from "../koji/faults.js"
import { type HubFiles, taskRelPath } from "../koji/paths.js"
import { repoUrls } from "./config.js"
import { repoRelDir } from "../koji/paths.js"
import { copyLogCapped } from "./results.js"
import { type InstalledRpm, mapPackageList, type PackageEntry, type RemoteFiles, remoteFiles } from "./packageList.js"

/** Errors of hub-side calls. */
export type HubSideError = Fault | HubError | UploadError | BuildrootError

/** What a buildroot asks of the hub (kojid's BuildRoot session calls). */
export interface BuildrootHub {
  /** The task directory on the hub, relative to work (`tasks/<id%10000>/<id>`), or the local result dir. */
  readonly uploadPath: string
  readonly repoInfo: (repoId: number) => Effect.Effect<RepoInfo, HubSideError>
  readonly getBuildConfig: (tag: Ref, event: number) => Effect.Effect<TagInfo, HubSideError>
  readonly newBuildRoot: (repoId: number, arch: string) => Effect.Effect<number, HubSideError>
  readonly setBuildRootState: (brootId: number, state: "BUILDING" | "EXPIRED") => Effect.Effect<void, HubSideError>
  readonly setBuildRootList: (brootId: number, list: ReadonlyArray<PackageEntry>) => Effect.Effect<void, HubSideError>
  readonly updateBuildRootList: (brootId: number, list: ReadonlyArray<PackageEntry>) => Effect.Effect<void, HubSideError>
  /** The rpmdb listing mapped to hub entries (§5.2). */
  readonly packageList: (installed: ReadonlyArray<InstalledRpm>, repo: ListRepo) => Effect.Effect<ReadonlyArray<PackageEntry>, HubSideError>
  /** The state of another repo (cache pruning); null when the hub has no such repo. */
  readonly repoState: (repoId: number) => Effect.Effect<number | null, HubSideError>
  /** A whole file into the task directory (kojid's uploadWrapper / single_log). */
  readonly upload: (localFile: string, name: string) => Effect.Effect<void, HubSideError>
  /** Mirrors growing logs into the task directory while the scope is open (§6.3), each capped at `maxBytes` (0 = whole). */
  readonly streamLogs: (files: ReadonlyArray<StreamedLog>, maxBytes: number) => Effect.Effect<void, never, Scope.Scope>
  /** The repo URLs of the buildroot (§5.3). */
  readonly repoUrls: (tagName: string, repoId: number, brArch: string) => ReadonlyArray<string>
  /**
   * What names the package set when the repo id does not (a local repo: its location and its
   * repomd.xml digest); part of the buildroot cache key. Undefined for hub repos.
   */
  readonly repoIdentity?: string
}

/** The repo a package list is mapped against (the arguments of `BuildrootHub.packageList`). */
export interface ListRepo {
  readonly tagId: number
  readonly tagName: string
  readonly repoId: number
  readonly createEvent: number
  readonly brArch: string
}

/** The tag-content reads the package list needs: a host session's calls, or an anonymous client's. */
export interface TagContentReads<E> {
  readonly getExternalRepoList: (tag: Ref, event?: number | null) => Effect.Effect<ReadonlyArray<ExternalRepo>, E>
  readonly listTaggedRPMS: (
    tag: Ref,
    opts: { readonly event?: number | null; readonly latest?: boolean; readonly draft?: boolean | null }
  ) => Effect.Effect<readonly [ReadonlyArray<Readonly<Record<string, XmlRpcValue>>>, ReadonlyArray<unknown>], E>
}

/**
 * kojid's package list of a hub repo (§5.2): the rpmdb listing mapped through the repo's
 * `rpmlist.jsonl` from the koji file tree (`listTaggedRPMS` at the repo's event without it) and
 * its external repos at that event. The same for a daemon task and a local build from a hub.
 */
export const hubPackageList = <E>(reads: TagContentReads<E>, files: RemoteFiles) =>
  (installed: ReadonlyArray<InstalledRpm>, repo: ListRepo) =>
    mapPackageList(installed, { relDir: repoRelDir(repo.tagName, repo.repoId), brArch: repo.brArch, repoId: repo.repoId }, files, {
      getExternalRepoList: () => reads.getExternalRepoList(repo.tagId, repo.createEvent),
      listTaggedRpms: () =>
        Effect.map(reads.listTaggedRPMS(repo.tagId, { event: repo.createEvent, latest: true, draft: true }), ([rpms]) => rpms)
    })

/** The hub side of a daemon task: kojid's calls on the task's own session. */
export const sessionHub = (session: Session, taskId: number, options: HubFiles): BuildrootHub => {
  const api = hostApi(session)
  const uploadPath = taskRelPath(taskId)
  const files: RemoteFiles = remoteFiles(options.topurls[0], options.topdir)
  return {
    uploadPath,
    repoInfo: (repoId) =>
      Effect.flatMap(api.repoInfo(repoId, true), (r) =>
        r === null ? Effect.dieMessage(`repoInfo(${repoId}, strict=True) returned nil`) : Effect.succeed(r)),
    getBuildConfig: (tag, event) => api.getBuildConfig(tag, event),
    newBuildRoot: (repoId, arch) => api.newBuildRoot(repoId, arch, taskId),
    setBuildRootState: (id, state) => api.setBuildRootState(id, state),
    setBuildRootList: (id, list) => api.setBuildRootList(id, list),
    updateBuildRootList: (id, list) => api.updateBuildRootList(id, list),
    packageList: hubPackageList(api, files),
    repoState: (repoId) => Effect.map(api.repoInfo(repoId, false), (r) => (r === null ? null : r.state)),
    upload: (localFile, name) => Effect.asVoid(uploadWrapper(session, localFile, uploadPath, name)),
    streamLogs: (logs, maxBytes) => streamLogs(session, logs, uploadPath, { maxBytes }),
    repoUrls: (tagName, repoId, brArch) => repoUrls(options, tagName, repoId, brArch)
  }
}

/**
 * Uploads of a build without a hub session: files are copied into `dir` (the task directory of
 * `build-local`), and growing logs are copied there, each capped at `maxBytes`, when the log
 * scope closes.
 */
export const localUploads = (dir: string): Pick<BuildrootHub, "uploadPath" | "upload" | "streamLogs"> => ({
  uploadPath: dir,
  upload: (localFile, name) =>
    Effect.tryPromise({
      try: async () => {
        const dest = path.join(dir, name)
        if (path.resolve(localFile) !== path.resolve(dest)) await fsp.copyFile(localFile, dest)
      },
      catch: (e) => new UploadError({ reason: "LocalFile", file: name, message: `cannot copy ${localFile} to ${dir}: ${String(e)}` })
    }),
  streamLogs: (logs, maxBytes) =>
    Effect.addFinalizer(() =>
      Effect.forEach(logs, (l) => copyLogCapped(l.local, path.join(dir, l.remote), maxBytes), { discard: true }))
})

/** A local repo for `build-local`: the arch repo directory or URL itself. */
export interface LocalRepo {
  /** file:///…/x86_64 or http(s)://…/x86_64 (the directory holding repodata/). */
  readonly url: string
  readonly tagName: string
  readonly repoId: number
  /** The URL and the digest of its repodata/repomd.xml (the cache key's repo part). */
  readonly identity: string
}

/**
 * The hub side of `build-local`: repo and tag are synthetic (READY, arches = the build arch), the
 * buildroot id is 1, lists and states are logged, uploads are copies into `resultDir`, and rpms
 * are matched against the repo's rpmlist.jsonl when it has one.
 */
export const localHub = (resultDir: string, repo: LocalRepo, arch: string): BuildrootHub => {
  const now = Date.now() / 1000
  return {
    ...localUploads(resultDir),
    repoInfo: (repoId) =>
      Effect.succeed({ id: repoId, state: 1, tag_id: 0, tag_name: repo.tagName, create_event: 0, create_ts: now }),
    getBuildConfig: () => Effect.succeed({ id: 0, name: repo.tagName, arches: arch, extra: {} }),
    newBuildRoot: () => Effect.succeed(1),
    setBuildRootState: (id, state) => Effect.logInfo(`buildroot ${id} → ${state}`),
    setBuildRootList: (id, list) => Effect.logInfo(`buildroot ${id}: ${list.length} packages installed`),
    updateBuildRootList: (id, list) => Effect.logInfo(`buildroot ${id}: ${list.length} packages after the build`),
    packageList: (installed) =>
      Effect.succeed(installed.map((r) => ({
        name: r.name, version: r.version, release: r.release, epoch: r.epoch, arch: r.arch,
        size: r.size, buildtime: r.buildtime, payloadhash: r.payloadhash
      }))),
    repoState: () => Effect.succeed(1),
    repoUrls: () => [repo.url],
    repoIdentity: repo.identity
  }
}
