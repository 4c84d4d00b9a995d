/**
 * A process that sweeps expired records with `store.expire()` until a sweep finds nothing:
 * `node --import tsx test/support/expirySweeper.ts <sqlite|postgres|rqlite> <connection>`.
 *
 * It builds its store with the layer's own sweep off (so that every record it deletes is
 * counted here), prints `ready`, waits for a line on stdin (so that every process sweeps at
 * once), then prints one JSON line `{ expired }`: how many records its sweeps deleted. Any
 * failure is one `expirySweeper: ...` line on stderr and exit code 1.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as KvPostgres from "../../src/layers/Postgres.js"
import * as KvRqlite from "../../src/layers/Rqlite.js"
import * as KvSqlite from "../../src/layers/Sqlite.js"
import { Store } from "../../src/Store.js"

const [type, connection] = process.argv.slice(2)
if (type === undefined || connection === undefined) {
  console.error("usage: expirySweeper.ts <sqlite|postgres|rqlite> <connection>")
  process.exit(2)
}

const backend =
  type === "postgres"
    ? KvPostgres.layer({ url: connection, expirySweep: false })
    : type === "rqlite"
      ? KvRqlite.layer({ url: connection, expirySweep: false })
      : KvSqlite.layer({ filename: connection, expirySweep: false })

const startSignal = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
})

const program = Effect.gen(function* () {
  const store = Context.get(yield* Layer.build(backend), Store)
  console.log("ready")
  yield* startSignal
  let expired = 0
  for (;;) {
    const swept = yield* store.expire()
    expired += swept
    if (swept === 0) break
  }
  console.log(JSON.stringify({ expired }))
}).pipe(Effect.scoped)

Effect.runPromise(program).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`expirySweeper: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  },
)
