/**
 * The read coalescer on its own (the store's suites run it on PostgreSQL and rqlite): who shares
 * a query, who gets which rows, and who gets a failure. `fetch` here is a function over an
 * in-memory table that records each query, so that the sharing itself can be checked.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as ReadCoalescer from "../src/internal/readCoalescer.js"

interface Row {
  readonly key: string
  readonly value: number
}

/** Lets every forked fiber run until it waits (for the gate, or for a query to share). */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

const table = new Map<string, number>(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]))

/** A coalescer whose first query waits for `gate`; queries are recorded, one with `poison` fails. */
const setUp = (maxInFlight: number) =>
  Effect.gen(function* () {
    const gate = yield* Deferred.make<void>()
    const queries: Array<ReadonlyArray<string>> = []
    const read = ReadCoalescer.make<Row, string>({
      fetch: (keys) =>
        Effect.gen(function* () {
          queries.push(keys)
          if (queries.length === 1) yield* Deferred.await(gate)
          if (keys.includes("poison")) return yield* Effect.fail(`query of ${keys.length} keys failed`)
          return keys.flatMap((key) => (table.has(key) ? [{ key, value: table.get(key)! }] : []))
        }),
      keyOf: (row) => row.key,
      maxInFlight,
      maxKeys: 5,
    })
    return { gate, queries, read }
  })

describe("ReadCoalescer", () => {
  it.effect("alone, a read is its own query; reads that wait share one and get their own rows", () =>
    Effect.gen(function* () {
      const { gate, queries, read } = yield* setUp(1)
      const first = yield* Effect.fork(read(["k1"]))
      yield* settle
      const waiting = yield* Effect.fork(
        Effect.all([read(["k2"]), read(["k3", "missing"]), read(["k2", "k4"]), read(["nothing"])], {
          concurrency: "unbounded",
        }),
      )
      yield* settle
      assert.deepStrictEqual(queries, [["k1"]])
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(first), [{ key: "k1", value: 1 }])
      const [a, b, c, d] = yield* Fiber.join(waiting)
      assert.deepStrictEqual(a, [{ key: "k2", value: 2 }])
      assert.deepStrictEqual(b, [{ key: "k3", value: 3 }])
      assert.deepStrictEqual(c, [
        { key: "k2", value: 2 },
        { key: "k4", value: 4 },
      ])
      assert.deepStrictEqual(d, [])
      // the four waiting reads went as one query over the union of their keys (at most maxKeys)
      assert.strictEqual(queries.length, 3)
      assert.deepStrictEqual(queries[1], ["k2", "k3", "missing", "k4"])
      assert.deepStrictEqual(queries[2], ["nothing"])
      // idle again: the next read is its own query at once
      assert.deepStrictEqual(yield* read(["k5"]), [{ key: "k5", value: 5 }])
      assert.deepStrictEqual(queries[3], ["k5"])
    }),
  )

  it.effect("callers waiting for the same one key all get its query's rows, named or not", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      let queries = 0
      // like a range's page: a query of one request whose rows do not name it
      const read = ReadCoalescer.make<Row, never>({
        fetch: (keys) =>
          Effect.gen(function* () {
            if (++queries === 1) yield* Deferred.await(gate)
            return keys.length === 1
              ? [
                  { key: "row-a", value: 1 },
                  { key: "row-b", value: 2 },
                ]
              : []
          }),
        keyOf: (row) => row.key,
        maxInFlight: 1,
        maxKeys: 5,
      })
      const first = yield* Effect.fork(read(["page"]))
      yield* settle
      const same = yield* Effect.fork(
        Effect.all([read(["page"]), read(["page"]), read(["page"])], { concurrency: "unbounded" }),
      )
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      const rows = yield* Fiber.join(same)
      assert.strictEqual(queries, 2)
      for (const got of rows)
        assert.deepStrictEqual(
          got.map((row) => row.key),
          ["row-a", "row-b"],
        )
    }),
  )

  it.effect("a failed query fails each of its callers, and only them", () =>
    Effect.gen(function* () {
      const { gate, queries, read } = yield* setUp(1)
      const first = yield* Effect.fork(read(["k1"]))
      yield* settle
      const waiting = yield* Effect.fork(
        Effect.all(
          [read(["k2"]), read(["poison"]), read(["k3", "k4"]), read(["k5", "k6", "k7"]), read(["k8"])].map(
            Effect.either,
          ),
          { concurrency: "unbounded" },
        ),
      )
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(first), [{ key: "k1", value: 1 }])
      const outcomes = yield* Fiber.join(waiting)
      // k2, poison, k3, k4 were one query (5 keys at most), k5..k8 the next
      assert.deepStrictEqual(queries.slice(1), [
        ["k2", "poison", "k3", "k4"],
        ["k5", "k6", "k7", "k8"],
      ])
      assert.deepStrictEqual(
        outcomes.map((o) => (Either.isLeft(o) ? o.left : o.right.map((r) => r.key).join(","))),
        ["query of 4 keys failed", "query of 4 keys failed", "query of 4 keys failed", "k5,k6,k7", "k8"],
      )
    }),
  )

  it.effect("more keys than maxKeys is a query of its own; an interrupted waiter leaves the rest", () =>
    Effect.gen(function* () {
      const { gate, queries, read } = yield* setUp(1)
      const first = yield* Effect.fork(read(["k1"]))
      yield* settle
      const big = ["k10", "k11", "k12", "k13", "k14", "k15"]
      const waiter = yield* Effect.fork(read(["k2"]))
      const other = yield* Effect.fork(read(["k3"]))
      yield* settle
      yield* Fiber.interrupt(waiter)
      const bigFiber = yield* Effect.fork(read(big))
      yield* settle
      assert.deepStrictEqual(queries[1], big)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      assert.strictEqual((yield* Fiber.join(bigFiber)).length, big.length)
      assert.deepStrictEqual(yield* Fiber.join(other), [{ key: "k3", value: 3 }])
    }),
  )

  it.effect("up to maxInFlight reads run at once before callers wait", () =>
    Effect.gen(function* () {
      const { gate, queries, read } = yield* setUp(2)
      const first = yield* Effect.fork(read(["k1"]))
      yield* settle
      const second = yield* Effect.fork(read(["k2"]))
      yield* settle
      const third = yield* Effect.fork(read(["k3"]))
      yield* settle
      // the second read ran at once (and ended); the third found the first in flight and one free
      assert.deepStrictEqual(queries, [["k1"], ["k2"], ["k3"]])
      assert.deepStrictEqual(yield* Fiber.join(second), [{ key: "k2", value: 2 }])
      assert.deepStrictEqual(yield* Fiber.join(third), [{ key: "k3", value: 3 }])
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(first), [{ key: "k1", value: 1 }])
    }),
  )
})
