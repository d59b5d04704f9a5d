/**
 * Koji faults: one tagged error class per koji exception (koji-protocol.md §2), with the exact
 * faultCode. A hub fault decodes to its class; any other code stays a generic `KojiFault`
 * keeping the code. `toFaultStruct(fromFault(c, s))` gives back `{c, s}` exactly.
 */
import { Schema } from "effect"

const fields = { faultString: Schema.String }

/** Builds the class for one koji exception with a fixed faultCode. */
const faultClass = <const Tag extends string, const Code extends number>(tag: Tag, code: Code) => {
  class Fault extends Schema.TaggedError<Fault>()(tag, fields) {
    /** The koji faultCode of this exception class. */
    static readonly faultCode: Code = code
    /** The koji faultCode of this fault. */
    get faultCode(): Code {
      return code
    }
    override get message(): string {
      return this.faultString
    }
  }
  return Fault
}

/** 1000: base class; also "Invalid method: X". */
export class GenericError extends faultClass("GenericError", 1000) {}
/** 1001: lock conflict (an upload file lock). */
export class LockError extends faultClass("LockError", 1001) {}
/** 1002: authentication failure, invalid session, not a host, non-exclusive session. */
export class AuthError extends faultClass("AuthError", 1002) {}
/** 1003: tagging failed. */
export class TagError extends faultClass("TagError", 1003) {}
/** 1004: permission or policy denial; "host X does not own task Y". */
export class ActionNotAllowed extends faultClass("ActionNotAllowed", 1004) {}
/** 1005: build failure. */
export class BuildError extends faultClass("BuildError", 1005) {}
/** 1006: "Cannot get exclusive session" / "User locked by another session". */
export class AuthLockError extends faultClass("AuthLockError", 1006) {}
/** 1007: session renewal timeout reached. */
export class AuthExpired extends faultClass("AuthExpired", 1007) {}
/** 1008: callnum lower than the last one stored. */
export class SequenceError extends faultClass("SequenceError", 1008) {}
/** 1009: repeated callnum of a call that was already committed. */
export class RetryError extends faultClass("RetryError", 1009) {}
/** 1010: pre-build failure. */
export class PreBuildError extends faultClass("PreBuildError", 1010) {}
/** 1011: post-build failure. */
export class PostBuildError extends faultClass("PostBuildError", 1011) {}
/** 1012: buildroot problems (wrong repo state, init failure). */
export class BuildrootError extends faultClass("BuildrootError", 1012) {}
/** 1013: deprecated function. */
export class FunctionDeprecated extends faultClass("FunctionDeprecated", 1013) {}
/** 1014: hub offline, maintenance lockout or database outage. */
export class ServerOffline extends faultClass("ServerOffline", 1014) {}
/** 1015: livecd failure. */
export class LiveCDError extends faultClass("LiveCDError", 1015) {}
/** 1016: plugin failure. */
export class PluginError extends faultClass("PluginError", 1016) {}
/** 1017: plugin callback failure. */
export class CallbackError extends faultClass("CallbackError", 1017) {}
/** 1018: appliance failure. */
export class ApplianceError extends faultClass("ApplianceError", 1018) {}
/** 1019: arguments do not fit the signature. */
export class ParameterError extends faultClass("ParameterError", 1019) {}
/** 1020: import failed (koji's ImportError). */
export class ImportError extends faultClass("ImportError", 1020) {}
/** 1021: configuration error. */
export class ConfigurationError extends faultClass("ConfigurationError", 1021) {}
/** 1022: livemedia failure. */
export class LiveMediaError extends faultClass("LiveMediaError", 1022) {}
/** 1023: GSSAPI authentication failure. */
export class GSSAPIAuthError extends faultClass("GSSAPIAuthError", 1023) {}
/** 1024: name validation (reserved). */
export class NameValidationError extends faultClass("NameValidationError", 1024) {}

/** A fault with a code koji has no class for (1 = a hub traceback, or anything else). */
export class KojiFault extends Schema.TaggedError<KojiFault>()("KojiFault", {
  faultCode: Schema.Number,
  faultString: Schema.String
}) {
  override get message(): string {
    return `fault ${this.faultCode}: ${this.faultString}`
  }
}

/** Every koji exception class, in faultCode order. */
export const faultClasses = [
  GenericError, LockError, AuthError, TagError, ActionNotAllowed, BuildError, AuthLockError,
  AuthExpired, SequenceError, RetryError, PreBuildError, PostBuildError, BuildrootError,
  FunctionDeprecated, ServerOffline, LiveCDError, PluginError, CallbackError, ApplianceError,
  ParameterError, ImportError, ConfigurationError, LiveMediaError, GSSAPIAuthError,
  NameValidationError
] as const

/** An instance of one of the 25 koji exception classes. */
export type KnownFault = InstanceType<(typeof faultClasses)[number]>

/** Any fault a hub can send. */
export type Fault = KnownFault | KojiFault

const byCode = new Map<number, (typeof faultClasses)[number]>(
  faultClasses.map((c) => [c.faultCode, c])
)

/** The fault class for a faultCode, as koji's `convertFault` picks it. */
export const fromFault = (faultCode: number, faultString: string): Fault => {
  const cls = byCode.get(faultCode)
  return cls ? new cls({ faultString }) : new KojiFault({ faultCode, faultString })
}

/** The `{faultCode, faultString}` pair of a fault, exactly as it came or would go on the wire. */
export const toFaultStruct = (fault: Fault): { readonly faultCode: number; readonly faultString: string } => ({
  faultCode: fault.faultCode,
  faultString: fault.faultString
})

/** True for any koji fault value. */
export const isFault = (u: unknown): u is Fault =>
  u instanceof KojiFault || faultClasses.some((c) => u instanceof c)

/** True when `fault` is an AuthError or one of its subclasses in koji (1002, 1006–1009, 1023). */
export const isAuthFamily = (fault: Fault): boolean =>
  [1002, 1006, 1007, 1008, 1009, 1023].includes(fault.faultCode)
