/**
 * The Scheduler conformance suite: the same expectations for every backend.
 *
 * `schedulerSuite(name, backend)` registers the tests; `backend` must give a fresh, empty
 * database. Tests share it and run in order, so each works on task names of its own (`lock`
 * takes only those names). Time is the `TestClock`, shared by the tests of a suite (times are
 * relative to a test's start), so due times, lock expiry and retry backoff are exact.
 */
import { assert, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { Scheduler, Task, type TaskOptions } from "../src/Scheduler.js"
import { Mutation, Store, VersionMismatchError } from "../src/Store.js"
import { attributeText, namesOf, recording, spanNamed } from "./support/spans.js"

const minute = Duration.toMillis("1 minute")

/** Creates a task named `name` (payload `{ n }`). */
const create = (name: string, options?: TaskOptions, n = 1) =>
  Effect.gen(function* () {
    const scheduler = yield* Scheduler
    return yield* scheduler.create(yield* Task.make(name, { n }, options))
  })

const getTask = (id: string) =>
  Effect.flatMap(Scheduler, (scheduler) => Effect.map(scheduler.get(id), Option.getOrThrow))

const idsOf = (tasks: ReadonlyArray<Task>) => tasks.map((task) => task.id)

export const schedulerSuite = (name: string, backend: Layer.Layer<Scheduler | Store, unknown>) =>
  layer(backend, { timeout: Duration.minutes(2) })(name, (it) => {
    it.effect(
      "spans: every operation in a kv.scheduler.* span with task ids, names and runners, never payloads",
      () =>
        Effect.gen(function* () {
          const scheduler = yield* Scheduler
          const secret = "a-payload-no-span-may-carry"
          const { spans } = yield* recording(
            Effect.gen(function* () {
              const task = yield* scheduler.create(
                yield* Task.make("span-task", { secret }, { id: "span-1" }),
              )
              yield* scheduler.get(task.id)
              const locked = yield* scheduler.lock("span-runner", "1 minute", ["span-task"], 5)
              assert.deepStrictEqual(idsOf(locked), ["span-1"])
              yield* scheduler.heartbeat("span-1", "span-runner", "1 minute")
              yield* scheduler.release("span-1", "span-runner", "failed", `failed with ${secret}`)
              yield* scheduler.list({ name: "span-task" })
              yield* scheduler.nextDue(["span-task"])
              yield* scheduler.cancel("span-1")
            }),
          )
          assert.deepStrictEqual(namesOf(spans), [
            "kv.scheduler.create",
            "kv.scheduler.get",
            "kv.scheduler.lock",
            "kv.scheduler.heartbeat",
            "kv.scheduler.release",
            "kv.scheduler.list",
            "kv.scheduler.nextDue",
            "kv.scheduler.cancel",
          ])
          const created = spanNamed(spans, "kv.scheduler.create")
          assert.strictEqual(created.attributes.get("kv.task.id"), "span-1")
          assert.strictEqual(created.attributes.get("kv.task.name"), "span-task")
          const lock = spanNamed(spans, "kv.scheduler.lock")
          assert.strictEqual(lock.attributes.get("kv.runner"), "span-runner")
          assert.deepStrictEqual(lock.attributes.get("kv.task.names"), ["span-task"])
          assert.strictEqual(lock.attributes.get("kv.limit"), 5)
          assert.strictEqual(lock.attributes.get("kv.result_count"), 1)
          assert.deepStrictEqual(lock.attributes.get("kv.task.ids"), ["span-1"])
          assert.strictEqual(
            spanNamed(spans, "kv.scheduler.heartbeat").attributes.get("kv.task.status"),
            "running",
          )
          assert.strictEqual(
            spanNamed(spans, "kv.scheduler.release").attributes.get("kv.task.status"),
            "failed",
          )
          assert.strictEqual(spanNamed(spans, "kv.scheduler.list").attributes.get("kv.result_count"), 1)
          assert.notInclude(attributeText(spans), secret)
        }),
    )

    it.effect("Task.make fills in the id, the defaults and scheduledFor from the Clock", () =>
      Effect.gen(function* () {
        yield* TestClock.adjust("10 seconds")
        const now = yield* TestClock.currentTimeMillis
        const task = yield* Task.make("mail", { to: "ada" })
        assert.match(task.id, /^[0-9a-f-]{36}$/)
        assert.deepStrictEqual(
          { ...task, id: "" },
          {
            id: "",
            name: "mail",
            payload: { to: "ada" },
            status: "pending",
            created: new Date(now),
            scheduledFor: new Date(now),
            lastError: null,
            retryCount: 0,
            maxRetries: 3,
            timeoutSeconds: 300,
            lockedBy: null,
            priority: 0,
          },
        )
        const later = yield* Task.make("mail", 1, {
          delay: "5 minutes",
          maxRetries: 0,
          timeout: "1.5 seconds",
        })
        assert.strictEqual(later.scheduledFor.getTime(), now + 5 * minute)
        assert.strictEqual(later.maxRetries, 0)
        assert.strictEqual(later.timeoutSeconds, 1.5)
        const at = new Date("2030-01-02T03:04:05Z")
        assert.deepStrictEqual(
          (yield* Task.make("mail", 1, { scheduledFor: at, id: "mine" })).scheduledFor,
          at,
        )
        assert.notStrictEqual((yield* Task.make("mail", 1)).id, task.id)
      }),
    )

    it.effect("Task.make and create refuse bad input, and create writes nothing then", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const bad: ReadonlyArray<readonly [string, unknown, TaskOptions?]> = [
          ["", {}],
          ["bad", 10n],
          ["bad", { s: "nul\u0000" }],
          ["bad", {}, { maxRetries: -1 }],
          ["bad", {}, { maxRetries: 1.5 }],
          ["bad", {}, { timeout: 0 }],
          ["bad", {}, { delay: "-5 seconds" }],
          ["bad", {}, { delay: "1 minute", scheduledFor: new Date() }],
          ["bad", {}, { scheduledFor: new Date(Number.NaN) }],
          ["bad", {}, { scheduledFor: new Date("+010000-01-01T00:00:00Z") }],
          ["bad", {}, { id: "" }],
        ]
        for (const [name, payload, options] of bad) {
          const error = yield* Effect.flip(Task.make(name, payload, options))
          assert.strictEqual(error._tag, "InvalidArgumentError", `${name} ${String(payload)}`)
          assert.isAbove(error.message.length, 0)
        }
        const good = yield* Task.make("bad", { ok: true })
        for (const task of [
          { ...good, name: "" },
          { ...good, payload: () => 1 },
          { ...good, maxRetries: -1 },
          { ...good, timeoutSeconds: 0 },
          { ...good, scheduledFor: new Date(Number.NaN) },
          { ...good, scheduledFor: new Date("-000001-01-01T00:00:00Z") },
        ]) {
          assert.strictEqual((yield* Effect.flip(scheduler.create(task)))._tag, "InvalidArgumentError")
        }
        assert.deepStrictEqual(yield* scheduler.list({ name: "bad" }), [])
      }),
    )

    it.effect("create, then get returns the same task; a duplicate id changes nothing", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        yield* TestClock.adjust("1 hour")
        const task = yield* Task.make(
          "crud",
          { nested: { list: [1, "two", null] } },
          { id: "crud-1", delay: "1 minute" },
        )
        const created = yield* scheduler.create(task)
        assert.deepStrictEqual(created, task)
        assert.deepStrictEqual(yield* getTask("crud-1"), task)
        assert.isTrue(Option.isNone(yield* scheduler.get("crud-missing")))
        const duplicate = yield* Effect.flip(scheduler.create({ ...task, name: "crud-other", payload: 2 }))
        assert.strictEqual(duplicate._tag, "DuplicateTaskError")
        assert.include(duplicate.message, "crud-1")
        assert.deepStrictEqual(yield* getTask("crud-1"), task)
        assert.deepStrictEqual(yield* scheduler.list({ name: "crud-other" }), [])
      }),
    )

    it.effect("list: newest first, by status and name, with offset and limit", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const made: Array<Task> = []
        for (let i = 0; i < 5; i++) made.push(yield* create(i % 2 === 0 ? "list-even" : "list-odd", {}, i))
        yield* scheduler.cancel(made[4]!.id)
        const newestFirst = [...made].reverse()
        const even = yield* scheduler.list({ name: "list-even" })
        assert.deepStrictEqual(idsOf(even), idsOf(newestFirst.filter((t) => t.name === "list-even")))
        assert.deepStrictEqual(
          idsOf(yield* scheduler.list({ name: "list-even", status: "pending" })),
          idsOf([made[2]!, made[0]!]),
        )
        assert.deepStrictEqual(
          idsOf(yield* scheduler.list({ name: "list-even", status: "cancelled" })),
          idsOf([made[4]!]),
        )
        assert.deepStrictEqual(idsOf(yield* scheduler.list({ name: "list-odd", limit: 1 })), [made[3]!.id])
        assert.deepStrictEqual(idsOf(yield* scheduler.list({ name: "list-even", offset: 1, limit: 1 })), [
          made[2]!.id,
        ])
        assert.deepStrictEqual(idsOf(yield* scheduler.list({ name: "list-even", offset: 3 })), [])
        const all = yield* scheduler.list()
        assert.deepStrictEqual(idsOf(all.filter((t) => t.name.startsWith("list-"))), idsOf(newestFirst))
        for (const filter of [{ offset: -1 }, { limit: -2 }, { status: "done" as never }, { name: "" }]) {
          assert.strictEqual((yield* Effect.flip(scheduler.list(filter)))._tag, "InvalidArgumentError")
        }
      }),
    )

    it.effect("lock takes the earliest due task first, and never future, cancelled or other-name tasks", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        yield* TestClock.adjust("1 hour")
        const start = (yield* TestClock.currentTimeMillis) - 60 * minute
        const later = yield* create("due", { delay: "10 minutes" })
        const cancelled = yield* create("due", { scheduledFor: new Date(start) })
        yield* scheduler.cancel(cancelled.id)
        yield* create("due-other", { scheduledFor: new Date(start) })
        const second = yield* create("due", { scheduledFor: new Date(start + 20 * minute) })
        const first = yield* create("due", { scheduledFor: new Date(start + 10 * minute) })
        const third = yield* create("due") // now: 1 hour

        const t0 = yield* TestClock.currentTimeMillis
        const [a] = yield* scheduler.lock("runner-1", "1 hour", ["due"])
        assert.strictEqual(a?.id, first.id)
        assert.strictEqual(a?.status, "running")
        assert.strictEqual(a?.lockedBy, "runner-1")
        assert.deepStrictEqual(a?.startedAt, new Date(t0))
        assert.deepStrictEqual(a?.lockedAt, new Date(t0))
        assert.deepStrictEqual(a?.lockExpiresAt, new Date(t0 + 60 * minute))
        assert.deepStrictEqual(yield* getTask(first.id), a)
        assert.deepStrictEqual(idsOf(yield* scheduler.lock("runner-1", "1 hour", ["due"], 5)), [
          second.id,
          third.id,
        ])
        assert.deepStrictEqual(yield* scheduler.lock("runner-2", "1 minute", ["due"], 5), [])
        assert.deepStrictEqual(yield* scheduler.lock("runner-2", "1 minute", [], 5), [])
        assert.strictEqual((yield* getTask(later.id)).status, "pending")
        assert.strictEqual((yield* getTask(cancelled.id)).status, "cancelled")

        yield* TestClock.adjust("10 minutes")
        const rest = yield* scheduler.lock("runner-2", "1 hour", ["due", "due-other"], 5)
        assert.deepStrictEqual(rest.map((t) => t.name).sort(), ["due", "due-other"])
        for (const id of [first.id, second.id, third.id])
          yield* scheduler.release(id, "runner-1", "completed")
        for (const task of yield* scheduler.list({ status: "running" })) {
          if (task.name.startsWith("due")) yield* scheduler.release(task.id, "runner-2", "completed")
        }
      }),
    )

    it.effect("100 due tasks taken by 8 concurrent fibers: each exactly once", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const created = yield* Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (i) => create("concurrent", {}, i),
        )
        const takeAll = (runner: string) =>
          Effect.gen(function* () {
            const taken: Array<string> = []
            for (;;) {
              const tasks = yield* scheduler.lock(runner, "1 hour", ["concurrent"], 3)
              if (tasks.length === 0) return taken
              assert.isAtMost(tasks.length, 3)
              for (const task of tasks) {
                assert.strictEqual(task.lockedBy, runner)
                taken.push(task.id)
              }
            }
          })
        const perFiber = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, i) => `fiber-${i}`),
          takeAll,
          { concurrency: "unbounded" },
        )
        const all = perFiber.flat()
        assert.strictEqual(all.length, 100)
        assert.deepStrictEqual(new Set(all), new Set(idsOf(created)))
        for (const [i, ids] of perFiber.entries()) {
          for (const id of ids) yield* scheduler.release(id, `fiber-${i}`, "completed")
        }
        const done = yield* scheduler.list({ name: "concurrent", status: "completed" })
        assert.strictEqual(done.length, 100)
      }),
    )

    it.effect("release: completed and cancelled are final; pending gives the task back uncounted", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const a = yield* create("release")
        const b = yield* create("release")
        const c = yield* create("release")
        const t0 = yield* TestClock.currentTimeMillis
        const taken = yield* scheduler.lock("r", "1 minute", ["release"], 3)
        assert.strictEqual(taken.length, 3)
        yield* TestClock.adjust("5 seconds")
        yield* scheduler.release(a.id, "r", "completed")
        yield* scheduler.release(b.id, "r", "cancelled", "not needed")
        yield* scheduler.release(c.id, "r", "pending", "shutting down")

        const done = yield* getTask(a.id)
        assert.strictEqual(done.status, "completed")
        assert.deepStrictEqual(done.completedAt, new Date(t0 + 5000))
        assert.deepStrictEqual(done.startedAt, new Date(t0))
        assert.strictEqual(done.lockedBy, "r")
        assert.isUndefined(done.lockExpiresAt)
        assert.strictEqual(done.retryCount, 0)
        assert.isNull(done.lastError)

        const cancelled = yield* getTask(b.id)
        assert.strictEqual(cancelled.status, "cancelled")
        assert.strictEqual(cancelled.lastError, "not needed")

        const back = yield* getTask(c.id)
        assert.strictEqual(back.status, "pending")
        assert.strictEqual(back.retryCount, 0)
        assert.isNull(back.lockedBy)
        assert.isUndefined(back.lockExpiresAt)
        assert.strictEqual(back.lastError, "shutting down")
        assert.deepStrictEqual(idsOf(yield* scheduler.lock("r2", "1 minute", ["release"])), [c.id])
        yield* scheduler.release(c.id, "r2", "completed")
        assert.deepStrictEqual(yield* scheduler.lock("r", "1 minute", ["release"]), [])
      }),
    )

    it.effect(
      "a failed attempt is retried after 1, 2, 4 ... minutes (at most 1 hour), then fails for good",
      () =>
        Effect.gen(function* () {
          const scheduler = yield* Scheduler
          const task = yield* create("retry", { maxRetries: 8 })
          const expectedDelays = [1, 2, 4, 8, 16, 32, 60, 60].map((m) => m * minute)
          for (const [attempt, delay] of expectedDelays.entries()) {
            const now = yield* TestClock.currentTimeMillis
            assert.deepStrictEqual(idsOf(yield* scheduler.lock("r", "1 minute", ["retry"])), [task.id])
            yield* scheduler.release(task.id, "r", "failed", `failure ${attempt + 1}`)
            const after = yield* getTask(task.id)
            assert.strictEqual(after.status, "pending")
            assert.strictEqual(after.retryCount, attempt + 1)
            assert.strictEqual(after.lastError, `failure ${attempt + 1}`)
            assert.strictEqual(after.scheduledFor.getTime(), now + delay)
            assert.isNull(after.lockedBy)
            // not due before its time
            yield* TestClock.adjust(delay - 1)
            assert.deepStrictEqual(yield* scheduler.lock("r", "1 minute", ["retry"]), [])
            yield* TestClock.adjust(1)
          }
          assert.deepStrictEqual(idsOf(yield* scheduler.lock("r", "1 minute", ["retry"])), [task.id])
          yield* scheduler.release(task.id, "r", "failed", "last failure")
          const failed = yield* getTask(task.id)
          assert.strictEqual(failed.status, "failed")
          assert.strictEqual(failed.retryCount, 9)
          assert.strictEqual(failed.lastError, "last failure")
          assert.deepStrictEqual(failed.completedAt, new Date(yield* TestClock.currentTimeMillis))
          yield* TestClock.adjust("1 day")
          assert.deepStrictEqual(yield* scheduler.lock("r", "1 minute", ["retry"]), [])
        }),
    )

    it.effect("maxRetries 0: the first failure is final; a long error message is kept, shortened", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const task = yield* create("no-retry", { maxRetries: 0 })
        yield* scheduler.lock("r", "1 minute", ["no-retry"])
        yield* scheduler.release(task.id, "r", "failed", `${"x".repeat(10_000)}\u0000\ud800`)
        const failed = yield* getTask(task.id)
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.retryCount, 1)
        assert.isAtMost(failed.lastError!.length, 4000)
        assert.isTrue(failed.lastError!.startsWith("xxx"))
      }),
    )

    it.effect(
      "releasing or extending a task the runner does not hold is a typed error and changes nothing",
      () =>
        Effect.gen(function* () {
          const scheduler = yield* Scheduler
          const task = yield* create("held")
          yield* scheduler.lock("alice", "1 minute", ["held"])
          const before = yield* getTask(task.id)
          const byBob = yield* Effect.flip(scheduler.release(task.id, "bob", "completed"))
          assert.strictEqual(byBob._tag, "TaskNotHeldError")
          if (byBob._tag === "TaskNotHeldError") {
            assert.strictEqual(byBob.status, "running")
            assert.strictEqual(byBob.lockedBy, "alice")
            assert.include(byBob.message, "alice")
            assert.include(byBob.message, "bob")
          }
          assert.strictEqual(
            (yield* Effect.flip(scheduler.heartbeat(task.id, "bob", "1 hour")))._tag,
            "TaskNotHeldError",
          )
          assert.deepStrictEqual(yield* getTask(task.id), before)
          yield* scheduler.release(task.id, "alice", "completed")
          const again = yield* Effect.flip(scheduler.release(task.id, "alice", "failed", "late"))
          assert.strictEqual(again._tag, "TaskNotHeldError")
          assert.include(again.message, "completed")
          const missing = yield* Effect.flip(scheduler.release("held-missing", "alice", "completed"))
          assert.include(missing.message, "does not exist")
          assert.strictEqual((yield* getTask(task.id)).status, "completed")
          assert.strictEqual((yield* getTask(task.id)).retryCount, 0)
        }),
    )

    it.effect("an expired lock is taken back: a failed attempt saying the lock expired", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const task = yield* create("expiry")
        yield* scheduler.lock("dead-runner", "10 seconds", ["expiry"])
        yield* TestClock.adjust("9 seconds")
        assert.deepStrictEqual(yield* scheduler.lock("live-runner", "10 seconds", ["expiry"]), [])
        yield* TestClock.adjust("1 second")
        // any lock call gives expired tasks back, whatever names it asks for
        assert.deepStrictEqual(yield* scheduler.lock("live-runner", "10 seconds", ["expiry-none"]), [])
        const reclaimed = yield* getTask(task.id)
        assert.strictEqual(reclaimed.status, "pending")
        assert.strictEqual(reclaimed.retryCount, 1)
        assert.include(reclaimed.lastError, "lock expired")
        assert.include(reclaimed.lastError, "dead-runner")
        assert.isNull(reclaimed.lockedBy)
        const [retaken] = yield* scheduler.lock("live-runner", "10 seconds", ["expiry"])
        assert.strictEqual(retaken?.id, task.id)
        assert.strictEqual(retaken?.lockedBy, "live-runner")
        const late = yield* Effect.flip(scheduler.release(task.id, "dead-runner", "completed"))
        assert.strictEqual(late._tag, "TaskNotHeldError")
        yield* scheduler.release(task.id, "live-runner", "completed")
        const done = yield* getTask(task.id)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.retryCount, 1)
      }),
    )

    it.effect("an expired lock without retries left ends the task failed", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const task = yield* create("expiry-final", { maxRetries: 0 })
        const t0 = yield* TestClock.currentTimeMillis
        yield* scheduler.lock("dead-runner", "10 seconds", ["expiry-final"])
        yield* TestClock.adjust("1 minute")
        assert.deepStrictEqual(yield* scheduler.lock("other", "10 seconds", ["expiry-final"]), [])
        const failed = yield* getTask(task.id)
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.retryCount, 1)
        assert.include(failed.lastError, "lock expired")
        assert.deepStrictEqual(failed.completedAt, new Date(t0 + 60_000))
      }),
    )

    it.effect("heartbeat extends the lock; after a cancel it says so", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const task = yield* create("beat")
        const t0 = yield* TestClock.currentTimeMillis
        yield* scheduler.lock("r", "10 seconds", ["beat"])
        yield* TestClock.adjust("8 seconds")
        assert.strictEqual(yield* scheduler.heartbeat(task.id, "r", "10 seconds"), "running")
        assert.deepStrictEqual((yield* getTask(task.id)).lockExpiresAt, new Date(t0 + 18_000))
        yield* TestClock.adjust("8 seconds") // 16s: expired without the heartbeat
        assert.deepStrictEqual(yield* scheduler.lock("other", "10 seconds", ["beat"]), [])
        assert.strictEqual((yield* getTask(task.id)).lockedBy, "r")
        const cancelled = yield* scheduler.cancel(task.id)
        assert.strictEqual(cancelled.status, "cancelled")
        assert.strictEqual(yield* scheduler.heartbeat(task.id, "r", "10 seconds"), "cancelled")
        assert.strictEqual(
          (yield* Effect.flip(scheduler.release(task.id, "r", "completed")))._tag,
          "TaskNotHeldError",
        )
        assert.strictEqual((yield* getTask(task.id)).status, "cancelled")
      }),
    )

    it.effect(
      "cancel: pending and running tasks are never run again; finished ones stay; unknown ids are not found",
      () =>
        Effect.gen(function* () {
          const scheduler = yield* Scheduler
          const pending = yield* create("cancel")
          const running = yield* create("cancel")
          yield* scheduler.cancel(pending.id)
          const t0 = yield* TestClock.currentTimeMillis
          const [taken] = yield* scheduler.lock("r", "10 seconds", ["cancel"])
          assert.strictEqual(taken?.id, running.id)
          yield* TestClock.adjust("2 seconds")
          const cancelled = yield* scheduler.cancel(running.id)
          assert.strictEqual(cancelled.status, "cancelled")
          assert.deepStrictEqual(cancelled.completedAt, new Date(t0 + 2000))
          yield* TestClock.adjust("1 hour") // its lock would have expired: it is not reclaimed
          assert.deepStrictEqual(yield* scheduler.lock("r", "10 seconds", ["cancel"]), [])
          assert.strictEqual((yield* getTask(running.id)).status, "cancelled")
          assert.strictEqual((yield* getTask(running.id)).retryCount, 0)
          assert.strictEqual((yield* getTask(pending.id)).status, "cancelled")

          const done = yield* create("cancel")
          yield* scheduler.lock("r", "10 seconds", ["cancel"])
          yield* scheduler.release(done.id, "r", "completed")
          assert.strictEqual((yield* scheduler.cancel(done.id)).status, "completed")
          const missing = yield* Effect.flip(scheduler.cancel("cancel-missing"))
          assert.strictEqual(missing._tag, "TaskNotFoundError")
          assert.include(missing.message, "not found")
        }),
    )

    it.effect("nextDue: when the earliest pending task of the names is due", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const t0 = yield* TestClock.currentTimeMillis
        assert.isTrue(Option.isNone(yield* scheduler.nextDue(["next-a", "next-b"])))
        yield* create("next-a", { delay: "10 minutes" })
        const soon = yield* create("next-b", { delay: "5 minutes" })
        yield* create("next-c", { delay: "1 minute" })
        assert.deepStrictEqual(
          yield* scheduler.nextDue(["next-a", "next-b"]),
          Option.some(new Date(t0 + 5 * minute)),
        )
        assert.deepStrictEqual(yield* scheduler.nextDue(["next-a"]), Option.some(new Date(t0 + 10 * minute)))
        assert.isTrue(Option.isNone(yield* scheduler.nextDue([])))
        yield* scheduler.cancel(soon.id)
        assert.deepStrictEqual(
          yield* scheduler.nextDue(["next-a", "next-b"]),
          Option.some(new Date(t0 + 10 * minute)),
        )
      }),
    )

    it.effect("lock, release and heartbeat refuse bad arguments", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const failures: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>> = [
          scheduler.lock("", "1 minute"),
          scheduler.lock("r", 0),
          scheduler.lock("r", "1 minute", [""]),
          scheduler.lock("r", "1 minute", ["x"], 0),
          scheduler.release("", "r", "completed"),
          scheduler.release("x", "r", "done" as never),
          scheduler.heartbeat("x", "r", -1),
          scheduler.get(""),
          scheduler.cancel(""),
          scheduler.nextDue([""]),
        ]
        for (const failure of failures) {
          assert.strictEqual((yield* Effect.flip(failure))._tag, "InvalidArgumentError")
        }
      }),
    )

    // --- production queue features: keys, priority, bulk, administration ------------------

    it.effect("replace (the default) updates the pending task with the key in place: debounce", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const now = yield* TestClock.currentTimeMillis
        const first = yield* create("keyed", { key: "debounce", delay: "5 minutes" }, 1)
        assert.strictEqual(first.key, "debounce")
        assert.strictEqual(first.priority, 0)
        const again = yield* create(
          "keyed",
          { key: "debounce", delay: "10 minutes", priority: 4, maxRetries: 7, timeout: "20 seconds" },
          2,
        )
        assert.strictEqual(again.id, first.id)
        assert.deepStrictEqual(again.payload, { n: 2 })
        assert.deepStrictEqual(again.scheduledFor, new Date(now + 10 * minute))
        assert.strictEqual(again.priority, 4)
        assert.strictEqual(again.maxRetries, 7)
        assert.strictEqual(again.timeoutSeconds, 20)
        assert.strictEqual(again.status, "pending")
        assert.deepStrictEqual(again.created, first.created)
        assert.deepStrictEqual(yield* getTask(first.id), again)
        const keyed = (yield* scheduler.list({ name: "keyed" })).filter((t) => t.key === "debounce")
        assert.deepStrictEqual(idsOf(keyed), [first.id])
        // another key, and no key, are other tasks
        const other = yield* create("keyed", { key: "debounce-2" })
        const plain = yield* create("keyed")
        assert.notStrictEqual(other.id, first.id)
        assert.isUndefined(plain.key)
        for (const id of [first.id, other.id, plain.id]) yield* scheduler.cancel(id)
      }),
    )

    it.effect("preserve-run-at updates the payload but keeps scheduledFor: throttle", () =>
      Effect.gen(function* () {
        const now = yield* TestClock.currentTimeMillis
        const first = yield* create(
          "keyed",
          { key: "throttle", keyMode: "preserve-run-at", delay: "1 minute" },
          1,
        )
        const again = yield* create(
          "keyed",
          { key: "throttle", keyMode: "preserve-run-at", delay: "1 hour", priority: 2 },
          2,
        )
        assert.strictEqual(again.id, first.id)
        assert.deepStrictEqual(again.payload, { n: 2 })
        assert.deepStrictEqual(again.scheduledFor, new Date(now + minute))
        assert.strictEqual(again.priority, 2)
        yield* Effect.flatMap(Scheduler, (s) => s.cancel(first.id))
      }),
    )

    it.effect("dedupe changes nothing while a task with the key is pending or running", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const first = yield* create("dedupe", { key: "once", keyMode: "dedupe", delay: "1 minute" }, 1)
        const again = yield* create("dedupe", { key: "once", keyMode: "dedupe", priority: 9 }, 2)
        assert.deepStrictEqual(again, first)
        yield* TestClock.adjust("1 minute")
        const [taken] = yield* scheduler.lock("dedupe-runner", "1 hour", ["dedupe"])
        assert.strictEqual(taken?.id, first.id)
        const whileRunning = yield* create("dedupe", { key: "once", keyMode: "dedupe" }, 3)
        assert.strictEqual(whileRunning.id, first.id)
        assert.strictEqual(whileRunning.status, "running")
        assert.strictEqual((yield* scheduler.list({ name: "dedupe" })).length, 1)
        yield* scheduler.release(first.id, "dedupe-runner", "completed")
        // once it finished, the key is free again
        const next = yield* create("dedupe", { key: "once", keyMode: "dedupe" }, 4)
        assert.notStrictEqual(next.id, first.id)
        assert.deepStrictEqual(next.payload, { n: 4 })
        yield* scheduler.cancel(next.id)
      }),
    )

    it.effect("a running task with the key is left alone: replace creates the new task beside it", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const first = yield* create("beside", { key: "beside", maxRetries: 2 }, 1)
        const [taken] = yield* scheduler.lock("beside-runner", "1 hour", ["beside"])
        assert.strictEqual(taken?.id, first.id)
        const second = yield* create("beside", { key: "beside" }, 2)
        assert.notStrictEqual(second.id, first.id)
        assert.strictEqual(second.status, "pending")
        assert.strictEqual(second.key, "beside")
        const running = yield* getTask(first.id)
        assert.strictEqual(running.status, "running")
        assert.deepStrictEqual(running.payload, { n: 1 })
        // it gave its key up to the new task: failing and becoming pending again collides with nothing
        assert.isUndefined(running.key)
        yield* scheduler.release(first.id, "beside-runner", "failed", "boom")
        assert.strictEqual((yield* getTask(first.id)).status, "pending")
        const third = yield* create("beside", { key: "beside" }, 3)
        assert.strictEqual(third.id, second.id)
        assert.deepStrictEqual((yield* getTask(second.id)).payload, { n: 3 })
        for (const id of [first.id, second.id]) yield* scheduler.cancel(id)
      }),
    )

    it.effect("priority: higher first, then the earlier scheduledFor; never a future task", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        yield* TestClock.adjust("1 hour")
        const now = yield* TestClock.currentTimeMillis
        const early = yield* create("prio", { scheduledFor: new Date(now - 30 * minute) })
        const late = yield* create("prio", { scheduledFor: new Date(now - 10 * minute) })
        const high = yield* create("prio", { priority: 5 })
        const highEarly = yield* create("prio", { priority: 5, scheduledFor: new Date(now - minute) })
        const negative = yield* create("prio", { priority: -1, scheduledFor: new Date(now - 50 * minute) })
        yield* create("prio", { priority: 100, delay: "1 minute" })
        const order = idsOf(yield* scheduler.lock("prio-runner", "1 hour", ["prio"], 3))
        assert.deepStrictEqual(order, [highEarly.id, high.id, early.id])
        assert.deepStrictEqual(idsOf(yield* scheduler.lock("prio-runner", "1 hour", ["prio"], 5)), [
          late.id,
          negative.id,
        ])
        assert.deepStrictEqual(yield* scheduler.lock("prio-runner", "1 hour", ["prio"]), [])
        for (const id of [early.id, late.id, high.id, highEarly.id, negative.id]) {
          yield* scheduler.release(id, "prio-runner", "completed")
        }
        for (const task of yield* scheduler.list({ name: "prio", status: "pending" }))
          yield* scheduler.cancel(task.id)
        for (const bad of [1.5, 2 ** 31, Number.NaN]) {
          const error = yield* Effect.flip(Task.make("prio", {}, { priority: bad }))
          assert.strictEqual(error._tag, "InvalidArgumentError")
          assert.match(error.message, /priority must be an integer/)
        }
        const badMode = yield* Effect.flip(Task.make("prio", {}, { key: "k", keyMode: "nope" as "dedupe" }))
        assert.match(badMode.message, /key mode must be one of replace, preserve-run-at, dedupe/)
        assert.match((yield* Effect.flip(Task.make("prio", {}, { key: "" }))).message, /task key/)
      }),
    )

    it.effect("createMany stores the tasks in one atomic write, keys and priorities honoured", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        assert.deepStrictEqual(yield* scheduler.createMany([]), [])
        const existing = yield* create("bulk", { key: "bulk-key", delay: "1 hour" }, 0)
        const tasks = [
          yield* Task.make("bulk", { n: 1 }),
          yield* Task.make("bulk", { n: 2 }, { key: "bulk-key", priority: 3 }),
          yield* Task.make("bulk", { n: 3 }, { priority: 7 }),
          yield* Task.make("bulk", { n: 4 }, { key: "bulk-new", keyMode: "dedupe" }),
          yield* Task.make("bulk", { n: 5 }, { key: "bulk-new", keyMode: "dedupe" }),
        ]
        const stored = yield* scheduler.createMany(tasks)
        assert.deepStrictEqual(
          stored.map((t) => [t.payload, t.priority, t.key]),
          [
            [{ n: 1 }, 0, undefined],
            [{ n: 2 }, 3, "bulk-key"],
            [{ n: 3 }, 7, undefined],
            [{ n: 4 }, 0, "bulk-new"],
            [{ n: 4 }, 0, "bulk-new"],
          ],
        )
        assert.strictEqual(stored[1]?.id, existing.id)
        assert.strictEqual(stored[4]?.id, tasks[3]?.id)
        assert.deepStrictEqual(yield* getTask(stored[0]!.id), stored[0])
        const all = yield* scheduler.list({ name: "bulk" })
        assert.strictEqual(all.length, 4)
        // newest first: inserted in the order given
        assert.deepStrictEqual(idsOf(all), [tasks[3]!.id, tasks[2]!.id, tasks[0]!.id, existing.id])
        const taken = yield* scheduler.lock("bulk-runner", "1 hour", ["bulk"], 10)
        // the replaced task is due now (the new task's scheduledFor) with priority 3
        assert.deepStrictEqual(idsOf(taken), [tasks[2]!.id, existing.id, tasks[0]!.id, tasks[3]!.id])

        // one taken id: nothing of the batch is written
        const before = (yield* scheduler.list()).length
        const fresh = yield* Task.make("bulk", { n: 6 }, { key: "bulk-fresh" })
        const plain = yield* Task.make("bulk", { n: 7 })
        const dup = yield* Effect.flip(scheduler.createMany([plain, fresh, tasks[0]!]))
        assert.strictEqual(dup._tag, "DuplicateTaskError")
        assert.strictEqual((dup as { id?: string }).id, tasks[0]!.id)
        const keyedDup = yield* Effect.flip(
          scheduler.createMany([plain, yield* Task.make("bulk", 1, { id: tasks[2]!.id, key: "bulk-x" })]),
        )
        assert.strictEqual(keyedDup._tag, "DuplicateTaskError")
        const twice = yield* Effect.flip(scheduler.createMany([plain, plain]))
        assert.strictEqual(twice._tag, "DuplicateTaskError")
        assert.strictEqual((yield* scheduler.list()).length, before)
        assert.isTrue(Option.isNone(yield* scheduler.get(fresh.id)))
        for (const task of taken) yield* scheduler.release(task.id, "bulk-runner", "completed")
      }),
    )

    it.effect("retry: a failed or cancelled task back to pending, due now, retryCount 0", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const task = yield* create("retry-me", { maxRetries: 0 })
        yield* scheduler.lock("retry-runner", "1 hour", ["retry-me"])
        yield* scheduler.release(task.id, "retry-runner", "failed", "boom")
        assert.strictEqual((yield* getTask(task.id)).status, "failed")
        yield* TestClock.adjust("3 minutes")
        const now = yield* TestClock.currentTimeMillis
        const retried = yield* scheduler.retry(task.id)
        assert.strictEqual(retried.status, "pending")
        assert.strictEqual(retried.retryCount, 0)
        assert.deepStrictEqual(retried.scheduledFor, new Date(now))
        assert.isNull(retried.lockedBy)
        assert.isUndefined(retried.completedAt)
        assert.strictEqual(retried.lastError, "boom")
        assert.deepStrictEqual(yield* getTask(task.id), retried)
        assert.deepStrictEqual(idsOf(yield* scheduler.lock("retry-runner", "1 hour", ["retry-me"])), [
          task.id,
        ])

        const running = yield* Effect.flip(scheduler.retry(task.id))
        assert.strictEqual(running._tag, "TaskNotRetryableError")
        assert.strictEqual(
          running.message,
          `task "${task.id}" is running: only a failed or cancelled task can be retried`,
        )
        yield* scheduler.release(task.id, "retry-runner", "completed")
        assert.strictEqual((yield* Effect.flip(scheduler.retry(task.id)))._tag, "TaskNotRetryableError")
        const pending = yield* create("retry-me", { delay: "1 hour" })
        assert.match((yield* Effect.flip(scheduler.retry(pending.id))).message, /is pending/)
        yield* scheduler.cancel(pending.id)
        assert.strictEqual((yield* scheduler.retry(pending.id)).status, "pending")
        yield* scheduler.cancel(pending.id)
        const missing = yield* Effect.flip(scheduler.retry("no-such-task"))
        assert.strictEqual(missing._tag, "TaskNotFoundError")
        assert.strictEqual(missing.message, `task "no-such-task" not found`)

        // a cancelled keyed task whose key another pending task holds now stays cancelled
        const old = yield* create("retry-me", { key: "retry-key", delay: "1 hour" })
        yield* scheduler.cancel(old.id)
        const holder = yield* create("retry-me", { key: "retry-key", delay: "1 hour" })
        const taken = yield* Effect.flip(scheduler.retry(old.id))
        assert.strictEqual(
          taken.message,
          `task "${old.id}" cannot be retried: task "${holder.id}" holds its key "retry-key"`,
        )
        assert.strictEqual((yield* getTask(old.id)).status, "cancelled")
        yield* scheduler.cancel(holder.id)
        assert.strictEqual((yield* scheduler.retry(old.id)).key, "retry-key")
        yield* scheduler.cancel(old.id)
      }),
    )

    it.effect("prune deletes finished tasks that finished longer ago; stats counts", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        // the other tests' tasks, out of the way: stats below sees only this test's
        for (const task of yield* scheduler.list()) {
          if (task.status === "pending" || task.status === "running") yield* scheduler.cancel(task.id)
        }
        // (each test's clock starts again: the others' tasks finished within days of it)
        yield* TestClock.adjust("3650 days")
        const finished = (yield* scheduler.list()).length
        assert.strictEqual(yield* scheduler.prune({ olderThan: "1 hour" }), finished)
        assert.deepStrictEqual(yield* scheduler.stats(), {
          total: 0,
          byStatus: { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0 },
          byName: {},
          oldestDueAgeMs: null,
        })

        const done = yield* create("prune-a")
        const failed = yield* create("prune-a", { maxRetries: 0 })
        const cancelled = yield* create("prune-b")
        yield* scheduler.lock("prune-runner", "1 hour", ["prune-a"], 2)
        yield* scheduler.release(done.id, "prune-runner", "completed")
        yield* scheduler.release(failed.id, "prune-runner", "failed", "boom")
        yield* scheduler.cancel(cancelled.id)
        yield* TestClock.adjust("2 hours")
        const recent = yield* create("prune-b")
        yield* scheduler.cancel(recent.id)
        const due = yield* create("prune-b")
        yield* create("prune-b", { delay: "1 hour" })
        yield* TestClock.adjust("90 seconds")
        const running = yield* create("prune-c")
        yield* scheduler.lock("prune-runner", "1 hour", ["prune-c"])

        assert.deepStrictEqual(yield* scheduler.stats(), {
          total: 7,
          byStatus: { pending: 2, running: 1, completed: 1, failed: 1, cancelled: 2 },
          byName: {
            "prune-a": { completed: 1, failed: 1 },
            "prune-b": { cancelled: 2, pending: 2 },
            "prune-c": { running: 1 },
          },
          oldestDueAgeMs: 90_000,
        })
        assert.strictEqual(yield* scheduler.prune({ olderThan: "1 hour", statuses: ["completed"] }), 1)
        assert.strictEqual(yield* scheduler.prune({ olderThan: "3 hours" }), 0)
        assert.strictEqual(yield* scheduler.prune({ olderThan: "1 hour" }), 2)
        assert.deepStrictEqual((yield* scheduler.list()).map((t) => t.status).sort(), [
          "cancelled",
          "pending",
          "pending",
          "running",
        ])
        assert.isTrue(Option.isNone(yield* scheduler.get(done.id)))
        yield* scheduler.cancel(due.id)
        assert.strictEqual((yield* scheduler.stats()).oldestDueAgeMs, null)
        yield* scheduler.release(running.id, "prune-runner", "completed")

        const bad = yield* Effect.flip(
          scheduler.prune({ olderThan: "1 hour", statuses: ["pending" as "completed"] }),
        )
        assert.strictEqual(bad._tag, "InvalidArgumentError")
        assert.strictEqual(
          bad.message,
          `prune status must be one of completed, failed, cancelled, got "pending"`,
        )
        assert.strictEqual(
          (yield* Effect.flip(scheduler.prune({ olderThan: 0 })))._tag,
          "InvalidArgumentError",
        )
      }),
    )

    it.effect("outbox: Mutation.task commits with the batch's key writes, or not at all", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const scheduler = yield* Scheduler
        const first = yield* Task.make("outbox", { order: 1 }, { id: "outbox-1", priority: 5 })
        assert.deepStrictEqual(
          yield* store.mutateAll([
            Mutation.put("outbox/order-1", 0, { state: "placed" }),
            Mutation.task(first),
          ]),
          [1, 1],
        )
        const stored = yield* getTask("outbox-1")
        assert.deepStrictEqual(
          [stored.status, stored.name, stored.payload, stored.priority],
          ["pending", "outbox", { order: 1 }, 5],
        )
        // a failed version check, a non-number increment, a taken task id: no task, no key write
        const lost = yield* Task.make("outbox", { order: 2 }, { id: "outbox-2" })
        const mismatch = yield* Effect.flip(
          store.mutateAll([
            Mutation.put("outbox/order-2", 0, { state: "placed" }),
            Mutation.task(lost),
            Mutation.check("outbox/order-1", 7),
          ]),
        )
        assert.instanceOf(mismatch, VersionMismatchError)
        const notANumber = yield* Effect.flip(
          store.mutateAll([Mutation.task(lost), Mutation.increment("outbox/order-1")]),
        )
        assert.strictEqual(notANumber._tag, "InvalidArgumentError")
        const taken = yield* Effect.flip(
          store.mutateAll([Mutation.put("outbox/order-2", 0, 1), Mutation.task(lost), Mutation.task(first)]),
        )
        assert.strictEqual(taken._tag, "StoreError")
        const twice = yield* Effect.flip(store.mutateAll([Mutation.task(lost), Mutation.task(lost)]))
        assert.strictEqual(twice.message, 'the batch creates task "outbox-2" twice')
        assert.isTrue(Option.isNone(yield* scheduler.get("outbox-2")))
        assert.isTrue(Option.isNone(yield* store.get("outbox/order-2")))
        // keys honoured like create: the second replaces the pending first
        for (const v of [1, 2]) {
          yield* store.mutateAll([
            Mutation.increment("outbox/version"),
            Mutation.task(yield* Task.make("outbox", { v }, { key: "outbox-key" })),
          ])
        }
        const keyed = (yield* scheduler.list({ name: "outbox" })).filter((task) => task.key === "outbox-key")
        assert.deepStrictEqual(
          keyed.map((task) => [task.status, task.payload]),
          [["pending", { v: 2 }]],
        )
        // priorities honoured: the priority 5 task is taken first
        const taken2 = yield* scheduler.lock("outbox-runner", "1 minute", ["outbox"], 1)
        assert.deepStrictEqual(idsOf(taken2), ["outbox-1"])
        yield* store.deletePrefix("outbox/")
      }),
    )

    it.scoped("outbox: a task created by mutateAll wakes this process's waiters after the commit", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const scheduler = yield* Scheduler
        const signal = yield* scheduler.wakeups
        // key writes alone wake no task waiter
        const idle = yield* Effect.fork(signal.wait("100 millis"))
        yield* store.mutateAll([Mutation.put("outbox-wake/a", -1, 0)])
        yield* TestClock.adjust("100 millis")
        assert.isFalse(yield* Fiber.join(idle))
        const waiting = yield* Effect.fork(signal.wait("1 hour"))
        yield* store.mutateAll([
          Mutation.put("outbox-wake/a", -1, 1),
          Mutation.task(yield* Task.make("outbox-wake", {})),
        ])
        assert.isTrue(yield* Fiber.join(waiting))
        yield* store.deletePrefix("outbox-wake/")
      }),
    )

    it.scoped("create wakes this process's waiters", () =>
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const signal = yield* scheduler.wakeups
        // without a change, a waiter waits out its timeout (on the TestClock)
        // (briefly: on a SQLite file, the check for other processes' writes runs on the TestClock too)
        const idle = yield* Effect.fork(signal.wait("100 millis"))
        yield* TestClock.adjust("100 millis")
        assert.isFalse(yield* Fiber.join(idle))
        const waiting = yield* Effect.fork(signal.wait("1 hour"))
        yield* create("wake")
        assert.isTrue(yield* Fiber.join(waiting))
      }),
    )
  })
