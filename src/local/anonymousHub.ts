/**
 * AnonymousHub: the read-only koji hub calls of a build from a real target, made without login —
 * what the koji CLI sends with `--noauth`: a POST to the hub URL with no session headers, no
 * session query and no callnum (koji-protocol.md §1.5), and no client certificate (the CLI leaves
 * `cert` out of its session options). Retries are the profile's: transport errors only with
 * `anon_retry`, ServerOffline only with `offline_retry` (both off by default in koji's client).
 *
 * Failures a person must act on become one-line `HubAccessError`s naming the hub URL: a hub that
 * cannot be reached, one that refuses anonymous calls (AuthError / ActionNotAllowed faults, HTTP
 * 401/403, a TLS demand for a client certificate), a TLS certificate that does not verify, and a
 * server that does not answer as a koji hub. Other faults (GenericError "No such tagInfo", …) are
 * passed on as the hub sent them.
 */
import { Clock, Context, Duration, Effect, Layer, Schema, type Scope } from "effect"
import * as http from "node:http"
import { type Fault, GenericError } from "../koji/faults.js"
import { hostApi } from "../hub/HostApi.js"
import { type Ref } from "../koji/refs.js"
import { HubError } from "../hub/HubError.js"
import { HubTransport, make as makeTransport } from "../hub/HubTransport.js"
import { type AnonymousSession, make as makeKojiHub } from "../hub/KojiHub.js"
import * as S from "../hub/schemas.js"
import { duration } from "../tasks/getRepo.js"
import type { KojiClientOptions } from "./kojiProfile.js"

/** Why the hub cannot be used anonymously. */
export const HubAccessReason = Schema.Literal("Unreachable", "LoginRequired", "Certificate", "BadAnswer")

/** The hub cannot be used anonymously; the message is one line naming the hub URL. */
export class HubAccessError extends Schema.TaggedError<HubAccessError>()("HubAccessError", {
  reason: HubAccessReason,
  server: Schema.String,
  method: Schema.String,
  message: Schema.String
}) {}

/** Errors of anonymous calls. */
export type AnonymousHubError = Fault | HubError | HubAccessError

/** Connection options: the koji client profile's names in camelCase. */
export interface AnonymousHubOptions {
  /** The hub URL, e.g. `https://koji.fedoraproject.org/kojihub`. */
  readonly server: string
  /** CA bundle to verify the hub with; when set, `noSslVerify` is ignored (as koji's client does). */
  readonly serverca?: string | undefined
  readonly noSslVerify?: boolean | undefined
  /** Seconds per call; koji's default is 12 h. */
  readonly timeout?: number | undefined
  readonly anonRetry?: boolean | undefined
  readonly maxRetries?: number | undefined
  readonly retryInterval?: number | undefined
  readonly offlineRetry?: boolean | undefined
  readonly offlineRetryInterval?: number | undefined
}

/** The connection options of a koji client profile. */
export const anonymousHubOptions = (profile: KojiClientOptions): AnonymousHubOptions => ({
  server: profile.server,
  serverca: profile.serverca === "" ? undefined : profile.serverca,
  noSslVerify: profile.no_ssl_verify,
  // koji's client sets no timeout at all for 0; the transport's longest is its 12 h default.
  timeout: profile.timeout > 0 ? profile.timeout : undefined,
  anonRetry: profile.anon_retry,
  maxRetries: profile.max_retries,
  retryInterval: profile.retry_interval,
  offlineRetry: profile.offline_retry,
  offlineRetryInterval: profile.offline_retry_interval
})


/** `min_event` of a repo wait: an event id, `"last"` (the tag's last change), or none. */
export type RepoMinEvent = number | "last" | null

/** How a repo wait polls: koji's RepoWatcher pauses 6 s; the CLI gives up after 120 minutes. */
export interface RepoWaitOptions {
  readonly minEvent?: RepoMinEvent | undefined
  readonly pause?: Duration.DurationInput | undefined
  readonly timeout?: Duration.DurationInput | undefined
}

/** koji's `download-logs` block size. */
const DOWNLOAD_BLOCKSIZE = 102400

