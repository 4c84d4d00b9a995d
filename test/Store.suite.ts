/**
 * The Store conformance suite: the same expectations for every backend.
 *
 * `storeSuite(name, backend)` registers the tests; `backend` must give a fresh, empty
 * database (and the `SqlClient` on it). Tests in one suite share it and run in order, so each works on its own keys
 * (or measures differences) and the suite ends by deleting everything.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { maxDepth } from "../src/Arguments.js"
import { type KvRecord, Mutation, Store, type StreamRecord, VersionMismatchError } from "../src/Store.js"
import { typed } from "../src/TypedStore.js"
import { attributeText, namesOf, recording, spanNamed } from "./support/spans.js"

const value = (record: Option.Option<KvRecord>) => Option.getOrThrow(record).value
const keysOf = (records: ReadonlyArray<KvRecord>) => records.map((r) => r.key)

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

/** An operation expected to fail, for lists of them. */
type Attempt = Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>

class User extends Schema.Class<User>("User")({ name: Schema.String, age: Schema.Number }) {}

/**
 * `backend` provides the store and the `SqlClient` under it (a few tests reach past the store,
 * e.g. to plant a value no write through the store could make).
 */
export const storeSuite = (name: string, backend: Layer.Layer<Store | SqlClient.SqlClient, unknown>) =>
  layer(backend, { timeout: Duration.minutes(1) })(name, (it) => {
    it.effect("spans: every operation in a kv.store.* span with its keys and counts, never values", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const secret = "a-value-no-span-may-carry"
        const { spans } = yield* recording(
          Effect.gen(function* () {
            yield* store.put("spans/a", -1, { secret }, { type: "Secret" })
            yield* store.patch("spans/a", 1, { more: secret })
            yield* store.get("spans/a")
            yield* store.getBatch(["spans/a", "spans/b"])
            yield* store.getPrefix("spans/", { limit: 10 })
            yield* store.mutateAll([
              Mutation.put("spans/b", -1, secret),
              Mutation.deletePrefix("spans/none/"),
            ])
            yield* store.delete("spans/b", "spans/c")
            yield* store.lockAcquire("spans-lock", "me", "10 seconds")
            yield* store.get("").pipe(Effect.flip)
          }),
        )
        assert.deepStrictEqual(namesOf(spans), [
          "kv.store.put",
          "kv.store.patch",
          "kv.store.get",
          "kv.store.getBatch",
          "kv.store.getPrefix",
          "kv.store.mutateAll",
          "kv.store.delete",
          "kv.store.lockAcquire",
          "kv.store.get",
        ])
        const put = spanNamed(spans, "kv.store.put")
        assert.strictEqual(put.attributes.get("kv.key"), "spans/a")
        assert.strictEqual(put.attributes.get("kv.type"), "Secret")
        assert.strictEqual(put.attributes.get("kv.version"), -1)
        assert.deepStrictEqual(spanNamed(spans, "kv.store.getBatch").attributes.get("kv.keys"), [
          "spans/a",
          "spans/b",
        ])
        assert.strictEqual(spanNamed(spans, "kv.store.getBatch").attributes.get("kv.result_count"), 1)
        assert.strictEqual(spanNamed(spans, "kv.store.getPrefix").attributes.get("kv.prefix"), "spans/")
        assert.strictEqual(spanNamed(spans, "kv.store.getPrefix").attributes.get("kv.limit"), 10)
        assert.strictEqual(spanNamed(spans, "kv.store.getPrefix").attributes.get("kv.result_count"), 1)
        const mutate = spanNamed(spans, "kv.store.mutateAll")
        assert.strictEqual(mutate.attributes.get("kv.mutation_count"), 2)
        assert.deepStrictEqual(mutate.attributes.get("kv.prefixes"), ["spans/none/"])
        assert.strictEqual(spanNamed(spans, "kv.store.delete").attributes.get("kv.result_count"), 1)
        assert.strictEqual(spanNamed(spans, "kv.store.lockAcquire").attributes.get("kv.lock"), "spans-lock")
        assert.strictEqual(spanNamed(spans, "kv.store.lockAcquire").attributes.get("kv.acquired"), true)
        assert.notInclude(attributeText(spans), secret)
        yield* store.deletePrefix("spans/")
        yield* store.lockRelease("spans-lock", "me")
      }),
    )

    it.effect("init is idempotent and keeps data", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("init/a", -1, { a: 1 })
        yield* store.init()
        yield* store.init()
        assert.deepStrictEqual(value(yield* store.get("init/a")), { a: 1 })
      }),
    )

    it.effect("get of a missing key is None", () =>
      Effect.gen(function* () {
        const store = yield* Store
        assert.isTrue(Option.isNone(yield* store.get("missing/nothing-here")))
      }),
    )

    it.effect("put -1 writes unconditionally; versions count from 1", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const first = yield* store.put("put/a", -1, { n: 1 })
        assert.strictEqual(first.version, 1)
        assert.strictEqual(first.key, "put/a")
        const second = yield* store.put("put/a", -1, { n: 2 })
        assert.strictEqual(second.version, 2)
        const got = Option.getOrThrow(yield* store.get("put/a"))
        assert.strictEqual(got.version, 2)
        assert.deepStrictEqual(got.value, { n: 2 })
      }),
    )

    it.effect("put 0 inserts only when absent", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const created = yield* store.put("put0/a", 0, "first")
        assert.strictEqual(created.version, 1)
        const error = yield* store.put("put0/a", 0, "second").pipe(Effect.flip)
        assert.strictEqual(error._tag, "VersionMismatchError")
        assert.deepStrictEqual(value(yield* store.get("put0/a")), "first")
      }),
    )

    it.effect("put n replaces version n only; a stale version changes nothing", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("putn/a", -1, { a: 1 })
        const updated = yield* store.put("putn/a", 1, { a: 2 })
        assert.strictEqual(updated.version, 2)
        const seqBefore = yield* store.streamSeq()
        const error = yield* store.put("putn/a", 1, { a: 3 }).pipe(Effect.flip)
        assert.strictEqual(error._tag, "VersionMismatchError")
        if (error._tag === "VersionMismatchError") {
          assert.strictEqual(error.key, "putn/a")
          assert.strictEqual(error.expected, 1)
          assert.include(error.message, "putn/a")
        }
        const got = Option.getOrThrow(yield* store.get("putn/a"))
        assert.strictEqual(got.version, 2)
        assert.deepStrictEqual(got.value, { a: 2 })
        assert.strictEqual(yield* store.streamSeq(), seqBefore)
        const onMissing = yield* store.put("putn/missing", 3, 1).pipe(Effect.flip)
        assert.strictEqual(onMissing._tag, "VersionMismatchError")
        assert.isTrue(Option.isNone(yield* store.get("putn/missing")))
      }),
    )

    it.effect("created is set once and kept by later writes", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* TestClock.adjust("1 hour")
        const first = yield* store.put("created/a", -1, 1)
        yield* TestClock.adjust("1 hour")
        yield* store.put("created/a", -1, 2)
        yield* store.patch("created/b", -1, { a: 1 })
        yield* TestClock.adjust("1 hour")
        yield* store.patch("created/b", -1, { b: 1 })
        const a = Option.getOrThrow(yield* store.get("created/a"))
        assert.strictEqual(a.created.getTime(), first.created.getTime())
        assert.strictEqual(a.created.getTime(), Duration.toMillis("1 hour"))
        const b = Option.getOrThrow(yield* store.get("created/b"))
        assert.strictEqual(b.created.getTime(), Duration.toMillis("2 hours"))
      }),
    )

    it.effect("the record type is derived from the value unless given", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const cases: ReadonlyArray<readonly [unknown, string]> = [
          [{ a: 1 }, "object"],
          [[1, 2], "array"],
          ["text", "string"],
          [42.5, "number"],
          [false, "boolean"],
          [null, "null"],
          [new Point(1, 2), "Point"],
        ]
        for (const [i, [input, type]] of cases.entries()) {
          const record = yield* store.put(`type/${i}`, -1, input)
          assert.strictEqual(record.type, type)
          assert.strictEqual(Option.getOrThrow(yield* store.get(`type/${i}`)).type, type)
        }
        assert.deepStrictEqual(value(yield* store.get("type/6")), { x: 1, y: 2 })
        const explicit = yield* store.put("type/explicit", -1, { a: 1 }, { type: "Thing" })
        assert.strictEqual(explicit.type, "Thing")
      }),
    )

    it.effect("patch is an RFC 7396 merge patch", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("patch/a", -1, {
          keep: 1,
          drop: "x",
          nested: { a: 1, b: { c: 2, d: 3 } },
          list: [1, 2, 3],
          nil: null,
        })
        const patched = yield* store.patch("patch/a", -1, {
          drop: null,
          nested: { b: { c: null, e: 4 }, f: { g: null, h: 5 } },
          list: [9],
          added: "new",
        })
        assert.strictEqual(patched.version, 2)
        const expected = {
          keep: 1,
          nested: { a: 1, b: { d: 3, e: 4 }, f: { h: 5 } },
          list: [9],
          nil: null,
          added: "new",
        }
        assert.deepStrictEqual(patched.value, expected)
        const stored = value(yield* store.get("patch/a"))
        assert.deepStrictEqual(stored, expected)
        // member order: existing members in place, new ones appended, on every backend
        assert.strictEqual(JSON.stringify(stored), JSON.stringify(expected))
      }),
    )

    it.effect("patch creates a missing key and follows the version rules", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const created = yield* store.patch("patch/new", -1, { a: 1, gone: null })
        assert.strictEqual(created.version, 1)
        assert.strictEqual(created.type, "object")
        assert.deepStrictEqual(created.value, { a: 1 })
        const viaZero = yield* store.patch("patch/zero", 0, { z: 1 })
        assert.strictEqual(viaZero.version, 1)
        const exists = yield* store.patch("patch/zero", 0, { z: 2 }).pipe(Effect.flip)
        assert.strictEqual(exists._tag, "VersionMismatchError")
        const stale = yield* store.patch("patch/new", 5, { a: 2 }).pipe(Effect.flip)
        assert.strictEqual(stale._tag, "VersionMismatchError")
        assert.deepStrictEqual(value(yield* store.get("patch/new")), { a: 1 })
        const ok = yield* store.patch("patch/new", 1, { b: 2 })
        assert.strictEqual(ok.version, 2)
        assert.deepStrictEqual(ok.value, { a: 1, b: 2 })
      }),
    )

    it.effect("patch keeps the record type unless one is given; replaces non-objects", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("patch/typed", -1, { a: 1 }, { type: "Thing" })
        assert.strictEqual((yield* store.patch("patch/typed", -1, { b: 1 })).type, "Thing")
        assert.strictEqual((yield* store.patch("patch/typed", -1, { c: 1 }, { type: "Other" })).type, "Other")
        yield* store.put("patch/scalar", -1, "text")
        assert.deepStrictEqual((yield* store.patch("patch/scalar", -1, { a: { b: null, c: 1 } })).value, {
          a: { c: 1 },
        })
      }),
    )

    it.effect("patch with a non-object is rejected and writes nothing", () =>
      Effect.gen(function* () {
        const store = yield* Store
        for (const bad of [[1], "x", 3, null]) {
          const error = yield* store.patch("patch/bad", -1, bad).pipe(Effect.flip)
          assert.strictEqual(error._tag, "InvalidArgumentError")
        }
        assert.isTrue(Option.isNone(yield* store.get("patch/bad")))
      }),
    )

    it.effect("getBatch returns present keys for any number of keys", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = Array.from({ length: 1000 }, (_, i) => `batch/${String(i).padStart(4, "0")}`)
        yield* store.mutateAll(keys.map((key, i) => Mutation.put(key, -1, i)))
        const wanted = [...keys, "batch/missing-1", "batch/missing-2"]
        const found = yield* store.getBatch(wanted)
        assert.strictEqual(found.size, 1000)
        assert.strictEqual(found.get("batch/0999")?.value, 999)
        assert.isFalse(found.has("batch/missing-1"))
        assert.strictEqual((yield* store.getBatch([])).size, 0)
      }),
    )

    it.effect("getPrefix has exact prefix semantics: %, _ and \\ are ordinary", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = [
          "px/a_",
          "px/a_b",
          "px/ab",
          "px/a%",
          "px/a%c",
          "px/axc",
          "px/a\\",
          "px/a\\d",
          "px/aXd",
          "px/b",
        ]
        yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, key)))
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("px/a_")), ["px/a_", "px/a_b"])
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("px/a%")), ["px/a%", "px/a%c"])
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("px/a\\")), ["px/a\\", "px/a\\d"])
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("px/nothing")), [])
        assert.strictEqual((yield* store.getPrefix("px/")).length, keys.length)
        assert.strictEqual(yield* store.countPrefix("px/a_"), 2)
        assert.strictEqual(yield* store.countPrefix("px/a"), 9)
      }),
    )

    it.effect("getPrefix orders by key (byte order) and pages with offset/limit", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = ["pg/B", "pg/a", "pg/é", "pg/Z", "pg/b", "pg/😀", "pg/\uffff"]
        yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, 1)))
        const sorted = ["pg/B", "pg/Z", "pg/a", "pg/b", "pg/é", "pg/\uffff", "pg/😀"]
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("pg/")), sorted)
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("pg/", { offset: 1, limit: 2 })), [
          "pg/Z",
          "pg/a",
        ])
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("pg/", { offset: 5 })), ["pg/\uffff", "pg/😀"])
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("pg/", { limit: -1 })), sorted)
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("pg/", { limit: 0 })), [])
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("pg/\uffff")), ["pg/\uffff"])
      }),
    )

    it.effect("getRange is half-open and pages", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.mutateAll(["rg/a", "rg/b", "rg/c", "rg/d"].map((key) => Mutation.put(key, -1, key)))
        assert.deepStrictEqual(keysOf(yield* store.getRange("rg/a", "rg/c")), ["rg/a", "rg/b"])
        assert.deepStrictEqual(keysOf(yield* store.getRange("rg/b", "rg/z")), ["rg/b", "rg/c", "rg/d"])
        assert.deepStrictEqual(keysOf(yield* store.getRange("rg/a", "rg/z", { offset: 1, limit: 2 })), [
          "rg/b",
          "rg/c",
        ])
        assert.deepStrictEqual(keysOf(yield* store.getRange("rg/c", "rg/a")), [])
        assert.strictEqual(yield* store.countRange("rg/a", "rg/d"), 3)
      }),
    )

    it.effect("getType filters by record type; all means every record", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("gt/1", -1, { a: 1 }, { type: "Widget" })
        yield* store.put("gt/2", -1, { a: 2 }, { type: "Widget" })
        yield* store.put("gt/3", -1, { a: 3 }, { type: "Gadget" })
        assert.deepStrictEqual(keysOf(yield* store.getType("Widget")), ["gt/1", "gt/2"])
        assert.deepStrictEqual(keysOf(yield* store.getType("Widget", { offset: 1 })), ["gt/2"])
        const all = yield* store.getType("all")
        assert.strictEqual(all.length, yield* store.count())
      }),
    )

    it.effect("list returns every record ordered by key, with offset/limit", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const all = yield* store.list()
        assert.strictEqual(all.length, yield* store.count())
        const keys = keysOf(all)
        assert.deepStrictEqual(
          keys,
          [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
        )
        assert.deepStrictEqual(keysOf(yield* store.list({ offset: 2, limit: 3 })), keys.slice(2, 5))
      }),
    )

    it.effect("delete returns the number deleted; missing keys are fine", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.mutateAll(["del/a", "del/b", "del/c"].map((key) => Mutation.put(key, -1, 1)))
        assert.strictEqual(yield* store.delete("del/a", "del/b", "del/missing"), 2)
        assert.strictEqual(yield* store.delete("del/missing"), 0)
        assert.strictEqual(yield* store.delete(), 0)
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("del/")), ["del/c"])
      }),
    )

    it.effect("deletePrefix is exact, pages, and rejects an empty prefix", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = ["dp/a_1", "dp/a_2", "dp/a_3", "dp/ab", "dp/a%"]
        yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, 1)))
        assert.strictEqual(yield* store.deletePrefix("dp/a_", { offset: 1, limit: 1 }), 1)
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("dp/")), ["dp/a%", "dp/a_1", "dp/a_3", "dp/ab"])
        assert.strictEqual(yield* store.deletePrefix("dp/a_"), 2)
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("dp/")), ["dp/a%", "dp/ab"])
        const before = yield* store.count()
        const error = yield* store.deletePrefix("").pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidArgumentError")
        assert.strictEqual(yield* store.count(), before)
      }),
    )

    it.effect("deleteRange is half-open and pages", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.mutateAll(
          ["dr/a", "dr/b", "dr/c", "dr/d", "dr/e"].map((key) => Mutation.put(key, -1, 1)),
        )
        assert.strictEqual(yield* store.deleteRange("dr/a", "dr/c"), 2)
        assert.strictEqual(yield* store.deleteRange("dr/a", "dr/z", { offset: 1, limit: 1 }), 1)
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("dr/")), ["dr/c", "dr/e"])
      }),
    )

    it.effect("count, countPrefix and countRange", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const before = yield* store.count()
        yield* store.mutateAll(["cnt/a", "cnt/b", "cnt/c"].map((key) => Mutation.put(key, -1, 1)))
        assert.strictEqual(yield* store.count(), before + 3)
        assert.strictEqual(yield* store.countPrefix("cnt/"), 3)
        assert.strictEqual(yield* store.countRange("cnt/b", "cnt/d"), 2)
        assert.strictEqual(yield* store.countPrefix("cnt/none"), 0)
      }),
    )

    it.effect("mutateAll applies every mutation and reports rows affected", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.mutateAll(["ma/x1", "ma/x2", "ma/r1", "ma/r2"].map((key) => Mutation.put(key, -1, 0)))
        const affected = yield* store.mutateAll([
          Mutation.put("ma/a", 0, { a: 1 }),
          Mutation.put("ma/a", 1, { a: 2 }),
          Mutation.patch("ma/a", 2, { b: 3 }),
          Mutation.put("ma/b", -1, "b", { type: "Bee" }),
          Mutation.delete("ma/missing"),
          Mutation.deletePrefix("ma/x"),
          Mutation.deleteRange("ma/r1", "ma/r3"),
        ])
        assert.deepStrictEqual(affected, [1, 1, 1, 1, 0, 2, 2])
        const a = Option.getOrThrow(yield* store.get("ma/a"))
        assert.strictEqual(a.version, 3)
        assert.deepStrictEqual(a.value, { a: 2, b: 3 })
        assert.strictEqual(Option.getOrThrow(yield* store.get("ma/b")).type, "Bee")
        assert.deepStrictEqual(keysOf(yield* store.getPrefix("ma/")), ["ma/a", "ma/b"])
        assert.deepStrictEqual(yield* store.mutateAll([]), [])
      }),
    )

    it.effect("mutateAll rolls back everything when one version check fails", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("rb/a", -1, "a")
        yield* store.put("rb/b", -1, "b")
        const seqBefore = yield* store.streamSeq()
        const countBefore = yield* store.count()
        for (const failing of [
          Mutation.put("rb/b", 7, "stale"),
          Mutation.put("rb/a", 0, "exists"),
          Mutation.patch("rb/b", 3, { x: 1 }),
          Mutation.patch("rb/a", 0, { x: 1 }),
        ]) {
          const error = yield* store
            .mutateAll([
              Mutation.put("rb/a", -1, "changed"),
              Mutation.put("rb/new", 0, "new"),
              failing,
              Mutation.delete("rb/b"),
              Mutation.deletePrefix("rb/"),
            ])
            .pipe(Effect.flip)
          assert.strictEqual(error._tag, "VersionMismatchError")
          if (error._tag === "VersionMismatchError")
            assert.strictEqual(error.key, (failing as { key: string }).key)
        }
        assert.deepStrictEqual(value(yield* store.get("rb/a")), "a")
        assert.deepStrictEqual(value(yield* store.get("rb/b")), "b")
        assert.isTrue(Option.isNone(yield* store.get("rb/new")))
        assert.strictEqual(yield* store.count(), countBefore)
        assert.strictEqual(yield* store.streamSeq(), seqBefore)
        // an invalid mutation is rejected before anything runs
        const invalid = yield* store
          .mutateAll([Mutation.put("rb/a", -1, 1), Mutation.put("", -1, 1)])
          .pipe(Effect.flip)
        assert.strictEqual(invalid._tag, "InvalidArgumentError")
        assert.deepStrictEqual(value(yield* store.get("rb/a")), "a")
      }),
    )

    it.effect("the stream has one record per mutation, in order, with the record", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const start = (yield* store.streamSeq()) + 1
        yield* store.put("st/a", -1, { v: 1 }, { type: "StreamA" })
        yield* store.patch("st/a", 1, { w: 2 })
        yield* store.put("st/b", -1, [1], { type: "StreamB" })
        yield* store.delete("st/a")
        yield* store.put("st/b", 1, [1, 2], { type: "StreamB" })
        const records = yield* store.stream("all", start)
        assert.deepStrictEqual(
          records.map((r) => [r.seq, r.action, r.record.key, r.record.version]),
          [
            [start, "create", "st/a", 1],
            [start + 1, "update", "st/a", 2],
            [start + 2, "create", "st/b", 1],
            [start + 3, "delete", "st/a", 2],
            [start + 4, "update", "st/b", 2],
          ],
        )
        assert.deepStrictEqual(records[1]!.record.value, { v: 1, w: 2 })
        assert.deepStrictEqual(records[3]!.record.value, { v: 1, w: 2 })
        assert.strictEqual(records[3]!.record.type, "StreamA")
        assert.strictEqual(yield* store.streamSeq(), start + 4)
        // type filter, limit, and the seq lower bound
        assert.deepStrictEqual(
          (yield* store.stream("StreamB", start)).map((r) => r.seq),
          [start + 2, start + 4],
        )
        assert.deepStrictEqual(
          (yield* store.stream("all", start + 1, 2)).map((r) => r.seq),
          [start + 1, start + 2],
        )
        assert.deepStrictEqual(yield* store.stream("all", start + 5), [])
      }),
    )

    it.effect("stream by key prefix: exact (%, _ and \\ are ordinary), with the type filter and limit", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const start = (yield* store.streamSeq()) + 1
        const keys = ["sp/a%", "sp/a%b", "sp/ab", "sp/a_", "sp/a\\", "sp/a\\x", "sp/é", "sq/a%", "sp"]
        for (const key of keys) yield* store.put(key, -1, { key }, { type: key.endsWith("b") ? "B" : "A" })
        yield* store.delete("sp/ab")
        const keysOf = (records: ReadonlyArray<StreamRecord>) => records.map((r) => [r.action, r.record.key])
        const under = (prefix: string, type = "all", limit?: number) =>
          Effect.map(store.stream(type, start, limit, { prefix }), keysOf)
        assert.deepStrictEqual(yield* under("sp/a%"), [
          ["create", "sp/a%"],
          ["create", "sp/a%b"],
        ])
        assert.deepStrictEqual(yield* under("sp/a_"), [["create", "sp/a_"]])
        assert.deepStrictEqual(yield* under("sp/a\\"), [
          ["create", "sp/a\\"],
          ["create", "sp/a\\x"],
        ])
        assert.deepStrictEqual(yield* under("sp/é"), [["create", "sp/é"]])
        assert.deepStrictEqual(yield* under("sp/ab"), [
          ["create", "sp/ab"],
          ["delete", "sp/ab"],
        ])
        assert.deepStrictEqual(yield* under("sp/", "B"), [
          ["create", "sp/a%b"],
          ["create", "sp/ab"],
          ["delete", "sp/ab"],
        ])
        assert.deepStrictEqual(yield* under("sp/", "all", 2), [
          ["create", "sp/a%"],
          ["create", "sp/a%b"],
        ])
        // "" is every key, like no prefix
        assert.deepStrictEqual(
          yield* Effect.map(store.stream("all", start, -1, { prefix: "" }), keysOf),
          yield* Effect.map(store.stream("all", start), keysOf),
        )
        const bad = yield* Effect.flip(store.stream("all", start, -1, { prefix: "a\u0000" }))
        assert.strictEqual(bad._tag, "InvalidArgumentError")
      }),
    )

    it.effect("streamTrim deletes records up to seq; seq numbers are never reused", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("trim/a", -1, 1)
        const last = yield* store.streamSeq()
        const trimmed = yield* store.streamTrim(last - 1)
        assert.isTrue(trimmed >= 1)
        assert.deepStrictEqual(
          (yield* store.stream("all", 0)).map((r) => r.seq),
          [last],
        )
        assert.strictEqual(yield* store.streamTrim(last - 1), 0)
        assert.strictEqual(yield* store.streamTrim(last), 1)
        assert.deepStrictEqual(yield* store.stream("all", 0), [])
        assert.strictEqual(yield* store.streamSeq(), last)
        const next = yield* store.put("trim/a", -1, 2)
        assert.strictEqual(next.version, 2)
        assert.deepStrictEqual(
          (yield* store.stream("all", 0)).map((r) => r.seq),
          [last + 1],
        )
      }),
    )

    it.effect("locks: one holder at a time, refresh, release, expiry", () =>
      Effect.gen(function* () {
        const store = yield* Store
        assert.isTrue(Option.isNone(yield* store.lockStatus("lk/a")))
        assert.isTrue(yield* store.lockAcquire("lk/a", "alice", "10 minutes"))
        const status = Option.getOrThrow(yield* store.lockStatus("lk/a"))
        assert.strictEqual(status.lockedBy, "alice")
        assert.strictEqual(
          status.expiresAt.getTime() - status.lockedAt.getTime(),
          Duration.toMillis("10 minutes"),
        )
        assert.isFalse(yield* store.lockAcquire("lk/a", "bob", "10 minutes"))
        // the same holder refreshes: expiry moves, lockedAt stays
        yield* TestClock.adjust("5 minutes")
        assert.isTrue(yield* store.lockAcquire("lk/a", "alice", "10 minutes"))
        const refreshed = Option.getOrThrow(yield* store.lockStatus("lk/a"))
        assert.strictEqual(refreshed.lockedAt.getTime(), status.lockedAt.getTime())
        assert.strictEqual(
          refreshed.expiresAt.getTime(),
          status.expiresAt.getTime() + Duration.toMillis("5 minutes"),
        )
        // releasing someone else's lock is a no-op
        assert.isFalse(yield* store.lockRelease("lk/a", "bob"))
        assert.isFalse(yield* store.lockAcquire("lk/a", "bob", "1 minute"))
        // expired: another holder can take it
        yield* TestClock.adjust("9 minutes")
        assert.isFalse(yield* store.lockAcquire("lk/a", "bob", "1 minute"))
        yield* TestClock.adjust("1 minute")
        assert.isTrue(Option.isNone(yield* store.lockStatus("lk/a")))
        assert.isTrue(yield* store.lockAcquire("lk/a", "bob", "1 minute"))
        assert.strictEqual(Option.getOrThrow(yield* store.lockStatus("lk/a")).lockedBy, "bob")
        assert.isTrue(yield* store.lockRelease("lk/a", "bob"))
        assert.isTrue(Option.isNone(yield* store.lockStatus("lk/a")))
        assert.isTrue(yield* store.lockAcquire("lk/a", "alice", "1 minute"))
      }),
    )

    it.effect("locks live apart from the user key space", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const before = yield* store.count()
        const seq = yield* store.streamSeq()
        yield* store.lockAcquire("lk/space", "alice", "1 minute")
        assert.strictEqual(yield* store.count(), before)
        assert.strictEqual(yield* store.streamSeq(), seq)
      }),
    )

    it.effect("bad arguments are rejected and change nothing", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const count = yield* store.count()
        const seq = yield* store.streamSeq()
        const attempts: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>> = [
          store.put("", -1, 1),
          store.put("bad/nul\u0000", -1, 1),
          store.put("bad/a", -2, 1),
          store.put("bad/a", 1.5, 1),
          store.put("bad/a", -1, undefined),
          store.put("bad/a", -1, 1n),
          store.put("bad/a", -1, 1, { type: "" }),
          store.getPrefix("bad/", { offset: -1 }),
          store.list({ limit: -2 }),
          store.stream("all", -1),
          store.lockAcquire("", "x", "1 minute"),
          store.lockAcquire("bad/lock", "x", 0),
        ]
        for (const attempt of attempts) {
          const result = yield* Effect.either(attempt)
          assert.isTrue(Either.isLeft(result))
          if (Either.isLeft(result)) assert.strictEqual(result.left._tag, "InvalidArgumentError")
        }
        assert.strictEqual(yield* store.count(), count)
        assert.strictEqual(yield* store.streamSeq(), seq)
      }),
    )

    it.effect("20 fibers x 25 version-checked increments end at exactly 500", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("counter", -1, 0)
        const increment = Effect.gen(function* () {
          const current = Option.getOrThrow(yield* store.get("counter"))
          yield* store.put("counter", current.version, (current.value as number) + 1)
        }).pipe(Effect.retry({ while: (error) => error._tag === "VersionMismatchError" }))
        yield* Effect.forEach(
          Array.from({ length: 20 }),
          () => Effect.forEach(Array.from({ length: 25 }), () => increment, { discard: true }),
          { concurrency: "unbounded", discard: true },
        )
        const counter = Option.getOrThrow(yield* store.get("counter"))
        assert.strictEqual(counter.value, 500)
        assert.strictEqual(counter.version, 501)
      }),
    )

    it.effect("concurrent writers: a reader sees the stream grow without gaps, in seq order", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const start = (yield* store.streamSeq()) + 1
        const writers = Effect.forEach(
          Array.from({ length: 8 }, (_, w) => w),
          (w) =>
            Effect.forEach(
              Array.from({ length: 15 }, (_, i) => i),
              (i): Effect.Effect<unknown, unknown> =>
                i % 5 === 4
                  ? store.mutateAll([
                      Mutation.put(`gap/${w}/${i}a`, -1, i),
                      Mutation.put(`gap/${w}/${i}b`, -1, i),
                    ])
                  : store.put(`gap/${w}/${i}`, -1, i),
              { discard: true },
            ),
          { concurrency: "unbounded", discard: true },
        )
        const total = 8 * (12 + 3 * 2)
        // Whatever the reader sees must continue exactly where it left off: a record
        // that shows up later with a lower seq would be missed by a real consumer.
        const reader = Effect.gen(function* () {
          let next = start
          while (next < start + total) {
            const batch = yield* store.stream("all", next)
            for (const [i, record] of batch.entries()) assert.strictEqual(record.seq, next + i)
            next += batch.length
            yield* Effect.yieldNow()
          }
          return next
        })
        const [, seen] = yield* Effect.all([writers, reader], { concurrency: 2 })
        assert.strictEqual(seen, start + total)
        assert.strictEqual(yield* store.streamSeq(), start + total - 1)
      }),
    )

    it.effect("typed access encodes, decodes and fails with a ParseError", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const users = yield* typed(User)
        assert.strictEqual(users.type, "User")
        const saved = yield* users.put("user/1", -1, new User({ name: "Ada", age: 36 }))
        assert.strictEqual(saved.type, "User")
        const loaded = Option.getOrThrow(yield* users.get("user/1"))
        assert.instanceOf(loaded.value, User)
        assert.strictEqual(loaded.value.name, "Ada")
        assert.deepStrictEqual(
          (yield* users.list()).map((r) => r.key),
          ["user/1"],
        )
        yield* store.put("user/broken", -1, { name: 1 }, { type: "User" })
        const error = yield* users.get("user/broken").pipe(Effect.flip)
        assert.strictEqual(error._tag, "ParseError")
        assert.isTrue(Option.isNone(yield* users.get("user/none")))
      }),
    )

    it.effect("typed access: a name is required; reads see only the type; decode errors name the key", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const unnamed = yield* Effect.flip(typed(Schema.Struct({ a: Schema.Number })))
        assert.strictEqual(unnamed._tag, "InvalidArgumentError")
        assert.match(unnamed.message, /needs a type name/)
        const Point = Schema.Struct({ x: Schema.Number, y: Schema.Number })
        const points = yield* typed(Point, "TypedPoint")
        yield* points.put("tp/a", 0, { x: 1, y: 2 })
        yield* points.put("tp/c", 0, { x: 3, y: 4 })
        yield* store.put("tp/b", -1, { x: "not a point of this type" }) // type "object"
        assert.deepStrictEqual(
          (yield* points.getPrefix("tp/")).map((r) => r.key),
          ["tp/a", "tp/c"],
        )
        assert.deepStrictEqual(
          (yield* points.getPrefix("tp/", { offset: 1, limit: 1 })).map((r) => r.key),
          ["tp/c"],
        )
        assert.deepStrictEqual([...(yield* points.getBatch(["tp/a", "tp/b", "tp/none"])).keys()], ["tp/a"])
        assert.isTrue(Option.isNone(yield* points.get("tp/b")))
        // patch merges, decodes the result, and writes only a value that decodes
        const moved = yield* points.patch("tp/a", 1, { x: 10 })
        assert.deepStrictEqual(moved.value, { x: 10, y: 2 })
        assert.strictEqual(moved.version, 2)
        const broken = yield* Effect.flip(points.patch("tp/a", -1, { y: null }))
        assert.strictEqual(broken._tag, "ParseError")
        assert.include(broken.message, "tp/a")
        assert.strictEqual(Option.getOrThrow(yield* store.get("tp/a")).version, 2)
        const stale = yield* Effect.flip(points.patch("tp/a", 1, { x: 0 }))
        assert.strictEqual(stale._tag, "VersionMismatchError")
        // the stream of the type, decoded
        const changes = yield* points.stream(0)
        assert.deepStrictEqual(
          changes.map((c) => [c.action, c.record.key, c.record.value.x]),
          [
            ["create", "tp/a", 1],
            ["create", "tp/c", 3],
            ["update", "tp/a", 10],
          ],
        )
        // one undecodable record of the type fails a list, naming its key, on every read
        yield* store.put("tp/d", -1, { x: "bad" }, { type: "TypedPoint" })
        for (const read of [
          points.list(),
          points.getPrefix("tp/"),
          points.getBatch(["tp/d"]),
          points.stream(0),
        ]) {
          const failure = yield* Effect.flip(
            read as Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>,
          )
          assert.strictEqual(failure._tag, "ParseError")
          assert.include(failure.message, '"tp/d"')
        }
        assert.strictEqual(yield* points.delete("tp/a", "tp/c", "tp/d"), 3)
        yield* store.delete("tp/b")
      }),
    )

    // --- one rule on every backend (each of these once differed between backends) ---------

    it.effect("a batch whose write fails at run time is applied not at all", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        yield* store.put("atomic/bad", -1, { a: 1 })
        // a value no write through the store can make: patching it fails inside the database
        yield* sql`UPDATE kv_records SET value = 'not json' WHERE key = 'atomic/bad'`
        const seq = yield* store.streamSeq()
        const count = yield* store.count()
        const error = yield* store
          .mutateAll([
            Mutation.put("atomic/x", -1, 1),
            Mutation.patch("atomic/bad", -1, { b: 1 }),
            Mutation.put("atomic/y", -1, 2),
          ])
          .pipe(Effect.flip)
        assert.strictEqual(error._tag, "StoreError")
        assert.isTrue(Option.isNone(yield* store.get("atomic/x")))
        assert.isTrue(Option.isNone(yield* store.get("atomic/y")))
        assert.strictEqual(yield* store.streamSeq(), seq)
        assert.strictEqual(yield* store.count(), count)
        // clean up: the planted value and its stream records are not JSON
        yield* sql`DELETE FROM kv_records WHERE key = 'atomic/bad'`
        yield* store.streamTrim(yield* store.streamSeq())
      }),
    )

    it.effect("values and patches with NUL or lone surrogates are refused everywhere", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("chars/ok", -1, { a: 1 })
        const count = yield* store.count()
        const seq = yield* store.streamSeq()
        const bad: ReadonlyArray<unknown> = [
          { é: "nul\u0000" },
          { "a\u0000b": 2 },
          { s: "lone \ud800 surrogate" },
          ["\udc00"],
          "\u0000",
        ]
        for (const value of bad) {
          const attempts: ReadonlyArray<Attempt> = [
            store.put("chars/new", -1, value),
            store.mutateAll([Mutation.put("chars/new", -1, value)]),
            ...(typeof value === "object" && !Array.isArray(value)
              ? [store.patch("chars/ok", -1, value), store.mutateAll([Mutation.patch("chars/ok", 1, value)])]
              : []),
          ]
          for (const attempt of attempts) {
            const error = yield* Effect.flip(attempt)
            assert.strictEqual(error._tag, "InvalidArgumentError", JSON.stringify(value))
            assert.match(error.message, /NUL characters or lone surrogates/)
          }
        }
        assert.strictEqual(yield* store.count(), count)
        assert.strictEqual(yield* store.streamSeq(), seq)
        assert.deepStrictEqual(value(yield* store.get("chars/ok")), { a: 1 })
        // strings with other control characters and astral characters are fine
        const odd = { "\u0001": "tab\there", "😀": "\u001f" }
        assert.deepStrictEqual((yield* store.patch("chars/ok", -1, odd)).value, { a: 1, ...odd })
      }),
    )

    it.effect(`values nested more than ${maxDepth} deep are refused; ${maxDepth} deep merge everywhere`, () =>
      Effect.gen(function* () {
        const store = yield* Store
        const nested = (depth: number): unknown => (depth === 0 ? 1 : { n: nested(depth - 1) })
        const count = yield* store.count()
        for (const attempt of [
          store.put("deep/a", -1, nested(maxDepth + 1)) as Attempt,
          store.patch("deep/a", -1, nested(maxDepth + 1)),
          store.mutateAll([Mutation.put("deep/a", -1, [nested(maxDepth)])]),
        ]) {
          const error = yield* Effect.flip(attempt)
          assert.strictEqual(error._tag, "InvalidArgumentError")
          assert.match(error.message, new RegExp(`more than ${maxDepth} deep`))
        }
        assert.strictEqual(yield* store.count(), count)
        yield* store.put("deep/a", -1, nested(maxDepth))
        const merged = yield* store.patch("deep/a", 1, { n: { m: 2 } })
        assert.deepStrictEqual((merged.value as { n: { m: unknown } }).n.m, 2)
        const patched = yield* store.patch("deep/b", -1, nested(maxDepth) as object)
        assert.deepStrictEqual(patched.value, nested(maxDepth))
      }),
    )

    it.effect("a patch is an object by its JSON form: a Date is refused", () =>
      Effect.gen(function* () {
        const store = yield* Store
        for (const attempt of [
          store.patch("date/a", -1, new Date(0)) as Attempt,
          store.mutateAll([Mutation.patch("date/a", -1, new Date(0))]),
        ]) {
          const error = yield* Effect.flip(attempt)
          assert.strictEqual(error._tag, "InvalidArgumentError")
          assert.match(error.message, /a patch must be a JSON object/)
        }
        assert.isTrue(Option.isNone(yield* store.get("date/a")))
        // an object with toJSON is patched with its JSON form
        const withToJson = { toJSON: () => ({ a: 1 }) }
        assert.deepStrictEqual((yield* store.patch("date/b", -1, withToJson)).value, { a: 1 })
      }),
    )

    it.effect("keys, types and names must be well-formed and at most 1024 bytes", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const count = yield* store.count()
        const longest = `${"€".repeat(341)}a` // 1,024 bytes of UTF-8
        const tooLong = `${longest}b`
        for (const attempt of [
          store.put("\ud800", -1, 1) as Attempt,
          store.put("k/\udc00x", -1, 1),
          store.put(tooLong, -1, 1),
          store.put("k/type", -1, 1, { type: tooLong }),
          store.put("k/type", -1, 1, { type: "\ud800" }),
          store.patch(tooLong, -1, {}),
          store.mutateAll([Mutation.put(tooLong, -1, 1)]),
          store.lockAcquire(tooLong, "me", "1 minute"),
          store.lockAcquire("lock", "\ud800", "1 minute"),
          store.get("\ud800"),
        ]) {
          const error = yield* Effect.flip(attempt)
          assert.strictEqual(error._tag, "InvalidArgumentError")
        }
        assert.strictEqual(yield* store.count(), count)
        // the longest key with the longest type, and the longest lock name, work everywhere
        const record = yield* store.put(longest, -1, { a: 1 }, { type: longest })
        assert.strictEqual(record.key, longest)
        assert.strictEqual(Option.getOrThrow(yield* store.get(longest)).type, longest)
        assert.deepStrictEqual(keysOf(yield* store.getType(longest)), [longest])
        assert.isTrue(yield* store.lockAcquire(longest, longest, "1 minute"))
        assert.strictEqual(yield* store.delete(longest), 1)
        // the key "\uFFFD" is its own key, not where a lone surrogate ends up
        yield* store.put("\uFFFD", -1, "replacement")
        assert.strictEqual(value(yield* store.get("\uFFFD")), "replacement")
        assert.strictEqual(yield* store.delete("\uFFFD"), 1)
      }),
    )

    it.effect("the records of one multi-row change are in key order in the stream", () =>
      Effect.gen(function* () {
        const store = yield* Store
        // written in reverse key order, so that the order rows are stored in is not key order
        const keys = ["order/e", "order/d", "order/c", "order/b", "order/a"]
        const rewrite = Effect.forEach(keys, (key) => store.put(key, -1, key), { discard: true })
        for (const [change, expected] of [
          [store.delete("order/d", "order/b", "order/e", "order/a", "order/c"), ["a", "b", "c", "d", "e"]],
          [store.deletePrefix("order/"), ["a", "b", "c", "d", "e"]],
          [store.deleteRange("order/a", "order/z"), ["a", "b", "c", "d", "e"]],
          [store.deletePrefix("order/", { offset: 1, limit: 3 }), ["b", "c", "d"]],
          // a batch: statements in batch order, each statement's records in key order
          [
            store.mutateAll([
              Mutation.deleteRange("order/c", "order/z"),
              Mutation.deletePrefix("order/", { limit: 2 }),
            ]),
            ["c", "d", "e", "a", "b"],
          ],
        ] as const) {
          yield* store.deletePrefix("order/")
          yield* rewrite
          const before = yield* store.streamSeq()
          yield* change
          const records = (yield* store.stream("all", before + 1)).map((r) => `${r.action} ${r.record.key}`)
          assert.deepStrictEqual(
            records,
            expected.map((k) => `delete order/${k}`),
          )
        }
        yield* store.deletePrefix("order/")
      }),
    )

    it.effect("concurrent gets and getBatches of many fibers each get their own records", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const users = yield* typed(User)
        const keyOf = (i: number) => `co/${String(i).padStart(3, "0")}`
        // even keys exist, odd ones do not
        const present = Array.from({ length: 60 }, (_, i) => keyOf(i * 2))
        yield* store.mutateAll(present.map((key, i) => Mutation.put(key, -1, { key, i })))
        yield* Effect.forEach([0, 1, 2], (i) =>
          users.put(`co/user/${i}`, -1, new User({ name: `u${i}`, age: i })),
        )
        const expectedValue = (key: string) => {
          const i = present.indexOf(key)
          return i < 0 ? undefined : { key, i }
        }
        const reads = Array.from({ length: 300 }, (_, n) => {
          switch (n % 4) {
            case 0:
            case 1: {
              const key = keyOf(n % 120)
              return Effect.map(store.get(key), (found) => {
                assert.deepStrictEqual(
                  Option.getOrUndefined(Option.map(found, (r) => [r.key, r.value])),
                  expectedValue(key) === undefined ? undefined : [key, expectedValue(key)],
                  `get ${key}`,
                )
              })
            }
            case 2: {
              const keys = [keyOf(n % 120), keyOf((n * 7) % 120), keyOf((n * 13 + 1) % 120), "co/none"]
              return Effect.map(store.getBatch(keys), (found) => {
                const wanted = [...new Set(keys)].filter((key) => expectedValue(key) !== undefined)
                assert.deepStrictEqual([...found.keys()].sort(), wanted.sort(), `getBatch ${keys}`)
                for (const key of wanted) assert.deepStrictEqual(found.get(key)?.value, expectedValue(key))
              })
            }
            default: {
              const i = n % 5
              return Effect.map(users.get(`co/user/${i}`), (found) => {
                if (i < 3) assert.strictEqual(Option.getOrThrow(found).value.name, `u${i}`)
                else assert.isTrue(Option.isNone(found))
              })
            }
          }
        })
        yield* Effect.all(reads, { concurrency: "unbounded", discard: true })
        yield* store.deletePrefix("co/")
      }),
    )

    it.effect("concurrent getPrefix and getRange of many fibers each get their own pages", () =>
      Effect.gen(function* () {
        const store = yield* Store
        // cop/0/00 .. cop/9/09: ten prefixes of ten keys
        const keys = Array.from(
          { length: 100 },
          (_, i) => `cop/${Math.floor(i / 10)}/${String(i % 10).padStart(2, "0")}`,
        )
        yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, key)))
        const reads = Array.from({ length: 120 }, (_, n) => {
          const group = n % 12 // 10 and 11 match nothing
          const offset = n % 3
          const limit = n % 4 === 0 ? undefined : n % 4
          const inGroup = keys.filter((key) => key.startsWith(`cop/${group}/`))
          const bounded = n % 2 === 0 ? inGroup : inGroup.filter((key) => key < `cop/${group}/05`)
          const expected = bounded.slice(offset, limit === undefined ? undefined : offset + limit)
          const page = { offset, ...(limit === undefined ? {} : { limit }) }
          const read =
            n % 2 === 0
              ? store.getPrefix(`cop/${group}/`, page)
              : store.getRange(`cop/${group}/`, `cop/${group}/05`, page)
          return Effect.map(read, (records) => {
            assert.deepStrictEqual(keysOf(records), expected, `read ${n}`)
            for (const record of records) assert.strictEqual(record.value, record.key)
          })
        })
        yield* Effect.all(reads, { concurrency: "unbounded", discard: true })
        // many fibers asking for the same page at once each get all of it
        const same = yield* Effect.all(
          Array.from({ length: 30 }, () => store.getPrefix("cop/3/", { limit: -1 })),
          { concurrency: "unbounded" },
        )
        for (const records of same) assert.deepStrictEqual(keysOf(records), keys.slice(30, 40))
        yield* store.deletePrefix("cop/")
      }),
    )

    it.effect("concurrent reads: a record that cannot be read fails only the reads of its key", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        const keys = Array.from({ length: 20 }, (_, i) => `cobad/${String(i).padStart(2, "0")}`)
        yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, key)))
        yield* sql`UPDATE kv_records SET value = 'not json' WHERE key = 'cobad/07'`
        const read = <A, E>(effect: Effect.Effect<A, E>) =>
          Effect.either(Effect.map(effect, (a): unknown => a))
        const outcomes = yield* Effect.all(
          [
            ...keys.map((key) => read(store.get(key))),
            read(store.getBatch(["cobad/01", "cobad/07"])),
            read(store.getBatch(["cobad/02", "cobad/03"])),
          ],
          { concurrency: "unbounded" },
        )
        outcomes.forEach((outcome, i) => {
          const bad = i === 7 || i === keys.length
          assert.strictEqual(Either.isLeft(outcome), bad, `read ${i}`)
          if (Either.isLeft(outcome)) {
            assert.strictEqual(outcome.left._tag, "StoreError")
            assert.include(outcome.left.message, "could not be read")
          }
        })
        const good = Either.getOrThrow(outcomes[keys.length + 1]!) as ReadonlyMap<string, KvRecord>
        assert.deepStrictEqual([...good.keys()].sort(), ["cobad/02", "cobad/03"])
        assert.deepStrictEqual(
          Option.getOrThrow(Either.getOrThrow(outcomes[3]!) as Option.Option<KvRecord>).value,
          "cobad/03",
        )
        yield* sql`DELETE FROM kv_records WHERE key = 'cobad/07'`
        yield* store.streamTrim(yield* store.streamSeq())
        yield* store.deletePrefix("cobad/")
      }),
    )

    it.effect("a 10,000-mutation batch with a stale version in the middle writes nothing", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = Array.from({ length: 10_000 }, (_, i) => `big/${String(i).padStart(5, "0")}`)
        const created = yield* store.mutateAll(keys.map((key, i) => Mutation.put(key, 0, { i })))
        assert.isTrue(created.length === keys.length && created.every((n) => n === 1))
        const seq = yield* store.streamSeq()
        const count = yield* store.count()
        const cases: ReadonlyArray<readonly [ReadonlyArray<Mutation>, number]> = [
          [keys.map((key, i) => Mutation.put(key, i === 5_000 ? 7 : 1, "new")), 5_000],
          [keys.map((key, i) => Mutation.patch(key, i === 5_000 ? 0 : 1, { x: 1 })), 5_000],
          [keys.map((key, i) => Mutation.put(`${key}/new`, i === 9_999 ? 3 : 0, i)), 9_999],
        ]
        for (const [stale, at] of cases) {
          const error = yield* Effect.flip(store.mutateAll(stale))
          const { key, version } = stale[at] as { key: string; version: number }
          assert.strictEqual(error._tag, "VersionMismatchError")
          assert.strictEqual(error.message, new VersionMismatchError({ key, expected: version }).message)
          if (error._tag === "VersionMismatchError") {
            assert.strictEqual(error.key, key)
            assert.strictEqual(error.expected, version)
          }
          assert.strictEqual(yield* store.streamSeq(), seq)
          assert.strictEqual(yield* store.count(), count)
        }
        const sample = yield* store.getBatch(["big/00000", "big/04999", "big/09999"])
        assert.deepStrictEqual(
          [...sample.values()].map((r) => [r.version, r.value]),
          [
            [1, { i: 0 }],
            [1, { i: 4_999 }],
            [1, { i: 9_999 }],
          ],
        )
        const updated = yield* store.mutateAll(keys.map((key) => Mutation.put(key, 1, "new")))
        assert.isTrue(updated.every((n) => n === 1))
        assert.strictEqual(yield* store.streamSeq(), seq + keys.length)
        const records = yield* store.stream("all", seq + 1)
        assert.deepStrictEqual(
          records.map((r) => r.record.key),
          keys,
        )
        assert.isTrue(records.every((r) => r.action === "update" && r.record.version === 2))
        assert.strictEqual(yield* store.deletePrefix("big/"), keys.length)
      }),
    )

    it.effect("a batch's stream records are in mutation order also for keys past U+FFFF", () =>
      Effect.gen(function* () {
        const store = yield* Store
        // in UTF-16 code units "😀" (U+1F600) sorts before "～" (U+FF5E); in code points after
        const keys = ["cp/a", "cp/😀", "cp/～", "cp/😀😀"]
        for (const version of [0, 1, -1]) {
          const before = yield* store.streamSeq()
          yield* store.mutateAll(keys.map((key) => Mutation.put(key, version, version)))
          const records = yield* store.stream("all", before + 1)
          assert.deepStrictEqual(
            records.map((r) => r.record.key),
            keys,
            `version ${version}`,
          )
        }
        assert.strictEqual(yield* store.deletePrefix("cp/"), keys.length)
      }),
    )

    it.effect("a mixed batch gives the results and stream records of its mutations one at a time", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const mixed = (p: string) => [
          Mutation.put(`${p}/e`, 0, { e: 1 }),
          Mutation.put(`${p}/f`, 0, { f: 1 }, { type: "Eff" }),
          Mutation.put(`${p}/g`, 0, [1]),
          Mutation.put(`${p}/a`, 1, { a: 2 }),
          Mutation.put(`${p}/b`, 1, { b: 2 }),
          Mutation.put(`${p}/c`, 1, "c2", { type: "Sea" }),
          Mutation.patch(`${p}/d`, 1, { p: 1, d: null }),
          Mutation.patch(`${p}/e`, 1, { q: 2 }, { type: "Patched" }),
          Mutation.delete(`${p}/x1`),
          Mutation.put(`${p}/a`, 2, { a: 3 }),
          Mutation.put(`${p}/h`, -1, "h"),
          Mutation.patch(`${p}/i`, 0, { i: 1 }),
          Mutation.patch(`${p}/j`, 0, { j: 1 }, { type: "Jay" }),
          Mutation.delete(`${p}/missing`),
          Mutation.deletePrefix(`${p}/x`),
          Mutation.put(`${p}/b`, 2, "b3"),
          Mutation.put(`${p}/a`, 3, "a4"),
          Mutation.patch(`${p}/k`, -1, { k: 1 }),
          Mutation.patch(`${p}/l`, -1, { l: 1 }),
          Mutation.put(`${p}/c`, -1, "c3"),
          Mutation.put(`${p}/d`, -1, "d3", { type: "Dee" }),
          Mutation.put(`${p}/m`, -1, "m"),
          Mutation.delete(`${p}/e`),
          Mutation.put(`${p}/e`, -1, "e3"),
          Mutation.put(`${p}/f`, -1, "f3"),
          Mutation.put(`${p}/g`, -1, "g3"),
        ]
        const setUp = (p: string) =>
          store.mutateAll(
            ["a", "b", "c", "d", "x1", "x2"].map((k) => Mutation.put(`${p}/${k}`, -1, { [k]: 1, d: 0 })),
          )
        const history = (p: string, from: number) =>
          Effect.map(store.stream("all", from), (records) =>
            records.map((r) => [
              r.action,
              r.record.key.slice(p.length),
              r.record.version,
              r.record.value,
              r.record.type,
            ]),
          )
        const state = (p: string) =>
          Effect.map(store.getPrefix(`${p}/`), (records) =>
            records.map((r) => [r.key.slice(p.length), r.version, r.value, r.type]),
          )
        yield* setUp("mix1")
        const from1 = (yield* store.streamSeq()) + 1
        const together = yield* store.mutateAll(mixed("mix1"))
        const history1 = yield* history("mix1", from1)
        yield* setUp("mix2")
        const from2 = (yield* store.streamSeq()) + 1
        const oneByOne = yield* Effect.forEach(mixed("mix2"), (m) => store.mutateAll([m]))
        const history2 = yield* history("mix2", from2)
        assert.deepStrictEqual(together, oneByOne.flat())
        assert.deepStrictEqual(
          together,
          [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        )
        assert.deepStrictEqual(history1, history2)
        assert.deepStrictEqual(
          history1.map(([action, key]) => `${action} ${key}`),
          ["e", "f", "g"]
            .map((k) => `create /${k}`)
            .concat(["a", "b", "c", "d", "e"].map((k) => `update /${k}`))
            .concat(["delete /x1", "update /a", "create /h", "create /i", "create /j", "delete /x2"])
            .concat([
              "update /b",
              "update /a",
              "create /k",
              "create /l",
              "update /c",
              "update /d",
              "create /m",
            ])
            .concat(["delete /e", "create /e", "update /f", "update /g"]),
        )
        assert.deepStrictEqual(yield* state("mix1"), yield* state("mix2"))
        const patched = history1.find(([action, key]) => action === "update" && key === "/e")!
        assert.deepStrictEqual([patched[3], patched[4]], [{ e: 1, q: 2 }, "Patched"])
        assert.strictEqual((yield* store.get("mix1/d")).pipe(Option.getOrThrow).type, "Dee")
        assert.deepStrictEqual(history1.find(([action, key]) => action === "update" && key === "/d")![3], {
          p: 1,
        })
        assert.strictEqual((yield* store.get("mix1/j")).pipe(Option.getOrThrow).type, "Jay")
        assert.strictEqual((yield* store.get("mix1/i")).pipe(Option.getOrThrow).type, "object")
        yield* store.deletePrefix("mix1/")
        yield* store.deletePrefix("mix2/")
      }),
    )

    it.effect("Mutation.check: passes at the version (0: absent) writing nothing, else fails the batch", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("chk/a", -1, "a")
        yield* store.put("chk/a", -1, "a2")
        assert.deepStrictEqual(
          yield* store.mutateAll([
            Mutation.check("chk/a", 2),
            Mutation.check("chk/none", 0),
            Mutation.put("chk/b", 0, "b"),
          ]),
          [0, 0, 1],
        )
        const seq = yield* store.streamSeq()
        for (const [key, version, expected] of [
          ["chk/a", 1, 'version mismatch on "chk/a": expected version 1'],
          ["chk/a", 0, 'version mismatch on "chk/a": expected the key to be absent'],
          ["chk/none", 3, 'version mismatch on "chk/none": expected version 3'],
        ] as const) {
          const error = yield* Effect.flip(
            store.mutateAll([Mutation.put("chk/c", -1, "c"), Mutation.check(key, version)]),
          )
          assert.instanceOf(error, VersionMismatchError)
          assert.strictEqual(error.message, expected)
          assert.deepStrictEqual([error.key, error.expected], [key, version])
        }
        assert.isTrue(Option.isNone(yield* store.get("chk/c")))
        assert.strictEqual(yield* store.streamSeq(), seq)
        // a check sees the writes before it in the batch (and breaks a run of writes)
        assert.deepStrictEqual(
          yield* store.mutateAll([
            Mutation.put("chk/d", 0, 1),
            Mutation.check("chk/d", 1),
            Mutation.put("chk/e", 0, 1),
            Mutation.check("chk/b", 1),
          ]),
          [1, 0, 1, 0],
        )
        const refused = yield* Effect.flip(store.mutateAll([Mutation.check("chk/a", -1)]))
        assert.strictEqual(refused._tag, "InvalidArgumentError")
        assert.strictEqual(refused.message, "version must be a non-negative integer, got -1")
        yield* store.deletePrefix("chk/")
      }),
    )

    it.effect(
      "increment adds in SQL: a missing key counts from 0; a create, then updates in the stream",
      () =>
        Effect.gen(function* () {
          const store = yield* Store
          const seq = (yield* store.streamSeq()) + 1
          const first = yield* store.increment("inc/a")
          assert.deepStrictEqual(
            [first.key, first.version, first.value, first.type],
            ["inc/a", 1, 1, "number"],
          )
          assert.strictEqual((yield* store.increment("inc/a", 41)).value, 42)
          assert.strictEqual((yield* store.increment("inc/a", -50)).value, -8)
          const fraction = yield* store.increment("inc/a", 0.5)
          assert.deepStrictEqual([fraction.version, fraction.value], [4, -7.5])
          assert.deepStrictEqual(
            (yield* store.stream("all", seq)).map((r) => [r.action, r.record.version, r.record.value]),
            [
              ["create", 1, 1],
              ["update", 2, 42],
              ["update", 3, -8],
              ["update", 4, -7.5],
            ],
          )
          assert.strictEqual((yield* store.increment("inc/new", 7)).value, 7)
          // an existing number keeps its record type
          yield* store.put("inc/typed", -1, 10, { type: "Counter" })
          const typedCounter = yield* store.increment("inc/typed", 2)
          assert.deepStrictEqual(
            [typedCounter.value, typedCounter.type, typedCounter.version],
            [12, "Counter", 2],
          )
          // fractions add as JavaScript's + does, on every backend
          yield* store.put("inc/f", -1, 0.1)
          assert.strictEqual((yield* store.increment("inc/f", 0.2)).value, 0.1 + 0.2)
          yield* store.put("inc/e", -1, 1e3)
          assert.strictEqual((yield* store.increment("inc/e", 1e21)).value, 1e3 + 1e21)
          // big integers stay exact
          yield* store.put("inc/big", -1, 2 ** 52)
          assert.strictEqual((yield* store.increment("inc/big", 2 ** 52)).value, 2 ** 53)
          yield* store.deletePrefix("inc/")
        }),
    )

    it.effect(
      "increment of a value that is not a number fails with InvalidArgumentError and writes nothing",
      () =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("incx/s", -1, "5")
          yield* store.put("incx/o", -1, { n: 1 })
          yield* store.put("incx/z", -1, null)
          const seq = yield* store.streamSeq()
          for (const key of ["incx/s", "incx/o", "incx/z"]) {
            const error = yield* Effect.flip(store.increment(key))
            assert.strictEqual(error._tag, "InvalidArgumentError")
            assert.strictEqual(error.message, `cannot increment "${key}": its value is not a number`)
          }
          for (const by of [Number.NaN, Number.POSITIVE_INFINITY, "1" as unknown as number]) {
            const error = yield* Effect.flip(store.increment("incx/n", by))
            assert.strictEqual(error._tag, "InvalidArgumentError")
            assert.match(error.message, /^the increment must be a finite number, got /)
          }
          assert.strictEqual((yield* store.get("incx/s")).pipe(Option.getOrThrow).value, "5")
          assert.isTrue(Option.isNone(yield* store.get("incx/n")))
          assert.strictEqual(yield* store.streamSeq(), seq)
          yield* store.deletePrefix("incx/")
        }),
    )

    it.effect("Mutation.increment: 1 row; a non-number rolls the whole batch back", () =>
      Effect.gen(function* () {
        const store = yield* Store
        assert.deepStrictEqual(
          yield* store.mutateAll([
            Mutation.increment("minc/a", 2),
            Mutation.increment("minc/a", 3),
            Mutation.put("minc/s", -1, "text"),
          ]),
          [1, 1, 1],
        )
        assert.deepStrictEqual(
          [(yield* store.get("minc/a")).pipe(Option.getOrThrow)].map((r) => [r.value, r.version, r.type]),
          [[5, 2, "number"]],
        )
        const seq = yield* store.streamSeq()
        const error = yield* Effect.flip(
          store.mutateAll([
            Mutation.put("minc/b", -1, 1),
            Mutation.increment("minc/a"),
            Mutation.increment("minc/s"),
          ]),
        )
        assert.strictEqual(error._tag, "InvalidArgumentError")
        assert.strictEqual(error.message, 'cannot increment "minc/s": its value is not a number')
        assert.isTrue(Option.isNone(yield* store.get("minc/b")))
        assert.strictEqual((yield* store.get("minc/a")).pipe(Option.getOrThrow).value, 5)
        assert.strictEqual(yield* store.streamSeq(), seq)
        assert.strictEqual(
          (yield* Effect.flip(store.mutateAll([Mutation.increment("minc/a", Number.NaN)])))._tag,
          "InvalidArgumentError",
        )
        // an increment between runs of puts keeps the stream in mutation order
        yield* store.mutateAll([
          Mutation.put("minc/r1", -1, 1),
          Mutation.put("minc/r2", -1, 1),
          Mutation.increment("minc/r0"),
          Mutation.put("minc/r3", -1, 1),
          Mutation.put("minc/r4", -1, 1),
          Mutation.increment("minc/r2", 10),
        ])
        assert.deepStrictEqual(
          (yield* store.stream("all", seq + 1)).map((r) => [r.action, r.record.key, r.record.value]),
          [
            ["create", "minc/r1", 1],
            ["create", "minc/r2", 1],
            ["create", "minc/r0", 1],
            ["create", "minc/r3", 1],
            ["create", "minc/r4", 1],
            ["update", "minc/r2", 11],
          ],
        )
        yield* store.deletePrefix("minc/")
      }),
    )

    it.effect("concurrent increments of one key lose no update", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          (i): Effect.Effect<unknown, unknown> =>
            i % 2 === 0 ? store.increment("cinc/a") : store.mutateAll([Mutation.increment("cinc/a", 2)]),
          { concurrency: 8 },
        )
        const record = (yield* store.get("cinc/a")).pipe(Option.getOrThrow)
        assert.deepStrictEqual([record.value, record.version], [60, 40])
        yield* store.deletePrefix("cinc/")
      }),
    )

    it.effect("deletePrefix * deletes every key", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const count = yield* store.count()
        assert.isTrue(count > 0)
        assert.strictEqual(yield* store.deletePrefix("*"), count)
        assert.strictEqual(yield* store.count(), 0)
        assert.deepStrictEqual(yield* store.list(), [])
      }),
    )
  })
