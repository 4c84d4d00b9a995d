/**
 * The `Scheduler` service: one-off tasks scheduled for a time and taken by runners on any
 * number of processes, each task by one runner at a time.
 *
 * This module holds the abstract service, the `Task` model and the task errors. The SQL
 * implementation shared by every backend lives in `internal/schedulerSql.ts`; the runner that
 * executes tasks with handlers is `TaskRunner.ts`.
 *
 * A task's life: `pending` (due at `scheduledFor`) -> `running` (locked by a runner until
 * `lockExpiresAt`, extended by heartbeats) -> `completed`, `failed` or `cancelled`. A failed
 * attempt goes back to `pending` with exponential backoff while `retryCount < maxRetries`. A
 * running task whose lock expired (its runner died) goes back to `pending` at once, counted as
 * a failed attempt.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Arg from "./Arguments.js"
import type { Signal } from "./internal/wakeup.js"
import { InvalidArgumentError, type StoreError } from "./Store.js"

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

export const TaskStatus = Schema.Literal("pending", "running", "completed", "failed", "cancelled")
export type TaskStatus = typeof TaskStatus.Type
export const taskStatuses: ReadonlyArray<TaskStatus> = TaskStatus.literals

const optionalDate = Schema.optionalWith(Schema.Date, { exact: true })

/** A task key, checked like a name. */
export const TaskKey = Arg.name("task key").pipe(Schema.brand("effect-kv/TaskKey"))
export type TaskKey = typeof TaskKey.Type

/** The largest priority (either sign) every backend stores: PostgreSQL's `integer`. */
export const maxPriority = 2_147_483_647

/** A task's priority: an integer of at most `maxPriority` either way. */
export const Priority = Arg.checked(Schema.Number, (n) =>
  typeof n === "number" && Number.isSafeInteger(n) && Math.abs(n) <= maxPriority
    ? undefined
    : `priority must be an integer between -${maxPriority} and ${maxPriority}, got ${typeof n === "string" ? JSON.stringify(n) : String(n)}`,
).pipe(Schema.brand("effect-kv/Priority"))
export type Priority = typeof Priority.Type

/** One of `allowed`, for `what`. */
export const oneOf = <S extends string>(what: string, allowed: ReadonlyArray<S>) =>
  Arg.checked(Schema.String, (value) =>
    allowed.includes(value as S)
      ? undefined
      : `${what} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`,
  ) as unknown as Schema.Schema<S, string>

// A plain readonly object described by a Schema (which encodes it for the CLI: dates as
// RFC 3339 strings), like the Store's models: a read builds one per row.
const TaskSchema = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  payload: Schema.Unknown,
  status: TaskStatus,
  created: Schema.Date,
  scheduledFor: Schema.Date,
  startedAt: optionalDate,
  completedAt: optionalDate,
  /** Why the last attempt failed (kept after a later success); `null` when none failed. */
  lastError: Schema.NullOr(Schema.String),
  /** Failed attempts so far. */
  retryCount: Schema.Number,
  /** Failed attempts that are retried; the next failure after that ends the task `failed`. */
  maxRetries: Schema.Number,
  timeoutSeconds: Schema.Number,
  /**
   * The runner holding the task while it is `running`; once it finished (completed, failed, or
   * cancelled while running), the runner that held it last. `null` while `pending`: a task given
   * back or due for a retry belongs to no runner.
   */
  lockedBy: Schema.NullOr(Schema.String),
  lockedAt: optionalDate,
  /** While `running`: when the lock expires unless its runner extends it. */
  lockExpiresAt: optionalDate,
  /** Higher is taken first (then the earlier `scheduledFor`); default 0. */
  priority: Schema.Number,
  /** At most one pending task holds a key (see {@link KeyMode}); absent: no key. */
  key: Schema.optionalWith(Schema.String, { exact: true }),
}).annotations({ identifier: "Task" })

export interface Task extends Schema.Schema.Type<typeof TaskSchema> {}

/**
 * What `create` does when a task with the same key exists (graphile-worker's job key modes):
 * - `replace` (default, debounce): a pending task with the key is updated in place (payload,
 *   scheduledFor, priority, retries, timeout; its retry count starts again at 0);
 * - `preserve-run-at` (throttle): the same, but it keeps its `scheduledFor`;
 * - `dedupe`: nothing changes while a task with the key is pending or running.
 *
 * A running task with the key is left alone: in the replace modes the new task is created
 * beside it, and the running task gives its key up (it no longer counts as holding it).
 */
export const KeyMode = Schema.Literal("replace", "preserve-run-at", "dedupe")
export type KeyMode = typeof KeyMode.Type
export const keyModes: ReadonlyArray<KeyMode> = KeyMode.literals

