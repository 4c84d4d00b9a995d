import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { KvSqlite } from "../src/sqlite.js"
import { storeSuite } from "./Store.suite.js"
import { layerOnScratch } from "./support/scratch.js"

/** A SQLite file in a new temporary directory, removed with the layer. */
const tempFile = layerOnScratch(
  async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-")),
  async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
  (dir) => KvSqlite.layer({ filename: `file:${path.join(dir, "data.db")}?mode=rwc` }),
)

storeSuite("Store on a SQLite file", tempFile)
storeSuite("Store on SQLite :memory:", KvSqlite.layer({ filename: ":memory:" }))
