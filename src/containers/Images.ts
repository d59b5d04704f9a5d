/**
 * Bootstrap images from registries (DESIGN.md §5, issue 4 part 5): pulls through the libpod API
 * with a pull policy, digest pinning, credentials from a containers auth file, TLS verification
 * unless the registry is listed in `insecure_registries`, progress lines for the task log, a
 * scheduled refresh of moving tags and garbage collection of images no rule references.
 */
import { Context, Duration, Effect, Either, Layer, Option, Schedule, Schema, Stream } from "effect"
import { mkdir, readFile, rename, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { Libpod, type ImageInspect, type PodmanError } from "./Libpod.js"
import { configuredImages, selectImage, type ImagePolicyConfig, type ImageRequest } from "./ImagePolicy.js"

/** When to contact the registry: `missing` (default) pulls only absent images, `always` every time, `never` not at all. */
export type PullPolicy = "missing" | "always" | "never"

/** Why an image could not be made available. */
export const ImageErrorReason = Schema.Literal(
  "InvalidReference",
  "Unreachable",
  "Auth",
  "Tls",
  "NotFound",
  "DigestMismatch",
  "PolicyNever",
  "Timeout",
  "Podman"
)
/** Why an image could not be made available. */
export type ImageErrorReason = typeof ImageErrorReason.Type

/** An image could not be made available for a task; `message` says what to do about it. */
export class ImageError extends Schema.TaggedError<ImageError>()("ImageError", {
  reason: ImageErrorReason,
  image: Schema.String,
  message: Schema.String
}) {}

/** A parsed `[registry/]path[:tag][@sha256:…]` reference. */
export interface ImageReference {
  readonly original: string
  /** `registry/path`, without tag or digest. */
  readonly name: string
  /** The registry host[:port]; `localhost` for images built on this machine. */
  readonly registry: string
  readonly tag: string | undefined
  readonly digest: string | undefined
  /** Whether the name carries an explicit registry (`docker.io` is assumed otherwise). */
  readonly qualified: boolean
}

const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-f0-9]{32,}$/
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/

/** Parses an image reference as the distribution spec defines it; Left names what is wrong. */
export const parseImageReference = (image: string): Either.Either<ImageReference, string> => {
  let rest = image.trim()
  if (rest === "") return Either.left("the image reference is empty")
  let digest: string | undefined
  const at = rest.indexOf("@")
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) return Either.left(`"${digest}" is not a digest (expected sha256:<64 hex digits>)`)
  }
  let tag: string | undefined
  const slash = rest.lastIndexOf("/")
  const colon = rest.lastIndexOf(":")
  if (colon > slash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) return Either.left(`"${tag}" is not a valid tag`)
  }
  const parts = rest.split("/")
  const first = parts[0] ?? ""
  const qualified = parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")
  const registry = qualified ? first : "docker.io"
  const path = qualified ? parts.slice(1) : parts
  if (path.length === 0 || !path.every((p) => PATH_COMPONENT.test(p))) {
    return Either.left(`"${rest}" is not a valid repository name (lowercase letters, digits and . _ - separated by /)`)
  }
  return Either.right({ original: image, name: rest, registry, tag, digest, qualified })
}

/** The reference podman is asked to pull: by digest when pinned without a tag, else by tag. */
const pullReference = (ref: ImageReference): string =>
  ref.tag !== undefined ? `${ref.name}:${ref.tag}` : ref.digest !== undefined ? `${ref.name}@${ref.digest}` : `${ref.name}:latest`

/** The reference that names exactly the wanted local image. */
const localReference = (ref: ImageReference): string =>
  ref.digest !== undefined ? `${ref.name}@${ref.digest}` : `${ref.name}:${ref.tag ?? "latest"}`

/** The image a task may use, resolved to podman's image id so a moving tag cannot change under it. */
export interface EnsuredImage {
  /** The configured reference. */
  readonly image: string
  /** Podman's image id: pass this to container create. */
  readonly id: string
  /**
   * The pinned digest, else the manifest digest podman recorded for this repository (when one
   * image id was stored from several manifests, e.g. a local build pushed and pulled back, any of them).
   */
  readonly digest: string | undefined
  /** Whether this call pulled from the registry. */
  readonly pulled: boolean
}

