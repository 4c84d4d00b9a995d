/** `kv --type rqlite` against a server of its own. */
import { afterAll } from "vitest"
import { cliSuite, unreachableServerTest } from "./Cli.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

cliSuite({ type: "rqlite", connection: server.url })

// both ways of giving credentials
unreachableServerTest("rqlite", (port, password) => `http://admin:${password}@127.0.0.1:${port}`)
unreachableServerTest(
  "rqlite",
  (port, password) => `http://127.0.0.1:${port}?user=admin&password=${password}`,
)
