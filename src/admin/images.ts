/**
 * `koji-adjutant images list|pull|prune`: the bootstrap images kojid.conf names, through the
 * daemon's own Images service (the same pull policy, auth file, insecure registries and state
 * file). Safe while the daemon runs: a pull only adds, and prune never forces, so podman keeps
 * every image a container uses.
 */
import { Args, Command } from "@effect/cli"
import { Console, Effect, Either } from "effect"
import { type Config, podmanSocketPath } from "../config/AdjutantConfig.js"
import { configuredImages } from "../containers/ImagePolicy.js"
import { Images, imagesOptionsFromConfig, parseImageReference } from "../containers/Images.js"
import { Libpod } from "../containers/Libpod.js"
import { AdminError, ago, configOption, loadAdminConfig, printTable, reported } from "./common.js"

/** The daemon's image service (no background refresh) over kojid.conf's podman socket. */
const withImages = <A, E, R>(config: Config, self: Effect.Effect<A, E, R | Images | Libpod>) =>
  self.pipe(
    Effect.provide(Images.layer(imagesOptionsFromConfig(config))),
    Effect.provide(Libpod.layer({ socket: podmanSocketPath(config.adjutant) }))
  )

const megabytes = (bytes: number | undefined) => (bytes === undefined ? "-" : `${Math.round(bytes / 1024 / 1024)} MB`)

const listCommand = Command.make("list", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const rows = yield* withImages(config, Effect.gen(function*() {
      const libpod = yield* Libpod
      const out: Array<ReadonlyArray<string>> = []
      for (const image of configuredImages(imagesOptionsFromConfig(config))) {
        const ref = parseImageReference(image)
        if (Either.isLeft(ref)) {
          out.push([image, "invalid", ref.left, "", ""])
          continue
        }
        const local = ref.right.digest !== undefined ? `${ref.right.name}@${ref.right.digest}` : `${ref.right.name}:${ref.right.tag ?? "latest"}`
        const found = yield* Effect.either(libpod.imageInspect(local))
        if (Either.isLeft(found)) {
          out.push([image, found.left.status === 404 ? "missing" : `error: ${found.left.message}`, "-", "-", "-"])
          continue
        }
        const created = found.right.Created === undefined ? NaN : Date.parse(found.right.Created)
        out.push([image, found.right.Id.slice(0, 12), megabytes(found.right.Size), Number.isNaN(created) ? "-" : `${ago(Date.now() - created)} ago`, found.right.Digest ?? "-"])
      }
      return out
    }))
    yield* Console.log(`pull_policy = ${config.adjutant.pull_policy}`)
    yield* printTable(["IMAGE", "ID", "SIZE", "CREATED", "DIGEST"], rows)
  }))
).pipe(Command.withDescription("list the configured bootstrap images"))

const pullCommand = Command.make(
  "pull",
  { config: configOption, images: Args.text({ name: "IMAGE" }).pipe(Args.repeated) },
  ({ config: file, images: named }) =>
    reported(Effect.gen(function*() {
      const config = yield* loadAdminConfig(file)
      const wanted = named.length > 0 ? named : configuredImages(imagesOptionsFromConfig(config))
      const failed = yield* withImages(config, Effect.gen(function*() {
        const images = yield* Images
        let failures = 0
        for (const image of wanted) {
          const done = yield* Effect.either(images.ensure(image, { policy: "always" }))
          if (Either.isRight(done)) {
            yield* Console.log(`${image}: ${done.right.id.slice(0, 12)}${done.right.pulled ? " (pulled)" : " (local image, not pulled)"}`)
          } else {
            failures++
            yield* Effect.logError(`${image}: ${done.left.message}`)
          }
        }
        return failures
      }))
      if (failed > 0) return yield* new AdminError({ message: `${failed} of ${wanted.length} images could not be pulled` })
    }))
).pipe(Command.withDescription("pull the configured bootstrap images (or the ones named) now"))

const pruneCommand = Command.make("prune", { config: configOption }, ({ config: file }) =>
  reported(Effect.gen(function*() {
    const config = yield* loadAdminConfig(file)
    const report = yield* withImages(config, Effect.flatMap(Images, (images) => images.gc))
    for (const name of report.removed) yield* Console.log(`removed ${name}`)
    yield* Console.log(`${report.removed.length} removed, ${report.kept.length} kept`)
  }))
).pipe(Command.withDescription("remove images koji-adjutant pulled or built that no rule names"))

/** The `images` subcommand. */
export const imagesCommand = Command.make("images").pipe(
  Command.withDescription("list, pull or prune the bootstrap images"),
  Command.withSubcommands([listCommand, pullCommand, pruneCommand])
)
