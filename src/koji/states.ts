/**
 * koji's state numbers (koji/__init__.py `TASK_STATES`, `BR_STATES`, `REPO_STATES`,
 * `BUILD_STATES`), defined once for the daemon, the hub client and the fake hub.
 */

/** koji.TASK_STATES. */
export const TaskState = { FREE: 0, OPEN: 1, CLOSED: 2, CANCELED: 3, ASSIGNED: 4, FAILED: 5 } as const
/** A koji task state number. */
export type TaskState = (typeof TaskState)[keyof typeof TaskState]

/** koji.BR_STATES. */
export const BuildrootState = { INIT: 0, WAITING: 1, BUILDING: 2, EXPIRED: 3 } as const

/** Buildroot states a builder's cleanup expires when no task of it owns them (kojid's updateBuildroots). */
export const ACTIVE_BUILDROOT_STATES: ReadonlyArray<number> = [BuildrootState.INIT, BuildrootState.WAITING, BuildrootState.BUILDING]

/** koji.REPO_STATES. */
export const RepoState = { INIT: 0, READY: 1, EXPIRED: 2, DELETED: 3, PROBLEM: 4 } as const

/** koji.BUILD_STATES. */
export const BuildState = { BUILDING: 0, COMPLETE: 1, DELETED: 2, FAILED: 3, CANCELED: 4 } as const

/** The name of a state number in one of the tables above (the number itself when unknown). */
export const stateName = (table: Readonly<Record<string, number>>, state: number): string =>
  Object.entries(table).find(([, v]) => v === state)?.[0] ?? String(state)

/** The name of a koji task state. */
export const taskStateName = (state: number): string => stateName(TaskState, state)
