import * as KvRqlite from "../src/layers/Rqlite.js"
import { storeSuite } from "./Store.suite.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

storeSuite(
  "Store on rqlite",
  layerOnScratch(
    startRqlite,
    (server) => server.stop(),
    (server) => KvRqlite.layer({ url: server.url }),
  ),
)
