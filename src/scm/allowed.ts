/**
 * Whether an SCM URL may be built from, and with which options (koji-protocol.md §8,
 * `SCM.assert_allowed*`): the `allowed_scms` list of kojid.conf and the hub's
 * `build_from_scm` policy. Pure: the policy call itself is the caller's.
 */
import { Either } from "effect"
import { fnmatch, splitWhitespace } from "../koji/fnmatch.js"
import { maskPassword, ScmError, scmInfo, type ScmUrl } from "./url.js"

/** Options an allowing rule sets: the `common/` checkout and the source command (argv, or none). */
export interface ScmRules {
  readonly useCommon: boolean
  readonly sourceCmd: ReadonlyArray<string> | null
}

/** kojid's defaults before any rule applies: `use_common` on, `make sources`. */
export const DEFAULT_SCM_RULES: ScmRules = { useCommon: true, sourceCmd: ["make", "sources"] }

/** One `allowed_scms` entry. */
export interface AllowedScmEntry {
  readonly text: string
  readonly deny: boolean
  readonly hostPattern: string
  readonly repositoryPattern: string
  /** The third field, if present. */
  readonly useCommon?: string
  /** The fourth field, if present ("" = no source command). */
  readonly sourceCmd?: string
}

/** `allowed_scms` split as kojid splits it; entries with fewer than two `:` fields are returned apart (kojid warns and skips them). */
export const parseAllowedScms = (
  allowed: string
): { readonly entries: ReadonlyArray<AllowedScmEntry>; readonly ignored: ReadonlyArray<string> } => {
  const entries: Array<AllowedScmEntry> = []
  const ignored: Array<string> = []
  for (const text of splitWhitespace(allowed)) {
    const fields = text.split(":")
    if (fields.length < 2) {
      ignored.push(text)
      continue
    }
    const deny = fields[0]!.startsWith("!")
    entries.push({
      text,
      deny,
      hostPattern: deny ? fields[0]!.slice(1) : fields[0]!,
      repositoryPattern: fields[1]!,
      ...(fields.length >= 3 ? { useCommon: fields[2]! } : {}),
      ...(fields.length >= 4 ? { sourceCmd: fields[3]! } : {})
    })
  }
  return { entries, ignored }
}

/** The entry deciding `scm` (first match wins), or undefined when none matches. */
export const matchAllowedScms = (scm: ScmUrl, allowed: string): AllowedScmEntry | undefined =>
  parseAllowedScms(allowed).entries.find((e) => fnmatch(scm.host, e.hostPattern) && fnmatch(scm.repository, e.repositoryPattern))

/**
 * `assert_allowed_by_config`: the first entry whose host and repository globs match decides;
 * a `!` entry or no match refuses (BuildError in kojid). An allowing entry may turn
 * `use_common` off (`no|off|false|0`, any case) and set the source command (comma-separated
 * argv; an empty fourth field means none).
 */
export const allowedByConfig = (scm: ScmUrl, allowed: string, rules: ScmRules = DEFAULT_SCM_RULES): Either.Either<ScmRules, ScmError> => {
  const entry = matchAllowedScms(scm, allowed)
  if (entry === undefined || entry.deny) {
    return Either.left(
      new ScmError({
        reason: "not-allowed",
        url: maskPassword(scm.url),
        message:
          `${scm.host}:${scm.repository} is not in the list of allowed SCMs` +
          (entry === undefined ? "" : ` (refused by the allowed_scms entry ${entry.text})`)
      })
    )
  }
  const useCommon =
    entry.useCommon !== undefined && ["no", "off", "false", "0"].includes(entry.useCommon.toLowerCase()) ? false : rules.useCommon
  const sourceCmd = entry.sourceCmd === undefined ? rules.sourceCmd : entry.sourceCmd === "" ? null : entry.sourceCmd.split(",")
  return Either.right({ useCommon, sourceCmd })
}

/** A policy-data value: what kojid sends in the `build_from_scm` struct. */
export type PolicyValue = string | number | boolean | null

/**
 * The data kojid gives `evalPolicy('build_from_scm', …)`: every `get_info()` key renamed with
 * the `scm_` prefix (`scmtype` → `scm_type`), then `extra` (user_id, channel, scratch) over it.
 */
export const buildFromScmPolicyData = (
  scm: ScmUrl,
  extra: Readonly<Record<string, PolicyValue>> = {}
): Record<string, PolicyValue> => {
  const data: Record<string, PolicyValue> = {}
  for (const [k, v] of Object.entries(scmInfo(scm))) data[k.replace(/^(scm_?)?/, "scm_")] = v
  return { ...data, ...extra }
}

/**
 * `assert_allowed_by_policy` given the policy's answer: allowed when the first word is
 * `yes|true|allow|allowed` (any case); then `use_common` is on only if the next word is
 * `use_common`, the remaining words replace the source command (kept from `rules` when there
 * are none), and a source command starting with `none` means no command.
 */
export const allowedByPolicyResult = (
  scm: ScmUrl,
  action: string | null,
  rules: ScmRules = DEFAULT_SCM_RULES
): Either.Either<ScmRules, ScmError> => {
  const words = splitWhitespace(action ?? "")
  const first = words[0]
  if (first === undefined || !["yes", "true", "allow", "allowed"].includes(first.toLowerCase())) {
    const reason = words.slice(1).join(" ")
    return Either.left(
      new ScmError({
        reason: "policy-denied",
        url: maskPassword(scm.url),
        message: `SCM: ${scm.host}:${scm.repository} is not allowed, reason: ${reason === "" ? "None" : reason}`
      })
    )
  }
  const applied = words.slice(1)
  const useCommon = applied.length !== 0 && applied[0]!.toLowerCase() === "use_common"
  const rest = applied.slice(useCommon ? 1 : 0)
  let sourceCmd: ReadonlyArray<string> | null = rest.length > 0 ? rest : rules.sourceCmd
  if (sourceCmd !== null && sourceCmd.length > 0 && sourceCmd[0]!.toLowerCase() === "none") sourceCmd = null
  return Either.right({ useCommon, sourceCmd })
}

/** Which checks `assert_allowed` applies (kojid.conf `allowed_scms*`). */
export interface AllowedScmsConfig {
  readonly allowedScms: string
  readonly useConfig: boolean
  readonly usePolicy: boolean
}
