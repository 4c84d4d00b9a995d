/** `kv cron` on a scratch PostgreSQL database. */
import { afterAll } from "vitest"
import { cronCliSuite } from "./CronCli.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

cronCliSuite({ type: "postgres", connection: database.url })
