/**
 * The watch conformance suite: the same expectations for every backend. `backend` must give a
 * fresh, empty database; tests share it, each under keys of its own, and run in order (the
 * trimming test comes last). They run on the live clock (no TestClock): the watches poll every
 * 20 ms where no wake-up comes;
 * nothing here depends on how long anything takes.
 */
import { assert, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import type { ConsumerStorage } from "../src/Consumer.js"
import { type KvRecord, Store } from "../src/Store.js"
import * as Watch from "../src/Watch.js"

const options = { pollInterval: "20 millis" } as const

/** The first `n` events of a watch, collected in the background. */
const firstEvents = (selector: Watch.Selector, n: number, watchOptions: Watch.WatchOptions = options) =>
  Stream.runCollect(Stream.take(Watch.stream(selector, watchOptions), n)).pipe(
    Effect.map(Chunk.toReadonlyArray),
    Effect.fork,
  )

const summary = (events: ReadonlyArray<Watch.WatchEvent>) =>
  events.map((event) => [event.action, event.record.key, event.record.version])

export const watchSuite = (name: string, backend: Layer.Layer<Store | ConsumerStorage, unknown>) =>
  layer(backend, { timeout: Duration.minutes(2), excludeTestServices: true })(name, (it) => {
    it.effect(
      "a prefix: the snapshot in key order at one seq, then each later change of a matching key",
      () =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("w1/b", -1, { b: 1 })
          yield* store.put("w1/a", -1, { a: 1 })
          yield* store.put("w1x", -1, "not under w1/")
          const seqAtStart = yield* store.streamSeq()
          // the snapshot first, then the writes
          const events = yield* Queue.unbounded<Watch.WatchEvent>()
          const watching = yield* Effect.fork(
            Stream.runForEach(Watch.stream({ prefix: "w1/" }, options), (event) =>
              Queue.offer(events, event),
            ),
          )
          const snapshot = Chunk.toReadonlyArray(yield* Queue.takeBetween(events, 2, 2))
          yield* store.put("w1/c", -1, { c: 1 })
          yield* store.put("w2/a", -1, "elsewhere")
          yield* store.patch("w1/a", 1, { a: 2 })
          yield* store.delete("w1/b")
          const changes = Chunk.toReadonlyArray(yield* Queue.takeBetween(events, 3, 3))
          yield* Fiber.interrupt(watching)
          const all = [...snapshot, ...changes]
          assert.deepStrictEqual(summary(all), [
            ["snapshot", "w1/a", 1],
            ["snapshot", "w1/b", 1],
            ["create", "w1/c", 1],
            ["update", "w1/a", 2],
            ["delete", "w1/b", 1],
          ])
          assert.strictEqual(all[0]!.seq, seqAtStart)
          assert.strictEqual(all[1]!.seq, seqAtStart)
          assert.deepStrictEqual(all[3]!.record.value, { a: 2 })
          const seqs = all.slice(2).map((event) => event.seq)
          assert.deepStrictEqual(
            seqs,
            [...seqs].sort((a, b) => a - b),
          )
          assert.isTrue(seqs[0]! > seqAtStart)
        }),
    )

    it.effect("a key, a range (code point order) and since: only what matches, from that seq on", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const since = (yield* store.streamSeq()) + 1
        yield* store.put("w3/k", -1, 1)
        yield* store.put("w3/k2", -1, "another key with the same start")
        yield* store.put("w3/r/\u{FFFD}", -1, "below the astral key in code point order")
        yield* store.put("w3/r/\u{1F600}", -1, "astral")
        yield* store.put("w3/s", -1, "past the range")
        yield* store.put("w3/k", 1, 2)
        const key = yield* firstEvents({ key: "w3/k" }, 2, { ...options, since })
        assert.deepStrictEqual(summary(yield* Fiber.join(key)), [
          ["create", "w3/k", 1],
          ["update", "w3/k", 2],
        ])
        const range = yield* firstEvents({ from: "w3/r/\u{FFFD}", to: "w3/s" }, 2)
        assert.deepStrictEqual(summary(yield* Fiber.join(range)), [
          ["snapshot", "w3/r/\u{FFFD}", 1],
          ["snapshot", "w3/r/\u{1F600}", 1],
        ])
        // a key without records has no snapshot: the first event is its first write, whether the
        // watch read before or after it
        const absent = yield* firstEvents({ key: "w3/new" }, 1)
        yield* store.put("w3/new", -1, true)
        const [first] = yield* Fiber.join(absent)
        assert.deepStrictEqual([first!.record.key, first!.record.version], ["w3/new", 1])
        // every key, from a seq
        const all = yield* firstEvents("all", 3, { ...options, since })
        assert.deepStrictEqual(
          (yield* Fiber.join(all)).map((event) => event.record.key),
          ["w3/k", "w3/k2", "w3/r/\u{FFFD}"],
        )
      }),
    )

    it.effect("concurrent writers: the last state the watcher saw of each key is the final state", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = Array.from({ length: 8 }, (_, i) => `w5/${i}`)
        const writer = (id: number) =>
          Effect.forEach(
            Array.from({ length: 60 }, (_, i) => i),
            (i) =>
              Effect.gen(function* () {
                const key = keys[yield* Random.nextIntBetween(0, keys.length)]!
                const roll = yield* Random.nextIntBetween(0, 10)
                if (roll < 2) yield* store.delete(key)
                else if (roll < 5) yield* store.patch(key, -1, { [`w${id}`]: i })
                else yield* store.put(key, -1, { writer: id, i })
              }),
            { discard: true },
          )
        yield* store.put("w5/0", -1, "before the writers")
        const writers = yield* Effect.fork(Effect.all([0, 1, 2, 3].map(writer), { concurrency: "unbounded" }))
        /** A watcher that folds what it sees into the state of each key, checking the order as it goes. */
        const watcher = Effect.gen(function* () {
          const state = new Map<string, KvRecord>()
          let snapshotSeq = -1
          let lastSeq = -1
          yield* Watch.stream({ prefix: "w5/" }, options).pipe(
            Stream.takeUntil((event) => event.record.key === "w5/zz-done"),
            Stream.runForEach((event) =>
              Effect.sync(() => {
                if (event.action === "snapshot") {
                  snapshotSeq = event.seq
                } else {
                  // nothing the snapshot showed comes again, and changes come once, in order
                  assert.isTrue(event.seq > snapshotSeq && event.seq > lastSeq, `seq ${event.seq} came again`)
                  lastSeq = event.seq
                  // each change applies to the state seen so far: none is missing or repeated
                  const known = state.get(event.record.key)
                  if (event.action === "create")
                    assert.isUndefined(known, `${event.record.key} created twice`)
                  else assert.isDefined(known, `${event.record.key} changed before it was seen`)
                  if (event.action === "update") assert.isTrue(event.record.version > known!.version)
                }
                if (event.action === "delete") state.delete(event.record.key)
                else state.set(event.record.key, event.record)
              }),
            ),
          )
          state.delete("w5/zz-done")
          return [...state.values()].map((r) => [r.key, r.version, r.value]).sort()
        })
        // watchers whose snapshots land at different moments while the writers write
        const watchers = yield* Effect.forEach([0, 1, 2, 3, 4, 5], (i) =>
          Effect.fork(Effect.delay(watcher, Duration.millis(10 * i))),
        )
        yield* Fiber.join(writers)
        yield* store.put("w5/zz-done", -1, true)
        const seen = yield* Fiber.join(Fiber.all(watchers))
        const final = (yield* store.getPrefix("w5/", { limit: -1 }))
          .filter((r) => r.key !== "w5/zz-done")
          .map((r) => [r.key, r.version, r.value])
          .sort()
        for (const state of seen) assert.deepStrictEqual(state, final)
      }),
    )

    it.effect(
      "an expiry: absent from the snapshot once expired, and a delete (with expiresAt) when swept",
      () =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("wx/gone", -1, "expired already", { ttl: "1 millis" })
          yield* store.put("wx/short", -1, "expires soon", { ttl: "2 seconds" })
          yield* store.put("wx/kept", -1, "kept")
          yield* Effect.sleep("5 millis")
          // the layer sweeps every second: the watch sees the sweep's delete record of wx/short
          // (and of wx/gone, unless a sweep deleted it before the watch started)
          const events = Chunk.toReadonlyArray(
            yield* Stream.runCollect(
              Watch.stream({ prefix: "wx/" }, options).pipe(
                Stream.filter((event) => event.record.key !== "wx/gone" || event.action !== "delete"),
                Stream.take(3),
              ),
            ),
          )
          assert.deepStrictEqual(summary(events), [
            ["snapshot", "wx/kept", 1],
            ["snapshot", "wx/short", 1],
            ["delete", "wx/short", 1],
          ])
          assert.instanceOf(events[2]!.record.expiresAt, Date)
        }),
    )

    it.effect("bad input is refused before reading", () =>
      Effect.gen(function* () {
        const errors = yield* Effect.all([
          Effect.flip(Stream.runDrain(Watch.stream({ key: "" }))),
          Effect.flip(Stream.runDrain(Watch.stream({ prefix: "a\u0000" }))),
          Effect.flip(Stream.runDrain(Watch.stream("all", { since: -1 }))),
          Effect.flip(Stream.runDrain(Watch.stream("all", { batchSize: 0 }))),
        ])
        assert.deepStrictEqual(
          errors.map((error) => error._tag),
          ["InvalidArgumentError", "InvalidArgumentError", "InvalidArgumentError", "InvalidArgumentError"],
        )
      }),
    )

    it.effect("since below what trimming kept: the typed gap error", () =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.put("w9/a", -1, 1)
        const latest = yield* store.streamSeq()
        yield* store.streamTrim(latest - 1)
        const gap = yield* Effect.flip(
          Stream.runDrain(Watch.stream({ prefix: "w9/" }, { ...options, since: 1 })),
        )
        assert.strictEqual(gap._tag, "ConsumerGapError")
        assert.include(gap.message, `the first available is ${latest}`)
        // from the first kept seq on it reads
        const kept = yield* firstEvents({ prefix: "w9/" }, 1, { ...options, since: latest })
        assert.deepStrictEqual(summary(yield* Fiber.join(kept)), [["create", "w9/a", 1]])
      }),
    )
  })
