/**
 * Named migrations on every backend: a database made by the schema before migrations had
 * names upgrades in place, keeping its records, stream and locks; so does one made before
 * `kv_records` became a rowid table (0005_records_rowid), and one with tasks from before task
 * keys and priorities (0007_task_keys_priority); several processes migrating one
 * database at once all succeed. `migrate: false` on a database that lacks migrations says which
 * ones and to run `kv init`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { KvSql, Mutation, Scheduler, Store, Task } from "../src/index.js"
import { executorOf, fromSqlClient, SqlExecutor } from "../src/internal/executor.js"
import { migrations } from "../src/internal/migrations.js"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { fails, spawnKv } from "./Cli.suite.js"
import { idsAfter, migrateUpTo } from "./fixtures/olderVersion.js"
import { postgresSchema, sqliteSchema } from "./fixtures/schemaV1.js"
import { createScratchDatabase } from "./support/postgres.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

type ClientLayer = Layer.Layer<SqlClient.SqlClient, unknown>

/**
 * A scratch database; `client()` makes a new client (a new "process") on it, `store(config)`
 * the backend's own layer on it.
 */
class Database extends Context.Tag("test/Database")<
  Database,
  {
    readonly client: () => ClientLayer
    readonly store: (config: { readonly migrate?: boolean }) => Layer.Layer<Store, unknown>
  }
>() {}

const isPostgres = (sql: SqlClient.SqlClient) => sql.onDialectOrElse({ pg: () => true, orElse: () => false })

/** Creates the old schema with the old statements, and data through its triggers. */
const createOldDatabase = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const executor = Option.getOrElse(yield* Effect.serviceOption(SqlExecutor), () => fromSqlClient(sql))
  const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
  yield* executor.atomic((isPg ? postgresSchema : sqliteSchema).map((statement) => sql.unsafe(statement)))
  const created = isPg ? new Date(1000) : 1000
  yield* executor.atomic([
    sql`INSERT INTO kv_records (key, version, value, type, created) VALUES ('old/a', 1, '{"a":1}', 'object', ${created})`,
    sql`UPDATE kv_records SET version = 2, value = '{"a":2}' WHERE key = 'old/a'`,
    sql`INSERT INTO kv_records (key, version, value, type, created) VALUES ('old/b', 1, '"b"', 'string', ${created})`,
  ])
  assert.deepStrictEqual(
    (yield* executor.rows(sql<{ version: number | string }>`SELECT version FROM kv_schema`)).map((r) =>
      Number(r.version),
    ),
    [1],
  )
})

const upgradeSuite = (name: string, database: Layer.Layer<Database, unknown>) =>
  describe(`in-place upgrade on ${name}`, () => {
    it.effect(
      "an old database keeps its records, stream and versions, and gets every migration",
      () =>
        Effect.gen(function* () {
          const { client } = yield* Database
          const raw = client()
          yield* createOldDatabase.pipe(Effect.provide(raw))
          // three "processes" migrate at once, each with its own client
          yield* Effect.all(
            [1, 2, 3].map(() => Effect.provide(Effect.void, KvSql.layer().pipe(Layer.provide(client())))),
            { concurrency: "unbounded" },
          )
          yield* Effect.gen(function* () {
            const store = yield* Store
            const sql = yield* SqlClient.SqlClient
            const a = Option.getOrThrow(yield* store.get("old/a"))
            assert.strictEqual(a.version, 2)
            assert.deepStrictEqual(a.value, { a: 2 })
            assert.strictEqual(a.created.getTime(), 1000)
            assert.strictEqual(yield* store.streamSeq(), 3)
            const next = yield* store.put("old/a", 2, { a: 3 })
            assert.strictEqual(next.version, 3)
            assert.strictEqual(yield* store.streamSeq(), 4)
            assert.deepStrictEqual(
              (yield* store.stream("all", 0)).map((r) => [r.seq, r.action, r.record.key, r.record.version]),
              [
                [1, "create", "old/a", 1],
                [2, "update", "old/a", 2],
                [3, "create", "old/b", 1],
                [4, "update", "old/a", 3],
              ],
            )
            // version checks inside batches (the kv_expect view) still work
            const stale = yield* store.mutateAll([Mutation.put("old/b", 7, "x")]).pipe(Effect.flip)
            assert.strictEqual(stale._tag, "VersionMismatchError")
            const applied = yield* sql<{ id: string }>`SELECT id FROM kv_migrations ORDER BY id`
            assert.deepStrictEqual(
              applied.map((row) => row.id),
              migrations.map((m) => m.id),
            )
            const schemaTable = yield* Effect.either(sql`SELECT version FROM kv_schema`)
            assert.isTrue(schemaTable._tag === "Left", "kv_schema is gone")
            yield* store.init() // idempotent
          }).pipe(Effect.provide(KvSql.layer().pipe(Layer.provideMerge(raw))))
        }).pipe(Effect.provide(database)),
      { timeout: 120_000 },
    )
  })

