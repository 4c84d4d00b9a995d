/**
 * What the expiry sweep costs on a big table: 1,000,000 records (none expiring), then 1,000
 * more that expire; the time of a sweep that finds nothing (what every layer does each second)
 * and of the sweep that deletes the 1,000, with the partial index on `expires_at` and, for
 * comparison, without it.
 *
 *   npx tsx bench/expiry.ts                    # every backend, 1,000,000 records
 *   npx tsx bench/expiry.ts sqlite --keys=100000
 *
 * Needs the local PostgreSQL (KV_POSTGRES_URL) and starts its own rqlite server. The big table
 * is written with one SQL statement (through the store's own client, so its stream triggers
 * run); the expiring records through `mutateAll`.
 */
import { performance } from "node:perf_hooks"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Mutation, Store } from "../src/Store.js"
import { type BackendName, backendNames, freshBackend } from "../test/support/backends.js"

const keysArg = process.argv.find((arg) => arg.startsWith("--keys="))
const bigCount = keysArg === undefined ? 1_000_000 : Number(keysArg.slice("--keys=".length))
const expiringCount = 1_000
const idleRounds = 20
/** Sweeps of 1,000 per case (the median is printed: the first write after the big fill may checkpoint). */
const sweepRounds = 5
const chosen = backendNames.filter((name) => process.argv.includes(name))
const backends: ReadonlyArray<BackendName> = chosen.length > 0 ? chosen : backendNames

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(effect), ([duration, result]) => ({ ms: Duration.toMillis(duration), result }))

const median = (values: ReadonlyArray<number>) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** The records `big/0000000` ... as one statement. */
const fillBig = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.onDialectOrElse({
    pg: () => sql`INSERT INTO kv_records ("key", "version", "value", "type", "created")
      SELECT 'big/' || lpad(i::text, 7, '0'), 1, '1', 'number', now() FROM generate_series(1, ${bigCount}) AS i`,
    orElse: () => sql`INSERT INTO kv_records ("key", "version", "value", "type", "created")
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${bigCount})
      SELECT 'big/' || substr('0000000' || i, -7), 1, '1', 'number', 0 FROM n`,
  }),
)

const setIndex = (present: boolean) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    present
      ? sql`CREATE INDEX IF NOT EXISTS kv_records_expiry ON kv_records (expires_at, key) WHERE expires_at IS NOT NULL`
      : sql`DROP INDEX IF EXISTS kv_records_expiry`,
  )

/** 1,000 records that expire 1 ms after they are written, then a wait until they have. */
const writeExpiring = (round: string) =>
  Effect.gen(function* () {
    const store = yield* Store
    yield* store.mutateAll(
      Array.from({ length: expiringCount }, (_, i) =>
        Mutation.put(`expiring/${round}/${String(i).padStart(4, "0")}`, -1, i, { ttl: "1 millis" }),
      ),
    )
    yield* Effect.sleep("5 millis")
  })

const measure = (indexed: boolean) =>
  Effect.gen(function* () {
    const store = yield* Store
    yield* setIndex(indexed)
    const idle: Array<number> = []
    for (let i = 0; i < idleRounds; i++) idle.push((yield* timed(store.expire())).ms)
    const sweeps: Array<number> = []
    for (let round = 0; round < sweepRounds; round++) {
      yield* writeExpiring(`${indexed ? "indexed" : "unindexed"}-${round}`)
      const sweep = yield* timed(store.expire())
      if (sweep.result !== expiringCount) {
        return yield* Effect.dieMessage(`the sweep deleted ${sweep.result}, not ${expiringCount}`)
      }
      sweeps.push(sweep.ms)
    }
    return { idle: median(idle), sweep: median(sweeps) }
  })

const run = (backend: BackendName) =>
  Effect.gen(function* () {
    const fill = yield* timed(fillBig)
    const store = yield* Store
    const count = yield* store.count()
    const withIndex = yield* measure(true)
    const withoutIndex = yield* measure(false)
    yield* setIndex(true)
    const row = (label: string, m: { idle: number; sweep: number }) =>
      `${backend.padEnd(8)} | ${label.padEnd(13)} | ${m.idle.toFixed(2).padStart(15)} | ${m.sweep.toFixed(1).padStart(20)}`
    console.log(
      `${backend}: ${count.toLocaleString("en")} records written in ${(fill.ms / 1000).toFixed(1)} s`,
    )
    console.log(row("index", withIndex))
    console.log(row("no index", withoutIndex))
  })

const main = async () => {
  console.log(
    `expiry sweep next to ${bigCount.toLocaleString("en")} records that do not expire (${expiringCount.toLocaleString("en")} that do)`,
  )
  console.log("backend  | expires_at    | idle sweep ms p50 | sweep of 1,000 ms p50")
  for (const backend of backends) {
    const runtime = ManagedRuntime.make(freshBackend(backend, { expirySweep: false }))
    const started = performance.now()
    await runtime.runPromise(run(backend))
    await runtime.dispose()
    console.log(`${backend}: ${((performance.now() - started) / 1000).toFixed(1)} s in all`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
