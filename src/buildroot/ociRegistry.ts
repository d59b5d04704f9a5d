/**
 * A small client of the OCI distribution API (registry HTTP API v2) for buildroot images: read a
 * manifest and check its digest against what the registry says for the reference, read blobs,
 * upload blobs and manifests, delete manifests. Credentials come from a containers auth file
 * (`[adjutant] registry_auth_file`), answered to Basic and Bearer (token) challenges as podman
 * does; TLS is verified against the system CAs plus `/etc/containers/certs.d/<registry>/*.crt`,
 * unless the registry is in `insecure_registries`, which also allows plain HTTP (podman's
 * meaning). Podman is not asked: its pull writes a layer twice and decompresses gzip slowly, and
 * the daemon in a container cannot see podman's storage anyway (see README "A fleet of builders").
 */
import { Effect, Schema, type Scope } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import * as path from "node:path"
import type { Readable } from "node:stream"
import * as tls from "node:tls"
import { registryCredentials, type RegistryCredentials } from "../containers/Images.js"

/** Why a registry operation failed. */
export const RegistryErrorReason = Schema.Literal("Unreachable", "Tls", "Auth", "Protocol", "Refused", "Timeout")

/** A registry operation failed; `message` names the registry, the operation and what to do. */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  reason: RegistryErrorReason,
  message: Schema.String
}) {}

/** How to reach one registry. */
export interface RegistryOptions {
  /** `host[:port]`. */
  readonly registry: string
  /** A containers auth file; "" = anonymous. */
  readonly authFile: string
  /** TLS verification off, plain HTTP allowed (`insecure_registries`). */
  readonly insecure: boolean
  /** Bound of one request without progress (default 60 s). */
  readonly idleTimeoutMs?: number
  /** Where the CA certificates of registries live (default /etc/containers/certs.d). */
  readonly certsDir?: string
}

/** A manifest as the registry served it, its digest checked. */
export interface FetchedManifest {
  readonly bytes: Buffer
  /** sha256 of `bytes`, equal to the registry's Docker-Content-Digest. */
  readonly digest: string
  readonly mediaType: string
}

/** The manifest media types of OCI and Docker v2 images. */
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

/** `sha256:<hex>` of some bytes. */
export const sha256Digest = (bytes: Buffer | string): string => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

type Body = Buffer | (() => Readable)

interface Sent {
  readonly res: http.IncomingMessage
  readonly url: URL
}

const DIGEST = /^sha256:[a-f0-9]{64}$/