const sqliteDatabase = layerOnScratch(
  async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-upgrade-")),
  async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
  (dir) =>
    Layer.succeed(Database, {
      client: () => KvSqlite.layerClient({ filename: path.join(dir, "old.db") }),
      store: (config) => KvSqlite.layer({ filename: path.join(dir, "old.db"), ...config }),
    }),
)

const postgresDatabase = layerOnScratch(
  createScratchDatabase,
  (database) => database.drop(),
  (database) =>
    Layer.succeed(Database, {
      client: () => KvPostgres.layerClient({ url: database.url }),
      store: (config) => KvPostgres.layer({ url: database.url, ...config }),
    }),
)

const rqliteDatabase = layerOnScratch(
  startRqlite,
  (server) => server.stop(),
  (server) =>
    Layer.succeed(Database, {
      client: () => KvRqlite.layerClient({ url: server.url }),
      store: (config) => KvRqlite.layer({ url: server.url, ...config }),
    }),
)

// --- 0005_records_rowid (and 0006_stream_number_once) on a database of the version before ----

/** 100 KiB: more than a b-tree page holds, so the copy of 0005_records_rowid moves overflow pages. */
const bigValue = "v".repeat(100 * 1024)
/** A day after the epoch, where TestClock starts: the lock is held during the test. */
const lockExpiry = 86_400_000

/** Records, stream and a lock as the version up to 0004_consumers wrote them, with its SQL. */
const createDatabaseAt0004 = Effect.gen(function* () {
  yield* migrateUpTo("0004_consumers")
  const sql = yield* SqlClient.SqlClient
  const executor = executorOf(sql)
  const time = (millis: number) => (isPostgres(sql) ? new Date(millis) : millis)
  const insert = (key: string, value: unknown, type: string) =>
    sql`INSERT INTO kv_records ("key", "version", "value", "type", "created")
      VALUES (${key}, 1, ${JSON.stringify(value)}, ${type}, ${time(1000)})`
  yield* executor.atomic([
    // in reverse key order, so that the order rows were written in is not key order
    ...["old/e", "old/d", "old/c", "old/b", "old/a"].map((key) => insert(key, key, "string")),
    sql`UPDATE kv_records SET "version" = 2, "value" = '{"c":2}', "type" = 'object' WHERE "key" = 'old/c'`,
    insert("old/big", bigValue, "string"),
    sql`DELETE FROM kv_records WHERE "key" IN ('old/e', 'old/d')`,
    sql`INSERT INTO kv_locks ("name", "locked_by", "locked_at", "expires_at")
      VALUES ('old-lock', 'old-holder', ${time(0)}, ${time(lockExpiry)})`,
  ])
  // trimmed: the next seq comes from the stream's counter, not from the records left
  yield* executor.affected(sql`DELETE FROM kv_stream WHERE "seq" <= 1`)
})

