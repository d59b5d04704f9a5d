/**
 * The koji XML-RPC dialect (koji-protocol.md §1.2–1.4, §1.8, §4.5): an encoder whose output is
 * byte-identical to Python's `xmlrpc.client` marshaller as koji uses it, and a hand-rolled
 * decoder that scans the document string with `indexOf`/`startsWith` (no sax, no regex per
 * token) because hub responses can be tens of megabytes.
 */
import { Either, Schema } from "effect"
import { type Fault, fromFault } from "../koji/faults.js"

/** Forces <double> encoding of a number (koji sends task_load/weight as doubles). */
export class Double {
  constructor(readonly value: number) {}
}

/** A value that can travel in a koji XML-RPC document. */
export type XmlRpcValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Date
  | Uint8Array
  | Double
  | ReadonlyArray<XmlRpcValue>
  | { readonly [key: string]: XmlRpcValue }

/** A struct value. */
export type XmlRpcStruct = { readonly [key: string]: XmlRpcValue }

/** A struct of keyword arguments with `__starstar: true` (§1.3). */
export const kwargs = (kw: XmlRpcStruct): XmlRpcStruct => {
  const out: Record<string, XmlRpcValue> = {}
  for (const key of Object.keys(kw)) {
    const value = kw[key]
    if (value !== undefined) setMember(out, key, value)
  }
  out["__starstar"] = true
  return out
}

/** Parse failures: reason literal + detail naming what was wrong (position, element). */
export class XmlRpcParseError extends Schema.TaggedError<XmlRpcParseError>()("XmlRpcParseError", {
  reason: Schema.Literal("NotXml", "Malformed", "Truncated", "UnexpectedElement", "BadValue"),
  detail: Schema.String
}) {
  override get message(): string {
    return `XML-RPC ${this.reason}: ${this.detail}`
  }
}

/** Options for the decoders. */
export interface DecodeOptions {
  /** Decode `<double>` as `Double` instead of `number`, so re-encoding keeps the type (contract tests). */
  readonly preserveDoubles?: boolean
}

/** A decoded methodCall. */
export interface MethodCall {
  readonly methodName: string
  readonly params: ReadonlyArray<XmlRpcValue>
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

const XML_HEADER = "<?xml version='1.0'?>\n"
const INT32_MIN = -2147483648
const INT32_MAX = 2147483647
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

// Characters that need escaping (&, <, >) or that XML 1.0 forbids (§1.2: Python would send them
// raw and break the receiving parser, so they are dropped).
const NEEDS_ESCAPE = /[&<>\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/

const isForbiddenControl = (c: number): boolean =>
  c < 0x20 ? c !== 0x09 && c !== 0x0a && c !== 0x0d : c === 0xfffe || c === 0xffff

/** Escapes text as Python's `xmlrpc.client.escape` does, dropping XML-1.0-illegal characters. */
export const escapeText = (text: string): string => {
  if (!NEEDS_ESCAPE.test(text)) return text
  let out = ""
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x26) out += "&amp;"
    else if (c === 0x3c) out += "&lt;"
    else if (c === 0x3e) out += "&gt;"
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < n ? text.charCodeAt(i + 1) : 0
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += text[i]! + text[i + 1]!
        i++
      }
    } else if ((c >= 0xdc00 && c <= 0xdfff) || isForbiddenControl(c)) {
      continue
    } else out += text[i]!
  }
  return out
}

