/**
 * Recurring schedules: a cron expression (parsed and stepped with `effect/Cron`, in a named
 * time zone through `effect`'s `DateTime` zones) that becomes one task per tick.
 *
 * Schedules live in the database (`CronStorage`, provided by every backend layer). While a
 * task runner runs with `cron: true` (the default), its ticker (`tickWhileRunning`) makes each
 * due tick of each schedule into a task, due at the tick, named as the schedule says, with the
 * schedule's payload plus `_cron: { id, tick, backfilled }`. Exactly once, whichever runners
 * run, by construction:
 * - the task's id and key are `cron:<id>:<tick>` (the tick in RFC 3339): a second runner's
 *   create of the same tick is a `DuplicateTaskError` (or, while it is pending, the key's
 *   `dedupe`), which the ticker ignores;
 * - after creating it, the ticker moves the schedule's `last_tick` forward (never back), and
 *   only ticks after `last_tick` are made, so a tick is not made again after its task is pruned.
 *
 * A schedule starts at the time it is set (setting it again starts it again from then). Ticks
 * missed while no runner ran are made when the ticker starts if they are at most `backfill` old
 * (default none: only ticks from now on); those tasks say `backfilled: true`.
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as EffectCron from "effect/Cron"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Arg from "./Arguments.js"
import { type CronSchedule, CronStorage } from "./internal/cronStorage.js"
import { Scheduler, Task } from "./Scheduler.js"
import { InvalidArgumentError, type StoreError } from "./Store.js"

export {
  type CheckedSchedule,
  type CronSchedule,
  CronStorage,
  type CronStorageService,
} from "./internal/cronStorage.js"

/** A schedule with its next tick after now. */
export interface CronScheduleInfo extends CronSchedule {
  readonly nextTick: Date
}

/** What `set` takes. */
export interface CronOptions {
  readonly id: string
  readonly cron: string
  readonly name: string
  /** A JSON object (default `{}`). */
  readonly payload?: unknown
  /** An IANA zone such as `Europe/Berlin` (default UTC). */
  readonly timezone?: string | undefined
  /** Make missed ticks this young when a runner starts (default: none). */
  readonly backfill?: Duration.DurationInput | undefined
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

const invalid = (message: string) => new InvalidArgumentError({ message })

/** The expression in the zone (`null`: UTC), or why not. */
export const parse = (
  cron: string,
  timezone: string | null,
): Either.Either<EffectCron.Cron, InvalidArgumentError> => {
  let zone: DateTime.TimeZone | undefined
  if (timezone !== null) {
    const named = DateTime.zoneMakeNamed(timezone)
    if (Option.isNone(named)) return Either.left(invalid(`unknown time zone "${timezone}"`))
    zone = named.value
  }
  return Either.mapLeft(EffectCron.parse(cron, zone), (error) =>
    invalid(`invalid cron expression "${cron}": ${error.message}`),
  )
}

/** The first tick after `after` (epoch ms). */
export const nextTick = (cron: EffectCron.Cron, after: number): Date => EffectCron.next(cron, new Date(after))

const decodeSet = Arg.args({
  id: Arg.name("cron schedule id"),
  cron: Arg.name("cron expression"),
  name: Arg.TaskName,
  timezone: Arg.optional(Arg.name("time zone")),
  backfill: Arg.optional(Arg.Millis),
})

const withNext = (schedule: CronSchedule, now: number): CronScheduleInfo => {
  const cron = parse(schedule.cron, schedule.timezone)
  // a stored schedule was checked when set; an unreadable one has no next tick
  return { ...schedule, nextTick: Either.isRight(cron) ? nextTick(cron.right, now) : new Date(Number.NaN) }
}

// ---------------------------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------------------------

/**
 * Creates or replaces the schedule `id` (it starts from now: ticks before are never made).
 * A bad expression, an unknown zone or a payload that is not a JSON object changes nothing.
 */
export const set = (
  options: CronOptions,
): Effect.Effect<CronScheduleInfo, InvalidArgumentError | StoreError, CronStorage> =>
  Effect.gen(function* () {
    const checked = yield* decodeSet({
      id: options.id,
      cron: options.cron,
      name: options.name,
      timezone: options.timezone,
      backfill: options.backfill,
    })
    const timezone = checked.timezone ?? null
    yield* parse(checked.cron, timezone)
    const payload = options.payload ?? {}
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      return yield* invalid("the payload of a cron schedule must be a JSON object")
    }
    const text = Arg.jsonText(payload, "the payload")
    if (Either.isLeft(text)) return yield* invalid(text.left)
    const now = yield* Clock.currentTimeMillis
    const storage = yield* CronStorage
    const stored = yield* storage.upsert({
      id: checked.id,
      cron: checked.cron,
      name: checked.name,
      payload: text.right,
      timezone,
      backfillMs: checked.backfill ?? null,
      now,
    })
    return withNext(stored, now)
  })

/** The schedule `id`, with its next tick. */
export const get = (id: string): Effect.Effect<Option.Option<CronScheduleInfo>, StoreError, CronStorage> =>
  Effect.gen(function* () {
    const found = yield* (yield* CronStorage).get(id)
    const now = yield* Clock.currentTimeMillis
    return Option.map(found, (schedule) => withNext(schedule, now))
  })

