/**
 * The consumer conformance suite: the same expectations for every backend.
 *
 * `consumerSuite(name, backend)` registers the tests; `backend` must give a fresh, empty
 * database. Tests share it and run in order: each uses consumers of its own and starts them at
 * the stream's end (`Consumer.commit(name, latest)`), so records of earlier tests do not
 * matter. The first test reads a new stream from its start; the trimming tests come last.
 *
 * Lock expiry and backoff run on the `TestClock` (shared by the tests of a suite: times are
 * relative to the clock's reading; consumer names are never reused, so no lock of one test
 * matters to another).
 */
import { assert, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as Consumer from "../src/Consumer.js"
import { consumerLagMs, consumerLagRecords, forConsumer } from "../src/Metrics.js"
import { Store, type StreamRecord } from "../src/Store.js"
import { attributeText, namesOf, recording, spanNamed } from "./support/spans.js"

/** Suites registered so far (their lag gauges must not share names). */
let suites = 0

const latestSeq = Effect.flatMap(Store, (store) => store.streamSeq())

/** Writes `n` records `<prefix>/<i>` (of `type` when given); their seqs, in order. */
const write = (prefix: string, n: number, type?: string) =>
  Effect.gen(function* () {
    const store = yield* Store
    const before = yield* store.streamSeq()
    for (let i = 1; i <= n; i++) yield* store.put(`${prefix}/${i}`, -1, { i }, type ? { type } : {})
    return Array.from({ length: n }, (_, i) => before + i + 1)
  })

/** A consumer whose position is the stream's current end. */
const startAtEnd = (streamName: string) =>
  Effect.flatMap(latestSeq, (latest) => Consumer.commit(streamName, latest))

const seqsOf = (records: ReadonlyArray<StreamRecord>) => records.map((record) => record.seq)

const positionOf = (streamName: string) =>
  Effect.map(Consumer.status(streamName), (status) => Option.getOrThrow(status).position)

const lockHolderOf = (streamName: string) =>
  Effect.map(Consumer.status(streamName), (status) => Option.getOrThrow(status).lockedBy)

/**
 * Moves the TestClock on by `step` until `done` holds, letting real time pass in between so
 * that database round trips started by woken fibers can finish (at most `rounds` times).
 */
const advanceUntil = <E, R>(done: Effect.Effect<boolean, E, R>, step: Duration.DurationInput, rounds = 400) =>
  Effect.gen(function* () {
    for (let round = 0; round < rounds; round++) {
      if (yield* done) return
      yield* TestClock.adjust(step)
      yield* TestServices.provideLive(Effect.sleep("5 millis"))
    }
    assert.fail(`the condition did not hold after ${rounds} steps of ${Duration.format(step)}`)
  })

/** Waits (in real time, polling) until `done` holds, without moving the TestClock. */
const eventually = <E, R>(done: Effect.Effect<boolean, E, R>, rounds = 1000) =>
  Effect.gen(function* () {
    for (let round = 0; round < rounds; round++) {
      if (yield* done) return
      yield* TestServices.provideLive(Effect.sleep("5 millis"))
    }
    assert.fail(`the condition did not hold within ${rounds} polls`)
  })

/** Runs `stream` in a fiber that puts every record into a queue. */
const collect = <E, R>(stream: Stream.Stream<StreamRecord, E, R>) =>
  Effect.gen(function* () {
    const received = yield* Queue.unbounded<StreamRecord>()
    const fiber = yield* Effect.fork(Stream.runForEach(stream, (record) => Queue.offer(received, record)))
    /** The next `n` records, waiting (in real time) for them. */
    const take = (n: number) =>
      Effect.map(TestServices.provideLive(Queue.takeBetween(received, n, n)), Chunk.toReadonlyArray)
    return { received, fiber, take }
  })

export interface OtherProcess {
  /** The same database through layers of their own (own connections, own wake-ups). */
  readonly layer: Layer.Layer<Store, unknown>
  /** Whether the backend tells this process of the other's writes (else consumers poll). */
  readonly wakesUp: boolean
}

/**
 * `backend`: the services on a new, empty database. `otherProcess`: another client of the same
 * database, standing for another process (absent for a private in-memory database).
 */
export const consumerSuite = (
  name: string,
  backend: Layer.Layer<Store | Consumer.ConsumerStorage, unknown>,
  otherProcess?: OtherProcess,
) =>
  layer(backend, { timeout: Duration.minutes(1) })(name, (it) => {
    // gauges are global: each suite's consumers get names of their own
    const suite = ++suites
    it.effect("a fresh consumer reads the stream from its start", () =>
      Effect.gen(function* () {
        const seqs = yield* write("fresh", 3)
        assert.deepStrictEqual(seqs, [1, 2, 3])
        const consumer = yield* Consumer.make({ streamName: "fresh", consumerName: "a" })
        const batch = yield* consumer.get(10)
        assert.isTrue(batch.held)
        assert.strictEqual(batch.position, 0)
        assert.deepStrictEqual(seqsOf(batch.records), [1, 2, 3])
        assert.deepStrictEqual(
          batch.records.map((r) => [r.action, r.record.key, r.record.value]),
          [
            ["create", "fresh/1", { i: 1 }],
            ["create", "fresh/2", { i: 2 }],
            ["create", "fresh/3", { i: 3 }],
          ],
        )
        assert.strictEqual(batch.through, 3)
        // reading again without a commit returns the same records
        assert.deepStrictEqual(seqsOf((yield* consumer.get(10)).records), [1, 2, 3])
        const status = Option.getOrThrow(yield* consumer.status)
        assert.strictEqual(status.name, "fresh")
        assert.strictEqual(status.position, 0)
        assert.strictEqual(status.lockedBy, "a")
        assert.strictEqual(status.latestSeq, 3)
      }),
    )

    it.effect("lag gauges: records and milliseconds behind, set at each read, 0 when caught up", () =>
      Effect.gen(function* () {
        const streamName = `lag${suite}`
        const consumerName = "l1"
        const lag = Effect.all({
          records: Effect.map(
            Metric.value(forConsumer(consumerLagRecords, streamName, consumerName)),
            (s) => s.value,
          ),
          ms: Effect.map(Metric.value(forConsumer(consumerLagMs, streamName, consumerName)), (s) => s.value),
        })
        yield* startAtEnd(streamName)
        const consumer = yield* Consumer.make({ streamName, consumerName })
        yield* consumer.get(10)
        assert.deepStrictEqual(yield* lag, { records: 0, ms: 0 })
        yield* write(streamName, 3)
        const first = yield* consumer.get(1)
        assert.deepStrictEqual(yield* lag, { records: 3, ms: 0 })
        yield* TestClock.adjust("5 seconds")
        yield* consumer.commit(first)
        const second = yield* consumer.get(1)
        // the oldest uncommitted record was first seen 5 seconds ago
        assert.deepStrictEqual(yield* lag, { records: 2, ms: 5000 })
        yield* TestClock.adjust("2 seconds")
        yield* write(streamName, 1)
        yield* consumer.commit(second)
        const third = yield* consumer.get(10)
        assert.strictEqual(third.records.length, 2)
        assert.deepStrictEqual(yield* lag, { records: 2, ms: 7000 })
        yield* consumer.commit(third)
        yield* consumer.get(10)
        assert.deepStrictEqual(yield* lag, { records: 0, ms: 0 })
        yield* consumer.unlock
      }),
    )

    it.effect("spans: kv.consumer.* per operation and per read of a stream, never values", () =>
      Effect.gen(function* () {
        const streamName = `spans${suite}`
        const secret = "a-value-no-span-may-carry"
        yield* startAtEnd(streamName)
        const store = yield* Store
        yield* store.put(`${streamName}/1`, -1, { secret })
        yield* store.put(`${streamName}/2`, -1, { secret })
        const { spans } = yield* recording(
          Effect.gen(function* () {
            const consumer = yield* Consumer.make({ streamName, consumerName: "s1" })
            const batch = yield* consumer.get(10)
            yield* consumer.commit(batch)
            yield* Consumer.peek(streamName)
            yield* Consumer.status(streamName)
            yield* consumer.unlock
          }),
        )
        assert.deepStrictEqual(namesOf(spans), [
          "kv.consumer.get",
          "kv.consumer.commit",
          "kv.consumer.peek",
          "kv.consumer.status",
          "kv.consumer.unlock",
        ])
        const get = spanNamed(spans, "kv.consumer.get")
        assert.strictEqual(get.attributes.get("kv.stream"), streamName)
        assert.strictEqual(get.attributes.get("kv.consumer"), "s1")
        assert.strictEqual(get.attributes.get("kv.type"), "all")
        assert.strictEqual(get.attributes.get("kv.limit"), 10)
        assert.strictEqual(get.attributes.get("kv.held"), true)
        assert.strictEqual(get.attributes.get("kv.result_count"), 2)
        assert.strictEqual(spanNamed(spans, "kv.consumer.unlock").attributes.get("kv.released"), true)
        assert.notInclude(attributeText(spans), secret)

        // a stream: one span per read, not one for its life
        yield* Consumer.commit(streamName, (yield* latestSeq) - 2)
        const streamed = yield* recording(
          Stream.runCollect(
            Stream.take(Consumer.stream({ streamName, consumerName: "s2", batchSize: 1 }), 2),
          ),
        )
        assert.strictEqual(Chunk.size(streamed.result), 2)
        const reads = namesOf(streamed.spans).filter((name) => name === "kv.consumer.get")
        assert.isAtLeast(reads.length, 2)
        assert.notInclude(attributeText(streamed.spans), secret)
      }),
    )

    it.effect("commit and commitUpTo: the next read starts after the committed seq", () =>
      Effect.gen(function* () {
        yield* startAtEnd("resume")
        const seqs = yield* write("resume", 5)
        const consumer = yield* Consumer.make({ streamName: "resume", consumerName: "a" })
        const first = yield* consumer.get(2)
        assert.deepStrictEqual(seqsOf(first.records), seqs.slice(0, 2))
        assert.strictEqual(first.through, seqs[1])
        yield* consumer.commit(first)
        assert.strictEqual(yield* positionOf("resume"), seqs[1])
        const second = yield* consumer.get(10)
        assert.deepStrictEqual(seqsOf(second.records), seqs.slice(2))
        yield* consumer.commitUpTo(seqs[3]!)
        assert.deepStrictEqual(seqsOf((yield* consumer.get(10)).records), [seqs[4]])
        yield* consumer.commitUpTo(seqs[4]!)
        const empty = yield* consumer.get(10)
        assert.deepStrictEqual(empty.records, [])
        assert.strictEqual(empty.through, seqs[4])
        // committing what moves nothing is a no-op, also for an empty batch
        yield* consumer.commit(empty)
        assert.strictEqual(Option.getOrThrow(yield* consumer.status).version, 3)
      }),
    )

    it.effect("at least once: a restarted instance gets what was not committed, nothing before it", () =>
      Effect.gen(function* () {
        yield* startAtEnd("restart")
        const seqs = yield* write("restart", 4)
        const first = yield* Consumer.make({ streamName: "restart", consumerName: "worker-1" })
        assert.deepStrictEqual(seqsOf((yield* first.get(10)).records), seqs)
        yield* first.commitUpTo(seqs[1]!)
        // the process dies without releasing its lock; it starts again under the same name
        const restarted = yield* Consumer.make({ streamName: "restart", consumerName: "worker-1" })
        assert.deepStrictEqual(seqsOf((yield* restarted.get(10)).records), seqs.slice(2))
        // or another instance, once the lock was released
        assert.isTrue(yield* restarted.unlock)
        const other = yield* Consumer.make({ streamName: "restart", consumerName: "worker-2" })
        assert.deepStrictEqual(seqsOf((yield* other.get(10)).records), seqs.slice(2))
      }),
    )

    it.effect("ofType: only records of the type; the position moves over the others", () =>
      Effect.gen(function* () {
        yield* startAtEnd("typed")
        const [a1] = yield* write("typed-a1", 1, "wanted")
        yield* write("typed-b", 2, "other")
        const [a2] = yield* write("typed-a2", 1, "wanted")
        const [b3] = yield* write("typed-b3", 1, "other")
        const consumer = yield* Consumer.make({ streamName: "typed", consumerName: "a", ofType: "wanted" })
        const batch = yield* consumer.get(10)
        assert.deepStrictEqual(seqsOf(batch.records), [a1, a2])
        assert.isTrue(batch.records.every((r) => r.record.type === "wanted"))
        assert.strictEqual(batch.through, b3) // the stream's end: the other types were read past
        yield* consumer.commit(batch)
        assert.strictEqual(yield* positionOf("typed"), b3)
        // a full batch ends at its last record
        yield* write("typed-a3", 3, "wanted")
        const full = yield* consumer.get(2)
        assert.strictEqual(full.through, full.records[1]!.seq)
      }),
    )

    it.effect("prefix: only records under the key prefix, exactly; the position moves over the others", () =>
      Effect.gen(function* () {
        yield* startAtEnd("prefixed")
        const [a1] = yield* write("pre%/a", 1)
        yield* write("pre_/b", 2)
        const [a2] = yield* write("pre%/c", 1, "typed")
        const [last] = yield* write("prefix", 1)
        const consumer = yield* Consumer.make({ streamName: "prefixed", consumerName: "a", prefix: "pre%/" })
        assert.strictEqual(consumer.prefix, "pre%/")
        // peek filters the same way, without the lock
        assert.deepStrictEqual(seqsOf(yield* Consumer.peek("prefixed", { prefix: "pre%/" })), [a1, a2])
        assert.deepStrictEqual(
          seqsOf(yield* Consumer.peek("prefixed", { prefix: "pre%/", ofType: "typed" })),
          [a2],
        )
        const batch = yield* consumer.get(10)
        assert.deepStrictEqual(seqsOf(batch.records), [a1, a2])
        assert.strictEqual(batch.through, last) // the stream's end: the other keys were read past
        yield* consumer.commit(batch)
        assert.strictEqual(yield* positionOf("prefixed"), last)
        // with the type filter too, and through a Stream
        yield* write("pre%/d", 2, "typed")
        const [wanted] = yield* write("pre%/e", 1, "typed")
        const both = yield* Consumer.make({
          streamName: "prefixed",
          consumerName: "a",
          prefix: "pre%/e",
          ofType: "typed",
        })
        assert.deepStrictEqual(seqsOf((yield* both.get(10)).records), [wanted])
        const streamed = yield* Consumer.stream({
          streamName: "prefixed",
          consumerName: "a",
          prefix: "pre%/d",
          commitMode: "none",
        }).pipe(Stream.take(2), Stream.runCollect)
        assert.deepStrictEqual(
          Chunk.toReadonlyArray(streamed).map((r) => r.record.key),
          ["pre%/d/1", "pre%/d/2"],
        )
        const bad = yield* Effect.flip(
          Consumer.make({ streamName: "prefixed", consumerName: "a", prefix: "\u0000" }),
        )
        assert.strictEqual(bad._tag, "InvalidArgumentError")
      }),
    )

    it.effect("two instances: only the holder reads; after its lock expires the other goes on", () =>
      Effect.gen(function* () {
        yield* startAtEnd("pair")
        const seqs = yield* write("pair", 4)
        const a = yield* Consumer.make({ streamName: "pair", consumerName: "a", lockDuration: "10 seconds" })
        const b = yield* Consumer.make({ streamName: "pair", consumerName: "b", lockDuration: "10 seconds" })
        assert.deepStrictEqual(seqsOf((yield* a.get(10)).records), seqs)
        const standby = yield* b.get(10)
        assert.isFalse(standby.held)
        assert.deepStrictEqual(standby.records, [])
        yield* a.commitUpTo(seqs[1]!)
        yield* TestClock.adjust("9 seconds")
        assert.isFalse((yield* b.get(10)).held)
        assert.strictEqual(yield* lockHolderOf("pair"), "a")
        // a stops extending its lock (it died): b takes over from a's last commit
        yield* TestClock.adjust("2 seconds")
        const takeover = yield* b.get(10)
        assert.isTrue(takeover.held)
        assert.deepStrictEqual(seqsOf(takeover.records), seqs.slice(2))
        assert.strictEqual(yield* lockHolderOf("pair"), "b")
        // a, back again, is now the one left out
        assert.isFalse((yield* a.get(10)).held)
      }),
    )

    it.effect("an instance that lost its lock cannot commit over the new holder", () =>
      Effect.gen(function* () {
        yield* startAtEnd("lost")
        const seqs = yield* write("lost", 3)
        const a = yield* Consumer.make({ streamName: "lost", consumerName: "a", lockDuration: "5 seconds" })
        const b = yield* Consumer.make({ streamName: "lost", consumerName: "b", lockDuration: "5 seconds" })
        const stale = yield* a.get(10)
        yield* TestClock.adjust("6 seconds")
        const current = yield* b.get(1)
        const error = yield* Effect.flip(a.commit(stale))
        assert.strictEqual(error._tag, "ConsumerLockLostError")
        assert.include(error.message, '"b"')
        const upTo = yield* Effect.flip(a.commitUpTo(seqs[2]!))
        assert.strictEqual(upTo._tag, "ConsumerLockLostError")
        assert.strictEqual(yield* positionOf("lost"), seqs[0]! - 1)
        // the holder commits as usual
        yield* b.commit(current)
        assert.strictEqual(yield* positionOf("lost"), seqs[0])
        // an expired lock nobody took is not enough either
        yield* TestClock.adjust("6 seconds")
        const late = yield* Effect.flip(b.commitUpTo(seqs[1]!))
        assert.strictEqual(late._tag, "ConsumerLockLostError")
        assert.strictEqual(yield* positionOf("lost"), seqs[0])
      }),
    )

    it.effect("a read says held only while this instance holds the lock in the database", () =>
      Effect.gen(function* () {
        yield* startAtEnd("unlocked")
        const seqs = yield* write("unlocked", 2)
        const c1 = yield* Consumer.make({
          streamName: "unlocked",
          consumerName: "c1",
          lockDuration: "30 seconds",
        })
        const c2 = yield* Consumer.make({
          streamName: "unlocked",
          consumerName: "c2",
          lockDuration: "30 seconds",
        })
        assert.isTrue((yield* c1.get(10)).held)
        // an operator releases the lock (meant for an instance that died), and c2 takes it
        assert.isTrue(yield* Consumer.unlock("unlocked"))
        const taken = yield* c2.get(10)
        assert.isTrue(taken.held)
        assert.deepStrictEqual(seqsOf(taken.records), seqs)
        // well within c1's own idea of its lease: c1 must not read as the holder
        yield* TestClock.adjust("5 seconds")
        const stale = yield* c1.get(10)
        assert.isFalse(stale.held)
        assert.deepStrictEqual(stale.records, [])
        assert.strictEqual(yield* lockHolderOf("unlocked"), "c2")
        // released with nobody waiting: the next read of c1 takes the lock again
        assert.isTrue(yield* c2.unlock)
        yield* Consumer.unlock("unlocked")
        const again = yield* c1.get(10)
        assert.isTrue(again.held)
        assert.strictEqual(yield* lockHolderOf("unlocked"), "c1")
        // and an operator's delete is noticed the same way
        yield* Consumer.delete("unlocked")
        yield* c2.get(10)
        yield* TestClock.adjust("5 seconds")
        assert.isFalse((yield* c1.get(10)).held)
      }),
    )

    it.effect("an operator's commit moves a running instance: its next commit fails, then it reads on", () =>
      Effect.gen(function* () {
        yield* startAtEnd("moved")
        const seqs = yield* write("moved", 4)
        const a = yield* Consumer.make({ streamName: "moved", consumerName: "a" })
        const batch = yield* a.get(10)
        yield* Consumer.commit("moved", seqs[2]!)
        const error = yield* Effect.flip(a.commit(batch))
        assert.strictEqual(error._tag, "ConsumerMovedError")
        assert.strictEqual(yield* positionOf("moved"), seqs[2])
        const next = yield* a.get(10)
        assert.deepStrictEqual(seqsOf(next.records), [seqs[3]])
        yield* a.commit(next)
        assert.strictEqual(yield* positionOf("moved"), seqs[3])
      }),
    )

    it.effect("administration: peek without the lock, status, commit, unlock, delete; bad input", () =>
      Effect.gen(function* () {
        yield* startAtEnd("admin")
        const seqs = yield* write("admin", 3)
        // peek takes no lock
        assert.deepStrictEqual(seqsOf(yield* Consumer.peek("admin", { limit: 2 })), seqs.slice(0, 2))
        assert.strictEqual(yield* lockHolderOf("admin"), null)
        const holder = yield* Consumer.make({ streamName: "admin", consumerName: "dead" })
        yield* holder.get(1)
        assert.strictEqual(yield* lockHolderOf("admin"), "dead")
        // beyond the end: refused, nothing changed
        const latest = yield* latestSeq
        const beyond = yield* Effect.flip(Consumer.commit("admin", latest + 1))
        assert.strictEqual(beyond._tag, "InvalidArgumentError")
        assert.include(beyond.message, "beyond the end")
        assert.strictEqual(yield* positionOf("admin"), seqs[0]! - 1)
        // the operator frees the lock of an instance that died; another takes it at once
        assert.isTrue(yield* Consumer.unlock("admin"))
        assert.isFalse(yield* Consumer.unlock("admin"))
        const other = yield* Consumer.make({ streamName: "admin", consumerName: "other" })
        assert.isTrue((yield* other.get(1)).held)
        // unknown consumers: no status; peek starts at the beginning; commit creates one
        assert.isTrue(Option.isNone(yield* Consumer.status("admin-unknown")))
        assert.deepStrictEqual(seqsOf(yield* Consumer.peek("admin-unknown", { limit: 1 })), [1])
        yield* Consumer.commit("admin-new", seqs[1]!)
        assert.strictEqual(yield* positionOf("admin-new"), seqs[1])
        assert.deepStrictEqual(seqsOf(yield* Consumer.peek("admin-new")), [seqs[2]])
        assert.isTrue(yield* Consumer.delete("admin-new"))
        assert.isFalse(yield* Consumer.delete("admin-new"))
        assert.isTrue(Option.isNone(yield* Consumer.status("admin-new")))
        // bad names and numbers
        for (const failure of [
          Effect.asVoid(Consumer.make({ streamName: "ok", consumerName: "a", lockDuration: 0 })),
          Consumer.make({ streamName: "", consumerName: "a" }),
          Consumer.make({ streamName: "x", consumerName: "" }),
          Consumer.make({ streamName: "x", consumerName: "a", ofType: "" }),
          Consumer.make({ streamName: "x\u0000", consumerName: "a" }),
          Consumer.commit("admin", -1),
          Consumer.peek("admin", { limit: -2 }),
          Effect.flatMap(Consumer.make({ streamName: "x", consumerName: "a" }), (c) => c.get(0)),
        ] as ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }, Consumer.ConsumerStorage>>) {
          assert.strictEqual((yield* Effect.flip(failure))._tag, "InvalidArgumentError")
        }
      }),
    )

    it.effect("stream, batch mode: a batch is committed when the next one is pulled", () =>
      Effect.gen(function* () {
        yield* startAtEnd("s-batch")
        const seqs = yield* write("s-batch", 5)
        const options = { streamName: "s-batch", consumerName: "a", batchSize: 2 }
        const first = yield* Stream.runCollect(Consumer.stream(options).pipe(Stream.take(3)))
        assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(first)), seqs.slice(0, 3))
        // [1, 2] was committed when [3, 4] was pulled; [3, 4] was not fully processed
        assert.strictEqual(yield* positionOf("s-batch"), seqs[1])
        // the lock was released when the stream ended
        assert.strictEqual(yield* lockHolderOf("s-batch"), null)
        const again = yield* Stream.runCollect(Consumer.stream(options).pipe(Stream.take(3)))
        assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(again)), seqs.slice(2, 5))
      }),
    )

    it.effect("stream, record mode: each record is committed when the next one is pulled", () =>
      Effect.gen(function* () {
        yield* startAtEnd("s-record")
        const seqs = yield* write("s-record", 4)
        const options = {
          streamName: "s-record",
          consumerName: "a",
          batchSize: 10,
          commitMode: "record" as const,
        }
        const first = yield* Stream.runCollect(Consumer.stream(options).pipe(Stream.take(3)))
        assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(first)), seqs.slice(0, 3))
        assert.strictEqual(yield* positionOf("s-record"), seqs[1])
        const again = yield* Stream.runCollect(Consumer.stream(options).pipe(Stream.take(2)))
        assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(again)), seqs.slice(2))
      }),
    )

    it.effect("stream, none mode: reads on in memory, commits nothing", () =>
      Effect.gen(function* () {
        yield* startAtEnd("s-none")
        const seqs = yield* write("s-none", 5)
        const options = { streamName: "s-none", consumerName: "a", batchSize: 2, commitMode: "none" as const }
        const all = yield* Stream.runCollect(Consumer.stream(options).pipe(Stream.take(5)))
        assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(all)), seqs)
        assert.strictEqual(yield* positionOf("s-none"), seqs[0]! - 1)
      }),
    )

    it.effect("stream: an idle consumer is woken by a write; interrupting it releases the lock", () =>
      Effect.gen(function* () {
        yield* startAtEnd("s-wake")
        const { fiber, take } = yield* collect(Consumer.stream({ streamName: "s-wake", consumerName: "a" }))
        yield* eventually(Effect.map(lockHolderOf("s-wake"), (holder) => holder === "a"))
        // the stream is idle: nothing written, the TestClock stands still; only a wake-up can deliver
        const [first] = yield* write("s-wake", 1)
        assert.deepStrictEqual(seqsOf(yield* take(1)), [first])
        const more = yield* write("s-wake-more", 3)
        assert.deepStrictEqual(seqsOf(yield* take(3)), more)
        // the last batch is committed as soon as the handler is done with it and pulls again
        yield* eventually(Effect.map(positionOf("s-wake"), (position) => position === more[2]))
        assert.strictEqual(yield* lockHolderOf("s-wake"), "a")
        yield* Fiber.interrupt(fiber)
        assert.strictEqual(yield* lockHolderOf("s-wake"), null)
      }),
    )

    if (otherProcess?.wakesUp === true) {
      it.effect("another process's write wakes this process's waiters (no poll interval passes)", () =>
        Effect.gen(function* () {
          const storage = yield* Consumer.ConsumerStorage
          const signal = yield* storage.changes
          const woken = yield* Effect.fork(signal.wait("1 hour"))
          const start = yield* Clock.currentTimeMillis
          // The listener may still be starting (PostgreSQL's LISTEN): a missed signal is only a
          // hint lost, so write again until one arrives; the clock moves in small steps (SQLite
          // checks data_version every 20 ms), far from the hour a poll would take.
          const isWoken = Effect.map(Fiber.poll(woken), Option.isSome)
          yield* Effect.gen(function* () {
            for (let round = 0; round < 50 && !(yield* isWoken); round++) {
              yield* write("other-wake", 1)
              for (let step = 0; step < 10 && !(yield* isWoken); step++) {
                yield* TestClock.adjust("20 millis")
                yield* TestServices.provideLive(Effect.sleep("5 millis"))
              }
            }
          }).pipe(Effect.provide(otherProcess.layer))
          assert.isTrue(yield* Fiber.join(woken))
          assert.isBelow((yield* Clock.currentTimeMillis) - start, 60_000)
        }).pipe(Effect.scoped),
      )
    }

    if (otherProcess !== undefined) {
      it.effect("an idle stream finds another process's write (by wake-up or by polling)", () =>
        Effect.gen(function* () {
          yield* startAtEnd("s-other")
          const { fiber, received } = yield* collect(
            Consumer.stream({ streamName: "s-other", consumerName: "a", pollInterval: "2 seconds" }),
          )
          yield* eventually(Effect.map(lockHolderOf("s-other"), (holder) => holder === "a"))
          const seqs = yield* Effect.provide(write("s-other", 2), otherProcess.layer)
          yield* advanceUntil(
            Effect.map(Queue.size(received), (n) => n === 2),
            "100 millis",
          )
          assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(yield* Queue.takeAll(received))), seqs)
          yield* Fiber.interrupt(fiber)
        }),
      )
    }

    it.effect("stream: a standby instance backs off, then takes over when the holder's lock expires", () =>
      Effect.gen(function* () {
        yield* startAtEnd("s-standby")
        const seqs = yield* write("s-standby", 3)
        const holder = yield* Consumer.make({
          streamName: "s-standby",
          consumerName: "holder",
          lockDuration: "20 seconds",
        })
        const start = yield* Clock.currentTimeMillis
        assert.isTrue((yield* holder.get(1)).held) // and then it dies
        const { fiber, received } = yield* collect(
          Consumer.stream({
            streamName: "s-standby",
            consumerName: "standby",
            lockDuration: "20 seconds",
            standbyInterval: "2 seconds",
          }),
        )
        yield* advanceUntil(
          Effect.map(Queue.size(received), (n) => n === 3),
          "500 millis",
        )
        assert.deepStrictEqual(seqsOf(Chunk.toReadonlyArray(yield* Queue.takeAll(received))), seqs)
        assert.strictEqual(yield* lockHolderOf("s-standby"), "standby")
        // taken only once the holder's 20 s lock had expired
        const status = Option.getOrThrow(yield* Consumer.status("s-standby"))
        assert.isAtLeast(status.lockedAt!.getTime(), start + 20_000)
        yield* Fiber.interrupt(fiber)
      }),
    )

    it.effect("stream: the lock is extended while a batch is being processed", () =>
      Effect.gen(function* () {
        yield* startAtEnd("s-refresh")
        yield* write("s-refresh", 1)
        const started = yield* Effect.fork(
          Consumer.run(
            { streamName: "s-refresh", consumerName: "slow", lockDuration: "3 seconds" },
            () => Effect.never,
          ),
        )
        const start = yield* Clock.currentTimeMillis
        const expiresAt = Effect.map(Consumer.status("s-refresh"), (s) =>
          Option.getOrThrow(s).lockExpiresAt?.getTime(),
        )
        yield* eventually(Effect.map(expiresAt, (at) => at === start + 3_000))
        // the handler takes 10 s, more than three lock durations: extended every second, the
        // lock stays with it all along
        for (let second = 1; second <= 10; second++) {
          yield* TestClock.adjust("1 second")
          yield* eventually(Effect.map(expiresAt, (at) => at === start + second * 1_000 + 3_000))
        }
        const other = yield* Consumer.make({ streamName: "s-refresh", consumerName: "other" })
        assert.isFalse((yield* other.get(1)).held)
        yield* Fiber.interrupt(started)
      }),
    )

    it.effect("run: commits only after the handler succeeded (batch and record mode)", () =>
      Effect.gen(function* () {
        yield* startAtEnd("run-batch")
        const seqs = yield* write("run-batch", 4)
        const seen: Array<number> = []
        const failing = (failAt: number) => (record: StreamRecord) =>
          Effect.suspend(() => {
            if (record.seq === failAt) return Effect.fail("handler failed" as const)
            seen.push(record.seq)
            return Effect.void
          })
        const batchRun = yield* Effect.flip(
          Consumer.run({ streamName: "run-batch", consumerName: "a", batchSize: 10 }, failing(seqs[2]!)),
        )
        assert.strictEqual(batchRun, "handler failed")
        assert.deepStrictEqual(seen, seqs.slice(0, 2))
        // the batch failed part way: none of it was committed, and the lock is free again
        assert.strictEqual(yield* positionOf("run-batch"), seqs[0]! - 1)
        assert.strictEqual(yield* lockHolderOf("run-batch"), null)

        yield* Consumer.commit("run-record", seqs[0]! - 1)
        seen.length = 0
        const recordRun = yield* Effect.flip(
          Consumer.run(
            { streamName: "run-record", consumerName: "a", batchSize: 10, commitMode: "record" },
            failing(seqs[2]!),
          ),
        )
        assert.strictEqual(recordRun, "handler failed")
        assert.deepStrictEqual(seen, seqs.slice(0, 2))
        assert.strictEqual(yield* positionOf("run-record"), seqs[1])
      }),
    )

    // --- trimming: last, since it removes the records earlier tests read --------------------

    it.effect("trimming below a consumer's position does not disturb it", () =>
      Effect.gen(function* () {
        yield* startAtEnd("trim-below")
        const seqs = yield* write("trim-below", 3)
        const consumer = yield* Consumer.make({ streamName: "trim-below", consumerName: "a" })
        yield* Effect.flatMap(Store, (store) => store.streamTrim(seqs[0]! - 1))
        assert.deepStrictEqual(seqsOf((yield* consumer.get(10)).records), seqs)
        yield* consumer.commitUpTo(seqs[0]!)
        // trimmed up to and including the position: the next record is still there
        yield* Effect.flatMap(Store, (store) => store.streamTrim(seqs[0]!))
        assert.deepStrictEqual(seqsOf((yield* consumer.get(10)).records), seqs.slice(1))
        assert.deepStrictEqual(seqsOf(yield* Consumer.peek("trim-below")), seqs.slice(1))
      }),
    )

    it.effect(
      "records trimmed before they were read: a typed error names the gap until an operator commits past it",
      () =>
        Effect.gen(function* () {
          yield* startAtEnd("gap")
          const seqs = yield* write("gap", 4)
          const consumer = yield* Consumer.make({ streamName: "gap", consumerName: "a" })
          yield* Effect.flatMap(Store, (store) => store.streamTrim(seqs[1]!))
          const position = seqs[0]! - 1
          const expected = {
            _tag: "ConsumerGapError" as const,
            streamName: "gap",
            position,
            firstAvailable: seqs[2]!,
          }
          const error = yield* Effect.flip(consumer.get(10))
          assert.deepInclude(error, expected)
          assert.include(error.message, `kv consumer commit gap ${seqs[1]}`)
          // it stays that way: for peek and the stream too, and the position does not move
          assert.deepInclude(yield* Effect.flip(consumer.get(10)), expected)
          assert.deepInclude(yield* Effect.flip(Consumer.peek("gap")), expected)
          const streamed = yield* Effect.flip(
            Stream.runDrain(Consumer.stream({ streamName: "gap", consumerName: "a" })),
          )
          assert.deepInclude(streamed, expected)
          assert.strictEqual(yield* positionOf("gap"), position)
          // so does a type filter: the trimmed records might have been of its type
          const typed = Consumer.make({ streamName: "gap", consumerName: "b", ofType: "never-written" })
          yield* consumer.unlock
          assert.strictEqual(
            (yield* Effect.flip(Effect.flatMap(typed, (c) => c.get(10))))._tag,
            "ConsumerGapError",
          )
          yield* Consumer.unlock("gap")
          // the operator skips the gap
          yield* Consumer.commit("gap", seqs[1]!)
          assert.deepStrictEqual(seqsOf((yield* consumer.get(10)).records), seqs.slice(2))
        }),
    )

    it.effect("a stream trimmed to nothing: the gap is named up to the next seq to be written", () =>
      Effect.gen(function* () {
        yield* startAtEnd("empty-late")
        const latest = yield* latestSeq
        yield* Effect.flatMap(Store, (store) => store.streamTrim(latest))
        // a consumer at the end: nothing missing
        const atEnd = yield* Consumer.make({ streamName: "empty-late", consumerName: "a" })
        assert.deepStrictEqual((yield* atEnd.get(10)).records, [])
        // a new consumer starts at 0: everything up to the latest seq is gone
        const fresh = yield* Consumer.make({ streamName: "empty-new", consumerName: "a" })
        const error = yield* Effect.flip(fresh.get(10))
        assert.deepInclude(error, { _tag: "ConsumerGapError", position: 0, firstAvailable: latest + 1 })
        yield* Consumer.commit("empty-new", latest)
        assert.deepStrictEqual((yield* fresh.get(10)).records, [])
        const [next] = yield* write("empty", 1)
        assert.strictEqual(next, latest + 1) // seqs are never reused
        assert.deepStrictEqual(seqsOf((yield* fresh.get(10)).records), [next])
        assert.deepStrictEqual(seqsOf((yield* atEnd.get(10)).records), [next])
      }),
    )
  })