/** Python `repr(float)`: shortest round-trip digits, exponent form outside 1e-4 ≤ |x| < 1e16. */
export const pythonFloatRepr = (x: number): string => {
  if (Number.isNaN(x)) return "nan"
  if (x === Infinity) return "inf"
  if (x === -Infinity) return "-inf"
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0"
  const sign = x < 0 ? "-" : ""
  const exp = Math.abs(x).toExponential()
  const e = exp.indexOf("e")
  const digits = exp.slice(0, e).replace(".", "")
  const exponent = Number(exp.slice(e + 1))
  const decpt = exponent + 1
  if (decpt > 16 || decpt < -3) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits
    const ex = Math.abs(exponent)
    return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${ex < 10 ? "0" : ""}${ex}`
  }
  if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`
  if (decpt >= digits.length) return `${sign}${digits}${"0".repeat(decpt - digits.length)}.0`
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

const encodeInteger = (v: number | bigint): string => {
  if (typeof v === "number" && v >= INT32_MIN && v <= INT32_MAX) return `<value><int>${v === 0 ? 0 : v}</int></value>\n`
  const big = typeof v === "bigint" ? v : BigInt(v)
  if (big >= BigInt(INT32_MIN) && big <= BigInt(INT32_MAX)) return `<value><int>${big}</int></value>\n`
  if (big < INT64_MIN || big > INT64_MAX) {
    // A programming error, as Python's OverflowError (§1.2): XML-RPC ints stop at int64.
    throw new RangeError(`XML-RPC cannot encode integer ${big}: beyond int64 (wrap a float in Double)`)
  }
  return `<value><i8>${big}</i8></value>\n`
}

const encodeBase64 = (bytes: Uint8Array): string => {
  const b64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")
  let out = "<value><base64>\n"
  // base64.encodebytes: lines of 76 characters, each ending in a newline.
  for (let i = 0; i < b64.length; i += 76) out += b64.slice(i, i + 76) + "\n"
  return out + "</base64></value>\n"
}

const encodeDate = (d: Date): string => {
  if (Number.isNaN(d.getTime())) throw new RangeError("XML-RPC cannot encode an invalid Date")
  return `<value><dateTime.iso8601>${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}</dateTime.iso8601></value>\n`
}

const encodeValue = (v: XmlRpcValue, path: Set<object>): string => {
  switch (typeof v) {
    case "string":
      return `<value><string>${escapeText(v)}</string></value>\n`
    case "number":
      return Number.isInteger(v) ? encodeInteger(v) : `<value><double>${pythonFloatRepr(v)}</double></value>\n`
    case "bigint":
      return encodeInteger(v)
    case "boolean":
      return v ? "<value><boolean>1</boolean></value>\n" : "<value><boolean>0</boolean></value>\n"
    case "object": {
      // Python's dump_nil writes no newline after </value> (seen in every capture).
      if (v === null) return "<value><nil/></value>"
      if (v instanceof Double) return `<value><double>${pythonFloatRepr(v.value)}</double></value>\n`
      if (v instanceof Date) return encodeDate(v)
      if (v instanceof Uint8Array) return encodeBase64(v)
      if (v instanceof Map || v instanceof Set || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
        throw new TypeError(`XML-RPC cannot encode a ${(v as object).constructor.name}; convert it to an array, struct or Uint8Array`)
      }
      if (path.has(v)) throw new TypeError("XML-RPC cannot encode a recursive value")
      path.add(v)
      let out: string
      if (Array.isArray(v)) {
        out = "<value><array><data>\n"
        for (const item of v as ReadonlyArray<XmlRpcValue>) out += encodeValue(item, path)
        out += "</data></array></value>\n"
      } else {
        const struct = v as XmlRpcStruct
        out = "<value><struct>\n"
        for (const key of Object.keys(struct)) {
          const member = struct[key]
          if (member === undefined) continue
          out += `<member>\n<name>${escapeText(key)}</name>\n${encodeValue(member, path)}</member>\n`
        }
        out += "</struct></value>\n"
      }
      path.delete(v)
      return out
    }
    default:
      throw new TypeError(`XML-RPC cannot encode a value of type ${typeof v}`)
  }
}

/** Encodes one value as Python's marshaller does (a `<value>` element and its trailing newline). */
export const encodeValueXml = (value: XmlRpcValue): string => encodeValue(value, new Set())

/** A complete methodCall document, byte-identical to koji's client (§1.2). */
export const encodeMethodCall = (methodName: string, params: ReadonlyArray<XmlRpcValue>): string => {
  const path = new Set<object>()
  let out = `${XML_HEADER}<methodCall>\n<methodName>${escapeText(methodName)}</methodName>\n<params>\n`
  for (const p of params) out += `<param>\n${encodeValue(p, path)}</param>\n`
  return out + "</params>\n</methodCall>\n"
}

/** methodResponse document wrapping one value; starts with "<?xml version='1.0'?>" (closeTask, §4.5). */
export const encodeResponse = (value: XmlRpcValue): string =>
  `${XML_HEADER}<methodResponse>\n<params>\n<param>\n${encodeValue(value, new Set())}</param>\n</params>\n</methodResponse>\n`

/** methodResponse <fault> document (failTask, and the fake hub's faults). */
export const encodeFault = (faultCode: number, faultString: string): string => {
  if (!Number.isInteger(faultCode)) throw new RangeError(`faultCode must be an integer, got ${faultCode}`)
  return `${XML_HEADER}<methodResponse>\n<fault>\n${encodeValue({ faultCode, faultString }, new Set())}</fault>\n</methodResponse>\n`
}

/** Splits a trailing __starstar struct off params (hub side of §1.3). */
export const splitKwargs = (
  params: ReadonlyArray<XmlRpcValue>
): { args: ReadonlyArray<XmlRpcValue>; kwargs: XmlRpcStruct } => {
  const last = params.length > 0 ? params[params.length - 1] : undefined
  if (isStruct(last) && pythonTruthy(last["__starstar"])) {
    const kw: Record<string, XmlRpcValue> = {}
    for (const key of Object.keys(last)) if (key !== "__starstar") setMember(kw, key, last[key]!)
    return { args: params.slice(0, -1), kwargs: kw }
  }
  return { args: params, kwargs: {} }
}

/** True for a struct value (not an array, date, bytes or Double). */
export const isStruct = (v: XmlRpcValue | undefined): v is XmlRpcStruct =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date) &&
  !(v instanceof Uint8Array) && !(v instanceof Double)

