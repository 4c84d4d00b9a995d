import * as KvPostgres from "../src/layers/Postgres.js"
import { storeSuite } from "./Store.suite.js"
import { createScratchDatabase } from "./support/postgres.js"
import { layerOnScratch } from "./support/scratch.js"

storeSuite(
  "Store on PostgreSQL",
  layerOnScratch(
    createScratchDatabase,
    (database) => database.drop(),
    (database) => KvPostgres.layer({ url: database.url }),
  ),
)
