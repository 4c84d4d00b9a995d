/**
 * The recurring schedules' conformance suite (`Cron.ts`), the same expectations on every
 * backend, on the `TestClock`: schedules stored and checked; each tick one task (id and key
 * `cron:<id>:<tick>`, due at the tick, payload plus `_cron`), also with two tickers at once;
 * a daily schedule in Europe/Berlin across both DST changes; the backfill window; a schedule
 * changed or deleted between ticks; the runner's `cron` option.
 *
 * The ticker is driven by moving the TestClock; after each move the test waits (in real time)
 * until every ticker is asleep again, i.e. has finished its pass: `settle`. The TestClock is
 * shared by the tests and keeps the sleeps of interrupted fibers, so every test starts later
 * than the previous one ended (plus its tickers' refresh interval).
 */
import { assert, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as Cron from "../src/Cron.js"
import { Scheduler, type Task } from "../src/Scheduler.js"
import * as TaskRunner from "../src/TaskRunner.js"

const at = (iso: string) => Date.parse(iso)

/** Waits (real time) until `sleepers` fibers sleep on the TestClock past now: their pass is done. */
const settle = (sleepers = 1) =>
  Effect.gen(function* () {
    for (let i = 0; i < 2000; i++) {
      const now = yield* TestClock.currentTimeMillis
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.size(Chunk.filter(sleeps, (t) => t > now)) >= sleepers) return
      yield* TestServices.provideLive(Effect.sleep("5 millis"))
    }
    assert.fail("the ticker did not finish its pass")
  })

/** Moves the clock to `iso` in steps of at most `step`, letting the tickers finish each pass. */
const moveTo = (iso: string, step: Duration.DurationInput = "1 hour", sleepers = 1) =>
  Effect.gen(function* () {
    const target = at(iso)
    const stepMs = Duration.toMillis(step)
    for (;;) {
      const now = yield* TestClock.currentTimeMillis
      if (now >= target) return
      yield* TestClock.setTime(Math.min(target, now + stepMs))
      yield* settle(sleepers)
    }
  })

const tasksNamed = (name: string) =>
  Effect.flatMap(Scheduler, (scheduler) =>
    Effect.map(scheduler.list({ name }), (tasks) =>
      [...tasks].sort((a, b) => a.scheduledFor.getTime() - b.scheduledFor.getTime()),
    ),
  )

const ticksOf = (tasks: ReadonlyArray<Task>) => tasks.map((task) => task.scheduledFor.toISOString())

/** A ticker that reads the schedules at least every `refreshInterval` (the clock moves in bigger steps here). */
const startTicker = (refreshInterval: Duration.DurationInput, sleepers = 1) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(Cron.ticker({ refreshInterval }))
    yield* settle(sleepers)
    return fiber
  })

