/**
 * Watching keys: `Watch.stream` gives the current records under a prefix (`snapshot`), then
 * every later change of a key under it, live, as it is written.
 *
 *   npx tsx examples/watch.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Deferred, Effect, Fiber, Stream } from "effect"
import { Store, Watch } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-watch-")), "example.db")

const program = Effect.gen(function* () {
  const store = yield* Store
  yield* store.put("config/theme", 0, "dark")
  yield* store.put("config/language", 0, "en")
  yield* store.put("users/ada", 0, { name: "Ada" }) // not under the prefix: never shown

  // the watcher: two snapshot events, then the three changes written below
  const snapshotSeen = yield* Deferred.make<void>()
  const watcher = yield* Watch.stream({ prefix: "config/" }).pipe(
    Stream.take(5),
    Stream.runForEach((event) =>
      Effect.gen(function* () {
        const value = event.action === "delete" ? "" : ` = ${JSON.stringify(event.record.value)}`
        yield* Console.log(
          `${event.action} ${event.record.key} v${event.record.version}${value} (seq ${event.seq})`,
        )
        if (event.action === "snapshot" && event.record.key === "config/theme") {
          yield* Deferred.succeed(snapshotSeen, undefined)
        }
      }),
    ),
    Effect.fork,
  )

  // once the snapshot is out, change things: the watcher sees them as they happen
  yield* Deferred.await(snapshotSeen)
  yield* store.put("users/alan", 0, { name: "Alan" })
  yield* store.put("config/theme", 1, "light")
  yield* store.put("config/timezone", 0, "UTC")
  yield* store.delete("config/language")
  yield* Fiber.join(watcher)
  yield* Console.log("watched 2 snapshot records and 3 live changes")
})

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
