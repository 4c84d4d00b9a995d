/**
 * The consumers' table (migration `0004_consumers`), per dialect.
 *
 * - `kv_consumers`: one row per consumer (its `name` is the stream name): the last committed
 *   seq (`position`), a `version` that counts the changes of the position (a commit names the
 *   version it read, so two instances can never both commit), and the lock: the instance
 *   holding it and until when. The lock lives in the consumer's own row so that "this
 *   instance still holds the lock and the position is the one it read" is one conditional
 *   UPDATE on every backend (rqlite has no interactive transactions).
 * - PostgreSQL: a statement trigger on `kv_stream` calls `pg_notify` on the stream channel, so
 *   every process's `LISTEN` hears of appends at commit (identical notifications of one
 *   transaction are folded into one). The payload is not empty: `@effect/sql-pg`'s `listen`
 *   drops notifications with an empty payload. SQLite processes notice appends by `PRAGMA
 *   data_version`, rqlite consumers poll (see `wakeup.ts`).
 */
import type { Migration } from "./migrations.js"
import { pgChannel } from "./wakeup.js"

const consumersSqlite: ReadonlyArray<string> = [
  `CREATE TABLE kv_consumers (
    name TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL,
    version INTEGER NOT NULL,
    locked_by TEXT,
    locked_at INTEGER,
    lock_expires_at INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
  ) WITHOUT ROWID`,
]

const consumersPostgres: ReadonlyArray<string> = [
  `CREATE TABLE kv_consumers (
    name text COLLATE "C" PRIMARY KEY,
    position bigint NOT NULL,
    version bigint NOT NULL,
    locked_by text,
    locked_at timestamptz,
    lock_expires_at timestamptz,
    created timestamptz NOT NULL,
    updated timestamptz NOT NULL
  )`,
  `CREATE OR REPLACE FUNCTION kv_stream_notify() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_notify('${pgChannel("stream")}', 'append');
    RETURN NULL;
  END $$`,
  `CREATE TRIGGER kv_stream_notify AFTER INSERT ON kv_stream
    FOR EACH STATEMENT EXECUTE FUNCTION kv_stream_notify()`,
]

export const consumerMigrations: ReadonlyArray<Migration> = [
  { id: "0004_consumers", sqlite: consumersSqlite, pg: consumersPostgres },
]