/** Options of one `ensure`. */
export interface EnsureOptions {
  /** Overrides the configured `pull_policy`. */
  readonly policy?: PullPolicy | undefined
  /** Receives each progress line of a pull (the task log). */
  readonly onProgress?: ((line: string) => Effect.Effect<void>) | undefined
}

/** What one garbage collection did. */
export interface GcReport {
  /** References (or ids) removed. */
  readonly removed: ReadonlyArray<string>
  /** Candidates kept because a rule references them, they were used recently, or removal failed. */
  readonly kept: ReadonlyArray<string>
}

/** Options of the Images service (the `[adjutant]` image keys plus where state lives). */
export interface ImagesOptions extends ImagePolicyConfig {
  readonly pull_policy: PullPolicy
  /** A containers auth file (`{"auths":{"host:port":{"auth":"base64(user:pass)"}}}`); "" = podman's own. */
  readonly registry_auth_file: string
  /** `host[:port]` entries pulled without TLS verification. */
  readonly insecure_registries: ReadonlyArray<string>
  /** Seconds between refreshes of moving tags (and garbage collections); 0 = never. */
  readonly image_refresh_interval: number
  readonly image_gc: boolean
  /** JSON file remembering which images we pulled, so GC survives restarts; undefined = memory only. */
  readonly stateFile?: string | undefined
  /** Images carrying this label are ours to collect (the offline builds carry it). */
  readonly ownedLabel?: string | undefined
  /** Images ensured within this window are kept by GC even when no rule names them (tag extras). */
  readonly keepRecent?: Duration.DurationInput | undefined
  /** Upper bound of one pull. */
  readonly pullTimeout?: Duration.DurationInput | undefined
  /** How often the maintained layer tries again while a configured image is unusable (default 60 s). */
  readonly unavailableRetry?: Duration.DurationInput | undefined
}

/** The label the offline image builds carry (scripts/build-images.sh). */
export const OWNED_IMAGE_LABEL = "io.koji.adjutant.image"

/** Where the production layer remembers pulled images (the default of `[adjutant] image_state_file`). */
export const DEFAULT_IMAGE_STATE_FILE = "/var/lib/koji-adjutant/images.json"

/** Bootstrap images: pulled, pinned, refreshed and collected. */
export class Images extends Context.Tag("Images")<
  Images,
  {
    /** Makes `image` available locally per the pull policy and returns its id. */
    readonly ensure: (image: string, options?: EnsureOptions) => Effect.Effect<EnsuredImage, ImageError>
    /** Chooses the image for a task (ImagePolicy) and ensures it. */
    readonly forTask: (request: ImageRequest, options?: EnsureOptions) => Effect.Effect<EnsuredImage, ImageError>
    /** Re-pulls every configured moving tag (not pinned, not localhost); failures are logged. */
    readonly refresh: Effect.Effect<void>
    /** Removes images we own that no rule references and that were not used recently. */
    readonly gc: Effect.Effect<GcReport>
    /** True when at least one configured image is present locally (no pull). */
    readonly readiness: Effect.Effect<boolean>
    /** The images the config names. */
    readonly configured: ReadonlyArray<string>
  }
>() {
  /** The service alone (no background refresh). */
  static layer = (options: ImagesOptions): Layer.Layer<Images, never, Libpod> => Layer.scoped(Images, makeImages(options))

  /** The service plus a background loop: warm the configured images at start, then refresh and GC every interval. */
  static layerMaintained = (options: ImagesOptions): Layer.Layer<Images, never, Libpod> =>
    Layer.scoped(
      Images,
      Effect.gen(function* () {
        const images = yield* makeImages(options)
        yield* Effect.forkScoped(maintenance(images, options))
        return images
      })
    )

  /** From `AdjutantConfig` (`[adjutant]` image keys, kojid's `mock_bootstrap_image`), maintained. */
  static layerConfig: Layer.Layer<Images, never, Libpod | AdjutantConfig> = Layer.unwrapEffect(
    Effect.map(AdjutantConfig, (config) => Images.layerMaintained(imagesOptionsFromConfig(config)))
  )
}

