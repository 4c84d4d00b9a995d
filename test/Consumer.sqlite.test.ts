import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { KvSqlite } from "../src/sqlite.js"
import { consumerSuite } from "./Consumer.suite.js"
import { layerOnScratch } from "./support/scratch.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-consumer-"))
const filename = `file:${path.join(dir, "data.db")}?mode=rwc`

consumerSuite(
  "Consumer on a SQLite file",
  layerOnScratch(
    async () => filename,
    async () => fs.rmSync(dir, { recursive: true, force: true }),
    (filename) => KvSqlite.layer({ filename }),
  ),
  // another connection to the file: its commits change this one's data_version
  { layer: KvSqlite.layer({ filename }), wakesUp: true },
)
consumerSuite("Consumer on SQLite :memory:", KvSqlite.layer({ filename: ":memory:" }))
