/** Bad input: every broken body gives an XmlRpcParseError naming what and where; the decoder never throws. */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { decodeCall, decodeResponse, encodeMethodCall, encodeResponse, type XmlRpcParseError, type XmlRpcValue } from "../../src/hub/xmlrpc.js"

const HEAD = "<?xml version='1.0'?>\n"
const resp = (value: string) => `${HEAD}<methodResponse>\n<params>\n<param>\n${value}</param>\n</params>\n</methodResponse>\n`

const parseError = (r: Either.Either<unknown, unknown>, label: string): XmlRpcParseError => {
  if (Either.isRight(r)) return assert.fail(`${label}: decoded to ${String(r.right)}`)
  const e = r.left as { _tag: string }
  if (e._tag !== "XmlRpcParseError") return assert.fail(`${label}: got ${e._tag}`)
  return e as XmlRpcParseError
}

type Row = readonly [label: string, body: string | Uint8Array, reason: XmlRpcParseError["reason"], detail: RegExp]

const table: ReadonlyArray<Row> = [
  ["empty body", "", "NotXml", /empty body/],
  ["whitespace only", " \n\t", "NotXml", /no XML element/],
  ["plain text 200", "Internal Server Error\n", "NotXml", /not XML: starts with "Internal Server Error/],
  ["HTML 200 page with DOCTYPE", "<!DOCTYPE html>\n<html><head><title>Koji</title></head><body>maintenance</body></html>", "NotXml", /HTML page.*at byte 0/],
  ["HTML page without DOCTYPE", "<html><body>502 Bad Gateway</body></html>", "NotXml", /root element.*<html>/],
  ["DOCTYPE with entities (billion laughs)", `${HEAD}<!DOCTYPE lolz [<!ENTITY lol "lol">]><methodResponse/>`, "NotXml", /DOCTYPE is not allowed/],
  ["JSON", '{"faultCode": 1}', "NotXml", /starts with/],
  ["truncated in a string", `${HEAD}<methodResponse><params><param><value><string>abc`, "Truncated", /document ends inside <string>/],
  ["truncated after a value", resp("<value><int>1</int></value>\n").slice(0, 70), "Truncated", /document ends/],
  ["truncated in a tag", `${HEAD}<methodResponse>\n<params>\n<param>\n<value><int>1</int></val`, "Truncated", /inside a tag/],
  ["missing closing root", `${HEAD}<methodResponse><params><param><value><int>1</int></value></param></params>`, "Truncated", /expecting <\/methodResponse>/],
  ["unterminated comment", `${HEAD}<!-- never ends`, "Truncated", /unterminated comment/],
  ["wrong nesting of close tags", resp("<value><int>1</value></int>\n"), "UnexpectedElement", /expected <\/int> but found <\/value>/],
  ["value before name in a member", resp("<value><struct><member><value><int>1</int></value><name>a</name></member></struct></value>"), "UnexpectedElement", /expected <name> but found <value>/],
  ["value directly in params", `${HEAD}<methodResponse><params><value><int>1</int></value></params></methodResponse>`, "UnexpectedElement", /expected <param> but found <value>/],
  ["element inside a string", resp("<value><string>a<b>c</b></string></value>"), "UnexpectedElement", /element <b> inside <string>/],
  ["methodCall where a response is expected", encodeMethodCall("echo", []), "UnexpectedElement", /expected <methodResponse>/],
  ["unknown type tag", resp("<value><float>1.5</float></value>"), "UnexpectedElement", /unknown type element <float>/],
  ["boolean true", resp("<value><boolean>true</boolean></value>"), "BadValue", /<boolean> holds "true"; only 0 and 1/],
  ["boolean with spaces", resp("<value><boolean> 1</boolean></value>"), "BadValue", /only 0 and 1/],
  ["int with letters", resp("<value><int>12a</int></value>"), "BadValue", /<int> holds "12a", not an integer/],
  ["empty int", resp("<value><int></int></value>"), "BadValue", /not an integer/],
  ["long garbage i8", resp(`<value><i8>${"9".repeat(30)}x</i8></value>`), "BadValue", /not an integer/],
  ["double garbage", resp("<value><double>0x10</double></value>"), "BadValue", /<double> holds "0x10"/],
  ["bad dateTime", resp("<value><dateTime.iso8601>yesterday</dateTime.iso8601></value>"), "BadValue", /dateTime/],
  ["bad base64", resp("<value><base64>!!!</base64></value>"), "BadValue", /base64/],
  ["two params in a response", `${HEAD}<methodResponse><params><param><value>a</value></param><param><value>b</value></param></params></methodResponse>`, "BadValue", /exactly one <param>, found 2/],
  ["no params in a response", `${HEAD}<methodResponse><params></params></methodResponse>`, "BadValue", /exactly one <param>, found 0/],
  ["fault without faultCode", `${HEAD}<methodResponse><fault><value><struct><member><name>faultString</name><value>x</value></member></struct></value></fault></methodResponse>`, "BadValue", /no integer faultCode/],
  ["fault that is not a struct", `${HEAD}<methodResponse><fault><value>oops</value></fault></methodResponse>`, "BadValue", /not a struct/],
  ["undefined entity", resp("<value><string>&nbsp;</string></value>"), "Malformed", /undefined entity &nbsp;/],
  ["bare ampersand", resp("<value><string>a & b</string></value>"), "Malformed", /bare '&'/],
  ["reference to NUL", resp("<value><string>&#0;</string></value>"), "Malformed", /invalid character &#0;/],
  ["reference to a control character", resp("<value><string>&#x1;</string></value>"), "Malformed", /invalid character/],
  ["text before a type element", resp("<value>abc<int>1</int></value>"), "Malformed", /text "abc<int>.*before a type element/],
  ["content after the root", resp("<value>a</value>") + "<extra/>", "Malformed", /content after <\/methodResponse>/],
  ["invalid UTF-8", new Uint8Array([...new TextEncoder().encode(resp("<value>")), 0xff, 0xfe, ...new TextEncoder().encode("</value>")]), "Malformed", new RegExp(`invalid UTF-8 at byte ${new TextEncoder().encode(resp("<value>")).length}$`)],
  ["deep nesting", resp("<value><array><data>".repeat(513) + "<value>x</value>" + "</data></array></value>".repeat(513)), "BadValue", /nested deeper than 512/],
  ["very deep nesting", resp("<value><struct><member><name>a</name>".repeat(100_000)), "BadValue", /nested deeper than 512/]
]

describe("bad input", () => {
  for (const [label, body, reason, detail] of table) {
    it(`${label} → ${reason}`, () => {
      const e = parseError(decodeResponse(body), label)
      assert.strictEqual(e.reason, reason, `${label}: ${e.detail}`)
      assert.match(e.detail, detail, label)
      // Every detail says where, except failures of the byte stream itself.
      if (!/empty body|UTF-8/.test(e.detail)) assert.match(e.detail, /at byte \d+\)$/, label)
    })
  }

  it("reports byte offsets, not UTF-16 offsets", () => {
    // "ž" and "🐎" are 2 and 4 bytes in UTF-8 but 1 and 2 UTF-16 units.
    const doc = resp("<value><array><data>\n<value>žž🐎</value>\n<value><int>x</int></value>\n</data></array></value>\n")
    const expected = new TextEncoder().encode(doc.slice(0, doc.indexOf("<int>x") + 5)).length
    assert.strictEqual(expected, doc.indexOf("<int>x") + 5 + 4)
    const fromString = parseError(decodeResponse(doc), "string")
    const fromBytes = parseError(decodeResponse(new TextEncoder().encode(doc)), "bytes")
    assert.include(fromString.detail, `at byte ${expected})`)
    assert.strictEqual(fromBytes.detail, fromString.detail)
  })

  it("decodes nesting up to the limit", () => {
    const r = decodeResponse(resp("<value><array><data>".repeat(512) + "<value>x</value>" + "</data></array></value>".repeat(512)))
    let v = Either.getOrThrow(r)
    for (let i = 0; i < 512; i++) v = (v as ReadonlyArray<XmlRpcValue>)[0]!
    assert.strictEqual(v, "x")
  })

  it("keeps integers beyond int64 as bigint (Python accepts any size)", () => {
    const r = decodeResponse(resp(`<value><i8>-${"9".repeat(40)}</i8></value>`))
    assert.deepStrictEqual(r, Either.right(-BigInt("9".repeat(40))))
  })

  it("rejects bad methodCall documents", () => {
    const rows: ReadonlyArray<readonly [string, XmlRpcParseError["reason"], RegExp]> = [
      ["<methodCall><params/></methodCall>", "UnexpectedElement", /expected <methodName> but found <params/],
      ["<methodCall><methodName></methodName></methodCall>", "BadValue", /empty <methodName>/],
      ["<methodCall><methodName>x</methodName><params><param></param></params></methodCall>", "UnexpectedElement", /expected <value> but found <\/param>/],
      ["<methodResponse/>", "UnexpectedElement", /expected <methodCall>/],
      ["", "NotXml", /empty body/]
    ]
    for (const [body, reason, detail] of rows) {
      const e = parseError(decodeCall(body), body)
      assert.strictEqual(e.reason, reason, body)
      assert.match(e.detail, detail, body)
    }
  })

  it("never throws, and reports every truncation of a valid document as Truncated", () => {
    const value: XmlRpcValue = { rpms: [{ id: 1, epoch: null, name: "a&b", size: 2n ** 40n, ok: true, t: 1.5 }], n: "ž" }
    const doc = encodeResponse(value)
    const rootEnd = doc.lastIndexOf("</methodResponse>") + "</methodResponse>".length
    const prolog = HEAD.length
    for (let cut = prolog; cut < rootEnd; cut++) {
      const e = parseError(decodeResponse(doc.slice(0, cut)), `cut at ${cut}`)
      assert.strictEqual(e.reason, "Truncated", `cut at ${cut}: ${e.detail}`)
    }
    for (let cut = 0; cut < prolog; cut++) parseError(decodeResponse(doc.slice(0, cut)), `cut at ${cut}`)
    assert.isTrue(Either.isRight(decodeResponse(doc.slice(0, rootEnd))))
  })

  it("never throws on arbitrary text or on random damage to a valid document", () => {
    const doc = encodeResponse({ a: [1, "x", null, { b: true }], c: 2.5 })
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
      const r = decodeResponse(s)
      assert.isTrue(Either.isRight(r) || "_tag" in r.left)
    }), { numRuns: 500 })
    fc.assert(fc.property(fc.nat(doc.length - 1), fc.string({ maxLength: 3 }), (at, ins) => {
      const damaged = doc.slice(0, at) + ins + doc.slice(at + 1)
      const r = decodeResponse(damaged)
      if (Either.isLeft(r) && r.left._tag === "XmlRpcParseError") assert.match(r.left.detail, /\S/)
    }), { numRuns: 1000 })
  })
})
