import * as KvPostgres from "../src/layers/Postgres.js"
import { storeModelSuite } from "./StoreModel.suite.js"
import { createScratchDatabase } from "./support/postgres.js"
import { layerOnScratch } from "./support/scratch.js"

storeModelSuite(
  "model-checked histories on PostgreSQL",
  layerOnScratch(
    createScratchDatabase,
    (db) => db.drop(),
    (db) => KvPostgres.layer({ url: db.url, expirySweep: false }),
  ),
  { runs: 100 },
)
