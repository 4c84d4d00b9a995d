/**
 * A row the store cannot read (written behind its back: a value that is not JSON, a payload
 * that is not JSON) fails the read with a `StoreError` that names the table, on every backend:
 * never a defect, and the other rows stay readable.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Scheduler, Task } from "../src/Scheduler.js"
import { Store, type StoreError } from "../src/Store.js"
import { backendNames, freshBackend } from "./support/backends.js"

const expectUnreadable = (error: { readonly _tag: string }, operation: string, table: string) => {
  assert.strictEqual(error._tag, "StoreError")
  const failure = error as StoreError
  assert.strictEqual(failure.operation, operation)
  assert.strictEqual(failure.reason, "query")
  assert.include(failure.message, `a row of ${table} could not be read`)
}

describe.each(backendNames)("rows that cannot be read, on %s", (backend) => {
  layer(freshBackend(backend), { timeout: Duration.minutes(1) })((it) => {
    it.effect("a value that is not JSON: reads of it fail with a StoreError; others are fine", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const sql = yield* SqlClient.SqlClient
        yield* store.put("bad/ok", -1, { fine: true })
        yield* store.put("bad/broken", -1, { fine: true })
        yield* sql`UPDATE kv_records SET "value" = 'not json' WHERE "key" = 'bad/broken'`
        expectUnreadable(yield* Effect.flip(store.get("bad/broken")), "get", "kv_records")
        expectUnreadable(yield* Effect.flip(store.getPrefix("bad/")), "getPrefix", "kv_records")
        expectUnreadable(yield* Effect.flip(store.getBatch(["bad/broken"])), "getBatch", "kv_records")
        assert.deepStrictEqual(Option.getOrThrow(yield* store.get("bad/ok")).value, { fine: true })
        // the stream holds what the trigger copied: the same answer there
        yield* sql`UPDATE kv_stream SET "value" = 'not json' WHERE "key" = 'bad/broken'`
        expectUnreadable(yield* Effect.flip(store.stream("all", 0)), "stream", "kv_stream")
      }),
    )

    it.effect("a task payload that is not JSON: get and lock fail with a StoreError", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const sql = yield* SqlClient.SqlClient
        const task = yield* scheduler.create(yield* Task.make("unreadable", { n: 1 }))
        yield* sql`UPDATE kv_tasks SET "payload" = '{' WHERE "id" = ${task.id}`
        expectUnreadable(yield* Effect.flip(scheduler.get(task.id)), "get", "kv_tasks")
        expectUnreadable(
          yield* Effect.flip(scheduler.lock("r", "1 minute", ["unreadable"])),
          "lock",
          "kv_tasks",
        )
      }),
    )
  })
})
