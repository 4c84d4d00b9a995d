/** `kv graph` on an rqlite server of its own. */
import { afterAll } from "vitest"
import { graphCliSuite } from "./GraphCli.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

graphCliSuite({ type: "rqlite", connection: server.url })
