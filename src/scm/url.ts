/**
 * SCM URLs as kojid's `koji.daemon.SCM` reads them (koji-protocol.md §8):
 * `scheme://[user@]host/path/to/repo?path/to/module#revision`. Pure: parsing, the `is_scm_url`
 * test `build` uses to tell an SCM source from an uploaded SRPM, the checkout commands per SCM
 * type, and the `source` recorded for the build.
 */
import { Either, Schema } from "effect"
import { BuildError, GenericError } from "../koji/faults.js"

/** kojid's SCM types. */
export const ScmType = Schema.Literal("CVS", "CVS+SSH", "GIT", "GIT+SSH", "SVN", "SVN+SSH")
/** One of kojid's SCM types. */
export type ScmType = typeof ScmType.Type

/** Schemes per type, in kojid's order (`SCM.types`). */
export const SCM_SCHEMES: ReadonlyArray<readonly [ScmType, ReadonlyArray<string>]> = [
  ["CVS", ["cvs://"]],
  ["CVS+SSH", ["cvs+ssh://"]],
  ["GIT", ["git://", "git+http://", "git+https://", "git+rsync://"]],
  ["GIT+SSH", ["git+ssh://"]],
  ["SVN", ["svn://", "svn+http://", "svn+https://"]],
  ["SVN+SSH", ["svn+ssh://"]]
]

const ALL_SCHEMES = SCM_SCHEMES.flatMap(([, s]) => s)

/** Why an SCM step failed; each maps to the fault kojid raises (see `faultFor`). */
export const ScmErrorReason = Schema.Literal(
  "invalid-url",
  "password-in-url",
  "no-user",
  "not-allowed",
  "policy-denied",
  "checkout-failed",
  "revision-not-found",
  "commit-hash",
  "no-spec",
  "multiple-specs",
  "spec-tag",
  "source-cmd-failed"
)
/** One ScmError reason. */
export type ScmErrorReason = typeof ScmErrorReason.Type

/** An SCM URL that cannot be used, is not allowed, or whose checkout or spec failed. */
export class ScmError extends Schema.TaggedError<ScmError>()("ScmError", {
  reason: ScmErrorReason,
  /** The URL with any password masked. */
  url: Schema.String,
  message: Schema.String
}) {}

/**
 * The fault kojid raises for the same situation: `GenericError` for a URL it cannot parse
 * (`SCM.__init__`, `_parse_url`) or a failed `git rev-parse` (`get_source`), `BuildError`
 * for everything else (not allowed, denied by policy, checkout, spec checks, source command).
 */
export const faultFor = (e: ScmError): GenericError | BuildError =>
  e.reason === "invalid-url" || e.reason === "password-in-url" || e.reason === "commit-hash"
    ? new GenericError({ faultString: e.message })
    : new BuildError({ faultString: e.message })

/** The faultCode `faultFor` gives each reason (for the daemon's toFault table). */
export const faultCodeFor = (reason: ScmErrorReason): 1000 | 1005 =>
  reason === "invalid-url" || reason === "password-in-url" || reason === "commit-hash" ? 1000 : 1005

/** A parsed SCM URL: kojid's `SCM` attributes. */
export interface ScmUrl {
  /** The URL as given. */
  readonly url: string
  /** With `://`, e.g. `git+https://`. */
  readonly scheme: string
  readonly scmtype: ScmType
  /** `user`, or `user:password` when passwords are allowed; null when absent. */
  readonly user: string | null
  /** The netloc after any `user@` (a port stays in it). */
  readonly host: string
  /** The normalised path, starting with `/`, without a trailing `/`. */
  readonly repository: string
  /** The query without a trailing `/`; may be empty. */
  readonly module: string
  readonly revision: string
}

/** `SCM.is_scm_url`: whether `url` starts with one of kojid's SCM schemes (how `build` tells SCM from SRPM). */
export const isScmUrl = (url: string): boolean => ALL_SCHEMES.some((s) => url.startsWith(s))

