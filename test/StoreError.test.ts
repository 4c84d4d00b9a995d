/**
 * What a failing backend looks like to the caller: a `StoreError` whose `reason` says whether
 * the database could not be reached, and whose message keeps the client's own words (a timed
 * out rqlite write says it may have been applied) and never the password. On every backend: a
 * refused connection, a timeout and a constraint failure.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import pg from "pg"
import { KvSql, Store } from "../src/index.js"
import { fromSqlClient, SqlExecutor, storeError } from "../src/internal/executor.js"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { createScratchDatabase } from "./support/postgres.js"
import { startProxy } from "./support/proxy.js"
import { freePort, startRqlite } from "./support/rqlite.js"

const password = "Err0r-pw-s3cret"

/** The error a layer fails to build with. */
const buildError = <E>(layer: Layer.Layer<Store, E>) => Effect.flip(Effect.provide(Store, layer))

/** A duplicate in a UNIQUE column, rendered by the shared mechanism (executor + storeError). */
const constraintFailure = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const executor = Option.getOrElse(yield* Effect.serviceOption(SqlExecutor), () => fromSqlClient(sql))
  const table = `uq_${Math.random().toString(36).slice(2, 10)}`
  yield* executor.affected(sql`CREATE TABLE ${sql(table)} (k TEXT NOT NULL UNIQUE)`)
  yield* executor.affected(sql`INSERT INTO ${sql(table)} (k) VALUES ('a')`)
  const error = yield* Effect.flip(executor.affected(sql`INSERT INTO ${sql(table)} (k) VALUES ('a')`))
  return storeError(executor, "insert", error)
})

const withTempDir = <A, E, R>(f: (dir: string) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-errors-"))),
    f,
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
  )

describe("StoreError on SQLite", () => {
  it.effect("a file that cannot be opened: reason connect, the path and SQLite's words", () =>
    withTempDir((dir) =>
      Effect.gen(function* () {
        fs.writeFileSync(path.join(dir, "not-a-directory"), "")
        const error = yield* buildError(
          KvSqlite.layer({ filename: path.join(dir, "not-a-directory", "x.db") }),
        )
        assert.strictEqual(error._tag, "StoreError")
        if (error._tag !== "StoreError") return
        assert.strictEqual(error.reason, "connect")
        assert.match(error.message, /^cannot open ".*not-a-directory\/x\.db": unable to open database file$/)
      }),
    ),
  )

  it.effect("a write lock held past the busy timeout: reason query, database is locked", () =>
    withTempDir((dir) => {
      const filename = path.join(dir, "locked.db")
      const layer = KvSql.layer().pipe(
        Layer.provide(KvSqlite.layerClient({ filename, busyTimeout: "20 millis" })),
      )
      return Effect.gen(function* () {
        const store = yield* Store
        const other = new Sqlite(filename)
        other.prepare("BEGIN IMMEDIATE").run()
        // the store retries with backoff on the Clock (a TestClock here) before it gives up
        const failing = yield* Effect.fork(Effect.flip(store.put("k", -1, 1)))
        for (let i = 0; i < 20; i++) yield* TestClock.adjust("1 second")
        const error = yield* Effect.flatten(failing.await)
        other.prepare("ROLLBACK").run()
        other.close()
        assert.strictEqual(error._tag, "StoreError")
        if (error._tag !== "StoreError") return
        assert.strictEqual(error.reason, "query")
        assert.strictEqual(error.message, "put failed: database is locked")
      }).pipe(Effect.provide(layer))
    }),
  )

  it.effect("a constraint failure: reason query, SQLite's words", () =>
    Effect.gen(function* () {
      const error = yield* constraintFailure
      assert.strictEqual(error.reason, "query")
      assert.match(error.message, /^insert failed: UNIQUE constraint failed: uq_\w+\.k$/)
    }).pipe(Effect.provide(KvSqlite.layerClient({ filename: ":memory:" }))),
  )
})

