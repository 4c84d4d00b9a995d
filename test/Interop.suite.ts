/**
 * The interop conformance suite: Effect's own code (`KeyValueStore.forSchema`, `PersistedCache`,
 * `Persistence.layerResult`) running on `KvKeyValueStore` and `KvPersistence` over the store,
 * the same expectations for every backend. `backend` must give a fresh, empty database; tests
 * share it and run in order, each under a prefix of its own. Time is the `TestClock` (one for
 * the whole block, so times are taken relative to each test's start), so TTLs expire by
 * `TestClock.adjust`.
 */
import * as PersistedCache from "@effect/experimental/PersistedCache"
import * as Persistence from "@effect/experimental/Persistence"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { KvKeyValueStore, KvPersistence } from "../src/interop.js"
import { Store } from "../src/Store.js"

const recordOf = (key: string) =>
  Effect.flatMap(Store, (store) => store.get(key)).pipe(Effect.map(Option.getOrThrow))

/** The keys under `prefix`, in order. */
const keysUnder = (prefix: string) =>
  Effect.flatMap(Store, (store) => store.getPrefix(prefix)).pipe(
    Effect.map((records) => records.map((record) => record.key)),
  )

class Profile extends Schema.Class<Profile>("Profile")({
  name: Schema.String,
  tags: Schema.Array(Schema.String),
  joined: Schema.Date,
}) {}

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

/** The request PersistedCache caches: its primary key is the persisted key. */
class GetUser extends Schema.TaggedRequest<GetUser>()("GetUser", {
  failure: Schema.String,
  success: User,
  payload: { id: Schema.Number },
}) {
  [PrimaryKey.symbol]() {
    return `user-${this.id}`
  }
}

/** A `PersistedCache` of `GetUser` in the store `users` whose lookups are counted in `lookups`. */
const userCache = (lookups: { count: number }, timeToLive: Duration.DurationInput) =>
  PersistedCache.make({
    storeId: "users",
    lookup: (request: GetUser) =>
      Effect.sync(() => {
        lookups.count++
      }).pipe(
        Effect.zipRight(
          request.id < 0
            ? Effect.fail(`no user ${request.id}`)
            : Effect.succeed(new User({ id: request.id, name: `user ${request.id}` })),
        ),
      ),
    timeToLive: () => timeToLive,
  })

/** `Persistence.layerResult` over `KvPersistence` under `prefix`. */
const resultPersistence = (prefix: string) =>
  Persistence.layerResult.pipe(Layer.provide(KvPersistence.layer({ prefix })))

