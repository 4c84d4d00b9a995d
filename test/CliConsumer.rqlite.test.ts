/** `kv consumer` against an rqlite server of its own. */
import { afterAll } from "vitest"
import { cliConsumerSuite } from "./CliConsumer.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

cliConsumerSuite({ type: "rqlite", connection: server.url })