/** The anonymous calls. */
export interface AnonymousHubService {
  /** The hub URL. */
  readonly server: string
  /** `getAPIVersion()`: the CLI's connection check (`ensure_connection`). */
  readonly getAPIVersion: Effect.Effect<number, AnonymousHubError>
  /** `getBuildTarget(target)`; null when there is no such target. */
  readonly getBuildTarget: (target: Ref) => Effect.Effect<S.BuildTarget | null, AnonymousHubError>
  /** `getTag(tag, strict=, event=)`. */
  readonly getTag: (tag: Ref, opts?: { readonly strict?: boolean; readonly event?: number | null }) => Effect.Effect<S.TagInfo | null, AnonymousHubError>
  /** `getBuildConfig(tag, event=)`: the tag with inherited extra and arches. */
  readonly getBuildConfig: (tag: Ref, event?: number | null) => Effect.Effect<S.TagInfo, AnonymousHubError>
  /** `getRepo(tag)`: the tag's newest READY repo, or null. */
  readonly getRepo: (tag: Ref) => Effect.Effect<S.RepoInfo | null, AnonymousHubError>
  /** `repoInfo(repo_id)`; null when there is no such repo. */
  readonly repoInfo: (repoId: number) => Effect.Effect<S.RepoInfo | null, AnonymousHubError>
  /** `tagLastChangeEvent(tag)`. */
  readonly tagLastChangeEvent: (tag: Ref) => Effect.Effect<number | null, AnonymousHubError>
  /**
   * A READY repo of the tag at or after `minEvent` (default `"last"`: current as of now), waiting
   * for one as koji's RepoWatcher does without login: `repo.get` every pause (`getRepo` on hubs
   * before 1.35). GenericError "Unsuccessfully waited …" after the timeout.
   */
  readonly waitRepo: (tag: Ref, opts?: RepoWaitOptions) => Effect.Effect<S.RepoInfo, AnonymousHubError>
  /** `getPackageConfig(tag, pkg, event=)`: the package's listing in a tag (`extra_arches`, `blocked`); null when not listed. */
  readonly getPackageConfig: (tag: Ref, pkg: Ref, event?: number | null) => Effect.Effect<S.PackageConfig | null, AnonymousHubError>
  /** `getExternalRepoList(tag, event=)`. */
  readonly getExternalRepoList: (tag: Ref, event?: number | null) => Effect.Effect<ReadonlyArray<S.ExternalRepo>, AnonymousHubError>
  /** `listTaggedRPMS(tag, event=, latest=, draft=)` → `[rpms, builds]`. */
  readonly listTaggedRPMS: (
    tag: Ref,
    opts?: { readonly event?: number | null; readonly latest?: boolean; readonly draft?: boolean | null }
  ) => Effect.Effect<readonly [ReadonlyArray<typeof S.Struct.Type>, ReadonlyArray<typeof S.Struct.Type>], AnonymousHubError>
  /** `getTaskInfo(task_id, request=)`; null when there is no such task. */
  readonly getTaskInfo: (taskId: number, opts?: { readonly request?: boolean }) => Effect.Effect<S.TaskInfo | null, AnonymousHubError>
  /** `getTaskChildren(task_id)`. */
  readonly getTaskChildren: (taskId: number) => Effect.Effect<ReadonlyArray<S.TaskInfo>, AnonymousHubError>
  /** `listTaskOutput(task_id)`: file names relative to the task directory. */
  readonly listTaskOutput: (taskId: number) => Effect.Effect<ReadonlyArray<string>, AnonymousHubError>
  /** `downloadTaskOutput(task_id, name, offset=, size=)`: one block of a task's file. */
  readonly downloadTaskOutput: (
    taskId: number, fileName: string, opts?: { readonly offset?: number; readonly size?: number }
  ) => Effect.Effect<Uint8Array, AnonymousHubError>
  /** A task's whole file, block after block as `koji download-logs` reads it. */
  readonly readTaskOutput: (taskId: number, fileName: string) => Effect.Effect<Uint8Array, AnonymousHubError>
  /** `listBuildroots(taskID=)`: the buildroots a task used. */
  readonly listTaskBuildroots: (taskId: number) => Effect.Effect<ReadonlyArray<S.BuildrootInfo>, AnonymousHubError>
  /** `getBuildrootListing(id)`: the packages the hub recorded for a buildroot. */
  readonly getBuildrootListing: (brootId: number) => Effect.Effect<ReadonlyArray<S.BuildrootListingEntry>, AnonymousHubError>
}

/** Read-only hub calls without login. */
export class AnonymousHub extends Context.Tag("koji-adjutant/AnonymousHub")<AnonymousHub, AnonymousHubService>() {
  /** A client of the hub in `options`. */
  static readonly layer = (options: AnonymousHubOptions): Layer.Layer<AnonymousHub, HubError> =>
    Layer.scoped(AnonymousHub, make(options))
  /** A client of the hub of a koji client profile. */
  static readonly layerProfile = (profile: KojiClientOptions): Layer.Layer<AnonymousHub, HubError> =>
    AnonymousHub.layer(anonymousHubOptions(profile))
}

