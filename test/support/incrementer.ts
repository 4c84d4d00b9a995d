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
import { Store } from "../../src/Store.js"
import { argumentsOf, backendLayer, runMain, startSignal } from "./childProcess.js"

const { args, connection, type } = argumentsOf("incrementer", ["key", "count"])
const { key } = args
const count = Number(args.count)
const backend = backendLayer(type, connection)

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

runMain("incrementer", program)
