/**
 * The local half of kojid's `readyForTask` (koji-protocol.md §4.3): free space on the workdir, the
 * buildroot cache and podman's storage at least `minspace` MB (kojid checks its mockdir; our
 * buildroots live in the cache, images in podman's storage and task files in the workdir), and
 * the 1-minute load average at most
 * 4 × the number of CPUs. The hub half (enabled, capacity, maxjobs) is the TaskManager's.
 * Ours besides kojid's: podman's API service must answer and at least one configured image must
 * be present, since without them no buildroot can be made (`podmanCheck`, `Images.readiness`).
 */
import { statfsSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Context, Effect, Layer, Ref } from "effect"
import { AdjutantConfig } from "../config/AdjutantConfig.js"
import { Images } from "../containers/Images.js"
import { Libpod, type PodmanError } from "../containers/Libpod.js"

/** Where podman keeps images and containers when run as root (the default of `[adjutant] podman_storage`). */
export const PODMAN_STORAGE = "/var/lib/containers/storage"

/** Options of the real check. */
export interface ReadinessOptions {
  readonly minspaceMB: number
  readonly paths: ReadonlyArray<string>
  /** More reasons not to take a task, asked after disk and load on every check. */
  readonly checks?: ReadonlyArray<Effect.Effect<ReadonlyArray<string>>> | undefined
}

/** The image check: a reason when none of the configured images is present locally. */
export const imagesCheck = (images: Images["Type"]): Effect.Effect<ReadonlyArray<string>> =>
  Effect.map(images.readiness, (usable) =>
    usable ? [] : [`No configured image is available locally (${images.configured.join(", ")}): see bootstrap_image and image_rules`]
  )

/**
 * podman's API service must answer (kojid refuses tasks while its `/mnt/koji` is unreachable; our
 * tasks need podman as kojid's need the koji volume); while it does, the configured images are
 * checked. The daemon's reaper removes what a podman outage left once it answers again.
 */
export const podmanCheck = (ping: Effect.Effect<void, PodmanError>, images: Images["Type"] | undefined): Effect.Effect<ReadonlyArray<string>> =>
  Effect.matchEffect(ping, {
    onFailure: (e) => Effect.succeed([`podman does not answer: ${e.message}`]),
    onSuccess: () => (images === undefined ? Effect.succeed([]) : imagesCheck(images))
  })

/** Free MB on the file system holding `p` (its nearest existing ancestor). */
export const freeMB = (p: string): number => {
  let dir = path.resolve(p)
  for (;;) {
    try {
      const st = statfsSync(dir)
      return Math.floor((Number(st.bavail) * Number(st.bsize)) / 1024 / 1024)
    } catch (e) {
      const parent = path.dirname(dir)
      if (parent === dir) throw e
      dir = parent
    }
  }
}

/** Size in MB of the file system holding `p` (its nearest existing ancestor). */
const sizeMB = (p: string): number => {
  let dir = path.resolve(p)
  for (;;) {
    try {
      const st = statfsSync(dir)
      return Math.floor((Number(st.blocks) * Number(st.bsize)) / 1024 / 1024)
    } catch (e) {
      const parent = path.dirname(dir)
      if (parent === dir) throw e
      dir = parent
    }
  }
}

/**
 * For a failed task's fault: the daemon's file systems (workdir, buildroot cache) that are (nearly)
 * full — under `minspaceMB` or 2 % of their size free — named with what is left, since a full disk
 * fails a task with messages that seldom say so (dnf's metadata errors, an rpmbuild I/O error).
 * Empty when none is, or when the fault already says "no space left".
 */
export const fullDiskNote = (paths: ReadonlyArray<string>, minspaceMB: number, faultString: string): string => {
  if (/no space left/i.test(faultString)) return ""
  const full = [...new Set(paths)].flatMap((p) => {
    try {
      const free = freeMB(p)
      return free < Math.max(minspaceMB, sizeMB(p) * 0.02) ? [`${p} (${free} MB free)`] : []
    } catch {
      return []
    }
  })
  return full.length === 0 ? "" : `\n(no space left on the file system of ${full.join(", ")}: the likely cause of this failure)`
}

/** Why this machine cannot take a task now; empty when it can. */
export class Readiness extends Context.Tag("Readiness")<
  Readiness,
  { readonly check: Effect.Effect<ReadonlyArray<string>> }
>() {
  /** Disk space and load average, measured on each call, then `options.checks`. */
  static layer(options: ReadinessOptions): Layer.Layer<Readiness> {
    const local = Effect.sync(() => {
      const reasons: Array<string> = []
      for (const p of options.paths) {
        try {
          const mb = freeMB(p)
          if (mb < options.minspaceMB) {
            reasons.push(`Insufficient disk space at ${p}: ${mb} MB, ${options.minspaceMB} MB required`)
          }
        } catch (e) {
          reasons.push(`Cannot check free space at ${p}: ${String(e)}`)
        }
      }
      const load = os.loadavg()[0] ?? 0
      const maxload = 4.0 * os.availableParallelism()
      if (load > maxload) reasons.push(`Load average ${load.toFixed(2)} > ${maxload.toFixed(2)}`)
      return reasons
    })
    return Layer.succeed(Readiness, {
      check: Effect.map(Effect.all([local, ...(options.checks ?? [])]), (lists) => lists.flat())
    })
  }

  /**
   * From kojid.conf: `minspace` on `workdir`, on `[adjutant] buildroot_cache_dir` (our mockdir, where
   * kojid checks) and on `[adjutant] podman_storage`; podman answering; a usable configured image.
   */
  static layerConfig: Layer.Layer<Readiness, never, AdjutantConfig | Images | Libpod> = Layer.unwrapEffect(
    Effect.gen(function*() {
      const config = yield* AdjutantConfig
      const images = yield* Images
      const libpod = yield* Libpod
      return Readiness.layer({
        minspaceMB: config.kojid.minspace,
        paths: [...new Set([config.kojid.workdir, config.adjutant.buildroot_cache_dir, config.adjutant.podman_storage])],
        checks: [podmanCheck(libpod.ping, images)]
      })
    })
  )

  /** Reports whatever the test puts in `reasons`. */
  static layerTest(reasons: Ref.Ref<ReadonlyArray<string>>): Layer.Layer<Readiness> {
    return Layer.succeed(Readiness, { check: Ref.get(reasons) })
  }

  /** Always ready. */
  static layerAlways: Layer.Layer<Readiness> = Layer.succeed(Readiness, { check: Effect.succeed([]) })
}