/** The part of a HubError message after `marker` (the message repeats method and URL), else all of it. */
const detailOf = (message: string, marker: RegExp): string => {
  const m = marker.exec(message)
  return m === null ? message : message.slice(m.index + m[0].length)
}

const oneLine = (s: string): string => s.replace(/\s+/g, " ").trim()

/** Turns what a person must act on into a `HubAccessError`; other errors pass unchanged. */
export const classifyAccess = (server: string, method: string) => (error: Fault | HubError): AnonymousHubError => {
  const access = (reason: typeof HubAccessReason.Type, message: string) =>
    new HubAccessError({ reason, server, method, message: oneLine(message) })
  if (error._tag === "AuthError" || error._tag === "ActionNotAllowed") {
    return access("LoginRequired", `the koji hub at ${server} requires login: it refused the anonymous call ${method} (${error._tag}: ${error.faultString})`)
  }
  if (error._tag !== "HubError") return error
  switch (error.reason) {
    case "Connection":
      return access("Unreachable", `cannot reach the koji hub at ${server}: ${detailOf(error.message, / failed: /)}`)
    case "Timeout":
      return access("Unreachable", `the koji hub at ${server} did not answer ${method} ${detailOf(error.message, / (?=within )/)}`)
    case "Certificate":
      return /CERTIFICATE_REQUIRED/.test(error.message)
        ? access("LoginRequired", `the koji hub at ${server} requires login: it asks for a client certificate`)
        : access("Certificate", `TLS certificate of the koji hub at ${server} not accepted: ${detailOf(error.message, new RegExp(`with ${escapeRegExp(server)}[^:]*: `))} (set serverca in the koji profile to the hub's CA)`)
    case "Http": {
      const status = error.status ?? 0
      const text = `HTTP ${status} ${http.STATUS_CODES[status] ?? ""}`.trim()
      if (status === 401 || status === 403) {
        return access("LoginRequired", `the koji hub at ${server} requires login: it refused the anonymous call ${method} (${text})`)
      }
      if (status >= 500) return access("Unreachable", `the koji hub at ${server} is not available: ${text} for ${method}`)
      return access("BadAnswer", `the server at ${server} does not answer as a koji hub: ${text} for ${method}`)
    }
    case "Parse":
      return access("BadAnswer", `the server at ${server} does not answer as a koji hub: ${detailOf(error.message, /^[^:]*: /)}`)
    case "Decode":
      return error
  }
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")


/** Builds the client over an anonymous session of the hub's transport. */
export const make = (options: AnonymousHubOptions): Effect.Effect<AnonymousHubService, HubError, Scope.Scope> =>
  Effect.gen(function*() {
    const server = options.server.replace(/\/+$/, "")
    const transport = yield* makeTransport({
      server,
      serverca: options.serverca,
      // koji's client verifies against serverca when it has one, whatever no_ssl_verify says.
      noSslVerify: options.serverca === undefined ? options.noSslVerify : false,
      timeout: options.timeout
    })
    const hub = yield* makeKojiHub({
      server,
      anonRetry: options.anonRetry ?? false,
      maxRetries: options.maxRetries ?? 30,
      retryInterval: options.retryInterval ?? 20,
      offlineRetry: options.offlineRetry ?? false,
      offlineRetryInterval: options.offlineRetryInterval ?? 20
    }).pipe(Effect.provideService(HubTransport, transport))
    return makeService(server, hub.anonymous)
  })

/** The service over any anonymous session (the transport decides where calls go). */
export const makeService = (server: string, session: AnonymousSession): AnonymousHubService => {
  const api = hostApi(session)
  const guard = <A>(method: string, self: Effect.Effect<A, Fault | HubError>): Effect.Effect<A, AnonymousHubError> =>
    self.pipe(Effect.mapError(classifyAccess(server, method)), Effect.withSpan(`AnonymousHub.${method}`))

  const repoGet = (tagId: number, minEvent: number | null) => api.repoGet(tagId, { min_event: minEvent, at_event: null, opts: null })

  const isMissingMethod = (e: Fault | HubError, method: string): boolean =>
    e instanceof GenericError && e.faultString === `Invalid method: ${method}`

  const waitRepo = Effect.fn("AnonymousHub.waitRepo")(function*(tagRef: Ref, opts: RepoWaitOptions = {}) {
    const tag = yield* guard("getTag", api.getTag(tagRef, { strict: true }))
    if (tag === null) return yield* new GenericError({ faultString: `No such tagInfo: ${JSON.stringify(tagRef)}` })
    const requested = opts.minEvent === undefined ? "last" : opts.minEvent
    const minEvent = requested === "last" ? yield* guard("tagLastChangeEvent", api.tagLastChangeEvent(tag.id)) : requested
    const pause = Duration.decode(opts.pause ?? Duration.seconds(6))
    const timeoutMs = Duration.toMillis(Duration.decode(opts.timeout ?? Duration.minutes(120)))
    const start = yield* Clock.currentTimeMillis
    let legacy = false
    yield* Effect.logInfo(`Waiting on repo for ${tag.name} (min_event ${minEvent ?? "none"})`)
    for (;;) {
      const repo = legacy
        ? yield* guard("getRepo", api.getRepo(tag.id))
        : yield* repoGet(tag.id, minEvent).pipe(
          Effect.catchIf((e) => isMissingMethod(e, "repo.get"), () =>
            // Hubs before 1.35 have no repo.get: poll getRepo and check the event here.
            Effect.sync(() => {
              legacy = true
            }).pipe(Effect.zipRight(api.getRepo(tag.id)))),
          (self) => guard("repo.get", self)
        )
      if (repo !== null && repo.tag_id !== undefined && repo.tag_id !== tag.id) {
        yield* Effect.logError(`Got repo for wrong tag, expected ${tag.id}, got ${repo.tag_id}`)
      } else if (repo !== null && (minEvent === null || repo.create_event >= minEvent)) {
        return repo
      }
      const elapsed = (yield* Clock.currentTimeMillis) - start
      if (elapsed > timeoutMs) {
        return yield* new GenericError({ faultString: `Unsuccessfully waited ${duration(elapsed)} for a new ${tag.name} repo` })
      }
      yield* Effect.sleep(pause)
    }
  })

  const downloadTaskOutput = (taskId: number, fileName: string, opts: { readonly offset?: number; readonly size?: number } = {}) =>
    guard(
      "downloadTaskOutput",
      api.downloadTaskOutput(taskId, fileName, { offset: opts.offset ?? 0, size: opts.size ?? -1 })
    )

  const readTaskOutput = Effect.fn("AnonymousHub.readTaskOutput")(function*(taskId: number, fileName: string) {
    const blocks: Array<Uint8Array> = []
    let offset = 0
    for (;;) {
      const block = yield* downloadTaskOutput(taskId, fileName, { offset, size: DOWNLOAD_BLOCKSIZE })
      if (block.length === 0) break
      blocks.push(block)
      offset += block.length
    }
    return new Uint8Array(Buffer.concat(blocks))
  })

  return {
    server,
    getAPIVersion: guard("getAPIVersion", api.getAPIVersion()),
    getBuildTarget: (target) => guard("getBuildTarget", api.getBuildTarget(target)),
    getTag: (tag, opts = {}) => guard("getTag", api.getTag(tag, opts)),
    getBuildConfig: (tag, event) => guard("getBuildConfig", api.getBuildConfig(tag, event)),
    getRepo: (tag) => guard("getRepo", api.getRepo(tag)),
    repoInfo: (repoId) => guard("repoInfo", api.repoInfo(repoId)),
    tagLastChangeEvent: (tag) => guard("tagLastChangeEvent", api.tagLastChangeEvent(tag)),
    waitRepo,
    getPackageConfig: (tag, pkg, event) => guard("getPackageConfig", api.getPackageConfig(tag, pkg, event)),
    getExternalRepoList: (tag, event) => guard("getExternalRepoList", api.getExternalRepoList(tag, event)),
    listTaggedRPMS: (tag, opts = {}) => guard("listTaggedRPMS", api.listTaggedRPMS(tag, opts)),
    getTaskInfo: (taskId, opts = {}) => guard("getTaskInfo", api.getTaskInfo(taskId, opts)),
    getTaskChildren: (taskId) => guard("getTaskChildren", api.getTaskChildren(taskId)),
    listTaskOutput: (taskId) => guard("listTaskOutput", api.listTaskOutputNames(taskId)),
    downloadTaskOutput,
    readTaskOutput,
    listTaskBuildroots: (taskId) =>
      guard("listBuildroots", api.listBuildroots({ taskID: taskId })),
    getBuildrootListing: (brootId) =>
      guard("getBuildrootListing", api.getBuildrootListing(brootId))
  }
}
