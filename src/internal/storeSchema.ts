/**
 * The store's tables (migration `0001_store`), per dialect.
 *
 * `0001_store` is the schema of databases made before migrations had names, written so that it
 * can run again on them (IF NOT EXISTS, CREATE OR REPLACE): that is how they upgrade in place.
 *
 * - `kv_records`: one row per user key.
 * - `kv_stream`: one row per mutation of a user key, filled by triggers on `kv_records`.
 * - `kv_locks`: named locks with an expiry, apart from the user key space.
 * - `kv_expect`: a write-only view whose trigger fails when a key is not at an expected
 *   version. It lets a version check abort an atomic batch from inside SQL, which rqlite
 *   (no interactive transactions) needs; every backend uses it the same way.
 * - `kv_delete_keys` (SQLite, from 0005_records_rowid): an always empty queue whose trigger
 *   deletes each key inserted into it, so that a multi-row delete runs in key order.
 * - `kv_expire_keys` (SQLite, from 0009_expiry): the same for the expiry sweep, which deletes a
 *   key only if it is still expired, and whose delete records keep the `expires_at`.
 */
import type { Migration } from "./migrations.js"

/** The error text that marks a failed version check raised by `kv_expect`. */
export const versionMismatchMarker = "effect-kv: version mismatch"

/** `kv_records`' stream triggers (SQLite): 0001_store made them, 0005_records_rowid makes them again. */
const recordTriggersSqlite: ReadonlyArray<string> = [
  `CREATE TRIGGER IF NOT EXISTS kv_records_created AFTER INSERT ON kv_records BEGIN
    INSERT INTO kv_stream (action, key, version, value, type, created)
    VALUES ('create', NEW.key, NEW.version, NEW.value, NEW.type, NEW.created);
  END`,
  `CREATE TRIGGER IF NOT EXISTS kv_records_updated AFTER UPDATE ON kv_records BEGIN
    INSERT INTO kv_stream (action, key, version, value, type, created)
    VALUES ('update', NEW.key, NEW.version, NEW.value, NEW.type, NEW.created);
  END`,
  `CREATE TRIGGER IF NOT EXISTS kv_records_deleted AFTER DELETE ON kv_records BEGIN
    INSERT INTO kv_stream (action, key, version, value, type, created)
    VALUES ('delete', OLD.key, OLD.version, OLD.value, OLD.type, OLD.created);
  END`,
]

/** The `kv_expect` view and its check (SQLite): 0001_store made them, 0005_records_rowid makes them again. */
const expectViewSqlite: ReadonlyArray<string> = [
  "CREATE VIEW IF NOT EXISTS kv_expect (key, version) AS SELECT key, version FROM kv_records WHERE 0",
  `CREATE TRIGGER IF NOT EXISTS kv_expect_check INSTEAD OF INSERT ON kv_expect BEGIN
    SELECT RAISE(ABORT, '${versionMismatchMarker}')
    WHERE CASE WHEN NEW.version = 0
      THEN EXISTS (SELECT 1 FROM kv_records WHERE key = NEW.key)
      ELSE NOT EXISTS (SELECT 1 FROM kv_records WHERE key = NEW.key AND version = NEW.version)
    END;
  END`,
]

const recordsTypeIndex = "CREATE INDEX IF NOT EXISTS kv_records_type ON kv_records (type, key)"

