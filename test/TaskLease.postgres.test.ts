import * as Effect from "effect/Effect"
import * as KvPostgres from "../src/layers/Postgres.js"
import { createScratchDatabase } from "./support/postgres.js"
import { startProxy } from "./support/proxy.js"
import { taskLeaseSuite } from "./TaskLease.suite.js"

taskLeaseSuite(
  "PostgreSQL behind a proxy that freezes",
  Effect.gen(function* () {
    const database = yield* Effect.acquireRelease(Effect.promise(createScratchDatabase), (d) =>
      Effect.promise(() => d.drop()),
    )
    const url = new URL(database.url)
    const proxy = yield* Effect.promise(() => startProxy(Number(url.port || 5432)))
    const cutUrl = new URL(database.url)
    cutUrl.port = String(proxy.port)
    return {
      cut: KvPostgres.layer({ url: cutUrl.toString() }),
      working: KvPostgres.layer({ url: database.url }),
      freeze: proxy.freeze,
      thaw: () => {},
      close: proxy.close,
    }
  }),
)