/** Python truthiness of a decoded value (`bool(v)`): no nil, false, zero, empty string, array, struct or bytes. */
export const pythonTruthy = (v: XmlRpcValue | undefined): boolean => {
  if (v === undefined || v === null || v === false || v === 0 || v === 0n || v === "") return false
  if (Array.isArray(v)) return v.length > 0
  if (v instanceof Double) return v.value !== 0
  if (v instanceof Uint8Array) return v.length > 0
  if (isStruct(v)) return Object.keys(v).length > 0
  return true
}

/** One call of a multiCall batch (§1.8). */
export interface MultiCallEntry {
  readonly methodName: string
  readonly params: ReadonlyArray<XmlRpcValue>
}

/** The params of method `multiCall` for a batch of calls (§1.8); send with `encodeMethodCall("multiCall", …)`. */
export const encodeMultiCall = (calls: ReadonlyArray<MultiCallEntry>): ReadonlyArray<XmlRpcValue> => [
  calls.map((c): XmlRpcValue => ({ methodName: c.methodName, params: c.params }))
]

/** Splits a multiCall result into one `[value]` or fault per call, in order (§1.8). */
export const decodeMultiCallResult = (
  value: XmlRpcValue
): Either.Either<ReadonlyArray<Either.Either<XmlRpcValue, Fault>>, XmlRpcParseError> => {
  if (!Array.isArray(value)) {
    return Either.left(new XmlRpcParseError({ reason: "BadValue", detail: `multiCall result is not an array but ${describe(value)}` }))
  }
  const out: Array<Either.Either<XmlRpcValue, Fault>> = []
  const items = value as ReadonlyArray<XmlRpcValue>
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!
    if (Array.isArray(item) && item.length === 1) out.push(Either.right((item as ReadonlyArray<XmlRpcValue>)[0]!))
    else if (isStruct(item) && typeof item["faultCode"] === "number" && typeof item["faultString"] === "string") {
      out.push(Either.left(fromFault(item["faultCode"], item["faultString"])))
    } else {
      return Either.left(new XmlRpcParseError({
        reason: "BadValue",
        detail: `multiCall result ${i} is neither a one-element array nor a fault struct but ${describe(item)}`
      }))
    }
  }
  return Either.right(out)
}

const describe = (v: XmlRpcValue): string => {
  if (v === null) return "nil"
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (v instanceof Double) return "a double"
  if (v instanceof Date) return "a dateTime"
  if (v instanceof Uint8Array) return "base64"
  if (typeof v === "object") return "a struct"
  return `a ${typeof v}`
}

/** Sets a member without letting a `__proto__` key reach the prototype setter. */
const setMember = (obj: Record<string, XmlRpcValue>, key: string, value: XmlRpcValue): void => {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
  } else obj[key] = value
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

type Reason = XmlRpcParseError["reason"]

class Fail {
  constructor(readonly reason: Reason, readonly detail: string, readonly pos: number) {}
}

const MAX_DEPTH = 512
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** The parser state: the document and a cursor, shared by the functions below. */
class Scanner {
  p = 0
  depth = 0
  /** Member names seen at each position of a struct (see structBody). */
  readonly keys: Array<string> = []
  readonly n: number
  constructor(readonly s: string, readonly preserveDoubles: boolean) {
    this.n = s.length
  }

  fail(reason: Reason, what: string, pos: number = this.p): never {
    throw new Fail(reason, what, pos)
  }

  snippet(pos: number): string {
    if (pos >= this.n) return "end of document"
    const text = this.s.slice(pos, pos + 40)
    return JSON.stringify(pos + 40 < this.n ? text + "…" : text)
  }

  /** Skips whitespace and comments. */
  skipWs(): void {
    const s = this.s
    for (;;) {
      let p = this.p
      let c = s.charCodeAt(p)
      while (c === 32 || c === 10 || c === 13 || c === 9) c = s.charCodeAt(++p)
      this.p = p
      if (c === 60 && s.charCodeAt(p + 1) === 33 && s.startsWith("<!--", p)) {
        const end = s.indexOf("-->", p + 4)
        if (end < 0) this.fail("Truncated", "unterminated comment", p)
        this.p = end + 3
      } else return
    }
  }

