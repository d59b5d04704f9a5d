/**
 * Test support for the build handlers: minimal RPM packages made in memory (lead, signature
 * header, main header with the tags kojid and the hub read), a fake-hub world with a target,
 * and stub `rebuildSRPM` / `buildArch` handlers that write their results straight into the fake
 * hub's work directory (as if uploaded) and register a buildroot.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import { parseRpmHeader } from "../../src/buildroot/rpmHeader.js"
import { BuildError } from "../../src/koji/faults.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import { AnyValue, defineHandler, optional, required, signature, type TaskHandler } from "../../src/tasks/handler.js"
import { taskRelPath } from "../../src/koji/paths.js"
import { addRepo, addTag, buildrootTables } from "../fakehub/buildroots.js"
import { addPackage, addTarget } from "../fakehub/targets.js"

/** What goes into a test package. */
export interface RpmSpec {
  readonly name: string
  readonly version: string
  readonly release: string
  readonly epoch?: number | null
  readonly arch: string
  readonly source: boolean
  readonly sourcerpm?: string
  readonly buildArchs?: ReadonlyArray<string>
  readonly exclusiveArch?: ReadonlyArray<string>
  readonly excludeArch?: ReadonlyArray<string>
  readonly packager?: string
}

const headerBytes = (entries: ReadonlyArray<readonly [number, number, Buffer, number]>): Buffer => {
  const index: Array<Buffer> = []
  const store: Array<Buffer> = []
  let offset = 0
  for (const [tag, type, data, count] of entries) {
    if (type === 4) {
      const pad = (4 - (offset % 4)) % 4
      if (pad > 0) {
        store.push(Buffer.alloc(pad))
        offset += pad
      }
    }
    const e = Buffer.alloc(16)
    e.writeUInt32BE(tag, 0)
    e.writeUInt32BE(type, 4)
    e.writeUInt32BE(offset, 8)
    e.writeUInt32BE(count, 12)
    index.push(e)
    store.push(data)
    offset += data.length
  }
  const head = Buffer.alloc(16)
  Buffer.from([0x8e, 0xad, 0xe8, 0x01]).copy(head, 0)
  head.writeUInt32BE(entries.length, 8)
  head.writeUInt32BE(offset, 12)
  return Buffer.concat([head, ...index, ...store])
}

const str = (tag: number, s: string): readonly [number, number, Buffer, number] => [tag, 6, Buffer.from(`${s}\0`), 1]
const strs = (tag: number, l: ReadonlyArray<string>): readonly [number, number, Buffer, number] =>
  [tag, 8, Buffer.from(l.map((s) => `${s}\0`).join("")), l.length]
const int = (tag: number, n: number): readonly [number, number, Buffer, number] => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return [tag, 4, b, 1]
}

/** A minimal but well-formed RPM package (no payload) with the given header fields. */
export const makeRpm = (spec: RpmSpec): Buffer => {
  const lead = Buffer.alloc(96)
  Buffer.from([0xed, 0xab, 0xee, 0xdb, 3, 0]).copy(lead, 0)
  lead.writeUInt16BE(spec.source ? 1 : 0, 6)
  const sig = headerBytes([])
  const entries: Array<readonly [number, number, Buffer, number]> = [
    str(1000, spec.name), str(1001, spec.version), str(1002, spec.release)
  ]
  if (spec.epoch !== undefined && spec.epoch !== null) entries.push(int(1003, spec.epoch))
  if (spec.packager !== undefined) entries.push(str(1015, spec.packager))
  entries.push(str(1022, spec.arch))
  if (!spec.source) entries.push(str(1044, spec.sourcerpm ?? `${spec.name}-${spec.version}-${spec.release}.src.rpm`))
  if (spec.excludeArch !== undefined && spec.excludeArch.length > 0) entries.push(strs(1059, spec.excludeArch))
  if (spec.exclusiveArch !== undefined && spec.exclusiveArch.length > 0) entries.push(strs(1061, spec.exclusiveArch))
  if (spec.buildArchs !== undefined && spec.buildArchs.length > 0) entries.push(strs(1089, spec.buildArchs))
  if (spec.source) entries.push(int(1106, 1))
  entries.sort((a, b) => a[0] - b[0])
  return Buffer.concat([lead, sig, headerBytes(entries)])
}

/** Writes a file under the fake hub's work dir; returns the relative path. */
export const writeWork = (topdir: string, rel: string, data: Buffer | string): string => {
  const full = path.join(topdir, "work", rel)
  fs.mkdirSync(path.dirname(full), { recursive: true })
  fs.writeFileSync(full, data)
  return rel
}

/** A fake-hub world like the recorded one: build-tag (x86_64) with a READY repo, dest, test-target. */
export const setupWorld = (topdir: string, opts: { readonly arches?: string; readonly buildTagExtra?: Record<string, XmlRpcValue>; readonly packages?: ReadonlyArray<string> } = {}) => {
  const destTag = addTag(topdir, "dest", "")
  const buildTag = addTag(topdir, "build-tag", opts.arches ?? "x86_64", opts.buildTagExtra ?? {})
  const repoId = addRepo(topdir, buildTag, 1)
  const targetId = addTarget(topdir, "test-target", buildTag, destTag)
  for (const p of opts.packages ?? ["harness-hello"]) addPackage(topdir, destTag, p)
  return { destTag, buildTag, repoId, targetId }
}

/** Uploads an SRPM as `koji build` would (work/cli-build/…); returns its path relative to work. */
export const uploadSrpm = (topdir: string, spec: Omit<RpmSpec, "arch" | "source">): string =>
  writeWork(topdir, `cli-build/1795555423.8934412.YPtmAOtA/${spec.name}-${spec.version}-${spec.release}.src.rpm`,
    makeRpm({ ...spec, arch: "noarch", source: true }))

