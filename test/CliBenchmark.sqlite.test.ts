/** `kv benchmark` on a SQLite file. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { cliBenchmarkSuite } from "./CliBenchmark.suite.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cli-benchmark-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

cliBenchmarkSuite({ type: "sqlite", connection: `file:${path.join(dir, "data.db")}?mode=rwc` })
