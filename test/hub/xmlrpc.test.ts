/** Encoder output against Python/koji marshaller bytes, and decoder coverage of the dialect (§1.2–1.4, §1.8). */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { AuthError, GenericError, KojiFault } from "../../src/koji/faults.js"
import {
  decodeCall, decodeMultiCallResult, decodeResponse, Double, encodeMethodCall, encodeMultiCall,
  encodeResponse, kwargs, pythonFloatRepr, splitKwargs, type XmlRpcValue
} from "../../src/hub/xmlrpc.js"

const HEAD = "<?xml version='1.0'?>\n"
/** A methodResponse document around the given `<value>` text (Python's layout). */
const resp = (value: string) => `${HEAD}<methodResponse>\n<params>\n<param>\n${value}</param>\n</params>\n</methodResponse>\n`
const decodeValue = (value: string): XmlRpcValue => {
  const r = decodeResponse(resp(value))
  if (Either.isLeft(r)) return assert.fail(`decode failed: ${r.left.message}`)
  return r.right
}

describe("encoder matches koji's marshaller byte for byte", () => {
  it("writes a struct of every scalar kind exactly as koji's ExtendedMarshaller does", () => {
    // Produced by Python 3.11 xmlrpc.client.Marshaller with koji's dump_int (i8) override.
    const python =
      "<value><struct>\n<member>\n<name>a</name>\n<value><nil/></value></member>\n<member>\n<name>big</name>\n" +
      "<value><i8>1099511627776</i8></value>\n</member>\n<member>\n<name>neg</name>\n<value><i8>-2147483649</i8></value>\n" +
      "</member>\n<member>\n<name>max</name>\n<value><i8>9223372036854775807</i8></value>\n</member>\n<member>\n" +
      "<name>i32</name>\n<value><int>-2147483648</int></value>\n</member>\n<member>\n<name>b</name>\n" +
      "<value><boolean>0</boolean></value>\n</member>\n<member>\n<name>t</name>\n<value><boolean>1</boolean></value>\n" +
      "</member>\n<member>\n<name>s</name>\n<value><string>x&lt;y&gt;&amp;z\"'</string></value>\n</member>\n<member>\n" +
      "<name>l</name>\n<value><array><data>\n</data></array></value>\n</member>\n<member>\n<name>e</name>\n" +
      "<value><struct>\n</struct></value>\n</member>\n<member>\n<name>u</name>\n<value><string>žluťoučký 🐎</string></value>\n" +
      "</member>\n</struct></value>\n"
    const value = {
      a: null, big: 2 ** 40, neg: -(2 ** 31) - 1, max: 2n ** 63n - 1n, i32: -(2 ** 31), b: false, t: true,
      s: "x<y>&z\"'", l: [], e: {}, u: "žluťoučký 🐎"
    }
    assert.strictEqual(encodeResponse(value), resp(python))
  })

  it("writes a multiCall exactly as Python does, keyword struct last (§1.3, §1.8)", () => {
    const python =
      "<?xml version='1.0'?>\n<methodCall>\n<methodName>multiCall</methodName>\n<params>\n<param>\n<value><array><data>\n" +
      "<value><struct>\n<member>\n<name>methodName</name>\n<value><string>getTag</string></value>\n</member>\n<member>\n" +
      "<name>params</name>\n<value><array><data>\n<value><int>1</int></value>\n</data></array></value>\n</member>\n" +
      "</struct></value>\n<value><struct>\n<member>\n<name>methodName</name>\n<value><string>echo</string></value>\n" +
      "</member>\n<member>\n<name>params</name>\n<value><array><data>\n<value><string>a</string></value>\n" +
      "<value><struct>\n<member>\n<name>x</name>\n<value><double>1.5</double></value>\n</member>\n<member>\n" +
      "<name>__starstar</name>\n<value><boolean>1</boolean></value>\n</member>\n</struct></value>\n</data></array></value>\n" +
      "</member>\n</struct></value>\n</data></array></value>\n</param>\n</params>\n</methodCall>\n"
    const params = encodeMultiCall([
      { methodName: "getTag", params: [1] },
      { methodName: "echo", params: ["a", kwargs({ x: 1.5 })] }
    ])
    assert.strictEqual(encodeMethodCall("multiCall", params), python)
  })

  it("writes a call without params, base64 in 76-column lines and dateTime as Python does", () => {
    assert.strictEqual(encodeMethodCall("host.getID", []),
      "<?xml version='1.0'?>\n<methodCall>\n<methodName>host.getID</methodName>\n<params>\n</params>\n</methodCall>\n")
    const b64 =
      "<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n<param>\n<value><base64>\n</base64></value>\n" +
      "</param>\n<param>\n<value><base64>\nYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\n" +
      "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYQ==\n</base64></value>\n</param>\n<param>\n" +
      "<value><base64>\neHl6\n</base64></value>\n</param>\n</params>\n</methodCall>\n"
    const enc = new TextEncoder()
    assert.strictEqual(encodeMethodCall("m", [new Uint8Array(0), enc.encode("a".repeat(100)), enc.encode("xyz")]), b64)
    assert.strictEqual(encodeMethodCall("m", [new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678))]),
      "<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n<param>\n" +
      "<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>\n</param>\n</params>\n</methodCall>\n")
  })

  it("formats doubles as Python's repr", () => {
    // [value, repr(value)] pairs printed by CPython 3.11.
    const table: ReadonlyArray<readonly [number, string]> = [
      [0.0, "0.0"], [-0.0, "-0.0"], [0.2, "0.2"], [1.5, "1.5"], [1.0, "1.0"], [1e20, "1e+20"], [1e16, "1e+16"],
      [1e15, "1000000000000000.0"], [123456789012345678, "1.2345678901234568e+17"],
      [9999999999999998, "9999999999999998.0"], [1e-4, "0.0001"], [1e-5, "1e-05"], [0.1 + 0.2, "0.30000000000000004"],
      [1795555391.136821, "1795555391.136821"], [5e-324, "5e-324"], [1.7976931348623157e308, "1.7976931348623157e+308"],
      [2.5e-7, "2.5e-07"], [12345000000000, "12345000000000.0"], [-1.5e-10, "-1.5e-10"], [100, "100.0"],
      [1e22, "1e+22"], [0.00012345, "0.00012345"], [123.456, "123.456"], [-2, "-2.0"], [1e100, "1e+100"],
      [3.14159e-300, "3.14159e-300"], [Number.NaN, "nan"], [Infinity, "inf"], [-Infinity, "-inf"]
    ]
    for (const [value, repr] of table) {
      assert.strictEqual(pythonFloatRepr(value), repr, `repr(${value})`)
      assert.strictEqual(encodeResponse(new Double(value)), resp(`<value><double>${repr}</double></value>\n`))
    }
    assert.strictEqual(encodeResponse(0.2), resp("<value><double>0.2</double></value>\n"))
    assert.strictEqual(encodeResponse(Number.NaN), resp("<value><double>nan</double></value>\n"))
  })

  it("chooses int, i8 or an error by magnitude, for numbers and bigints alike", () => {
    const cases: ReadonlyArray<readonly [number | bigint, string]> = [
      [0, "<int>0</int>"], [-0, "<int>0</int>"], [2147483647, "<int>2147483647</int>"], [-2147483648, "<int>-2147483648</int>"],
      [2147483648, "<i8>2147483648</i8>"], [-2147483649, "<i8>-2147483649</i8>"], [5n, "<int>5</int>"],
      [2 ** 53, "<i8>9007199254740992</i8>"], [2 ** 62, "<i8>4611686018427387904</i8>"],
      [-(2n ** 63n), "<i8>-9223372036854775808</i8>"], [2n ** 63n - 1n, "<i8>9223372036854775807</i8>"]
    ]
    for (const [v, xml] of cases) assert.strictEqual(encodeResponse(v), resp(`<value>${xml}</value>\n`), String(v))
    for (const v of [2n ** 63n, -(2n ** 63n) - 1n, 1e20, -1e19]) {
      assert.throws(() => encodeResponse(v), /beyond int64/, undefined, String(v))
    }
  })

  it("removes XML-illegal characters and lone surrogates, keeps tab, newline, CR and astral characters", () => {
    const dirty = "a\u0000b\u0001\u0008\u000b\u000c\u000e\u001f\ufffe\uffff\t\n\rc\ud800d\udc00e\ud83d\ude00\u007f\u0085"
    assert.strictEqual(encodeResponse(dirty), resp("<value><string>ab\t\n\rcde\ud83d\ude00\u007f\u0085</string></value>\n"))
    assert.strictEqual(encodeResponse({ "k\u0001<": 1 }), resp("<value><struct>\n<member>\n<name>k&lt;</name>\n<value><int>1</int></value>\n</member>\n</struct></value>\n"))
  })

  it("rejects values XML-RPC cannot carry: recursion, invalid dates, functions", () => {
    const loop: Array<XmlRpcValue> = []
    loop.push(loop)
    assert.throws(() => encodeResponse(loop), /recursive/)
    assert.throws(() => encodeResponse(new Date(Number.NaN)), /invalid Date/)
    // A function is not an XmlRpcValue; the cast reaches the runtime check that guards untyped callers.
    assert.throws(() => encodeResponse((() => 1) as unknown as XmlRpcValue), /type function/)
    assert.throws(() => encodeResponse(new Map([["a", 1]]) as unknown as XmlRpcValue), /cannot encode a Map/)
    assert.throws(() => encodeResponse(new Uint16Array(2) as unknown as XmlRpcValue), /cannot encode a Uint16Array/)
    // Shared (non-recursive) references are fine.
    const shared = { a: 1 }
    assert.include(encodeResponse([shared, shared]), "</data></array>")
  })

  it("omits struct members whose value is undefined (optional fields)", () => {
    const v: { readonly [k: string]: XmlRpcValue } = { a: 1 }
    const withUndefined = { ...v, b: undefined } as unknown as XmlRpcValue // runtime shape of an unset optional field
    assert.strictEqual(encodeResponse(withUndefined), encodeResponse(v))
  })
})

