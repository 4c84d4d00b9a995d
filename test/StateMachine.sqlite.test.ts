/** The StateMachine suite on a SQLite file (the racing processes open it too). */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { stateMachineSuite } from "./StateMachine.suite.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-state-machine-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

stateMachineSuite({ type: "sqlite", connection: `file:${path.join(dir, "data.db")}?mode=rwc` })