  /**
   * Reads any tag at the cursor (slow path). Returns the local name (namespace prefix dropped),
   * whether it is a closing tag and whether it is self-closing; the cursor moves past '>'.
   */
  readTag(expecting: string): { name: string; closing: boolean; empty: boolean } {
    const s = this.s
    const start = this.p
    if (start >= this.n) this.fail("Truncated", `document ends while expecting ${expecting}`, start)
    if (s.charCodeAt(start) !== 60) {
      this.fail("Malformed", `expected ${expecting} but found text ${this.snippet(start)}`, start)
    }
    let p = start + 1
    const closing = s.charCodeAt(p) === 47
    if (closing) p++
    const nameStart = p
    for (;;) {
      const c = s.charCodeAt(p)
      if (Number.isNaN(c)) this.fail("Truncated", `document ends inside a tag while expecting ${expecting}`, start)
      if (c === 62 || c === 47 || c === 32 || c === 10 || c === 13 || c === 9) break
      if (c === 60 || c === 33 || c === 63 || c === 38 || c === 61 || c === 34 || c === 39) {
        this.fail("Malformed", `bad tag ${this.snippet(start)} while expecting ${expecting}`, start)
      }
      p++
    }
    if (p === nameStart) this.fail("Malformed", `tag without a name ${this.snippet(start)}`, start)
    let name = s.slice(nameStart, p)
    const colon = name.lastIndexOf(":")
    if (colon >= 0) name = name.slice(colon + 1)
    let empty = false
    for (let quote = 0; ; p++) {
      const c = s.charCodeAt(p)
      if (Number.isNaN(c)) this.fail("Truncated", `document ends inside tag <${name}>`, start)
      if (quote !== 0) {
        if (c === quote) quote = 0
      } else if (c === 34 || c === 39) {
        if (closing) this.fail("Malformed", `attribute in closing tag ${this.snippet(start)}`, start)
        quote = c
      } else if (c === 62) break
      else if (c === 60) this.fail("Malformed", `'<' inside tag ${this.snippet(start)}`, start)
      else if (c === 47 && !closing && s.charCodeAt(p + 1) === 62) {
        empty = true
        p++
        break
      }
    }
    this.p = p + 1
    return { name, closing, empty }
  }

  /** Consumes `<name>` (or a variant); returns true when it was self-closing `<name/>`. */
  open(name: string, literal: string): boolean {
    this.skipWs()
    if (this.s.startsWith(literal, this.p)) {
      this.p += literal.length
      return false
    }
    const at = this.p
    const tag = this.readTag(`<${name}>`)
    if (tag.closing || tag.name !== name) {
      this.fail("UnexpectedElement", `expected <${name}> but found <${tag.closing ? "/" : ""}${tag.name}>`, at)
    }
    return tag.empty
  }

  /** Consumes `</name>` (or a variant with a prefix or whitespace). */
  close(name: string, literal: string): void {
    this.skipWs()
    if (this.s.startsWith(literal, this.p)) {
      this.p += literal.length
      return
    }
    const at = this.p
    const tag = this.readTag(`</${name}>`)
    if (!tag.closing || tag.name !== name) {
      this.fail("UnexpectedElement", `expected </${name}> but found <${tag.closing ? "/" : ""}${tag.name}${tag.empty ? "/" : ""}>`, at)
    }
  }

  /** True when the next tag (after whitespace) closes `name`; does not consume it. */
  atClose(literal: string): boolean {
    this.skipWs()
    const s = this.s
    return s.startsWith(literal, this.p) || (s.charCodeAt(this.p) === 60 && s.charCodeAt(this.p + 1) === 47)
  }

  /** Reads character data up to the closing tag `literal` and consumes it. */
  text(name: string, literal: string): string {
    const s = this.s
    const start = this.p
    const lt = s.indexOf("<", start)
    if (lt < 0) this.fail("Truncated", `document ends inside <${name}>`, start)
    if (s.startsWith(literal, lt)) {
      this.p = lt + literal.length
      return lt === start ? "" : this.clean(s.slice(start, lt), start)
    }
    return this.textSlow(name, literal, start, lt)
  }

  /** Text with CDATA sections, comments, or an unusual closing tag. */
  textSlow(name: string, literal: string, start: number, lt: number): string {
    const s = this.s
    let out = this.clean(s.slice(start, lt), start)
    let p = lt
    for (;;) {
      if (s.startsWith("<![CDATA[", p)) {
        const end = s.indexOf("]]>", p + 9)
        if (end < 0) this.fail("Truncated", "unterminated CDATA section", p)
        out += normalizeNewlines(s.slice(p + 9, end))
        p = end + 3
      } else if (s.startsWith("<!--", p)) {
        const end = s.indexOf("-->", p + 4)
        if (end < 0) this.fail("Truncated", "unterminated comment", p)
        p = end + 3
      } else {
        if (s.startsWith(literal, p)) {
          this.p = p + literal.length
          return out
        }
        this.p = p
        const tag = this.readTag(`</${name}>`)
        if (!tag.closing) this.fail("UnexpectedElement", `element <${tag.name}> inside <${name}>`, p)
        if (tag.name !== name) this.fail("UnexpectedElement", `expected </${name}> but found </${tag.name}>`, p)
        return out
      }
      const next = s.indexOf("<", p)
      if (next < 0) this.fail("Truncated", `document ends inside <${name}>`, p)
      out += this.clean(s.slice(p, next), p)
      p = next
    }
  }

  /** Resolves entity references and normalises line ends in a text run. */
  clean(text: string, at: number): string {
    if (text.indexOf("&") < 0) return text.indexOf("\r") < 0 ? text : normalizeNewlines(text)
    return this.unescape(normalizeNewlines(text), at)
  }