interface SchemaObject {
  readonly type: string
  readonly name: string
  readonly sql: string | null
}

/** SQLite's schema (also rqlite's), without its own objects. */
const sqliteObjects = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<SchemaObject>`SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name`,
)

/** What 0005_records_rowid changes in SQLite's schema; everything else stays as it was. */
const madeByRowidMigration = new Set(["kv_records", "kv_delete_keys", "kv_delete_keys_delete"])
/** What 0007_task_keys_priority changes (after it, in the same upgrade). */
const madeByTaskKeysMigration = new Set(["kv_tasks", "kv_tasks_claim", "kv_tasks_key", "kv_tasks_keyed"])
/** What 0008_cron adds (a table of its own). */
const madeByCronMigration = new Set(["kv_cron"])
/** What 0009_expiry adds or makes again (a column of the stream, its triggers, the check view). */
const madeByExpiryMigration = new Set([
  "kv_stream",
  "kv_records_expiry",
  "kv_expire_keys",
  "kv_expire_keys_delete",
  "kv_records_created",
  "kv_records_updated",
  "kv_records_deleted",
  "kv_expect",
  "kv_expect_check",
])

const streamOf = (store: Store["Type"], seq: number) =>
  Effect.map(store.stream("all", seq), (records) =>
    records.map((r) => [r.seq, r.action, r.record.key, r.record.version] as const),
  )

