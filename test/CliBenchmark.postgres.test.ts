/** `kv benchmark` against a scratch database on the real server. */
import { afterAll } from "vitest"
import { cliBenchmarkSuite } from "./CliBenchmark.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

cliBenchmarkSuite({ type: "postgres", connection: database.url })