  unescape(text: string, at: number): string {
    let out = ""
    let last = 0
    for (let amp = text.indexOf("&"); amp >= 0; amp = text.indexOf("&", last)) {
      out += text.slice(last, amp)
      const semi = text.indexOf(";", amp + 1)
      if (semi < 0 || semi - amp > 12) this.fail("Malformed", `bare '&' in text ${JSON.stringify(text.slice(amp, amp + 16))}`, at)
      const ref = text.slice(amp + 1, semi)
      switch (ref) {
        case "amp": out += "&"; break
        case "lt": out += "<"; break
        case "gt": out += ">"; break
        case "quot": out += '"'; break
        case "apos": out += "'"; break
        default: {
          let code = Number.NaN
          if (ref.startsWith("#x") || ref.startsWith("#X")) {
            if (/^[0-9a-fA-F]+$/.test(ref.slice(2))) code = parseInt(ref.slice(2), 16)
          } else if (ref.startsWith("#")) {
            if (/^[0-9]+$/.test(ref.slice(1))) code = parseInt(ref.slice(1), 10)
          } else this.fail("Malformed", `undefined entity &${ref};`, at)
          if (Number.isNaN(code) || code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff) || isForbiddenControl(code)) {
            this.fail("Malformed", `reference to invalid character &${ref};`, at)
          }
          out += String.fromCodePoint(code)
        }
      }
      last = semi + 1
    }
    return out + text.slice(last)
  }

  /** Parses `<value>…</value>` at the cursor. */
  value(): XmlRpcValue {
    if (this.open("value", "<value>")) return ""
    return this.valueBody()
  }

  /** Parses what follows `<value>`, including `</value>`. */
  valueBody(): XmlRpcValue {
    const s = this.s
    const start = this.p
    const lt = s.indexOf("<", start)
    if (lt < 0) this.fail("Truncated", "document ends inside <value>", start)
    const next = s.charCodeAt(lt + 1)
    if (next === 47) {
      if (s.startsWith("</value>", lt)) {
        this.p = lt + 8
        return lt === start ? "" : this.clean(s.slice(start, lt), start)
      }
      return this.textSlow("value", "</value>", start, lt)
    }
    if (next === 33) return this.valueSlow(start, lt)
    this.requireBlank(start, lt)
    this.p = lt
    return this.typedValueThenClose()
  }

  /** A `<value>` whose content starts with a comment or CDATA section. */
  valueSlow(start: number, lt: number): XmlRpcValue {
    const s = this.s
    let p = lt
    let blank = this.isBlank(start, lt)
    for (;;) {
      if (s.startsWith("<!--", p)) {
        const end = s.indexOf("-->", p + 4)
        if (end < 0) this.fail("Truncated", "unterminated comment", p)
        p = end + 3
      } else if (s.startsWith("<![CDATA[", p)) {
        blank = false
        const end = s.indexOf("]]>", p + 9)
        if (end < 0) this.fail("Truncated", "unterminated CDATA section", p)
        p = end + 3
      } else break
      const next = s.indexOf("<", p)
      if (next < 0) this.fail("Truncated", "document ends inside <value>", p)
      if (!this.isBlank(p, next)) blank = false
      p = next
    }
    if (s.charCodeAt(p + 1) === 47) return this.textSlow("value", "</value>", start, lt)
    if (!blank) this.fail("Malformed", `text ${this.snippet(start)} before a type element in <value>`, start)
    this.p = p
    return this.typedValueThenClose()
  }

  isBlank(from: number, to: number): boolean {
    const s = this.s
    for (let i = from; i < to; i++) if (!isWs(s.charCodeAt(i))) return false
    return true
  }

  requireBlank(from: number, to: number): void {
    if (!this.isBlank(from, to)) this.fail("Malformed", `text ${this.snippet(from)} before a type element in <value>`, from)
  }

  typedValueThenClose(): XmlRpcValue {
    const v = this.typed()
    this.close("value", "</value>")
    return v
  }

  /** Parses a type element (`<int>`, `<struct>`, …) at the cursor. */
  typed(): XmlRpcValue {
    const s = this.s
    const p = this.p
    switch (s.charCodeAt(p + 1)) {
      case 115: // s
        if (s.startsWith("<string>", p)) {
          this.p = p + 8
          return this.text("string", "</string>")
        }
        if (s.startsWith("<struct>", p)) {
          this.p = p + 8
          return this.structBody()
        }
        break
      case 105: // i
        if (s.startsWith("<int>", p)) {
          this.p = p + 5
          return this.integer("int", "</int>")
        }
        if (s.startsWith("<i8>", p)) {
          this.p = p + 4
          return this.integer("i8", "</i8>")
        }
        break
      case 110: // n
        if (s.startsWith("<nil/>", p)) {
          this.p = p + 6
          return null
        }
        break
      case 98: // b
        if (s.startsWith("<boolean>", p)) {
          this.p = p + 9
          return this.boolean("boolean", "</boolean>")
        }
        break
      case 100: // d
        if (s.startsWith("<double>", p)) {
          this.p = p + 8
          return this.double("double", "</double>")
        }
        break
      case 97: // a
        if (s.startsWith("<array>", p)) {
          this.p = p + 7
          return this.arrayBody()
        }
        break
    }
    return this.typedSlow()
  }

  typedSlow(): XmlRpcValue {
    const at = this.p
    const tag = this.readTag("a type element")
    if (tag.closing) this.fail("UnexpectedElement", `unexpected </${tag.name}> in <value>`, at)
    const name = tag.name
    const close = `</${name}>`
    switch (name) {
      case "string":
        return tag.empty ? "" : this.text(name, close)
      case "nil":
        if (!tag.empty) this.text(name, close)
        return null
      case "int": case "i4": case "i8": case "i1": case "i2": case "biginteger":
        if (tag.empty) this.fail("BadValue", `empty <${name}/>`, at)
        return this.integer(name, close)
      case "boolean":
        if (tag.empty) this.fail("BadValue", "empty <boolean/>", at)
        return this.boolean(name, close)
      case "double":
        if (tag.empty) this.fail("BadValue", "empty <double/>", at)
        return this.double(name, close)
      case "dateTime.iso8601":
        if (tag.empty) this.fail("BadValue", "empty <dateTime.iso8601/>", at)
        return this.dateTime(close)
      case "base64":
        return tag.empty ? new Uint8Array(0) : this.base64(close)
      case "struct":
        return tag.empty ? {} : this.structBody()
      case "array":
        return tag.empty ? [] : this.arrayBody()
      default:
        return this.fail("UnexpectedElement", `unknown type element <${name}> in <value>`, at)
    }
  }

  integer(name: string, close: string): number | bigint {
    const at = this.p
    const text = this.text(name, close)
    const n = text.length
    let i = 0
    while (i < n && isWs(text.charCodeAt(i))) i++
    let end = n
    while (end > i && isWs(text.charCodeAt(end - 1))) end--
    const neg = text.charCodeAt(i) === 45
    if (neg || text.charCodeAt(i) === 43) i++
    if (i >= end) this.fail("BadValue", `<${name}> holds ${JSON.stringify(text)}, not an integer`, at)
    if (end - i <= 15) {
      let v = 0
      for (let j = i; j < end; j++) {
        const d = text.charCodeAt(j) - 48
        if (d < 0 || d > 9) this.fail("BadValue", `<${name}> holds ${JSON.stringify(text)}, not an integer`, at)
        v = v * 10 + d
      }
      return neg ? (v === 0 ? 0 : -v) : v
    }
    for (let j = i; j < end; j++) {
      const d = text.charCodeAt(j) - 48
      if (d < 0 || d > 9) this.fail("BadValue", `<${name}> holds ${JSON.stringify(text.slice(0, 60))}, not an integer`, at)
    }
    const big = BigInt(text.slice(i, end))
    const signed = neg ? -big : big
    return signed >= BigInt(Number.MIN_SAFE_INTEGER) && signed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(signed) : signed
  }

  boolean(name: string, close: string): boolean {
    const at = this.p
    const text = this.text(name, close)
    // Python's parser accepts exactly "0" and "1" (§1.2).
    if (text === "1") return true
    if (text === "0") return false
    return this.fail("BadValue", `<boolean> holds ${JSON.stringify(text.slice(0, 40))}; only 0 and 1 are allowed`, at)
  }

  double(name: string, close: string): number | Double {
    const at = this.p
    const text = this.text(name, close).trim()
    let v: number
    const lower = text.toLowerCase()
    const unsigned = lower.startsWith("-") || lower.startsWith("+") ? lower.slice(1) : lower
    if (unsigned === "inf" || unsigned === "infinity") v = lower.startsWith("-") ? -Infinity : Infinity
    else if (unsigned === "nan") v = Number.NaN
    else if (DOUBLE.test(text)) v = Number(text)
    else return this.fail("BadValue", `<double> holds ${JSON.stringify(text.slice(0, 40))}, not a number`, at)
    return this.preserveDoubles ? new Double(v) : v
  }

  dateTime(close: string): Date {
    const at = this.p
    const text = this.text("dateTime.iso8601", close).trim()
    const m = DATETIME.exec(text)
    const d = m
      ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])))
      : undefined
    if (d === undefined || Number.isNaN(d.getTime())) {
      return this.fail("BadValue", `<dateTime.iso8601> holds ${JSON.stringify(text.slice(0, 40))}, not YYYYMMDDTHH:MM:SS`, at)
    }
    if (m![1]!.length === 4 && Number(m![1]) < 100) d.setUTCFullYear(Number(m![1]))
    return d
  }

  base64(close: string): Uint8Array {
    const at = this.p
    const text = this.text("base64", close)
    const compact = text.replace(/[\s]/g, "")
    if (!BASE64.test(compact)) this.fail("BadValue", `<base64> holds characters outside base64: ${JSON.stringify(compact.slice(0, 40))}`, at)
    return new Uint8Array(Buffer.from(compact, "base64"))
  }

  structBody(): XmlRpcStruct {
    if (++this.depth > MAX_DEPTH) this.fail("BadValue", `values nested deeper than ${MAX_DEPTH}`)
    const obj: Record<string, XmlRpcValue> = {}
    const s = this.s
    const keys = this.keys
    let index = 0
    for (;;) {
      this.skipWs()
      const p = this.p
      if (s.startsWith("</struct>", p)) {
        this.p = p + 9
        break
      }
      if (s.startsWith("<member>", p)) this.p = p + 8
      else if (s.charCodeAt(p) === 60 && s.charCodeAt(p + 1) === 47) {
        this.close("struct", "</struct>")
        break
      } else if (this.open("member", "<member>")) {
        this.fail("BadValue", "empty <member/> without name and value", p)
      }
      let key: string
      this.skipWs()
      const q = this.p
      if (s.startsWith("<name>", q)) {
        // Hub results are lists of structs with the same members in the same order: reusing the
        // key string of the previous struct's member at this index spares interning it again.
        const cached = keys[index]
        const end = q + 6 + (cached === undefined ? 0 : cached.length)
        if (cached !== undefined && s.startsWith(cached, q + 6) && s.startsWith("</name>", end)) {
          key = cached
          this.p = end + 7
        } else {
          this.p = q + 6
          key = this.text("name", "</name>")
          if (this.p - q - 13 === key.length && index < 64) keys[index] = key
        }
      } else key = this.open("name", "<name>") ? "" : this.text("name", "</name>")
      index++
      const v = this.value()
      this.close("member", "</member>")
      if (key === "__proto__") setMember(obj, key, v)
      else obj[key] = v
    }
    this.depth--
    return obj
  }

  arrayBody(): ReadonlyArray<XmlRpcValue> {
    if (++this.depth > MAX_DEPTH) this.fail("BadValue", `values nested deeper than ${MAX_DEPTH}`)
    const out: Array<XmlRpcValue> = []
    this.skipWs()
    if (this.s.startsWith("</array>", this.p)) {
      this.p += 8
      this.depth--
      return out
    }
    if (!this.open("data", "<data>")) {
      while (!this.atClose("</data>")) out.push(this.value())
      this.close("data", "</data>")
    }
    this.close("array", "</array>")
    this.depth--
    return out
  }

  /** Skips the XML declaration and comments; rejects DOCTYPE and non-XML bodies. */
  prolog(): void {
    const s = this.s
    if (this.n === 0) this.fail("NotXml", "empty body", 0)
    if (s.charCodeAt(0) === 0xfeff) this.p = 1
    this.skipWs()
    if (s.startsWith("<?xml", this.p)) {
      const end = s.indexOf("?>", this.p)
      if (end < 0) this.fail("Truncated", "unterminated XML declaration", this.p)
      this.p = end + 2
      this.skipWs()
    }
    const p = this.p
    if (p >= this.n) this.fail(p > 0 && s.includes("<?xml") ? "Truncated" : "NotXml", "body holds no XML element", p)
    if (s.charCodeAt(p) !== 60) this.fail("NotXml", `body is not XML: starts with ${this.snippet(p)}`, p)
    if (s.slice(p, p + 9).toUpperCase() === "<!DOCTYPE") {
      const html = /^<!doctype\s+html/i.test(s.slice(p, p + 20))
      this.fail("NotXml", `${html ? "an HTML page" : "a DOCTYPE"} instead of XML-RPC (DOCTYPE is not allowed): ${this.snippet(p)}`, p)
    }
  }

  /** Checks that only whitespace and comments follow the root element. */
  epilog(root: string): void {
    this.skipWs()
    if (this.p < this.n) this.fail("Malformed", `content after </${root}>: ${this.snippet(this.p)}`)
  }

  root(expected: string): void {
    const at = this.p
    const tag = this.readTag(`<${expected}>`)
    if (tag.closing || tag.empty || tag.name !== expected) {
      const reason: Reason = tag.name.toLowerCase() === "html" ? "NotXml" : "UnexpectedElement"
      this.fail(reason, `expected <${expected}> as the root element but found ${this.snippet(at)}`, at)
    }
  }

  response(): { readonly fault: false; readonly value: XmlRpcValue } | { readonly fault: true; readonly code: number; readonly string: string } {
    this.prolog()
    this.root("methodResponse")
    this.skipWs()
    const at = this.p
    const tag = this.readTag("<params> or <fault>")
    if (tag.closing) this.fail("UnexpectedElement", "empty <methodResponse>", at)
    if (tag.name === "fault") {
      if (tag.empty) this.fail("BadValue", "empty <fault/>", at)
      const v = this.value()
      this.close("fault", "</fault>")
      this.close("methodResponse", "</methodResponse>")
      this.epilog("methodResponse")
      if (!isStruct(v)) this.fail("BadValue", `<fault> holds ${describe(v)}, not a struct`, at)
      const code = v["faultCode"]
      const str = v["faultString"]
      if (typeof code !== "number" || !Number.isInteger(code)) this.fail("BadValue", `fault has no integer faultCode`, at)
      if (typeof str !== "string") this.fail("BadValue", `fault has no string faultString`, at)
      return { fault: true, code, string: str }
    }
    if (tag.name !== "params") this.fail("UnexpectedElement", `expected <params> or <fault> but found <${tag.name}>`, at)
    const params = tag.empty ? [] : this.params()
    this.close("methodResponse", "</methodResponse>")
    this.epilog("methodResponse")
    if (params.length !== 1) this.fail("BadValue", `a response must hold exactly one <param>, found ${params.length}`, at)
    return { fault: false, value: params[0]! }
  }

  /** Parses `<param>` elements up to and including `</params>`. */
  params(): Array<XmlRpcValue> {
    const out: Array<XmlRpcValue> = []
    while (!this.atClose("</params>")) {
      if (this.open("param", "<param>")) this.fail("BadValue", "empty <param/>")
      out.push(this.value())
      this.close("param", "</param>")
    }
    this.close("params", "</params>")
    return out
  }

  call(): MethodCall {
    this.prolog()
    this.root("methodCall")
    let methodName = ""
    const at = this.p
    if (!this.open("methodName", "<methodName>")) methodName = this.text("methodName", "</methodName>")
    if (methodName === "") this.fail("BadValue", "empty <methodName>", at)
    let params: Array<XmlRpcValue> = []
    this.skipWs()
    if (!this.s.startsWith("</methodCall>", this.p)) {
      if (!this.open("params", "<params>")) params = this.params()
    }
    this.close("methodCall", "</methodCall>")
    this.epilog("methodCall")
    return { methodName, params }
  }
}

