import * as http from "node:http"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Context, Effect, Layer, Schema, Stream } from "effect"
import { collectOutput, demuxAll, demuxStream, type LogFrame, type Output } from "./demux.js"

/** A podman API call failed: which operation on which container or image, and why (podman's own message). */
export class PodmanError extends Schema.TaggedError<PodmanError>()("PodmanError", {
  operation: Schema.String,
  target: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Number),
  message: Schema.String,
  /** The API service did not answer: no socket, refused, or the connection dropped mid-call (it stopped or restarted). */
  unreachable: Schema.optional(Schema.Boolean)
}) {}

/** HTTP methods the libpod API uses. */
export type LibpodMethod = "GET" | "HEAD" | "POST" | "PUT" | "DELETE"

/** One call to the libpod REST API. */
export interface LibpodRequest {
  /** Names the call in errors and spans, e.g. "container.create". */
  readonly operation: string
  /** The container or image the call is about, for errors. */
  readonly target?: string | undefined
  readonly method: LibpodMethod
  /** Relative to `/v4.0.0/libpod` (e.g. "/containers/create"); a path starting with `/v<digit>` is sent as is. */
  readonly path: string
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>> | undefined
  /** A JSON body (sent as application/json). */
  readonly json?: unknown
  /** A binary body, sent with `contentType` (default application/octet-stream). */
  readonly body?: Uint8Array | undefined
  readonly contentType?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Statuses >= 400 returned to the caller instead of failing with PodmanError. */
  readonly allowStatus?: ReadonlyArray<number> | undefined
}

/** A whole response. */
export interface LibpodResponse {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: Uint8Array
}

/** `{cause, message, response}`, the body of every libpod error (podman-notes §5). */
const ApiErrorBody = Schema.Struct({
  cause: Schema.optional(Schema.String),
  message: Schema.String,
  response: Schema.optional(Schema.Number)
})

const Labels = Schema.NullishOr(Schema.Record({ key: Schema.String, value: Schema.String }))

/** Response of POST /containers/create. */
export const CreateResponse = Schema.Struct({
  Id: Schema.String,
  Warnings: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
})

/** One entry of GET /containers/json. */
export const ContainerSummary = Schema.Struct({
  Id: Schema.String,
  Names: Schema.NullishOr(Schema.Array(Schema.String)),
  State: Schema.String,
  Labels,
  Image: Schema.optional(Schema.String),
  ExitCode: Schema.optional(Schema.Number)
})
/** One entry of GET /containers/json. */
export type ContainerSummary = typeof ContainerSummary.Type

/** The parts of GET /containers/{id}/json we use. */
export const ContainerInspect = Schema.Struct({
  Id: Schema.String,
  Name: Schema.String,
  State: Schema.Struct({
    Status: Schema.String,
    Running: Schema.Boolean,
    ExitCode: Schema.Number,
    OOMKilled: Schema.optional(Schema.Boolean),
    Error: Schema.optional(Schema.String)
  }),
  Config: Schema.Struct({ Labels })
})
/** The parts of GET /containers/{id}/json we use. */
export type ContainerInspect = typeof ContainerInspect.Type

const ExecInspect = Schema.Struct({ ExitCode: Schema.Number, Running: Schema.Boolean })

/** The parts of GET /version we use. */
export const VersionInfo = Schema.Struct({
  Version: Schema.String,
  ApiVersion: Schema.String,
  MinAPIVersion: Schema.optional(Schema.String)
})
/** The parts of GET /version we use. */
export type VersionInfo = typeof VersionInfo.Type

/** The parts of GET /images/{name}/json we use. */
export const ImageInspect = Schema.Struct({
  Id: Schema.String,
  Digest: Schema.optional(Schema.String),
  RepoTags: Schema.NullishOr(Schema.Array(Schema.String)),
  RepoDigests: Schema.NullishOr(Schema.Array(Schema.String)),
  Size: Schema.optional(Schema.Number),
  Created: Schema.optional(Schema.String),
  Config: Schema.optional(
    Schema.Struct({
      Env: Schema.NullishOr(Schema.Array(Schema.String)),
      Cmd: Schema.NullishOr(Schema.Array(Schema.String)),
      User: Schema.optional(Schema.String),
      WorkingDir: Schema.optional(Schema.String),
      Labels
    })
  )
})
/** The parts of GET /images/{name}/json we use. */
export type ImageInspect = typeof ImageInspect.Type

