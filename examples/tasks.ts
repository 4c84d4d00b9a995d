/**
 * Tasks: `Task.make` with a key and priorities, `scheduler.createMany`, a `TaskRunner` that
 * runs them (highest priority first) and is stopped once they are done, and `scheduler.stats`.
 *
 *   npx tsx examples/tasks.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Effect, Fiber, Logger, LogLevel, Schedule, Schema } from "effect"
import { Scheduler, Task, TaskRunner } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-tasks-")), "example.db")

const Email = Schema.Struct({ to: Schema.String, subject: Schema.String })

const program = Effect.gen(function* () {
  const scheduler = yield* Scheduler

  // one atomic write; higher priority is taken first
  const created = yield* scheduler.createMany([
    yield* Task.make("send-email", { to: "ada@example.com", subject: "newsletter" }),
    yield* Task.make("send-email", { to: "alan@example.com", subject: "password reset" }, { priority: 10 }),
    yield* Task.make("send-email", { to: "grace@example.com", subject: "invoice" }, { priority: 5 }),
  ])
  yield* Console.log(`created ${created.length} tasks`)

  // a key: at most one pending task holds it, the second create replaces the first's payload
  const first = yield* scheduler.create(
    yield* Task.make(
      "send-email",
      { to: "ada@example.com", subject: "digest (draft)" },
      { key: "digest:ada" },
    ),
  )
  const second = yield* scheduler.create(
    yield* Task.make("send-email", { to: "ada@example.com", subject: "digest" }, { key: "digest:ada" }),
  )
  yield* Console.log(`keyed task digest:ada: the same task both times: ${first.id === second.id}`)

  const before = yield* scheduler.stats()
  yield* Console.log(`pending before the runner: ${before.byStatus.pending}`)

  // one at a time, so the order shows: priority 10, 5, then the two of priority 0 by due time
  const runner = yield* Effect.fork(
    TaskRunner.run({
      concurrency: 1,
      handlers: {
        "send-email": (task) =>
          Effect.flatMap(Schema.decodeUnknown(Email)(task.payload), (email) =>
            Console.log(`sent "${email.subject}" to ${email.to} (priority ${task.priority})`),
          ),
      },
    }),
  )

  // stop the runner once all four are completed
  yield* scheduler.stats().pipe(
    Effect.repeat({
      schedule: Schedule.spaced("20 millis"),
      until: (stats) => stats.byStatus.completed === 4,
    }),
    Effect.timeoutFail({
      duration: "30 seconds",
      onTimeout: () => new Error("the tasks did not complete in 30 s"),
    }),
  )
  yield* Fiber.interrupt(runner)

  const after = yield* scheduler.stats()
  yield* Console.log(
    `stats: total ${after.total}, completed ${after.byStatus.completed}, pending ${after.byStatus.pending}`,
  )
  yield* Console.log(`by name: ${JSON.stringify(after.byName)}`)
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
