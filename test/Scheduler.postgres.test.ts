import * as KvPostgres from "../src/layers/Postgres.js"
import { schedulerSuite } from "./Scheduler.suite.js"
import { createScratchDatabase } from "./support/postgres.js"
import { layerOnScratch } from "./support/scratch.js"

schedulerSuite(
  "Scheduler on PostgreSQL",
  layerOnScratch(
    createScratchDatabase,
    (database) => database.drop(),
    (database) => KvPostgres.layer({ url: database.url }),
  ),
)
