/**
 * Named migrations on every backend: a database made by the schema before migrations had
 * names upgrades in place, keeping its records, stream and locks; several processes migrating
 * one database at once all succeed.
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
import { KvSql, Mutation, Store } from "../src/index.js"
import { fromSqlClient, SqlExecutor } from "../src/internal/executor.js"
import { migrations } from "../src/internal/migrations.js"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { postgresSchema, sqliteSchema } from "./fixtures/schemaV1.js"
import { createScratchDatabase } from "./support/postgres.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

type ClientLayer = Layer.Layer<SqlClient.SqlClient, unknown>

/** A scratch database; `client()` makes a new client (a new "process") on it. */
class Database extends Context.Tag("test/Database")<Database, { readonly client: () => ClientLayer }>() {}

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
    }),
)

const postgresDatabase = layerOnScratch(
  createScratchDatabase,
  (database) => database.drop(),
  (database) => Layer.succeed(Database, { client: () => KvPostgres.layerClient({ url: database.url }) }),
)

const rqliteDatabase = layerOnScratch(
  startRqlite,
  (server) => server.stop(),
  (server) => Layer.succeed(Database, { client: () => KvRqlite.layerClient({ url: server.url }) }),
)

upgradeSuite("SQLite", sqliteDatabase)
upgradeSuite("PostgreSQL", postgresDatabase)
upgradeSuite("rqlite", rqliteDatabase)

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
