/**
 * Effect's own storage interfaces on the store: `@effect/platform`'s `KeyValueStore` (here
 * through `forSchema`) and `@effect/experimental`'s `PersistedCache` on `Persistence`, their
 * entries kept as records, a time-to-live as record expiry.
 *
 *   npx tsx examples/interop.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as PersistedCache from "@effect/experimental/PersistedCache"
import * as Persistence from "@effect/experimental/Persistence"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { Console, Effect, Layer, Option, PrimaryKey, Schema } from "effect"
import { Store } from "../src/index.js"
import { KvKeyValueStore, KvPersistence } from "../src/interop.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-interop-")), "example.db")

class Settings extends Schema.Class<Settings>("Settings")({
  theme: Schema.Literal("light", "dark"),
  fontSize: Schema.Number,
}) {}

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

/** A request PersistedCache caches; its primary key names the cached entry. */
class GetUser extends Schema.TaggedRequest<GetUser>()("GetUser", {
  failure: Schema.String,
  success: User,
  payload: { id: Schema.Number },
}) {
  [PrimaryKey.symbol]() {
    return `user-${this.id}`
  }
}

const keyValueStore = Effect.gen(function* () {
  const store = yield* Store
  const settings = (yield* KeyValueStore.KeyValueStore).forSchema(Settings)
  yield* settings.set("ui", new Settings({ theme: "dark", fontSize: 14 }))
  yield* settings.modify("ui", (old) => new Settings({ ...old, fontSize: old.fontSize + 1 }))
  const ui = Option.getOrThrow(yield* settings.get("ui"))
  yield* Console.log(`forSchema: a Settings instance: ${ui instanceof Settings}, font size ${ui.fontSize}`)
  const record = Option.getOrThrow(yield* store.get("app/settings/ui"))
  yield* Console.log(`record ${record.key} v${record.version} (${record.type}): ${record.value}`)

  // clear and size see only the prefix
  yield* store.put("users/ada", -1, { name: "Ada" })
  yield* Console.log(`size under app/settings/: ${yield* settings.size}`)
  yield* settings.clear
  yield* Console.log(
    `after clear: ${yield* settings.size} under the prefix, ${yield* store.count()} record(s) in all`,
  )
}).pipe(Effect.provide(KvKeyValueStore.layer({ prefix: "app/settings/" })))

const persistedCache = Effect.gen(function* () {
  const store = yield* Store
  let lookups = 0
  const cache = PersistedCache.make({
    storeId: "users",
    lookup: (request: GetUser) =>
      Effect.sync(() => {
        lookups++
        return new User({ id: request.id, name: request.id === 1 ? "Ada" : "Alan" })
      }),
    timeToLive: () => "2 seconds",
  })
  const getUser = (id: number) =>
    Effect.scoped(Effect.flatMap(cache, (users) => users.get(new GetUser({ id }))))

  const first = yield* getUser(1)
  yield* Console.log(`first cache: ${first.name}, lookups ${lookups}`)
  // a new cache (as in a new process) finds it in the store
  const again = yield* getUser(1)
  yield* Console.log(`rebuilt cache: ${again.name}, lookups ${lookups}`)
  const cached = Option.getOrThrow(yield* store.get("app/cache/users/user-1"))
  yield* Console.log(`record ${cached.key} expires: ${cached.expiresAt !== undefined}`)

  // past its time-to-live the record is gone, and the next cache looks it up again
  yield* Effect.sleep("2100 millis")
  yield* Console.log(`after the ttl: record present ${Option.isSome(yield* store.get(cached.key))}`)
  yield* getUser(1)
  yield* Console.log(`rebuilt cache after the ttl: lookups ${lookups}`)
}).pipe(
  Effect.provide(Persistence.layerResult.pipe(Layer.provide(KvPersistence.layer({ prefix: "app/cache/" })))),
)

const program = Effect.zipRight(keyValueStore, persistedCache)

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
