/**
 * The expiry conformance suite: the same expectations for every backend, on `TestClock`.
 * `backend(config)` must give a fresh, empty database; tests share it, each under keys of its
 * own, and run in order. Their `TestClock` goes on from test to test: each test takes its own
 * start. The layer's own sweep is off (`expirySweep: false`) so that every `expire()` counts
 * exactly, except in the last block, which checks that sweep.
 */
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import type * as KvSql from "../src/layers/Sql.js"
import { type KvRecord, Mutation, Store, type StreamRecord } from "../src/Store.js"

const expiry = (record: KvRecord | undefined) => record?.expiresAt?.getTime()

/** The stream records of keys under `prefix` from `seq` on, as [action, key, version, expiresAt]. */
const changesOf = (prefix: string, seq: number) =>
  Effect.flatMap(Store, (store) =>
    Effect.map(store.stream("all", seq, -1, { prefix }), (records: ReadonlyArray<StreamRecord>) =>
      records.map((r) => [r.action, r.record.key, r.record.version, expiry(r.record) ?? null]),
    ),
  )

const nextSeq = Effect.flatMap(Store, (store) => Effect.map(store.streamSeq(), (seq) => seq + 1))

export const expirySuite = (
  name: string,
  backend: (config: KvSql.SqlConfig) => Layer.Layer<Store, unknown>,
) => {
  layer(backend({ expirySweep: false }), { timeout: Duration.minutes(2) })(name, (it) => {
    it.effect("a record with a ttl has expiresAt, and from then on every read finds it absent", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const start = yield* Clock.currentTimeMillis
        const written = yield* store.put("e1/a", -1, { a: 1 }, { ttl: "5 seconds" })
        yield* store.put("e1/b", -1, { b: 1 })
        assert.strictEqual(expiry(written), start + 5000)
        assert.isUndefined(Option.getOrThrow(yield* store.get("e1/b")).expiresAt)
        assert.strictEqual(expiry(Option.getOrUndefined(yield* store.get("e1/a"))), start + 5000)
        assert.strictEqual(yield* store.countPrefix("e1/"), 2)

        yield* TestClock.adjust("4999 millis")
        assert.isTrue(Option.isSome(yield* store.get("e1/a")), "live until its expiresAt")
        yield* TestClock.adjust("1 millis")
        assert.isTrue(Option.isNone(yield* store.get("e1/a")), "absent from expiresAt on")
        assert.deepStrictEqual([...(yield* store.getBatch(["e1/a", "e1/b"])).keys()], ["e1/b"])
        assert.deepStrictEqual(
          (yield* store.getPrefix("e1/")).map((r) => r.key),
          ["e1/b"],
        )
        assert.deepStrictEqual(
          (yield* store.getRange("e1/", "e1/z")).map((r) => r.key),
          ["e1/b"],
        )
        assert.deepStrictEqual(
          (yield* store.getType("object")).filter((r) => r.key.startsWith("e1/")).map((r) => r.key),
          ["e1/b"],
        )
        assert.deepStrictEqual(
          (yield* store.list()).filter((r) => r.key.startsWith("e1/")).map((r) => r.key),
          ["e1/b"],
        )
        assert.strictEqual(yield* store.countPrefix("e1/"), 1)
        assert.strictEqual(yield* store.countRange("e1/", "e1/z"), 1)
        // a page counts only live records
        assert.deepStrictEqual(
          (yield* store.getPrefix("e1/", { limit: 1 })).map((r) => r.key),
          ["e1/b"],
        )
      }),
    )

    it.effect("an expired key is absent for version checks: 0 creates it again as a new record", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const start = yield* Clock.currentTimeMillis
        const first = yield* nextSeq
        yield* store.put("e2/k", -1, "one", { ttl: "1 second" })
        yield* store.put("e2/k", 1, "two", { ttl: "1 second" })
        yield* TestClock.adjust("1 second")
        // the old version is gone with the record
        const stale = yield* Effect.either(store.put("e2/k", 2, "three"))
        assert.isTrue(Either.isLeft(stale) && stale.left._tag === "VersionMismatchError")
        const stalePatch = yield* Effect.either(store.patch("e2/k", 2, { x: 1 }))
        assert.isTrue(Either.isLeft(stalePatch) && stalePatch.left._tag === "VersionMismatchError")
        const check = yield* Effect.either(store.mutateAll([Mutation.check("e2/k", 2)]))
        assert.isTrue(Either.isLeft(check) && check.left._tag === "VersionMismatchError")
        assert.deepStrictEqual(yield* store.mutateAll([Mutation.check("e2/k", 0)]), [0])

        const again = yield* store.put("e2/k", 0, "new")
        assert.strictEqual(again.version, 1)
        assert.strictEqual(again.created.getTime(), start + 1000, "a new record's own created")
        assert.isUndefined(again.expiresAt)
        // the expiry shows in the stream before the new record, and keeps its expiresAt
        assert.deepStrictEqual(yield* changesOf("e2/", first), [
          ["create", "e2/k", 1, start + 1000],
          ["update", "e2/k", 2, start + 1000],
          ["delete", "e2/k", 2, start + 1000],
          ["create", "e2/k", 1, null],
        ])
      }),
    )

    it.effect("put without ttl clears the expiry; patch and increment without ttl keep it", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const start = yield* Clock.currentTimeMillis
        yield* store.put("e3/put", -1, 1, { ttl: "1 minute" })
        assert.isUndefined((yield* store.put("e3/put", 1, 2)).expiresAt)
        yield* store.put("e3/patch", -1, { a: 1 }, { ttl: "1 minute" })
        assert.strictEqual(expiry(yield* store.patch("e3/patch", 1, { b: 2 })), start + 60_000)
        assert.strictEqual(
          expiry(yield* store.patch("e3/patch", 2, { c: 3 }, { ttl: "2 minutes" })),
          start + 120_000,
        )
        yield* store.increment("e3/count", 1, { ttl: "1 minute" })
        const counted = yield* store.increment("e3/count", 2)
        assert.strictEqual(counted.value, 3)
        assert.strictEqual(expiry(counted), start + 60_000)

        yield* TestClock.adjust("1 minute")
        // an expired counter counts from 0 again, as a new record
        const fresh = yield* store.increment("e3/count", 5)
        assert.deepStrictEqual([fresh.value, fresh.version, expiry(fresh)], [5, 1, undefined])
        // a patch of an expired record patches an empty object
        yield* TestClock.adjust("1 minute")
        const patched = yield* store.patch("e3/patch", -1, { d: 4 })
        assert.deepStrictEqual([patched.value, patched.version, patched.type], [{ d: 4 }, 1, "object"])
        // an upsert of an expired record starts at version 1
        yield* store.put("e3/up", -1, "a", { ttl: "1 second" })
        yield* store.put("e3/up", -1, "b", { ttl: "1 second" })
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* store.put("e3/up", -1, "c")).version, 1)
      }),
    )

    it.effect("expire() deletes each expired record once, with a delete record keeping its expiresAt", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* TestClock.adjust("1 day")
        yield* store.expire() // what earlier tests left expired
        const start = yield* Clock.currentTimeMillis
        const first = yield* nextSeq
        yield* store.put("e4/a", -1, "a", { ttl: "1 second" })
        yield* store.put("e4/b", -1, "b", { ttl: "2 seconds" })
        yield* store.put("e4/c", -1, "c", { ttl: "1 second" })
        yield* store.put("e4/d", -1, "d")
        yield* store.put("e4/e", -1, "e", { ttl: "1 second" })
        assert.strictEqual(yield* store.expire(), 0, "nothing expired yet")
        // an explicit delete of a record with a ttl is a plain delete
        assert.strictEqual(yield* store.delete("e4/e"), 1)
        yield* TestClock.adjust("1 second")
        // deletes leave expired records to the sweep
        assert.strictEqual(yield* store.delete("e4/a"), 0)
        assert.strictEqual(yield* store.deletePrefix("e4/c"), 0)
        assert.strictEqual(yield* store.expire(), 2)
        assert.strictEqual(yield* store.expire(), 0, "each record once")
        yield* TestClock.adjust("1 second")
        assert.strictEqual(yield* store.expire(), 1)
        assert.deepStrictEqual(
          (yield* store.getPrefix("e4/")).map((r) => r.key),
          ["e4/d"],
        )
        assert.deepStrictEqual((yield* changesOf("e4/", first)).slice(5), [
          ["delete", "e4/e", 1, null],
          ["delete", "e4/a", 1, start + 1000],
          ["delete", "e4/c", 1, start + 1000],
          ["delete", "e4/b", 1, start + 2000],
        ])
      }),
    )

    it.effect("expire() sweeps more records than one of its steps deletes", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* TestClock.adjust("2 days")
        yield* store.expire() // what earlier tests left expired
        const keys = Array.from({ length: 2500 }, (_, i) => `e5/${String(i).padStart(5, "0")}`)
        yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, 1, { ttl: "1 second" })))
        assert.strictEqual(yield* store.countPrefix("e5/"), 2500)
        yield* TestClock.adjust("1 second")
        assert.strictEqual(yield* store.countPrefix("e5/"), 0)
        const first = yield* nextSeq
        assert.strictEqual(yield* store.expire(), 2500)
        const deleted = yield* changesOf("e5/", first)
        assert.deepStrictEqual(
          deleted.map(([action, key]) => [action, key]),
          keys.map((key) => ["delete", key]),
          "one delete record per key, in key order",
        )
      }),
    )

    it.effect("batches: ttls on puts, patches and increments, and expired keys as absent", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const now = yield* Clock.currentTimeMillis
        // runs of puts on increasing keys (one statement over arrays on PostgreSQL)
        yield* store.mutateAll([
          Mutation.put("e6/a", 0, 1, { ttl: "1 second" }),
          Mutation.put("e6/b", 0, 2, { ttl: "1 second" }),
          Mutation.put("e6/c", 0, 3),
          Mutation.patch("e6/d", -1, { d: 1 }, { ttl: "1 second" }),
          Mutation.increment("e6/n", 1, { ttl: "1 second" }),
        ])
        const written = yield* store.getBatch(["e6/a", "e6/b", "e6/c", "e6/d", "e6/n"])
        assert.deepStrictEqual(
          ["e6/a", "e6/b", "e6/c", "e6/d", "e6/n"].map((key) => expiry(written.get(key))),
          [now + 1000, now + 1000, undefined, now + 1000, now + 1000],
        )
        yield* TestClock.adjust("1 second")
        // creating the expired keys again, updating an expired version fails the whole batch
        const stale = yield* Effect.either(
          store.mutateAll([Mutation.put("e6/a", 0, 10), Mutation.put("e6/b", 1, 20)]),
        )
        assert.isTrue(Either.isLeft(stale) && stale.left._tag === "VersionMismatchError")
        assert.strictEqual(yield* store.countPrefix("e6/"), 1, "nothing written")
        assert.deepStrictEqual(
          yield* store.mutateAll([
            Mutation.put("e6/a", 0, 10),
            Mutation.put("e6/b", 0, 20),
            Mutation.put("e6/c", 1, 30, { ttl: "1 minute" }),
            Mutation.patch("e6/d", 0, { e: 1 }),
            Mutation.increment("e6/n", 5),
          ]),
          [1, 1, 1, 1, 1],
        )
        const again = yield* store.getPrefix("e6/")
        assert.deepStrictEqual(
          again.map((r) => [r.key, r.version, r.value, expiry(r) ?? null]),
          [
            ["e6/a", 1, 10, null],
            ["e6/b", 1, 20, null],
            ["e6/c", 2, 30, now + 61_000],
            ["e6/d", 1, { e: 1 }, null],
            ["e6/n", 1, 5, null],
          ],
        )
        // unconditional runs over expired and live keys
        yield* store.mutateAll([
          Mutation.put("e6/x1", -1, 1, { ttl: "1 second" }),
          Mutation.put("e6/x2", -1, 2, { ttl: "1 second" }),
        ])
        yield* TestClock.adjust("1 second")
        yield* store.mutateAll([Mutation.put("e6/x1", -1, 3), Mutation.put("e6/x2", -1, 4)])
        assert.deepStrictEqual(
          (yield* store.getPrefix("e6/x")).map((r) => [r.key, r.version, r.value]),
          [
            ["e6/x1", 1, 3],
            ["e6/x2", 1, 4],
          ],
        )
      }),
    )

    it.effect("a bad ttl is refused and changes nothing", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("e7/k", -1, "kept")
        const before = yield* store.getPrefix("e7/")
        const seq = yield* store.streamSeq()
        const attempts: ReadonlyArray<
          Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>
        > = [
          store.put("e7/k", -1, "x", { ttl: 0 }),
          store.put("e7/k", -1, "x", { ttl: -5 }),
          store.put("e7/k", -1, "x", { ttl: "soon" as Duration.DurationInput }),
          store.put("e7/k", -1, "x", { ttl: Duration.infinity }),
          store.put("e7/k", -1, "x", { ttl: Duration.days(365 * 10_000) }),
          store.patch("e7/k", -1, { a: 1 }, { ttl: 0 }),
          store.increment("e7/n", 1, { ttl: -1 }),
          store.mutateAll([Mutation.put("e7/other", -1, 1), Mutation.put("e7/k", -1, "x", { ttl: 0 })]),
        ]
        for (const attempt of attempts) {
          const result = yield* Effect.either(attempt)
          assert.isTrue(Either.isLeft(result) && result.left._tag === "InvalidArgumentError")
          if (Either.isLeft(result)) assert.match(result.left.message, /ttl/)
        }
        assert.deepStrictEqual(yield* store.getPrefix("e7/"), before)
        assert.strictEqual(yield* store.streamSeq(), seq)
      }),
    )
  })

  layer(backend({ expirySweep: "20 millis" }), { timeout: Duration.minutes(2) })(
    `${name}, sweeping`,
    (it) => {
      it.effect("a layer kept built sweeps by itself: expired records get their delete records", () =>
        Effect.gen(function* () {
          const store = yield* Store
          const first = yield* nextSeq
          const start = yield* Clock.currentTimeMillis
          yield* store.put("s1/a", -1, "a", { ttl: "1 second" })
          yield* store.put("s1/b", -1, "b")
          yield* TestClock.adjust("1 second")
          // the sweep runs every 20 ms of real time, judging expiry by this TestClock
          const deletes = yield* changesOf("s1/", first).pipe(
            Effect.map((changes) => changes.filter(([action]) => action === "delete")),
            Effect.filterOrFail(
              (found) => found.length > 0,
              () => "not swept yet",
            ),
            Effect.retry(Schedule.spaced("20 millis")),
            Effect.withClock(Clock.make()),
            Effect.timeout("30 seconds"),
          )
          assert.deepStrictEqual(deletes, [["delete", "s1/a", 1, start + 1000]])
          assert.deepStrictEqual(
            (yield* store.getPrefix("s1/")).map((r) => r.key),
            ["s1/b"],
          )
        }),
      )
    },
  )
}