/** `backend` provides the store and the `SqlClient` under it (the last test breaks the table under the store). */
export const interopSuite = (name: string, backend: Layer.Layer<Store | SqlClient.SqlClient, unknown>) =>
  layer(backend, { timeout: Duration.minutes(1) })(name, (it) => {
    // -----------------------------------------------------------------------------------------
    // KvKeyValueStore
    // -----------------------------------------------------------------------------------------

    it.effect("KeyValueStore: get, set, remove, has, isEmpty and modify as strings under the prefix", () =>
      Effect.gen(function* () {
        const kv = yield* KeyValueStore.KeyValueStore
        assert.isTrue(yield* kv.isEmpty)
        assert.isTrue(Option.isNone(yield* kv.get("greeting")))
        yield* kv.set("greeting", "hello")
        assert.deepStrictEqual(yield* kv.get("greeting"), Option.some("hello"))
        assert.isTrue(yield* kv.has("greeting"))
        assert.isFalse(yield* kv.has("other"))
        assert.isFalse(yield* kv.isEmpty)
        // a string value of type string, under the prefix
        const record = yield* recordOf("kv1/greeting")
        assert.strictEqual(record.value, "hello")
        assert.strictEqual(record.type, "string")
        assert.deepStrictEqual(
          yield* kv.modify("greeting", (text) => `${text}, world`),
          Option.some("hello, world"),
        )
        assert.deepStrictEqual(yield* kv.modify("missing", (text) => `${text}!`), Option.none())
        assert.isTrue(Option.isNone(yield* kv.get("missing")))
        assert.strictEqual((yield* recordOf("kv1/greeting")).version, 2)
        // a string that looks like JSON stays a string
        yield* kv.set("number-text", "42")
        assert.strictEqual((yield* recordOf("kv1/number-text")).value, "42")
        assert.strictEqual(yield* kv.size, 2)
        yield* kv.remove("greeting")
        yield* kv.remove("greeting") // absent: not an error
        assert.isTrue(Option.isNone(yield* kv.get("greeting")))
        assert.deepStrictEqual(yield* keysUnder("kv1/"), ["kv1/number-text"])
      }).pipe(Effect.provide(KvKeyValueStore.layer({ prefix: "kv1/" }))),
    )

    it.effect(
      "KeyValueStore: bytes as base64 of an explicit record type; a record the store wrote as JSON",
      () =>
        Effect.gen(function* () {
          const kv = yield* KeyValueStore.KeyValueStore
          const store = yield* Store
          // not valid UTF-8: only the base64 record keeps these bytes
          const bytes = new Uint8Array([0, 255, 128, 10, 0xc3])
          yield* kv.set("blob", bytes)
          const record = yield* recordOf("kv2/blob")
          assert.strictEqual(record.type, KvKeyValueStore.binaryType)
          assert.strictEqual(record.value, Buffer.from(bytes).toString("base64"))
          assert.deepStrictEqual(yield* kv.getUint8Array("blob"), Option.some(bytes))
          // get of a binary entry: its base64 text, as Effect's in-memory store answers
          assert.deepStrictEqual(yield* kv.get("blob"), Option.some(Buffer.from(bytes).toString("base64")))
          // a string that is valid base64 stays that string; as bytes, its UTF-8
          yield* kv.set("text", "AAEC")
          assert.deepStrictEqual(
            yield* kv.getUint8Array("text"),
            Option.some(new TextEncoder().encode("AAEC")),
          )
          assert.deepStrictEqual(yield* kv.get("text"), Option.some("AAEC"))
          assert.deepStrictEqual(
            yield* kv.modifyUint8Array("blob", (old) => old.slice(0, 2)),
            Option.some(new Uint8Array([0, 255])),
          )
          assert.deepStrictEqual(yield* kv.getUint8Array("blob"), Option.some(new Uint8Array([0, 255])))
          // a record written through the store with a JSON value reads as its JSON text
          yield* store.put("kv2/settings", -1, { theme: "dark", size: 3 })
          assert.deepStrictEqual(yield* kv.get("settings"), Option.some('{"theme":"dark","size":3}'))
          // a binary entry whose text is not base64 (written behind the layer's back)
          yield* store.put("kv2/broken", -1, "not base64 ***", { type: KvKeyValueStore.binaryType })
          const error = yield* Effect.flip(kv.getUint8Array("broken"))
          assert.strictEqual(error._tag, "SystemError")
          assert.strictEqual(error._tag === "SystemError" && error.reason, "InvalidData")
          assert.include(error.message, "kv2/broken")
        }).pipe(Effect.provide(KvKeyValueStore.layer({ prefix: "kv2/" }))),
    )

    it.effect("KeyValueStore.forSchema round trips a Schema class, modify included", () =>
      Effect.gen(function* () {
        const profiles = (yield* KeyValueStore.KeyValueStore).forSchema(Profile)
        const ada = new Profile({
          name: "Ada",
          tags: ["math", "engines"],
          joined: new Date("1843-09-01T00:00:00Z"),
        })
        yield* profiles.set("ada", ada)
        const read = Option.getOrThrow(yield* profiles.get("ada"))
        assert.instanceOf(read, Profile)
        assert.deepStrictEqual(read, ada)
        // stored as the JSON text of its encoded form
        const record = yield* recordOf("kv3/ada")
        assert.deepStrictEqual(JSON.parse(record.value as string), {
          name: "Ada",
          tags: ["math", "engines"],
          joined: "1843-09-01T00:00:00.000Z",
        })
        const renamed = yield* profiles.modify(
          "ada",
          (profile) => new Profile({ ...profile, name: "Ada Lovelace" }),
        )
        assert.strictEqual(Option.getOrThrow(renamed).name, "Ada Lovelace")
        assert.strictEqual(Option.getOrThrow(yield* profiles.get("ada")).name, "Ada Lovelace")
        assert.isTrue(yield* profiles.has("ada"))
        assert.strictEqual(yield* profiles.size, 1)
        // a value that does not decode is the Schema's ParseError
        yield* (yield* KeyValueStore.KeyValueStore).set("bad", '{"name":1}')
        const error = yield* Effect.flip(profiles.get("bad"))
        assert.strictEqual(error._tag, "ParseError")
        // layerSchema builds the same store as a service
        const { layer: schemaLayer, tag } = KeyValueStore.layerSchema(Profile, "ProfileStore")
        const viaLayer = yield* Effect.provide(
          Effect.flatMap(tag, (store) => store.get("ada")),
          schemaLayer.pipe(Layer.provide(KvKeyValueStore.layer({ prefix: "kv3/" }))),
        )
        assert.strictEqual(Option.getOrThrow(viaLayer).name, "Ada Lovelace")
      }).pipe(Effect.provide(KvKeyValueStore.layer({ prefix: "kv3/" }))),
    )

    it.effect("KeyValueStore: clear and size see only the prefix; keys beside it survive", () =>
      Effect.gen(function* () {
        const store = yield* Store
        // beside the prefix "c4/": a longer and a shorter key, another prefix, LIKE wildcards
        yield* store.put("c4", -1, "shorter")
        yield* store.put("c4x/a", -1, "beside")
        yield* store.put("c5/a", -1, "another store")
        yield* store.put("c_/a", -1, "wildcard look-alike")
        const kv = KvKeyValueStore.make(store, { prefix: "c4/" })
        const other = KvKeyValueStore.make(store, { prefix: "c5/" })
        yield* Effect.forEach(["a", "b", "c/d"], (key) => kv.set(key, key))
        assert.strictEqual(yield* kv.size, 3)
        assert.strictEqual(yield* other.size, 1)
        // Effect's own prefix combinator on top: keys under "c4/c/"
        const nested = KeyValueStore.prefix(kv, "c/")
        assert.deepStrictEqual(yield* nested.get("d"), Option.some("c/d"))
        yield* kv.clear
        assert.strictEqual(yield* kv.size, 0)
        assert.isTrue(yield* kv.isEmpty)
        assert.deepStrictEqual(yield* keysUnder("c"), ["c4", "c4x/a", "c5/a", "c_/a"])
        assert.deepStrictEqual(yield* other.get("a"), Option.some("another store"))
        // the prefix "*" is the literal character, not deletePrefix's "every key"
        const star = KvKeyValueStore.make(store, { prefix: "*" })
        yield* star.set("x", "1")
        assert.strictEqual(yield* star.size, 1)
        yield* star.clear
        assert.strictEqual(yield* star.size, 0)
        assert.deepStrictEqual(yield* keysUnder("c"), ["c4", "c4x/a", "c5/a", "c_/a"])
        yield* store.deletePrefix("c")
      }),
    )

    it.effect("KeyValueStore: a key the store rejects is a BadArgument keeping the store's message", () =>
      Effect.gen(function* () {
        const kv = yield* KeyValueStore.KeyValueStore
        const error = yield* Effect.flip(kv.set("nul\u0000key", "x"))
        assert.strictEqual(error._tag, "BadArgument")
        assert.strictEqual(error.module, "KeyValueStore")
        assert.strictEqual(error.method, "set")
        assert.include(error.message, "NUL")
        assert.strictEqual((error.cause as { _tag: string })._tag, "InvalidArgumentError")
        assert.strictEqual((yield* Effect.flip(kv.get("nul\u0000key")))._tag, "BadArgument")
        assert.isTrue(yield* kv.isEmpty)
      }).pipe(Effect.provide(KvKeyValueStore.layer({ prefix: "kv6/" }))),
    )

    // -----------------------------------------------------------------------------------------
    // KvPersistence
    // -----------------------------------------------------------------------------------------

    it.scoped(
      "BackingPersistence: get, getMany in input order, setMany in one batch, remove, clear one store",
      () =>
        Effect.gen(function* () {
          const backing = yield* Persistence.BackingPersistence
          const store = yield* Store
          const users = yield* backing.make("users")
          const nested = yield* backing.make("users/archive") // not under "users"'s keys
          yield* store.put("p1x", -1, "beside the prefix")
          yield* users.set("a", { n: 1 }, Option.none())
          assert.deepStrictEqual(yield* users.get("a"), Option.some({ n: 1 }))
          assert.deepStrictEqual((yield* recordOf("p1/users/a")).value, { n: 1 })
          assert.isUndefined((yield* recordOf("p1/users/a")).expiresAt)
          const before = yield* store.streamSeq()
          yield* users.setMany([
            ["b", [1, 2], Option.none()],
            ["c", "three", Option.none()],
            ["d", null, Option.none()],
          ])
          assert.strictEqual((yield* store.streamSeq()) - before, 3)
          assert.deepStrictEqual(yield* users.getMany(["d", "missing", "a", "c", "b"]), [
            Option.some(null),
            Option.none(),
            Option.some({ n: 1 }),
            Option.some("three"),
            Option.some([1, 2]),
          ])
          // setMany is one transaction: an invalid key writes none of the batch
          const error = yield* Effect.flip(
            users.setMany([
              ["e", 5, Option.none()],
              ["bad\u0000", 6, Option.none()],
            ]),
          )
          assert.strictEqual(error.reason, "BackingError")
          assert.strictEqual(error.method, "setMany")
          assert.isTrue(Option.isNone(yield* users.get("e")))
          yield* nested.set("a", "archived", Option.none())
          assert.deepStrictEqual(yield* keysUnder("p1"), [
            "p1/users%2Farchive/a",
            "p1/users/a",
            "p1/users/b",
            "p1/users/c",
            "p1/users/d",
            "p1x",
          ])
          yield* users.remove("a")
          assert.isTrue(Option.isNone(yield* users.get("a")))
          yield* users.clear
          assert.deepStrictEqual(yield* keysUnder("p1"), ["p1/users%2Farchive/a", "p1x"])
          assert.deepStrictEqual(yield* nested.get("a"), Option.some("archived"))
        }).pipe(Effect.provide(KvPersistence.layer({ prefix: "p1/" }))),
    )

    it.scoped("PersistedCache: a value cached in the store is found again after the cache is rebuilt", () =>
      Effect.gen(function* () {
        const lookups = { count: 0 }
        const first = yield* userCache(lookups, Duration.infinity)
        assert.deepStrictEqual(yield* first.get(new GetUser({ id: 1 })), new User({ id: 1, name: "user 1" }))
        assert.strictEqual(yield* Effect.flip(first.get(new GetUser({ id: -1 }))), "no user -1")
        assert.strictEqual(lookups.count, 2)
        // the exits are in the store, without expiry
        const stored = yield* keysUnder("p2/")
        assert.deepStrictEqual(stored, ["p2/users/user--1", "p2/users/user-1"])
        assert.isUndefined((yield* recordOf("p2/users/user-1")).expiresAt)

        // a new cache (a new in-memory layer, as after a restart) finds both without a lookup
        const second = yield* Effect.scoped(
          Effect.gen(function* () {
            const cache = yield* userCache(lookups, Duration.infinity)
            const user = yield* cache.get(new GetUser({ id: 1 }))
            const failure = yield* Effect.flip(cache.get(new GetUser({ id: -1 })))
            yield* cache.invalidate(new GetUser({ id: -1 }))
            return { user, failure }
          }),
        )
        assert.instanceOf(second.user, User)
        assert.strictEqual(second.user.name, "user 1")
        assert.strictEqual(second.failure, "no user -1")
        assert.strictEqual(lookups.count, 2)
        // invalidate removed the record
        assert.deepStrictEqual(yield* keysUnder("p2/"), ["p2/users/user-1"])
      }).pipe(Effect.provide(resultPersistence("p2/"))),
    )

    it.scoped("Persistence.layerResult: getMany and setMany of exits through the store", () =>
      Effect.gen(function* () {
        const persistence = yield* Persistence.ResultPersistence
        const results = yield* persistence.make({ storeId: "results" })
        yield* results.setMany([
          [new GetUser({ id: 7 }), Exit.succeed(new User({ id: 7, name: "seven" }))],
          [new GetUser({ id: 8 }), Exit.fail("eight failed")],
        ])
        const [seven, nine, eight] = yield* results.getMany([
          new GetUser({ id: 7 }),
          new GetUser({ id: 9 }),
          new GetUser({ id: 8 }),
        ])
        assert.deepStrictEqual(seven, Option.some(Exit.succeed(new User({ id: 7, name: "seven" }))))
        assert.deepStrictEqual(nine, Option.none())
        assert.deepStrictEqual(eight, Option.some(Exit.fail("eight failed")))
        yield* results.clear
        assert.deepStrictEqual(yield* keysUnder("p3/"), [])
      }).pipe(Effect.provide(resultPersistence("p3/"))),
    )

    // -----------------------------------------------------------------------------------------
    // Expiry: Persistence TTLs as record expiry
    // -----------------------------------------------------------------------------------------

    it.scoped("BackingPersistence: a ttl is the record's expiry; gone after the clock passes it", () =>
      Effect.gen(function* () {
        const backing = yield* Persistence.BackingPersistence
        const store = yield* Store
        const session = yield* backing.make("sessions")
        const start = yield* store.streamSeq()
        const t0 = yield* Clock.currentTimeMillis
        yield* session.set("short", "s", Option.some(Duration.seconds(30)))
        yield* session.setMany([
          ["long", "l", Option.some(Duration.minutes(5))],
          ["forever", "f", Option.none()],
          ["infinite", "i", Option.some(Duration.infinity)],
        ])
        assert.deepStrictEqual((yield* recordOf("p4/sessions/short")).expiresAt, new Date(t0 + 30_000))
        assert.deepStrictEqual((yield* recordOf("p4/sessions/long")).expiresAt, new Date(t0 + 300_000))
        assert.isUndefined((yield* recordOf("p4/sessions/forever")).expiresAt)
        assert.isUndefined((yield* recordOf("p4/sessions/infinite")).expiresAt)

        yield* TestClock.adjust("29 seconds")
        assert.deepStrictEqual(yield* session.get("short"), Option.some("s"))
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* session.getMany(["short", "long", "forever", "infinite"]), [
          Option.none(),
          Option.some("l"),
          Option.some("f"),
          Option.some("i"),
        ])
        yield* TestClock.adjust("5 minutes")
        assert.isTrue(Option.isNone(yield* session.get("long")))
        // a set without ttl clears the expiry of a key set with one
        yield* session.set("again", 1, Option.some(Duration.seconds(10)))
        yield* session.set("again", 2, Option.none())
        yield* TestClock.adjust("1 minute")
        assert.deepStrictEqual(yield* session.get("again"), Option.some(2))
        // a zero or negative ttl stores nothing, and deletes what was there
        yield* session.set("zero", 0, Option.some(Duration.zero))
        assert.isTrue(Option.isNone(yield* store.get("p4/sessions/zero")))
        yield* session.setMany([["forever", "gone", Option.some(Duration.zero)]])
        assert.isTrue(Option.isNone(yield* session.get("forever")))
        // a sweep (this one, or the layer's own, in any order) deletes each expired record once,
        // with a delete stream record keeping its expiry; the zero ttl deleted "forever" at once
        yield* store.expire()
        const deletes = (yield* store.stream("all", start + 1, undefined, { prefix: "p4/" })).filter(
          (change) => change.action === "delete",
        )
        assert.deepStrictEqual(
          deletes.map((change) => [change.record.key, change.record.expiresAt?.getTime()]).sort(),
          [
            ["p4/sessions/forever", undefined],
            ["p4/sessions/long", t0 + 300_000],
            ["p4/sessions/short", t0 + 30_000],
          ],
        )
        assert.deepStrictEqual(yield* keysUnder("p4/"), ["p4/sessions/again", "p4/sessions/infinite"])
      }).pipe(Effect.provide(KvPersistence.layer({ prefix: "p4/" }))),
    )

    it.scoped(
      "PersistedCache: an entry with a time-to-live is looked up again once the TestClock passes it",
      () =>
        Effect.gen(function* () {
          const t0 = yield* Clock.currentTimeMillis
          const lookups = { count: 0 }
          const rebuilt = (id: number) =>
            Effect.scoped(
              Effect.flatMap(userCache(lookups, "1 minute"), (cache) => cache.get(new GetUser({ id }))),
            )
          assert.strictEqual((yield* rebuilt(5)).name, "user 5")
          assert.strictEqual(lookups.count, 1)
          assert.deepStrictEqual((yield* recordOf("p5/users/user-5")).expiresAt, new Date(t0 + 60_000))
          yield* TestClock.adjust("59 seconds")
          assert.strictEqual((yield* rebuilt(5)).name, "user 5")
          assert.strictEqual(lookups.count, 1)
          yield* TestClock.adjust("2 seconds")
          // expired: absent for the store, so the rebuilt cache looks it up again and stores it anew
          assert.deepStrictEqual(yield* keysUnder("p5/"), [])
          assert.strictEqual((yield* rebuilt(5)).name, "user 5")
          assert.strictEqual(lookups.count, 2)
          assert.deepStrictEqual((yield* recordOf("p5/users/user-5")).expiresAt, new Date(t0 + 121_000))
        }).pipe(Effect.provide(resultPersistence("p5/"))),
    )

    // clears the whole database: after every test that keeps records
    it.effect("KeyValueStore with the empty prefix: the whole store", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const kv = KvKeyValueStore.make(store, { prefix: "" })
        yield* kv.set("whole/a", "a")
        assert.deepStrictEqual(
          yield* Effect.map(
            store.get("whole/a"),
            Option.map((r) => r.value),
          ),
          Option.some("a"),
        )
        assert.isAbove(yield* store.count(), 1)
        assert.strictEqual(yield* kv.size, yield* store.count())
        yield* kv.clear
        assert.strictEqual(yield* store.count(), 0)
        assert.isTrue(yield* kv.isEmpty)
      }),
    )

    // last: it takes the records table away for a moment
    it.scoped(
      "a failing database: a SystemError and a PersistenceBackingError, each keeping the StoreError",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const kv = yield* KeyValueStore.KeyValueStore
          const persisted = yield* (yield* Persistence.BackingPersistence).make("broken")
          yield* kv.set("k", "v")
          yield* sql`ALTER TABLE kv_records RENAME TO kv_records_away`
          const failures = yield* Effect.all([Effect.flip(kv.get("k")), Effect.flip(kv.size)]).pipe(
            Effect.zip(Effect.flip(persisted.get("k"))),
            Effect.ensuring(Effect.orDie(sql`ALTER TABLE kv_records_away RENAME TO kv_records`)),
          )
          const [[get, size], backing] = failures
          for (const [error, method] of [
            [get, "get"],
            [size, "size"],
          ] as const) {
            assert.strictEqual(error._tag, "SystemError")
            assert.strictEqual(error._tag === "SystemError" && error.reason, "Unknown")
            assert.strictEqual(error.method, method)
            const cause = error.cause as { _tag: string; message: string }
            assert.strictEqual(cause._tag, "StoreError")
            assert.include(error.message, cause.message)
          }
          assert.strictEqual(backing.reason, "BackingError")
          assert.strictEqual(backing.method, "get")
          assert.strictEqual((backing as { cause?: { _tag?: string } }).cause?._tag, "StoreError")
          // and back to work
          assert.deepStrictEqual(yield* kv.get("k"), Option.some("v"))
        }).pipe(
          Effect.provide(
            Layer.merge(KvKeyValueStore.layer({ prefix: "broken/" }), KvPersistence.layer({ prefix: "p6/" })),
          ),
        ),
    )
  })