/** ImagesOptions from the daemon config (`[adjutant]` image keys, kojid's `mock_bootstrap_image`). */
export const imagesOptionsFromConfig = (config: AdjutantConfig["Type"]): ImagesOptions => ({
  bootstrap_image: config.adjutant.bootstrap_image,
  image_rules: config.adjutant.image_rules,
  mock_bootstrap_image: config.kojid.mock_bootstrap_image,
  pull_policy: config.adjutant.pull_policy,
  registry_auth_file: config.adjutant.registry_auth_file,
  insecure_registries: config.adjutant.insecure_registries,
  image_refresh_interval: config.adjutant.image_refresh_interval,
  image_gc: config.adjutant.image_gc,
  stateFile: config.adjutant.image_state_file,
  pullTimeout: Duration.seconds(config.adjutant.image_pull_timeout)
})

const maintenance = (images: Context.Tag.Service<Images>, options: ImagesOptions) => {
  // A configured image that cannot be had now only makes the daemon not ready (readiness); it
  // is tried again every `unavailableRetry` until all are usable, so a registry that was down
  // at start, or an image built after the daemon started, does not keep the host idle until
  // the next refresh.
  const ensureAll = Effect.forEach(images.configured, (image) =>
    images.ensure(image).pipe(
      Effect.tap((e) => Effect.logInfo(`image ${image} ready (${e.id.slice(0, 12)})`)),
      Effect.as(true),
      Effect.catchAll((e) => Effect.as(Effect.logWarning(`image ${image} not available: ${e.message}`), false))
    )
  ).pipe(Effect.map((ok) => ok.every(Boolean)))
  const warmUp = Effect.repeat(ensureAll, {
    until: (allUsable) => allUsable,
    schedule: Schedule.spaced(options.unavailableRetry ?? Duration.seconds(60))
  })
  const round = Effect.gen(function* () {
    yield* images.refresh
    if (options.image_gc) yield* images.gc
  })
  const refreshes = options.image_refresh_interval <= 0
    ? Effect.void
    : Effect.forever(Effect.zipRight(Effect.sleep(Duration.seconds(options.image_refresh_interval)), round))
  return Effect.all([warmUp, refreshes], { concurrency: 2, discard: true }).pipe(Effect.annotateLogs({ service: "Images" }))
}

// ---------------------------------------------------------------------------------------------
// Auth file

const AuthEntry = Schema.Struct({
  auth: Schema.optional(Schema.String),
  username: Schema.optional(Schema.String),
  password: Schema.optional(Schema.String),
  identitytoken: Schema.optional(Schema.String)
})
const AuthFile = Schema.Struct({
  auths: Schema.optionalWith(Schema.Record({ key: Schema.String, value: AuthEntry }), { default: () => ({}) })
})
const decodeAuthFile = Schema.decodeUnknownEither(Schema.parseJson(AuthFile))