export const cronSuite = (name: string, backend: Layer.Layer<Scheduler | Cron.CronStorage, unknown>) =>
  layer(backend, { timeout: Duration.minutes(2) })(name, (it) => {
    it.effect("set, get, list and remove; a bad expression, zone or payload changes nothing", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2025-12-10T10:15:00Z"))
        const set = yield* Cron.set({
          id: "report",
          cron: "0 8 * * 1-5",
          name: "send-report",
          payload: { to: "ops" },
          timezone: "Europe/Berlin",
          backfill: "1 hour",
        })
        assert.strictEqual(set.nextTick.toISOString(), "2025-12-11T07:00:00.000Z")
        assert.strictEqual(set.timezone, "Europe/Berlin")
        assert.strictEqual(Duration.toMillis(set.backfill!), 3_600_000)
        assert.strictEqual(set.lastTick.toISOString(), "2025-12-10T10:15:00.000Z")
        const got = Option.getOrThrow(yield* Cron.get("report"))
        assert.deepStrictEqual(
          {
            id: got.id,
            cron: got.cron,
            name: got.name,
            payload: got.payload,
            next: got.nextTick.toISOString(),
          },
          {
            id: "report",
            cron: "0 8 * * 1-5",
            name: "send-report",
            payload: { to: "ops" },
            next: "2025-12-11T07:00:00.000Z",
          },
        )
        const bad = [
          yield* Effect.flip(Cron.set({ id: "report", cron: "61 * * * *", name: "x" })),
          yield* Effect.flip(Cron.set({ id: "report", cron: "* * * *", name: "x" })),
          yield* Effect.flip(
            Cron.set({ id: "report", cron: "0 * * * *", name: "x", timezone: "Mars/Olympus" }),
          ),
          yield* Effect.flip(Cron.set({ id: "report", cron: "0 * * * *", name: "x", payload: [1] })),
          yield* Effect.flip(Cron.set({ id: "", cron: "0 * * * *", name: "x" })),
        ]
        assert.deepStrictEqual(
          bad.map((error) => error._tag),
          Array(5).fill("InvalidArgumentError"),
        )
        assert.match(bad[0]!.message, /^invalid cron expression "61 \* \* \* \*"/)
        assert.strictEqual(bad[2]!.message, `unknown time zone "Mars/Olympus"`)
        assert.strictEqual(Option.getOrThrow(yield* Cron.get("report")).name, "send-report")
        yield* Cron.set({ id: "another", cron: "*/5 * * * *", name: "poke" })
        assert.deepStrictEqual(
          (yield* Cron.list).map((s) => [s.id, s.timezone, s.backfill, s.payload]),
          [
            ["another", null, null, {}],
            ["report", "Europe/Berlin", Duration.millis(3_600_000), { to: "ops" }],
          ],
        )
        assert.isTrue(yield* Cron.remove("another"))
        assert.isFalse(yield* Cron.remove("another"))
        assert.isTrue(Option.isNone(yield* Cron.get("another")))
        assert.isTrue(yield* Cron.remove("report"))
      }),
    )

    it.effect("each tick becomes one task, due at the tick, even with two tickers", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2026-01-01T00:30:00Z"))
        yield* Cron.set({ id: "hourly", cron: "0 * * * *", name: "hourly-task", payload: { a: 1 } })
        const one = yield* startTicker("20 minutes")
        const two = yield* startTicker("20 minutes", 2)
        yield* moveTo("2026-01-01T03:30:00Z", "20 minutes", 2)
        const tasks = yield* tasksNamed("hourly-task")
        assert.deepStrictEqual(ticksOf(tasks), [
          "2026-01-01T01:00:00.000Z",
          "2026-01-01T02:00:00.000Z",
          "2026-01-01T03:00:00.000Z",
        ])
        const first = tasks[0]!
        assert.strictEqual(first.id, "cron:hourly:2026-01-01T01:00:00.000Z")
        assert.strictEqual(first.key, "cron:hourly:2026-01-01T01:00:00.000Z")
        assert.deepStrictEqual(first.payload, {
          a: 1,
          _cron: { id: "hourly", tick: "2026-01-01T01:00:00.000Z", backfilled: false },
        })
        assert.strictEqual(
          Option.getOrThrow(yield* Cron.get("hourly")).lastTick.toISOString(),
          "2026-01-01T03:00:00.000Z",
        )
        yield* Fiber.interrupt(one)
        yield* Fiber.interrupt(two)
        yield* Cron.remove("hourly")
      }),
    )

    it.effect("a daily 02:30 in Europe/Berlin: one task a day across both DST changes", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2026-03-27T12:00:00Z"))
        yield* Cron.set({ id: "berlin", cron: "30 2 * * *", name: "berlin-task", timezone: "Europe/Berlin" })
        const ticker = yield* startTicker("6 hours")
        yield* moveTo("2026-03-31T12:00:00Z", "6 hours")
        // 29 March: 02:30 does not exist (02:00 CET jumps to 03:00 CEST): the tick is at 03:30 CEST
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("berlin-task")), [
          "2026-03-28T01:30:00.000Z",
          "2026-03-29T01:30:00.000Z",
          "2026-03-30T00:30:00.000Z",
          "2026-03-31T00:30:00.000Z",
        ])
        yield* Fiber.interrupt(ticker)
        // 25 October: 02:30 happens twice (CEST, then CET): one task
        yield* TestClock.setTime(at("2026-10-23T12:00:00Z"))
        yield* Cron.set({
          id: "berlin",
          cron: "30 2 * * *",
          name: "berlin-autumn",
          timezone: "Europe/Berlin",
        })
        const autumn = yield* startTicker("6 hours")
        yield* moveTo("2026-10-27T12:00:00Z", "6 hours")
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("berlin-autumn")), [
          "2026-10-24T00:30:00.000Z",
          "2026-10-25T00:30:00.000Z",
          "2026-10-26T01:30:00.000Z",
          "2026-10-27T01:30:00.000Z",
        ])
        yield* Fiber.interrupt(autumn)
        yield* Cron.remove("berlin")
      }),
    )

    it.effect("ticks missed while no runner ran: made on start when at most backfill old", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2026-11-01T00:10:00Z"))
        yield* Cron.set({ id: "bf", cron: "0 * * * *", name: "bf-task", backfill: "3 hours" })
        yield* Cron.set({ id: "nobf", cron: "0 * * * *", name: "nobf-task" })
        // nobody runs until 05:30
        yield* TestClock.setTime(at("2026-11-01T05:30:00Z"))
        const ticker = yield* startTicker("1 hour")
        const backfilled = yield* tasksNamed("bf-task")
        assert.deepStrictEqual(ticksOf(backfilled), [
          "2026-11-01T03:00:00.000Z",
          "2026-11-01T04:00:00.000Z",
          "2026-11-01T05:00:00.000Z",
        ])
        assert.isTrue(backfilled.every((task) => (task.payload as any)._cron.backfilled === true))
        assert.deepStrictEqual(yield* tasksNamed("nobf-task"), [])
        yield* moveTo("2026-11-01T06:10:00Z")
        const later = yield* tasksNamed("bf-task")
        assert.strictEqual(later.length, 4)
        assert.deepStrictEqual((later[3]!.payload as any)._cron, {
          id: "bf",
          tick: "2026-11-01T06:00:00.000Z",
          backfilled: false,
        })
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("nobf-task")), ["2026-11-01T06:00:00.000Z"])
        yield* Fiber.interrupt(ticker)
        // down again until 08:30: a restart makes the missed ticks of the window, none twice
        yield* TestClock.setTime(at("2026-11-01T08:30:00Z"))
        const again = yield* startTicker("1 hour")
        const all = yield* tasksNamed("bf-task")
        assert.deepStrictEqual(
          all.map((task) => [
            task.scheduledFor.toISOString().slice(11, 16),
            (task.payload as any)._cron.backfilled,
          ]),
          [
            ["03:00", true],
            ["04:00", true],
            ["05:00", true],
            ["06:00", false],
            ["07:00", true],
            ["08:00", true],
          ],
        )
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("nobf-task")), ["2026-11-01T06:00:00.000Z"])
        yield* Fiber.interrupt(again)
        yield* Cron.remove("bf")
        yield* Cron.remove("nobf")
      }),
    )

    it.effect("a backfill of more ticks than one pass makes (1000) is made in several, none lost", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2026-11-15T00:00:00.500Z"))
        yield* Cron.set({ id: "many", cron: "* * * * * *", name: "many-task", backfill: "1100 seconds" })
        yield* TestClock.setTime(at("2026-11-15T00:20:00Z"))
        const ticker = yield* startTicker("1 hour")
        const ticks = ticksOf(yield* tasksNamed("many-task"))
        assert.strictEqual(ticks.length, 1101)
        assert.strictEqual(ticks[0], "2026-11-15T00:01:40.000Z")
        assert.strictEqual(ticks.at(-1), "2026-11-15T00:20:00.000Z")
        assert.isTrue(
          ticks.every((tick, i) => i === 0 || Date.parse(tick) - Date.parse(ticks[i - 1]!) === 1000),
        )
        yield* Fiber.interrupt(ticker)
        yield* Cron.remove("many")
      }),
    )

    it.effect("a schedule changed or deleted between ticks: the ticker follows it", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2026-12-01T00:10:00Z"))
        yield* Cron.set({ id: "chg", cron: "0 * * * *", name: "chg-old", payload: { v: 1 } })
        yield* Cron.set({ id: "del", cron: "0 * * * *", name: "del-task" })
        const ticker = yield* startTicker("10 minutes")
        yield* moveTo("2026-12-01T01:10:00Z", "10 minutes")
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("chg-old")), ["2026-12-01T01:00:00.000Z"])
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("del-task")), ["2026-12-01T01:00:00.000Z"])
        yield* Cron.set({ id: "chg", cron: "30 * * * *", name: "chg-new", payload: { v: 2 } })
        yield* Cron.remove("del")
        yield* moveTo("2026-12-01T03:10:00Z", "10 minutes")
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("chg-old")), ["2026-12-01T01:00:00.000Z"])
        const changed = yield* tasksNamed("chg-new")
        assert.deepStrictEqual(ticksOf(changed), ["2026-12-01T01:30:00.000Z", "2026-12-01T02:30:00.000Z"])
        assert.strictEqual((changed[0]!.payload as any).v, 2)
        assert.deepStrictEqual(ticksOf(yield* tasksNamed("del-task")), ["2026-12-01T01:00:00.000Z"])
        yield* Fiber.interrupt(ticker)
        yield* Cron.remove("chg")
      }),
    )

    it.effect("a task runner makes ticks into tasks and runs them (cron: true); cron: false makes none", () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(at("2027-01-01T00:00:30Z"))
        yield* Cron.set({ id: "run", cron: "0 * * * * *", name: "run-task", payload: { n: 1 } })
        const ran = yield* Deferred.make<Task>()
        const handlers = { "run-task": (task: Task) => Deferred.succeed(ran, task) }
        yield* TestClock.setTime(at("2027-01-01T00:00:58Z"))
        const off = yield* Effect.fork(TaskRunner.run({ handlers, cron: false, pollInterval: "1 second" }))
        for (let i = 0; i < 4; i++) {
          yield* TestServices.provideLive(Effect.sleep("100 millis"))
          yield* TestClock.adjust("1 second")
        }
        yield* TestServices.provideLive(Effect.sleep("300 millis"))
        assert.deepStrictEqual(yield* tasksNamed("run-task"), [])
        yield* Fiber.interrupt(off)
        yield* TestClock.setTime(at("2027-01-01T00:01:58Z"))
        const on = yield* Effect.fork(TaskRunner.run({ handlers, pollInterval: "1 second" }))
        yield* TestServices.provideLive(Effect.sleep("200 millis"))
        for (let i = 0; i < 200 && !(yield* Deferred.isDone(ran)); i++) {
          yield* TestClock.adjust("1 second")
          yield* TestServices.provideLive(Effect.sleep("20 millis"))
        }
        const task = yield* Deferred.await(ran)
        assert.strictEqual(task.id, "cron:run:2027-01-01T00:02:00.000Z")
        yield* Fiber.interrupt(on)
        yield* Cron.remove("run")
      }),
    )
  })
