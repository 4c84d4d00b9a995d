/** `kv cron` on a SQLite file. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { cronCliSuite } from "./CronCli.suite.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cron-cli-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

cronCliSuite({ type: "sqlite", connection: `file:${path.join(dir, "data.db")}?mode=rwc` })
