/** The StateMachine suite on an rqlite server of its own. */
import { afterAll } from "vitest"
import { stateMachineSuite } from "./StateMachine.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

stateMachineSuite({ type: "rqlite", connection: server.url })