describe("StoreError on PostgreSQL", () => {
  it.live("a closed port: reason connect, the server without the password", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const error = yield* buildError(
        KvPostgres.layer({ url: `postgres://postgres:${password}@127.0.0.1:${port}/kv` }),
      )
      assert.strictEqual(error._tag, "StoreError")
      if (error._tag !== "StoreError") return
      assert.strictEqual(error.reason, "connect")
      assert.match(
        error.message,
        new RegExp(`^cannot connect to postgres://postgres@127\\.0\\.0\\.1:${port}/kv: .*ECONNREFUSED`),
      )
      assert.notInclude(error.message, password)
    }),
  )

  it.live(
    "a statement that times out (a row locked by another session): reason query, PostgreSQL's words",
    () =>
      Effect.acquireUseRelease(
        Effect.promise(createScratchDatabase),
        (database) =>
          Effect.gen(function* () {
            const store = yield* Store
            yield* store.put("locked", -1, 1)
            const other = new pg.Client({ connectionString: database.url })
            yield* Effect.promise(async () => {
              await other.connect()
              await other.query("BEGIN")
              await other.query(`SELECT * FROM kv_records WHERE key = 'locked' FOR UPDATE`)
            })
            const error = yield* Effect.flip(store.put("locked", -1, 2))
            yield* Effect.promise(() => other.end())
            assert.strictEqual(error._tag, "StoreError")
            if (error._tag !== "StoreError") return
            assert.strictEqual(error.reason, "query")
            assert.strictEqual(error.message, "put failed: canceling statement due to statement timeout")
          }).pipe(
            Effect.provide(
              KvPostgres.layer({
                url: (() => {
                  const url = new URL(database.url)
                  url.searchParams.set("options", "-c statement_timeout=300")
                  return url.toString()
                })(),
              }),
            ),
          ),
        (database) => Effect.promise(() => database.drop()),
      ),
  )

  it.live("a constraint failure: reason query, PostgreSQL's words", () =>
    Effect.acquireUseRelease(
      Effect.promise(createScratchDatabase),
      (database) =>
        Effect.gen(function* () {
          const error = yield* constraintFailure
          assert.strictEqual(error.reason, "query")
          assert.match(
            error.message,
            /^insert failed: duplicate key value violates unique constraint "uq_\w+_k_key"$/,
          )
        }).pipe(Effect.provide(KvPostgres.layerClient({ url: database.url }))),
      (database) => Effect.promise(() => database.drop()),
    ),
  )
})

describe("StoreError on rqlite", () => {
  it.live("a closed port: reason connect, the server without the password", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const error = yield* buildError(KvRqlite.layer({ url: `http://admin:${password}@127.0.0.1:${port}` }))
      assert.strictEqual(error._tag, "StoreError")
      if (error._tag !== "StoreError") return
      assert.strictEqual(error.reason, "connect")
      assert.match(error.message, new RegExp(`^cannot connect to http://127\\.0\\.0\\.1:${port}`))
      assert.notInclude(error.message, password)
    }),
  )

  it.live("a write that times out: reason unknown-outcome, and it says the write may have been applied", () =>
    Effect.acquireUseRelease(
      Effect.promise(async () => {
        const server = await startRqlite()
        const proxy = await startProxy(Number(new URL(server.url).port))
        return { server, proxy }
      }),
      ({ proxy }) =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("before", -1, 1)
          proxy.freeze()
          const error = yield* Effect.flip(store.put("frozen", -1, 1))
          assert.strictEqual(error._tag, "StoreError")
          if (error._tag !== "StoreError") return
          assert.strictEqual(error.reason, "unknown-outcome")
          assert.match(error.message, /^put failed: /)
          assert.match(error.message, /timed out/)
          assert.match(error.message, /may (still be|or may not have been) applied/)
          assert.notInclude(error.message, "secret")
        }).pipe(
          Effect.provide(
            KvRqlite.layer({ url: `http://admin:secret@127.0.0.1:${proxy.port}`, timeout: "500 millis" }),
          ),
        ),
      ({ proxy, server }) => Effect.promise(() => proxy.close().then(() => server.stop())),
    ),
  )

  it.live("a constraint failure: reason query, rqlite's words", () =>
    Effect.acquireUseRelease(
      Effect.promise(startRqlite),
      (server) =>
        Effect.gen(function* () {
          const error = yield* constraintFailure
          assert.strictEqual(error.reason, "query")
          assert.match(error.message, /^insert failed: UNIQUE constraint failed: uq_\w+\.k$/)
        }).pipe(Effect.provide(KvRqlite.layerClient({ url: server.url }))),
      (server) => Effect.promise(() => server.stop()),
    ),
  )
})