const isWs = (c: number): boolean => c === 32 || c === 10 || c === 13 || c === 9
const normalizeNewlines = (t: string): string => (t.indexOf("\r") < 0 ? t : t.replace(/\r\n?/g, "\n"))
const DOUBLE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/
const DATETIME = /^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-]00:?00)?$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

const toText = (body: string | Uint8Array): string | XmlRpcParseError => {
  if (typeof body === "string") return body
  try {
    return utf8.decode(body)
  } catch (e) {
    if (!(e instanceof TypeError)) {
      return new XmlRpcParseError({ reason: "Malformed", detail: `body of ${body.length} bytes cannot be decoded: ${e instanceof Error ? e.message : String(e)}` })
    }
    let valid = 0
    // Find where the invalid UTF-8 starts, for the message.
    for (let lo = 0, hi = body.length; lo < hi;) {
      const mid = (lo + hi + 1) >> 1
      try {
        utf8.decode(body.subarray(0, mid))
        lo = mid
        valid = mid
      } catch {
        hi = mid - 1
      }
    }
    return new XmlRpcParseError({ reason: "Malformed", detail: `invalid UTF-8 at byte ${valid}` })
  }
}

const byteOffset = (s: string, pos: number): number => Buffer.byteLength(s.slice(0, Math.min(pos, s.length)), "utf8")

