/**
 * Transport and protocol failures talking to the hub, kept apart from koji faults (DESIGN.md §4).
 */
import { Schema } from "effect"

/** Why a hub call failed below the XML-RPC fault level. */
export const HubErrorReason = Schema.Literal("Connection", "Http", "Parse", "Certificate", "Timeout", "Decode")
/** Why a hub call failed below the XML-RPC fault level. */
export type HubErrorReason = typeof HubErrorReason.Type

/** A hub call failed in transport or protocol: the message names the method and what was wrong. */
export class HubError extends Schema.TaggedError<HubError>()("HubError", {
  reason: HubErrorReason,
  method: Schema.String,
  message: Schema.String,
  status: Schema.optional(Schema.Number)
}) {}

/** Login could not even be attempted or did not produce a session (no credentials, no Kerberos…). */
export class LoginError extends Schema.TaggedError<LoginError>()("LoginError", {
  method: Schema.Literal("sslLogin", "login", "gssapi"),
  message: Schema.String
}) {}
