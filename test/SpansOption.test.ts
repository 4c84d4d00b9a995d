/**
 * The backend layers' `spans` option: on by default, `spans: false` leaves the spans of the
 * Store, the Scheduler and the consumers out (the same on every backend: the option only
 * chooses whether `KvSql.layerOn` wraps the services, checked here on SQLite :memory:).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Consumer from "../src/Consumer.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import { Store } from "../src/Store.js"
import { KvSqlite } from "../src/sqlite.js"
import { namesOf, recording } from "./support/spans.js"

/** A store write and read, a task and a consumer read. */
const someOperations = Effect.gen(function* () {
  const store = yield* Store
  const scheduler = yield* Scheduler
  yield* store.put("option/a", -1, 1)
  yield* store.get("option/a")
  yield* scheduler.create(yield* Task.make("option-task", null))
  const consumer = yield* Consumer.make({ streamName: "option", consumerName: "c" })
  yield* consumer.get(10)
  yield* Consumer.status("option")
})

describe("the spans option", () => {
  it.effect("default: every operation has its kv.* span", () =>
    Effect.gen(function* () {
      const { spans } = yield* recording(someOperations)
      assert.deepStrictEqual(namesOf(spans), [
        "kv.store.put",
        "kv.store.get",
        "kv.scheduler.create",
        "kv.consumer.get",
        "kv.consumer.status",
      ])
    }).pipe(Effect.provide(KvSqlite.layer({ filename: ":memory:" }))),
  )

  it.effect("spans: false: none", () =>
    Effect.gen(function* () {
      const { spans } = yield* recording(someOperations)
      assert.deepStrictEqual(namesOf(spans), [])
    }).pipe(Effect.provide(KvSqlite.layer({ filename: ":memory:", spans: false }))),
  )
})
