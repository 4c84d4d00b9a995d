/**
 * The one SQL implementation of `Scheduler`, for every backend.
 *
 * Statements are built with the `SqlClient` and run on the backend's `SqlExecutor`, like the
 * store's (`storeSql.ts`). Every transition is one conditional statement, so no read-then-write
 * race exists between runners, whichever process they run in:
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
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import {
  DuplicateTaskError,
  type ReleaseStatus,
  type RetryBackoff,
  Scheduler,
  type SchedulerService,
  type Task,
  type TaskFilter,
  TaskNotFoundError,
  TaskNotHeldError,
  type TaskStatus,
  taskStatuses,
} from "../Scheduler.js"
import { InvalidArgumentError } from "../Store.js"
import { SqlExecutor } from "./executor.js"
import { failuresOf, type TimeValue as Time, timeBinder, toDate } from "./sqlShared.js"
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
  }
  if (row.started_at !== null) task.startedAt = toDate(row.started_at)
  if (row.completed_at !== null) task.completedAt = toDate(row.completed_at)
  if (row.locked_at !== null) task.lockedAt = toDate(row.locked_at)
  if (row.lock_expires_at !== null) task.lockExpiresAt = toDate(row.lock_expires_at)
  return task
}

/** Earliest due first; ties in insertion order. */
const byDue = (rows: ReadonlyArray<TaskRow>): ReadonlyArray<Task> =>
  [...rows]
    .sort(
      (a, b) =>
        toDate(a.scheduled_for).getTime() - toDate(b.scheduled_for).getTime() ||
        Number(a.seq) - Number(b.seq),
    )
    .map(toTask)

/** The longest `lastError` kept, in characters. */
const maxErrorLength = 4000

/** An error message as every backend can store it: well-formed, without NUL, not too long. */
const errorText = (error: string): string => {
  const cut = error.length > maxErrorLength ? `${error.slice(0, maxErrorLength - 1)}…` : error
  // after the cut, which may split a surrogate pair
  return (cut as unknown as { toWellFormed(): string }).toWellFormed().replaceAll("\u0000", "")
}

// Argument decoders, made once.
const decodeId = Arg.decoder(Arg.name("task id"))
const decodeName = Arg.decoder(Arg.name("task name"))
const decodeRunner = Arg.decoder(Arg.name("runner id"))
const decodePayload = Arg.decoder(Arg.Value)
const decodeMaxRetries = Arg.decoder(Arg.nonNegative("max retries"))
const decodeDuration = Arg.decoder(Arg.PositiveDuration)
const decodeLimit = Arg.decoder(Arg.positive("limit"))
const decodeOffset = Arg.decoder(Arg.Offset)
const decodePageLimit = Arg.decoder(Arg.Limit)

const invalid = (message: string) => new InvalidArgumentError({ message })

const decodeStatus = <S extends string>(status: unknown, allowed: ReadonlyArray<S>, what: string) =>
  allowed.includes(status as S)
    ? Effect.succeed(status as S)
    : Effect.fail(invalid(`${what} must be one of ${allowed.join(", ")}, got ${JSON.stringify(status)}`))

/** The times every backend stores: years 1 to 9999. */
const earliestTime = Date.parse("0001-01-01T00:00:00.000Z")
const latestTime = Date.parse("9999-12-31T23:59:59.999Z")

const decodeDate = (date: unknown, what: string) =>
  date instanceof Date && date.getTime() >= earliestTime && date.getTime() <= latestTime
    ? Effect.succeed(date.getTime())
    : Effect.fail(invalid(`${what} must be a valid Date between the years 1 and 9999`))

const decodeTimeoutSeconds = (seconds: unknown) =>
  typeof seconds === "number" && Number.isFinite(seconds) && seconds > 0
    ? Effect.succeed(seconds)
    : Effect.fail(invalid(`timeoutSeconds must be a positive number, got ${String(seconds)}`))