/** The URL with the password of `user:password@` replaced, for messages and logs. */
export const maskPassword = (url: string): string => url.replace(/^([a-z+]+:\/\/[^/?#@:]*:)[^/?#@]*@/, "$1***@")

const invalid = (url: string, message: string) =>
  new ScmError({ reason: "invalid-url", url: maskPassword(url), message })

/** posixpath.normpath for an absolute path. */
const normpath = (path: string): string => {
  if (path === "") return "."
  let initial = path.startsWith("/") ? 1 : 0
  if (initial === 1 && path.startsWith("//") && !path.startsWith("///")) initial = 2
  const out: Array<string> = []
  for (const comp of path.split("/")) {
    if (comp === "" || comp === ".") continue
    if (comp !== ".." || (initial === 0 && out.length === 0) || (out.length > 0 && out[out.length - 1] === "..")) out.push(comp)
    else if (out.length > 0) out.pop()
  }
  const joined = "/".repeat(initial) + out.join("/")
  return joined === "" ? "." : joined
}

const rstripSlash = (s: string): string => s.replace(/\/+$/, "")

/** posixpath.dirname. */
export const dirname = (p: string): string => {
  const i = p.lastIndexOf("/") + 1
  let head = p.slice(0, i)
  if (head !== "" && head !== "/".repeat(head.length)) head = rstripSlash(head)
  return head
}

/** posixpath.basename. */
export const basename = (p: string): string => p.slice(p.lastIndexOf("/") + 1)

/**
 * `SCM(url, allow_password)`: parses as kojid does, which hands the URL to Python's
 * `urlparse` with the scheme replaced by `http://` — so `;params` are those of the last path
 * segment, the fragment is everything after the first `#`, and tab/CR/LF are dropped.
 */
export const parseScmUrl = (url: string, options?: { readonly allowPassword?: boolean }): Either.Either<ScmUrl, ScmError> => {
  if (!isScmUrl(url)) {
    return Either.left(
      invalid(url, `Invalid scheme in scm url. Valid schemes are: ${[...ALL_SCHEMES].sort().join(" ")}`)
    )
  }
  const scheme = url.split("://")[0] + "://"
  const scmtype = SCM_SCHEMES.find(([, s]) => s.includes(scheme))?.[0]
  if (scmtype === undefined) return Either.left(invalid(url, `Invalid SCM URL: ${maskPassword(url)}`))
  // urlsplit removes these bytes anywhere in the URL before parsing.
  const rest = url.slice(scheme.length).replace(/[\t\r\n]/g, "")
  let end = rest.length
  for (const c of ["/", "?", "#"]) {
    const at = rest.indexOf(c)
    if (at >= 0) end = Math.min(end, at)
  }
  const netloc = rest.slice(0, end)
  let tail = rest.slice(end)
  if (netloc.includes("[") !== netloc.includes("]")) return Either.left(invalid(url, `Invalid IPv6 URL: ${maskPassword(url)}`))
  let fragment = ""
  const hash = tail.indexOf("#")
  if (hash >= 0) {
    fragment = tail.slice(hash + 1)
    tail = tail.slice(0, hash)
  }
  let query = ""
  const q = tail.indexOf("?")
  if (q >= 0) {
    query = tail.slice(q + 1)
    tail = tail.slice(0, q)
  }
  let path = tail
  let params = ""
  const semi = path.includes("/") ? path.indexOf(";", path.lastIndexOf("/")) : path.indexOf(";")
  if (semi >= 0) {
    params = path.slice(semi + 1)
    path = path.slice(0, semi)
  }

  const userhost = netloc.split("@")
  if (userhost.length > 2) return Either.left(invalid(url, `Invalid username@hostname specified: ${maskPassword(url)}`))
  let user: string | null = null
  let password: string | null = null
  if (userhost.length === 2) {
    const info = userhost[0]!
    const colon = info.indexOf(":")
    const name = colon >= 0 ? info.slice(0, colon) : info
    const pass = colon >= 0 ? info.slice(colon + 1) : ""
    if (name !== "") user = name
    if (pass !== "") password = pass
  }
  if (password !== null && options?.allowPassword !== true) {
    return Either.left(
      new ScmError({
        reason: "password-in-url",
        url: maskPassword(url),
        message:
          `username:password format not supported: ${user ?? "None"}:*** ` +
          `(put credentials in scm_credentials_dir instead of the SCM URL)`
      })
    )
  }
  const host = userhost[userhost.length - 1]!

  if (path === "") {
    return Either.left(invalid(url, `Unable to parse SCM URL: ${maskPassword(url)} . Could not find the path element.`))
  }
  path = rstripSlash(normpath(path))
  query = rstripSlash(query)
  if (path.startsWith("//")) path = "/" + path.replace(/^\/+|\/+$/g, "")
  if (!path.startsWith("/")) {
    return Either.left(invalid(url, `Invalid SCM URL. Path should begin with /: ${maskPassword(url)} (the repository path is empty)`))
  }
  if (params !== "") {
    return Either.left(
      invalid(url, `Unable to parse SCM URL: ${maskPassword(url)} . Params element ${params} should be empty.`)
    )
  }
  if (fragment === "") {
    return Either.left(
      invalid(
        url,
        `Unable to parse SCM URL: ${maskPassword(url)} . Could not find the fragment element ` +
          `(add #<commit, tag or branch> to the URL).`
      )
    )
  }
  return Either.right({
    url,
    scheme,
    scmtype,
    user: password !== null ? `${user ?? "None"}:${password}` : user,
    host,
    repository: path,
    module: query,
    revision: fragment
  })
}

/** `SCM.get_info()`: the attributes kojid hands to callbacks and to the build_from_scm policy. */
export const scmInfo = (scm: ScmUrl) => ({
  url: scm.url,
  scheme: scm.scheme,
  user: scm.user,
  host: scm.host,
  repository: scm.repository,
  module: scm.module,
  revision: scm.revision,
  scmtype: scm.scmtype
})

// ---------------------------------------------------------------------------------------------
// Checkout commands (`SCM.checkout`)

/** One command of a checkout, with its working directory (an absolute path under scmdir). */
export interface ScmCommand {
  readonly argv: ReadonlyArray<string>
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}

/** What `SCM.checkout` runs in `scmdir`, with kojid's fallback for git revisions `fetch` cannot name. */
export interface CheckoutPlan {
  readonly scmtype: ScmType
  readonly scmdir: string
  readonly checkout: ScmCommand
  /** Run after `checkout` (git: fetch + reset); when one fails, `recovery` is run instead. */
  readonly update: ReadonlyArray<ScmCommand>
  readonly recovery: ScmCommand | null
  /** Run when use_common is on. */
  readonly common: ScmCommand
  /** After `common`: kojid makes `<sourcedir>/../common` a symlink to scmdir's `common` unless it exists. */
  readonly commonLink: { readonly path: string; readonly target: string }
  /** Where the module is (absolute, never outside scmdir). */
  readonly sourcedir: string
  /** `sourcedir` relative to scmdir ("" = scmdir). */
  readonly sourcedirRelative: string
  /** The git work tree (for `git rev-parse HEAD`); null for CVS/SVN. */
  readonly gitdir: string | null
}

const noUser = (scm: ScmUrl) =>
  new ScmError({
    reason: "no-user",
    url: maskPassword(scm.url),
    message: `No user specified for repository access scheme: ${scm.scheme}`
  })

const joinRel = (...parts: ReadonlyArray<string>): string => parts.filter((p) => p !== "").join("/")

/** Whether a relative path stays inside its base once `..` are resolved. */
const staysInside = (rel: string): boolean => {
  let depth = 0
  for (const comp of rel.split("/")) {
    if (comp === "" || comp === ".") continue
    depth += comp === ".." ? -1 : 1
    if (depth < 0) return false
  }
  return true
}

const moduleEscapes = (scm: ScmUrl) =>
  invalid(scm.url, `Invalid SCM URL: ${maskPassword(scm.url)} . The module ${scm.module} leaves the checkout directory.`)

/** `git+https://` → `https://` (kojid: `scheme.split('+')[1]`). */
const schemeWithoutPrefix = (scheme: string): string => (scheme.includes("+") ? scheme.split("+")[1]! : scheme)

/**
 * The commands `SCM.checkout(scmdir)` runs for this URL, as kojid builds them. kojid's module
 * may climb out of the checkout with `..`; here a module that leaves scmdir is refused (the
 * tree is read on the host afterwards).
 */
export const checkoutPlan = (scm: ScmUrl, scmdir: string): Either.Either<CheckoutPlan, ScmError> => {
  const rev = scm.revision
  const abs = (rel: string) => (rel === "" ? scmdir : `${scmdir}/${rel}`)
  const finish = (
    rel: string,
    parts: Omit<CheckoutPlan, "scmtype" | "scmdir" | "sourcedir" | "sourcedirRelative" | "commonLink">
  ): Either.Either<CheckoutPlan, ScmError> => {
    if (!staysInside(rel)) return Either.left(moduleEscapes(scm))
    const sourcedir = abs(rel)
    const parent = dirname(rel)
    return Either.right({
      scmtype: scm.scmtype,
      scmdir,
      sourcedir,
      sourcedirRelative: rel,
      commonLink: { path: `${sourcedir}/../common`, target: "../".repeat(parent.split("/").length) + "common" },
      ...parts
    })
  }
  switch (scm.scmtype) {
    case "CVS":
    case "CVS+SSH": {
      if (scm.scmtype === "CVS+SSH" && scm.user === null) return Either.left(noUser(scm))
      const root =
        scm.scmtype === "CVS"
          ? `:pserver:${scm.user ?? "anonymous"}@${scm.host}:${scm.repository}`
          : `:ext:${scm.user}@${scm.host}:${scm.repository}`
      const env = scm.scmtype === "CVS+SSH" ? { env: { CVS_RSH: "ssh" } } : {}
      return finish(scm.module, {
        checkout: { argv: ["cvs", "-d", root, "checkout", "-r", rev, scm.module], cwd: scmdir, ...env },
        update: [],
        recovery: null,
        common: { argv: ["cvs", "-d", root, "checkout", "common"], cwd: scmdir, ...env },
        gitdir: null
      })
    }
    case "SVN":
    case "SVN+SSH": {
      if (scm.scmtype === "SVN+SSH" && scm.user === null) return Either.left(noUser(scm))
      const server =
        scm.scmtype === "SVN"
          ? `${schemeWithoutPrefix(scm.scheme)}${scm.host}${scm.repository}`
          : `svn+ssh://${scm.user}@${scm.host}${scm.repository}`
      return finish(scm.module, {
        checkout: { argv: ["svn", "checkout", "-r", rev, `${server}/${scm.module}`, scm.module], cwd: scmdir },
        update: [],
        recovery: null,
        common: { argv: ["svn", "checkout", `${server}/common`], cwd: scmdir },
        gitdir: null
      })
    }
    case "GIT":
    case "GIT+SSH": {
      if (scm.scmtype === "GIT+SSH" && scm.user === null) return Either.left(noUser(scm))
      const gitrepo =
        scm.scmtype === "GIT"
          ? `${schemeWithoutPrefix(scm.scheme)}${scm.user === null ? "" : `${scm.user}@`}${scm.host}${scm.repository}`
          : `git+ssh://${scm.user}@${scm.host}${scm.repository}`
      let checkoutPath = basename(scm.repository)
      let commonrepo = dirname(gitrepo) + "/common"
      if (scm.repository.endsWith("/.git")) {
        checkoutPath = basename(scm.repository.slice(0, -5))
        commonrepo = dirname(gitrepo.slice(0, -5)) + "/common/.git"
      } else if (scm.repository.endsWith(".git")) {
        checkoutPath = basename(scm.repository.slice(0, -4))
        commonrepo = dirname(gitrepo.slice(0, -4)) + "/common.git"
      }
      if (checkoutPath === "") {
        return Either.left(
          invalid(scm.url, `Invalid SCM URL: ${maskPassword(scm.url)} . Cannot name a checkout directory after the repository ${scm.repository}`)
        )
      }
      // git reset accepts origin/x, git fetch wants the bare ref (kojid strips the prefix too).
      const fetchRev = rev.startsWith("origin/") ? rev.slice(7) : rev
      const workTree = abs(checkoutPath)
      return finish(joinRel(checkoutPath, scm.module), {
        checkout: { argv: ["git", "clone", "-n", gitrepo, workTree], cwd: scmdir },
        update: [
          { argv: ["git", "fetch", "origin", `${fetchRev}:KOJI_FETCH_HEAD`], cwd: workTree },
          { argv: ["git", "reset", "--hard", "KOJI_FETCH_HEAD"], cwd: workTree }
        ],
        recovery: { argv: ["git", "reset", "--hard", rev], cwd: workTree },
        common: { argv: ["git", "clone", commonrepo, "common"], cwd: scmdir },
        gitdir: workTree
      })
    }
  }
}

/**
 * `SCM.get_source()`: for git, the URL without the user and with the commit hash as fragment
 * (`source` of the build); for other SCMs the URL as given.
 */
export const sourceUrl = (scm: ScmUrl, commit: string | null): string => {
  if (!scm.scmtype.startsWith("GIT") || commit === null) return scm.url
  const scheme = scm.scheme.slice(0, -3)
  const authority = scm.host === "" ? "" : `//${scm.host}`
  return `${scheme}:${authority}${scm.repository}${scm.module === "" ? "" : `?${scm.module}`}${commit === "" ? "" : `#${commit}`}`
}
