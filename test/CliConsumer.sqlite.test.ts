/** `kv consumer` on a SQLite file: `consumer stream` and `put` are separate processes on it. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { cliConsumerSuite } from "./CliConsumer.suite.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cli-consumer-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

cliConsumerSuite({ type: "sqlite", connection: `file:${path.join(dir, "data.db")}?mode=rwc` })
