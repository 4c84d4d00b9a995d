/** The Store conformance suite, unchanged, on a 3-node rqlite cluster reached through a follower. */
import * as Layer from "effect/Layer"
import { KvSql } from "../src/index.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import { storeSuite } from "./Store.suite.js"
import { startRqliteCluster } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

storeSuite(
  "Store on a 3-node rqlite cluster, through a follower",
  layerOnScratch(
    async () => {
      const cluster = await startRqliteCluster()
      return { cluster, follower: await cluster.follower() }
    },
    ({ cluster }) => cluster.stop(),
    // only the follower: it forwards every write and strong read to the leader
    ({ cluster, follower }) =>
      KvSql.layer().pipe(Layer.provideMerge(KvRqlite.layerClient({ url: cluster.urlOf(follower) }))),
  ),
)
