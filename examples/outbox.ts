/**
 * The outbox: `Mutation.task(task)` in `store.mutateAll` creates a task in the same transaction
 * as the key writes, so both commit or neither does. A batch whose version check fails leaves
 * no task behind; one that commits wakes an idle runner at once.
 *
 *   npx tsx examples/outbox.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Deferred, Effect, Fiber, Logger, LogLevel } from "effect"
import { Mutation, Scheduler, Store, Task, TaskRunner } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-outbox-")), "example.db")

const program = Effect.gen(function* () {
  const store = yield* Store
  const scheduler = yield* Scheduler
  const confirmed = yield* Deferred.make<unknown>()
  // an idle runner: it polls once an hour, so only the wake-up after the commit can start it
  const runner = yield* Effect.fork(
    TaskRunner.run({
      pollInterval: "1 hour",
      handlers: { "send-confirmation": (task) => Deferred.succeed(confirmed, task.payload) },
    }),
  )

  // the order and its confirmation e-mail, together
  yield* store.mutateAll([
    Mutation.put("order/7", 0, { state: "placed" }),
    Mutation.task(yield* Task.make("send-confirmation", { order: 7 }, { key: "confirm/7" })),
  ])
  const payload = yield* Deferred.await(confirmed).pipe(
    Effect.timeoutFail({
      duration: "30 seconds",
      onTimeout: () => new Error("the runner was not woken in 30 s"),
    }),
  )
  yield* Console.log(`order/7 placed; the runner sent the confirmation for ${JSON.stringify(payload)}`)

  // a stale version: nothing is written, and no task is created
  const failed = yield* store
    .mutateAll([
      Mutation.put("order/7", 5, { state: "shipped" }),
      Mutation.task(yield* Task.make("send-confirmation", { order: 7, shipped: true })),
    ])
    .pipe(Effect.flip)
  const order = yield* store.get("order/7")
  const tasks = yield* scheduler.list({ name: "send-confirmation" })
  yield* Console.log(
    `stale batch: ${failed._tag}; order/7 is still v${order._tag === "Some" ? order.value.version : 0}`,
  )
  yield* Console.log(`send-confirmation tasks: ${tasks.length}`)
  yield* Fiber.interrupt(runner)
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
