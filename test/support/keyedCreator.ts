/**
 * A process that creates keyed tasks: `node --import tsx test/support/keyedCreator.ts
 * <sqlite|postgres|rqlite> <connection> <process> <creates> <keys>`.
 *
 * It builds its scheduler (running the migrations, like every other process starting at the
 * same time), prints `ready`, waits for a line on stdin (so that every process starts together),
 * then for each key mode in turn (`replace`, `preserve-run-at`, `dedupe`) creates `creates`
 * tasks named `keyed`, the i-th with key `<mode>/<i % keys>` and payload `{ process, i }`, and
 * prints one JSON line `{ created }`. Any failure is one `keyedCreator: ...` line on stderr and
 * exit code 1.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { keyModes, Scheduler, Task } from "../../src/Scheduler.js"
import { argumentsOf, backendLayer, runMain, startSignal } from "./childProcess.js"

const { args, connection, type } = argumentsOf("keyedCreator", ["process", "creates", "keys"])
const me = Number(args.process)
const creates = Number(args.creates)
const keys = Number(args.keys)
const backend = backendLayer(type, connection)

const program = Effect.gen(function* () {
  const scheduler = Context.get(yield* Layer.build(backend), Scheduler)
  console.log("ready")
  yield* startSignal
  let created = 0
  for (const keyMode of keyModes) {
    for (let i = 0; i < creates; i++) {
      const task = yield* Task.make("keyed", { process: me, i }, { key: `${keyMode}/${i % keys}`, keyMode })
      yield* scheduler.create(task)
      created++
    }
  }
  console.log(JSON.stringify({ created }))
}).pipe(Effect.scoped)

runMain("keyedCreator", program)
