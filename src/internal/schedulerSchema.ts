/**
 * The scheduler's table (migration `0003_tasks`), per dialect.
 *
 * `kv_tasks` holds one row per task. `seq` is the insertion order: it breaks ties between
 * tasks due at the same time and orders `list` (newest first). `lock_token` marks the rows one
 * `lock` call took, so that the SQLite dialect can read them back in the same transaction (see
 * `schedulerSql.ts`).
 *
 * Migration `0007_task_keys_priority` adds `priority` and `key` (see below).
 *
 * The partial indexes serve the hot statements: due pending tasks in order (`lock`; SQLite is
 * told to use it, as its planner would rather sort the tasks of a name), running tasks by lock
 * expiry (reclaiming). Running tasks are few: the status index finds them by lock token. On PostgreSQL, triggers signal
 * `effect_kv_tasks` whenever a task is inserted pending or becomes pending again, so idle runners
 * in every process wake up (PostgreSQL folds the signals of one transaction into one).
 */
import type { Migration } from "./migrations.js"
import { pgChannel } from "./wakeup.js"

const statuses = "'pending', 'running', 'completed', 'failed', 'cancelled'"

const indexes: ReadonlyArray<string> = [
  `CREATE INDEX kv_tasks_due ON kv_tasks (scheduled_for, seq) WHERE status = 'pending'`,
  `CREATE INDEX kv_tasks_expiry ON kv_tasks (lock_expires_at) WHERE status = 'running'`,
  "CREATE INDEX kv_tasks_status ON kv_tasks (status, seq)",
  "CREATE INDEX kv_tasks_name ON kv_tasks (name, seq)",
]

const tasksSqlite: ReadonlyArray<string> = [
  `CREATE TABLE kv_tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN (${statuses})),
    created INTEGER NOT NULL,
    scheduled_for INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    last_error TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    timeout_seconds REAL NOT NULL,
    locked_by TEXT,
    locked_at INTEGER,
    lock_expires_at INTEGER,
    lock_token TEXT
  )`,
  ...indexes,
]

const tasksPostgres: ReadonlyArray<string> = [
  `CREATE TABLE kv_tasks (
    seq bigserial PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    name text COLLATE "C" NOT NULL,
    payload text NOT NULL,
    status text NOT NULL CHECK (status IN (${statuses})),
    created timestamptz NOT NULL,
    scheduled_for timestamptz NOT NULL,
    started_at timestamptz,
    completed_at timestamptz,
    last_error text,
    retry_count bigint NOT NULL DEFAULT 0,
    max_retries bigint NOT NULL,
    timeout_seconds double precision NOT NULL,
    locked_by text,
    locked_at timestamptz,
    lock_expires_at timestamptz,
    lock_token text
  )`,
  ...indexes,
  `CREATE FUNCTION kv_tasks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_notify('${pgChannel("tasks")}', 'pending');
    RETURN NULL;
  END $$`,
  `CREATE TRIGGER kv_tasks_inserted AFTER INSERT ON kv_tasks
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION kv_tasks_notify()`,
  `CREATE TRIGGER kv_tasks_pending AFTER UPDATE OF status ON kv_tasks
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'pending') EXECUTE FUNCTION kv_tasks_notify()`,
]

// 0007_task_keys_priority: task keys and priorities, added in place to existing tables.
// `kv_tasks_key` makes a key held by at most one pending task (the upsert of `create` is keyed
// on it); `kv_tasks_claim` is the order `lock` takes due tasks in (higher priority first, then
// the earlier due, then insertion), so that a long backlog is read in index order. `kv_tasks_due`
// stays for `nextDue` (the earliest due, whatever its priority). `kv_tasks_keyed` finds a key's
// tasks of any status (the running one a create looks for), only keyed tasks indexed.
const keyIndexes: ReadonlyArray<string> = [
  `CREATE UNIQUE INDEX kv_tasks_key ON kv_tasks (key) WHERE status = 'pending'`,
  `CREATE INDEX kv_tasks_keyed ON kv_tasks (key) WHERE key IS NOT NULL`,
  `CREATE INDEX kv_tasks_claim ON kv_tasks (priority DESC, scheduled_for, seq) WHERE status = 'pending'`,
]

const keysPrioritySqlite: ReadonlyArray<string> = [
  "ALTER TABLE kv_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
  "ALTER TABLE kv_tasks ADD COLUMN key TEXT",
  ...keyIndexes,
]

const keysPriorityPostgres: ReadonlyArray<string> = [
  "ALTER TABLE kv_tasks ADD COLUMN priority integer NOT NULL DEFAULT 0",
  `ALTER TABLE kv_tasks ADD COLUMN key text COLLATE "C"`,
  ...keyIndexes,
]

// 0010_task_claim (PostgreSQL only): what `lock` takes, as one function (`kv_take_tasks`),
// planned with sorts and bitmap scans off, so that it always reads the due tasks in
// `kv_tasks_claim` order and stops after `lim` of them. The planner picks by its statistics,
// and a table that has not been analyzed since its backlog grew (a new database, a burst of
// tasks into a queue that was empty when autovacuum last looked) is estimated to hold a few
// pending tasks: it then fetched all of them and sorted them, for every claim (a backlog of
// 5,000 cost 2-4 ms a lock instead of 0.1 ms). SQLite is told the index in its statement
// (`INDEXED BY`). It takes the due tasks of `names` (all names when NULL) and returns the rows
// taken; giving back expired locks stays in the statement that calls it (`schedulerSql.ts`).
// PL/pgSQL keeps the plans of its statements for the session, so a call plans nothing.
const taskClaimPostgres: ReadonlyArray<string> = [
  `CREATE FUNCTION kv_take_tasks(
    runner text, at_now timestamptz, expires timestamptz, lim bigint, names text[]
  ) RETURNS SETOF kv_tasks LANGUAGE plpgsql SET enable_sort = off SET enable_bitmapscan = off AS $$
  BEGIN
    IF names IS NULL THEN
      RETURN QUERY WITH due AS MATERIALIZED (
          SELECT seq AS due_seq FROM kv_tasks WHERE status = 'pending' AND scheduled_for <= at_now
          ORDER BY priority DESC, scheduled_for, seq LIMIT lim FOR UPDATE SKIP LOCKED)
        UPDATE kv_tasks SET status = 'running', locked_by = runner, locked_at = at_now,
          lock_expires_at = expires, started_at = at_now
        FROM due WHERE kv_tasks.seq = due.due_seq AND kv_tasks.status = 'pending'
        RETURNING kv_tasks.*;
    ELSE
      RETURN QUERY WITH due AS MATERIALIZED (
          SELECT seq AS due_seq FROM kv_tasks
          WHERE status = 'pending' AND scheduled_for <= at_now AND name = ANY(names)
          ORDER BY priority DESC, scheduled_for, seq LIMIT lim FOR UPDATE SKIP LOCKED)
        UPDATE kv_tasks SET status = 'running', locked_by = runner, locked_at = at_now,
          lock_expires_at = expires, started_at = at_now
        FROM due WHERE kv_tasks.seq = due.due_seq AND kv_tasks.status = 'pending'
        RETURNING kv_tasks.*;
    END IF;
  END $$`,
]

export const schedulerMigrations: ReadonlyArray<Migration> = [
  { id: "0003_tasks", sqlite: tasksSqlite, pg: tasksPostgres },
  { id: "0007_task_keys_priority", sqlite: keysPrioritySqlite, pg: keysPriorityPostgres },
  { id: "0010_task_claim", sqlite: [], pg: taskClaimPostgres },
]