const parseChallenge = (header: string | undefined): { readonly scheme: string; readonly params: Readonly<Record<string, string>> } | undefined => {
  if (header === undefined) return undefined
  const sp = header.indexOf(" ")
  const scheme = (sp < 0 ? header : header.slice(0, sp)).toLowerCase()
  const params: Record<string, string> = {}
  for (const m of header.slice(sp + 1).matchAll(/([A-Za-z_]+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!
  return { scheme, params }
}

const readAll = (res: http.IncomingMessage, max: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let n = 0
    res.on("data", (b: Buffer) => {
      n += b.length
      if (n > max) {
        res.destroy()
        reject(new Error(`response larger than ${max} bytes`))
      } else chunks.push(b)
    })
    res.once("end", () => resolve(Buffer.concat(chunks)))
    res.once("error", reject)
  })

/** One registry's connection state: agents, the scheme that works, tokens per scope, credentials. */
interface Registry {
  readonly options: RegistryOptions
  /** Bound of one request without progress (ms). */
  readonly idle: number
  readonly certsDir: string
  readonly httpsAgent: https.Agent
  readonly httpAgent: http.Agent
  /** Falls back to http once for an insecure registry that speaks no TLS. */
  scheme: "https" | "http"
  readonly tokens: Map<string, string>
  /** null: not read yet; undefined: anonymous. */
  credentials: RegistryCredentials | undefined | null
}

const openRegistry = (options: RegistryOptions): Registry => {
  const certsDir = path.join(options.certsDir ?? "/etc/containers/certs.d", options.registry)
  const extraCas = (() => {
    try {
      return fs.readdirSync(certsDir).filter((f) => f.endsWith(".crt")).map((f) => fs.readFileSync(path.join(certsDir, f), "utf8"))
    } catch {
      return []
    }
  })()
  const httpsAgent = new https.Agent({
    keepAlive: true,
    rejectUnauthorized: !options.insecure,
    ...(extraCas.length === 0 ? {} : { ca: [...tls.rootCertificates, ...extraCas] })
  })
  return {
    options, idle: options.idleTimeoutMs ?? 60_000, certsDir, httpsAgent, httpAgent: new http.Agent({ keepAlive: true }),
    scheme: "https", tokens: new Map(), credentials: null
  }
}

const fail = (r: Registry, reason: typeof RegistryErrorReason.Type, what: string) =>
  new RegistryError({ reason, message: `registry ${r.options.registry}: ${what}` })

/** An error the caller reports as refused credentials (RegistryError Auth). */
const authError = (text: string) => Object.assign(new Error(text), { auth: true })

const loadCredentials = (r: Registry): Promise<RegistryCredentials | undefined> => {
  if (r.credentials !== null) return Promise.resolve(r.credentials)
  if (r.options.authFile === "") return Promise.resolve((r.credentials = undefined))
  return fs.promises.readFile(r.options.authFile, "utf8").then((text) => {
    const found = registryCredentials(text, r.options.registry)
    if (found._tag === "Left") throw new Error(`registry_auth_file ${r.options.authFile} ${found.left}`)
    return (r.credentials = found.right)
  })
}

const send = (r: Registry, method: string, url: URL, headers: Record<string, string>, body: Body | undefined): Promise<http.IncomingMessage> =>
  new Promise((resolve, reject) => {
    const mod = url.protocol === "http:" ? http : https
    const req = mod.request(url, { method, headers, agent: url.protocol === "http:" ? r.httpAgent : r.httpsAgent, timeout: r.idle })
    req.once("response", resolve)
    req.once("error", reject)
    req.once("timeout", () => req.destroy(new Error(`no answer for ${r.idle / 1000} s`)))
    if (body === undefined) req.end()
    else if (Buffer.isBuffer(body)) req.end(body)
    else {
      const src = body()
      src.once("error", (e) => req.destroy(e))
      src.pipe(req)
    }
  })

const classify = (r: Registry, e: unknown, what: string): RegistryError => {
  const text = e instanceof Error ? e.message : String(e)
  const code = typeof e === "object" && e !== null && "code" in e ? String(e.code) : ""
  if (/certificate|self.signed|CERT_|unable to verify/i.test(text + code)) {
    return fail(r, "Tls", `${what}: TLS verification failed (${text}); put the registry's CA in ${r.certsDir}/ca.crt or list ${r.options.registry} in insecure_registries`)
  }
  if (/timeout|no answer/i.test(text)) return fail(r, "Timeout", `${what}: ${text}`)
  return fail(r, "Unreachable", `${what}: ${text}`)
}

/** True for the errors of speaking TLS to a plain HTTP server. */
const plainHttpServer = (e: unknown): boolean =>
  /wrong version number|EPROTO|packet length too long|ECONNRESET/i.test(`${e instanceof Error ? e.message : ""} ${typeof e === "object" && e !== null && "code" in e ? String(e.code) : ""}`)

/** One request with the scheme fallback and redirects (Authorization only to the registry itself). */
const exchange = async (r: Registry, method: string, target: string, headers: Record<string, string>, body: Body | undefined): Promise<Sent> => {
  let url = new URL(target.startsWith("http") ? target : `${r.scheme}://${r.options.registry}${target}`)
  for (let hop = 0; hop < 6; hop++) {
    const own = url.host === r.options.registry
    const h = own ? headers : Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== "authorization"))
    let res: http.IncomingMessage
    try {
      res = await send(r, method, url, h, body)
    } catch (e) {
      if (own && url.protocol === "https:" && r.options.insecure && plainHttpServer(e)) {
        r.scheme = "http"
        url = new URL(url.href.replace(/^https:/, "http:"))
        continue
      }
      throw e
    }
    const location = res.headers.location
    if ((method === "GET" || method === "HEAD") && [301, 302, 303, 307, 308].includes(res.statusCode ?? 0) && location !== undefined) {
      res.resume()
      url = new URL(location, url)
      continue
    }
    return { res, url }
  }
  throw new Error("too many redirects")
}

const basicAuth = (creds: RegistryCredentials) => `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`

/** A bearer token for `scope` from the challenge's realm. */
const fetchToken = async (r: Registry, params: Readonly<Record<string, string>>, scope: string, creds: RegistryCredentials | undefined): Promise<string> => {
  const realm = params["realm"]
  if (realm === undefined) throw new Error("a Bearer challenge without realm")
  const u = new URL(realm)
  if (params["service"] !== undefined) u.searchParams.set("service", params["service"])
  u.searchParams.set("scope", scope)
  const headers: Record<string, string> = creds === undefined ? {} : { authorization: basicAuth(creds) }
  const { res } = await exchange(r, "GET", u.href, headers, undefined)
  const text = (await readAll(res, 1024 * 1024)).toString("utf8")
  if ((res.statusCode ?? 0) >= 300) throw authError(`token service answered ${res.statusCode}`)
  const json = JSON.parse(text) as { token?: string; access_token?: string }
  const token = json.token ?? json.access_token
  if (token === undefined) throw new Error("the token service gave no token")
  return token
}

