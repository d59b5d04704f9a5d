/**
 * The fault-proxy run of issue 12 §2, shared by its test (test/support/hubChaos.test.ts) and the
 * chaos bench (scripts/bench/chaos.ts): the daemon loop (TaskManager, in this process, as
 * test/daemon/harness.ts runs it) against the fake hub through the fault proxy, with a share of
 * the hub calls faulted by kind and one hub outage while tasks run. The tasks are small sleeps
 * and small uploads (builds are covered elsewhere); their handlers count how often each one ran
 * to completion, and each upload's bytes are compared with what the hub stored.
 */
import { HubFileTree } from "../../src/koji/paths.js"
import { genericHandlers } from "../../src/tasks/generic.js"
import * as fs from "node:fs"
import * as path from "node:path"
import { Duration, Effect, Fiber, Layer, Logger, LogLevel, Option } from "effect"
import { Containers } from "../../src/containers/Containers.js"
import { Readiness } from "../../src/daemon/Readiness.js"
import { KojiHub } from "../../src/hub/KojiHub.js"
import { uploadWrapper } from "../../src/hub/Uploads.js"
import { defineHandler, Int, required, signature } from "../../src/tasks/handler.js"
import { taskRelPath } from "../../src/koji/paths.js"
import { TaskRegistry } from "../../src/tasks/TaskRegistry.js"
import { TaskState } from "../fakehub/FakeHub.js"
import { fakeHub, HOST, PASSWORD, startDaemon, tempWorkdir, testOptions } from "../daemon/harness.js"
import { FAULT_KINDS, type FaultKind, startFaultProxy } from "./faultProxy.js"

/** Every fault kind at about 1 %: 10 % of the hub calls faulted. */
export const TEN_PERCENT: Readonly<Record<FaultKind, number>> = {
  resetBefore: 0.015, resetAfter: 0.015, http500: 0.01, http502: 0.01, http503: 0.01,
  truncate: 0.01, notXml: 0.01, serverOffline: 0.01, latency: 0.01, hang: 0.01
}

/** Options of a run. */
export interface HubChaosOptions {
  /** Tasks, half sleeps and half uploads (default 100). */
  readonly tasks?: number
  /** Length of the one outage, started once a third of the tasks are closed; 0 for none (default 120 s). */
  readonly outageMs?: number
  /**
   * A seeded extra of up to this many ms on the outage. The daemon's probe starts with the outage
   * and asks every few seconds: an outage that is a whole number of probe intervals would end just
   * before a probe, and the recovery figure would be luckier than a real hub's return.
   */
  readonly outageJitterMs?: number
  /** Per-kind fault rates of the session calls (default TEN_PERCENT). */
  readonly rates?: Readonly<Partial<Record<FaultKind, number>>>
  /** Fault proxy seed (default FAULT_PROXY_SEED, else random). */
  readonly seed?: number
  /** kojid.conf values of the daemon. */
  readonly retryInterval?: number
  readonly maxRetries?: number
  readonly offlineRetryInterval?: number
  /** kojid `timeout`: the bound of each request, so a hung one is given up (default 5 s). */
  readonly timeout?: number
  readonly recoveryProbeInterval?: number
  /** Longest sleep of a sleep task and largest upload (defaults 400 ms, 1.5 MiB). */
  readonly maxSleepMs?: number
  readonly maxUploadBytes?: number
  /** Give up waiting for the tasks after this long (default 10 min). */
  readonly deadlineMs?: number
  readonly logLevel?: LogLevel.LogLevel
  /** Progress lines (the bench prints them). */
  readonly progress?: (line: string) => void
}

/** What a run found. */
export interface HubChaosResult {
  readonly seed: number
  readonly tasks: number
  /** Tasks not CLOSED at the end, or whose upload is not byte-identical on the hub. */
  readonly lost: ReadonlyArray<number>
  /** Tasks run to completion more than once, or reported (closeTask/failTask committed) more than once. */
  readonly twice: ReadonlyArray<number>
  /** Task workdirs left on the builder after the daemon stopped. */
  readonly leaked: ReadonlyArray<string>
  readonly uploads: number
  readonly requests: number
  /** Hub calls the proxy faulted (outage refusals not counted). */
  readonly faulted: number
  readonly byKind: Readonly<Record<FaultKind, number>>
  /** The outage as it was run (outageMs plus its jitter). */
  readonly outageMs: number
  /** From the hub's return to the first heartbeat it accepted. */
  readonly heartbeatAfterOutageMs: number | undefined
  /** From the hub's return to the close of the last task that had finished while it was down. */
  readonly closeAfterOutageMs: number | undefined
  /** Tasks that finished while the hub was down. */
  readonly finishedDuringOutage: number
  readonly retryIntervalMs: number
  /** The daemon stopped within 60 s of being interrupted (as SIGTERM does). */
  readonly stopped: boolean
  readonly elapsedMs: number
  /** The proxy's one-line summary (seed, counts by kind). */
  readonly summary: string
}

