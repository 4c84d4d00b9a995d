/**
 * The recurring schedules' storage service (see `Cron.ts`): its tag and models, apart from
 * `Cron.ts` so that the backend layers provide it without loading `effect/Cron`.
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { StoreError } from "../Store.js"

/** A schedule as stored. */
export interface CronSchedule {
  readonly id: string
  /** The cron expression (5 fields, or 6 with seconds first). */
  readonly cron: string
  /** The task name (the handler that runs its tasks). */
  readonly name: string
  /** The JSON object each task's payload starts from. */
  readonly payload: Readonly<Record<string, unknown>>
  /** The IANA time zone the expression is read in; `null`: UTC. */
  readonly timezone: string | null
  /** How old a missed tick may be and still be made when a runner starts; `null`: none. */
  readonly backfill: Duration.Duration | null
  /** The latest tick made into a task, or when the schedule was set (nothing before it is made). */
  readonly lastTick: Date
  readonly created: Date
  readonly updated: Date
}

/** A schedule as `CronStorage.upsert` writes it (checked). */
export interface CheckedSchedule {
  readonly id: string
  readonly cron: string
  readonly name: string
  /** JSON text of an object. */
  readonly payload: string
  readonly timezone: string | null
  readonly backfillMs: number | null
  readonly now: number
}

/** The schedules' storage, over SQL (`internal/cronSql.ts`); provided by every backend layer. */
export interface CronStorageService {
  /** Creates or replaces the schedule; its `lastTick` becomes `now`. */
  readonly upsert: (schedule: CheckedSchedule) => Effect.Effect<CronSchedule, StoreError>
  readonly get: (id: string) => Effect.Effect<Option.Option<CronSchedule>, StoreError>
  /** Every schedule, by id. */
  readonly list: Effect.Effect<ReadonlyArray<CronSchedule>, StoreError>
  /** Deletes the schedule; whether there was one. */
  readonly remove: (id: string) => Effect.Effect<boolean, StoreError>
  /** Moves `lastTick` to `tick` when it is earlier; whether it moved. */
  readonly advance: (id: string, tick: number) => Effect.Effect<boolean, StoreError>
}

export class CronStorage extends Context.Tag("effect-kv/CronStorage")<CronStorage, CronStorageService>() {}
