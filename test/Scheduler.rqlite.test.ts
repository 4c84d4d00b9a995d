import * as KvRqlite from "../src/layers/Rqlite.js"
import { schedulerSuite } from "./Scheduler.suite.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

schedulerSuite(
  "Scheduler on rqlite",
  layerOnScratch(
    startRqlite,
    (server) => server.stop(),
    (server) => KvRqlite.layer({ url: server.url }),
  ),
)
