/** Fault documents (§1.4, §2, §4.5): encodeFault → decodeResponse gives the koji class, code and string exactly. */
import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { type Fault, faultClasses, fromFault, KojiFault, toFaultStruct } from "../../src/koji/faults.js"
import { decodeResponse, encodeFault, escapeText } from "../../src/hub/xmlrpc.js"

const decodeFault = (doc: string): Fault => {
  const r = decodeResponse(doc)
  if (Either.isRight(r)) return assert.fail("a fault document decoded as a value")
  if (r.left._tag === "XmlRpcParseError") return assert.fail(r.left.message)
  return r.left
}

describe("fault documents", () => {
  it("writes Python's fault layout", () => {
    assert.strictEqual(encodeFault(1005, "bad <x> & y"),
      "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n" +
      "<value><int>1005</int></value>\n</member>\n<member>\n<name>faultString</name>\n" +
      "<value><string>bad &lt;x&gt; &amp; y</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n")
  })

  it("gives each of the 25 koji codes its class, with the exact code and string", () => {
    assert.strictEqual(faultClasses.length, 25)
    for (const cls of faultClasses) {
      const faultString = `${cls.name} failed: <tag> & "quotes"\nsecond line ✓`
      const fault = decodeFault(encodeFault(cls.faultCode, faultString))
      assert.isTrue(fault instanceof cls, cls.name)
      assert.strictEqual(fault._tag, cls.name)
      assert.deepStrictEqual(toFaultStruct(fault), { faultCode: cls.faultCode, faultString })
      assert.strictEqual(encodeFault(fault.faultCode, fault.faultString), encodeFault(cls.faultCode, faultString))
    }
  })

  it("keeps any other code as a KojiFault with that code", () => {
    for (const code of [1, 0, -1, 999, 1025, 2000, 2147483647, -2147483648]) {
      const fault = decodeFault(encodeFault(code, `Traceback (most recent call last):\n  code ${code}`))
      assert.instanceOf(fault, KojiFault)
      assert.deepStrictEqual(toFaultStruct(fault), { faultCode: code, faultString: `Traceback (most recent call last):\n  code ${code}` })
    }
  })

  it("round-trips any code and string exactly (control characters are dropped on the way out)", () => {
    fc.assert(fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.string({ unit: "binary", maxLength: 80 }), (code, s) => {
      const fault = decodeFault(encodeFault(code, s))
      // What survives the wire: XML-illegal characters removed, CR/CRLF read back as LF (XML line ends).
      const wire = escapeText(s).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&").replace(/\r\n?/g, "\n")
      assert.deepStrictEqual(toFaultStruct(fault), { faultCode: code, faultString: wire })
      assert.deepStrictEqual(toFaultStruct(fault), toFaultStruct(fromFault(code, wire)))
    }), { numRuns: 300 })
  })

  it("accepts extra members such as a traceback, and a fault struct in any member order", () => {
    const doc = "<?xml version='1.0'?><methodResponse><fault><value><struct>" +
      "<member><name>faultString</name><value><string>x</string></value></member>" +
      "<member><name>traceback</name><value><array><data><value>t</value></data></array></value></member>" +
      "<member><name>faultCode</name><value><int>1002</int></value></member>" +
      "</struct></value></fault></methodResponse>"
    assert.deepStrictEqual(toFaultStruct(decodeFault(doc)), { faultCode: 1002, faultString: "x" })
  })

  it("rejects a non-integer faultCode when encoding", () => {
    assert.throws(() => encodeFault(1.5, "x"), /integer/)
  })
})
