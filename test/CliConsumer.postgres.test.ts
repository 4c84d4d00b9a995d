/** `kv consumer` against a scratch database on the real server. */
import { afterAll } from "vitest"
import { cliConsumerSuite } from "./CliConsumer.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

cliConsumerSuite({ type: "postgres", connection: database.url })