export interface TaskOptions {
  /** The task key: at most one pending task holds it (default: none). */
  readonly key?: string | undefined
  /** What a task with a key already held does (default `replace`). */
  readonly keyMode?: KeyMode | undefined
  /** An integer; higher is taken first (default 0). */
  readonly priority?: number | undefined
  /** The task id (default: a random UUID). */
  readonly id?: string | undefined
  /** When the task becomes due (default: now). */
  readonly scheduledFor?: Date | undefined
  /** Due this long from now; instead of `scheduledFor`. */
  readonly delay?: Duration.DurationInput | undefined
  /** How many failed attempts are retried (default 3). */
  readonly maxRetries?: number | undefined
  /** How long one attempt may run before it is interrupted and counted as failed (default 300 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
}

export const defaultTaskMaxRetries = 3
export const defaultTaskTimeout = Duration.seconds(300)

/** What a new task stores, checked: the payload as JSON text, times in epoch milliseconds. */
export interface CheckedTask {
  readonly id: Arg.TaskId
  readonly name: Arg.TaskName
  readonly payload: Arg.Json
  readonly maxRetries: number
  readonly timeoutSeconds: number
  readonly created: Arg.StoredTime
  readonly scheduledFor: Arg.StoredTime
  readonly priority: Priority
  readonly key: TaskKey | null
  readonly keyMode: KeyMode
}

/** How a task object that `Task.make` did not build is checked: its fields as they are. */
const decodeTaskFields = Arg.args({
  name: Arg.TaskName,
  payload: Arg.Value,
  id: Arg.TaskId,
  maxRetries: Arg.nonNegative("max retries"),
  timeoutSeconds: Arg.checked(Schema.Number, (n) =>
    typeof n === "number" && Number.isFinite(n) && n > 0
      ? undefined
      : `timeoutSeconds must be a positive number, got ${String(n)}`,
  ),
  created: Arg.storedTime("created"),
  scheduledFor: Arg.storedTime("scheduledFor"),
  priority: Priority,
  key: Arg.optional(TaskKey),
})
const decodeTask = (task: Task): Effect.Effect<CheckedTask, InvalidArgumentError> =>
  Effect.map(
    decodeTaskFields({ ...task, priority: task.priority ?? 0 }),
    (fields): CheckedTask => ({ ...fields, key: fields.key ?? null, keyMode: "replace" }),
  )

/**
 * The tasks `Task.make` built and checked, with what they store, so that `create` does not
 * check them again. They are frozen: the checked form stays true to the task.
 */
/** A checked task as it is stored new, before any runner took it (`payload`: its JSON value). */
export const pendingTaskOf = (checked: CheckedTask, payload: unknown): Task => ({
  id: checked.id,
  name: checked.name,
  payload,
  status: "pending",
  created: new Date(checked.created),
  scheduledFor: new Date(checked.scheduledFor),
  lastError: null,
  retryCount: 0,
  maxRetries: checked.maxRetries,
  timeoutSeconds: checked.timeoutSeconds,
  lockedBy: null,
  priority: checked.priority,
  ...(checked.key === null ? {} : { key: checked.key }),
})

const checkedTasks = new WeakMap<Task, CheckedTask>()

/** The stored form of a new task: as `Task.make` checked it, else checked now. */
export const checkTask = (task: Task): Effect.Effect<CheckedTask, InvalidArgumentError> => {
  const checked = checkedTasks.get(task)
  return checked !== undefined ? Effect.succeed(checked) : decodeTask(task)
}

const decodeMade = Arg.args({
  name: Arg.TaskName,
  payload: Arg.Value,
  id: Arg.optional(Arg.TaskId),
  maxRetries: Arg.nonNegative("max retries"),
  timeout: Arg.PositiveDuration,
  priority: Priority,
  key: Arg.optional(TaskKey),
  keyMode: oneOf("key mode", keyModes),
})
const decodeSchedule = Arg.args({
  scheduledFor: Arg.optional(Arg.storedTime("scheduledFor")),
  delay: Arg.optional(Arg.Millis),
})

/**
 * A new pending task named `name` (the handler that runs it) with a JSON payload: a random id,
 * `created` and (unless given) `scheduledFor` now from the `Clock`, 3 retries, 300 seconds.
 */
const make = (
  name: string,
  payload: unknown,
  options: TaskOptions = {},
): Effect.Effect<Task, InvalidArgumentError> =>
  Effect.gen(function* () {
    const made = yield* decodeMade({
      name,
      payload,
      id: options.id,
      maxRetries: options.maxRetries ?? defaultTaskMaxRetries,
      timeout: options.timeout ?? defaultTaskTimeout,
      priority: options.priority ?? 0,
      key: options.key,
      keyMode: options.keyMode ?? "replace",
    })
    if (options.scheduledFor !== undefined && options.delay !== undefined) {
      return yield* new InvalidArgumentError({ message: "give scheduledFor or delay, not both" })
    }
    const { delay, scheduledFor } = yield* decodeSchedule(options)
    const now = yield* Clock.currentTimeMillis
    const due = scheduledFor ?? now + (delay ?? 0)
    if (!Arg.isStorable(due)) {
      return yield* new InvalidArgumentError({
        message: "scheduledFor must be a valid Date between the years 1 and 9999",
      })
    }
    const checked: CheckedTask = {
      id: made.id ?? (crypto.randomUUID() as Arg.TaskId),
      name: made.name,
      payload: made.payload,
      maxRetries: made.maxRetries,
      timeoutSeconds: Duration.toMillis(made.timeout) / 1000,
      created: now as Arg.StoredTime,
      scheduledFor: due as Arg.StoredTime,
      priority: made.priority,
      key: made.key ?? null,
      keyMode: made.keyMode,
    }
    const task: Task = Object.freeze(pendingTaskOf(checked, payload))
    checkedTasks.set(task, checked)
    return task
  })

/** The `Task` Schema, and `Task.make` to build a new task. */
export const Task: Omit<typeof TaskSchema, "make"> & { readonly make: typeof make } = Object.assign(
  TaskSchema.annotations({}),
  { make },
)

/** `offset` absent means 0; `limit` absent or `-1` means no limit. */
export interface TaskFilter {
  readonly status?: TaskStatus | undefined
  readonly name?: string | undefined
  readonly offset?: number | undefined
  readonly limit?: number | undefined
}

/**
 * How a runner gives a task back:
 * - `completed`, `cancelled`: final;
 * - `failed`: a failed attempt (`retryCount + 1`): `pending` again after the backoff while
 *   retries remain, else `failed`;
 * - `pending`: not attempted after all (e.g. its runner shuts down): due again at once, not counted.
 */
export type ReleaseStatus = "completed" | "failed" | "cancelled" | "pending"

/** What a heartbeat found: the lock was extended, or the task was cancelled meanwhile. */
export type HeartbeatResult = "running" | "cancelled"

/** The delay before a failed task is retried: `initial`, then doubled per failure, at most `max`. */
export interface RetryBackoff {
  /** The delay after the first failure (default 1 minute). */
  readonly initial?: Duration.DurationInput | undefined
  /** The longest delay (default 1 hour). */
  readonly max?: Duration.DurationInput | undefined
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

export class TaskNotFoundError extends Schema.TaggedError<TaskNotFoundError>()("TaskNotFoundError", {
  id: Schema.String,
}) {
  override get message() {
    return `task "${this.id}" not found`
  }
}

/** `create` of a task whose id is taken; nothing was written. */
export class DuplicateTaskError extends Schema.TaggedError<DuplicateTaskError>()("DuplicateTaskError", {
  id: Schema.String,
}) {
  override get message() {
    return `a task with id "${this.id}" already exists`
  }
}

/**
 * A runner released or extended a task it does not hold (any more): it finished, was cancelled,
 * or its lock expired and another runner took it. Nothing was changed.
 */
export class TaskNotHeldError extends Schema.TaggedError<TaskNotHeldError>()("TaskNotHeldError", {
  id: Schema.String,
  runnerId: Schema.String,
  /** What the task is now; absent when it does not exist. */
  status: Schema.optionalWith(TaskStatus, { exact: true }),
  lockedBy: Schema.NullOr(Schema.String),
}) {
  override get message() {
    const now =
      this.status === undefined
        ? "it does not exist"
        : this.status === "running" && this.lockedBy !== null
          ? `runner "${this.lockedBy}" holds it`
          : `it is ${this.status}`
    return `task "${this.id}" is not held by runner "${this.runnerId}": ${now}`
  }
}

/**
 * `retry` of a task that is not failed or cancelled (pending, running, completed), or whose key
 * another pending or running task holds now. Nothing was changed.
 */
export class TaskNotRetryableError extends Schema.TaggedError<TaskNotRetryableError>()(
  "TaskNotRetryableError",
  {
    id: Schema.String,
    status: TaskStatus,
    /** The task holding its key, when that is why. */
    keyHeldBy: Schema.optionalWith(Schema.String, { exact: true }),
    key: Schema.optionalWith(Schema.String, { exact: true }),
  },
) {
  override get message() {
    return this.keyHeldBy !== undefined
      ? `task "${this.id}" cannot be retried: task "${this.keyHeldBy}" holds its key "${this.key}"`
      : `task "${this.id}" is ${this.status}: only a failed or cancelled task can be retried`
  }
}

/** The statuses of finished tasks, which `prune` deletes. */
export type FinishedStatus = "completed" | "failed" | "cancelled"
export const finishedStatuses: ReadonlyArray<FinishedStatus> = ["completed", "failed", "cancelled"]

export interface PruneOptions {
  /** Deletes the tasks that finished (`completedAt`) longer ago than this. */
  readonly olderThan: Duration.DurationInput
  /** Only tasks of these statuses (default every finished one: completed, failed, cancelled). */
  readonly statuses?: ReadonlyArray<FinishedStatus> | undefined
}

/** What `stats` counts. */
export interface TaskStats {
  readonly total: number
  readonly byStatus: { readonly [S in TaskStatus]: number }
  /** Per task name, the number of its tasks of each status it has (statuses without any left out). */
  readonly byName: { readonly [name: string]: { readonly [S in TaskStatus]?: number } }
  /** How long the oldest due pending task has been due, in milliseconds; `null` when none is due. */
  readonly oldestDueAgeMs: number | null
}

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------

type Fails<A, E = never> = Effect.Effect<A, E | InvalidArgumentError | StoreError>

export interface SchedulerService {
  /**
   * Stores a new task (see `Task.make`); its status is `pending` whatever the object says. A
   * task with a key follows its {@link KeyMode}. Returns the task as stored: for a key held by a
   * pending task (or, with `dedupe`, a running one), that task.
   */
  readonly create: (task: Task) => Fails<Task, DuplicateTaskError>
  /**
   * Stores the tasks as one atomic write (all or none), in order, each as `create` would; returns
   * them as stored.
   */
  readonly createMany: (tasks: ReadonlyArray<Task>) => Fails<ReadonlyArray<Task>, DuplicateTaskError>
  /** A failed or cancelled task back to `pending`, due now, `retryCount` 0. The task afterwards. */
  readonly retry: (id: string) => Fails<Task, TaskNotFoundError | TaskNotRetryableError>
  /** Deletes finished tasks that finished longer ago than `olderThan`; how many. */
  readonly prune: (options: PruneOptions) => Fails<number>
  /** Counts by status and name, and how long the oldest due pending task has waited. */
  readonly stats: () => Fails<TaskStats>
  readonly get: (id: string) => Fails<Option.Option<Task>>
  /** Newest first. */
  readonly list: (filter?: TaskFilter) => Fails<ReadonlyArray<Task>>
  /** A pending or running task becomes `cancelled` and never runs again; others stay as they are. The task afterwards. */
  readonly cancel: (id: string) => Fails<Task, TaskNotFoundError>
  /**
   * Atomically takes up to `limit` (default 1) due tasks, earliest `scheduledFor` first, of the
   * given names (default: any): they become `running`, locked by `runnerId` for `lockDuration`.
   * A task goes to one runner only, whichever process it runs in. Running tasks whose lock
   * expired are given back (a failed attempt; due at once), for the next `lock` to take.
   */
  readonly lock: (
    runnerId: string,
    lockDuration: Duration.DurationInput,
    taskTypes?: ReadonlyArray<string> | undefined,
    limit?: number | undefined,
  ) => Fails<ReadonlyArray<Task>>
  /** Gives a task held by `runnerId` back (see {@link ReleaseStatus}); `error` becomes `lastError`. */
  readonly release: (
    id: string,
    runnerId: string,
    status: ReleaseStatus,
    error?: string | undefined,
  ) => Fails<void, TaskNotHeldError>
  /** Extends the lock of a task `runnerId` is running to `lockDuration` from now, or says it was cancelled. */
  readonly heartbeat: (
    id: string,
    runnerId: string,
    lockDuration: Duration.DurationInput,
  ) => Fails<HeartbeatResult, TaskNotHeldError>
  /** When the earliest pending task (of the given names; default any) is due; none when there is none. */
  readonly nextDue: (taskTypes?: ReadonlyArray<string> | undefined) => Fails<Option.Option<Date>>
  /**
   * Wake-ups when tasks may have become due (created, given back), until the scope closes:
   * from this process, and on PostgreSQL (LISTEN) and SQLite files from other processes too.
   * Only a hint: runners still poll.
   */
  readonly wakeups: Effect.Effect<Signal, never, Scope.Scope>
}

export class Scheduler extends Context.Tag("effect-kv/Scheduler")<Scheduler, SchedulerService>() {}
