import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { KvSqlite } from "../src/sqlite.js"
import { schedulerSuite } from "./Scheduler.suite.js"
import { layerOnScratch } from "./support/scratch.js"

schedulerSuite(
  "Scheduler on a SQLite file",
  layerOnScratch(
    async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-scheduler-")),
    async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
    (dir) => KvSqlite.layer({ filename: `file:${path.join(dir, "data.db")}?mode=rwc` }),
  ),
)
schedulerSuite("Scheduler on SQLite :memory:", KvSqlite.layer({ filename: ":memory:" }))
