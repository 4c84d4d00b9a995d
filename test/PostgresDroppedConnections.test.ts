/**
 * Dropped connections on PostgreSQL: the server ends the store's connections
 * (`pg_terminate_backend` on the scratch database, as a failover, a restart or an
 * administrator would) while the store works. A read in flight is sent once more, on a new
 * connection; a write in flight fails with a `StoreError` whose reason says its outcome is
 * unknown (it is never sent again); nothing is a defect or hangs, and the next operations
 * succeed on new connections.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import pg from "pg"
import * as KvPostgres from "../src/layers/Postgres.js"
import { Store, type StoreError, type StoreService } from "../src/Store.js"
import { createScratchDatabase } from "./support/postgres.js"

/** An admin connection to the scratch database (not the store's). */
const adminClient = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url })
      client.on("error", () => {}) // ended with the scratch database
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined)),
  )

/**
 * Ends every connection of the store to the database (those named effect-kv), and waits
 * until those backends are gone (`pg_terminate_backend` only signals them); the number ended.
 */
const terminateOthers = (admin: pg.Client) =>
  Effect.promise(async () => {
    const ended = await admin.query<{ pid: number }>(
      `WITH store AS MATERIALIZED (SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'effect-kv')
       SELECT pid FROM store WHERE pg_terminate_backend(pid)`,
    )
    const pids = ended.rows.map((row) => row.pid)
    for (;;) {
      const alive = await admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY($1)", [
        pids,
      ])
      if (Number(alive.rows[0].n) === 0) return pids.length
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })

/** An operation must end (success or typed failure) well before this: never hang. */
const noHang = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => new Error("the operation hung") })

/** The failure of an exit: a StoreError, not a defect or an interruption. */
const expectStoreError = <A>(exit: Exit.Exit<A, unknown>): StoreError => {
  assert.isTrue(Exit.isFailure(exit), "expected the operation to fail")
  assert.isFalse(Exit.isFailure(exit) && Cause.isDie(exit.cause), "a defect")
  const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  assert.isTrue(Option.isSome(error), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "")
  const failure = Option.getOrThrow(error) as StoreError
  assert.strictEqual(failure._tag, "StoreError")
  return failure
}

/** Waits until one of the store's statements waits for a lock on the server. */
const untilWaiting = (admin: pg.Client) =>
  Effect.repeat(
    Effect.promise(() =>
      admin.query(
        `SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'effect-kv' AND wait_event_type = 'Lock'`,
      ),
    ),
    { until: (result) => Number(result.rows[0].n) > 0 },
  ).pipe(
    Effect.timeoutFail({
      duration: "15 seconds",
      onTimeout: () => new Error("no statement of the store came to wait for the lock"),
    }),
    Effect.orDie,
  )

/** A version-checked increment of `key`, retried on a mismatch (the next operations' work). */
const increment = (store: StoreService, key: string) =>
  Effect.gen(function* () {
    const current = yield* store.get(key)
    const version = Option.match(current, { onNone: () => 0, onSome: (r) => r.version })
    const value = Option.match(current, { onNone: () => 0, onSome: (r) => r.value as number })
    yield* store.put(key, version, value + 1)
  }).pipe(Effect.retry({ while: (error) => error._tag === "VersionMismatchError" }))

describe("PostgreSQL: the server drops the store's connections", () => {
  it.live("an operation in flight fails with a StoreError; the next ones succeed on new connections", () =>
    Effect.gen(function* () {
      const database = yield* Effect.acquireRelease(
        Effect.promise(() => createScratchDatabase()),
        (database) => Effect.promise(() => database.drop()),
      )
      const store = Context.get(yield* Layer.build(KvPostgres.layer({ url: database.url })), Store)
      // (two: statistics views hold still inside a transaction, so the one that looks is not in one)
      const admin = yield* adminClient(database.url)
      const locker = yield* adminClient(database.url)
      yield* store.put("dc/held", -1, 0)

      // 1. An operation in flight: another client holds the row's lock, so the store's write
      //    waits on the server when its connection is ended.
      yield* Effect.promise(() => locker.query("BEGIN"))
      yield* Effect.promise(() => locker.query(`SELECT 1 FROM kv_records WHERE "key" = 'dc/held' FOR UPDATE`))
      const blocked = yield* Effect.fork(noHang(store.put("dc/held", 1, 1)))
      yield* untilWaiting(admin)
      assert.isAbove(yield* terminateOthers(admin), 0)
      const lost = expectStoreError(yield* Fiber.await(blocked))
      // it reached the server: only the caller can find out whether it was applied
      assert.strictEqual(lost.reason, "unknown-outcome")
      assert.include(lost.message, "may or may not have been applied")
      yield* Effect.promise(() => locker.query("ROLLBACK"))
      // nothing was written by the failed operation
      assert.strictEqual(Option.getOrThrow(yield* store.get("dc/held")).version, 1)

      // 1b. A read in flight: it waits for another client's table lock when its connection is
      //     ended; it is sent again on a new connection and succeeds once the lock is gone.
      yield* Effect.promise(() => locker.query("BEGIN"))
      yield* Effect.promise(() => locker.query("LOCK TABLE kv_records IN ACCESS EXCLUSIVE MODE"))
      const reading = yield* Effect.fork(noHang(store.get("dc/held")))
      yield* untilWaiting(admin)
      assert.isAbove(yield* terminateOthers(admin), 0)
      // the read is sent again and waits for the lock once more
      yield* untilWaiting(admin)
      yield* Effect.promise(() => locker.query("ROLLBACK"))
      const read = yield* Fiber.join(reading)
      assert.strictEqual(Option.getOrThrow(read).version, 1)

      // 2. The next operations succeed on new connections.
      assert.strictEqual((yield* noHang(store.put("dc/held", 1, 1))).version, 2)
      assert.strictEqual(Option.getOrThrow(yield* noHang(store.get("dc/held"))).value, 1)

      // 3. Connections dropped again and again under load: each operation either succeeds or
      //    fails with a StoreError, and the store keeps working.
      let failures = 0
      let successes = 0
      let running = true
      const worker = (w: number) =>
        Effect.gen(function* () {
          while (running) {
            const exit = yield* Effect.exit(noHang(increment(store, `dc/counter/${w}`)))
            if (Exit.isSuccess(exit)) successes++
            else {
              expectStoreError(exit)
              failures++
            }
          }
        })
      const load = yield* Effect.fork(
        Effect.all([0, 1, 2, 3, 4, 5].map(worker), { concurrency: "unbounded" }),
      )
      for (let round = 0; round < 5; round++) {
        const before = successes
        yield* Effect.repeat(Effect.sleep("10 millis"), { until: () => successes >= before + 20 })
        yield* terminateOthers(admin)
      }
      const after = successes
      yield* Effect.repeat(Effect.sleep("10 millis"), { until: () => successes >= after + 50 })
      running = false
      yield* Fiber.join(load)

      // every increment that succeeded is counted (a failed one may or may not have committed)
      const counters = yield* store.getPrefix("dc/counter/")
      const total = counters.reduce((n, r) => n + (r.value as number), 0)
      assert.isAtLeast(total, successes)
      assert.isAtMost(total, successes + failures)
      assert.isTrue(counters.every((r) => r.version === r.value))
      console.log(
        `dropped connections: 6 terminations; ${successes} increments succeeded, ${failures} failed with a StoreError`,
      )
    }).pipe(Effect.scoped),
  )
})
