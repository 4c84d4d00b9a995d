/**
 * The SQLite client's fast path: the store's statements run on the one connection directly,
 * except while another fiber's asynchronous transaction is open on it.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
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
})
