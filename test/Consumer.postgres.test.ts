import { afterAll } from "vitest"
import * as KvPostgres from "../src/layers/Postgres.js"
import { consumerSuite } from "./Consumer.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

consumerSuite(
  "Consumer on PostgreSQL",
  KvPostgres.layer({ url: database.url }),
  // another pool: its writes reach this process through the trigger's NOTIFY
  { layer: KvPostgres.layer({ url: database.url }), wakesUp: true },
)
