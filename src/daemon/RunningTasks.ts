/**
 * The tasks this daemon runs (kojid's `pids`, `subsessions` and `tasks`): one entry per task
 * fiber with its subsession, wake-up signal and the children it created, the fibers themselves
 * in a FiberMap, and the OPEN tasks the hub says we hold. The loop (TaskManager.ts) is the only
 * writer; the status endpoint reads it.
 */
import { Duration, Effect, FiberMap, Option } from "effect"
import { makeWaker, type Waker } from "./Waiter.js"

/** One task fiber as the loop tracks it. */
export interface RunningTask {
  readonly taskId: number
  readonly method: string
  readonly subsessionId: number
  readonly waker: Waker
  /** Children it created with host.subtask that have not ended here. */
  readonly children: Set<number>
  /** The fiber has ended (reported or not); the next cycle logs its subsession out and forgets it. */
  done: boolean
}

/** The running tasks of one daemon run, their fibers removed when its scope closes. */
export const makeRunningTasks = Effect.gen(function*() {
  const fibers = yield* FiberMap.make<number>()
  const tasks = new Map<number, RunningTask>()
  let held = new Set<number>()

  return {
    /**
     * Starts `fiber(entry)` for a task opened on subsession `subsessionId`; when it ends the entry
     * is marked done, then `onEnd` runs (so whoever it wakes finds it done).
     */
    start: (taskId: number, method: string, subsessionId: number, fiber: (entry: RunningTask) => Effect.Effect<void>, onEnd: Effect.Effect<void>) =>
      Effect.gen(function*() {
        const entry: RunningTask = { taskId, method, subsessionId, waker: yield* makeWaker, children: new Set(), done: false }
        tasks.set(taskId, entry)
        held.add(taskId)
        yield* FiberMap.run(fibers, taskId, Effect.ensuring(fiber(entry), Effect.zipRight(Effect.sync(() => void (entry.done = true)), onEnd)))
      }),
    get: (taskId: number): RunningTask | undefined => tasks.get(taskId),
    has: (taskId: number): boolean => tasks.has(taskId),
    /** Every entry, done or not. */
    all: (): ReadonlyArray<RunningTask> => [...tasks.values()],
    /** Entries whose fiber still runs. */
    active: (): ReadonlyArray<RunningTask> => [...tasks.values()].filter((e) => !e.done),
    /** How many entries there are (a done one counts until the next cycle forgets it, as kojid's). */
    size: (): number => tasks.size,
    /** Drops an entry (its subsession was logged out). */
    forget: (taskId: number) => {
      tasks.delete(taskId)
      held.delete(taskId)
    },
    /** A child created by `parent` (its end wakes the parent). */
    addChild: (parent: number, child: number) => tasks.get(parent)?.children.add(child),
    /** The entries that were waiting for `child`, which has ended. */
    parentsOf: (child: number): ReadonlyArray<RunningTask> => [...tasks.values()].filter((e) => e.children.delete(child)),
    /** Interrupts a task's fiber (its scope removes its containers and workdir), at most `timeout`; false when it is still stopping. */
    interrupt: (taskId: number, timeout: Duration.DurationInput) =>
      Effect.map(FiberMap.remove(fibers, taskId).pipe(Effect.timeoutOption(timeout)), Option.isSome),
    /** Interrupts every fiber, at most `timeout`; false when some are still stopping. */
    interruptAll: (timeout: Duration.DurationInput) => Effect.map(FiberMap.clear(fibers).pipe(Effect.timeoutOption(timeout)), Option.isSome),
    /** A task we opened but that has no fiber yet (or any more) still counts as ours. */
    hold: (taskId: number) => void held.add(taskId),
    release: (taskId: number) => void held.delete(taskId),
    /** The OPEN tasks of ours the hub listed this cycle. */
    setHeld: (ids: ReadonlySet<number>) => {
      held = new Set(ids)
    },
    /** Every task to free at shutdown: held ones and running ones. */
    ours: (): ReadonlyArray<number> => [...new Set([...held, ...[...tasks.values()].filter((e) => !e.done).map((e) => e.taskId)])]
  }
})

/** The running tasks of a daemon run. */
export type RunningTasks = Effect.Effect.Success<typeof makeRunningTasks>
