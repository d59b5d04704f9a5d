/**
 * Buildroot images (issue 15): a filled root as a one-layer OCI image in `buildroot_registry`,
 * `<namespace>/buildroot:<image key>`, labelled with what it is (repo id, tag, arch, group, the
 * rpmdb listing). The layer is the root as `tar` writes it, owners moved from the build user
 * namespace's host ids to container ids (tarIds.ts), so the image is an ordinary root file system
 * any host can use whatever its `build_userns`; zstd-compressed where the `zstd` program exists,
 * else gzip. A pull is accepted only when the manifest's digest is what the registry says for the
 * tag, every blob matches its digest, the labels are the key's, and the layer holds nothing a root
 * of ours never holds; the layer streams into the staging directory of a cache fill, which is
 * thrown away on any failure.
 */
import { Effect, Schema, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import { type Readable, Transform, type Writable } from "node:stream"
import * as zlib from "node:zlib"
import type { IdMap } from "../containers/idmap.js"
import { OCI_MANIFEST, type RegistryClient, type RegistryError } from "./ociRegistry.js"
import { packShift, tarIdShifter, TarRefused, unpackShift } from "./tarIds.js"

/** A buildroot image could not be made or was refused. */
export class RootImageError extends Schema.TaggedError<RootImageError>()("RootImageError", {
  message: Schema.String
}) {}

/** Label names of buildroot images. */
export const LABELS = {
  key: "io.koji.adjutant.buildroot.key",
  repoId: "io.koji.adjutant.buildroot.repo-id",
  tag: "io.koji.adjutant.buildroot.tag",
  arch: "io.koji.adjutant.buildroot.arch",
  group: "io.koji.adjutant.buildroot.group",
  packages: "io.koji.adjutant.buildroot.packages",
  bootstrap: "io.koji.adjutant.buildroot.bootstrap-image",
  owners: "io.koji.adjutant.buildroot.owners"
} as const

/** What a buildroot image is of: the key and what the hub and a person know it by. */
export interface RootIdentity {
  /** The image key (the tag): the cache key's inputs without the host's id map. */
  readonly key: string
  readonly repoId: number
  readonly tagName: string
  readonly brArch: string
  readonly installGroup: string
}

const CONFIG = "application/vnd.oci.image.config.v1+json"
const LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
const LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

const Descriptor = Schema.Struct({ mediaType: Schema.String, digest: Schema.String, size: Schema.Number })
const Manifest = Schema.Struct({
  schemaVersion: Schema.Literal(2),
  mediaType: Schema.optional(Schema.String),
  config: Descriptor,
  layers: Schema.Array(Descriptor)
})
const ImageConfig = Schema.Struct({
  config: Schema.optional(Schema.Struct({ Labels: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String }))) })),
  rootfs: Schema.Struct({ type: Schema.Literal("layers"), diff_ids: Schema.Array(Schema.String) })
})
const decodeManifest = Schema.decodeUnknownEither(Schema.parseJson(Manifest))
const decodeConfig = Schema.decodeUnknownEither(Schema.parseJson(ImageConfig))

/** The OCI architecture of an rpm arch. */
const ociArch = (arch: string): string =>
  ({ x86_64: "amd64", i386: "386", i586: "386", i686: "386", aarch64: "arm64", armv7hl: "arm", armhfp: "arm", ppc64le: "ppc64le", s390x: "s390x", riscv64: "riscv64" })[arch] ?? arch

const refused = (why: string) => new RootImageError({ message: why })

let zstdChecked: Promise<boolean> | undefined
/** Whether the `zstd` program runs here. */
export const zstdAvailable = (): Promise<boolean> =>
  (zstdChecked ??= new Promise((resolve) => {
    const p = spawn("zstd", ["--version"], { stdio: "ignore" })
    p.once("error", () => resolve(false))
    p.once("exit", (code) => resolve(code === 0))
  }))

/** A pass-through stream that hashes and counts what flows. */
const hashing = () => {
  const hash = createHash("sha256")
  let size = 0
  const stream = new Transform({
    transform(chunk: Buffer, _e, done) {
      hash.update(chunk)
      size += chunk.length
      done(null, chunk)
    }
  })
  return { stream, result: () => ({ digest: `sha256:${hash.digest("hex")}`, size }) }
}

