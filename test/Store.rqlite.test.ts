/** The Store suite on rqlite: the backend layer's client + KvSql.layer. */
import * as Layer from "effect/Layer"
import { KvSql } from "../src/index.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import { storeSuite } from "./Store.suite.js"
import { startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

storeSuite(
  "Store on rqlite",
  layerOnScratch(
    startRqlite,
    (server) => server.stop(),
    (server) => KvSql.layer().pipe(Layer.provideMerge(KvRqlite.layerClient({ url: server.url }))),
  ),
)
