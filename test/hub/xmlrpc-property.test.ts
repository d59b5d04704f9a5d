/** Codec property tests: random value trees survive encode → decode as the wire allows (§1.2). */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import {
  decodeCall, decodeResponse, Double, encodeMethodCall, encodeResponse, pythonFloatRepr, type XmlRpcValue
} from "../../src/hub/xmlrpc.js"

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
const SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/** Integers around the int32, 2^53 and int64 edges, as number or bigint. */
const edgeBigint = fc.oneof(
  ...[2n ** 31n, 2n ** 53n, 2n ** 63n].flatMap((edge) => [
    fc.bigInt({ min: edge - 300n, max: edge - 1n }),
    fc.bigInt({ min: -edge, max: -edge + 300n })
  ]),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX })
)
const integer = fc.oneof(
  fc.integer(),
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  edgeBigint,
  edgeBigint.filter((b) => b >= -SAFE && b <= SAFE).map(Number)
)
/** Strings with control characters, lone surrogates, CR/LF, markup characters and astral unicode. */
const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.string({ unit: fc.constantFrom("a", "&", "<", ">", "\"", "'", "\r", "\n", "\t", "\u0000", "\u0008", "\u001f", "\ud800", "\udc00", "\ufffe", "ž", "🐎", " ", "]]>", "&amp;"), maxLength: 20 }),
  fc.string({ unit: "grapheme", maxLength: 20 })
)
const double = fc.double().filter((d) => !Number.isInteger(d) || !Number.isFinite(d))
const date = fc.date({ min: new Date("0001-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true })

const { value } = fc.letrec<{ value: XmlRpcValue; leaf: XmlRpcValue }>((tie) => ({
  leaf: fc.oneof(
    fc.constant(null), fc.boolean(), integer, double, double.map((d) => new Double(d)),
    fc.integer({ min: -1000, max: 1000 }).map((i) => new Double(i)), text, date, fc.uint8Array({ maxLength: 100 })
  ),
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    tie("leaf"),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.oneof(text, fc.constantFrom("__proto__", "constructor", "toString", "__starstar", "1", "")), tie("value"), { maxKeys: 5 })
  )
}))

/** What the wire makes of a string: XML-illegal characters dropped, CR and CRLF read as LF. */
const wireString = (s: string): string => {
  let out = ""
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff) {
      out += s.slice(i, i + 2)
      i++
    } else if (!((c < 0x20 && c !== 9 && c !== 10 && c !== 13) || (c >= 0xd800 && c <= 0xdfff) || c === 0xfffe || c === 0xffff)) {
      out += s[i]
    }
  }
  return out.replace(/\r\n?/g, "\n")
}

/** True when some string or struct key in `v` is not what the wire gives back. */
const hasTextTheWireChanges = (v: XmlRpcValue): boolean => {
  if (typeof v === "string") return wireString(v) !== v
  if (Array.isArray(v)) return (v as ReadonlyArray<XmlRpcValue>).some(hasTextTheWireChanges)
  if (v === null || typeof v !== "object" || v instanceof Double || v instanceof Date || v instanceof Uint8Array) return false
  const struct = v as { readonly [k: string]: XmlRpcValue }
  return Object.keys(struct).some((k) => wireString(k) !== k || hasTextTheWireChanges(struct[k]!))
}

