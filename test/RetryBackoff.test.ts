/**
 * Long retry delays, many retries: the delay doubles from `initial` up to `max` and stays
 * there, however many attempts failed, on every backend. (It used to be `initial` shifted by
 * up to 40 before the cap: with a day as `initial`, the 38th failure overflowed, storing a due
 * time of about -6.57e18 on SQLite and rqlite and failing `release` on PostgreSQL.)
 */
import { assert, describe, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { Scheduler, Task } from "../src/Scheduler.js"
import { backendNames, freshBackend } from "./support/backends.js"

const day = Duration.toMillis("1 day")
const initial = day
const max = 30 * day

describe.each(backendNames)("retry backoff on %s", (backend) => {
  layer(freshBackend(backend, { taskRetryBackoff: { initial: "1 day", max: "30 days" } }), {
    timeout: Duration.minutes(2),
  })((it) => {
    it.effect("1 day doubling to 30 days, 50 retries: every due time is right, then the task fails", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const task = yield* scheduler.create(yield* Task.make("long-backoff", {}, { maxRetries: 50 }))
        for (let failures = 0; failures <= 50; failures++) {
          const [taken] = yield* scheduler.lock("r", "1 minute", ["long-backoff"])
          assert.strictEqual(taken?.id, task.id, `attempt ${failures + 1} was not due`)
          const now = yield* TestClock.currentTimeMillis
          yield* scheduler.release(task.id, "r", "failed", `failure ${failures + 1}`)
          const after = Option.getOrThrow(yield* scheduler.get(task.id))
          assert.strictEqual(after.retryCount, failures + 1)
          if (failures === 50) {
            assert.strictEqual(after.status, "failed")
            break
          }
          const delay = Math.min(max, initial * 2 ** failures)
          assert.strictEqual(after.status, "pending")
          assert.strictEqual(after.scheduledFor.getTime(), now + delay, `after failure ${failures + 1}`)
          // not a moment early
          yield* TestClock.adjust(delay - 1)
          assert.deepStrictEqual(yield* scheduler.lock("r", "1 minute", ["long-backoff"]), [])
          yield* TestClock.adjust(1)
        }
      }),
    )

    it.effect("a longest delay over 100 years is refused", () =>
      Effect.gen(function* () {
        // checked when the layer is built; here through the same rule on a new layer
        const error = yield* Effect.flip(
          Effect.provide(Scheduler, freshBackend(backend, { taskRetryBackoff: { max: "80000 days" } })),
        )
        assert.include(String((error as { message?: unknown }).message), "at most 100 years")
      }),
    )
  })
})
