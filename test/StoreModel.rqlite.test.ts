import * as KvRqlite from "../src/layers/Rqlite.js"
import { storeModelSuite } from "./StoreModel.suite.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

storeModelSuite(
  "model-checked histories on rqlite",
  layerOnScratch(
    startRqlite,
    (server) => server.stop(),
    (server) => KvRqlite.layer({ url: server.url, expirySweep: false }),
  ),
  { runs: 100 },
)
