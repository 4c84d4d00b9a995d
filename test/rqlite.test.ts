import * as KvRqlite from "../src/layers/Rqlite.js"
import { storeSuite } from "./Store.conformance.js"
import { serverLayer } from "./support/rqlite.js"

storeSuite(
  "Store on rqlite",
  serverLayer((url) => KvRqlite.layer({ url })),
)
