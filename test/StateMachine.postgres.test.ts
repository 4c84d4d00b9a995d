/** The StateMachine suite on a scratch PostgreSQL database. */
import { afterAll } from "vitest"
import { stateMachineSuite } from "./StateMachine.suite.js"
import { createScratchDatabase } from "./support/postgres.js"

const database = await createScratchDatabase()
afterAll(() => database.drop())

stateMachineSuite({ type: "postgres", connection: database.url })
