/**
 * The one SQL implementation of `Scheduler`, for every backend.
 *
 * Statements are compiled once with named parameters (`statements.ts`) and run on the
 * backend's `SqlExecutor`, like the store's (`storeSql.ts`). Arguments are decoded once per
 * public method; a runner's id, lease and task names once per `runner(...)`, for all its
 * polls. Every transition is one conditional statement, so no read-then-write race exists
 * between runners, whichever process they run in:
 * - `release` and `heartbeat` update the task only `WHERE locked_by = runner AND status =
 *   'running'`; the rows they changed say whether the runner still held it.
 * - `lock` takes the earliest due pending tasks (one conditional UPDATE), and gives back
 *   running tasks whose lock expired (a failed attempt; another conditional UPDATE), for the
 *   next `lock` to take. PostgreSQL does both in one statement with `FOR UPDATE SKIP LOCKED`,
 *   so that concurrent runners skip each other's rows instead of waiting, and returns the rows
 *   taken. The SQLite dialect runs them as one atomic batch (a write transaction on SQLite,
 *   one request on rqlite) that marks the rows it took with a fresh token and reads them
 *   back: rqlite does not return the rows of an `UPDATE ... RETURNING` whose WHERE has a
 *   subquery.
 *
 * Statements that change rows never use `RETURNING` on the SQLite dialect for the same reason
 * (rqlite decides by parsing whether a statement returns rows, and gives up on some SQL).
 *
 * Times are bound as epoch milliseconds (SQLite, rqlite) or timestamptz (PostgreSQL), computed
 * from the `Clock`, so `TestClock` drives due times, lock expiry and backoff on every backend.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Fragment, Statement } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import {
  type CheckedTask,
  checkTask,
  DuplicateTaskError,
  type FinishedStatus,
  finishedStatuses,
  type HeartbeatResult,
  type KeyMode,
  oneOf,
  pendingTaskOf,
  type ReleaseStatus,
  type RetryBackoff,
  Scheduler,
  type SchedulerService,
  type Task,
  type TaskFilter,
  TaskNotFoundError,
  TaskNotHeldError,
  TaskNotRetryableError,
  type TaskStats,
  type TaskStatus,
  taskStatuses,
} from "../Scheduler.js"
import { InvalidArgumentError, type StoreError } from "../Store.js"
import { type AtomicStatementError, SqlExecutor } from "./executor.js"
import {
  failuresOf,
  inList,
  isPostgres,
  limitBinder,
  listBinder,
  MalformedRowError,
  parseRows,
  type TimeValue as Time,
  timeBinder,
  toDate,
} from "./sqlShared.js"
import * as Statements from "./statements.js"
import { Wakeup } from "./wakeup.js"

interface TaskRow {
  readonly seq: number | string
  readonly id: string
  readonly name: string
  readonly payload: string
  readonly status: TaskStatus
  readonly created: Time
  readonly scheduled_for: Time
  readonly started_at: Time | null
  readonly completed_at: Time | null
  readonly last_error: string | null
  readonly retry_count: number | string
  readonly max_retries: number | string
  readonly timeout_seconds: number | string
  readonly locked_by: string | null
  readonly locked_at: Time | null
  readonly lock_expires_at: Time | null
  readonly priority: number | string
  readonly key: string | null
}

const toTask = (row: TaskRow): Task => {
  const task: { -readonly [K in keyof Task]: Task[K] } = {
    id: row.id,
    name: row.name,
    payload: JSON.parse(row.payload),
    status: row.status,
    created: toDate(row.created),
    scheduledFor: toDate(row.scheduled_for),
    lastError: row.last_error,
    retryCount: Number(row.retry_count),
    maxRetries: Number(row.max_retries),
    timeoutSeconds: Number(row.timeout_seconds),
    lockedBy: row.locked_by,
    priority: Number(row.priority),
  }
  if (row.key !== null) task.key = row.key
  if (row.started_at !== null) task.startedAt = toDate(row.started_at)
  if (row.completed_at !== null) task.completedAt = toDate(row.completed_at)
  if (row.locked_at !== null) task.lockedAt = toDate(row.locked_at)
  if (row.lock_expires_at !== null) task.lockExpiresAt = toDate(row.lock_expires_at)
  return task
}

const tasksOf = (rows: ReadonlyArray<TaskRow>) => parseRows("kv_tasks", rows, toTask)

/** Higher priority first, then earliest due; ties in insertion order. */
const byDue = (rows: ReadonlyArray<TaskRow>) =>
  tasksOf(
    [...rows].sort(
      (a, b) =>
        Number(b.priority) - Number(a.priority) ||
        toDate(a.scheduled_for).getTime() - toDate(b.scheduled_for).getTime() ||
        Number(a.seq) - Number(b.seq),
    ),
  )

/** PostgreSQL: the advisory lock space (first key) of task keys, and how many buckets they hash into. */
const keyLockSpace = 83157261
const keyLockBuckets = 128

/** A task key's advisory lock bucket: FNV-1a of its UTF-16 code units, the same in every process. */
const keyBucket = (key: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return (hash >>> 0) % keyLockBuckets
}

/** The longest `lastError` kept, in characters. */
const maxErrorLength = 4000

/** An error message as every backend can store it: well-formed, without NUL, not too long. */
const errorText = (error: string): string => {
  const cut = error.length > maxErrorLength ? `${error.slice(0, maxErrorLength - 1)}…` : error
  // after the cut, which may split a surrogate pair
  return (cut as unknown as { toWellFormed(): string }).toWellFormed().replaceAll("\u0000", "")
}

const releaseStatuses: ReadonlyArray<ReleaseStatus> = ["completed", "failed", "cancelled", "pending"]

// Argument decoders, one per method, made once (a new task's: `checkTask`).
const decodeId = Arg.decoder(Arg.TaskId)
const decodeName = Arg.decoder(Arg.TaskName)
const decodeNameList = (names: unknown) =>
  names === undefined
    ? Effect.succeed(undefined)
    : Effect.forEach(names as ReadonlyArray<unknown>, decodeName)
const decodeLimit = Arg.decoder(Arg.positive("limit"))
const decodeReleaseStatus = Arg.decoder(oneOf("release status", releaseStatuses))

/**
 * What a runner passes on every poll, heartbeat and release (its id, lease and task names) is
 * checked once per scheduler and remembered (`Arg.remembered`); the task ids and the limit
 * change from call to call.
 */
const runnerDecoders = () => ({
  runnerId: Arg.remembered(Arg.decoder(Arg.RunnerId)),
  lockDuration: Arg.remembered(Arg.decoder(Arg.Millis)),
  taskTypes: Arg.remembered(decodeNameList),
})
const decodeFilter = Arg.args({
  status: Arg.optional(oneOf("status", taskStatuses)),
  name: Arg.optional(Arg.TaskName),
  offset: Arg.Offset,
  limit: Arg.Limit,
})
const decodeDelay = Arg.decoder(Arg.Millis)
const decodePrune = Arg.args({ olderThan: Arg.Millis })
const decodePruneStatus = Arg.decoder(oneOf("prune status", finishedStatuses))