/** The Authorization a 401's challenge asks for `scope`. */
const answerChallenge = async (r: Registry, header: string | undefined, scope: string): Promise<string> => {
  const challenge = parseChallenge(header)
  const creds = await loadCredentials(r)
  if (challenge?.scheme === "basic") {
    if (creds === undefined) throw authError(`needs credentials: add ${r.options.registry} to registry_auth_file`)
    return basicAuth(creds)
  }
  if (challenge?.scheme === "bearer") return `Bearer ${await fetchToken(r, challenge.params, scope, creds)}`
  throw authError(`refused the request (401) without a usable challenge`)
}

/**
 * A request to the registry, authenticated as its challenge asks (once per scope, then cached).
 * Resolves with the response whatever its status (the caller decides).
 */
const call = (r: Registry, method: string, target: string, scope: string, headers: Record<string, string>, body?: Body) =>
  Effect.tryPromise({
    try: async (): Promise<Sent> => {
      const cached = r.tokens.get(scope)
      const first = await exchange(r, method, target, { ...headers, ...(cached === undefined ? {} : { authorization: cached }) }, body)
      if (first.res.statusCode !== 401) return first
      first.res.resume()
      const authorization = await answerChallenge(r, first.res.headers["www-authenticate"], scope)
      r.tokens.set(scope, authorization)
      const again = await exchange(r, method, target, { ...headers, authorization }, body)
      if (again.res.statusCode === 401 || again.res.statusCode === 403) {
        again.res.resume()
        throw authError(`refused the credentials of registry_auth_file for ${scope}`)
      }
      return again
    },
    catch: (e) =>
      typeof e === "object" && e !== null && "auth" in e ? fail(r, "Auth", `${method} ${target}: ${e instanceof Error ? e.message : String(e)}`) : classify(r, e, `${method} ${target}`)
  })

const readBody = (r: Registry, sent: Sent, max: number, what: string) =>
  Effect.tryPromise({ try: () => readAll(sent.res, max), catch: (e) => classify(r, e, what) })

const unexpected = (r: Registry, sent: Sent, what: string) =>
  Effect.flatMap(readBody(r, sent, 64 * 1024, what), (text) =>
    Effect.fail(
      sent.res.statusCode === 403
        ? fail(r, "Auth", `${what}: forbidden (403): the credentials may not do this`)
        : fail(r, "Protocol", `${what}: HTTP ${sent.res.statusCode}: ${text.toString("utf8").slice(0, 300)}`)
    ))

const pullScope = (repo: string) => `repository:${repo}:pull`
const pushScope = (repo: string) => `repository:${repo}:pull,push`

/** The manifest at `reference` (tag or digest), undefined when there is none. */
const getManifest = (r: Registry, repo: string, reference: string, maxBytes = 4 * 1024 * 1024) =>
  Effect.gen(function*() {
    const what = `reading ${repo}:${reference}`
    const sent = yield* call(r, "GET", `/v2/${repo}/manifests/${reference}`, pullScope(repo), { accept: `${OCI_MANIFEST}, ${DOCKER_MANIFEST}` })
    if (sent.res.statusCode === 404) {
      sent.res.resume()
      return undefined
    }
    if (sent.res.statusCode !== 200) return yield* unexpected(r, sent, what)
    const said = sent.res.headers["docker-content-digest"]
    const bytes = yield* readBody(r, sent, maxBytes, what)
    const digest = sha256Digest(bytes)
    if (typeof said !== "string" || said === "") return yield* fail(r, "Refused", `${what}: the registry did not say the manifest's digest (Docker-Content-Digest)`)
    if (said !== digest) return yield* fail(r, "Refused", `${what}: the manifest's digest is ${digest}, the registry says ${said}`)
    return { bytes, digest, mediaType: String(sent.res.headers["content-type"] ?? "") } satisfies FetchedManifest
  })

/** A small blob, checked against its digest. */
const getBlob = (r: Registry, repo: string, digest: string, maxBytes: number) =>
  Effect.gen(function*() {
    if (!DIGEST.test(digest)) return yield* fail(r, "Refused", `blob digest ${JSON.stringify(digest)} is not sha256`)
    const what = `reading blob ${digest} of ${repo}`
    const sent = yield* call(r, "GET", `/v2/${repo}/blobs/${digest}`, pullScope(repo), {})
    if (sent.res.statusCode !== 200) return yield* unexpected(r, sent, what)
    const bytes = yield* readBody(r, sent, maxBytes, what)
    if (sha256Digest(bytes) !== digest) return yield* fail(r, "Refused", `${what}: its content does not match the digest`)
    return bytes
  })

