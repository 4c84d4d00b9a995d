/**
 * What the SQL implementations (store, scheduler, consumers) share: how times, lists and
 * limits are bound and read on each dialect, how rows become models (a row that cannot be read
 * is a `StoreError`, not a defect), and how a backend failure becomes a `StoreError` once.
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { type KvRecord, StoreError, type StreamAction, type StreamRecord } from "../Store.js"
import { type AtomicStatementError, type Service as Executor, storeError } from "./executor.js"

/** A time as a row holds it: epoch ms (SQLite; rqlite may send text), a Date (PostgreSQL). */
export type TimeValue = number | string | Date

export const toDate = (value: TimeValue): Date => {
  const date = new Date(value instanceof Date ? value : Number(value))
  if (Number.isNaN(date.getTime())) throw new Error(`${JSON.stringify(value)} is not a time`)
  return date
}

/** Times as bound: epoch milliseconds on SQLite (INTEGER columns), a Date for PostgreSQL's timestamptz. */
export const timeBinder = (sql: SqlClient): ((millis: number) => number | Date) =>
  sql.onDialectOrElse({
    pg: () => (millis: number) => new Date(millis),
    orElse: () => (millis: number) => millis,
  })

/** SQL for one dialect: whether it is PostgreSQL's (else SQLite's, also rqlite's). */
export const isPostgres = (sql: SqlClient): boolean =>
  sql.onDialectOrElse({ pg: () => true, orElse: () => false })

/**
 * A list of strings as ONE bound value, so that a statement's text does not depend on how many
 * there are: a `text[]` on PostgreSQL, JSON text on SQLite. `inList` is its condition.
 */
export const listBinder = (sql: SqlClient): ((items: ReadonlyArray<string>) => unknown) =>
  isPostgres(sql) ? (items) => items : (items) => JSON.stringify(items)

/** `column` is one of the strings of a list bound with `listBinder`. */
export const inList =
  (sql: SqlClient) =>
  (column: Fragment, list: unknown): Fragment =>
    isPostgres(sql)
      ? sql`${column} = ANY(${list}::text[])`
      : sql`${column} IN (SELECT "value" FROM json_each(${list}))`

/**
 * `column` starts with the bound `prefix`, exactly: no LIKE pattern (so `%`, `_`, `\` are
 * ordinary) and no collation order, counted in characters on every engine.
 */
export const startsWith =
  (sql: SqlClient) =>
  (column: Fragment, prefix: unknown): Fragment =>
    isPostgres(sql)
      ? sql`substr(${column}, 1, length(${prefix}::text)) = ${prefix}::text`
      : sql`substr(${column}, 1, length(${prefix})) = ${prefix}`

/** A `LIMIT` as bound: `-1` is "no limit", which PostgreSQL spells `NULL`. */
export const limitBinder = (sql: SqlClient): ((limit: number) => number | null) =>
  isPostgres(sql) ? (limit) => (limit < 0 ? null : limit) : (limit) => limit

/** A row that cannot be read (a value that is not JSON, a time that is not one). */
export class MalformedRowError extends Data.TaggedError("MalformedRowError")<{
  readonly table: string
  readonly cause: unknown
}> {
  override get message() {
    const why = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `a row of ${this.table} could not be read: ${why}`
  }
}

/** The rows as models; a row `convert` cannot read fails them all with `MalformedRowError`. */
export const parseRows = <R, A>(
  table: string,
  rows: ReadonlyArray<R>,
  convert: (row: R) => A,
): Effect.Effect<Array<A>, MalformedRowError> => {
  try {
    return Effect.succeed(rows.map(convert))
  } catch (cause) {
    return Effect.fail(new MalformedRowError({ table, cause }))
  }
}

/** The columns of a record (`kv_records`, and a stream record's). BIGINT arrives as text from node-postgres. */
export interface RecordRow {
  readonly key: string
  readonly version: number | string
  readonly value: string
  readonly type: string
  readonly created: TimeValue
  /** NULL: the record does not expire */
  readonly expires_at: TimeValue | null
}

export interface StreamRow extends RecordRow {
  readonly seq: number | string
  readonly action: StreamAction
}

export const toRecord = (row: RecordRow): KvRecord =>
  row.expires_at === null || row.expires_at === undefined
    ? {
        key: row.key,
        version: Number(row.version),
        value: JSON.parse(row.value),
        type: row.type,
        created: toDate(row.created),
      }
    : {
        key: row.key,
        version: Number(row.version),
        value: JSON.parse(row.value),
        type: row.type,
        created: toDate(row.created),
        expiresAt: toDate(row.expires_at),
      }

/** Whether a record is live (not expired) at `now`, in epoch milliseconds. */
export const isLive = (record: KvRecord, now: number): boolean =>
  record.expiresAt === undefined || record.expiresAt.getTime() > now

export const toStreamRecord = (row: StreamRow): StreamRecord => ({
  seq: Number(row.seq),
  action: row.action,
  record: toRecord(row),
})

type BackendFailure = SqlError | AtomicStatementError | MalformedRowError

const isBackendFailure = (u: unknown): u is BackendFailure => {
  const tag = (u as { _tag?: unknown } | null)?._tag
  return tag === "SqlError" || tag === "AtomicStatementError" || tag === "MalformedRowError"
}

/**
 * Wraps the backend failures of `effect` once, as a `StoreError` of `operation` in the
 * executor's words (the cause kept); other failures pass through.
 */
export const failuresOf =
  (executor: Executor) =>
  <A, E>(
    operation: string,
    effect: Effect.Effect<A, E | BackendFailure>,
  ): Effect.Effect<A, Exclude<E, BackendFailure> | StoreError> =>
    Effect.catchIf(effect, isBackendFailure, (error) =>
      Effect.fail(
        error._tag === "MalformedRowError"
          ? new StoreError({ operation, reason: "query", detail: error.message, cause: error.cause })
          : storeError(executor, operation, error),
      ),
    ) as Effect.Effect<A, Exclude<E, BackendFailure> | StoreError>