/** The longest retry delay: far enough out for any use, near enough that due times stay dates. */
const maxRetryDelay = Duration.toMillis(Duration.days(36525))

/** The retry delays in milliseconds, checked; `shifts` is how often `initial` doubles before `max` caps it. */
const decodeBackoff = (backoff: RetryBackoff | undefined) =>
  Effect.gen(function* () {
    const initial = yield* decodeDelay(backoff?.initial ?? Duration.minutes(1))
    const max = yield* decodeDelay(backoff?.max ?? Duration.hours(1))
    if (max < initial) {
      return yield* new InvalidArgumentError({
        message: "the longest retry delay must not be shorter than the first",
      })
    }
    if (max > maxRetryDelay) {
      return yield* new InvalidArgumentError({ message: "the longest retry delay must be at most 100 years" })
    }
    let shifts = 0
    while (initial * 2 ** shifts < max) shifts++
    return { initial, max, shifts }
  })

/**
 * Calls of different fibers written together: the first call of a tick schedules one write of
 * every call waiting by then (after a yield, so that the fibers of the same tick join it);
 * calls made while `maxInFlight` writes are in flight wait for the next one, so that under load
 * each write carries what arrived during the ones before. Each caller gets its own result.
 * With two in flight, a write waits for no round trip but the one of the write before it (on
 * PostgreSQL, whose commits wait for the disk, two commits in flight share their flushes).
 */
const batcher = <I, A, E>(
  write: (items: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<Exit.Exit<A, E>>, E>,
  maxInFlight = 1,
) => {
  // each caller waits on its own callback (cheaper than a Deferred each, on the runner's hot path)
  interface Waiting {
    readonly item: I
    /** The caller's answer, once written; its callback, once it waits. */
    exit: Exit.Exit<A, E> | undefined
    resume: ((exit: Exit.Exit<A, E>) => void) | undefined
  }
  let waiting: Array<Waiting> = []
  /** Writes started or about to start (a scheduled flush counts). */
  let writing = 0
  const flush: Effect.Effect<void> = Effect.suspend(() => {
    const batch = waiting
    waiting = []
    // another flush took what was waiting: this one has nothing to write
    if (batch.length === 0) {
      writing--
      return Effect.void
    }
    return write(batch.map(({ item }) => item)).pipe(
      Effect.exit,
      Effect.flatMap((exit) =>
        Effect.sync(() => {
          batch.forEach((entry, i) => {
            entry.exit = Exit.isSuccess(exit)
              ? (exit.value[i] ?? Exit.die(new Error("a batched write returned too few results")))
              : Exit.failCause(exit.cause)
            entry.resume?.(entry.exit)
          })
          if (waiting.length > 0) return true
          writing--
          return false
        }),
      ),
      Effect.flatMap((more) => (more ? flush : Effect.void)),
    )
  })
  // the write runs whether or not its first caller is still waiting; once started, it finishes
  const flushLater = Effect.forkDaemon(
    Effect.uninterruptible(Effect.zipRight(Effect.yieldNow(), flush)).pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (Exit.isFailure(exit)) writing--
        }),
      ),
    ),
  )
  return (item: I): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      const entry: Waiting = { item, exit: undefined, resume: undefined }
      waiting.push(entry)
      const answer = Effect.async<A, E>((resume) => {
        if (entry.exit === undefined) entry.resume = resume
        else resume(entry.exit)
      })
      if (writing >= maxInFlight) return answer
      writing++
      return Effect.zipRight(flushLater, answer)
    })
}

/** `items` with each id at most once, and the rest (ids seen before), for a statement per id. */
const onePerId = <I extends { readonly id: string }>(items: ReadonlyArray<I>) => {
  const seen = new Set<string>()
  const first: Array<[I, number]> = []
  const rest: Array<[I, number]> = []
  items.forEach((item, i) => {
    if (seen.has(item.id)) rest.push([item, i])
    else {
      seen.add(item.id)
      first.push([item, i])
    }
  })
  return { first, rest }
}

/**
 * The statements that store new tasks, shared by `create`, `createMany` and the store's
 * `Mutation.task` (the outbox, in the batch of a `mutateAll`).
 */
