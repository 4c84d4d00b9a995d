/**
 * Recurring schedules: `Cron.set` stores a schedule (a cron expression with seconds here, in a
 * named time zone), and every running `TaskRunner` turns each of its ticks into exactly one
 * task, with the tick in the payload's `_cron`. The runner is stopped after two ticks.
 *
 *   npx tsx examples/cron.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Deferred, Effect, Fiber, Logger, LogLevel, Option, Ref, Schema } from "effect"
import { Cron, TaskRunner } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cron-")), "example.db")

const Report = Schema.Struct({
  to: Schema.String,
  _cron: Schema.Struct({ id: Schema.String, tick: Schema.String, backfilled: Schema.Boolean }),
})

const program = Effect.gen(function* () {
  // every second, in Berlin's time zone (a daily report would be "0 0 7 * * *")
  yield* Cron.set({
    id: "report",
    cron: "* * * * * *",
    name: "report",
    payload: { to: "ops" },
    timezone: "Europe/Berlin",
  })
  const stored = Option.getOrThrow(yield* Cron.get("report"))
  yield* Console.log(
    `schedule ${stored.id}: "${stored.cron}" in ${stored.timezone}, makes "${stored.name}" tasks`,
  )

  const ticks = yield* Ref.make<ReadonlyArray<string>>([])
  const twoTicks = yield* Deferred.make<void>()
  // the runner runs the ticker (cron: true is the default) and the tasks it makes
  const runner = yield* Effect.fork(
    TaskRunner.run({
      handlers: {
        report: (task) =>
          Effect.gen(function* () {
            const report = yield* Schema.decodeUnknown(Report)(task.payload)
            const seen = yield* Ref.updateAndGet(ticks, (all) => [...all, report._cron.tick])
            if (seen.length === 2) yield* Deferred.succeed(twoTicks, undefined)
          }),
      },
    }),
  )
  yield* Deferred.await(twoTicks).pipe(
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("no two ticks in 30 s") }),
  )
  yield* Fiber.interrupt(runner)
  const [first, second] = [...(yield* Ref.get(ticks))].sort()
  yield* Console.log(
    `two ticks, one task each, a second apart: ${Date.parse(second!) - Date.parse(first!)} ms`,
  )
  yield* Console.log(`removed: ${yield* Cron.remove("report")}`)
})

program
  .pipe(
    Effect.provide(KvSqlite.layer({ filename })),
    // the runner logs each task at Info level: left out here, so only the example's lines show
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.runPromise,
  )
  .catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