/** One entry of GET /images/json. */
export const ImageSummary = Schema.Struct({
  Id: Schema.String,
  RepoTags: Schema.NullishOr(Schema.Array(Schema.String)),
  RepoDigests: Schema.NullishOr(Schema.Array(Schema.String)),
  Size: Schema.optional(Schema.Number),
  Created: Schema.optional(Schema.Number),
  Labels
})
/** One entry of GET /images/json. */
export type ImageSummary = typeof ImageSummary.Type

/** Exit code and output of a command run with exec. */
export interface ExecResult extends Output {
  readonly exitCode: number
}

/** Options of an exec. */
export interface ExecOptions {
  readonly user?: string | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly workDir?: string | undefined
}

/** Options of the Libpod layer. */
export interface LibpodOptions {
  /** Path of the podman API unix socket. */
  readonly socket: string
}

/** The low-level podman libpod REST client over the unix socket. */
export class Libpod extends Context.Tag("Libpod")<
  Libpod,
  {
    readonly socket: string
    /** Any call; the whole body is read. Status >= 400 fails with PodmanError unless allowed. */
    readonly request: (req: LibpodRequest) => Effect.Effect<LibpodResponse, PodmanError>
    /** Any call whose body is consumed as it arrives (pull progress, followed logs, events). */
    readonly stream: (req: LibpodRequest) => Stream.Stream<Uint8Array, PodmanError>
    readonly ping: Effect.Effect<void, PodmanError>
    readonly version: Effect.Effect<VersionInfo, PodmanError>
    readonly imageExists: (image: string) => Effect.Effect<boolean, PodmanError>
    readonly imageInspect: (image: string) => Effect.Effect<ImageInspect, PodmanError>
    readonly imageList: (filters?: Readonly<Record<string, ReadonlyArray<string>>>) => Effect.Effect<ReadonlyArray<ImageSummary>, PodmanError>
    readonly imageRemove: (image: string, options?: { readonly force?: boolean }) => Effect.Effect<void, PodmanError>
    /** POST /containers/create with SpecGenerator JSON; returns the new id. */
    readonly containerCreate: (spec: { readonly name?: string | undefined; readonly image?: string | undefined }) => Effect.Effect<string, PodmanError>
    readonly start: (id: string) => Effect.Effect<void, PodmanError>
    /** Waits for the condition (default "stopped", polled every 10 ms — notes §6) and returns the exit code. */
    readonly wait: (id: string, options?: { readonly condition?: string; readonly interval?: string }) => Effect.Effect<number, PodmanError>
    readonly logs: (id: string, options?: { readonly follow?: boolean }) => Stream.Stream<LogFrame, PodmanError>
    readonly exec: (id: string, cmd: ReadonlyArray<string>, options?: ExecOptions) => Effect.Effect<ExecResult, PodmanError>
    readonly putArchive: (id: string, path: string, tar: Uint8Array) => Effect.Effect<void, PodmanError>
    readonly getArchive: (id: string, path: string) => Effect.Effect<Uint8Array, PodmanError>
    readonly kill: (id: string, signal?: string) => Effect.Effect<void, PodmanError>
    readonly stop: (id: string, timeoutSeconds?: number) => Effect.Effect<void, PodmanError>
    /** DELETE with `volumes=true` (not `v=true`, notes §5.2); false when there was no such container. */
    readonly remove: (
      id: string,
      options?: { readonly force?: boolean; readonly timeoutSeconds?: number; readonly volumes?: boolean }
    ) => Effect.Effect<boolean, PodmanError>
    /** All containers (running or not) carrying every given `key=value` label. */
    readonly list: (labels: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<ContainerSummary>, PodmanError>
    readonly inspect: (id: string) => Effect.Effect<ContainerInspect, PodmanError>
  }
>() {
  /** A client on `options.socket` with one keep-alive connection pool for the layer's lifetime. */
  static layer = (options: LibpodOptions): Layer.Layer<Libpod> => Layer.scoped(Libpod, makeLibpod(options))
}

const API_PREFIX = "/v4.0.0/libpod"

const buildPath = (req: LibpodRequest): string => {
  const base = /^\/v\d/.test(req.path) ? req.path : API_PREFIX + req.path
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) params.append(k, String(v))
  const q = params.toString()
  return q === "" ? base : `${base}?${q}`
}

