/**
 * A process that increments one key `count` times with `store.increment` and
 * `Mutation.increment` in turn, never retrying: `node --import tsx test/support/atomicIncrementer.ts
 * <sqlite|postgres|rqlite> <connection> <key> <count>`.
 *
 * It builds its store (running the migrations, like every other process starting at the same
 * time), prints `ready`, waits for a line on stdin (so that every process starts incrementing
 * together), then prints one JSON line `{ increments }`. Any failure is one
 * `atomicIncrementer: ...` line on stderr and exit code 1: it is what a caller would have seen.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Mutation, Store } from "../../src/Store.js"
import { argumentsOf, backendLayer, runMain, startSignal } from "./childProcess.js"

const { args, connection, type } = argumentsOf("atomicIncrementer", ["key", "count"])
const { key } = args
const count = Number(args.count)
const backend = backendLayer(type, connection)

const program = Effect.gen(function* () {
  const store = Context.get(yield* Layer.build(backend), Store)
  console.log("ready")
  yield* startSignal
  for (let i = 0; i < count; i++) {
    if (i % 2 === 0) yield* store.increment(key)
    else yield* store.mutateAll([Mutation.increment(key, 1)])
  }
  console.log(JSON.stringify({ increments: count }))
}).pipe(Effect.scoped)

runMain("atomicIncrementer", program)
