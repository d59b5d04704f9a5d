/**
 * Wake-ups for waiting tasks: kojid's main process sends SIGUSR2 to a task process when
 * `host.getHostTasks` marks it `alert` (koji-protocol.md §4.6–4.7); here each running task has
 * a one-slot signal the loop sets and the task's `wait` takes.
 */
import { Duration, Effect, Queue } from "effect"

/** One task's wake-up signal. */
export interface Waker {
  /** Wakes the task (a wake-up given while it is not waiting is kept for its next wait). */
  readonly wake: Effect.Effect<void>
  /** Waits for a wake-up, at most `timeout`. */
  readonly sleep: (timeout: Duration.DurationInput) => Effect.Effect<void>
}

/** A new wake-up signal (at most one pending wake-up is kept). */
export const makeWaker: Effect.Effect<Waker> = Effect.map(Queue.sliding<void>(1), (queue) => ({
  wake: Effect.asVoid(Queue.offer(queue, undefined)),
  sleep: (timeout) => Queue.take(queue).pipe(Effect.timeoutOption(Duration.decode(timeout)), Effect.asVoid)
}))