const toParseError = (s: string, e: unknown): XmlRpcParseError => {
  if (e instanceof Fail) return new XmlRpcParseError({ reason: e.reason, detail: `${e.detail} (at byte ${byteOffset(s, e.pos)})` })
  if (e instanceof RangeError && /call stack/i.test(e.message)) {
    return new XmlRpcParseError({ reason: "BadValue", detail: "values nested too deeply for the decoder's stack" })
  }
  return new XmlRpcParseError({ reason: "Malformed", detail: `decoder failure: ${e instanceof Error ? e.message : String(e)}` })
}

/** Decodes a methodResponse: the single param value, or the fault as its koji class (fromFault). */
export const decodeResponse = (
  body: string | Uint8Array,
  options?: DecodeOptions
): Either.Either<XmlRpcValue, Fault | XmlRpcParseError> => {
  const s = toText(body)
  if (typeof s !== "string") return Either.left(s)
  try {
    const r = new Scanner(s, options?.preserveDoubles === true).response()
    return r.fault ? Either.left(fromFault(r.code, r.string)) : Either.right(r.value)
  } catch (e) {
    return Either.left(toParseError(s, e))
  }
}

/** Decodes a methodCall (used by the fake hub). */
export const decodeCall = (
  body: string | Uint8Array,
  options?: DecodeOptions
): Either.Either<MethodCall, XmlRpcParseError> => {
  const s = toText(body)
  if (typeof s !== "string") return Either.left(s)
  try {
    return Either.right(new Scanner(s, options?.preserveDoubles === true).call())
  } catch (e) {
    return Either.left(toParseError(s, e))
  }
}