const rowidUpgradeSuite = (name: string, database: Layer.Layer<Database, unknown>) =>
  describe(`upgrade from 0004_consumers on ${name}`, () => {
    it.effect(
      "records, stream, versions and locks survive 0005_records_rowid; the stream goes on; upserts and version checks work",
      () =>
        Effect.gen(function* () {
          const { client } = yield* Database
          const raw = client()
          const before = yield* Effect.gen(function* () {
            yield* createDatabaseAt0004
            return isPostgres(yield* SqlClient.SqlClient) ? [] : yield* sqliteObjects
          }).pipe(Effect.provide(raw))
          // three "processes" migrate at once, each with its own client
          yield* Effect.all(
            [1, 2, 3].map(() => Effect.provide(Effect.void, KvSql.layer().pipe(Layer.provide(client())))),
            { concurrency: "unbounded" },
          )
          yield* Effect.gen(function* () {
            const store = yield* Store
            const sql = yield* SqlClient.SqlClient
            const records = (yield* store.list()).map((r) => [
              r.key,
              r.version,
              r.value,
              r.type,
              r.created.getTime(),
            ])
            assert.deepStrictEqual(records, [
              ["old/a", 1, "old/a", "string", 1000],
              ["old/b", 1, "old/b", "string", 1000],
              ["old/big", 1, bigValue, "string", 1000],
              ["old/c", 2, { c: 2 }, "object", 1000],
            ])
            const history: ReadonlyArray<readonly [number, string, string, number]> = [
              [2, "create", "old/d", 1],
              [3, "create", "old/c", 1],
              [4, "create", "old/b", 1],
              [5, "create", "old/a", 1],
              [6, "update", "old/c", 2],
              [7, "create", "old/big", 1],
              [8, "delete", "old/d", 1],
              [9, "delete", "old/e", 1],
            ]
            assert.deepStrictEqual(yield* streamOf(store, 0), history)
            assert.strictEqual(yield* store.streamSeq(), 9)
            const lock = Option.getOrThrow(yield* store.lockStatus("old-lock"))
            assert.strictEqual(lock.lockedBy, "old-holder")
            assert.strictEqual(lock.expiresAt.getTime(), lockExpiry)

            // upserts need the unique key; version checks, single and in batches
            assert.strictEqual((yield* store.put("old/a", -1, "a2")).version, 2)
            assert.strictEqual((yield* store.patch("old/c", 2, { d: 1 })).version, 3)
            assert.strictEqual((yield* Effect.flip(store.put("old/b", 7, "x")))._tag, "VersionMismatchError")
            assert.strictEqual((yield* Effect.flip(store.put("old/a", 0, "x")))._tag, "VersionMismatchError")
            assert.deepStrictEqual(
              yield* store.mutateAll([Mutation.put("old/b", 1, "b2"), Mutation.put("old/new", 0, "n")]),
              [1, 1],
            )
            const stale = yield* Effect.flip(store.mutateAll([Mutation.put("old/b", 1, "b3")]))
            assert.strictEqual(stale._tag, "VersionMismatchError")
            // multi-row deletes append in key order, also of rows written in reverse key order
            for (const key of ["old/z3", "old/z2", "old/z1"]) yield* store.put(key, 0, key)
            assert.strictEqual(yield* store.deletePrefix("old/z"), 3)
            assert.strictEqual(yield* store.delete("old/new", "old/a"), 2)
            assert.deepStrictEqual(yield* streamOf(store, 10), [
              [10, "update", "old/a", 2],
              [11, "update", "old/c", 3],
              [12, "update", "old/b", 2],
              [13, "create", "old/new", 1],
              [14, "create", "old/z3", 1],
              [15, "create", "old/z2", 1],
              [16, "create", "old/z1", 1],
              [17, "delete", "old/z1", 1],
              [18, "delete", "old/z2", 1],
              [19, "delete", "old/z3", 1],
              [20, "delete", "old/a", 2],
              [21, "delete", "old/new", 1],
            ])
            assert.deepStrictEqual(yield* streamOf(store, 0), [...history, ...(yield* streamOf(store, 10))])
            assert.strictEqual(Option.getOrThrow(yield* store.get("old/big")).value, bigValue)
            // 0009_expiry: old records do not expire; a ttl works on the upgraded tables
            assert.isUndefined(Option.getOrThrow(yield* store.get("old/b")).expiresAt)
            yield* store.put("old/b", -1, "b4", { ttl: "1 second" })
            yield* TestClock.adjust("1 second")
            assert.isTrue(Option.isNone(yield* store.get("old/b")))
            assert.strictEqual(yield* store.expire(), 1)

            const applied = yield* sql<{ id: string }>`SELECT id FROM kv_migrations ORDER BY id`
            assert.deepStrictEqual(
              applied.map((row) => row.id),
              migrations.map((m) => m.id),
            )
            if (!isPostgres(sql)) {
              const after = yield* sqliteObjects
              const table = (objects: ReadonlyArray<SchemaObject>) =>
                objects.find((o) => o.type === "table" && o.name === "kv_records")?.sql ?? ""
              assert.match(table(before), /WITHOUT ROWID/)
              assert.notMatch(table(after), /WITHOUT ROWID/)
              // the index, the stream triggers, the view and everything else exactly as they were
              const kept = (objects: ReadonlyArray<SchemaObject>) =>
                objects.filter(
                  (o) =>
                    !madeByRowidMigration.has(o.name) &&
                    !madeByTaskKeysMigration.has(o.name) &&
                    !madeByCronMigration.has(o.name) &&
                    !madeByExpiryMigration.has(o.name),
                )
              assert.deepStrictEqual(kept(after), kept(before))
              assert.isTrue(after.some((o) => o.type === "table" && o.name === "kv_cron"))
              assert.deepStrictEqual(
                after.filter((o) => madeByRowidMigration.has(o.name)).map((o) => o.name),
                ["kv_delete_keys", "kv_delete_keys_delete", "kv_records"],
              )
              const queued = yield* sql<{ n: number }>`SELECT count(*) AS n FROM kv_delete_keys`
              assert.strictEqual(Number(queued[0]?.n), 0)
            }
            yield* store.init() // idempotent
          }).pipe(Effect.provide(KvSql.layer({ expirySweep: false }).pipe(Layer.provideMerge(raw))))
        }).pipe(Effect.provide(database)),
      { timeout: 120_000 },
    )
  })

