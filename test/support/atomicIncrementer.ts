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
import * as KvPostgres from "../../src/layers/Postgres.js"
import * as KvRqlite from "../../src/layers/Rqlite.js"
import * as KvSqlite from "../../src/layers/Sqlite.js"
import { Mutation, Store } from "../../src/Store.js"

const [type, connection, key, countText] = process.argv.slice(2)
if (type === undefined || connection === undefined || key === undefined || countText === undefined) {
  console.error("usage: atomicIncrementer.ts <sqlite|postgres|rqlite> <connection> <key> <count>")
  process.exit(2)
}
const count = Number(countText)

const backend =
  type === "postgres"
    ? KvPostgres.layer({ url: connection })
    : type === "rqlite"
      ? KvRqlite.layer({ url: connection })
      : KvSqlite.layer({ filename: connection })

const startSignal = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
})

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

Effect.runPromise(program).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`atomicIncrementer: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  },
)
