/**
 * The recurring schedules' commands: `cron set|list|get|delete`. Schedules become tasks while
 * some `kv task run` (without `--no-cron`) runs. `Cron.ts` (and `effect/Cron`) is loaded only
 * when a cron command runs.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import type { CronScheduleInfo } from "../Cron.js"
import type { CronStorage } from "../internal/cronStorage.js"
import { nameArg } from "./arguments.js"
import { layerFor } from "./backend.js"
import { MissingCommandError, NotFoundError } from "./errors.js"
import { kv } from "./globals.js"
import { printInteger, printJson, readOptionalStdinJson } from "./output.js"

/** Runs `f` with `Cron.ts`, on the backend chosen by the global flags. */
const withCron = <A, E>(f: (cron: typeof import("../Cron.js")) => Effect.Effect<A, E, CronStorage>) =>
  Effect.flatMap(kv, ({ connection, type }) =>
    Effect.flatMap(
      Effect.promise(() => import("../Cron.js")),
      (cron) => Effect.provide(f(cron), layerFor(type, connection)),
    ),
  )

/** `1h30m`-style text of whole milliseconds (`90m` → `1h30m`). */
export const durationText = (millis: number): string => {
  const units: ReadonlyArray<readonly [string, number]> = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ]
  let rest = Math.round(millis)
  let text = ""
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size)
    if (n > 0) text += `${n}${unit}`
    rest -= n * size
  }
  return text === "" ? "0" : text
}

/** What `cron get` prints (and `cron list`, each). */
const shown = (schedule: CronScheduleInfo) => ({
  id: schedule.id,
  cron: schedule.cron,
  name: schedule.name,
  payload: schedule.payload,
  timezone: schedule.timezone,
  backfill: schedule.backfill === null ? null : durationText(Duration.toMillis(schedule.backfill)),
  nextTick: Number.isNaN(schedule.nextTick.getTime()) ? null : schedule.nextTick.toISOString(),
})

/** stdin as JSON: `{}` when it is a terminal or empty. */
const readPayload = readOptionalStdinJson({})

const scheduleId = nameArg("id", "cron schedule id", "The schedule's id.")

const cronSet = Command.make(
  "set",
  {
    id: scheduleId,
    cron: Args.text({ name: "cron-expression" }).pipe(
      Args.withDescription(
        'The cron expression, quoted: 5 fields (minute hour day month weekday, e.g. "0 8 * * 1-5"), or 6 with seconds first.',
      ),
    ),
    name: nameArg("task-name", "task name", "The name of the tasks it makes (the handler that runs them)."),
    timezone: Options.text("timezone").pipe(
      Options.withPseudoName("zone"),
      Options.withDescription(
        "The IANA time zone the expression is read in, e.g. Europe/Berlin (default UTC).",
      ),
      Options.optional,
    ),
    backfill: Options.text("backfill").pipe(
      Options.withPseudoName("duration"),
      Options.withDescription(
        "Ticks missed while no runner ran are made when a runner starts if at most this old, e.g. 1h (default: none).",
      ),
      Options.withSchema(Arg.DurationText),
      Options.optional,
    ),
  },
  ({ backfill, cron, id, name, timezone }) =>
    Effect.gen(function* () {
      const payload = yield* readPayload
      const schedule = yield* withCron((Cron) =>
        Cron.set({
          id,
          cron,
          name,
          payload,
          timezone: Option.getOrUndefined(timezone),
          backfill: Option.getOrUndefined(backfill),
        }),
      )
      yield* printJson(shown(schedule))
    }),
).pipe(
  Command.withDescription(
    "Create or replace a recurring schedule (it starts from now); the payload of its tasks is the JSON object read " +
      "from stdin (default {}), plus _cron: { id, tick, backfilled }. Prints the schedule.",
  ),
)

const cronList = Command.make("list", {}, () =>
  Effect.flatMap(
    withCron((Cron) => Cron.list),
    (all) => printJson(all.map(shown)),
  ),
).pipe(Command.withDescription("Print every schedule, by id, as a JSON array."))

const cronGet = Command.make("get", { id: scheduleId }, ({ id }) =>
  Effect.gen(function* () {
    const found = yield* withCron((Cron) => Cron.get(id))
    if (Option.isNone(found)) return yield* new NotFoundError({ what: "cron schedule", name: id })
    yield* printJson(shown(found.value))
  }),
).pipe(
  Command.withDescription(
    "Print the schedule as a JSON object: { id, cron, name, payload, timezone, backfill, nextTick }.",
  ),
)

const cronDelete = Command.make("delete", { id: scheduleId }, ({ id }) =>
  Effect.gen(function* () {
    const removed = yield* withCron((Cron) => Cron.remove(id))
    yield* printInteger(removed ? 1 : 0)
  }),
).pipe(Command.withDescription("Delete the schedule (its tasks stay); prints the number deleted."))

export const cron = Command.make("cron", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv cron", expected: ["set", "list", "get", "delete"] })),
).pipe(
  Command.withDescription(
    "Recurring schedules: cron expressions that become one task per tick while any `kv task run` runs.",
  ),
  Command.withSubcommands([cronSet, cronList, cronGet, cronDelete]),
)
