/**
 * Contract test against real hub traffic (the raw/ dirs of koji-captures): every XML-RPC request body is
 * reproduced byte for byte by our encoder from its decoded value, every response decodes (values
 * and faults) and re-encodes byte for byte, and the methodResponse documents inside
 * host.closeTask / host.failTask are reproduced exactly (§4.5).
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { faultClasses, KojiFault } from "../../src/koji/faults.js"
import { decodeCall, decodeResponse, Double, encodeFault, encodeMethodCall, encodeResponse } from "../../src/hub/xmlrpc.js"
import { CAPTURES_DIR as CAPTURES } from "../support/captures.js"


interface HttpMessage {
  readonly file: string
  readonly startLine: string
  readonly headers: ReadonlyMap<string, string>
  readonly body: Buffer
}

const rawFiles = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (!statSync(path).isDirectory()) return []
    return name === "raw" ? readdirSync(path).map((f) => join(path, f)) : rawFiles(path)
  })

const parseHttp = (file: string): HttpMessage => {
  const bytes = readFileSync(file)
  const split = bytes.indexOf("\r\n\r\n")
  assert.isAtLeast(split, 0, `${file}: no end of headers`)
  const [startLine, ...lines] = bytes.subarray(0, split).toString("latin1").split("\r\n")
  const headers = new Map<string, string>()
  for (const line of lines) {
    const colon = line.indexOf(":")
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  const message: HttpMessage = { file, startLine: startLine!, headers, body: bytes.subarray(split + 4) }
  const length = headers.get("content-length")
  if (length !== undefined) assert.strictEqual(message.body.length, Number(length), `${file}: Content-Length`)
  return message
}

const files = rawFiles(CAPTURES).sort()
// A call still pending when a capture ended (always a blocking host.taskWait) has an empty response file.
const pending = files.filter((f) => statSync(f).size === 0)
const all = files.filter((f) => statSync(f).size > 0).map(parseHttp)
const requests = all.filter((m) => m.file.endsWith(".request"))
const responses = all.filter((m) => m.file.endsWith(".response"))
const isXml = (m: HttpMessage) => m.headers.get("content-type") === "text/xml"
/** The method in names like `0042-host.getTasks.request`; undefined for scenario names with dashes. */
const methodFromFileName = (file: string): string | undefined => {
  const m = /\/\d+-([A-Za-z0-9_.]+)\.request$/.exec(file)
  return m?.[1]
}
const unescapeXml = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&")