// --- 0007_task_keys_priority on a database of the version before ------------------------------

/** Tasks as the version up to 0006_stream_number_once wrote them: pending (due, future), running, completed. */
const createDatabaseAt0006 = Effect.gen(function* () {
  yield* migrateUpTo("0006_stream_number_once")
  const sql = yield* SqlClient.SqlClient
  const executor = executorOf(sql)
  const time = (millis: number) => (isPostgres(sql) ? new Date(millis) : millis)
  const insert = (
    id: string,
    status: string,
    due: number,
    extra: { lockedBy?: string; expires?: number } = {},
  ) =>
    sql`INSERT INTO kv_tasks ("id", "name", "payload", "status", "created", "scheduled_for", "retry_count",
        "max_retries", "timeout_seconds", "locked_by", "lock_expires_at", "completed_at")
      VALUES (${id}, 'old', ${JSON.stringify({ id })}, ${status}, ${time(0)}, ${time(due)}, 0, 3, 300,
        ${extra.lockedBy ?? null}, ${extra.expires === undefined ? null : time(extra.expires)},
        ${status === "completed" ? time(0) : null})`
  yield* executor.atomic([
    insert("old-due", "pending", 0),
    insert("old-later", "pending", 3_600_000),
    insert("old-running", "running", 0, { lockedBy: "old-runner", expires: lockExpiry }),
    insert("old-done", "completed", 0),
  ])
})

const taskKeysUpgradeSuite = (name: string, database: Layer.Layer<Database, unknown>) =>
  describe(`upgrade from 0006_stream_number_once on ${name}`, () => {
    it.effect(
      "tasks survive 0007_task_keys_priority with priority 0 and no key; keys, priorities and the runner's statements work",
      () =>
        Effect.gen(function* () {
          const { client } = yield* Database
          const raw = client()
          yield* createDatabaseAt0006.pipe(Effect.provide(raw))
          // three "processes" migrate at once, each with its own client
          yield* Effect.all(
            [1, 2, 3].map(() => Effect.provide(Effect.void, KvSql.layer().pipe(Layer.provide(client())))),
            { concurrency: "unbounded" },
          )
          yield* Effect.gen(function* () {
            const scheduler = yield* Scheduler
            const sql = yield* SqlClient.SqlClient
            const old = yield* scheduler.list({ name: "old" })
            assert.deepStrictEqual(
              old.map((t) => [t.id, t.status, t.priority, t.key, t.payload]),
              [
                ["old-done", "completed", 0, undefined, { id: "old-done" }],
                ["old-running", "running", 0, undefined, { id: "old-running" }],
                ["old-later", "pending", 0, undefined, { id: "old-later" }],
                ["old-due", "pending", 0, undefined, { id: "old-due" }],
              ],
            )
            // a new task of higher priority comes before the old due one; the old running one is still held
            const urgent = yield* scheduler.create(
              yield* Task.make("old", { n: 1 }, { priority: 1, key: "k" }),
            )
            const again = yield* scheduler.create(
              yield* Task.make("old", { n: 2 }, { priority: 1, key: "k" }),
            )
            assert.strictEqual(again.id, urgent.id)
            const taken = yield* scheduler.lock("new-runner", "1 minute", ["old"], 5)
            assert.deepStrictEqual(
              taken.map((t) => t.id),
              [urgent.id, "old-due"],
            )
            yield* scheduler.heartbeat("old-running", "old-runner", "1 minute")
            yield* scheduler.release("old-running", "old-runner", "completed")
            assert.strictEqual((yield* scheduler.stats()).byName.old?.completed, 2)

            const applied = yield* sql<{ id: string }>`SELECT id FROM kv_migrations ORDER BY id`
            assert.deepStrictEqual(
              applied.map((row) => row.id),
              migrations.map((m) => m.id),
            )
            yield* (yield* Store).init() // idempotent
          }).pipe(Effect.provide(KvSql.layer().pipe(Layer.provideMerge(raw))))
        }).pipe(Effect.provide(database)),
      { timeout: 120_000 },
    )
  })

