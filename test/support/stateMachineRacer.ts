/**
 * A process that increments one counter state machine `count` times, each `process` call
 * retried on a version mismatch:
 * `node --import tsx test/support/stateMachineRacer.ts <sqlite|postgres|rqlite> <connection> <id> <count>`.
 *
 * It builds its store, prints `ready`, waits for a line on stdin (so that every process starts
 * together), then prints one JSON line `{ increments, mismatches }`. Any other failure is one
 * `racer: ...` line on stderr and exit code 1.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { type BackendType, layerFor } from "../../src/cli/backend.js"
import { argumentsOf, runMain, startSignal } from "./childProcess.js"
import { counterMachine, increment } from "./counterMachine.js"

const { args, connection, type } = argumentsOf("stateMachineRacer", ["id", "count"])
const { id } = args
const count = Number(args.count)

const program = Effect.gen(function* () {
  const machine = yield* counterMachine
  yield* machine.load(id) // connected (and migrated) before the start
  console.log("ready")
  yield* startSignal
  let mismatches = 0
  for (let i = 0; i < count; i++) {
    yield* machine.process(id, [increment(1)]).pipe(
      Effect.tapError((error) =>
        Effect.sync(() => {
          if (error._tag === "VersionMismatchError") mismatches++
        }),
      ),
      Effect.retry({ while: (error) => error._tag === "VersionMismatchError" }),
    )
  }
  console.log(JSON.stringify({ increments: count, mismatches }))
}).pipe(Effect.provide(layerFor(type as BackendType, Redacted.make(connection))))

runMain("racer", program)
