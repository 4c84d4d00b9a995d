/** `kv graph` on a scratch PostgreSQL database. */
import { afterAll } from "vitest"
import { graphCliSuite } from "./GraphCli.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

graphCliSuite({ type: "postgres", connection: database.url })