export const makeTaskWrites = Effect.gen(function* () {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  const executor = yield* SqlExecutor
  const { compiled } = Statements.make(sql, executor)
  const isPg = isPostgres(sql)
  const time = timeBinder(sql)
  const list = listBinder(sql)
  const at = (value: unknown): Fragment => (isPg ? sql`${value}::timestamptz` : sql`${value}`)
  /** A task row's columns, as `TaskRow` reads them. */
  const columns = sql.literal(
    `"seq", "id", "name", "payload", "status", "created", "scheduled_for", "started_at", "completed_at",
    "last_error", "retry_count", "max_retries", "timeout_seconds", "locked_by", "locked_at", "lock_expires_at",
    "priority", "key"`,
  )

  interface NewTask {
    readonly id: string
    readonly name: string
    readonly payload: string
    readonly created: number | Date
    readonly scheduledFor: number | Date
    readonly maxRetries: number
    readonly timeoutSeconds: number
    readonly priority: number
    readonly key: string | null
  }
  const bindNew = (checked: CheckedTask): NewTask => ({
    id: checked.id,
    name: checked.name,
    payload: checked.payload,
    created: time(checked.created),
    scheduledFor: time(checked.scheduledFor),
    maxRetries: checked.maxRetries,
    timeoutSeconds: checked.timeoutSeconds,
    priority: checked.priority,
    key: checked.key,
  })

  const newColumns = sql.literal(
    `"id", "name", "payload", "status", "created", "scheduled_for", "retry_count", "max_retries",
    "timeout_seconds", "priority", "key"`,
  )
  /** A value bound in a SELECT list: typed on PostgreSQL, which reads untyped parameters as text there. */
  const typed = (value: unknown, pgType: string): Fragment =>
    isPg ? sql`${value}::${sql.literal(pgType)}` : sql`${value}`
  const newValues = (p: Statements.Placeholders<NewTask>) =>
    sql`${typed(p.id, "text")}, ${typed(p.name, "text")}, ${typed(p.payload, "text")}, 'pending', ${at(p.created)},
      ${at(p.scheduledFor)}, 0, ${typed(p.maxRetries, "bigint")}, ${typed(p.timeoutSeconds, "double precision")},
      ${typed(p.priority, "integer")}, ${typed(p.key, "text")}`

  /** The tasks holding `key`: pending, or running (which still counts for `dedupe`). */
  const holding = (key: unknown) => sql`"key" = ${key} AND "status" IN ('pending', 'running')`
  const pendingKey = sql.literal(`("key") WHERE "status" = 'pending'`)

  // replace modes: the running task with the key gives it up to the new task beside it, so
  // that a key is held by at most one task that is pending or running (a running task that
  // fails and becomes pending again can never collide with a newer one on kv_tasks_key)
  const giveUpKey = compiled<{ key: string | null }>(
    (p) => sql`UPDATE kv_tasks SET "key" = NULL WHERE "key" = ${p.key} AND "status" = 'running'`,
  )
  const replaced = (keepRunAt: boolean) =>
    sql.literal(
      `"payload" = excluded."payload", ${keepRunAt ? "" : `"scheduled_for" = excluded."scheduled_for", `}` +
        `"priority" = excluded."priority", "max_retries" = excluded."max_retries", ` +
        `"timeout_seconds" = excluded."timeout_seconds", "retry_count" = 0`,
    )
  const upsertKeyed: Record<KeyMode, Statements.Compiled<NewTask, never>> = {
    replace: compiled<NewTask>(
      (p) => sql`INSERT INTO kv_tasks (${newColumns}) VALUES (${newValues(p)})
        ON CONFLICT ${pendingKey} DO UPDATE SET ${replaced(false)}`,
    ),
    "preserve-run-at": compiled<NewTask>(
      (p) => sql`INSERT INTO kv_tasks (${newColumns}) VALUES (${newValues(p)})
        ON CONFLICT ${pendingKey} DO UPDATE SET ${replaced(true)}`,
    ),
    dedupe: compiled<NewTask>(
      (p) => sql`INSERT INTO kv_tasks (${newColumns}) SELECT ${newValues(p)}
        WHERE NOT EXISTS (SELECT 1 FROM kv_tasks WHERE ${holding(p.key)})
        ON CONFLICT ${pendingKey} DO NOTHING`,
    ),
  }
  /** The task holding the key after an upsert: the pending one, else the newest running one. */
  const selectHolder = compiled<{ key: string | null }, TaskRow>(
    (p) => sql`SELECT ${columns} FROM kv_tasks WHERE ${holding(p.key)}
      ORDER BY CASE WHEN "status" = 'pending' THEN 0 ELSE 1 END, "seq" DESC LIMIT 1`,
  )
  // PostgreSQL: the writes of one key take turns (transaction-scoped advisory locks, taken in
  // bucket order, so that batches never deadlock), and a batch locks its keys' pending and
  // running rows first, so that no runner takes or gives back such a task between the
  // statements of one create (runners skip locked rows)
  // (by bucket: a batch of 10,000 keys takes at most `keyLockBuckets` locks, which PostgreSQL's
  // lock table holds; keys that share a bucket just take turns too)
  const lockKeyPg = compiled<{ bucket: number }>(
    (p) => sql`SELECT pg_advisory_xact_lock(${keyLockSpace}, ${p.bucket}::integer) IS NULL AS locked`,
  )
  const lockHoldersPg = compiled<{ keys: unknown }>(
    (p) => sql`SELECT "seq" FROM kv_tasks WHERE ${inList(sql)(sql`"key"`, p.keys)}
      AND "status" IN ('pending', 'running') FOR UPDATE`,
  )
  // PostgreSQL returns the row a replace upsert wrote (inserted or updated): no read back
  const upsertReturningPg = {
    replace: compiled<NewTask, TaskRow>(
      (p) => sql<TaskRow>`INSERT INTO kv_tasks (${newColumns}) VALUES (${newValues(p)})
        ON CONFLICT ${pendingKey} DO UPDATE SET ${replaced(false)} RETURNING ${columns}`,
    ),
    "preserve-run-at": compiled<NewTask, TaskRow>(
      (p) => sql<TaskRow>`INSERT INTO kv_tasks (${newColumns}) VALUES (${newValues(p)})
        ON CONFLICT ${pendingKey} DO UPDATE SET ${replaced(true)} RETURNING ${columns}`,
    ),
  }

  // unkeyed tasks in bulk: one statement over arrays (PostgreSQL) or a JSON array (SQLite),
  // inserted in the order given; a taken id fails the statement, and so the whole batch
  const insertManyPg = compiled<{
    ids: ReadonlyArray<string>
    names: ReadonlyArray<string>
    payloads: ReadonlyArray<string>
    created: ReadonlyArray<number>
    due: ReadonlyArray<number>
    maxRetries: ReadonlyArray<number>
    timeouts: ReadonlyArray<number>
    priorities: ReadonlyArray<number>
  }>(
    (p) => sql`INSERT INTO kv_tasks (${newColumns})
      SELECT t.id, t.name, t.payload, 'pending', timestamptz 'epoch' + t.created * interval '1 millisecond',
        timestamptz 'epoch' + t.due * interval '1 millisecond', 0, t.max_retries, t.timeout_seconds, t.priority, NULL
      FROM unnest(${p.ids}::text[], ${p.names}::text[], ${p.payloads}::text[], ${p.created}::bigint[], ${p.due}::bigint[],
        ${p.maxRetries}::bigint[], ${p.timeouts}::double precision[], ${p.priorities}::integer[])
        WITH ORDINALITY AS t(id, name, payload, created, due, max_retries, timeout_seconds, priority, ord)
      ORDER BY t.ord`,
  )
  const insertManySqlite = compiled<{ tasks: string }>(
    (p) => sql`INSERT INTO kv_tasks (${newColumns})
      SELECT json_extract("value", '$.id'), json_extract("value", '$.name'), json_extract("value", '$.payload'),
        'pending', json_extract("value", '$.created'), json_extract("value", '$.due'), 0,
        json_extract("value", '$.maxRetries'), json_extract("value", '$.timeoutSeconds'),
        json_extract("value", '$.priority'), NULL
      FROM json_each(${p.tasks}) ORDER BY "key"`,
  )
  const insertMany = (tasks: ReadonlyArray<CheckedTask>) =>
    isPg
      ? insertManyPg({
          ids: tasks.map((t) => t.id),
          names: tasks.map((t) => t.name),
          payloads: tasks.map((t) => t.payload),
          created: tasks.map((t) => t.created),
          due: tasks.map((t) => t.scheduledFor),
          maxRetries: tasks.map((t) => t.maxRetries),
          timeouts: tasks.map((t) => t.timeoutSeconds),
          priorities: tasks.map((t) => t.priority),
        })
      : insertManySqlite({
          tasks: JSON.stringify(
            tasks.map((t) => ({
              id: t.id,
              name: t.name,
              payload: t.payload,
              created: t.created,
              due: t.scheduledFor,
              maxRetries: t.maxRetries,
              timeoutSeconds: t.timeoutSeconds,
              priority: t.priority,
            })),
          ),
        })

  /**
   * The statements that write the tasks in order, for one atomic batch: runs of unkeyed tasks as
   * one insert each, each keyed task as its mode says, then read back (`readBack`: the index of
   * the statement whose rows are the stored task, by the task's index among `tasks`).
   */
  const statementsOf = (tasks: ReadonlyArray<CheckedTask>) => {
    const statements: Array<Statement<unknown>> = []
    if (isPg) {
      const buckets = new Set(tasks.flatMap((t) => (t.key === null ? [] : [keyBucket(t.key)])))
      for (const bucket of [...buckets].sort((a, b) => a - b)) statements.push(lockKeyPg({ bucket }))
      const keys = [...new Set(tasks.flatMap((t) => (t.key === null ? [] : [t.key])))]
      if (keys.length > 0) statements.push(lockHoldersPg({ keys: list(keys) }))
    }
    /** Where each keyed task's row is read back, by its index among `tasks`. */
    const readBack = new Map<number, number>()
    let run: Array<CheckedTask> = []
    const flush = () => {
      if (run.length > 0) statements.push(insertMany(run))
      run = []
    }
    tasks.forEach((task, index) => {
      if (task.key === null) {
        run.push(task)
        return
      }
      flush()
      const bound = bindNew(task)
      if (task.keyMode !== "dedupe") statements.push(giveUpKey({ key: task.key }))
      if (isPg && task.keyMode !== "dedupe") {
        readBack.set(index, statements.length)
        statements.push(upsertReturningPg[task.keyMode](bound))
        return
      }
      statements.push(upsertKeyed[task.keyMode](bound))
      readBack.set(index, statements.length)
      statements.push(selectHolder({ key: task.key }))
    })
    flush()
    return { statements, readBack }
  }

  return { columns, selectHolder, lockKeyPg, statementsOf }
})

