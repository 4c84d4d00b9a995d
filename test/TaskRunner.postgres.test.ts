import * as KvPostgres from "../src/layers/Postgres.js"
import { createScratchDatabase } from "./support/postgres.js"
import { layerOnScratch } from "./support/scratch.js"
import { taskRunnerSuite } from "./TaskRunner.suite.js"

taskRunnerSuite(
  "TaskRunner on PostgreSQL",
  layerOnScratch(
    createScratchDatabase,
    (database) => database.drop(),
    (database) => KvPostgres.layer({ url: database.url }),
  ),
)
