/** The Store suite on this package's SQLite client (a file and :memory:) and on @effect/sql-sqlite-node's. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqliteNode from "@effect/sql-sqlite-node/SqliteClient"
import * as Layer from "effect/Layer"
import { KvSql } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"
import { storeSuite } from "./Store.suite.js"
import { layerOnScratch } from "./support/scratch.js"

/** A new temporary directory, removed with the layer. */
const inTempDir = <A, E, R>(make: (dir: string) => Layer.Layer<A, E, R>) =>
  layerOnScratch(
    async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-")),
    async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
    make,
  )

storeSuite(
  "Store on a SQLite file",
  inTempDir((dir) =>
    KvSql.layer().pipe(
      Layer.provideMerge(KvSqlite.layerClient({ filename: `file:${path.join(dir, "data.db")}?mode=rwc` })),
    ),
  ),
)

storeSuite(
  "Store on SQLite :memory:",
  KvSql.layer().pipe(Layer.provideMerge(KvSqlite.layerClient({ filename: ":memory:" }))),
)

// An application's own SqliteClient (@effect/sql-sqlite-node): the generic executor
storeSuite(
  "Store on @effect/sql-sqlite-node through KvSql.layer",
  inTempDir((dir) =>
    KvSql.layer().pipe(Layer.provideMerge(SqliteNode.layer({ filename: path.join(dir, "app.db") }))),
  ),
)
