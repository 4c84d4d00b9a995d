/**
 * The one SQL implementation of `CronStorage` (the recurring schedules), for every backend.
 *
 * Arguments are checked by `Cron.ts`; statements are compiled once with named parameters
 * (`statements.ts`). Every operation is one statement, atomic on its own on every backend:
 * `set` is an upsert that starts the schedule again from its time, `advance` an UPDATE that
 * only moves `last_tick` forward (so runners racing on one tick leave it at that tick).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { CheckedSchedule, CronSchedule, CronStorageService } from "./cronStorage.js"
import { SqlExecutor } from "./executor.js"
import { failuresOf, parseRows, type TimeValue as Time, timeBinder, toDate } from "./sqlShared.js"
import * as Statements from "./statements.js"

interface CronRow {
  readonly id: string
  readonly cron: string
  readonly name: string
  readonly payload: string
  readonly timezone: string | null
  readonly backfill_ms: number | string | null
  readonly last_tick: Time
  readonly created: Time
  readonly updated: Time
}

const toSchedule = (row: CronRow): CronSchedule => {
  const payload: unknown = JSON.parse(row.payload)
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new Error(`the payload of cron schedule "${row.id}" is not a JSON object`)
  }
  return {
    id: row.id,
    cron: row.cron,
    name: row.name,
    payload: payload as Record<string, unknown>,
    timezone: row.timezone,
    backfill: row.backfill_ms === null ? null : Duration.millis(Number(row.backfill_ms)),
    lastTick: toDate(row.last_tick),
    created: toDate(row.created),
    updated: toDate(row.updated),
  }
}

const columns = `"id", "cron", "name", "payload", "timezone", "backfill_ms", "last_tick", "created", "updated"`

export const make: Effect.Effect<CronStorageService, never, SqlClient.SqlClient | SqlExecutor> = Effect.gen(
  function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const executor = yield* SqlExecutor
    const { compiled } = Statements.make(sql, executor)
    const run = failuresOf(executor)
    const time = timeBinder(sql)
    const cols = sql.literal(columns)

    const upsert = compiled<
      {
        id: string
        cron: string
        name: string
        payload: string
        timezone: string | null
        backfill: number | null
        now: number | Date
      },
      CronRow
    >(
      (p) => sql`INSERT INTO kv_cron (${cols})
        VALUES (${p.id}, ${p.cron}, ${p.name}, ${p.payload}, ${p.timezone}, ${p.backfill}, ${p.now}, ${p.now}, ${p.now})
        ON CONFLICT ("id") DO UPDATE SET "cron" = excluded."cron", "name" = excluded."name",
          "payload" = excluded."payload", "timezone" = excluded."timezone",
          "backfill_ms" = excluded."backfill_ms", "last_tick" = excluded."last_tick",
          "updated" = excluded."updated"
        RETURNING ${cols}`,
    )
    const selectOne = compiled<{ id: string }, CronRow>(
      ({ id }) => sql`SELECT ${cols} FROM kv_cron WHERE "id" = ${id}`,
    )
    const selectAll = compiled<Record<never, never>, CronRow>(
      () => sql`SELECT ${cols} FROM kv_cron ORDER BY "id"`,
    )
    const deleteOne = compiled<{ id: string }>(({ id }) => sql`DELETE FROM kv_cron WHERE "id" = ${id}`)
    const advanceTick = compiled<{ id: string; tick: number | Date }>(
      ({ id, tick }) =>
        sql`UPDATE kv_cron SET "last_tick" = ${tick} WHERE "id" = ${id} AND "last_tick" < ${tick}`,
    )

    const schedules = (rows: ReadonlyArray<CronRow>) => parseRows("kv_cron", rows, toSchedule)

    return {
      upsert: (schedule: CheckedSchedule) =>
        run(
          "cron set",
          Effect.gen(function* () {
            const rows = yield* upsert.rows({
              id: schedule.id,
              cron: schedule.cron,
              name: schedule.name,
              payload: schedule.payload,
              timezone: schedule.timezone,
              backfill: schedule.backfillMs,
              now: time(schedule.now),
            })
            const [stored] = yield* schedules(rows)
            return stored!
          }),
        ),
      get: (id: string) =>
        run(
          "cron get",
          Effect.flatMap(selectOne.rows({ id }), (rows) =>
            Effect.map(schedules(rows.slice(0, 1)), (found) => Option.fromNullable(found[0])),
          ),
        ),
      list: run("cron list", Effect.flatMap(selectAll.rows({}), schedules)),
      remove: (id: string) =>
        run(
          "cron delete",
          Effect.map(deleteOne.affected({ id }), (n) => n > 0),
        ),
      advance: (id: string, tick: number) =>
        run(
          "cron tick",
          Effect.map(advanceTick.affected({ id, tick: time(tick) }), (n) => n > 0),
        ),
    }
  },
)