/** `https://host:port/v1/` or `host:port/ns` → `host:port/ns` (scheme and `/v1/`-style suffixes dropped). */
const normalizeAuthKey = (key: string): string => {
  const noScheme = key.replace(/^[a-z]+:\/\//, "").replace(/\/+$/, "")
  const [host = "", ...path] = noScheme.split("/")
  const rest = path.join("/")
  return /^v[12]$/.test(rest) ? host : rest === "" ? host : `${host}/${rest}`
}

/** The credentials of a containers auth file for one repository. */
export interface RegistryCredentials {
  readonly username: string
  readonly password: string
  readonly identitytoken?: string
}

/**
 * The credentials an auth file holds for repository `name` (`registry/path`): the most specific
 * key (`host/namespace` before `host`) wins, as in containers-auth.json(5); undefined when none.
 */
export const registryCredentials = (authFileText: string, name: string): Either.Either<RegistryCredentials | undefined, string> => {
  const parsed = decodeAuthFile(authFileText)
  if (Either.isLeft(parsed)) return Either.left(`is not a containers auth file: ${parsed.left.message}`)
  let best: { key: string; entry: typeof AuthEntry.Type } | undefined
  for (const [rawKey, entry] of Object.entries(parsed.right.auths)) {
    const key = normalizeAuthKey(rawKey)
    if ((name === key || name.startsWith(key + "/")) && (best === undefined || key.length > best.key.length)) {
      best = { key, entry }
    }
  }
  if (best === undefined) return Either.right(undefined)
  let username = best.entry.username ?? ""
  let password = best.entry.password ?? ""
  if (best.entry.auth !== undefined && best.entry.auth !== "") {
    const decoded = Buffer.from(best.entry.auth, "base64").toString("utf8")
    const sep = decoded.indexOf(":")
    if (sep < 0) return Either.left(`has an "auth" for ${best.key} that is not base64("user:password")`)
    username = decoded.slice(0, sep)
    password = decoded.slice(sep + 1)
  }
  return Either.right({ username, password, ...(best.entry.identitytoken === undefined ? {} : { identitytoken: best.entry.identitytoken }) })
}

/**
 * The X-Registry-Auth header for one pull: podman 4.3 accepts a base64url JSON map of
 * registry → {username, password} (pkg/auth multi-auth header). Only the entry for the image's
 * registry is sent (`registryCredentials`).
 */
export const registryAuthHeader = (authFileText: string, ref: ImageReference): Either.Either<string | undefined, string> =>
  Either.map(registryCredentials(authFileText, ref.name), (creds) => {
    if (creds === undefined) return undefined
    // Go's base64.URLEncoding: the URL alphabet *with* padding (Node's "base64url" drops it,
    // which podman rejects with "unexpected EOF").
    return Buffer.from(JSON.stringify({ [ref.registry]: creds })).toString("base64").replace(/\+/g, "-").replace(/\//g, "_")
  })

// ---------------------------------------------------------------------------------------------
// Pull errors

/** Classifies podman's pull error text into a reason and a message a person can act on. */
export const classifyPullError = (
  ref: ImageReference,
  text: string,
  context: { readonly tlsVerify: boolean; readonly authFile: string }
): ImageError => {
  const reg = ref.registry
  const make = (reason: ImageErrorReason, message: string) =>
    new ImageError({ reason, image: ref.original, message: `${message} (podman: ${text})` })
  if (/server gave HTTP response to HTTPS client/i.test(text)) {
    return make("Tls", `registry ${reg} answers plain HTTP, not HTTPS: pulling ${ref.original} needs TLS unless ${reg} is listed in [adjutant] insecure_registries`)
  }
  if (/x509:|certificate|tls:|handshake/i.test(text)) {
    return make(
      "Tls",
      `TLS verification of registry ${reg} failed while pulling ${ref.original}: install its CA certificate as ` +
        `/etc/containers/certs.d/${reg}/ca.crt on this builder, or list ${reg} in [adjutant] insecure_registries to skip verification`
    )
  }
  if (/unauthorized|authentication required|invalid username|incorrect username|denied/i.test(text)) {
    const where = context.authFile === "" ? "podman's default auth file (no [adjutant] registry_auth_file is set)" : `[adjutant] registry_auth_file ${context.authFile}`
    return make("Auth", `registry ${reg} refused the credentials for ${ref.original}: check the entry for ${reg} in ${where}`)
  }
  if (/connection refused|no such host|i\/o timeout|network is unreachable|no route to host|connection reset|dial tcp|timeout|EOF/i.test(text)) {
    return make("Unreachable", `registry ${reg} is unreachable while pulling ${ref.original}: check the registry address, this builder's network and proxy`)
  }
  if (/manifest unknown|name unknown|not found|image not known|no such image/i.test(text)) {
    const what = ref.digest !== undefined && ref.tag === undefined ? `digest ${ref.digest}` : `tag ${ref.tag ?? "latest"}`
    return make("NotFound", `registry ${reg} has no ${ref.name} with ${what}: check the image name and tag in the config`)
  }
  return make("Podman", `pulling ${ref.original} from ${reg} failed`)
}

const PullLine = Schema.Struct({
  stream: Schema.optional(Schema.String),
  error: Schema.optional(Schema.String),
  id: Schema.optional(Schema.String),
  images: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
})
const decodePullLine = Schema.decodeUnknownEither(Schema.parseJson(PullLine))

/** Every digest podman knows for an image: its manifest digest and those of its RepoDigests. */
const digestsOf = (info: ImageInspect): ReadonlySet<string> => {
  const out = new Set<string>()
  if (info.Digest !== undefined && info.Digest !== "") out.add(info.Digest)
  for (const rd of info.RepoDigests ?? []) {
    const at = rd.indexOf("@")
    if (at >= 0) out.add(rd.slice(at + 1))
  }
  return out
}

/**
 * The digest to report for `ref`: the pin when there is one, else the manifest digest podman
 * recorded for this repository (an image id shared with other names carries their digests too).
 */
const digestFor = (info: ImageInspect, ref: ImageReference): string | undefined => {
  if (ref.digest !== undefined) return ref.digest
  const own = (info.RepoDigests ?? []).filter((rd) => rd.startsWith(`${ref.name}@`)).map((rd) => rd.slice(ref.name.length + 1))
  if (info.Digest !== undefined && own.includes(info.Digest)) return info.Digest
  return own[0] ?? info.Digest
}

// ---------------------------------------------------------------------------------------------
// State: what we pulled

const PulledRecord = Schema.Struct({ reference: Schema.String, id: Schema.String, at: Schema.Number })
type PulledRecord = typeof PulledRecord.Type
const StateFile = Schema.Struct({ pulled: Schema.Array(PulledRecord) })
const decodeState = Schema.decodeUnknownEither(Schema.parseJson(StateFile))

// ---------------------------------------------------------------------------------------------
// The service

/** What one Images service knows: its options, and what it pulled, used and is pulling. */
interface ImagesState {
  readonly options: ImagesOptions
  readonly libpod: Libpod["Type"]
  readonly ownedLabel: string
  readonly keepRecent: number
  readonly pullTimeout: Duration.Duration
  readonly insecure: ReadonlySet<string>
  readonly configured: ReadonlyArray<string>
  /**
   * Keyed by reference and id: after a tag moved, the record of the old id stays until GC has
   * removed that now-dangling image.
   */
  readonly pulled: Map<string, PulledRecord>
  readonly lastUsed: Map<string, number>
  /** One ensure at a time per reference. */
  readonly locks: Map<string, Effect.Semaphore>
}

const recordKey = (r: PulledRecord) => `${r.reference} ${r.id}`

const loadState = (st: ImagesState) =>
  Effect.gen(function* () {
    const file = st.options.stateFile
    if (file === undefined) return
    const text = yield* Effect.promise(() => readFile(file, "utf8").catch(() => undefined))
    if (text === undefined) return
    const state = decodeState(text)
    if (Either.isRight(state)) for (const r of state.right.pulled) st.pulled.set(recordKey(r), r)
    else yield* Effect.logWarning(`ignoring unreadable image state ${file}: ${state.left.message}`)
  })

const saveState = (st: ImagesState) =>
  Effect.suspend(() => {
    const file = st.options.stateFile
    if (file === undefined) return Effect.void
    const body = JSON.stringify({ pulled: [...st.pulled.values()] }, null, 1)
    return Effect.tryPromise(async () => {
      await mkdir(dirname(file), { recursive: true })
      await writeFile(`${file}.tmp`, body)
      await rename(`${file}.tmp`, file)
    }).pipe(
      // Losing the record only means a later GC may keep an image it could have removed.
      Effect.catchAll((e) => Effect.logWarning(`could not save image state ${file}: ${String(e.error)}`))
    )
  })

const lockFor = (st: ImagesState, key: string) =>
  Effect.sync(() => {
    let sem = st.locks.get(key)
    if (sem === undefined) {
      sem = Effect.unsafeMakeSemaphore(1)
      st.locks.set(key, sem)
    }
    return sem
  })

const podmanError = (image: string) => (e: PodmanError) =>
  new ImageError({ reason: "Podman", image, message: `podman failed while handling image ${image}: ${e.message}` })

const parse = (image: string) =>
  Either.match(parseImageReference(image), {
    onLeft: (why) =>
      Effect.fail(new ImageError({ reason: "InvalidReference", image, message: `image reference ${JSON.stringify(image)} is invalid: ${why}` })),
    onRight: Effect.succeed
  })

/** The X-Registry-Auth header of a pull from `registry_auth_file`; none without one. */
const authHeader = (options: ImagesOptions, ref: ImageReference) => {
  const file = options.registry_auth_file
  if (file === "") return Effect.succeed<Record<string, string>>({})
  return Effect.tryPromise(() => readFile(file, "utf8")).pipe(
    Effect.mapError(
      (e) =>
        new ImageError({
          reason: "Auth",
          image: ref.original,
          message: `cannot read [adjutant] registry_auth_file ${file}: ${e.error instanceof Error ? e.error.message : String(e.error)}`
        })
    ),
    Effect.flatMap((text) =>
      Either.match(registryAuthHeader(text, ref), {
        onLeft: (why) => Effect.fail(new ImageError({ reason: "Auth", image: ref.original, message: `[adjutant] registry_auth_file ${file} ${why}` })),
        onRight: (header): Effect.Effect<Record<string, string>> =>
          Effect.succeed(header === undefined ? {} : { "X-Registry-Auth": header })
      })
    )
  )
}

const inspectLocal = (st: ImagesState, reference: string, image: string) =>
  st.libpod.imageExists(reference).pipe(
    Effect.flatMap((exists) => (exists ? Effect.map(st.libpod.imageInspect(reference), Option.some) : Effect.succeed(Option.none()))),
    Effect.mapError(podmanError(image))
  )

/** What a pull's lines said: the image id, or the registry's error. */
interface PullOutcome {
  readonly id: string | undefined
  readonly error: string | undefined
}

/** One line of a pull's answer folded in; progress lines go to the task log as they come. */
const foldPullLine = (onProgress: EnsureOptions["onProgress"]) => (acc: PullOutcome, line: string): Effect.Effect<PullOutcome> => {
  if (line.trim() === "") return Effect.succeed(acc)
  const decoded = decodePullLine(line)
  if (Either.isLeft(decoded)) return Effect.as(Effect.logDebug(`unexpected pull line: ${line}`), acc)
  const l = decoded.right
  const progress = l.stream !== undefined && onProgress !== undefined ? onProgress(l.stream.replace(/\s+$/, "")) : Effect.void
  return Effect.as(progress, {
    id: l.id ?? (l.images ?? [])[0] ?? acc.id,
    error: l.error ?? acc.error
  })
}

const pull = Effect.fnUntraced(function* (st: ImagesState, ref: ImageReference, onProgress: EnsureOptions["onProgress"]) {
  const reference = pullReference(ref)
  const tlsVerify = !st.insecure.has(ref.registry.toLowerCase())
  const headers = yield* authHeader(st.options, ref)
  const classify = (text: string) => classifyPullError(ref, text, { tlsVerify, authFile: st.options.registry_auth_file })
  yield* Effect.logInfo(`pulling ${reference} (tlsVerify=${tlsVerify})`)
  // Registry failures arrive in-band as an "error" line with status 200; a failed HTTP status
  // or a broken socket is podman's own problem. Lines are read as they come, so the task log
  // shows the pull's progress live (the stream is interruptible: a hung registry is bounded
  // by the timeout below and by the task's cancel).
  const lines = st.libpod
    .stream({
      operation: "image.pull",
      target: reference,
      method: "POST",
      path: "/images/pull",
      // policy=always: whether to pull at all is decided here, from our own pull policy.
      query: { reference, tlsVerify, policy: "always" },
      headers
    })
    .pipe(Stream.mapError(podmanError(ref.original)), Stream.decodeText(), Stream.splitLines)
  const start: PullOutcome = { id: undefined, error: undefined }
  const result = yield* Stream.runFoldEffect(lines, start, foldPullLine(onProgress)).pipe(
    Effect.timeoutFail({
      duration: st.pullTimeout,
      onTimeout: () =>
        new ImageError({
          reason: "Timeout",
          image: ref.original,
          message: `pulling ${reference} from ${ref.registry} took longer than ${Duration.format(st.pullTimeout)}; the registry or network is too slow`
        })
    })
  )
  if (result.error !== undefined) return yield* Effect.fail(classify(result.error))
  if (result.id === undefined) return yield* Effect.fail(classify("the pull ended without an image id"))
  const record = { reference, id: result.id, at: Date.now() }
  st.pulled.set(recordKey(record), record)
  yield* saveState(st)
  return result.id
})

/**
 * The local image when the policy lets it serve (none found: undefined); fails when the image
 * must not or cannot be pulled (a localhost/ image, policy "never", a name without registry).
 */
const fromStore = Effect.fnUntraced(function* (st: ImagesState, ref: ImageReference, policy: PullPolicy) {
  const image = ref.original
  const local = ref.registry === "localhost"
  if (policy !== "always" || local) {
    const found = yield* inspectLocal(st, localReference(ref), image)
    if (Option.isSome(found)) return { image, id: found.value.Id, digest: digestFor(found.value, ref), pulled: false }
    if (local) {
      return yield* Effect.fail(
        new ImageError({
          reason: "NotFound",
          image,
          message: `image ${image} is not in podman's image store; localhost/ images are built on this machine (the bootstrap image by scripts/build-images.sh)`
        })
      )
    }
    if (policy === "never") {
      return yield* Effect.fail(
        new ImageError({
          reason: "PolicyNever",
          image,
          message: `image ${image} is not in podman's image store and the pull policy is "never": pull it by hand (podman pull ${pullReference(ref)}) or change pull_policy`
        })
      )
    }
  }
  if (!ref.qualified) {
    return yield* Effect.fail(
      new ImageError({
        reason: "InvalidReference",
        image,
        message: `image ${image} names no registry; write it fully qualified (e.g. registry.fedoraproject.org/fedora:40) so the pull does not depend on short-name resolution`
      })
    )
  }
  return undefined
})

const resolve = Effect.fnUntraced(function* (st: ImagesState, ref: ImageReference, options_: EnsureOptions | undefined) {
  const image = ref.original
  const configuredPolicy = options_?.policy ?? st.options.pull_policy
  // A digest names immutable content: pulling it again can never bring anything new.
  const policy: PullPolicy = ref.digest !== undefined && configuredPolicy === "always" ? "missing" : configuredPolicy
  const stored = yield* fromStore(st, ref, policy)
  if (stored !== undefined) return stored
  const id = yield* pull(st, ref, options_?.onProgress)
  const info = yield* st.libpod.imageInspect(id).pipe(Effect.mapError(podmanError(image)))
  if (ref.digest !== undefined && !digestsOf(info).has(ref.digest)) {
    return yield* Effect.fail(
      new ImageError({
        reason: "DigestMismatch",
        image,
        message:
          `image ${image} is pinned to ${ref.digest}, but ${pullReference(ref)} in registry ${ref.registry} now has ` +
          `${info.Digest ?? "another digest"}: the tag moved; check the new image and update the pin in the config`
      })
    )
  }
  return { image, id: info.Id, digest: digestFor(info, ref), pulled: true }
})

type Ensure = Images["Type"]["ensure"]

const ensure = (st: ImagesState): Ensure =>
  Effect.fn("Images.ensure")(function* (image: string, options_?: EnsureOptions) {
    const ref = yield* parse(image)
    const sem = yield* lockFor(st, ref.original)
    const result: EnsuredImage = yield* sem.withPermits(1)(resolve(st, ref, options_))
    st.lastUsed.set(ref.original, Date.now())
    return result
  })

const forTask = (st: ImagesState, ensure: Ensure) =>
  Effect.fn("Images.forTask")(function* (request: ImageRequest, options_?: EnsureOptions) {
    const choice = selectImage(st.options, request)
    yield* Effect.logDebug(`image ${choice.image} (${choice.source}) for tag ${request.tag ?? "-"} arch ${request.arch}`)
    return yield* ensure(choice.image, options_)
  })

const refresh = (st: ImagesState, ensure: Ensure) =>
  Effect.gen(function* () {
    for (const image of st.configured) {
      const ref = parseImageReference(image)
      if (Either.isLeft(ref) || ref.right.digest !== undefined || ref.right.registry === "localhost" || !ref.right.qualified) continue
      yield* ensure(image, { policy: "always" }).pipe(
        Effect.tap((e) => Effect.logInfo(`refreshed ${image}: ${e.id.slice(0, 12)}`)),
        Effect.catchAll((e) => Effect.logWarning(`refresh of ${image} failed; the local copy stays in use: ${e.message}`))
      )
    }
  }).pipe(Effect.withSpan("Images.refresh"))

const readiness = (st: ImagesState) =>
  Effect.gen(function* () {
    for (const image of st.configured) {
      const ref = parseImageReference(image)
      if (Either.isLeft(ref)) continue
      const exists = yield* st.libpod.imageExists(localReference(ref.right)).pipe(
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`readiness: ${e.message}`), false))
      )
      if (exists) return true
    }
    return false
  }).pipe(Effect.withSpan("Images.readiness"))