// --- migrate: false on a database that lacks migrations ---------------------------------------

/** The layer fails when built, saying which migrations are missing and to run `kv init`. */
const olderVersion = (layer: Layer.Layer<Store, unknown>, missing: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const error = (yield* Effect.flip(Effect.provide(Store, layer))) as { _tag: string; message: string }
    assert.strictEqual(error._tag, "StoreError")
    assert.strictEqual(error.message, olderVersionMessage(missing))
  })

const olderVersionMessage = (missing: ReadonlyArray<string>) =>
  `open failed: the database's effect-kv tables are from an older version (missing ${missing.join(", ")}): ` +
  "run `kv init` (or `store.init()`) to upgrade them"

const partialSchemaSuite = (name: string, database: Layer.Layer<Database, unknown>) =>
  describe(`migrate: false on ${name}`, () => {
    it.effect(
      "a database without the later migrations names them and says to run kv init; once upgraded it opens",
      () =>
        Effect.gen(function* () {
          const { client, store } = yield* Database
          const first = migrations[0]!.id
          const secondToLast = migrations.at(-2)!.id
          yield* migrateUpTo(first).pipe(Effect.provide(client()))
          yield* olderVersion(store({ migrate: false }), idsAfter(first))
          // the check applied nothing
          const applied = yield* Effect.flatMap(
            SqlClient.SqlClient,
            (sql) => sql<{ id: string }>`SELECT id FROM kv_migrations`,
          ).pipe(Effect.provide(client()))
          assert.deepStrictEqual(
            applied.map((row) => row.id),
            [first],
          )
          yield* migrateUpTo(secondToLast).pipe(Effect.provide(client()))
          yield* olderVersion(store({ migrate: false }), idsAfter(secondToLast))
          yield* Effect.provide(Effect.void, store({}))
          yield* Effect.gen(function* () {
            const opened = yield* Store
            yield* opened.put("partial/a", -1, 1)
            assert.strictEqual(Option.getOrThrow(yield* opened.get("partial/a")).version, 1)
          }).pipe(Effect.provide(store({ migrate: false })))
        }).pipe(Effect.provide(database)),
      { timeout: 120_000 },
    )
  })

upgradeSuite("SQLite", sqliteDatabase)
upgradeSuite("PostgreSQL", postgresDatabase)
upgradeSuite("rqlite", rqliteDatabase)
rowidUpgradeSuite("SQLite", sqliteDatabase)
rowidUpgradeSuite("PostgreSQL", postgresDatabase)
rowidUpgradeSuite("rqlite", rqliteDatabase)
taskKeysUpgradeSuite("SQLite", sqliteDatabase)
taskKeysUpgradeSuite("PostgreSQL", postgresDatabase)
taskKeysUpgradeSuite("rqlite", rqliteDatabase)
partialSchemaSuite("SQLite", sqliteDatabase)
partialSchemaSuite("PostgreSQL", postgresDatabase)
partialSchemaSuite("rqlite", rqliteDatabase)

