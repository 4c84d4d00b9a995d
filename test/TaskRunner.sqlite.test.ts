import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { KvSqlite } from "../src/sqlite.js"
import { layerOnScratch } from "./support/scratch.js"
import { taskRunnerSuite } from "./TaskRunner.suite.js"

taskRunnerSuite(
  "TaskRunner on a SQLite file",
  layerOnScratch(
    async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-runner-")),
    async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
    // the check for other processes' writes would run on the TestClock at every step: no need here
    (dir) =>
      KvSqlite.layer({
        filename: `file:${path.join(dir, "data.db")}?mode=rwc`,
        changeCheckInterval: "1 hour",
      }),
  ),
)
