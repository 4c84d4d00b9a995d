/**
 * The SQLite client's fast path: the store's statements run on the one connection directly,
 * except while another fiber's asynchronous transaction is open on it.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { KvSql, Mutation, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"
import { layerOnScratch } from "./support/scratch.js"

const onFile = layerOnScratch(
  async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-guard-")),
  async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
  (dir) =>
    KvSql.layer().pipe(Layer.provideMerge(KvSqlite.layerClient({ filename: path.join(dir, "data.db") }))),
)

/** The store on a file, with a short busy timeout, and the file's name (for another connection). */
const onFileNamed = (busyTimeout: Duration.DurationInput) =>
  Layer.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-busy-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
      ),
      (dir) => {
        const filename = path.join(dir, "data.db")
        return Layer.merge(
          KvSql.layerOn().pipe(Layer.provideMerge(KvSqlite.layerClient({ filename, busyTimeout }))),
          Layer.succeed(DatabaseFile, filename),
        )
      },
    ),
  )

class DatabaseFile extends Context.Tag("test/DatabaseFile")<DatabaseFile, string>() {}

class Rollback {
  readonly _tag = "Rollback"
}

describe("SqliteClient guard", () => {
  it.live(
    "puts racing rolled-back transactions are never lost",
    () =>
      Effect.gen(function* () {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE TABLE side (n INTEGER NOT NULL)`
        yield* store.put("guard/existing", -1, 0)
        let stop = false
        // A transaction of the application on the same client that stays open across yields
        // (other fibers run meanwhile), then rolls back.
        const rolledBackTransaction = sql
          .withTransaction(
            Effect.gen(function* () {
              yield* sql`INSERT INTO side (n) VALUES (1)`
              for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
              yield* sql`INSERT INTO side (n) VALUES (2)`
              return yield* Effect.fail(new Rollback())
            }),
          )
          .pipe(Effect.flip)
        // A batch whose last version check fails: rolled back as a whole.
        const rolledBackBatch = store
          .mutateAll([Mutation.put("guard/batch", -1, 1), Mutation.put("guard/existing", 99, 1)])
          .pipe(Effect.flip)
        // Rounds of both until the puts are done. The lock of SqlClient transactions is not
        // fair (neither is @effect/sql-sqlite-node's): fibers that run transactions back to back
        // would starve the waiting puts, so both sides let timers (and the others) run.
        let rounds = 0
        const spoiler = Effect.gen(function* () {
          while (!stop) {
            assert.strictEqual((yield* rolledBackTransaction)._tag, "Rollback")
            assert.strictEqual((yield* rolledBackBatch)._tag, "VersionMismatchError")
            rounds++
            yield* Effect.sleep(0)
          }
        })
        const acknowledged: Array<string> = []
        const writer = (w: number) =>
          Effect.gen(function* () {
            for (let i = 0; i < 300; i++) {
              const key = `guard/${w}/${i}`
              yield* store.put(key, 0, { w, i })
              acknowledged.push(key)
              yield* i % 10 === 0 ? Effect.sleep(0) : Effect.yieldNow()
            }
          })
        const spoiling = yield* Effect.fork(spoiler)
        yield* Effect.all(
          Array.from({ length: 8 }, (_, w) => writer(w)),
          { concurrency: "unbounded", discard: true },
        )
        stop = true
        yield* Effect.flatten(spoiling.await)
        assert.isAbove(rounds, 20, "the transactions ran while the puts did")
        assert.strictEqual(acknowledged.length, 2400)
        const found = yield* store.getBatch(acknowledged)
        assert.strictEqual(found.size, acknowledged.length, "every acknowledged put is there")
        assert.isTrue(Option.isNone(yield* store.get("guard/batch")))
        assert.deepStrictEqual(yield* sql`SELECT count(*) AS n FROM side`, [{ n: 0 }])
        assert.strictEqual(yield* store.countPrefix("guard/"), acknowledged.length + 1)
      }).pipe(Effect.provide(onFile)),
    { timeout: 120_000 },
  )

  it.live(
    "a put retried after SQLITE_BUSY does not join a transaction another fiber opened meanwhile",
    () =>
      Effect.gen(function* () {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        const filename = yield* DatabaseFile
        yield* sql`CREATE TABLE side (n INTEGER NOT NULL)`
        // another process holds the write lock: the put fails with SQLITE_BUSY and waits to retry
        const other = new Sqlite(filename)
        yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
        other.prepare("BEGIN IMMEDIATE").run()
        const put = yield* Effect.fork(store.put("busy/k", 0, { written: true }))
        yield* Effect.sleep("5 millis")
        // the lock goes; at once a fiber of this process opens a transaction that stays open
        // across the put's retry, then rolls back
        other.prepare("ROLLBACK").run()
        const opened = yield* Deferred.make<void>()
        const transaction = yield* Effect.fork(
          sql
            .withTransaction(
              Effect.gen(function* () {
                yield* sql`INSERT INTO side (n) VALUES (1)`
                yield* Deferred.succeed(opened, undefined)
                yield* Effect.sleep("300 millis")
                return yield* Effect.fail(new Rollback())
              }),
            )
            .pipe(Effect.flip),
        )
        yield* Deferred.await(opened)
        const written = yield* Fiber.join(put)
        assert.strictEqual(written.version, 1)
        assert.strictEqual((yield* Fiber.join(transaction))._tag, "Rollback")
        // the put was acknowledged, so it must be there: not rolled back with the transaction
        assert.deepStrictEqual(Option.getOrThrow(yield* store.get("busy/k")).value, { written: true })
        assert.deepStrictEqual(yield* sql`SELECT count(*) AS n FROM side`, [{ n: 0 }])
      }).pipe(Effect.scoped, Effect.provide(onFileNamed("10 millis"))),
    { timeout: 60_000 },
  )
})