const millisOf = (duration: Duration.Duration) => Math.ceil(Duration.toMillis(duration))

/** The retry delays in milliseconds, checked. */
const decodeBackoff = (backoff: RetryBackoff | undefined) =>
  Effect.gen(function* () {
    const initial = millisOf(yield* decodeDuration(backoff?.initial ?? Duration.minutes(1)))
    const max = millisOf(yield* decodeDuration(backoff?.max ?? Duration.hours(1)))
    if (max < initial) return yield* invalid("the longest retry delay must not be shorter than the first")
    return { initial, max }
  })

const releaseStatuses: ReadonlyArray<ReleaseStatus> = ["completed", "failed", "cancelled", "pending"]

/** A bound value standing for argument `index` while a statement's text is compiled. */
class Hole {
  constructor(readonly index: number) {}
}

export const make = (
  backoff?: RetryBackoff,
): Effect.Effect<SchedulerService, InvalidArgumentError, SqlClient.SqlClient | SqlExecutor | Wakeup> =>
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const executor = yield* SqlExecutor
    const wakeup = yield* Wakeup
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
    const delays = yield* decodeBackoff(backoff)

    /** Wraps backend failures once, keeping the cause and the client's own words. */
    const run = failuresOf(executor)

    // --- dialect differences -----------------------------------------------------------

    /** A time as bound: epoch milliseconds (SQLite), a Date for timestamptz (PostgreSQL). */
    const time = timeBinder(sql)
    /** A bound time in SQL (typed on PostgreSQL, for CASE and COALESCE). */
    const at = (value: unknown): Fragment => (isPg ? sql`${value}::timestamptz` : sql`${value}`)

    /** When a task that failed `"retry_count"` times before is retried: now + initial * 2^n, capped. */
    const retryAt = (now: unknown): Fragment =>
      isPg
        ? sql`${at(now)} + LEAST(${delays.max}::bigint, ${delays.initial}::bigint << LEAST("retry_count", 40)::integer) * interval '1 millisecond'`
        : sql`${now} + min(${delays.max}, ${delays.initial} << min("retry_count", 40))`

    const limitOffset = (limit: number, offset: number): Fragment =>
      isPg ? sql`LIMIT ${limit < 0 ? null : limit} OFFSET ${offset}` : sql`LIMIT ${limit} OFFSET ${offset}`

    /**
     * A statement whose SQL text never changes, compiled once (building and compiling a
     * statement costs as much as running a small one): `build` receives placeholders for the
     * arguments, the result makes the statement from the arguments, in the same order.
     */
    const compiledOnce = <A extends object = never>(
      arity: number,
      build: (...holes: Array<Hole>) => Statement<A>,
    ): ((...args: ReadonlyArray<unknown>) => Statement<A>) => {
      const [text, params] = build(...Array.from({ length: arity }, (_, i) => new Hole(i))).compile()
      return (...args) =>
        sql.unsafe<A>(
          text,
          params.map((param) => (param instanceof Hole ? args[param.index] : param)),
        )
    }

    /** `compiledOnce` per number of task names (`undefined`: any name), made when first needed. */
    const perNameCount = <A extends object>(
      make: (
        names: ReadonlyArray<Hole> | undefined,
        arity: number,
      ) => (...args: ReadonlyArray<unknown>) => Statement<A>,
    ) => {
      const made = new Map<number, (...args: ReadonlyArray<unknown>) => Statement<A>>()
      return (names: ReadonlyArray<string> | undefined, ...args: ReadonlyArray<unknown>): Statement<A> => {
        const count = names === undefined ? -1 : names.length
        let statement = made.get(count)
        if (statement === undefined) {
          const holes =
            count < 0 ? undefined : Array.from({ length: count }, (_, i) => new Hole(args.length + i))
          statement = make(holes, args.length + Math.max(count, 0))
          made.set(count, statement)
        }
        return statement(...args, ...(names ?? []))
      }
    }

    // --- statements ---------------------------------------------------------------------

    const columns = sql.literal(
      `"seq", "id", "name", "payload", "status", "created", "scheduled_for", "started_at", "completed_at",
      "last_error", "retry_count", "max_retries", "timeout_seconds", "locked_by", "locked_at", "lock_expires_at"`,
    )

    const selectById = compiledOnce(
      1,
      (id) => sql<TaskRow>`SELECT ${columns} FROM kv_tasks WHERE "id" = ${id}`,
    )
    const getTask = (id: string) =>
      Effect.map(executor.rows(selectById(id)), (rows) => Option.map(Option.fromNullable(rows[0]), toTask))

    const insertTask = compiledOnce(
      7,
      (id, name, payload, created, scheduledFor, maxRetries, timeoutSeconds) =>
        sql`INSERT INTO kv_tasks ("id", "name", "payload", "status", "created", "scheduled_for", "retry_count",
          "max_retries", "timeout_seconds")
        VALUES (${id}, ${name}, ${payload}, 'pending', ${at(created)}, ${at(scheduledFor)}, 0, ${maxRetries},
          ${timeoutSeconds})
        ON CONFLICT ("id") DO NOTHING`,
    )

    const retries = sql.literal(`"retry_count" < "max_retries"`)

    // A running task whose lock expired lost its runner: a failed attempt, due again at once
    // (no backoff: the task did not fail, and the lock's duration has passed already).
    const expiredError = sql`'lock expired: runner ' || COALESCE("locked_by", '?') || ' stopped renewing it'`
    const reclaimAssignments = (now: Hole) => sql`
      "status" = CASE WHEN ${retries} THEN 'pending' ELSE 'failed' END,
      "completed_at" = CASE WHEN ${retries} THEN NULL ELSE ${at(now)} END,
      "locked_by" = CASE WHEN ${retries} THEN NULL ELSE "locked_by" END,
      "locked_at" = CASE WHEN ${retries} THEN NULL ELSE "locked_at" END,
      "lock_expires_at" = NULL,
      "retry_count" = "retry_count" + 1,
      "last_error" = ${expiredError}`

    const ofNames = (names: ReadonlyArray<Hole> | undefined): Fragment =>
      names === undefined ? sql.literal("") : sql`AND "name" IN ${sql.in(names)}`

    const takeAssignments = (runner: Hole, now: Hole, expires: Hole) => sql`
      "status" = 'running', "locked_by" = ${runner}, "locked_at" = ${at(now)},
      "lock_expires_at" = ${at(expires)}, "started_at" = ${at(now)}`

    // PostgreSQL, one statement: SKIP LOCKED, so that runners taking (or giving back) at the
    // same time skip each other's rows; MATERIALIZED, so that the due tasks are chosen once (a
    // subquery the plan rescans would lock more than `limit` rows). The expired tasks given back
    // are not among those taken (one snapshot): the next lock takes them.
    const lockPgStatement = perNameCount((names, arity) =>
      compiledOnce(
        arity,
        (runner, now, expires, limit) => sql<TaskRow>`WITH reclaimed AS (
            UPDATE kv_tasks SET ${reclaimAssignments(now!)}
            WHERE "seq" IN (SELECT "seq" FROM kv_tasks WHERE "status" = 'running' AND "lock_expires_at" <= ${at(now)}
              FOR UPDATE SKIP LOCKED)
          ), due AS MATERIALIZED (
            SELECT "seq" AS due_seq FROM kv_tasks
            WHERE "status" = 'pending' AND "scheduled_for" <= ${at(now)} ${ofNames(names)}
            ORDER BY "scheduled_for", "seq" LIMIT ${limit} FOR UPDATE SKIP LOCKED)
          UPDATE kv_tasks SET ${takeAssignments(runner!, now!, expires!)} FROM due
          WHERE kv_tasks."seq" = due.due_seq AND kv_tasks."status" = 'pending'
          RETURNING ${columns}`,
      ),
    )

    const lockPg = (
      runner: string,
      now: number,
      expires: number,
      names: ReadonlyArray<string> | undefined,
      limit: number,
    ) =>
      Effect.map(executor.rows(lockPgStatement(names, runner, time(now), time(expires), limit)), (rows) => ({
        tasks: byDue(rows),
        reclaimed: 0, // the trigger signals tasks that became pending, this process included
      }))

    // SQLite: told to take the due index (its planner would rather sort the tasks of a name)
    const reclaimSqlite = compiledOnce(
      1,
      (now) =>
        sql`UPDATE kv_tasks SET ${reclaimAssignments(now)} WHERE "status" = 'running' AND "lock_expires_at" <= ${now}`,
    )
    const takeSqlite = perNameCount((names, arity) =>
      compiledOnce(
        arity,
        (runner, now, expires, token, limit) => sql`UPDATE kv_tasks
          SET ${takeAssignments(runner!, now!, expires!)}, "lock_token" = ${token}
          WHERE "seq" IN (SELECT "seq" FROM kv_tasks INDEXED BY kv_tasks_due
            WHERE "status" = 'pending' AND "scheduled_for" <= ${now} ${ofNames(names)}
            ORDER BY "scheduled_for", "seq" LIMIT ${limit}) AND "status" = 'pending'`,
      ),
    )
    const selectClaimed = compiledOnce(
      1,
      (token) =>
        sql<TaskRow>`SELECT ${columns} FROM kv_tasks WHERE "status" = 'running' AND "lock_token" = ${token}`,
    )

    const lockSqlite = (
      runner: string,
      now: number,
      expires: number,
      names: ReadonlyArray<string> | undefined,
      limit: number,
    ) => {
      const token = crypto.randomUUID()
      return Effect.map(
        // the same order as on PostgreSQL: the tasks given back are the next lock's to take
        executor.atomic([
          takeSqlite(names, runner, now, expires, token, limit),
          reclaimSqlite(now),
          selectClaimed(token),
        ]),
        (results) => ({ tasks: byDue(results[2]?.rows ?? []), reclaimed: results[1]?.affected ?? 0 }),
      )
    }

    const lockStatement = isPg ? lockPg : lockSqlite

    /** Only while `runner` holds the task. */
    const held = (id: Hole, runner: Hole) =>
      sql`"id" = ${id} AND "locked_by" = ${runner} AND "status" = 'running'`

    // The releases, by status; each takes (now, error, id, runner).
    const releaseStatements: Record<ReleaseStatus, (...args: ReadonlyArray<unknown>) => Statement<never>> = {
      completed: compiledOnce(
        4,
        (
          now,
          error,
          id,
          runner,
        ) => sql`UPDATE kv_tasks SET "status" = 'completed', "completed_at" = ${at(now)},
          "lock_expires_at" = NULL, "last_error" = COALESCE(${error}, "last_error") WHERE ${held(id!, runner!)}`,
      ),
      cancelled: compiledOnce(
        4,
        (
          now,
          error,
          id,
          runner,
        ) => sql`UPDATE kv_tasks SET "status" = 'cancelled', "completed_at" = ${at(now)},
          "lock_expires_at" = NULL, "last_error" = COALESCE(${error}, "last_error") WHERE ${held(id!, runner!)}`,
      ),
      // a failed attempt: pending again after the backoff while retries remain, else failed
      failed: compiledOnce(
        4,
        (now, error, id, runner) => sql`UPDATE kv_tasks SET
          "status" = CASE WHEN ${retries} THEN 'pending' ELSE 'failed' END,
          "scheduled_for" = CASE WHEN ${retries} THEN ${retryAt(now)} ELSE "scheduled_for" END,
          "completed_at" = CASE WHEN ${retries} THEN NULL ELSE ${at(now)} END,
          "locked_by" = CASE WHEN ${retries} THEN NULL ELSE "locked_by" END,
          "locked_at" = CASE WHEN ${retries} THEN NULL ELSE "locked_at" END,
          "lock_expires_at" = NULL,
          "retry_count" = "retry_count" + 1,
          "last_error" = COALESCE(${error}, 'failed')
          WHERE ${held(id!, runner!)}`,
      ),
      // given back unattempted: due again at once, not counted
      pending: compiledOnce(
        4,
        (_now, error, id, runner) => sql`UPDATE kv_tasks SET "status" = 'pending', "locked_by" = NULL,
          "locked_at" = NULL, "lock_expires_at" = NULL, "last_error" = COALESCE(${error}, "last_error")
          WHERE ${held(id!, runner!)}`,
      ),
    }

    const earliestDue = perNameCount((names, arity) =>
      compiledOnce(
        arity,
        () => sql<{
          scheduled_for: Time
        }>`SELECT "scheduled_for" FROM kv_tasks ${isPg ? sql.literal("") : sql.literal("INDEXED BY kv_tasks_due")}
          WHERE "status" = 'pending' ${ofNames(names)} ORDER BY "scheduled_for", "seq" LIMIT 1`,
      ),
    )

    const extendLock = compiledOnce(
      3,
      (expires, id, runner) =>
        sql`UPDATE kv_tasks SET "lock_expires_at" = ${at(expires)} WHERE ${held(id!, runner!)}`,
    )

    const cancelStatement = compiledOnce(
      2,
      (now, id) => sql`UPDATE kv_tasks SET "status" = 'cancelled', "completed_at" = ${at(now)},
        "lock_expires_at" = NULL WHERE "id" = ${id} AND "status" IN ('pending', 'running')`,
    )

    /** Why `runner` could not change the task: what it is now. */
    const notHeldError = (id: string, runner: string, found: Option.Option<Task>) =>
      Option.match(found, {
        onNone: () => new TaskNotHeldError({ id, runnerId: runner, lockedBy: null }),
        onSome: (task) =>
          new TaskNotHeldError({ id, runnerId: runner, status: task.status, lockedBy: task.lockedBy }),
      })

    const tasksChanged = wakeup.notify("tasks")

    // --- the service -------------------------------------------------------------------

    const service: SchedulerService = {
      create: (task) =>
        Effect.gen(function* () {
          const id = yield* decodeId(task.id)
          const name = yield* decodeName(task.name)
          const payload = yield* decodePayload(task.payload)
          const maxRetries = yield* decodeMaxRetries(task.maxRetries)
          const timeoutSeconds = yield* decodeTimeoutSeconds(task.timeoutSeconds)
          const created = yield* decodeDate(task.created, "created")
          const scheduledFor = yield* decodeDate(task.scheduledFor, "scheduledFor")
          const inserted = yield* run(
            "create",
            executor.affected(
              insertTask(id, name, payload, time(created), time(scheduledFor), maxRetries, timeoutSeconds),
            ),
          )
          if (inserted === 0) return yield* new DuplicateTaskError({ id })
          yield* tasksChanged
          return {
            id,
            name,
            payload: JSON.parse(payload),
            status: "pending",
            created: new Date(created),
            scheduledFor: new Date(scheduledFor),
            lastError: null,
            retryCount: 0,
            maxRetries,
            timeoutSeconds,
            lockedBy: null,
          } satisfies Task
        }),

      get: (id) => Effect.flatMap(decodeId(id), (id) => run("get", getTask(id))),

      list: (filter: TaskFilter = {}) =>
        Effect.gen(function* () {
          const status =
            filter.status === undefined
              ? undefined
              : yield* decodeStatus(filter.status, taskStatuses, "status")
          const name = filter.name === undefined ? undefined : yield* decodeName(filter.name)
          const offset = yield* decodeOffset(filter.offset ?? 0)
          const limit = yield* decodePageLimit(filter.limit ?? -1)
          const conditions = [
            ...(status === undefined ? [] : [sql`"status" = ${status}`]),
            ...(name === undefined ? [] : [sql`"name" = ${name}`]),
          ]
          const where = conditions.length === 0 ? sql.literal("") : sql`WHERE ${sql.and(conditions)}`
          return yield* run(
            "list",
            Effect.map(
              executor.rows(
                sql<TaskRow>`SELECT ${columns} FROM kv_tasks ${where} ORDER BY "seq" DESC ${limitOffset(limit, offset)}`,
              ),
              (rows) => rows.map(toTask),
            ),
          )
        }),

      cancel: (id) =>
        Effect.gen(function* () {
          const checked = yield* decodeId(id)
          const now = yield* Clock.currentTimeMillis
          const found = yield* run(
            "cancel",
            Effect.zipRight(executor.affected(cancelStatement(time(now), checked)), getTask(checked)),
          )
          return yield* Option.match(found, {
            onNone: () => Effect.fail(new TaskNotFoundError({ id: checked })),
            onSome: Effect.succeed,
          })
        }),

      lock: (runnerId, lockDuration, taskTypes, limit = 1) =>
        Effect.gen(function* () {
          const runner = yield* decodeRunner(runnerId)
          const duration = millisOf(yield* decodeDuration(lockDuration))
          const names = taskTypes === undefined ? undefined : yield* Effect.forEach(taskTypes, decodeName)
          const count = yield* decodeLimit(limit)
          if (names !== undefined && names.length === 0) return []
          const now = yield* Clock.currentTimeMillis
          const { reclaimed, tasks } = yield* run(
            "lock",
            lockStatement(runner, now, now + duration, names, count),
          )
          if (reclaimed > 0) yield* tasksChanged
          return tasks
        }),

      release: (id, runnerId, status, error) =>
        Effect.gen(function* () {
          const checkedId = yield* decodeId(id)
          const runner = yield* decodeRunner(runnerId)
          const checkedStatus = yield* decodeStatus(status, releaseStatuses, "release status")
          const now = yield* Clock.currentTimeMillis
          const statement = releaseStatements[checkedStatus](
            time(now),
            error === undefined ? null : errorText(error),
            checkedId,
            runner,
          )
          const released = (yield* run("release", executor.affected(statement))) > 0
          if (!released) {
            return yield* Effect.fail(
              notHeldError(checkedId, runner, yield* run("release", getTask(checkedId))),
            )
          }
          if (checkedStatus === "pending") yield* tasksChanged
        }),

      nextDue: (taskTypes) =>
        Effect.gen(function* () {
          const names = taskTypes === undefined ? undefined : yield* Effect.forEach(taskTypes, decodeName)
          if (names !== undefined && names.length === 0) return Option.none()
          return yield* run(
            "nextDue",
            Effect.map(executor.rows(earliestDue(names)), (rows) =>
              Option.map(Option.fromNullable(rows[0]), (row) => toDate(row.scheduled_for)),
            ),
          )
        }),

      heartbeat: (id, runnerId, lockDuration) =>
        Effect.gen(function* () {
          const checkedId = yield* decodeId(id)
          const runner = yield* decodeRunner(runnerId)
          const duration = millisOf(yield* decodeDuration(lockDuration))
          const now = yield* Clock.currentTimeMillis
          const extended = yield* run(
            "heartbeat",
            executor.affected(extendLock(time(now + duration), checkedId, runner)),
          )
          if (extended === 1) return "running" as const
          const found = yield* run("heartbeat", getTask(checkedId))
          if (Option.isSome(found) && found.value.status === "cancelled" && found.value.lockedBy === runner) {
            return "cancelled" as const
          }
          return yield* Option.match(found, {
            onNone: () =>
              Effect.fail(new TaskNotHeldError({ id: checkedId, runnerId: runner, lockedBy: null })),
            onSome: (task) =>
              Effect.fail(
                new TaskNotHeldError({
                  id: checkedId,
                  runnerId: runner,
                  status: task.status,
                  lockedBy: task.lockedBy,
                }),
              ),
          })
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
