/**
 * Shared setup of the repo task tests: a koji topdir holding hard links of the offline
 * fixture's packages (an empty repos/, its own work/), a fake hub serving the fixture's tag
 * with its groups, the daemon with the real Containers and the repo handlers, and `dnf` in the
 * bootstrap image to read a repo back.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { Duration, Effect, Layer, Schema } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import type { XmlRpcValue } from "../../src/hub/xmlrpc.js"
import type { RepoTaskDeps } from "../../src/tasks/repoCommon.js"
import type { TaskHandler } from "../../src/tasks/handler.js"
import { newRepoHandler } from "../../src/tasks/newRepo.js"
import { createrepoHandler } from "../../src/tasks/createrepo.js"
import { makeDistRepoHandlers } from "../../src/tasks/distRepo.js"
import { makeRegistry, TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { buildrootTables, loadFixture } from "../fakehub/buildroots.js"
import { repoWorld } from "../fakehub/newrepo.js"
import { type FakeHub, startFakeHub } from "../fakehub/FakeHub.js"
import type { Fixture } from "../fixture/manifest.js"
import { testContainersOptions } from "../support/podman.js"
import { waitFor as buildrootWaitFor } from "../buildroot/support.js"

export const HOST = "builder"
export const PASSWORD = "builder-pw"
/** Task states that end a task. */
export const DONE = new Set([2, 3, 5])

/** A topdir with the fixture's packages (hard links) and empty repos/ and work/; removed with the scope. */
export const fixtureTopdir = (fixture: Fixture) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const top = mkdtempSync(path.join(tmpdir(), "adjutant-repotop-"))
      execFileSync("cp", ["-al", path.join(fixture.dir, "packages"), path.join(top, "packages")])
      mkdirSync(path.join(top, "repos"))
      mkdirSync(path.join(top, "work"))
      return top
    }),
    (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
  )


/** A fake hub with the fixture's tag, builds and groups (and no repo yet); the host is in the createrepo channel. */
export const repoHub = (fixture: Fixture, topdir: string) =>
  Effect.tap(
    startFakeHub({
      hosts: [{ name: HOST, password: PASSWORD, capacity: 10, arches: "x86_64", channels: ["default", "createrepo"] }],
      topdir,
      scheduler: { runInterval: 0 }
    }),
    () =>
      Effect.sync(() => {
        loadFixture(topdir, fixture.manifest)
        const tables = buildrootTables(topdir)
        tables.repos.clear()
        tables.seq.repo = 0
        const w = repoWorld(topdir)
        w.groups.set(fixture.manifest.tag.id, new Map(Object.entries(fixture.manifest.groups).map(([g, p]) => [g, [...p]])))
      })
  )

/** kojid options of the repo handlers for `topdir`. */
export const repoKojid = (topdir: string, patch: Partial<RepoTaskDeps["kojid"]> = {}): RepoTaskDeps["kojid"] => ({
  topdir,
  createrepo_update: true,
  createrepo_skip_stat: true,
  copy_old_repodata: false,
  distrepo_skip_stat: false,
  use_createrepo_c: true,
  ...patch
})

/** The daemon's layers: real Containers on `socket`, handlers made from them, the fake hub. */
export const repoDaemonLayers = (
  hub: FakeHub,
  socket: string,
  hostName: string,
  handlers: (containers: Containers["Type"]) => ReadonlyArray<TaskHandler>
) => {
  const containers = Containers.layer(testContainersOptions(socket, hostName, {
    defaultLimits: { memory: 2 * 1024 ** 3, pids: 1024, cpus: 0 }
  }))
  return Layer.mergeAll(
    KojiHub.layerWithTransport({ server: hub.url, user: HOST, password: PASSWORD, maxRetries: 5, retryInterval: 1 }).pipe(Layer.orDie),
    Readiness.layerAlways,
    Layer.effect(TaskRegistry, Effect.map(Containers, (c) => makeRegistry(handlers(c)))),
    HubFileTree.layer({ topurls: [], topdir: hub.topdir })
  ).pipe(Layer.provideMerge(containers))
}

