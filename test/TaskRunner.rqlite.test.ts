import * as KvRqlite from "../src/layers/Rqlite.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"
import { taskRunnerSuite } from "./TaskRunner.suite.js"

taskRunnerSuite(
  "TaskRunner on rqlite",
  layerOnScratch(
    startRqlite,
    (server) => server.stop(),
    (server) => KvRqlite.layer({ url: server.url }),
  ),
)