/** The value a decoder must give back for `v` (doubles as numbers unless `keepDoubles`). */
const expected = (v: XmlRpcValue, keepDoubles: boolean): XmlRpcValue => {
  if (v === null || typeof v === "boolean") return v
  if (typeof v === "string") return wireString(v)
  if (typeof v === "number") {
    if (!Number.isInteger(v)) return keepDoubles ? new Double(v) : v
    if (Number.isSafeInteger(v)) return v === 0 ? 0 : v
    return BigInt(v)
  }
  if (typeof v === "bigint") return v >= -SAFE && v <= SAFE ? Number(v) : v
  if (v instanceof Double) return keepDoubles ? v : v.value
  if (v instanceof Date) return new Date(Math.floor(v.getTime() / 1000) * 1000)
  if (v instanceof Uint8Array) return v
  if (Array.isArray(v)) return (v as ReadonlyArray<XmlRpcValue>).map((x) => expected(x, keepDoubles))
  const out: Record<string, XmlRpcValue> = {}
  const struct = v as { readonly [k: string]: XmlRpcValue }
  for (const key of Object.keys(struct)) {
    Object.defineProperty(out, wireString(key), { value: expected(struct[key]!, keepDoubles), enumerable: true, writable: true, configurable: true })
  }
  return out
}

describe("codec round trips", () => {
  it("encodeResponse → decodeResponse gives the value back (as the wire allows)", () => {
    fc.assert(fc.property(value, (v) => {
      const r = decodeResponse(encodeResponse(v))
      if (Either.isLeft(r)) return assert.fail(r.left.message)
      assert.deepStrictEqual(r.right, expected(v, false))
    }), { numRuns: 400 })
  })

  it("encodeMethodCall → decodeCall gives the name and params back, doubles kept with preserveDoubles", () => {
    const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.]{0,30}$/)
    fc.assert(fc.property(name, fc.array(value, { maxLength: 4 }), (methodName, params) => {
      const r = decodeCall(encodeMethodCall(methodName, params), { preserveDoubles: true })
      if (Either.isLeft(r)) return assert.fail(r.left.message)
      assert.strictEqual(r.right.methodName, methodName)
      assert.deepStrictEqual(r.right.params, params.map((p) => expected(p, true)))
    }), { numRuns: 300 })
  })

  it("re-encoding a decoded document reproduces it byte for byte (preserveDoubles)", () => {
    fc.assert(fc.property(value, (v) => {
      const once = encodeResponse(v)
      const twice = encodeResponse(Either.getOrThrow(decodeResponse(once, { preserveDoubles: true })))
      // Only what the wire changes may change: CR read back as LF, struct keys that collide once
      // illegal characters are dropped.
      assert.strictEqual(twice, encodeResponse(expected(v, true)))
      if (!hasTextTheWireChanges(v)) {
        assert.strictEqual(twice, once)
      }
      assert.strictEqual(encodeResponse(Either.getOrThrow(decodeResponse(twice, { preserveDoubles: true }))), twice)
    }), { numRuns: 300 })
  })

  it("keeps bigints at the int64 edges and numbers at the 2^53 edge exact", () => {
    const edges: ReadonlyArray<number | bigint> = [
      INT64_MIN, INT64_MAX, INT64_MIN + 1n, INT64_MAX - 1n, SAFE, SAFE + 1n, -SAFE, -SAFE - 1n,
      Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53, -(2 ** 53), 2147483647, 2147483648, -2147483648, -2147483649
    ]
    const r = Either.getOrThrow(decodeResponse(encodeResponse(edges)))
    assert.deepStrictEqual(r, edges.map((e) => expected(e, false)))
    assert.deepStrictEqual((r as ReadonlyArray<XmlRpcValue>).slice(0, 2), [INT64_MIN, INT64_MAX])
  })

  it("formats every double as a Python repr that reads back as the same number", () => {
    const shape = /^-?(?:\d+\.\d+|\d(?:\.\d+)?e[+-]\d{2,3})$/
    fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (d) => {
      const repr = pythonFloatRepr(d)
      assert.match(repr, shape)
      assert.isTrue(Object.is(Number(repr), d), `${repr} reads back as ${Number(repr)}, not ${d}`)
      const abs = Math.abs(d)
      // Python switches to exponent notation outside 1e-4 <= |x| < 1e16.
      if (abs !== 0) assert.strictEqual(repr.includes("e"), abs < 1e-4 || abs >= 1e16, repr)
    }), { numRuns: 2000 })
  })
})