/** A blob's body as a stream (destroyed with the scope); the caller checks the digest. */
const openBlob = (r: Registry, repo: string, digest: string): Effect.Effect<http.IncomingMessage, RegistryError, Scope.Scope> =>
  Effect.gen(function*() {
    if (!DIGEST.test(digest)) return yield* fail(r, "Refused", `blob digest ${JSON.stringify(digest)} is not sha256`)
    const sent = yield* Effect.acquireRelease(call(r, "GET", `/v2/${repo}/blobs/${digest}`, pullScope(repo), {}), (s) => Effect.sync(() => s.res.destroy()))
    if (sent.res.statusCode !== 200) return yield* unexpected(r, sent, `reading blob ${digest} of ${repo}`)
    return sent.res
  })

const hasBlob = (r: Registry, repo: string, digest: string) =>
  Effect.map(call(r, "HEAD", `/v2/${repo}/blobs/${digest}`, pushScope(repo), {}), (sent) => {
    sent.res.resume()
    return sent.res.statusCode === 200
  })

/** Uploads a blob (one POST, one PUT of the whole content) unless the registry has it. */
const putBlob = (r: Registry, repo: string, digest: string, size: number, content: Body) =>
  Effect.gen(function*() {
    if (yield* hasBlob(r, repo, digest)) return
    const what = `uploading blob ${digest} to ${repo}`
    const started = yield* call(r, "POST", `/v2/${repo}/blobs/uploads/`, pushScope(repo), { "content-length": "0" }, Buffer.alloc(0))
    if (started.res.statusCode !== 202) return yield* unexpected(r, started, what)
    started.res.resume()
    const location = started.res.headers.location
    if (location === undefined) return yield* fail(r, "Protocol", `${what}: no upload location`)
    const url = new URL(location, started.url)
    url.searchParams.set("digest", digest)
    const done = yield* call(r, "PUT", url.href, pushScope(repo), { "content-type": "application/octet-stream", "content-length": String(size) }, content)
    if (done.res.statusCode !== 201) return yield* unexpected(r, done, what)
    done.res.resume()
  })

/** Stores a manifest under `tag`; its digest. */
const putManifest = (r: Registry, repo: string, tag: string, bytes: Buffer, mediaType: string) =>
  Effect.gen(function*() {
    const sent = yield* call(r, "PUT", `/v2/${repo}/manifests/${tag}`, pushScope(repo), { "content-type": mediaType, "content-length": String(bytes.length) }, bytes)
    if (sent.res.statusCode !== 201) return yield* unexpected(r, sent, `storing ${repo}:${tag}`)
    sent.res.resume()
    return sha256Digest(bytes)
  })

/** Deletes the manifest `digest` (and so every tag on it); true when it was there. */
const deleteManifest = (r: Registry, repo: string, digest: string) =>
  Effect.gen(function*() {
    const sent = yield* call(r, "DELETE", `/v2/${repo}/manifests/${digest}`, `repository:${repo}:delete,pull,push`, {})
    if (sent.res.statusCode === 404) {
      sent.res.resume()
      return false
    }
    if (sent.res.statusCode !== 202 && sent.res.statusCode !== 200) return yield* unexpected(r, sent, `deleting ${repo}@${digest}`)
    sent.res.resume()
    return true
  })

/** A client of one registry. */
export const makeRegistryClient = (options: RegistryOptions) => {
  const r = openRegistry(options)
  return {
    registry: options.registry,
    getManifest: (repo: string, reference: string, maxBytes?: number) => getManifest(r, repo, reference, maxBytes),
    getBlob: (repo: string, digest: string, maxBytes: number) => getBlob(r, repo, digest, maxBytes),
    openBlob: (repo: string, digest: string) => openBlob(r, repo, digest),
    putBlob: (repo: string, digest: string, size: number, content: Body) => putBlob(r, repo, digest, size, content),
    putManifest: (repo: string, tag: string, bytes: Buffer, mediaType: string) => putManifest(r, repo, tag, bytes, mediaType),
    deleteManifest: (repo: string, digest: string) => deleteManifest(r, repo, digest),
    close: Effect.sync(() => {
      r.httpsAgent.destroy()
      r.httpAgent.destroy()
    })
  }
}

/** A registry client. */
export type RegistryClient = ReturnType<typeof makeRegistryClient>