/** How to start the service, for errors about a missing or refusing socket. */
export const socketHint = (socket: string): string =>
  `start the podman API service ("systemctl enable --now podman.socket", or ` +
  `"podman system service --time=0 unix://${socket}") or point [adjutant] podman_socket at a running one`

const transportError = (socket: string, req: LibpodRequest, cause: unknown): PodmanError => {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined
  const text = cause instanceof Error ? cause.message : String(cause)
  const message =
    code === "ENOENT" || code === "ECONNREFUSED"
      ? `cannot connect to the podman API socket ${socket} (${code}): ${socketHint(socket)}`
      : code === "EACCES"
      ? `permission denied on the podman API socket ${socket}: run as its owner, or use a rootless user socket ` +
        `($XDG_RUNTIME_DIR/podman/podman.sock) in [adjutant] podman_socket`
      : code === "ECONNRESET" || code === "EPIPE"
      ? `the podman API service on ${socket} went away during ${req.method} ${req.path} (${code}: it stopped or restarted)`
      : `podman API ${req.method} ${req.path} on ${socket} failed: ${text}`
  const unreachable = code === "ENOENT" || code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE"
  return new PodmanError({ operation: req.operation, target: req.target, message, ...(unreachable ? { unreachable } : {}) })
}

const hintFor = (message: string): string =>
  /container-init binary not found/.test(message)
    ? " (install catatonit, see scripts/setup-host.sh, or create the container with init: false)"
    : /image not known|no such image/i.test(message)
    ? " (build the image with scripts/build-images.sh, or pull it)"
    : ""

const decodeApiError = Schema.decodeUnknownOption(Schema.parseJson(ApiErrorBody))

/** Maps a status >= 400 and its body to a PodmanError carrying podman's message. */
export const apiError = (req: LibpodRequest, status: number, body: Uint8Array): PodmanError => {
  const text = Buffer.from(body).toString("utf8")
  const decoded = decodeApiError(text)
  const podman = decoded._tag === "Some" ? decoded.value.message : text.trim() || `HTTP ${status}`
  return new PodmanError({
    operation: req.operation,
    target: req.target,
    status,
    message: `${req.operation}${req.target === undefined ? "" : ` ${req.target}`} failed: ${podman}${hintFor(podman)}`
  })
}

const isError = (req: LibpodRequest, status: number) => status >= 400 && !(req.allowStatus ?? []).includes(status)

const readBody = (req: LibpodRequest, socket: string, res: http.IncomingMessage) =>
  Effect.async<Uint8Array, PodmanError>((resume) => {
    const parts: Array<Buffer> = []
    res.on("data", (b: Buffer) => parts.push(b))
    res.on("end", () => resume(Effect.succeed(Buffer.concat(parts))))
    res.on("error", (e) => resume(Effect.fail(transportError(socket, req, e))))
    return Effect.sync(() => res.destroy())
  })

/** The client's connection: the socket and its keep-alive pool. */
interface Client {
  readonly socket: string
  readonly agent: http.Agent
}

