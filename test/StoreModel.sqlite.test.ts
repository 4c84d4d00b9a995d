import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { storeModelSuite } from "./StoreModel.suite.js"
import { layerOnScratch } from "./support/scratch.js"

storeModelSuite(
  "model-checked histories on a SQLite file",
  layerOnScratch(
    async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-model-")),
    async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
    (dir) => KvSqlite.layer({ filename: path.join(dir, "model.db"), expirySweep: false }),
  ),
  { runs: 300 },
)
