/**
 * `KvSql.layer` on a client the application already has: the app's own queries and the store
 * share the client (and its connections), and a store write inside the app's transaction
 * commits or rolls back with it.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { KvSql, Mutation, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"
import { createScratchDatabase } from "./support/postgres.js"
import { layerOnScratch } from "./support/scratch.js"

class Rollback {
  readonly _tag = "Rollback"
}

const sharedClient = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const store = yield* Store
  yield* sql`CREATE TABLE app_users (id TEXT PRIMARY KEY, name TEXT NOT NULL)`
  // committed together
  yield* sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`INSERT INTO app_users (id, name) VALUES ('1', 'Ada')`
      yield* store.put("user/1", 0, { name: "Ada" })
    }),
  )
  // rolled back together, a batch of the store included
  const rolledBack = yield* sql
    .withTransaction(
      Effect.gen(function* () {
        yield* sql`INSERT INTO app_users (id, name) VALUES ('2', 'Grace')`
        yield* store.put("user/2", 0, { name: "Grace" })
        yield* store.mutateAll([Mutation.put("user/3", 0, { name: "Edsger" }), Mutation.delete("user/1")])
        // reads inside the transaction see its writes (concurrent ones too: they are not coalesced out of it)
        const [two, batch, prefix] = yield* Effect.all(
          [store.get("user/2"), store.getBatch(["user/1", "user/2", "user/3"]), store.getPrefix("user/")],
          { concurrency: "unbounded" },
        )
        assert.deepStrictEqual(Option.getOrThrow(two).value, { name: "Grace" })
        assert.deepStrictEqual([...batch.keys()].sort(), ["user/2", "user/3"])
        assert.deepStrictEqual(
          prefix.map((record) => record.key),
          ["user/2", "user/3"],
        )
        return yield* Effect.fail(new Rollback())
      }),
    )
    .pipe(Effect.flip)
  assert.strictEqual(rolledBack._tag, "Rollback")
  assert.deepStrictEqual(
    (yield* sql<{ id: string }>`SELECT id FROM app_users ORDER BY id`).map((row) => row.id),
    ["1"],
  )
  assert.deepStrictEqual(Option.getOrThrow(yield* store.get("user/1")).value, { name: "Ada" })
  assert.isTrue(Option.isNone(yield* store.get("user/2")))
  assert.isTrue(Option.isNone(yield* store.get("user/3")))
  assert.strictEqual(yield* store.streamSeq(), 1)
})

describe("KvSql.layer on the application's client", () => {
  it.effect(
    "one PgClient for the app's queries and the store",
    () =>
      sharedClient.pipe(
        Effect.provide(
          layerOnScratch(
            createScratchDatabase,
            (database) => database.drop(),
            (database) =>
              KvSql.layer().pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(database.url) }))),
          ),
        ),
      ),
    { timeout: 60_000 },
  )

  it.effect(
    "one SQLite client (this package's, with its fast path) for the app's queries and the store",
    () =>
      sharedClient.pipe(
        Effect.provide(
          layerOnScratch(
            async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-shared-")),
            async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
            (dir) =>
              KvSql.layer().pipe(
                Layer.provideMerge(KvSqlite.layerClient({ filename: path.join(dir, "app.db") })),
              ),
          ),
        ),
      ),
  )
})