describe("koji-captures contract", () => {
  it("finds the captures of all three sources", () => {
    for (const dir of ["kojid", "kojilib", "raw-client"]) {
      assert.isTrue(requests.some((m) => m.file.includes(`/koji-captures/${dir}/`)), `requests from ${dir}`)
    }
    console.log(`koji-captures: ${requests.length} requests (${requests.filter(isXml).length} XML-RPC), ${responses.length} responses (${responses.filter(isXml).length} text/xml), ${pending.length} empty response files`)
    assert.isTrue(pending.every((f) => f.endsWith("-host.taskWait.response")), "only pending taskWait calls have no response")
    assert.isAtLeast(requests.filter(isXml).length, 1500)
    assert.isAtLeast(responses.filter(isXml).length, 1800)
  })

  it("re-encodes every XML-RPC request body byte for byte, with the method name of the capture", () => {
    let checked = 0
    let named = 0
    for (const req of requests.filter(isXml)) {
      const body = req.body.toString("utf8")
      const decoded = decodeCall(req.body, { preserveDoubles: true })
      if (Either.isLeft(decoded)) assert.fail(`${req.file}: ${decoded.left.message}`)
      const { methodName, params } = decoded.right
      assert.strictEqual(methodName, /<methodName>([^<]*)<\/methodName>/.exec(body)?.[1], `${req.file}: method name`)
      const fromName = methodFromFileName(req.file)
      if (fromName !== undefined) {
        assert.strictEqual(methodName, fromName, `${req.file}: method name vs file name`)
        named++
      }
      assert.strictEqual(encodeMethodCall(methodName, params), body, `${req.file}: re-encoded body`)
      checked++
    }
    console.log(`koji-captures: ${checked} request bodies re-encoded byte-identical (${named} method names also checked against file names)`)
    assert.isAtLeast(checked, 1500)
  })

  it("sees rawUpload requests as application/octet-stream (not XML-RPC), and only those", () => {
    const uploads = requests.filter((m) => m.file.endsWith("-rawUpload.request"))
    for (const req of uploads) {
      assert.strictEqual(req.headers.get("content-type"), "application/octet-stream", req.file)
      assert.match(req.startLine, /^POST \/kojihub\?filename=/, req.file)
    }
    const others = requests.filter((m) => !isXml(m) && !m.file.endsWith("-rawUpload.request"))
    // The one other non-XML request is the raw client's deliberate GET (answered 405).
    assert.deepStrictEqual(others.map((m) => m.startLine), ["GET /kojihub HTTP/1.1"])
    console.log(`koji-captures: ${uploads.length} rawUpload requests (octet-stream), skipped`)
    assert.isAtLeast(uploads.length, 300)
  })

  it("decodes every text/xml response to a value or to the fault class of its faultCode, and re-encodes it exactly", () => {
    let values = 0
    let faults = 0
    for (const res of responses.filter(isXml)) {
      const body = res.body.toString("utf8")
      const decoded = decodeResponse(res.body, { preserveDoubles: true })
      const code = /<name>faultCode<\/name>\s*<value><int>(-?\d+)<\/int>/.exec(body)
      if (code === null) {
        if (Either.isLeft(decoded)) assert.fail(`${res.file}: ${decoded.left.message}`)
        assert.strictEqual(encodeResponse(decoded.right), body, `${res.file}: re-encoded response`)
        values++
        continue
      }
      if (Either.isRight(decoded)) assert.fail(`${res.file}: a fault decoded as a value`)
      const fault = decoded.left
      if (fault._tag === "XmlRpcParseError") assert.fail(`${res.file}: ${fault.message}`)
      const faultCode = Number(code[1])
      const faultString = unescapeXml(/<name>faultString<\/name>\s*<value><string>([\s\S]*?)<\/string>/.exec(body)![1]!)
      assert.strictEqual(fault.faultCode, faultCode, res.file)
      assert.strictEqual(fault.faultString, faultString, res.file)
      const cls = faultClasses.find((c) => c.faultCode === faultCode)
      assert.isTrue(cls ? fault instanceof cls : fault instanceof KojiFault, `${res.file}: class for ${faultCode}`)
      assert.strictEqual(encodeFault(fault.faultCode, fault.faultString), body, `${res.file}: re-encoded fault`)
      faults++
    }
    console.log(`koji-captures: ${values} responses decoded to values, ${faults} to faults, all re-encoded byte-identical`)
    assert.isAtLeast(values, 1800)
    assert.isAtLeast(faults, 10)
  })

  it("decodes doubles to numbers by default and to Double with preserveDoubles", () => {
    const updateHost = requests.find((m) => m.file.endsWith("-host.updateHost.request") && m.body.includes("<double>"))!
    const plain = Either.getOrThrow(decodeCall(updateHost.body))
    const kept = Either.getOrThrow(decodeCall(updateHost.body, { preserveDoubles: true }))
    assert.strictEqual(typeof plain.params[0], "number")
    assert.instanceOf(kept.params[0], Double)
    assert.strictEqual((kept.params[0] as Double).value, plain.params[0])
  })
})

describe("closeTask / failTask documents (§4.5)", () => {
  const taskReports = requests.filter((m) => /-host\.(closeTask|failTask)\.request$/.test(m.file))

  it("reproduces each captured result document byte for byte", () => {
    let closed = 0
    let failed = 0
    for (const req of taskReports) {
      const call = Either.getOrThrow(decodeCall(req.body))
      const [taskId, document] = call.params
      assert.strictEqual(typeof taskId, "number", req.file)
      if (typeof document !== "string") return assert.fail(`${req.file}: result is not a string`)
      // The hub reads the result as XML only when "<?xml" is within the first 10 characters.
      assert.isTrue(document.slice(0, 10).includes("<?xml"), req.file)
      const result = decodeResponse(document, { preserveDoubles: true })
      if (call.methodName === "host.closeTask") {
        if (Either.isLeft(result)) return assert.fail(`${req.file}: ${result.left.message}`)
        assert.strictEqual(encodeResponse(result.right), document, req.file)
        closed++
      } else {
        if (Either.isRight(result) || result.left._tag === "XmlRpcParseError") return assert.fail(`${req.file}: not a fault`)
        assert.strictEqual(encodeFault(result.left.faultCode, result.left.faultString), document, req.file)
        failed++
      }
    }
    console.log(`koji-captures: ${closed} closeTask and ${failed} failTask documents reproduced`)
    assert.isAtLeast(closed, 20)
    assert.isAtLeast(failed, 5)
  })

  it("builds a buildArch result document identical to the one kojid sent", () => {
    const req = taskReports.find((m) => m.body.includes("brootid") && m.body.includes("rpms"))!
    const document = Either.getOrThrow(decodeCall(req.body)).params[1] as string
    const value = Either.getOrThrow(decodeResponse(document))
    const rpms = (value as { readonly rpms: ReadonlyArray<string> }).rpms
    assert.isTrue(rpms.length > 0 && rpms.every((p) => /^tasks\/\d+\/\d+\/.+\.rpm$/.test(p)), "buildArch rpms")
    assert.strictEqual(encodeResponse(value), document)
    assert.isTrue(document.startsWith("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n"))
  })
})
