/**
 * The request and response shapes of hub calls (koji-protocol.md §1.3–1.5): keyword arguments,
 * multiCall batches, session info, and the decoding of an answer into a value, a fault or a
 * HubError. Nothing here holds state.
 */
import { Effect, Either, HashSet, ParseResult, Schema } from "effect"
import { type Fault, isFault } from "../koji/faults.js"
import { HubError } from "./HubError.js"
import type { HubRequest } from "./HubTransport.js"
import {
  decodeMultiCallResult, decodeResponse, encodeMethodCall, encodeMultiCall, kwargs as kwargsStruct,
  type XmlRpcStruct, type XmlRpcValue
} from "./xmlrpc.js"

/** Keyword arguments of a call; `undefined` members are left out. */
export type Kwargs = Readonly<Record<string, XmlRpcValue | undefined>>

/** One call of a multiCall batch. */
export interface BatchCall {
  readonly method: string
  readonly params?: ReadonlyArray<XmlRpcValue> | undefined
  readonly kwargs?: Kwargs | undefined
}

/** `sinfo` as the login calls return it (§1.5). */
export const SessionInfo = Schema.Struct({
  "session-id": Schema.Number,
  "session-key": Schema.String,
  "header-auth": Schema.optional(Schema.Boolean)
})
/** `sinfo` decoded. */
export type SessionInfo = typeof SessionInfo.Type

/**
 * Runs a hub call interruptibly wherever it runs, so a caller's `Effect.timeout` bounds it even
 * in an uninterruptible region (a scope's acquire or release, a shutdown in `onInterrupt`:
 * `timeout` runs it in a fiber of its own). The one exception is a fiber that is already being
 * interrupted: there an interruptible region would end the call before it starts, so it runs to
 * its end, each request still bounded by the transport's timeout.
 */
export const interruptibleCall = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.descriptorWith((fiber) => (HashSet.size(fiber.interruptors) > 0 ? self : Effect.interruptible(self)))

/** Formats a Schema parse error as "field a.b: expected …". */
export const formatParseError = (method: string, error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const parts = issues.slice(0, 3).map((i) =>
    i.path.length === 0 ? i.message : `field ${i.path.map(String).join(".")}: ${i.message}`
  )
  return `${method}: ${parts.join("; ")}${issues.length > 3 ? ` (and ${issues.length - 3} more)` : ""}`
}

/** Decodes a hub value with a Schema; a mismatch is `HubError("Decode")` naming the field. */
export const decodeAs = <A, I>(schema: Schema.Schema<A, I>, method: string) => (value: XmlRpcValue): Effect.Effect<A, HubError> =>
  Schema.decodeUnknown(schema)(value).pipe(
    Effect.mapError((error) => new HubError({ reason: "Decode", method, message: formatParseError(method, error) }))
  )

/** Positional parameters followed by the keyword struct, when there are keywords. */
export const withKwargs = (params: ReadonlyArray<XmlRpcValue> | undefined, kw: Kwargs | undefined): ReadonlyArray<XmlRpcValue> => {
  const base = params ?? []
  if (kw === undefined) return base
  const present: Record<string, XmlRpcValue> = {}
  for (const [k, v] of Object.entries(kw)) if (v !== undefined) present[k] = v
  // koji's encode_args adds the keyword struct only when there are keywords (§1.3).
  return Object.keys(present).length === 0 ? base : [...base, kwargsStruct(present as XmlRpcStruct)]
}

const textStart = (body: Uint8Array): string =>
  new TextDecoder().decode(body.subarray(0, 40)).replace(/\s+/g, " ").trim()

/** Decodes a 200 body into the value or the fault; parse failures become `HubError("Parse")`. */
export const readResponse = (method: string, body: Uint8Array): Effect.Effect<Either.Either<XmlRpcValue, Fault>, HubError> => {
  const decoded = decodeResponse(body)
  if (Either.isRight(decoded)) return Effect.succeed(Either.right(decoded.right))
  const error = decoded.left
  if (isFault(error)) return Effect.succeed(Either.left(error))
  return Effect.fail(
    new HubError({
      reason: "Parse",
      method,
      message: `${method}: response is not XML-RPC (starts with '${textStart(body)}'): ${error.message}`
    })
  )
}

/** An XML-RPC request of `method` to `url`. */
export const xmlRequest = (
  url: string, method: string, params: ReadonlyArray<XmlRpcValue>, headers: Record<string, string>,
  query: ReadonlyArray<readonly [string, string]> | undefined, login: boolean
): HubRequest => ({
  method,
  url,
  query,
  headers,
  body: new TextEncoder().encode(encodeMethodCall(method, params)),
  contentType: "text/xml",
  login
})

/** Decodes a multiCall answer into one value or fault per call. */
export const multiCallResult = (method: string) => (value: XmlRpcValue) => {
  const decoded = decodeMultiCallResult(value)
  return Either.isRight(decoded)
    ? Effect.succeed(decoded.right)
    : Effect.fail(new HubError({ reason: "Decode", method, message: `${method}: ${decoded.left.message}` }))
}

/** The one parameter of a multiCall. */
export const toBatch = (calls: ReadonlyArray<BatchCall>) =>
  encodeMultiCall(calls.map((c) => ({ methodName: c.method, params: withKwargs(c.params, c.kwargs) })))