/** The ids of the images GC keeps: those of configured references and of those used recently. */
const keptIds = (st: ImagesState) =>
  Effect.gen(function* () {
    const now = Date.now()
    const keepRefs = [...st.configured, ...[...st.lastUsed].filter(([, t]) => now - t < st.keepRecent).map(([r]) => r)]
    const keepIds = new Set<string>()
    for (const image of keepRefs) {
      const ref = parseImageReference(image)
      if (Either.isLeft(ref)) continue
      const found = yield* inspectLocal(st, localReference(ref.right), image).pipe(Effect.orElseSucceed(() => Option.none()))
      if (Option.isSome(found)) keepIds.add(found.value.Id)
    }
    return keepIds
  })

/** What one GC collects into. */
interface GcRun {
  readonly keepIds: ReadonlySet<string>
  readonly removed: Array<string>
  readonly kept: Array<string>
}

/** Removes an image by name; in use by a container, or already gone: never forced (force would remove containers). */
const gcRemove = (st: ImagesState, name: string) =>
  st.libpod.imageRemove(name).pipe(
    Effect.as(true),
    Effect.catchAll((e) => Effect.as(Effect.logInfo(`gc keeps ${name}: ${e.message}`), e.status === 404))
  )

/** GC of the images carrying our label. */
const collectLabelled = (st: ImagesState, run: GcRun) =>
  Effect.gen(function* () {
    const labelled = yield* st.libpod.imageList({ label: [st.ownedLabel] }).pipe(
      Effect.catchAll((e) => Effect.as(Effect.logWarning(`gc cannot list images: ${e.message}`), []))
    )
    for (const img of labelled) {
      if (run.keepIds.has(img.Id)) {
        run.kept.push(...(img.RepoTags ?? [img.Id]))
        continue
      }
      const names = (img.RepoTags ?? []).filter((t) => !t.startsWith("<none>"))
      for (const name of names.length > 0 ? names : [img.Id]) {
        if (yield* gcRemove(st, name)) run.removed.push(name)
        else run.kept.push(name)
      }
    }
  })

