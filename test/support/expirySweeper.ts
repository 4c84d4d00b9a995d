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
import { Store } from "../../src/Store.js"
import { argumentsOf, backendLayer, runMain, startSignal } from "./childProcess.js"

const { connection, type } = argumentsOf("expirySweeper", [])
// the layer's own sweep off: every record this process deletes is counted here
const backend = backendLayer(type, connection, { expirySweep: false })

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

runMain("expirySweeper", program)
