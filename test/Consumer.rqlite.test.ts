import { afterAll } from "vitest"
import * as KvRqlite from "../src/layers/Rqlite.js"
import { consumerSuite } from "./Consumer.suite.js"
import { startRqlite } from "./support/rqlite.js"

const server = await startRqlite()
afterAll(() => server.stop())

consumerSuite(
  "Consumer on rqlite",
  KvRqlite.layer({ url: server.url }),
  // another client: rqlite cannot tell of its writes, consumers find them by polling
  { layer: KvRqlite.layer({ url: server.url }), wakesUp: false },
)