/** GC of the images we pulled. */
const collectPulled = (st: ImagesState, run: GcRun) =>
  Effect.gen(function* () {
    for (const record of [...st.pulled.values()]) {
      if (run.keepIds.has(record.id)) {
        run.kept.push(record.reference)
        continue
      }
      const current = yield* inspectLocal(st, record.reference, record.reference).pipe(Effect.orElseSucceed(() => Option.none()))
      // The tag may have moved since we pulled it: remove our name only if it still is our image,
      // and the old image by id only when nothing else names it.
      const targets: Array<string> = []
      if (Option.isSome(current) && current.value.Id === record.id) targets.push(record.reference)
      else {
        const old = yield* inspectLocal(st, record.id, record.id).pipe(Effect.orElseSucceed(() => Option.none()))
        if (Option.isSome(old) && (old.value.RepoTags ?? []).length === 0) targets.push(record.id)
      }
      let ok = true
      for (const t of targets) {
        if (yield* gcRemove(st, t)) run.removed.push(t)
        else ok = false
      }
      if (ok) st.pulled.delete(recordKey(record))
      else run.kept.push(record.reference)
    }
  })

const gc = (st: ImagesState) =>
  Effect.gen(function* () {
    const run: GcRun = { keepIds: yield* keptIds(st), removed: [], kept: [] }
    yield* collectLabelled(st, run)
    yield* collectPulled(st, run)
    yield* saveState(st)
    if (run.removed.length > 0) yield* Effect.logInfo(`image gc removed ${run.removed.join(", ")}`)
    return { removed: run.removed, kept: run.kept }
  }).pipe(Effect.withSpan("Images.gc"))

/** Builds the Images service. */
export const makeImages = Effect.fnUntraced(function* (options: ImagesOptions) {
  const st: ImagesState = {
    options,
    libpod: yield* Libpod,
    ownedLabel: options.ownedLabel ?? OWNED_IMAGE_LABEL,
    keepRecent: Duration.toMillis(options.keepRecent ?? Duration.days(1)),
    pullTimeout: Duration.decode(options.pullTimeout ?? Duration.minutes(30)),
    insecure: new Set(options.insecure_registries.map((r) => r.toLowerCase())),
    configured: configuredImages(options),
    pulled: new Map(),
    lastUsed: new Map(),
    locks: new Map()
  }
  yield* loadState(st)
  const ensureImage = ensure(st)
  return Images.of({
    ensure: ensureImage,
    forTask: forTask(st, ensureImage),
    refresh: refresh(st, ensureImage),
    gc: gc(st),
    readiness: readiness(st),
    configured: st.configured
  })
})
