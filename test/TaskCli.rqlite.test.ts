/** `kv task` on an rqlite server of its own. */
import { afterAll } from "vitest"
import { startRqlite } from "./support/rqlite.js"
import { taskCliSuite } from "./TaskCli.suite.js"

const server = await startRqlite()
afterAll(() => server.stop())

taskCliSuite({
  type: "rqlite",
  connection: server.url,
  unreachable: "http://admin:Unr3achable-pw@127.0.0.1:1",
})