/** The bytes of upload task `seed`, `size` long (a fixed LCG: the hub side is compared byte by byte). */
export const uploadBytes = (size: number, seed: number): Buffer => {
  const b = Buffer.alloc(size)
  let x = seed >>> 0
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

const pause = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))

/** Runs the scenario; never fails (what went wrong is in the result). */
export const runHubChaos = (options: HubChaosOptions = {}): Effect.Effect<HubChaosResult> =>
  Effect.scoped(Effect.gen(function*() {
    const taskCount = options.tasks ?? 100
    const outageMs = options.outageMs ?? 120_000
    const retryInterval = options.retryInterval ?? 60
    const maxSleepMs = options.maxSleepMs ?? 400
    const maxUploadBytes = options.maxUploadBytes ?? 1.5 * 1024 * 1024
    const progress = options.progress ?? (() => undefined)
    const t0 = Date.now()

    /** Completions of each task's handler, and when the last one finished (epoch ms). */
    const completions = new Map<number, number>()
    const finishedAt = new Map<number, number>()
    const completed = (taskId: number) =>
      Effect.sync(() => {
        completions.set(taskId, (completions.get(taskId) ?? 0) + 1)
        finishedAt.set(taskId, Date.now())
      })
    const chaosSleep = defineHandler({
      name: "ChaosSleep",
      methods: ["chaosSleep"],
      weight: 0.5,
      signature: signature("ChaosSleep.handler", { ms: required(Int) }),
      run: ({ ms }, ctx) => Effect.sleep(Duration.millis(ms)).pipe(Effect.zipRight(completed(ctx.taskId)), Effect.as(ms))
    })
    const chaosUpload = defineHandler({
      name: "ChaosUpload",
      methods: ["chaosUpload"],
      weight: 0.5,
      signature: signature("ChaosUpload.handler", { size: required(Int), seed: required(Int) }),
      run: ({ size, seed }, ctx) =>
        Effect.gen(function*() {
          const local = path.join(ctx.workdir, "result.bin")
          yield* Effect.sync(() => fs.writeFileSync(local, uploadBytes(size, seed)))
          yield* uploadWrapper(ctx.session, local, taskRelPath(ctx.taskId), "result.bin")
          yield* completed(ctx.taskId)
          return size
        })
    })

    const hub = yield* fakeHub()
    const proxy = yield* startFaultProxy({
      upstream: hub.url,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      latencyMs: [5, 200],
      // Login is not retried (anon_retry is off, as in kojid), so the rates fault the session's calls.
      schedule: { rates: options.rates ?? TEN_PERCENT, eligible: (r) => r.sessionId !== undefined }
    })
    let random = proxy.seed ^ 0x5bd1e995
    const next = (n: number): number => {
      random = (Math.imul(random, 1103515245) + 12345) >>> 0
      return (random >>> 8) % n
    }
    const outageLength = outageMs <= 0 ? 0 : outageMs + next(Math.max(1, Math.floor(options.outageJitterMs ?? 0)))
    const uploads = new Map<number, { readonly size: number; readonly seed: number }>()
    const ids: Array<number> = []
    for (let i = 0; i < taskCount; i++) {
      if (i % 2 === 0) {
        ids.push(hub.createTask("chaosSleep", [next(maxSleepMs + 1)]))
      } else {
        const size = next(maxUploadBytes + 1)
        const seed = next(0x7fffffff)
        const id = hub.createTask("chaosUpload", [size, seed])
        uploads.set(id, { size, seed })
        ids.push(id)
      }
    }

    const workdir = yield* tempWorkdir
    const layer = Layer.mergeAll(
      KojiHub.layerWithTransport({
        server: proxy.url, user: HOST, password: PASSWORD,
        timeout: options.timeout ?? 5,
        maxRetries: options.maxRetries ?? 120,
        retryInterval,
        offlineRetryInterval: options.offlineRetryInterval ?? 120,
        ...(options.recoveryProbeInterval !== undefined ? { recoveryProbeInterval: options.recoveryProbeInterval } : {})
      }).pipe(Layer.orDie),
      TaskRegistry.layerTest([...genericHandlers, chaosSleep, chaosUpload]),
      Readiness.layerAlways,
      HubFileTree.layer({ topurls: [], topdir: hub.topdir }),
      Containers.layerMemory({ hostName: HOST }),
      Logger.minimumLogLevel(options.logLevel ?? LogLevel.None)
    )
    const daemon = yield* startDaemon(testOptions(workdir, { sleeptime: Duration.millis(200), batchHubCalls: true })).pipe(Effect.provide(layer))
    // Before the daemon fiber is interrupted at scope close: a request it is stuck on is cut.
    yield* Effect.addFinalizer(() => Effect.promise(proxy.close))

    const closedAt = new Map<number, number>()
    let outageStart: number | undefined
    let restoredAt: number | undefined
    const deadline = t0 + (options.deadlineMs ?? 600_000)
    let lastProgress = Date.now()
    while (Date.now() < deadline && Option.isNone(yield* Fiber.poll(daemon))) {
      const now = Date.now()
      for (const id of ids) if (!closedAt.has(id) && hub.state.task(id)?.state === TaskState.CLOSED) closedAt.set(id, now)
      if (outageLength > 0 && outageStart === undefined && closedAt.size >= taskCount / 3) {
        outageStart = now
        proxy.outage(outageLength)
        progress(`hub down for ${outageLength / 1000} s with ${closedAt.size} of ${taskCount} tasks closed`)
      }
      if (outageStart !== undefined && restoredAt === undefined && !proxy.down()) {
        restoredAt = now
        progress(`hub back; ${closedAt.size} of ${taskCount} tasks closed`)
      }
      if (closedAt.size === taskCount && (outageLength === 0 || restoredAt !== undefined)) break
      if (now - lastProgress > 15_000) {
        lastProgress = now
        progress(`${closedAt.size} of ${taskCount} tasks closed, ${proxy.stats().faulted} calls faulted`)
      }
      yield* pause(20)
    }

    yield* Fiber.interruptFork(daemon)
    const stopBy = Date.now() + 60_000
    while (Option.isNone(yield* Fiber.poll(daemon)) && Date.now() < stopBy) yield* pause(50)
    const stopped = Option.isSome(yield* Fiber.poll(daemon))

    const lost: Array<number> = []
    const twice: Array<number> = []
    for (const id of ids) {
      const upload = uploads.get(id)
      const stored = upload === undefined ? undefined : hub.state.upload(`${taskRelPath(id)}/result.bin`)
      const identical = upload === undefined || (stored !== undefined && stored.equals(uploadBytes(upload.size, upload.seed)))
      if (hub.state.task(id)?.state !== TaskState.CLOSED || !identical) lost.push(id)
      const reports = hub.state.calls.filter((c) =>
        (c.method === "host.closeTask" || c.method === "host.failTask") && c.params[0] === id && c.fault === undefined && c.http === undefined
      ).length
      if ((completions.get(id) ?? 0) > 1 || reports > 1) twice.push(id)
    }
    const tasksDir = path.join(workdir, "tasks")
    const leaked = fs.existsSync(tasksDir)
      ? fs.readdirSync(tasksDir).flatMap((d) => fs.readdirSync(path.join(tasksDir, d)).map((t) => path.join(tasksDir, d, t)))
      : []

    // The first heartbeat the hub accepted after its return (the proxy's clock starts with it).
    const outage = proxy.outages[0]
    const beat = outage === undefined ? undefined : proxy.requests.find((r) =>
      r.at >= outage.until && r.forwarded && r.hub?.status === 200 && r.hub.faultCode === undefined &&
      (r.method === "host.updateHost" || r.calls.includes("host.updateHost"))
    )
    const down = outageStart
    const back = restoredAt
    const afterReturn: Array<number> = []
    if (down !== undefined && back !== undefined) {
      for (const id of ids) {
        const finished = finishedAt.get(id)
        const closed = closedAt.get(id)
        if (finished !== undefined && closed !== undefined && finished >= down && finished < back) afterReturn.push(closed - back)
      }
    }
    const closeAfter = afterReturn.length === 0 ? undefined : Math.max(0, ...afterReturn)
    const s = proxy.stats()
    return {
      seed: proxy.seed,
      tasks: taskCount,
      lost,
      twice,
      leaked,
      uploads: uploads.size,
      requests: s.requests,
      faulted: s.faulted,
      byKind: s.byKind,
      outageMs: outageLength,
      heartbeatAfterOutageMs: beat === undefined || outage === undefined ? undefined : beat.at - outage.until,
      closeAfterOutageMs: closeAfter,
      finishedDuringOutage: afterReturn.length,
      retryIntervalMs: retryInterval * 1000,
      stopped,
      elapsedMs: Date.now() - t0,
      summary: proxy.summary()
    }
  }))

/** The counts of a result in one line. */
export const describeHubChaos = (r: HubChaosResult): string =>
  `${r.tasks} tasks (${r.uploads} uploads): lost ${r.lost.length}, twice ${r.twice.length}, leaked ${r.leaked.length}; ` +
  `${r.faulted} of ${r.requests} hub calls faulted (${FAULT_KINDS.filter((k) => r.byKind[k] > 0).map((k) => `${k} ${r.byKind[k]}`).join(", ")}); ` +
  `seed ${r.seed} (FAULT_PROXY_SEED=${r.seed})`
