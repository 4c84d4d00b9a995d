/** The Store suite on PostgreSQL: the backend layer's client + KvSql.layer. */
import * as Layer from "effect/Layer"
import { KvSql } from "../src/index.js"
import * as KvPostgres from "../src/layers/Postgres.js"
import { storeSuite } from "./Store.suite.js"
import { createScratchDatabase } from "./support/postgres.js"
import { layerOnScratch } from "./support/scratch.js"

storeSuite(
  "Store on PostgreSQL",
  layerOnScratch(
    createScratchDatabase,
    (database) => database.drop(),
    (database) => KvSql.layer().pipe(Layer.provideMerge(KvPostgres.layerClient({ url: database.url }))),
  ),
)