const open = (c: Client, req: LibpodRequest, retry = true): Effect.Effect<http.IncomingMessage, PodmanError> =>
  Effect.async<http.IncomingMessage, PodmanError>((resume) => {
    const headers: Record<string, string> = { ...req.headers }
    let payload: Uint8Array | undefined
    if (req.json !== undefined) {
      payload = Buffer.from(JSON.stringify(req.json))
      headers["content-type"] = "application/json"
    } else if (req.body !== undefined) {
      payload = req.body
      headers["content-type"] = req.contentType ?? "application/octet-stream"
    }
    if (payload !== undefined) headers["content-length"] = String(payload.length)
    const r = http.request({ socketPath: c.socket, agent: c.agent, method: req.method, path: buildPath(req), headers })
    r.on("response", (res) => resume(Effect.succeed(res)))
    r.on("error", (e) => {
      // A pooled socket the server closed meanwhile: the request never reached podman (Node's documented retry case).
      const reset = "code" in e && (e.code === "ECONNRESET" || e.code === "EPIPE")
      resume(retry && reset && r.reusedSocket ? open(c, req, false) : Effect.fail(transportError(c.socket, req, e)))
    })
    r.end(payload)
    return Effect.sync(() => r.destroy())
  })

const request = (c: Client, req: LibpodRequest): Effect.Effect<LibpodResponse, PodmanError> =>
  Effect.flatMap(open(c, req), (res) =>
    Effect.flatMap(readBody(req, c.socket, res), (body) => {
      const status = res.statusCode ?? 0
      return isError(req, status)
        ? Effect.fail(apiError(req, status, body))
        : Effect.succeed({ status, headers: res.headers, body })
    })
  )

const stream = (c: Client, req: LibpodRequest): Stream.Stream<Uint8Array, PodmanError> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      // destroy() after a complete body leaves the keep-alive socket alone; mid-body it aborts.
      // The acquire is made interruptible: podman sends no response headers for a followed
      // log of a silent container until its first line, and an uninterruptible wait there
      // would make cancelling such a stream hang (open's canceler destroys the request).
      const res = yield* Effect.acquireRelease(Effect.interruptible(open(c, req)), (r) => Effect.sync(() => r.destroy()))
      const status = res.statusCode ?? 0
      if (isError(req, status)) return yield* Effect.fail(apiError(req, status, yield* readBody(req, c.socket, res)))
      // Not Stream.fromAsyncIterable: its finalizer awaits the pending next() of a silent
      // response (a quiet pull, the followed logs of a silent container), so interruption
      // would hang until podman sent more bytes. fromReadable destroys the response instead.
      return NodeStream.fromReadable<PodmanError, Uint8Array>(() => res, (e) => transportError(c.socket, req, e))
    })
  )

const decodeJson = <A, I>(schema: Schema.Schema<A, I>, req: LibpodRequest) => {
  const decode = Schema.decodeUnknown(Schema.parseJson(schema))
  return (body: Uint8Array) =>
    decode(Buffer.from(body).toString("utf8")).pipe(
      Effect.mapError(
        (e) =>
          new PodmanError({
            operation: req.operation,
            target: req.target,
            message: `unexpected response from podman to ${req.operation}: ${e.message}`
          })
      )
    )
}

const call = <A, I>(c: Client, schema: Schema.Schema<A, I>, req: LibpodRequest) =>
  Effect.flatMap(request(c, req), (res) => decodeJson(schema, req)(res.body))

const enc = encodeURIComponent

const ping = (c: Client) => request(c, { operation: "ping", method: "GET", path: "/_ping" }).pipe(
  Effect.asVoid,
  Effect.withSpan("Libpod.ping")
)

const version = (c: Client) => call(c, VersionInfo, { operation: "version", method: "GET", path: "/version" }).pipe(
  Effect.withSpan("Libpod.version")
)

const imageExists = (c: Client) => Effect.fn("Libpod.imageExists")(function* (image: string) {
  const res = yield* request(c, {
    operation: "image.exists",
    target: image,
    method: "GET",
    path: `/images/${enc(image)}/exists`,
    allowStatus: [404]
  })
  return res.status === 204
})