// `kv_records` is created WITHOUT ROWID here and made a rowid table by 0005_records_rowid:
// databases made before named migrations have it so, and this migration must stay as it was.
const storeSqlite: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS kv_records (
    key TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    type TEXT NOT NULL,
    created INTEGER NOT NULL
  ) WITHOUT ROWID`,
  recordsTypeIndex,
  // AUTOINCREMENT: a trimmed seq is never handed out again.
  `CREATE TABLE IF NOT EXISTS kv_stream (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    type TEXT NOT NULL,
    created INTEGER NOT NULL
  )`,
  "CREATE INDEX IF NOT EXISTS kv_stream_type ON kv_stream (type, seq)",
  ...recordTriggersSqlite,
  `CREATE TABLE IF NOT EXISTS kv_locks (
    name TEXT PRIMARY KEY NOT NULL,
    locked_by TEXT NOT NULL,
    locked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID`,
  ...expectViewSqlite,
  // databases made before named migrations recorded a schema version here
  "DROP TABLE IF EXISTS kv_schema",
]

/**
 * PostgreSQL.
 *
 * Stream numbering: a plain sequence would leave gaps on rollback and hand out numbers
 * in start order, not commit order, so a reader could see seq 12 before seq 11 commits
 * and skip it for good. Instead, captured rows get their `seq` from a deferred constraint
 * trigger, i.e. at commit time, from a one-row counter whose row lock is held until the
 * commit ends. Transactions therefore number their records one after another in commit
 * order, without gaps: when seq n is visible, every seq below n is already committed.
 * The counter lock is taken last in a transaction, so it cannot deadlock with row locks.
 */
const storePostgres: ReadonlyArray<string> = [
  `CREATE TABLE IF NOT EXISTS kv_records (
    key text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    value text NOT NULL,
    type text NOT NULL,
    created timestamptz NOT NULL
  )`,
  "CREATE INDEX IF NOT EXISTS kv_records_type ON kv_records (type, key)",
  `CREATE TABLE IF NOT EXISTS kv_stream (
    id bigserial PRIMARY KEY,
    seq bigint UNIQUE,
    tx bigint NOT NULL DEFAULT txid_current(),
    action text NOT NULL,
    key text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    value text NOT NULL,
    type text NOT NULL,
    created timestamptz NOT NULL
  )`,
  "CREATE INDEX IF NOT EXISTS kv_stream_unnumbered ON kv_stream (tx) WHERE seq IS NULL",
  "CREATE INDEX IF NOT EXISTS kv_stream_type ON kv_stream (type, seq)",
  `CREATE TABLE IF NOT EXISTS kv_stream_counter (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
  )`,
  "INSERT INTO kv_stream_counter (id, seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
  `CREATE OR REPLACE FUNCTION kv_stream_capture() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO kv_stream (action, key, version, value, type, created)
      VALUES ('delete', OLD.key, OLD.version, OLD.value, OLD.type, OLD.created);
    ELSE
      INSERT INTO kv_stream (action, key, version, value, type, created)
      VALUES (CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END,
              NEW.key, NEW.version, NEW.value, NEW.type, NEW.created);
    END IF;
    RETURN NULL;
  END $$`,
  "DROP TRIGGER IF EXISTS kv_records_stream ON kv_records",
  `CREATE TRIGGER kv_records_stream AFTER INSERT OR UPDATE OR DELETE ON kv_records
    FOR EACH ROW EXECUTE FUNCTION kv_stream_capture()`,
  // Fires at commit once per captured row; the first firing numbers all of them.
  `CREATE OR REPLACE FUNCTION kv_stream_number() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    pending bigint;
    last bigint;
  BEGIN
    SELECT count(*) INTO pending FROM kv_stream WHERE seq IS NULL AND tx = txid_current();
    IF pending = 0 THEN
      RETURN NULL;
    END IF;
    UPDATE kv_stream_counter SET seq = seq + pending WHERE id = 1 RETURNING seq INTO last;
    UPDATE kv_stream AS s SET seq = last - pending + p.n
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
          FROM kv_stream WHERE seq IS NULL AND tx = txid_current()) AS p
    WHERE s.id = p.id;
    RETURN NULL;
  END $$`,
  "DROP TRIGGER IF EXISTS kv_stream_number ON kv_stream",
  `CREATE CONSTRAINT TRIGGER kv_stream_number AFTER INSERT ON kv_stream
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kv_stream_number()`,
  `CREATE TABLE IF NOT EXISTS kv_locks (
    name text COLLATE "C" PRIMARY KEY,
    locked_by text NOT NULL,
    locked_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
  )`,
  // RFC 7396 on json (not jsonb) so that member order is kept as SQLite's json_patch
  // keeps it: target members in place, new members appended in patch order.
  `CREATE OR REPLACE FUNCTION kv_merge_patch(target json, patch json) RETURNS json
  LANGUAGE plpgsql IMMUTABLE AS $$
  DECLARE
    result json;
  BEGIN
    IF json_typeof(patch) IS DISTINCT FROM 'object' THEN
      RETURN patch;
    END IF;
    IF json_typeof(target) IS DISTINCT FROM 'object' THEN
      target := '{}'::json;
    END IF;
    SELECT json_object_agg(m.key, m.value ORDER BY m.position) INTO result
    FROM (
      SELECT t.key,
             CASE WHEN p.value IS NULL THEN t.value ELSE kv_merge_patch(t.value, p.value) END AS value,
             t.position
      FROM json_each(target) WITH ORDINALITY AS t(key, value, position)
      LEFT JOIN json_each(patch) AS p(key, value) ON p.key = t.key
      WHERE p.value IS NULL OR json_typeof(p.value) <> 'null'
      UNION ALL
      SELECT p.key, kv_merge_patch(NULL, p.value), 1000000000 + p.position
      FROM json_each(patch) WITH ORDINALITY AS p(key, value, position)
      WHERE json_typeof(p.value) <> 'null'
        AND NOT EXISTS (SELECT 1 FROM json_each(target) AS t(key, value) WHERE t.key = p.key)
    ) AS m;
    RETURN COALESCE(result, '{}'::json);
  END $$`,
  `CREATE OR REPLACE VIEW kv_expect AS SELECT key, version FROM kv_records WHERE false`,
  // FOR UPDATE keeps the checked version until the batch commits.
  `CREATE OR REPLACE FUNCTION kv_expect_check() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.version = 0 THEN
      IF EXISTS (SELECT 1 FROM kv_records WHERE key = NEW.key) THEN
        RAISE EXCEPTION '${versionMismatchMarker}';
      END IF;
    ELSE
      PERFORM 1 FROM kv_records WHERE key = NEW.key AND version = NEW.version FOR UPDATE;
      IF NOT FOUND THEN
        RAISE EXCEPTION '${versionMismatchMarker}';
      END IF;
    END IF;
    RETURN NULL;
  END $$`,
  "DROP TRIGGER IF EXISTS kv_expect_check ON kv_expect",
  `CREATE TRIGGER kv_expect_check INSTEAD OF INSERT ON kv_expect
    FOR EACH ROW EXECUTE FUNCTION kv_expect_check()`,
  // databases made before named migrations recorded a schema version here
  "DROP TABLE IF EXISTS kv_schema",
]

/**
 * PostgreSQL: one stream record per row of a statement in KEY order, as SQLite (and so rqlite)
 * writes them. Row triggers fire in the order the executor visits the rows (heap order for a
 * multi-row DELETE), so the same history numbered its records differently per backend.
 * Statement triggers see all rows of the statement at once (transition tables) and append
 * them sorted; seq numbers are still given at commit, in `id` order (see 0001_store).
 */
const streamKeyOrderPostgres: ReadonlyArray<string> = [
  `CREATE FUNCTION kv_stream_capture_rows() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO kv_stream (action, key, version, value, type, created)
      SELECT 'delete', key, version, value, type, created FROM old_rows ORDER BY key;
    ELSE
      INSERT INTO kv_stream (action, key, version, value, type, created)
      SELECT CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END, key, version, value, type, created
      FROM new_rows ORDER BY key;
    END IF;
    RETURN NULL;
  END $$`,
  "DROP TRIGGER kv_records_stream ON kv_records",
  "DROP FUNCTION kv_stream_capture()",
  // a trigger with a transition table has one event
  `CREATE TRIGGER kv_records_stream_insert AFTER INSERT ON kv_records REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kv_stream_capture_rows()`,
  `CREATE TRIGGER kv_records_stream_update AFTER UPDATE ON kv_records REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kv_stream_capture_rows()`,
  `CREATE TRIGGER kv_records_stream_delete AFTER DELETE ON kv_records REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kv_stream_capture_rows()`,
]

/**
 * SQLite (also rqlite): `kv_records` becomes a rowid table, its key a unique index (the
 * primary key, so `ON CONFLICT ("key")` upserts keep their target).
 *
 * A WITHOUT ROWID table is one index b-tree whose cells are whole rows, and an index b-tree
 * keeps cells in its interior pages too, as dividers. A row of more than about 1 KiB (4 KiB
 * pages) keeps the rest on overflow pages, and SQLite compares a search key with such a cell by
 * reading the whole row into memory first. So every seek whose path compares with a big row
 * reads all of it: one seek of `key >= 'bulk/'` next to a 5 MiB row read its 1,282 overflow
 * pages. A DELETE with a trigger runs in two passes (collect the keys, then seek each one to
 * delete it), and as rows are deleted in key order the big row stays the divider next to the
 * next key: a DELETE of 5,000 keys read about 2.2 million pages (9 GB) in about 5 s, where it
 * reads 110 pages in tens of milliseconds with the table below (without the trigger it runs in
 * one pass and reads 136 thousand pages). In a rowid table the values sit only
 * in the leaves of the table b-tree (its interior cells are rowids), and the key index holds
 * (key, rowid): seeks by key never touch a value.
 *
 * The steps of SQLite's own recipe for changing a table: make the new table, copy the rows (in
 * key order), drop the old one (which drops its index and triggers; a DROP fires no trigger,
 * so the stream gets no records and its seq goes on from `sqlite_sequence`), rename the new
 * one, make its index and triggers again. The view goes first: renaming a table checks every
 * view, and `kv_expect` would name a missing table.
 *
 * Key order of a multi-row delete's stream records: the first pass of a DELETE with a trigger
 * collects rowids, and SQLite deletes them in rowid order (the WITHOUT ROWID table collected
 * keys, so key order), which is insertion order, not key order. The store therefore deletes
 * several rows by inserting their keys, `SELECT`ed in key order, into `kv_delete_keys`: its
 * trigger deletes each record as its key arrives (the stream trigger above writes its record)
 * and removes the key again. It is still one statement, whose rows changed are the keys
 * queued, i.e. the records deleted (changes made by triggers are not counted).
 */
const recordsRowidSqlite: ReadonlyArray<string> = [
  "DROP VIEW kv_expect",
  `CREATE TABLE kv_records_rowid (
    key TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    type TEXT NOT NULL,
    created INTEGER NOT NULL
  )`,
  `INSERT INTO kv_records_rowid (key, version, value, type, created)
    SELECT key, version, value, type, created FROM kv_records ORDER BY key`,
  "DROP TABLE kv_records",
  "ALTER TABLE kv_records_rowid RENAME TO kv_records",
  recordsTypeIndex,
  ...recordTriggersSqlite,
  ...expectViewSqlite,
  "CREATE TABLE kv_delete_keys (key TEXT NOT NULL)",
  `CREATE TRIGGER kv_delete_keys_delete AFTER INSERT ON kv_delete_keys BEGIN
    DELETE FROM kv_records WHERE key = NEW.key;
    DELETE FROM kv_delete_keys WHERE rowid = NEW.rowid;
  END`,
]

/**
 * PostgreSQL: the numbering trigger of 0001_store fires at commit once per stream record, and
 * every firing after the first, which numbered them all, still counted the unnumbered records
 * of the transaction. That count walks the entries `kv_stream_unnumbered` keeps for the rows'
 * old versions (dead only after the commit), so a transaction writing n records did n² work:
 * the commit of a 5,000-key `deletePrefix` took 4.1 s of its 4.2. Now a firing whose own record
 * already has its seq returns at once (a primary-key lookup): 184 ms. Nothing else changes, and
 * a record written after a numbering (constraints made IMMEDIATE) is still numbered by its own
 * firing.
 */
const streamNumberOncePostgres: ReadonlyArray<string> = [
  `CREATE OR REPLACE FUNCTION kv_stream_number() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    pending bigint;
    last bigint;
  BEGIN
    IF EXISTS (SELECT 1 FROM kv_stream WHERE id = NEW.id AND seq IS NOT NULL) THEN
      RETURN NULL;
    END IF;
    SELECT count(*) INTO pending FROM kv_stream WHERE seq IS NULL AND tx = txid_current();
    IF pending = 0 THEN
      RETURN NULL;
    END IF;
    UPDATE kv_stream_counter SET seq = seq + pending WHERE id = 1 RETURNING seq INTO last;
    UPDATE kv_stream AS s SET seq = last - pending + p.n
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
          FROM kv_stream WHERE seq IS NULL AND tx = txid_current()) AS p
    WHERE s.id = p.id;
    RETURN NULL;
  END $$`,
]

/** A record is live (not expired) at `now`: `expires_at` unset or later. */
const liveAt = (record: string, now: string) =>
  `(${record}.expires_at IS NULL OR ${record}.expires_at > ${now})`

/**
 * Expiry (SQLite, also rqlite): `expires_at` on records and stream records (epoch ms, NULL: never),
 * a partial index of the records that expire, so that a sweep reads only those, and triggers that
 * tell an expiry from a delete.
 *
 * An expired record is absent for every read and version check, before or after a sweep
 * deleted it. A write that meets an expired row replaces it as a new record (version 1, its own
 * `created`): the update trigger sees the version start again at 1 (no other update does that)
 * and writes the expiry's `delete` record before the `create`, exactly what a sweep followed
 * by the write would have appended. A sweep's deletes keep `expires_at` in their stream
 * records; other deletes leave it out, so a reader can tell the two apart.
 *
 * `kv_expect` gains the `now` of the check, so that an expired key counts as absent.
 */
const expirySqlite: ReadonlyArray<string> = [
  "ALTER TABLE kv_records ADD COLUMN expires_at INTEGER",
  "ALTER TABLE kv_stream ADD COLUMN expires_at INTEGER",
  "CREATE INDEX kv_records_expiry ON kv_records (expires_at, key) WHERE expires_at IS NOT NULL",
  "CREATE TABLE kv_expire_keys (key TEXT NOT NULL, now INTEGER NOT NULL)",
  `CREATE TRIGGER kv_expire_keys_delete AFTER INSERT ON kv_expire_keys BEGIN
    DELETE FROM kv_records WHERE key = NEW.key AND expires_at <= NEW.now;
    DELETE FROM kv_expire_keys WHERE rowid = NEW.rowid;
  END`,
  "DROP TRIGGER kv_records_created",
  "DROP TRIGGER kv_records_updated",
  "DROP TRIGGER kv_records_deleted",
  `CREATE TRIGGER kv_records_created AFTER INSERT ON kv_records BEGIN
    INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
    VALUES ('create', NEW.key, NEW.version, NEW.value, NEW.type, NEW.created, NEW.expires_at);
  END`,
  `CREATE TRIGGER kv_records_updated AFTER UPDATE ON kv_records BEGIN
    INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
    SELECT 'delete', OLD.key, OLD.version, OLD.value, OLD.type, OLD.created, OLD.expires_at
    WHERE NEW.version = 1;
    INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
    VALUES (CASE WHEN NEW.version = 1 THEN 'create' ELSE 'update' END,
      NEW.key, NEW.version, NEW.value, NEW.type, NEW.created, NEW.expires_at);
  END`,
  `CREATE TRIGGER kv_records_deleted AFTER DELETE ON kv_records BEGIN
    INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
    VALUES ('delete', OLD.key, OLD.version, OLD.value, OLD.type, OLD.created,
      CASE WHEN EXISTS (SELECT 1 FROM kv_expire_keys WHERE key = OLD.key) THEN OLD.expires_at END);
  END`,
  "DROP VIEW kv_expect",
  "CREATE VIEW kv_expect (key, version, now) AS SELECT key, version, 0 FROM kv_records WHERE 0",
  `CREATE TRIGGER kv_expect_check INSTEAD OF INSERT ON kv_expect BEGIN
    SELECT RAISE(ABORT, '${versionMismatchMarker}')
    WHERE CASE WHEN NEW.version = 0
      THEN EXISTS (SELECT 1 FROM kv_records AS r WHERE r.key = NEW.key AND ${liveAt("r", "NEW.now")})
      ELSE NOT EXISTS (SELECT 1 FROM kv_records AS r
        WHERE r.key = NEW.key AND r.version = NEW.version AND ${liveAt("r", "NEW.now")})
    END;
  END`,
]

/**
 * Expiry (PostgreSQL): as on SQLite. The sweep marks its transaction (`effect_kv.expiring`, a
 * transaction-local setting) instead of going through a queue, and the update trigger also
 * reads the old rows to write an expiry's `delete` record; records stay in key order, an
 * expiry's `delete` before the key's `create`.
 */
const expiryPostgres: ReadonlyArray<string> = [
  "ALTER TABLE kv_records ADD COLUMN expires_at timestamptz",
  "ALTER TABLE kv_stream ADD COLUMN expires_at timestamptz",
  "CREATE INDEX kv_records_expiry ON kv_records (expires_at, key) WHERE expires_at IS NOT NULL",
  `CREATE OR REPLACE FUNCTION kv_stream_capture_rows() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
      SELECT 'delete', key, version, value, type, created,
        CASE WHEN current_setting('effect_kv.expiring', true) = 'on' THEN expires_at END
      FROM old_rows ORDER BY key;
    ELSIF TG_OP = 'INSERT' THEN
      INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
      SELECT 'create', key, version, value, type, created, expires_at FROM new_rows ORDER BY key;
    ELSIF EXISTS (SELECT 1 FROM new_rows WHERE version = 1) THEN
      INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
      SELECT c.action, c.key, c.version, c.value, c.type, c.created, c.expires_at FROM (
        SELECT 'delete' AS action, o.key, o.version, o.value, o.type, o.created, o.expires_at, 0 AS step
          FROM old_rows AS o JOIN new_rows AS n ON n.key = o.key WHERE n.version = 1
        UNION ALL
        SELECT CASE WHEN version = 1 THEN 'create' ELSE 'update' END, key, version, value, type, created,
          expires_at, 1 FROM new_rows
      ) AS c ORDER BY c.key, c.step;
    ELSE
      INSERT INTO kv_stream (action, key, version, value, type, created, expires_at)
      SELECT 'update', key, version, value, type, created, expires_at FROM new_rows ORDER BY key;
    END IF;
    RETURN NULL;
  END $$`,
  "DROP TRIGGER kv_records_stream_update ON kv_records",
  `CREATE TRIGGER kv_records_stream_update AFTER UPDATE ON kv_records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kv_stream_capture_rows()`,
  "CREATE OR REPLACE VIEW kv_expect AS SELECT key, version, NULL::timestamptz AS now FROM kv_records WHERE false",
  `CREATE OR REPLACE FUNCTION kv_expect_check() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.version = 0 THEN
      IF EXISTS (SELECT 1 FROM kv_records AS r WHERE r.key = NEW.key AND ${liveAt("r", "NEW.now")}) THEN
        RAISE EXCEPTION '${versionMismatchMarker}';
      END IF;
    ELSE
      PERFORM 1 FROM kv_records AS r
        WHERE r.key = NEW.key AND r.version = NEW.version AND ${liveAt("r", "NEW.now")} FOR UPDATE;
      IF NOT FOUND THEN
        RAISE EXCEPTION '${versionMismatchMarker}';
      END IF;
    END IF;
    RETURN NULL;
  END $$`,
]

export const storeMigrations: ReadonlyArray<Migration> = [
  { id: "0001_store", sqlite: storeSqlite, pg: storePostgres },
  { id: "0002_stream_key_order", sqlite: [], pg: streamKeyOrderPostgres },
  // PostgreSQL's tables are heaps: a row is found through its index by its tuple id, and a big
  // value is TOASTed out of line; no WITHOUT ROWID to undo.
  { id: "0005_records_rowid", sqlite: recordsRowidSqlite, pg: [] },
  { id: "0006_stream_number_once", sqlite: [], pg: streamNumberOncePostgres },
  { id: "0009_expiry", sqlite: expirySqlite, pg: expiryPostgres },
]
