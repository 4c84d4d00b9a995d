import * as KvPostgres from "../src/layers/Postgres.js"
import { storeSuite } from "./Store.conformance.js"
import { scratchLayer } from "./support/postgres.js"

storeSuite(
  "Store on PostgreSQL",
  scratchLayer((url) => KvPostgres.layer({ url })),
)
