/**
 * `KvSql.layer` runs only on the dialects its SQL is written for (SQLite, also rqlite, and
 * PostgreSQL): on any other client it fails when the layer is built, before it touches the
 * database. Tried on the local MariaDB (127.0.0.1:3306, root without a password) through
 * `@effect/sql-mysql2`, in a scratch database of its own, so that "nothing was created" is about
 * this layer alone.
 */
import { randomBytes } from "node:crypto"
import * as SqlClient from "@effect/sql/SqlClient"
import * as MysqlClient from "@effect/sql-mysql2/MysqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { KvSql, Store } from "../src/index.js"

const mariadb = (database: string) =>
  MysqlClient.layer({ host: "127.0.0.1", port: 3306, username: "root", database })

describe("KvSql.layer on other dialects", () => {
  it.effect("on a MySQL client it fails when built, names the dialect and creates nothing", () =>
    Effect.gen(function* () {
      const admin = yield* SqlClient.SqlClient
      const scratch = `effectkv_test_${randomBytes(6).toString("hex")}`
      yield* Effect.acquireRelease(admin.unsafe(`CREATE DATABASE ${scratch}`), () =>
        Effect.orDie(admin.unsafe(`DROP DATABASE ${scratch}`)),
      )
      const error = yield* Effect.flip(
        Effect.provide(Store, KvSql.layer().pipe(Layer.provide(mariadb(scratch)))),
      )
      assert.strictEqual(error._tag, "InvalidArgumentError")
      assert.strictEqual(
        error.message,
        "effect-kv runs on SQLite, rqlite and PostgreSQL clients; this SqlClient speaks MySQL",
      )
      const tables = yield* admin<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = ${scratch} OR (table_schema = 'test' AND table_name LIKE 'kv\\_%')`
      assert.deepStrictEqual(tables, [])
    }).pipe(
      // the scratch database is dropped while the admin connection is still open
      Effect.scoped,
      Effect.provide(mariadb("test")),
    ),
  )
})
