/**
 * Wake-ups across processes: an idle runner whose poll interval is a minute takes a task that
 * another process (here: another client on the same database) created, at once, on the
 * backends that can tell (PostgreSQL's LISTEN/NOTIFY, SQLite's data_version). rqlite has no
 * such signal: its runners find other processes' tasks by polling.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import * as TaskRunner from "../src/TaskRunner.js"
import { createScratchDatabase } from "./support/postgres.js"

/** A runner in "process" A, a task created in "process" B: picked up long before the next poll. */
const wokenAcrossProcesses = (process: () => Layer.Layer<Scheduler, unknown>) =>
  Effect.gen(function* () {
    const [a, b] = [yield* Layer.build(process()), yield* Layer.build(process())]
    const ran = yield* Deferred.make<string>()
    yield* Effect.forkScoped(
      TaskRunner.run({
        runnerId: "waiting",
        pollInterval: "1 minute",
        handlers: { ping: (task) => Deferred.succeed(ran, task.id) },
      }).pipe(Effect.provide(a)),
    )
    // let the runner find nothing and settle into its one-minute wait
    yield* Effect.sleep("1 second")
    const started = Date.now()
    const task = yield* Effect.flatMap(Scheduler, (scheduler) =>
      Effect.flatMap(Task.make("ping", {}), scheduler.create),
    ).pipe(Effect.provide(b))
    const id = yield* Deferred.await(ran).pipe(Effect.timeout("20 seconds"))
    assert.strictEqual(id, task.id)
    assert.isBelow(Date.now() - started, 20_000)
  })

describe("a task created by another process wakes an idle runner", () => {
  it.scopedLive(
    "PostgreSQL: LISTEN/NOTIFY",
    () =>
      Effect.acquireRelease(Effect.promise(createScratchDatabase), (database) =>
        Effect.promise(() => database.drop()),
      ).pipe(
        Effect.flatMap((database) => wokenAcrossProcesses(() => KvPostgres.layer({ url: database.url }))),
      ),
    { timeout: 60_000 },
  )

  it.scopedLive(
    "SQLite: data_version",
    () =>
      Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-wake-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
      ).pipe(
        Effect.flatMap((dir) =>
          wokenAcrossProcesses(() => KvSqlite.layer({ filename: path.join(dir, "wake.db") })),
        ),
      ),
    { timeout: 60_000 },
  )
})
