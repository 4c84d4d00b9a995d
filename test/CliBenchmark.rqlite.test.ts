/** `kv benchmark` against an rqlite server of its own. */
import { afterAll } from "vitest"
import { cliBenchmarkSuite } from "./CliBenchmark.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

cliBenchmarkSuite({ type: "rqlite", connection: server.url })
