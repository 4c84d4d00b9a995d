/**
 * A process that increments one key `count` times with version-checked writes, retrying on a
 * version mismatch: `node --import tsx test/support/incrementer.ts <sqlite|postgres> <connection> <key> <count>`.
 *
 * It builds its store (running the migrations, like every other process starting at the same
 * time), prints `ready`, waits for a line on stdin (so that every process starts incrementing
 * together), then prints one JSON line `{ increments, mismatches }`. Any other failure is one
 * `incrementer: ...` line on stderr and exit code 1: it is what a caller would have seen.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as KvPostgres from "../../src/layers/Postgres.js"
import * as KvSqlite from "../../src/layers/Sqlite.js"
import { Store } from "../../src/Store.js"

const [type, connection, key, countText] = process.argv.slice(2)
if (type === undefined || connection === undefined || key === undefined || countText === undefined) {
  console.error("usage: incrementer.ts <sqlite|postgres> <connection> <key> <count>")
  process.exit(2)
}
const count = Number(countText)

const backend =
  type === "postgres" ? KvPostgres.layer({ url: connection }) : KvSqlite.layer({ filename: connection })

const startSignal = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
})

const program = Effect.gen(function* () {
  const store = Context.get(yield* Layer.build(backend), Store)
  console.log("ready")
  yield* startSignal
  let mismatches = 0
  for (let i = 0; i < count; i++) {
    for (;;) {
      const current = yield* store.get(key)
      const result = yield* Effect.either(
        Option.match(current, {
          onNone: () => store.put(key, 0, 1),
          onSome: (record) => store.put(key, record.version, (record.value as number) + 1),
        }),
      )
      if (result._tag === "Right") break
      if (result.left._tag !== "VersionMismatchError") return yield* Effect.fail(result.left)
      mismatches++
    }
  }
  console.log(JSON.stringify({ increments: count, mismatches }))
}).pipe(Effect.scoped)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`incrementer: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  },
)