const imageInspect = (c: Client) => Effect.fn("Libpod.imageInspect")(function* (image: string) {
  return yield* call(c, ImageInspect, {
    operation: "image.inspect",
    target: image,
    method: "GET",
    path: `/images/${enc(image)}/json`
  })
})

const imageList = (c: Client) => Effect.fn("Libpod.imageList")(function* (
  filters?: Readonly<Record<string, ReadonlyArray<string>>>
) {
  return yield* call(c, Schema.NullOr(Schema.Array(ImageSummary)), {
    operation: "image.list",
    method: "GET",
    path: "/images/json",
    query: { all: false, filters: filters === undefined ? undefined : JSON.stringify(filters) }
  }).pipe(Effect.map((l) => l ?? []))
})

const imageRemove = (c: Client) => Effect.fn("Libpod.imageRemove")(function* (
  image: string,
  options?: { readonly force?: boolean }
) {
  yield* request(c, {
    operation: "image.remove",
    target: image,
    method: "DELETE",
    path: `/images/${enc(image)}`,
    query: { force: options?.force ?? false }
  })
})

const containerCreate = (c: Client) => Effect.fn("Libpod.containerCreate")(function* (spec: {
  readonly name?: string | undefined
  readonly image?: string | undefined
}) {
  const req: LibpodRequest = { operation: "container.create", target: spec.name, method: "POST", path: "/containers/create", json: spec }
  const res = yield* call(c, CreateResponse, req).pipe(
    Effect.catchIf(
      (e) => spec.image !== undefined && /image not known|no such image/i.test(e.message),
      (e) =>
        Effect.fail(
          new PodmanError({
            ...e,
            target: spec.image,
            message:
              `image ${spec.image} is not in podman's image store (${e.message}): build it with ` +
              `scripts/build-images.sh, or pull it`
          })
        )
    )
  )
  return res.Id
})

const start = (c: Client) => Effect.fn("Libpod.start")(function* (id: string) {
  // 304: already running. A failed start must not be ignored: wait would then report 0 (notes §5.2).
  yield* request(c, { operation: "container.start", target: id, method: "POST", path: `/containers/${enc(id)}/start` })
})

const wait = (c: Client) => Effect.fn("Libpod.wait")(function* (
  id: string,
  options?: { readonly condition?: string; readonly interval?: string }
) {
  return yield* call(c, Schema.Number, {
    operation: "container.wait",
    target: id,
    method: "POST",
    path: `/containers/${enc(id)}/wait`,
    query: { condition: options?.condition ?? "stopped", interval: options?.interval ?? "10ms" }
  })
})

const logs = (c: Client) => (id: string, options?: { readonly follow?: boolean }): Stream.Stream<LogFrame, PodmanError> =>
  demuxStream(
    stream(c, {
      operation: "container.logs",
      target: id,
      method: "GET",
      path: `/containers/${enc(id)}/logs`,
      query: { stdout: true, stderr: true, follow: options?.follow ?? false }
    })
  )

const exec = (c: Client) => Effect.fn("Libpod.exec")(function* (id: string, cmd: ReadonlyArray<string>, options?: ExecOptions) {
  const created = yield* call(c, Schema.Struct({ Id: Schema.String }), {
    operation: "container.exec",
    target: id,
    method: "POST",
    path: `/containers/${enc(id)}/exec`,
    json: {
      Cmd: cmd,
      AttachStdout: true,
      AttachStderr: true,
      ...(options?.env === undefined ? {} : { Env: Object.entries(options.env).map(([k, v]) => `${k}=${v}`) }),
      ...(options?.workDir === undefined ? {} : { WorkingDir: options.workDir }),
      ...(options?.user === undefined ? {} : { User: options.user })
    }
  })
  // Attached start: the exit code is only reliable this way (notes §5.2, "Exec exit codes").
  const started = yield* request(c, {
    operation: "exec.start",
    target: id,
    method: "POST",
    path: `/exec/${created.Id}/start`,
    json: { Detach: false, Tty: false }
  })
  const info = yield* call(c, ExecInspect, {
    operation: "exec.inspect",
    target: id,
    method: "GET",
    path: `/exec/${created.Id}/json`
  })
  return { exitCode: info.ExitCode, ...collectOutput(demuxAll(started.body)) }
})