/** Every schedule by id, each with its next tick. */
export const list: Effect.Effect<ReadonlyArray<CronScheduleInfo>, StoreError, CronStorage> = Effect.gen(
  function* () {
    const all = yield* (yield* CronStorage).list
    const now = yield* Clock.currentTimeMillis
    return all.map((schedule) => withNext(schedule, now))
  },
)

/** Deletes the schedule `id` (its tasks stay); whether there was one. */
export const remove = (id: string): Effect.Effect<boolean, StoreError, CronStorage> =>
  Effect.flatMap(CronStorage, (storage) => storage.remove(id))

// ---------------------------------------------------------------------------------------------
// The ticker
// ---------------------------------------------------------------------------------------------

/** The most ticks of one schedule made in one pass (the rest in the next ones). */
const maxTicksPerPass = 1000
/** How often the ticker reads the schedules again at most, so that changes are seen (default). */
export const defaultRefreshInterval = Duration.seconds(5)

export interface TickerOptions {
  /** The longest the ticker sleeps before it reads the schedules again (default 5 seconds). */
  readonly refreshInterval?: Duration.DurationInput | undefined
}

/** The deterministic id (and key) of the task of a tick. */
export const taskIdOf = (id: string, tick: Date): string => `cron:${id}:${tick.toISOString()}`

/**
 * One pass: makes the due ticks of every schedule after `since` (epoch ms, exclusive; on the
 * first pass `null`: ticks at most `backfill` old) into tasks. Returns the time to wait until
 * the next tick of any schedule (at most `refreshInterval`).
 */
const pass = (since: number | null, startedAt: number, refreshMs: number) =>
  Effect.gen(function* () {
    const storage = yield* CronStorage
    const scheduler = yield* Scheduler
    const now = yield* Clock.currentTimeMillis
    const schedules = yield* storage.list
    let wait = refreshMs
    let complete = true
    for (const schedule of schedules) {
      const parsed = parse(schedule.cron, schedule.timezone)
      if (Either.isLeft(parsed)) {
        yield* Effect.logWarning("cron schedule cannot be read; skipped").pipe(
          Effect.annotateLogs({ cron: schedule.id, error: parsed.left.message }),
        )
        continue
      }
      const cron = parsed.right
      const window =
        since ?? now - 1 - (schedule.backfill === null ? 0 : Duration.toMillis(schedule.backfill))
      let after = Math.max(schedule.lastTick.getTime(), window)
      let made = 0
      for (; made < maxTicksPerPass; made++) {
        const tick = nextTick(cron, after)
        if (tick.getTime() > now) break
        yield* makeTask(scheduler, schedule, tick, tick.getTime() < startedAt)
        yield* storage.advance(schedule.id, tick.getTime())
        after = tick.getTime()
      }
      if (made === maxTicksPerPass) {
        // more due than one pass makes: go on at once, from the same window
        complete = false
        wait = 0
      } else {
        wait = Math.min(wait, nextTick(cron, Math.max(after, now)).getTime() - now)
      }
    }
    return { since: complete ? now : since, wait }
  })

const makeTask = (
  scheduler: Context.Tag.Service<Scheduler>,
  schedule: CronSchedule,
  tick: Date,
  backfilled: boolean,
) =>
  Effect.gen(function* () {
    const id = taskIdOf(schedule.id, tick)
    const task = yield* Task.make(
      schedule.name,
      { ...schedule.payload, _cron: { id: schedule.id, tick: tick.toISOString(), backfilled } },
      { id, key: id, keyMode: "dedupe", scheduledFor: tick },
    )
    yield* scheduler.create(task).pipe(Effect.catchTag("DuplicateTaskError", () => Effect.void))
    yield* Effect.logDebug("cron tick made into a task").pipe(
      Effect.annotateLogs({ cron: schedule.id, task: id }),
    )
  })

/**
 * Makes the ticks of every schedule into tasks until interrupted (what a task runner with
 * `cron: true` forks: `tickWhileRunning`). It sleeps until the next tick of any schedule, at
 * most `refreshInterval`. Database failures are logged and retried; it never fails.
 */
export const ticker = (options: TickerOptions = {}): Effect.Effect<never, never, CronStorage | Scheduler> =>
  Effect.gen(function* () {
    const refreshMs = Math.max(1, Duration.toMillis(options.refreshInterval ?? defaultRefreshInterval))
    const startedAt = yield* Clock.currentTimeMillis
    let since: number | null = null
    for (;;) {
      const outcome: Option.Option<{ readonly since: number | null; readonly wait: number }> = yield* pass(
        since,
        startedAt,
        refreshMs,
      ).pipe(
        Effect.map(Option.some),
        Effect.catchAllCause((cause) =>
          Effect.as(Effect.logWarning("cron ticker failed; retrying", cause), Option.none()),
        ),
      )
      if (Option.isSome(outcome)) {
        since = outcome.value.since
        yield* Effect.sleep(Duration.millis(outcome.value.wait))
      } else {
        yield* Effect.sleep(Duration.seconds(1))
      }
    }
  })

/** The ticker with its default options. */
export const tickWhileRunning: Effect.Effect<never, never, CronStorage | Scheduler> = ticker()
