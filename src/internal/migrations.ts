/**
 * The tables behind the store, scheduler, consumers and recurring schedules, as named migrations applied in order.
 *
 * Each migration has an id (`0001_store`, `0002_...`) and its statements per dialect (SQLite
 * and rqlite share one). `kv_migrations` holds one row per applied id. A migration is applied
 * as ONE atomic batch of the backend's executor whose first write records its id: when
 * several processes start at once, the others' batches fail on that row (a primary key) and
 * roll back before they change anything, and they find the migration applied. On PostgreSQL
 * the batch also takes an advisory lock first, so that concurrent DDL queues instead of
 * racing on the catalog.
 *
 * Why not `@effect/sql`'s `Migrator`: it runs every migration inside `withTransaction`, which
 * rqlite (no interactive transactions) cannot do; here a migration is a list of statements,
 * so the same batch runs as a transaction on SQLite and PostgreSQL and as one request on rqlite.
 *
 * Migrations need not be idempotent: each runs exactly once per database (the first,
 * `0001_store`, is, so that databases from before named migrations upgrade in place). Each
 * feature keeps its own in its schema module; ids are unique and sort in the order to apply.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { consumerMigrations } from "./consumerSchema.js"
import { cronMigrations } from "./cronSchema.js"
import type { AtomicStatementError, Service as Executor } from "./executor.js"
import { schedulerMigrations } from "./schedulerSchema.js"
import { storeMigrations } from "./storeSchema.js"

export interface Migration {
  readonly id: string
  /** SQLite and rqlite */
  readonly sqlite: ReadonlyArray<string>
  readonly pg: ReadonlyArray<string>
}

/** Every migration, in the order they apply. */
export const migrations: ReadonlyArray<Migration> = [
  ...storeMigrations,
  ...schedulerMigrations,
  ...consumerMigrations,
  ...cronMigrations,
].sort((a, b) => a.id.localeCompare(b.id))

/** Serialises migrations of concurrent processes on PostgreSQL. */
const advisoryLock = 8315726001

export interface Migrator {
  /** Applies every migration the database lacks. */
  readonly run: Effect.Effect<void, SqlError | AtomicStatementError>
  /** The ids not applied yet, in order; every id when the database has no effect-kv tables. */
  readonly pending: Effect.Effect<ReadonlyArray<string>, SqlError>
  /** Whether the database has effect-kv's tables (of any version). */
  readonly initialised: Effect.Effect<boolean, SqlError>
}

/** A migrator for `list` (every migration; tests make databases of older versions with fewer). */
export const makeMigrator = (
  executor: Executor,
  list: ReadonlyArray<Migration> = migrations,
): Effect.Effect<Migrator, never, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
    const lock = isPg ? [sql`SELECT pg_advisory_xact_lock(${advisoryLock})`] : []

    const tableExists = (name: string) =>
      Effect.map(
        executor.rows(
          isPg
            ? sql<{ found: unknown }>`SELECT to_regclass(${name}) IS NOT NULL AS found`
            : sql<{
                found: unknown
              }>`SELECT count(*) AS found FROM sqlite_master WHERE type = 'table' AND name = ${name}`,
        ),
        (rows) => Boolean(rows[0]?.found) && rows[0]?.found !== "0",
      )

    const applied = Effect.flatMap(tableExists("kv_migrations"), (exists) =>
      exists
        ? Effect.map(
            executor.rows(sql<{ id: string }>`SELECT id FROM kv_migrations`),
            (rows) => new Set(rows.map((row) => row.id)),
          )
        : Effect.succeed(new Set<string>()),
    )

    const pending = Effect.map(applied, (done) => list.filter((m) => !done.has(m.id)).map((m) => m.id))

    const createTable = sql.unsafe(
      isPg
        ? "CREATE TABLE IF NOT EXISTS kv_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL)"
        : "CREATE TABLE IF NOT EXISTS kv_migrations (id TEXT PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL)",
    )

    const apply = (migration: Migration) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        const record = sql`INSERT INTO kv_migrations (id, applied_at) VALUES (${migration.id}, ${isPg ? new Date(now) : now})`
        const statements = (isPg ? migration.pg : migration.sqlite).map((statement) => sql.unsafe(statement))
        yield* executor.atomic([...lock, record, ...statements]).pipe(
          // another process applied it first: its row made this batch fail and roll back
          Effect.catchAll((error) =>
            Effect.flatMap(applied, (done) => (done.has(migration.id) ? Effect.void : Effect.fail(error))),
          ),
        )
      })

    const run = Effect.gen(function* () {
      yield* executor.atomic([...lock, createTable])
      const done = yield* applied
      for (const migration of list) {
        if (!done.has(migration.id)) yield* apply(migration)
      }
    })

    return { run, pending, initialised: tableExists("kv_records") }
  })