describe("0006_stream_number_once on PostgreSQL", () => {
  it.effect("records written after a numbering in the same transaction are numbered too", () =>
    Effect.gen(function* () {
      const { client } = yield* Database
      yield* Effect.gen(function* () {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        yield* sql.withTransaction(
          Effect.gen(function* () {
            // numbering at the end of each statement, not at commit: the second statement's
            // records come after a firing that numbered the first one's
            yield* sql`SET CONSTRAINTS kv_stream_number IMMEDIATE`
            yield* sql`INSERT INTO kv_records ("key", "version", "value", "type", "created")
              VALUES ('n/c', 1, '1', 'number', now()), ('n/a', 1, '1', 'number', now()), ('n/b', 1, '1', 'number', now())`
            yield* sql`DELETE FROM kv_records WHERE "key" IN ('n/c', 'n/a')`
          }),
        )
        assert.deepStrictEqual(yield* streamOf(store, 0), [
          [1, "create", "n/a", 1],
          [2, "create", "n/b", 1],
          [3, "create", "n/c", 1],
          [4, "delete", "n/a", 1],
          [5, "delete", "n/c", 1],
        ])
        const unnumbered = yield* sql<{ n: string }>`SELECT count(*) AS n FROM kv_stream WHERE seq IS NULL`
        assert.strictEqual(Number(unnumbered[0]?.n), 0)
        assert.strictEqual(yield* store.streamSeq(), 5)
      }).pipe(Effect.provide(KvSql.layer().pipe(Layer.provideMerge(client()))))
    }).pipe(Effect.provide(postgresDatabase)),
  )
})

describe("migrate: false", () => {
  const notInitialised = (layer: Layer.Layer<Store, unknown>) =>
    Effect.gen(function* () {
      const error = (yield* Effect.flip(Effect.provide(Store, layer))) as { _tag: string; message: string }
      assert.strictEqual(error._tag, "StoreError")
      assert.match(error.message, /no effect-kv tables: run `kv init`/)
    })

  it.effect("on an empty database says to run init, on every backend", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-noinit-"))
      yield* notInitialised(KvSqlite.layer({ filename: path.join(dir, "empty.db"), migrate: false }))
      fs.rmSync(dir, { recursive: true, force: true })
      const database = yield* Effect.promise(createScratchDatabase)
      yield* notInitialised(KvPostgres.layer({ url: database.url, migrate: false }))
      yield* Effect.promise(() => database.drop())
      const server = yield* Effect.promise(startRqlite)
      yield* notInitialised(KvRqlite.layer({ url: server.url, migrate: false }))
      yield* Effect.promise(() => server.stop())
    }),
  )

  it.effect("a read-only SQLite file from before the task tables: the layer and kv say to run kv init", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-readonly-"))
      const file = path.join(dir, "old.db")
      yield* Effect.gen(function* () {
        yield* migrateUpTo("0002_stream_key_order")
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO kv_records ("key", "version", "value", "type", "created") VALUES ('a', 1, '1', 'number', 0)`
      }).pipe(Effect.provide(KvSqlite.layerClient({ filename: file })))
      const contents = fs.readFileSync(file)
      const readOnly = `file:${file}?mode=ro`
      const missing = idsAfter("0002_stream_key_order")
      assert.strictEqual(missing[0], "0003_tasks")
      yield* olderVersion(KvSqlite.layer({ filename: readOnly }), missing)
      const result = yield* Effect.promise(() => spawnKv(["--connection", readOnly, "task", "list"]))
      fails(result)
      assert.strictEqual(result.stderr, `kv: ${olderVersionMessage(missing)}\n`)
      assert.isTrue(fs.readFileSync(file).equals(contents), "the file is unchanged")
      fs.rmSync(dir, { recursive: true, force: true })
    }),
  )

  it.effect("layerConfig reads the settings from Config", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-config-"))
      const layer = KvSqlite.layerConfig({ filename: Config.string("KV_TEST_FILE") }).pipe(
        Layer.provide(
          Layer.setConfigProvider(
            ConfigProvider.fromMap(new Map([["KV_TEST_FILE", path.join(dir, "c.db")]])),
          ),
        ),
      )
      yield* Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("configured", -1, true)
      }).pipe(Effect.provide(layer))
      assert.isTrue(fs.existsSync(path.join(dir, "c.db")))
      const missing = yield* Effect.flip(
        Effect.provide(Store, KvSqlite.layerConfig({ filename: Config.string("KV_TEST_NOTHING") })),
      )
      assert.strictEqual((missing as { _tag: string })._tag, "ConfigError")
      fs.rmSync(dir, { recursive: true, force: true })
    }),
  )
})
