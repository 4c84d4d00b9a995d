/** `kv task` on a scratch PostgreSQL database. */
import { afterAll } from "vitest"
import { createScratchDatabase } from "./support/postgres.js"
import { taskCliSuite } from "./TaskCli.suite.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

taskCliSuite({
  type: "postgres",
  connection: database.url,
  unreachable: "postgres://postgres:Unr3achable-pw@127.0.0.1:1/kv",
})