export const make = (
  backoff?: RetryBackoff,
): Effect.Effect<SchedulerService, InvalidArgumentError, SqlClient.SqlClient | SqlExecutor | Wakeup> =>
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const executor = yield* SqlExecutor
    const { compiled } = Statements.make(sql, executor)
    const wakeup = yield* Wakeup
    const isPg = isPostgres(sql)
    const delays = yield* decodeBackoff(backoff)
    const runnerArgs = runnerDecoders()
    const { columns, lockKeyPg, selectHolder, statementsOf } = yield* makeTaskWrites

    /** Wraps backend failures once, keeping the cause and the client's own words. */
    const run = failuresOf(executor)

    // --- dialect differences -----------------------------------------------------------

    /** A time as bound: epoch milliseconds (SQLite), a Date for timestamptz (PostgreSQL). */
    const time = timeBinder(sql)
    const limit = limitBinder(sql)
    const list = listBinder(sql)
    const nameIn = (names: unknown) => inList(sql)(sql`"name"`, names)
    /** A bound time in SQL (typed on PostgreSQL, for CASE and COALESCE). */
    const at = (value: unknown): Fragment => (isPg ? sql`${value}::timestamptz` : sql`${value}`)

    /**
     * When a task that failed `"retry_count"` times before is retried: now + initial * 2^n,
     * capped at `max`. The exponent stops where `max` caps the delay anyway, so the product
     * never overflows, however many retries.
     */
    const retryAt = (now: unknown): Fragment =>
      isPg
        ? sql`${at(now)} + LEAST(${delays.max}::bigint, ${delays.initial}::bigint << LEAST("retry_count", ${delays.shifts})::integer) * interval '1 millisecond'`
        : sql`${now} + min(${delays.max}, ${delays.initial} << min("retry_count", ${delays.shifts}))`

    // --- statements ---------------------------------------------------------------------

    const none = sql.literal("")

    const selectById = compiled<{ id: string }, TaskRow>(
      ({ id }) => sql`SELECT ${columns} FROM kv_tasks WHERE "id" = ${id}`,
    )
    const getTask = (id: string) =>
      Effect.flatMap(selectById.rows({ id }), (rows) =>
        Effect.map(tasksOf(rows.slice(0, 1)), (tasks) => Option.fromNullable(tasks[0])),
      )

    const insertTask = compiled<{
      id: string
      name: string
      payload: string
      created: number | Date
      scheduledFor: number | Date
      maxRetries: number
      timeoutSeconds: number
      priority: number
    }>(
      (
        p,
      ) => sql`INSERT INTO kv_tasks ("id", "name", "payload", "status", "created", "scheduled_for", "retry_count",
          "max_retries", "timeout_seconds", "priority")
        VALUES (${p.id}, ${p.name}, ${p.payload}, 'pending', ${at(p.created)}, ${at(p.scheduledFor)}, 0,
          ${p.maxRetries}, ${p.timeoutSeconds}, ${p.priority})
        ON CONFLICT ("id") DO NOTHING`,
    )

    const retries = sql.literal(`"retry_count" < "max_retries"`)
    /** The order `lock` takes due tasks in: the claim index's (`kv_tasks_claim`). */
    const claimOrder = sql.literal(`"priority" DESC, "scheduled_for", "seq"`)

    /** A failed attempt: pending again while retries remain (no runner then), else failed (keeping its runner). */
    const failedAttempt = (now: unknown, lastError: Fragment) => sql`
      "status" = CASE WHEN ${retries} THEN 'pending' ELSE 'failed' END,
      "completed_at" = CASE WHEN ${retries} THEN NULL ELSE ${at(now)} END,
      "locked_by" = CASE WHEN ${retries} THEN NULL ELSE "locked_by" END,
      "locked_at" = CASE WHEN ${retries} THEN NULL ELSE "locked_at" END,
      "lock_expires_at" = NULL,
      "retry_count" = "retry_count" + 1,
      "last_error" = ${lastError}`

    // A running task whose lock expired lost its runner: a failed attempt, due again at once
    // (no backoff: the task did not fail, and the lock's duration has passed already).
    const reclaimAssignments = (now: unknown) =>
      failedAttempt(now, sql`'lock expired: runner ' || COALESCE("locked_by", '?') || ' stopped renewing it'`)

    interface Take {
      readonly runner: string
      readonly now: number | Date
      readonly expires: number | Date
      readonly limit: number
      /** The task names as bound by `list` (only in the variants for some names). */
      readonly names: unknown
    }
    const takeAssignments = (p: Statements.Placeholders<Take>) => sql`
      "status" = 'running', "locked_by" = ${p.runner}, "locked_at" = ${at(p.now)},
      "lock_expires_at" = ${at(p.expires)}, "started_at" = ${at(p.now)}`
    const ofNames = (some: boolean, names: unknown) => (some ? sql`AND ${nameIn(names)}` : none)

    /** A statement per case: any task name, or some (`names`, one bound list). */
    const byNames = <A>(make: (some: boolean) => A) => ({ any: make(false), some: make(true) })

    // PostgreSQL, one statement: the due tasks are taken by `kv_take_tasks` (migration
    // `0010_task_claim`: SKIP LOCKED, so that runners taking or giving back at the same time
    // skip each other's rows, in claim index order whatever the statistics say). The expired
    // tasks are given back by the CTE, which runs after the function (the statement does not
    // read it) in the statement's snapshot, so they are not among those taken: the next lock
    // takes them. The two touch different rows (running ones here, pending ones there).
    const lockPgStatement = byNames((some) =>
      compiled<Take, TaskRow>(
        (p) => sql`WITH reclaimed AS (
            UPDATE kv_tasks SET ${reclaimAssignments(p.now)}
            WHERE "seq" IN (SELECT "seq" FROM kv_tasks WHERE "status" = 'running' AND "lock_expires_at" <= ${at(p.now)}
              FOR UPDATE SKIP LOCKED)
          )
          SELECT ${columns} FROM kv_take_tasks(${p.runner}::text, ${at(p.now)}, ${at(p.expires)}, ${p.limit}::bigint,
            ${some ? sql`${p.names}::text[]` : sql.literal("NULL")})`,
      ),
    )

    // SQLite: told to take the claim index (its planner would rather sort the tasks of a name)
    const reclaimSqlite = compiled<{ now: number }>(
      ({ now }) =>
        sql`UPDATE kv_tasks SET ${reclaimAssignments(now)} WHERE "status" = 'running' AND "lock_expires_at" <= ${now}`,
    )
    const takeSqlite = byNames((some) =>
      compiled<Take & { token: string }>(
        (p) => sql`UPDATE kv_tasks
          SET ${takeAssignments(p)}, "lock_token" = ${p.token}
          WHERE "seq" IN (SELECT "seq" FROM kv_tasks INDEXED BY kv_tasks_claim
            WHERE "status" = 'pending' AND "scheduled_for" <= ${p.now} ${ofNames(some, p.names)}
            ORDER BY ${claimOrder} LIMIT ${p.limit}) AND "status" = 'pending'`,
      ),
    )
    const selectClaimed = compiled<{ token: string }, TaskRow>(
      ({ token }) =>
        sql<TaskRow>`SELECT ${columns} FROM kv_tasks WHERE "status" = 'running' AND "lock_token" = ${token}`,
    )

    /** Takes up to `limit` due tasks for `runner`; how many expired locks it gave back. */
    const lockTasks = (
      take: Omit<Take, "now" | "expires" | "names">,
      now: number,
      lockMillis: number,
      names: ReadonlyArray<string> | undefined,
    ) => {
      const bound: Take = {
        ...take,
        now: time(now),
        expires: time(now + lockMillis),
        names: names === undefined ? undefined : list(names),
      }
      const variant = names === undefined ? "any" : "some"
      if (isPg) {
        // the trigger signals tasks that became pending, this process included
        return Effect.map(Effect.flatMap(lockPgStatement[variant].rows(bound), byDue), (tasks) => ({
          tasks,
          reclaimed: 0,
        }))
      }
      const token = crypto.randomUUID()
      // the same order as on PostgreSQL: the tasks given back are the next lock's to take
      return Effect.flatMap(
        executor.atomic([
          takeSqlite[variant]({ ...bound, token }),
          reclaimSqlite({ now }),
          selectClaimed({ token }),
        ]),
        (results) =>
          Effect.map(byDue(results[2]?.rows ?? []), (tasks) => ({
            tasks,
            reclaimed: results[1]?.affected ?? 0,
          })),
      )
    }

    interface Held {
      readonly now: number | Date
      readonly error: string | null
      readonly id: string
      readonly runner: string
    }
    /** Only while `runner` holds the task. */
    const held = (p: Statements.Placeholders<Held>) =>
      sql`"id" = ${p.id} AND "locked_by" = ${p.runner} AND "status" = 'running'`

    /** A final release: the task ends `status`, keeping its runner. */
    const finished = (status: "completed" | "cancelled") =>
      compiled<Held>(
        (
          p,
        ) => sql`UPDATE kv_tasks SET "status" = ${sql.literal(`'${status}'`)}, "completed_at" = ${at(p.now)},
          "lock_expires_at" = NULL, "last_error" = COALESCE(${p.error}, "last_error") WHERE ${held(p)}`,
      )

    const releaseStatements: Record<ReleaseStatus, Statements.Compiled<Held, never>> = {
      completed: finished("completed"),
      cancelled: finished("cancelled"),
      // a failed attempt: due again after the backoff while retries remain
      failed: compiled<Held>(
        (p) => sql`UPDATE kv_tasks SET ${failedAttempt(p.now, sql`COALESCE(${p.error}, 'failed')`)},
          "scheduled_for" = CASE WHEN ${retries} THEN ${retryAt(p.now)} ELSE "scheduled_for" END
          WHERE ${held(p)}`,
      ),
      // given back unattempted: due again at once, not counted
      pending: compiled<Held>(
        (p) => sql`UPDATE kv_tasks SET "status" = 'pending', "locked_by" = NULL,
          "locked_at" = NULL, "lock_expires_at" = NULL, "last_error" = COALESCE(${p.error}, "last_error")
          WHERE ${held(p)}`,
      ),
    }

    const earliestDue = byNames((some) =>
      compiled<{ names: unknown }, { scheduled_for: Time }>(
        (
          p,
        ) => sql`SELECT "scheduled_for" FROM kv_tasks ${isPg ? none : sql.literal("INDEXED BY kv_tasks_due")}
          WHERE "status" = 'pending' ${ofNames(some, p.names)} ORDER BY "scheduled_for", "seq" LIMIT 1`,
      ),
    )

    const extendLock = compiled<{ expires: number | Date; id: string; runner: string }>(
      (p) => sql`UPDATE kv_tasks SET "lock_expires_at" = ${at(p.expires)}
        WHERE "id" = ${p.id} AND "locked_by" = ${p.runner} AND "status" = 'running'`,
    )

    // PostgreSQL: many releases (of one status) or heartbeats as one statement over arrays,
    // each guarded by its holder; RETURNING says which ones found their task held.
    interface ReleaseMany {
      readonly now: number | Date
      readonly ids: ReadonlyArray<string>
      readonly runners: ReadonlyArray<string>
      readonly errors: ReadonlyArray<string | null>
    }
    const releasedRows = (
      p: Statements.Placeholders<ReleaseMany>,
    ) => sql`FROM unnest(${p.ids}::text[], ${p.runners}::text[], ${p.errors}::text[]) AS b(b_id, b_runner, b_error)
      WHERE kv_tasks."id" = b.b_id COLLATE "C" AND kv_tasks."locked_by" = b.b_runner AND kv_tasks."status" = 'running'
      RETURNING kv_tasks."id"`
    const finishedMany = (status: "completed" | "cancelled") =>
      compiled<ReleaseMany, { id: string }>(
        (
          p,
        ) => sql`UPDATE kv_tasks SET "status" = ${sql.literal(`'${status}'`)}, "completed_at" = ${at(p.now)},
          "lock_expires_at" = NULL, "last_error" = COALESCE(b.b_error, "last_error") ${releasedRows(p)}`,
      )
    const releaseManyPg: Record<ReleaseStatus, Statements.Compiled<ReleaseMany, { id: string }>> = {
      completed: finishedMany("completed"),
      cancelled: finishedMany("cancelled"),
      failed: compiled<ReleaseMany, { id: string }>(
        (p) => sql`UPDATE kv_tasks SET ${failedAttempt(p.now, sql`COALESCE(b.b_error, 'failed')`)},
          "scheduled_for" = CASE WHEN ${retries} THEN ${retryAt(p.now)} ELSE "scheduled_for" END
          ${releasedRows(p)}`,
      ),
      pending: compiled<ReleaseMany, { id: string }>(
        (p) => sql`UPDATE kv_tasks SET "status" = 'pending', "locked_by" = NULL,
          "locked_at" = NULL, "lock_expires_at" = NULL, "last_error" = COALESCE(b.b_error, "last_error")
          ${releasedRows(p)}`,
      ),
    }
    const extendManyPg = compiled<
      { ids: ReadonlyArray<string>; runners: ReadonlyArray<string>; expires: ReadonlyArray<string> },
      { id: string }
    >(
      (p) => sql`UPDATE kv_tasks SET "lock_expires_at" = b.b_expires
        FROM unnest(${p.ids}::text[], ${p.runners}::text[], ${p.expires}::timestamptz[]) AS b(b_id, b_runner, b_expires)
        WHERE kv_tasks."id" = b.b_id COLLATE "C" AND kv_tasks."locked_by" = b.b_runner AND kv_tasks."status" = 'running'
        RETURNING kv_tasks."id"`,
    )

    const cancelStatement = compiled<{ now: number | Date; id: string }>(
      (p) => sql`UPDATE kv_tasks SET "status" = 'cancelled', "completed_at" = ${at(p.now)},
        "lock_expires_at" = NULL WHERE "id" = ${p.id} AND "status" IN ('pending', 'running')`,
    )

    interface Page {
      readonly limit: number | null
      readonly offset: number
    }
    const listWhere = <P extends object>(where: (p: Statements.Placeholders<P & Page>) => Fragment) =>
      compiled<P & Page, TaskRow>(
        (p) =>
          sql`SELECT ${columns} FROM kv_tasks ${where(p)} ORDER BY "seq" DESC LIMIT ${p.limit} OFFSET ${p.offset}`,
      )
    const lists = {
      all: listWhere<object>(() => none),
      status: listWhere<{ status: string }>((p) => sql`WHERE "status" = ${p.status}`),
      name: listWhere<{ name: string }>((p) => sql`WHERE "name" = ${p.name}`),
      both: listWhere<{ status: string; name: string }>(
        (p) => sql`WHERE "status" = ${p.status} AND "name" = ${p.name}`,
      ),
    }

    /** Why `runner` could not change the task: what it is now. */
    const notHeldError = (id: string, runner: string, found: Option.Option<Task>) =>
      Option.match(found, {
        onNone: () => new TaskNotHeldError({ id, runnerId: runner, lockedBy: null }),
        onSome: (task) =>
          new TaskNotHeldError({ id, runnerId: runner, status: task.status, lockedBy: task.lockedBy }),
      })

    const tasksChanged = wakeup.notify("tasks")

    // --- a runner's operations, on checked arguments -----------------------------------

    const lock = (
      runner: Arg.RunnerId,
      lockMillis: Arg.Millis,
      names: ReadonlyArray<string> | undefined,
      count: number,
    ) =>
      Effect.gen(function* () {
        if (names !== undefined && names.length === 0) return []
        const now = yield* Clock.currentTimeMillis
        const { reclaimed, tasks } = yield* run(
          "lock",
          lockTasks({ runner, limit: count }, now, lockMillis, names),
        )
        if (reclaimed > 0) yield* tasksChanged
        return tasks
      })

    interface Release {
      readonly id: Arg.TaskId
      readonly runner: Arg.RunnerId
      readonly status: ReleaseStatus
      readonly error: string | null
    }
    type Released = Exit.Exit<void, TaskNotHeldError | StoreError>

    /** The releases of `items` that found their task held (by index), in one write. */
    const releaseAll = (
      items: ReadonlyArray<Release>,
      now: number,
    ): Effect.Effect<Array<boolean>, StoreError> => {
      const bound = time(now)
      const single = (item: Release) =>
        Effect.map(
          releaseStatements[item.status].affected({
            now: bound,
            error: item.error,
            id: item.id,
            runner: item.runner,
          }),
          (n) => n > 0,
        )
      if (items.length === 1)
        return run(
          "release",
          Effect.map(single(items[0]!), (held) => [held]),
        )
      if (!isPg) {
        // one transaction on SQLite, one request on rqlite; each statement's row count is its answer
        return run(
          "release",
          Effect.map(
            executor.atomic(
              items.map((item) =>
                releaseStatements[item.status]({
                  now: bound,
                  error: item.error,
                  id: item.id,
                  runner: item.runner,
                }),
              ),
            ),
            (results) => results.map((result) => result.affected > 0),
          ),
        )
      }
      // PostgreSQL: one statement per release status, over arrays; an id at most once in each
      const { first, rest } = onePerId(items)
      const byStatus = new Map<ReleaseStatus, Array<[Release, number]>>()
      for (const entry of first) {
        const group = byStatus.get(entry[0].status)
        if (group === undefined) byStatus.set(entry[0].status, [entry])
        else group.push(entry)
      }
      const held = items.map(() => false)
      return run(
        "release",
        Effect.forEach(
          byStatus,
          ([status, group]) =>
            Effect.map(
              releaseManyPg[status].rows({
                now: bound,
                ids: group.map(([item]) => item.id),
                runners: group.map(([item]) => item.runner),
                errors: group.map(([item]) => item.error),
              }),
              (rows) => {
                const released = new Set(rows.map((row) => row.id))
                for (const [item, i] of group) held[i] = released.has(item.id)
              },
            ),
          { concurrency: "unbounded", discard: true },
        ),
      ).pipe(
        Effect.zipRight(
          rest.length === 0
            ? Effect.void
            : Effect.map(
                releaseAll(
                  rest.map(([item]) => item),
                  now,
                ),
                (again) =>
                  rest.forEach(([, i], k) => {
                    held[i] = again[k]!
                  }),
              ),
        ),
        Effect.as(held),
      )
    }

    /**
     * Releases of one tick, written together, two writes in flight; each caller gets its own
     * answer. (A task is released once per claim, so two writes never carry the same claim.)
     */
    const releaseBatched = batcher<Release, void, TaskNotHeldError | StoreError>(
      (items) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const held = yield* releaseAll(items, now)
          if (items.some((item, i) => held[i] && item.status === "pending")) yield* tasksChanged
          return yield* Effect.forEach(
            items,
            (item, i): Effect.Effect<Released> =>
              held[i]
                ? Effect.succeed(Exit.void)
                : Effect.map(run("release", getTask(item.id)), (found) =>
                    Exit.fail(notHeldError(item.id, item.runner, found)),
                  ).pipe(Effect.catchAll((error) => Effect.succeed(Exit.fail(error)))),
          )
        }),
      2,
    )

    const release = (
      id: Arg.TaskId,
      runner: Arg.RunnerId,
      status: ReleaseStatus,
      error: string | undefined,
    ) => releaseBatched({ id, runner, status, error: error === undefined ? null : errorText(error) })

    interface Beat {
      readonly id: Arg.TaskId
      readonly runner: Arg.RunnerId
      readonly lockMillis: number
    }
    type Beaten = Exit.Exit<HeartbeatResult, TaskNotHeldError | StoreError>

    /** Which of `items` extended their task's lock (by index), in one write. */
    const extendAll = (
      items: ReadonlyArray<Beat>,
      now: number,
    ): Effect.Effect<Array<boolean>, StoreError> => {
      if (items.length === 1) {
        const [item] = items as [Beat]
        return run(
          "heartbeat",
          Effect.map(
            extendLock.affected({ expires: time(now + item.lockMillis), id: item.id, runner: item.runner }),
            (n) => [n === 1],
          ),
        )
      }
      if (!isPg) {
        return run(
          "heartbeat",
          Effect.map(
            executor.atomic(
              items.map((item) =>
                extendLock({ expires: time(now + item.lockMillis), id: item.id, runner: item.runner }),
              ),
            ),
            (results) => results.map((result) => result.affected === 1),
          ),
        )
      }
      const { first, rest } = onePerId(items)
      const extended = items.map(() => false)
      return run(
        "heartbeat",
        Effect.map(
          extendManyPg.rows({
            ids: first.map(([item]) => item.id),
            runners: first.map(([item]) => item.runner),
            expires: first.map(([item]) => new Date(now + item.lockMillis).toISOString()),
          }),
          (rows) => {
            const done = new Set(rows.map((row) => row.id))
            for (const [item, i] of first) extended[i] = done.has(item.id)
          },
        ),
      ).pipe(
        Effect.zipRight(
          rest.length === 0
            ? Effect.void
            : Effect.map(
                extendAll(
                  rest.map(([item]) => item),
                  now,
                ),
                (again) =>
                  rest.forEach(([, i], k) => {
                    extended[i] = again[k]!
                  }),
              ),
        ),
        Effect.as(extended),
      )
    }

    /** Heartbeats of one tick, written together; each caller gets its own answer. */
    const heartbeatBatched = batcher<Beat, HeartbeatResult, TaskNotHeldError | StoreError>((items) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const extended = yield* extendAll(items, now)
        return yield* Effect.forEach(
          items,
          (item, i): Effect.Effect<Beaten> =>
            extended[i]
              ? Effect.succeed(Exit.succeed("running" as const))
              : Effect.map(run("heartbeat", getTask(item.id)), (found): Beaten => {
                  if (
                    Option.isSome(found) &&
                    found.value.status === "cancelled" &&
                    found.value.lockedBy === item.runner
                  ) {
                    return Exit.succeed("cancelled" as const)
                  }
                  return Exit.fail(notHeldError(item.id, item.runner, found))
                }).pipe(Effect.catchAll((error) => Effect.succeed(Exit.fail(error)))),
        )
      }),
    )

    const heartbeat = (id: Arg.TaskId, runner: Arg.RunnerId, lockMillis: Arg.Millis) =>
      heartbeatBatched({ id, runner, lockMillis })

    const nextDue = (names: ReadonlyArray<string> | undefined) =>
      names !== undefined && names.length === 0
        ? Effect.succeedNone
        : run(
            "nextDue",
            Effect.map(
              names === undefined
                ? earliestDue.any.rows({ names: undefined })
                : earliestDue.some.rows({ names: list(names) }),
              (rows) => Option.map(Option.fromNullable(rows[0]), (row) => toDate(row.scheduled_for)),
            ),
          )

    // --- keys, bulk writes and administration ---------------------------------------------

    /** A new task as `create` stored it, before any runner took it. */
    const asCreated = (checked: CheckedTask): Task => pendingTaskOf(checked, JSON.parse(checked.payload))

    const selectIds = compiled<{ ids: unknown }, { id: string }>(
      (p) => sql`SELECT "id" FROM kv_tasks WHERE ${inList(sql)(sql`"id"`, p.ids)}`,
    )

    /**
     * Writes the tasks in order as one atomic batch: runs of unkeyed tasks as one insert each,
     * each keyed task as its mode says, read back. The tasks as stored, in order.
     */
    const createAll = (tasks: ReadonlyArray<CheckedTask>) =>
      Effect.gen(function* () {
        const ids = new Set<string>()
        for (const task of tasks) {
          if (ids.has(task.id)) return yield* new DuplicateTaskError({ id: task.id })
          ids.add(task.id)
        }
        if (tasks.length === 0) return []
        const { statements, readBack } = statementsOf(tasks)
        const results = yield* executor.atomic(statements).pipe(
          Effect.catchTag("AtomicStatementError", (error) =>
            // a taken id failed its insert (and rolled the batch back): say which
            Effect.flatMap(selectIds.rows({ ids: list([...ids]) }), (rows) => {
              const taken = new Set(rows.map((row) => row.id))
              const first = tasks.find((task) => taken.has(task.id))
              return first === undefined
                ? Effect.fail<AtomicStatementError | DuplicateTaskError>(error)
                : Effect.fail(new DuplicateTaskError({ id: first.id }))
            }),
          ),
        )
        const stored: Array<Task> = []
        for (const [index, task] of tasks.entries()) {
          const at = readBack.get(index)
          if (at === undefined) {
            stored.push(asCreated(task))
            continue
          }
          const [found] = yield* tasksOf((results[at]?.rows ?? []) as ReadonlyArray<TaskRow>)
          if (found === undefined) {
            return yield* Effect.fail(
              new MalformedRowError({
                table: "kv_tasks",
                cause: new Error(`task key "${task.key}" not stored`),
              }),
            )
          }
          stored.push(found)
        }
        return stored
      })

    const retryStatement = compiled<{ id: string; now: number | Date }>(
      (p) => sql`UPDATE kv_tasks SET "status" = 'pending', "scheduled_for" = ${at(p.now)}, "retry_count" = 0,
          "started_at" = NULL, "completed_at" = NULL, "locked_by" = NULL, "locked_at" = NULL, "lock_expires_at" = NULL
        WHERE "id" = ${p.id} AND "status" IN ('failed', 'cancelled')
          AND ("key" IS NULL OR NOT EXISTS (SELECT 1 FROM kv_tasks AS other
            WHERE other."key" = kv_tasks."key" AND other."status" IN ('pending', 'running')))`,
    )

    const retry = (id: Arg.TaskId) =>
      Effect.gen(function* () {
        const before = yield* run("retry", getTask(id))
        if (Option.isNone(before)) return yield* new TaskNotFoundError({ id })
        const now = time(yield* Clock.currentTimeMillis)
        const key = before.value.key
        const retried = yield* run(
          "retry",
          isPg && key !== undefined
            ? Effect.map(
                executor.atomic([lockKeyPg({ bucket: keyBucket(key) }), retryStatement({ id, now })]),
                (results) => results[1]?.affected ?? 0,
              )
            : retryStatement.affected({ id, now }),
        )
        const after = yield* run("retry", getTask(id))
        if (Option.isNone(after)) return yield* new TaskNotFoundError({ id })
        if (retried > 0) {
          yield* tasksChanged
          return after.value
        }
        const task = after.value
        if (task.status !== "failed" && task.status !== "cancelled") {
          return yield* new TaskNotRetryableError({ id, status: task.status })
        }
        const holder = yield* run(
          "retry",
          Effect.flatMap(selectHolder.rows({ key: task.key ?? null }), tasksOf),
        )
        return yield* new TaskNotRetryableError({
          id,
          status: task.status,
          ...(holder[0] === undefined ? {} : { keyHeldBy: holder[0].id }),
          ...(task.key === undefined ? {} : { key: task.key }),
        })
      })

    const pruneStatement = compiled<{ statuses: unknown; before: number | Date }>(
      (p) =>
        sql`DELETE FROM kv_tasks WHERE ${inList(sql)(sql`"status"`, p.statuses)} AND "completed_at" < ${at(p.before)}`,
    )

    const countStatement = compiled<object, { name: string; status: TaskStatus; n: number | string }>(
      () => sql`SELECT "name", "status", count(*) AS n FROM kv_tasks GROUP BY "name", "status"`,
    )
    const oldestDueStatement = compiled<{ now: number | Date }, { due: Time | null }>(
      (p) =>
        sql`SELECT min("scheduled_for") AS due FROM kv_tasks WHERE "status" = 'pending' AND "scheduled_for" <= ${at(p.now)}`,
    )

    const stats = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const counts = yield* run("stats", countStatement.rows({}))
      const oldest = yield* run("stats", oldestDueStatement.rows({ now: time(now) }))
      const byStatus = Object.fromEntries(taskStatuses.map((status) => [status, 0])) as Record<
        TaskStatus,
        number
      >
      const byName: Record<string, Partial<Record<TaskStatus, number>>> = {}
      let total = 0
      for (const row of [...counts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
        const n = Number(row.n)
        total += n
        byStatus[row.status] += n
        byName[row.name] = { ...byName[row.name], [row.status]: n }
      }
      const due = oldest[0]?.due
      const oldestDueAgeMs =
        due === null || due === undefined ? null : Math.max(0, now - toDate(due).getTime())
      return { total, byStatus, byName, oldestDueAgeMs } satisfies TaskStats
    })

    // --- the service -------------------------------------------------------------------

    const service: SchedulerService = {
      create: (task) =>
        Effect.gen(function* () {
          const checked = yield* checkTask(task)
          if (checked.key !== null) {
            const [stored] = yield* run("create", createAll([checked]))
            yield* tasksChanged
            return stored!
          }
          const inserted = yield* run(
            "create",
            insertTask.affected({
              ...checked,
              created: time(checked.created),
              scheduledFor: time(checked.scheduledFor),
            }),
          )
          if (inserted === 0) return yield* new DuplicateTaskError({ id: checked.id })
          yield* tasksChanged
          return asCreated(checked)
        }),

      createMany: (tasks) =>
        Effect.gen(function* () {
          const checked = yield* Effect.forEach(tasks, checkTask)
          const stored = yield* run("createMany", createAll(checked))
          if (stored.length > 0) yield* tasksChanged
          return stored
        }),

      retry: (id) => Effect.flatMap(decodeId(id), retry),

      prune: (options) =>
        Effect.gen(function* () {
          const { olderThan } = yield* decodePrune({ olderThan: options.olderThan })
          const statuses: ReadonlyArray<FinishedStatus> = yield* Effect.forEach(
            options.statuses ?? finishedStatuses,
            decodePruneStatus,
          )
          if (statuses.length === 0) {
            return yield* new InvalidArgumentError({ message: "prune needs at least one status" })
          }
          const now = yield* Clock.currentTimeMillis
          return yield* run(
            "prune",
            pruneStatement.affected({ statuses: list(statuses), before: time(now - olderThan) }),
          )
        }),

      stats: () => stats,

      get: (id) => Effect.flatMap(decodeId(id), (id) => run("get", getTask(id))),

      list: (filter: TaskFilter = {}) =>
        Effect.gen(function* () {
          const { name, offset, status, ...page } = yield* decodeFilter({
            status: filter.status,
            name: filter.name,
            offset: filter.offset ?? 0,
            limit: filter.limit ?? -1,
          })
          const bounds = { offset, limit: limit(page.limit) }
          const rows =
            status !== undefined && name !== undefined
              ? lists.both.rows({ ...bounds, status, name })
              : status !== undefined
                ? lists.status.rows({ ...bounds, status })
                : name !== undefined
                  ? lists.name.rows({ ...bounds, name })
                  : lists.all.rows(bounds)
          return yield* run("list", Effect.flatMap(rows, tasksOf))
        }),

      cancel: (id) =>
        Effect.gen(function* () {
          const checked = yield* decodeId(id)
          const now = yield* Clock.currentTimeMillis
          const found = yield* run(
            "cancel",
            Effect.zipRight(cancelStatement.affected({ now: time(now), id: checked }), getTask(checked)),
          )
          return yield* Option.match(found, {
            onNone: () => Effect.fail(new TaskNotFoundError({ id: checked })),
            onSome: Effect.succeed,
          })
        }),

      lock: (runnerId, lockDuration, taskTypes, count = 1) =>
        Effect.gen(function* () {
          const runner = yield* runnerArgs.runnerId(runnerId)
          const millis = yield* runnerArgs.lockDuration(lockDuration)
          const names = yield* runnerArgs.taskTypes(taskTypes)
          return yield* lock(runner, millis, names, yield* decodeLimit(count))
        }),

      // on a runner's path once per task: a chain rather than a generator
      release: (id, runnerId, status, error) =>
        Effect.flatMap(decodeId(id), (checkedId) =>
          Effect.flatMap(runnerArgs.runnerId(runnerId), (runner) =>
            Effect.flatMap(decodeReleaseStatus(status), (checkedStatus) =>
              release(checkedId, runner, checkedStatus, error),
            ),
          ),
        ),

      nextDue: (taskTypes) => Effect.flatMap(runnerArgs.taskTypes(taskTypes), nextDue),

      heartbeat: (id, runnerId, lockDuration) =>
        Effect.gen(function* () {
          const checkedId = yield* decodeId(id)
          const runner = yield* runnerArgs.runnerId(runnerId)
          return yield* heartbeat(checkedId, runner, yield* runnerArgs.lockDuration(lockDuration))
        }),

      wakeups: wakeup.subscribe("tasks"),
    }
    return service
  })

/** `Scheduler` on the executor and wake-ups of the context; `backoff` is the retry delay. */
export const layer = (
  backoff?: RetryBackoff,
): Layer.Layer<Scheduler, InvalidArgumentError, SqlClient.SqlClient | SqlExecutor | Wakeup> =>
  Layer.effect(Scheduler, make(backoff))
