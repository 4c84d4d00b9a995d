import * as Effect from "effect/Effect"
import * as KvRqlite from "../src/layers/Rqlite.js"
import { startProxy } from "./support/proxy.js"
import { startRqlite } from "./support/rqlite.js"
import { taskLeaseSuite } from "./TaskLease.suite.js"

taskLeaseSuite(
  "rqlite behind a proxy that freezes",
  Effect.gen(function* () {
    const server = yield* Effect.acquireRelease(Effect.promise(startRqlite), (s) =>
      Effect.promise(() => s.stop()),
    )
    const url = new URL(server.url)
    const proxy = yield* Effect.promise(() => startProxy(Number(url.port)))
    const cutUrl = new URL(server.url)
    cutUrl.port = String(proxy.port)
    return {
      cut: KvRqlite.layer({ url: cutUrl.toString(), timeout: "2 seconds" }),
      working: KvRqlite.layer({ url: server.url }),
      freeze: proxy.freeze,
      thaw: () => {},
      close: proxy.close,
    }
  }),
)