/** Resolves when a child exits 0; rejects with its stderr otherwise. */
const exited = (child: ChildProcess, what: string): Promise<void> =>
  new Promise((resolve, reject) => {
    let err = ""
    child.stderr?.on("data", (b: Buffer) => void (err += b.toString()))
    child.once("error", (e) => reject(new Error(`${what}: ${e.message}`)))
    child.once("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`${what} exited with ${code ?? signal}: ${err.trim().slice(0, 500)}`))))
  })

/** The compressed layer of a root: written to `blobFile`; its digests and size. */
const packLayer = async (root: string, idmap: IdMap | null, blobFile: string, zstd: boolean) => {
  const tar = spawn("tar", ["-C", root, "--numeric-owner", "--format=gnu", "--sort=name", "--no-xattrs", "-cf", "-", "."], { stdio: ["ignore", "pipe", "pipe"] })
  const tarDone = exited(tar, "tar")
  const diff = hashing()
  const blob = hashing()
  const out = fs.createWriteStream(blobFile, { mode: 0o600 })
  if (zstd) {
    const z = spawn("zstd", ["-q", "-T0", "-3", "-c"], { stdio: ["pipe", "pipe", "pipe"] })
    await Promise.all([
      pipeline(tar.stdout!, tarIdShifter(packShift(idmap)), diff.stream, z.stdin!),
      pipeline(z.stdout!, blob.stream, out),
      exited(z, "zstd"),
      tarDone
    ])
  } else {
    await Promise.all([pipeline(tar.stdout!, tarIdShifter(packShift(idmap)), diff.stream, zlib.createGzip({ level: 1 }), blob.stream, out), tarDone])
  }
  return { diffId: diff.result().digest, ...blob.result(), mediaType: zstd ? LAYER_ZSTD : LAYER_GZIP }
}

/**
 * Packs `root` (owned by `idmap`'s host ids) and pushes it as `repository:key` with `labels`;
 * the manifest digest. `tmpDir` holds the compressed layer while it is uploaded.
 */
export const pushRoot = (
  client: RegistryClient,
  repository: string,
  root: string,
  idmap: IdMap | null,
  identity: RootIdentity,
  extra: { readonly packages: string; readonly bootstrapImage: string },
  tmpDir: string
): Effect.Effect<{ readonly digest: string; readonly bytes: number }, RootImageError | RegistryError, Scope.Scope> =>
  Effect.gen(function*() {
    const blobFile = path.join(tmpDir, `.push-${identity.key}-${randomBytes(4).toString("hex")}.blob`)
    yield* Effect.addFinalizer(() => Effect.promise(() => fsp.rm(blobFile, { force: true })))
    const zstd = yield* Effect.promise(zstdAvailable)
    const layer = yield* Effect.tryPromise({
      try: () => packLayer(root, idmap, blobFile, zstd),
      catch: (e) => refused(`packing ${root}: ${e instanceof Error ? e.message : String(e)}`)
    })
    const created = new Date().toISOString()
    const config = Buffer.from(JSON.stringify({
      created,
      architecture: ociArch(identity.brArch),
      os: "linux",
      config: {
        Labels: {
          [LABELS.key]: identity.key,
          [LABELS.repoId]: String(identity.repoId),
          [LABELS.tag]: identity.tagName,
          [LABELS.arch]: identity.brArch,
          [LABELS.group]: identity.installGroup,
          [LABELS.packages]: extra.packages,
          [LABELS.bootstrap]: extra.bootstrapImage,
          [LABELS.owners]: "container ids"
        }
      },
      rootfs: { type: "layers", diff_ids: [layer.diffId] },
      history: [{ created, created_by: `koji-adjutant: dnf install @${identity.installGroup} from repo ${identity.repoId} of ${identity.tagName} (${identity.brArch})` }]
    }))
    const configDigest = `sha256:${createHash("sha256").update(config).digest("hex")}`
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: CONFIG, digest: configDigest, size: config.length },
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }]
    }))
    yield* client.putBlob(repository, layer.digest, layer.size, () => fs.createReadStream(blobFile))
    yield* client.putBlob(repository, configDigest, config.length, config)
    const digest = yield* client.putManifest(repository, identity.key, manifest, OCI_MANIFEST)
    return { digest, bytes: layer.size }
  })

/** A root taken from the registry. */
export interface PulledRoot {
  readonly reference: string
  readonly digest: string
  /** The rpmdb listing the image's label records (to be checked against the root's rpmdb). */
  readonly packages: string
  readonly layerBytes: number
  readonly labels: Readonly<Record<string, string>>
}

/** Checks the labels of a pulled image against the key it was asked for; the first mismatch. */
export const labelMismatch = (labels: Readonly<Record<string, string>>, identity: RootIdentity): string | undefined => {
  const want: ReadonlyArray<readonly [string, string]> = [
    [LABELS.key, identity.key],
    [LABELS.repoId, String(identity.repoId)],
    [LABELS.tag, identity.tagName],
    [LABELS.arch, identity.brArch],
    [LABELS.group, identity.installGroup]
  ]
  for (const [name, value] of want) {
    if (labels[name] !== value) return `label ${name} is ${JSON.stringify(labels[name] ?? null)}, expected ${JSON.stringify(value)}`
  }
  if (typeof labels[LABELS.packages] !== "string") return `label ${LABELS.packages} is missing`
  return undefined
}

