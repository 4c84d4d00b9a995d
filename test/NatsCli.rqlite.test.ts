/** `kv nats push --type rqlite`: the kill test, on a server of its own. */
import { afterAll } from "vitest"
import { natsKillSuite } from "./NatsCli.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

natsKillSuite({ type: "rqlite", connection: server.url })
