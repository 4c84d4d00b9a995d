/** `kv nats push --type postgres`: the kill test, on a scratch database. */
import { afterAll } from "vitest"
import { natsKillSuite } from "./NatsCli.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

natsKillSuite({ type: "postgres", connection: database.url })