const newBuildroot = (topdir: string, hostId: number, repoId: number, arch: string, taskId: number): number => {
  const t = buildrootTables(topdir)
  const id = ++t.seq.buildroot
  t.buildroots.set(id, {
    id, hostId, repoId, arch, taskId, state: 3, createEvent: ++t.seq.event, createTs: 0, retireEvent: null, retireTs: null,
    listing: new Map()
  })
  return id
}

const readSrpm = (topdir: string, rel: string) => {
  const h = parseRpmHeader(fs.readFileSync(path.join(topdir, "work", rel)))
  if (typeof h === "string") throw new Error(h)
  return h
}

/** Behaviour of the stub subtasks. */
export interface StubOptions {
  /** buildArch fails for these arches (BuildError as kojid's). */
  readonly failArches?: ReadonlyArray<string>
  /** buildArch also writes a noarch `-doc` subpackage on every arch. */
  readonly noarchSub?: boolean
  /** …and that subpackage differs between arches (a Packager naming the task). */
  readonly differingNoarch?: boolean
  /** rebuildSRPM returns an SRPM named differently from its header. */
  readonly badSrpmName?: boolean
}

const StubParams = {
  pkg: required(AnyValue),
  root: required(AnyValue),
  arch: optional(AnyValue, null),
  keep_srpm: optional(AnyValue, null),
  opts: optional(AnyValue, null)
}

/** Stub rebuildSRPM/buildSRPMFromSCM and buildArch handlers writing into the hub's work dir. */
export const stubHandlers = (topdir: string, hostId: number, stub: StubOptions = {}): ReadonlyArray<TaskHandler> => [
  defineHandler({
    name: "StubRebuildSRPM",
    methods: ["rebuildSRPM", "buildSRPMFromSCM"],
    weight: 1.0,
    signature: signature("StubRebuildSRPM.handler", { srpm: required(AnyValue), build_tag: required(AnyValue), opts: optional(AnyValue, null) }),
    run: ({ srpm }, ctx) =>
      Effect.sync(() => {
        const rel = taskRelPath(ctx.taskId)
        const scm = typeof srpm === "string" && srpm.includes("://")
        const h = scm ? { name: "harness-scm", version: "1.0", release: "1", epoch: null } : readSrpm(topdir, String(srpm))
        const file = `${h.name}-${h.version}-${stub.badSrpmName === true ? "9" : h.release}.src.rpm`
        // A rebuilt SRPM keeps its header (BuildArch, ExclusiveArch…): copy the uploaded one.
        writeWork(topdir, `${rel}/${file}`, scm
          ? makeRpm({ name: h.name, version: h.version, release: h.release, epoch: h.epoch, arch: "noarch", source: true, buildArchs: ["noarch"] })
          : fs.readFileSync(path.join(topdir, "work", String(srpm))))
        writeWork(topdir, `${rel}/build.log`, "srpm ok\n")
        const br = newBuildroot(topdir, hostId, 1, "x86_64", ctx.taskId)
        const src = scm ? String(srpm) : file
        return { srpm: `${rel}/${file}`, logs: [`${rel}/build.log`], brootid: br, source: { source: src, url: src } }
      })
  }),
  defineHandler({
    name: "StubBuildArch",
    methods: ["buildArch"],
    weight: 1.5,
    signature: signature("StubBuildArch.handler", StubParams),
    run: ({ pkg, arch, keep_srpm, opts }, ctx) =>
      Effect.gen(function*() {
        const a = String(arch)
        if (stub.failArches?.includes(a)) {
          return yield* new BuildError({ faultString: `error building package (arch ${a}), mock exited with status 10; see build.log for more information` })
        }
        const rel = taskRelPath(ctx.taskId)
        const h = readSrpm(topdir, String(pkg))
        const rpmArch = a === "noarch" ? "noarch" : a
        const rpm = `${h.name}-${h.version}-${h.release}.${rpmArch}.rpm`
        writeWork(topdir, `${rel}/${rpm}`, makeRpm({ name: h.name, version: h.version, release: h.release, epoch: h.epoch, arch: rpmArch, source: false }))
        const rpms = [`${rel}/${rpm}`]
        if (stub.noarchSub === true) {
          const doc = `${h.name}-doc-${h.version}-${h.release}.noarch.rpm`
          writeWork(topdir, `${rel}/${doc}`, makeRpm({
            name: `${h.name}-doc`, version: h.version, release: h.release, epoch: h.epoch, arch: "noarch", source: false,
            sourcerpm: `${h.name}-${h.version}-${h.release}.src.rpm`,
            ...(stub.differingNoarch === true ? { packager: `task ${ctx.taskId}` } : {})
          }))
          rpms.push(`${rel}/${doc}`)
        }
        writeWork(topdir, `${rel}/build.log`, `built ${a}\n`)
        const repoId = Schema.decodeUnknownSync(Schema.Struct({ repo_id: Schema.Number }))(opts).repo_id
        const br = newBuildroot(topdir, hostId, repoId, a === "noarch" ? "x86_64" : a, ctx.taskId)
        const srpms: Array<string> = []
        if (keep_srpm === true) {
          const s = `${h.name}-${h.version}-${h.release}.src.rpm`
          writeWork(topdir, `${rel}/${s}`, fs.readFileSync(path.join(topdir, "work", String(pkg))))
          srpms.push(`${rel}/${s}`)
        }
        return { rpms, srpms, logs: [`${rel}/build.log`], brootid: br }
      })
  })
]