const putArchive = (c: Client) => Effect.fn("Libpod.putArchive")(function* (id: string, path: string, tar: Uint8Array) {
  // Without application/x-tar podman reads the body as a form, extracts nothing and says 200 (notes §5.2).
  yield* request(c, {
    operation: "container.putArchive",
    target: id,
    method: "PUT",
    path: `/containers/${enc(id)}/archive`,
    query: { path },
    body: tar,
    contentType: "application/x-tar"
  })
})

const getArchive = (c: Client) => Effect.fn("Libpod.getArchive")(function* (id: string, path: string) {
  const res = yield* request(c, {
    operation: "container.getArchive",
    target: `${id}:${path}`,
    method: "GET",
    path: `/containers/${enc(id)}/archive`,
    query: { path }
  })
  return res.body
})

const kill = (c: Client) => Effect.fn("Libpod.kill")(function* (id: string, signal?: string) {
  yield* request(c, {
    operation: "container.kill",
    target: id,
    method: "POST",
    path: `/containers/${enc(id)}/kill`,
    query: { signal: signal ?? "SIGKILL" }
  })
})

const stop = (c: Client) => Effect.fn("Libpod.stop")(function* (id: string, timeoutSeconds?: number) {
  yield* request(c, {
    operation: "container.stop",
    target: id,
    method: "POST",
    path: `/containers/${enc(id)}/stop`,
    query: { timeout: timeoutSeconds }
  })
})

const remove = (c: Client) => Effect.fn("Libpod.remove")(function* (
  id: string,
  options?: { readonly force?: boolean; readonly timeoutSeconds?: number; readonly volumes?: boolean }
) {
  const res = yield* request(c, {
    operation: "container.remove",
    target: id,
    method: "DELETE",
    path: `/containers/${enc(id)}`,
    query: { force: options?.force ?? false, volumes: options?.volumes ?? true, timeout: options?.timeoutSeconds },
    allowStatus: [404]
  })
  return res.status !== 404
})

const list = (c: Client) => Effect.fn("Libpod.list")(function* (labels: ReadonlyArray<string>) {
  return yield* call(c, Schema.NullOr(Schema.Array(ContainerSummary)), {
    operation: "container.list",
    method: "GET",
    path: "/containers/json",
    query: { all: true, filters: JSON.stringify({ label: labels }) }
  }).pipe(Effect.map((l) => l ?? []))
})

const inspect = (c: Client) => Effect.fn("Libpod.inspect")(function* (id: string) {
  return yield* call(c, ContainerInspect, {
    operation: "container.inspect",
    target: id,
    method: "GET",
    path: `/containers/${enc(id)}/json`
  })
})

/** Builds the Libpod service; the connection pool is closed with the scope. */
export const makeLibpod = Effect.fnUntraced(function* (options: LibpodOptions) {
  const agent = yield* Effect.acquireRelease(
    // Idle sockets are dropped after 4 s: a socket-activated service (`--time=5`) closes idle
    // connections after 10 s and exits when idle.
    Effect.sync(() => new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 4000 })),
    (a) => Effect.sync(() => a.destroy())
  )
  const c: Client = { socket: options.socket, agent }
  return Libpod.of({
    socket: c.socket,
    request: (req) => request(c, req),
    stream: (req) => stream(c, req),
    ping: ping(c),
    version: version(c),
    imageExists: imageExists(c),
    imageInspect: imageInspect(c),
    imageList: imageList(c),
    imageRemove: imageRemove(c),
    containerCreate: containerCreate(c),
    start: start(c),
    wait: wait(c),
    logs: logs(c),
    exec: exec(c),
    putArchive: putArchive(c),
    getArchive: getArchive(c),
    kill: kill(c),
    stop: stop(c),
    remove: remove(c),
    list: list(c),
    inspect: inspect(c)
  })
})
