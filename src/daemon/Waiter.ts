/**
 * Wake-ups for waiting tasks: kojid's main process sends SIGUSR2 to a task process when
 * `host.getHostTasks` marks it `alert` (koji-protocol.md §4.6–4.7); here each running task has
 * a one-slot signal the loop sets and the task's `wait` takes. The loop has one too: local task
 * events (a subtask created, a task finished) cut its idle sleep short.
 */
import { Clock, Duration, Effect, Queue } from "effect"

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

/** The main loop's wake-up signal: any number of wake-ups between two cycles count as one. */
export interface LoopWaker {
  /** Asks for a cycle as soon as the loop may run one. */
  readonly wake: Effect.Effect<void>
  /** Forgets earlier wake-ups; called as a cycle starts, since that cycle sees what caused them. */
  readonly clear: Effect.Effect<void>
  /**
   * The idle pause: `sleeptime`, or less when a wake-up comes, but never ending before
   * `notBefore` (epoch ms), so a stream of events cannot make back-to-back cycles.
   */
  readonly pause: (sleeptime: Duration.DurationInput, notBefore: number) => Effect.Effect<void>
}

/** A new loop wake-up signal. */
export const makeLoopWaker: Effect.Effect<LoopWaker> = Effect.map(Queue.sliding<void>(1), (queue) => ({
  wake: Effect.asVoid(Queue.offer(queue, undefined)),
  clear: Effect.asVoid(Queue.takeAll(queue)),
  pause: (sleeptime, notBefore) =>
    Effect.race(
      Effect.sleep(sleeptime),
      Queue.take(queue).pipe(
        Effect.zipRight(Clock.currentTimeMillis),
        Effect.flatMap((now) => (now < notBefore ? Effect.sleep(Duration.millis(notBefore - now)) : Effect.void))
      )
    )
}))
