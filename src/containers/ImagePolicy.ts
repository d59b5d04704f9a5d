/**
 * Which bootstrap image serves a task (DESIGN.md §5). Pure: the inputs are the config's
 * `bootstrap_image` and `image_rules`, kojid's `mock_bootstrap_image` switch, and the build
 * tag's name, arch and `extra`.
 *
 * Order: the tag extra `mock.bootstrap_image` (only when `mock_bootstrap_image` is on, as kojid
 * does, koji-protocol.md §5.3), then the first `image_rules` line whose tag glob and arch glob
 * match, then `bootstrap_image`.
 */
import type { ImageRule } from "../config/AdjutantConfig.js"

/** The part of the config that decides images. */
export interface ImagePolicyConfig {
  readonly bootstrap_image: string
  readonly image_rules: ReadonlyArray<ImageRule>
  /** kojid's `mock_bootstrap_image`: honour the tag extra `mock.bootstrap_image`. */
  readonly mock_bootstrap_image: boolean
}

/** What a task offers to the policy. */
export interface ImageRequest {
  /** The build tag's name; null when the task has none (e.g. a plain SCM checkout). */
  readonly tag: string | null
  readonly arch: string
  /** The build tag's `extra` map as the hub returned it. */
  readonly tagExtra?: Readonly<Record<string, unknown>> | null | undefined
}

/** The chosen image and why. */
export type ImageChoice =
  | { readonly image: string; readonly source: "tag-extra" }
  | { readonly image: string; readonly source: "rule"; readonly rule: ImageRule; readonly index: number }
  | { readonly image: string; readonly source: "default" }

/** The tag extra key kojid passes to mock as `bootstrap_image`. */
export const TAG_EXTRA_BOOTSTRAP_IMAGE = "mock.bootstrap_image"

const regexCache = new Map<string, RegExp>()

const escapeRegex = (s: string): string => s.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&")

const globToRegex = (glob: string): RegExp => {
  const cached = regexCache.get(glob)
  if (cached !== undefined) return cached
  let out = ""
  let i = 0
  while (i < glob.length) {
    const c = glob.charAt(i++)
    if (c === "*") out += "[\\s\\S]*"
    else if (c === "?") out += "[\\s\\S]"
    else if (c === "[") {
      // Python's fnmatch: "[!...]" negates, a leading "]" is literal, an unclosed "[" is literal.
      let j = i
      if (glob.charAt(j) === "!") j++
      if (glob.charAt(j) === "]") j++
      while (j < glob.length && glob.charAt(j) !== "]") j++
      if (j >= glob.length) out += "\\["
      else {
        let body = glob.slice(i, j)
        i = j + 1
        const negate = body.startsWith("!")
        if (negate) body = body.slice(1)
        const cls = body.replace(/\\/g, "\\\\").replace(/\^/g, "\\^").replace(/\[/g, "\\[").replace(/]/g, "\\]")
        out += negate ? `[^${cls}]` : `[${cls}]`
      }
    } else out += escapeRegex(c)
  }
  const re = new RegExp(`^${out}$`)
  regexCache.set(glob, re)
  return re
}

/** Python `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`; `*` also matches `/`. */
export const globMatch = (glob: string, value: string): boolean => globToRegex(glob).test(value)

/** The image that serves a task, with the reason it was chosen. */
export const selectImage = (config: ImagePolicyConfig, request: ImageRequest): ImageChoice => {
  if (config.mock_bootstrap_image) {
    const extra = request.tagExtra?.[TAG_EXTRA_BOOTSTRAP_IMAGE]
    if (typeof extra === "string" && extra.trim() !== "") return { image: extra.trim(), source: "tag-extra" }
  }
  if (request.tag !== null) {
    const tag = request.tag
    const index = config.image_rules.findIndex(
      (rule) => globMatch(rule.tag, tag) && (rule.arch === null || globMatch(rule.arch, request.arch))
    )
    const rule = config.image_rules[index]
    if (rule !== undefined) return { image: rule.image, source: "rule", rule, index }
  }
  return { image: config.bootstrap_image, source: "default" }
}

/** Every image the config names (default first, then rule images), without duplicates. */
export const configuredImages = (config: Pick<ImagePolicyConfig, "bootstrap_image" | "image_rules">): ReadonlyArray<string> => [
  ...new Set([config.bootstrap_image, ...config.image_rules.map((r) => r.image)])
]
