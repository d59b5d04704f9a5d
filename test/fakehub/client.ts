/**
 * A bare XML-RPC client for the fake hub's own tests: fetch + the codec, koji's session headers
 * and callnum counter, nothing else (the real client is src/hub/KojiHub.ts).
 */
import { Either } from "effect"
import * as http from "node:http"
import { decodeResponse, encodeMethodCall, kwargs, type XmlRpcStruct, type XmlRpcValue } from "../../src/hub/xmlrpc.js"

/** A logged-in session as the client keeps it. */
export interface Sess {
  readonly id: number
  readonly key: string
  callnum: number
}

/** The outcome of one call. */
export interface Reply {
  readonly status: number
  readonly value?: XmlRpcValue
  readonly fault?: { readonly faultCode: number; readonly faultString: string }
  readonly text: string
  readonly headers: Headers
}

/** Options of one call. */
export interface CallOpts {
  readonly session?: Sess | undefined
  /** Send this callnum instead of the session's next one (the counter is not advanced). */
  readonly callnum?: number
  /** Put the session in the URL query instead of headers. */
  readonly urlSession?: boolean
  readonly path?: string
  readonly kw?: XmlRpcStruct
}

const toReply = async (res: Response): Promise<Reply> => {
  const text = await res.text()
  if (res.status !== 200 || !(res.headers.get("content-type") ?? "").startsWith("text/xml")) {
    return { status: res.status, text, headers: res.headers }
  }
  const d = decodeResponse(text, { preserveDoubles: false })
  if (Either.isRight(d)) return { status: res.status, value: d.right, text, headers: res.headers }
  const e = d.left
  if ("faultCode" in e) return { status: 200, fault: { faultCode: e.faultCode, faultString: e.faultString }, text, headers: res.headers }
  throw new Error(`bad response: ${e.message}\n${text}`)
}

const sessionBits = (o: CallOpts): { headers: Record<string, string>; query: string } => {
  const s = o.session
  if (s === undefined) return { headers: {}, query: "" }
  const callnum = o.callnum ?? s.callnum++
  if (o.urlSession === true) {
    return { headers: {}, query: `session-id=${s.id}&session-key=${encodeURIComponent(s.key)}&callnum=${callnum}` }
  }
  return {
    headers: { "Koji-Session-Id": String(s.id), "Koji-Session-Key": s.key, "Koji-Session-Callnum": String(callnum) },
    query: ""
  }
}

/** One XML-RPC call. */
export const call = async (url: string, method: string, params: ReadonlyArray<XmlRpcValue> = [], o: CallOpts = {}): Promise<Reply> => {
  const { headers, query } = sessionBits(o)
  const all = o.kw === undefined ? params : [...params, kwargs(o.kw)]
  const target = `${url}${o.path ?? ""}${query === "" ? "" : `?${query}`}`
  const res = await fetch(target, {
    method: "POST", body: encodeMethodCall(method, all), headers: { "Content-Type": "text/xml", ...headers }
  })
  return toReply(res)
}

/** One rawUpload chunk (§6.1). */
export const rawUpload = async (
  url: string, session: Sess | undefined, q: Record<string, string>, body: Uint8Array, o: { callnum?: number; urlSession?: boolean } = {}
): Promise<Reply> => {
  const { headers, query } = sessionBits({ session, ...o })
  const qs = new URLSearchParams(q).toString()
  const res = await fetch(`${url}?${qs}${query === "" ? "" : `&${query}`}`, {
    method: "POST", body, headers: { "Content-Type": "application/octet-stream", ...headers }
  })
  return toReply(res)
}

/** Password login (+ exclusiveSession(force) when asked), returning the session. */
export const login = async (url: string, user: string, password: string, exclusive = true): Promise<Sess> => {
  const r = await call(url, "login", [user, password], { kw: { opts: null } })
  if (r.value === undefined) throw new Error(`login failed: ${JSON.stringify(r.fault ?? r.text)}`)
  const v = r.value as Record<string, XmlRpcValue>
  const s: Sess = { id: v["session-id"] as number, key: v["session-key"] as string, callnum: 0 }
  if (exclusive) {
    const e = await call(url, "exclusiveSession", [], { session: s, kw: { force: true } })
    if (e.fault !== undefined) throw new Error(`exclusiveSession failed: ${e.fault.faultString}`)
  }
  return s
}

/** subsession() of a session. */
export const subsession = async (url: string, parent: Sess): Promise<Sess> => {
  const r = await call(url, "subsession", [], { session: parent })
  const v = r.value as Record<string, XmlRpcValue>
  return { id: v["session-id"] as number, key: v["session-key"] as string, callnum: 0 }
}

/** The value of a call that must succeed. */
export const ok = async (p: Promise<Reply>): Promise<XmlRpcValue> => {
  const r = await p
  if (r.status !== 200 || r.fault !== undefined) throw new Error(`call failed: ${r.status} ${JSON.stringify(r.fault ?? r.text)}`)
  return r.value ?? null
}

/** A POST through node:http with a chosen source address (client-IP binding tests). */
export const callFrom = (
  url: string, localAddress: string, method: string, params: ReadonlyArray<XmlRpcValue>, session: Sess
): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const body = encodeMethodCall(method, params)
    const req = http.request(url, {
      method: "POST", localAddress,
      headers: {
        "Content-Type": "text/xml", "Koji-Session-Id": String(session.id), "Koji-Session-Key": session.key,
        "Koji-Session-Callnum": String(session.callnum++)
      }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => {
        const headers = new Headers()
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") headers.set(k, v)
        toReply(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers })).then(resolve, reject)
      })
    })
    req.on("error", reject)
    req.end(body)
  })