/** The decompression of a layer: where its compressed bytes go in and the tar comes out. */
const decompressor = (mediaType: string, zstd: boolean): { readonly done: Promise<void>; readonly input: Writable; readonly output: Readable } | string => {
  if (mediaType === LAYER_GZIP) {
    const gz = zlib.createGunzip()
    return { done: Promise.resolve(), input: gz, output: gz }
  }
  if (mediaType === LAYER_ZSTD) {
    if (!zstd) return "the layer is zstd-compressed and the zstd program is not installed here"
    const z = spawn("zstd", ["-q", "-d", "-c"], { stdio: ["pipe", "pipe", "pipe"] })
    return { done: exited(z, "zstd -d"), input: z.stdin!, output: z.stdout! }
  }
  return `the layer's media type ${mediaType} is not a tar of koji-adjutant's`
}

/**
 * Pulls `repository:identity.key` into `into` (a directory that must not exist yet; its parent is
 * the staging directory of a cache fill): undefined when the registry has no such image. Every
 * check failing is a RootImageError; `into` may then hold part of the root and must be discarded.
 */
export const pullRoot = (
  client: RegistryClient,
  repository: string,
  identity: RootIdentity,
  into: string,
  idmap: IdMap | null
): Effect.Effect<PulledRoot | undefined, RootImageError | RegistryError, Scope.Scope> =>
  Effect.gen(function*() {
    const reference = `${client.registry}/${repository}:${identity.key}`
    const fetched = yield* client.getManifest(repository, identity.key)
    if (fetched === undefined) return undefined
    const manifest = decodeManifest(fetched.bytes.toString("utf8"))
    if (manifest._tag === "Left") return yield* refused(`${reference}: not an image manifest: ${manifest.left.message}`)
    const m = manifest.right
    if (m.config.mediaType !== CONFIG || m.layers.length !== 1) return yield* refused(`${reference}: not a one-layer OCI image, as buildroot images are`)
    const layer = m.layers[0]!
    const configBytes = yield* client.getBlob(repository, m.config.digest, 16 * 1024 * 1024)
    const config = decodeConfig(configBytes.toString("utf8"))
    if (config._tag === "Left") return yield* refused(`${reference}: unreadable image config: ${config.left.message}`)
    const labels = config.right.config?.Labels ?? {}
    const mismatch = labelMismatch(labels, identity)
    if (mismatch !== undefined) return yield* refused(`${reference}: mislabelled: ${mismatch}`)
    if (config.right.rootfs.diff_ids.length !== 1) return yield* refused(`${reference}: the config lists ${config.right.rootfs.diff_ids.length} layers`)
    const dec = decompressor(layer.mediaType, yield* Effect.promise(zstdAvailable))
    if (typeof dec === "string") return yield* refused(`${reference}: ${dec}`)
    const body = yield* client.openBlob(repository, layer.digest)
    yield* Effect.tryPromise({ try: () => fsp.mkdir(into, { mode: 0o755 }), catch: (e) => refused(`cannot make ${into}: ${String(e)}`) })
    const blob = hashing()
    const diff = hashing()
    const tar = spawn("tar", ["-C", into, "--numeric-owner", "--same-owner", "--same-permissions", "--no-xattrs", "-xf", "-"], { stdio: ["pipe", "ignore", "pipe"] })
    yield* Effect.addFinalizer(() => Effect.sync(() => tar.kill("SIGKILL")))
    yield* Effect.tryPromise({
      try: () =>
        Promise.all([
          pipeline(body, blob.stream, dec.input),
          pipeline(dec.output, diff.stream, tarIdShifter(unpackShift(idmap)), tar.stdin!),
          dec.done,
          exited(tar, "tar -x")
        ]),
      catch: (e) => refused(`${reference}: ${e instanceof TarRefused ? "refused: " : ""}${e instanceof Error ? e.message : String(e)}`)
    })
    const got = blob.result()
    if (got.digest !== layer.digest || got.size !== layer.size) return yield* refused(`${reference}: the layer's content does not match its digest ${layer.digest}`)
    if (diff.result().digest !== config.right.rootfs.diff_ids[0]) return yield* refused(`${reference}: the uncompressed layer does not match the config's diff_id`)
    return { reference, digest: fetched.digest, packages: labels[LABELS.packages] ?? "", layerBytes: got.size, labels } satisfies PulledRoot
  })
