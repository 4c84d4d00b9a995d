/**
 * The recurring schedules' table (migration `0008_cron`), per dialect.
 *
 * `kv_cron`: one row per schedule: its cron expression, the task it makes (name, payload as
 * JSON text), its time zone (null: UTC), how far back missed ticks are made on start
 * (`backfill_ms`, null: none) and `last_tick`, the latest tick made into a task (or the time the
 * schedule was set): only later ticks are made. `last_tick` only moves forward, so that runners
 * agree on which ticks are done; the tasks themselves are deduplicated by their deterministic id.
 */
import type { Migration } from "./migrations.js"

const cronSqlite: ReadonlyArray<string> = [
  `CREATE TABLE kv_cron (
    id TEXT PRIMARY KEY NOT NULL,
    cron TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    timezone TEXT,
    backfill_ms INTEGER,
    last_tick INTEGER NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
  ) WITHOUT ROWID`,
]

const cronPostgres: ReadonlyArray<string> = [
  `CREATE TABLE kv_cron (
    id text COLLATE "C" PRIMARY KEY,
    cron text NOT NULL,
    name text NOT NULL,
    payload text NOT NULL,
    timezone text,
    backfill_ms bigint,
    last_tick timestamptz NOT NULL,
    created timestamptz NOT NULL,
    updated timestamptz NOT NULL
  )`,
]

export const cronMigrations: ReadonlyArray<Migration> = [
  { id: "0008_cron", sqlite: cronSqlite, pg: cronPostgres },
]