describe("keyword arguments (§1.3)", () => {
  it("kwargs appends __starstar last and splitKwargs takes it off again", () => {
    const kw = kwargs({ data: { methods: "build" }, task_load: new Double(0) })
    assert.deepStrictEqual(Object.keys(kw), ["data", "task_load", "__starstar"])
    const call = encodeMethodCall("host.updateHost", [new Double(1.5), true, kw])
    const params = Either.getOrThrow(decodeCall(call)).params
    const { args, kwargs: got } = splitKwargs(params)
    assert.deepStrictEqual(args, [1.5, true])
    assert.deepStrictEqual(got, { data: { methods: "build" }, task_load: 0 })
  })

  it("leaves params alone when the last struct has no true __starstar", () => {
    for (const params of [[1, { a: 1 }], [1, { __starstar: false }], [], [[{ __starstar: true }]]] as const) {
      const r = splitKwargs(params)
      assert.strictEqual(r.args, params)
      assert.deepStrictEqual(r.kwargs, {})
    }
    assert.deepStrictEqual(splitKwargs([{ __starstar: 1, x: null }]), { args: [], kwargs: { x: null } })
  })
})

describe("decoder", () => {
  it("reads untyped and empty values as strings", () => {
    assert.strictEqual(decodeValue("<value>plain &amp; simple</value>"), "plain & simple")
    assert.strictEqual(decodeValue("<value></value>"), "")
    assert.strictEqual(decodeValue("<value/>"), "")
    assert.strictEqual(decodeValue("<value>  </value>"), "  ")
    assert.strictEqual(decodeValue("<value><string/></value>"), "")
    assert.strictEqual(decodeValue("<value><string></string></value>"), "")
  })

  it("reads every integer tag, as number when safe and bigint beyond 2^53", () => {
    for (const tag of ["int", "i4", "i8", "i1", "i2", "biginteger"]) {
      assert.strictEqual(decodeValue(`<value><${tag}>-42</${tag}></value>`), -42, tag)
    }
    assert.strictEqual(decodeValue("<value><int> +12 </int></value>"), 12)
    assert.strictEqual(decodeValue("<value><i8>9007199254740991</i8></value>"), 9007199254740991)
    assert.strictEqual(decodeValue("<value><i8>9007199254740992</i8></value>"), 9007199254740992n)
    assert.strictEqual(decodeValue("<value><i8>-9223372036854775808</i8></value>"), -(2n ** 63n))
    assert.strictEqual(decodeValue("<value><int>-0</int></value>"), 0)
    assert.isTrue(Object.is(decodeValue("<value><int>-0</int></value>"), 0))
    // Python's int() takes any size, so does the decoder.
    assert.strictEqual(decodeValue("<value><int>123456789012345678901234567890</int></value>"), 123456789012345678901234567890n)
  })

  it("reads nil with or without a namespace prefix", () => {
    assert.strictEqual(decodeValue("<value><nil/></value>"), null)
    assert.strictEqual(decodeValue("<value><nil></nil></value>"), null)
    assert.strictEqual(decodeValue('<value><ex:nil xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"/></value>'), null)
    assert.strictEqual(decodeValue("<value><ex:nil></ex:nil></value>"), null)
    assert.strictEqual(decodeValue("<value><ex:i8>7</ex:i8></value>"), 7)
  })

  it("reads booleans, doubles, dateTime and base64", () => {
    assert.strictEqual(decodeValue("<value><boolean>1</boolean></value>"), true)
    assert.strictEqual(decodeValue("<value><boolean>0</boolean></value>"), false)
    assert.strictEqual(decodeValue("<value><double>1795555391.136821</double></value>"), 1795555391.136821)
    assert.strictEqual(decodeValue("<value><double>1e+20</double></value>"), 1e20)
    assert.strictEqual(decodeValue("<value><double>-inf</double></value>"), -Infinity)
    assert.isNaN(decodeValue("<value><double>nan</double></value>") as number)
    assert.deepStrictEqual(decodeValue("<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>"), new Date(Date.UTC(2024, 0, 2, 3, 4, 5)))
    assert.deepStrictEqual(decodeValue("<value><dateTime.iso8601>2024-01-02T03:04:05Z</dateTime.iso8601></value>"), new Date(Date.UTC(2024, 0, 2, 3, 4, 5)))
    assert.deepStrictEqual(decodeValue("<value><base64>\neHl6\n</base64></value>"), new TextEncoder().encode("xyz"))
    assert.deepStrictEqual(decodeValue("<value><base64></base64></value>"), new Uint8Array(0))
  })

  it("allows whitespace and comments between tags, entity and character references, CDATA", () => {
    const doc =
      "\ufeff  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<!-- hub -->\n<methodResponse >\n  <params>\n <param>\n" +
      "  <value>\n <struct>\n <member> <name>a&amp;b</name>\n <value> <array> <data> \n" +
      "<value><string>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#x1F600;</string></value>\n" +
      "<value><string><![CDATA[<raw> & ]]>tail</string></value>\n" +
      "<value><![CDATA[x]]></value>\n" +
      "<value> <!-- c --> <int>3</int> </value>\n" +
      "<value><string>a\r\nb\rc</string></value>\n" +
      " </data> </array> </value>\n </member>\n </struct>\n </value>\n </param>\n </params>\n</methodResponse>\n<!-- end -->\n"
    const r = decodeResponse(doc)
    if (Either.isLeft(r)) return assert.fail(r.left.message)
    assert.deepStrictEqual(r.right, { "a&b": ["<>&\"'AB\u{1F600}", "<raw> & tail", "x", 3, "a\nb\nc"] })
  })

  it("reads member names right in lists of structs whose names differ by prefix, entities or order", () => {
    const value: XmlRpcValue = [
      { abc: 1, x: 2 }, { ab: 2, x: 3 }, { abcd: 3 }, { "a&b": 4 }, { "a&b": 5, "<n>": 6 }, { x: 7, abc: 8 }, { "": 9 }, { abc: 10 }
    ]
    assert.deepStrictEqual(Either.getOrThrow(decodeResponse(encodeResponse(value))), value)
    const raw = "<value><array><data><value><struct><member><name>a&amp;b</name><value>1</value></member></struct></value>" +
      "<value><struct><member><name>a&amp;b</name><value>2</value></member></struct></value></data></array></value>"
    assert.deepStrictEqual(decodeValue(raw), [{ "a&b": "1" }, { "a&b": "2" }])
  })

  it("keeps a __proto__ member as an own property and never touches prototypes", () => {
    const v = decodeValue(
      "<value><struct>\n<member>\n<name>__proto__</name>\n<value><struct>\n<member>\n<name>polluted</name>\n" +
      "<value><boolean>1</boolean></value>\n</member>\n</struct></value>\n</member>\n</struct></value>\n"
    ) as { readonly [k: string]: XmlRpcValue }
    assert.strictEqual(Object.getPrototypeOf(v), Object.prototype)
    assert.deepStrictEqual(Object.keys(v), ["__proto__"])
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(v, "__proto__")?.value, { polluted: true })
    assert.isUndefined(({} as { polluted?: boolean }).polluted)
    assert.isUndefined((v as { polluted?: boolean }).polluted)
  })

  it("decodes the Uint8Array and string forms of a body alike, including multi-byte UTF-8", () => {
    const text = encodeResponse({ name: "žluťoučký kůň 🐎", n: 1 })
    assert.deepStrictEqual(decodeResponse(new TextEncoder().encode(text)), decodeResponse(text))
    assert.deepStrictEqual(Either.getOrThrow(decodeResponse(text)), { name: "žluťoučký kůň 🐎", n: 1 })
  })

  it("decodes a methodCall, with or without <params>", () => {
    assert.deepStrictEqual(Either.getOrThrow(decodeCall(encodeMethodCall("echo", ["a", 1, null]))), { methodName: "echo", params: ["a", 1, null] })
    assert.deepStrictEqual(Either.getOrThrow(decodeCall("<methodCall><methodName>host.getID</methodName></methodCall>")), { methodName: "host.getID", params: [] })
    assert.deepStrictEqual(Either.getOrThrow(decodeCall("<methodCall><methodName>x</methodName><params/></methodCall>")), { methodName: "x", params: [] })
  })
})

