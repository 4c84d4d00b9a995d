/** `kv cron` on an rqlite server of its own. */
import { afterAll } from "vitest"
import { cronCliSuite } from "./CronCli.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

cronCliSuite({ type: "rqlite", connection: server.url })
