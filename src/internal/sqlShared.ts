/**
 * What the SQL implementations (store, scheduler, consumers) share: how times are bound and
 * read on each dialect, how rows of records become models, and how a backend failure becomes
 * a `StoreError` once.
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { KvRecord, StoreError, StreamAction, StreamRecord } from "../Store.js"
import { type AtomicStatementError, type Service as Executor, storeError } from "./executor.js"

/** A time as a row holds it: epoch ms (SQLite; rqlite may send text), a Date (PostgreSQL). */
export type TimeValue = number | string | Date

export const toDate = (value: TimeValue): Date => new Date(value instanceof Date ? value : Number(value))

/** Times as bound: epoch milliseconds on SQLite (INTEGER columns), a Date for PostgreSQL's timestamptz. */
export const timeBinder = (sql: SqlClient): ((millis: number) => number | Date) =>
  sql.onDialectOrElse({
    pg: () => (millis: number) => new Date(millis),
    orElse: () => (millis: number) => millis,
  })

/** The columns of a record (`kv_records`, and a stream record's). BIGINT arrives as text from node-postgres. */
export interface RecordRow {
  readonly key: string
  readonly version: number | string
  readonly value: string
  readonly type: string
  readonly created: TimeValue
}

export interface StreamRow extends RecordRow {
  readonly seq: number | string
  readonly action: StreamAction
}

export const toRecord = (row: RecordRow): KvRecord => ({
  key: row.key,
  version: Number(row.version),
  value: JSON.parse(row.value),
  type: row.type,
  created: toDate(row.created),
})

export const toStreamRecord = (row: StreamRow): StreamRecord => ({
  seq: Number(row.seq),
  action: row.action,
  record: toRecord(row),
})

const isBackendFailure = (u: unknown): u is SqlError | AtomicStatementError => {
  const tag = (u as { _tag?: unknown } | null)?._tag
  return tag === "SqlError" || tag === "AtomicStatementError"
}

/**
 * Wraps the backend failures of `effect` once, as a `StoreError` of `operation` in the
 * executor's words (the cause kept); other failures pass through.
 */
export const failuresOf =
  (executor: Executor) =>
  <A, E>(
    operation: string,
    effect: Effect.Effect<A, E | SqlError | AtomicStatementError>,
  ): Effect.Effect<A, Exclude<E, SqlError | AtomicStatementError> | StoreError> =>
    Effect.catchIf(effect, isBackendFailure, (error) =>
      Effect.fail(storeError(executor, operation, error)),
    ) as Effect.Effect<A, Exclude<E, SqlError | AtomicStatementError> | StoreError>