describe("multiCall results (§1.8)", () => {
  it("splits results into values and fault classes in order", () => {
    const result: XmlRpcValue = [
      [1], { faultCode: 1000, faultString: "Invalid method: x" }, [null],
      { faultCode: 1, faultString: "<class 'X'>: boom", traceback: ["line 1"] }, [[1, 2]], { faultCode: 1002, faultString: "no" }
    ]
    const r = Either.getOrThrow(decodeMultiCallResult(result))
    assert.strictEqual(r.length, 6)
    assert.deepStrictEqual(r[0], Either.right(1))
    assert.isTrue(Either.isLeft(r[1]!) && r[1].left instanceof GenericError && r[1].left.faultString === "Invalid method: x")
    assert.deepStrictEqual(r[2], Either.right(null))
    const kf = r[3]!
    assert.isTrue(Either.isLeft(kf) && kf.left instanceof KojiFault && kf.left.faultCode === 1)
    assert.deepStrictEqual(r[4], Either.right([1, 2]))
    assert.isTrue(Either.isLeft(r[5]!) && r[5].left instanceof AuthError)
  })

  it("rejects results of the wrong shape", () => {
    for (const bad of [{ a: 1 }, [[1, 2]], [{ faultCode: "x", faultString: "y" }], ["s"], 3] as ReadonlyArray<XmlRpcValue>) {
      const r = decodeMultiCallResult(bad)
      assert.isTrue(Either.isLeft(r) && r.left.reason === "BadValue", JSON.stringify(bad))
    }
  })

  it("round-trips a multiCall request through decodeCall", () => {
    const call = Either.getOrThrow(decodeCall(encodeMethodCall("multiCall", encodeMultiCall([{ methodName: "getTag", params: ["f40", kwargs({ strict: true })] }]))))
    assert.deepStrictEqual(call, { methodName: "multiCall", params: [[{ methodName: "getTag", params: ["f40", { strict: true, __starstar: true }] }]] })
  })
})
