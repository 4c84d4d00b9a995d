/** `kv --type postgres` against a scratch database on the real server. */
import { afterAll } from "vitest"
import { cliSuite, unreachableServerTest } from "./Cli.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

cliSuite({ type: "postgres", connection: database.url })

unreachableServerTest("postgres", (port, password) => `postgres://postgres:${password}@127.0.0.1:${port}/kv`)
