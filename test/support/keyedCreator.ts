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
import * as KvPostgres from "../../src/layers/Postgres.js"
import * as KvRqlite from "../../src/layers/Rqlite.js"
import * as KvSqlite from "../../src/layers/Sqlite.js"
import { keyModes, Scheduler, Task } from "../../src/Scheduler.js"

const [type, connection, processText, createsText, keysText] = process.argv.slice(2)
if (
  type === undefined ||
  connection === undefined ||
  processText === undefined ||
  createsText === undefined ||
  keysText === undefined
) {
  console.error("usage: keyedCreator.ts <sqlite|postgres|rqlite> <connection> <process> <creates> <keys>")
  process.exit(2)
}
const me = Number(processText)
const creates = Number(createsText)
const keys = Number(keysText)

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

Effect.runPromise(program).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`keyedCreator: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  },
)