/** The daemon with the buildroot tests' options; a slower default wait (repos take longer). */
export { daemonOptions, startDaemon, tempDir } from "../buildroot/support.js"

/** Waits (real time) until `cond` holds; dies after `timeout`. */
export const waitFor = (cond: () => boolean, what: string, timeout: Duration.DurationInput = "240 seconds") =>
  buildrootWaitFor(cond, what, timeout)

/** The newRepo request kojira makes: `[{id, name}, {opts, __starstar}]`. */
export const newRepoRequest = (fixture: Fixture, opts: Record<string, XmlRpcValue> = {}): ReadonlyArray<XmlRpcValue> => [
  { id: fixture.manifest.tag.id, name: fixture.manifest.tag.name },
  { opts: { src: false, debuginfo: false, separate_src: false, maven: false, ...opts }, __starstar: true }
]

/** Creates a newRepo task as kojira does (channel createrepo, priority 15). */
export const createNewRepo = (hub: FakeHub, fixture: Fixture, opts: Record<string, XmlRpcValue> = {}): number =>
  hub.createTask("newRepo", newRepoRequest(fixture, opts), { channel: "createrepo", priority: 15 })

/** `dnf repoquery` (NVRAs) and `dnf group info <group>` package names of a repo directory, read in the bootstrap image. */
export const dnfReadRepo = (image: string, repoDir: string, group = "build"): { readonly nvras: ReadonlyArray<string>; readonly group: ReadonlyArray<string> } => {
  const base = `dnf -q --releasever=1 --setopt=reposdir=/dev/null --setopt=cachedir=/tmp/dnfcache --repofrompath=r,file://${repoDir} --repo=r`
  const out = execFileSync("podman", [
    "run", "--rm", "--network=none", "-v", `${mountFor(repoDir)}:${mountFor(repoDir)}:ro`, image, "sh", "-c",
    `${base} repoquery --qf '%{name}-%{version}-%{release}.%{arch}' && echo @@@ && ${base} group info ${group}`
  ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  const [nvras = "", groupText = ""] = out.split("@@@")
  return {
    nvras: nvras.split("\n").map((l) => l.trim()).filter((l) => l !== "").sort(),
    group: groupText.split("\n").map((l) => l.trim()).filter((l) => /^[a-z0-9][a-z0-9._+-]*$/i.test(l)).sort()
  }
}

/** The packages a koji repo lists are under its topdir (through `toplink`): mount the whole topdir. */
const mountFor = (repoDir: string): string => /^(.*)\/repos\/[^/]+\/[^/]+\/[^/]+\/?$/.exec(repoDir)?.[1] ?? repoDir

/** A newRepo result `[repo_id, event_id]`. */
export const RepoResult = Schema.Tuple(Schema.Number, Schema.Number)
/** A createrepo result `[uploadpath, [files]]`. */
export const UploadResult = Schema.Tuple(Schema.String, Schema.Array(Schema.String))
/** A failed task's result. */
export const FaultResult = Schema.Struct({ faultCode: Schema.Number, faultString: Schema.String })
/** An old repo struct as newRepo hands it to createrepo. */
export const OldRepoArg = Schema.Struct({ id: Schema.Number, tag_id: Schema.Number }, Schema.Record({ key: Schema.String, value: Schema.Unknown }))

/** A task result decoded with `schema` (throws with the value when it does not fit). */
export const resultAs = <A, I>(schema: Schema.Schema<A, I>, hub: FakeHub, id: number): A =>
  Schema.decodeUnknownSync(schema)(hub.state.taskResult(id))

/** The createrepo channel's handlers (newRepo, createrepo, distRepo, createdistrepo) with explicit dependencies. */
export const makeRepoHandlers = (deps: RepoTaskDeps): ReadonlyArray<TaskHandler> => [
  newRepoHandler(deps),
  createrepoHandler(deps),
  ...makeDistRepoHandlers(deps)
]
