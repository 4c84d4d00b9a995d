/**
 * Task throughput and pickup latency of the Scheduler and TaskRunner on each backend.
 *
 *   npm run bench:tasks                  # every backend
 *   npm run bench:tasks -- sqlite pg     # some of them (sqlite, postgres, rqlite)
 *
 * - drain: 2,000 due no-op tasks, created beforehand, taken and completed by one runner with
 *   concurrency 8: tasks/s from the runner's start until the last task is released (after an
 *   unmeasured warm-up drain of 500 tasks).
 * - pickup: an idle runner (concurrency 8, poll interval 1 minute, so only wake-ups count) and
 *   200 tasks created 10 ms apart in the same process: the time from calling `create` to the
 *   start of the task's handler, p50 and p99.
 *
 * Needs the local PostgreSQL (KV_POSTGRES_URL) and starts its own rqlite server. Prints one
 * table row per backend, next to the targets of issue 7.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import * as TaskRunner from "../src/TaskRunner.js"
import { createScratchDatabase } from "../test/support/postgres.js"
import { startRqlite } from "../test/support/rqlite.js"

const drainCount = 2000
const warmUpCount = 500
const pickupCount = 200
const pickupSpacingMs = 10

interface Backend {
  readonly name: string
  readonly layer: Layer.Layer<Scheduler, unknown>
  readonly cleanup: () => Promise<void>
  readonly targets: { readonly tasksPerSecond?: number; readonly pickupP50Ms?: number }
}

interface Row {
  readonly backend: string
  readonly tasksPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly targets: Backend["targets"]
}

const percentile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

/** The Scheduler of the context, resolving `done` once `n` tasks were released as completed. */
const countingReleases = (n: number, done: Deferred.Deferred<void>) =>
  Layer.effect(
    Scheduler,
    Effect.map(Scheduler, (inner) => {
      let released = 0
      return {
        ...inner,
        release: (id, runnerId, status, error) =>
          Effect.tap(inner.release(id, runnerId, status, error), () =>
            ++released === n ? Deferred.succeed(done, undefined) : Effect.void,
          ),
      }
    }),
  )

const createTasks = (name: string, n: number) =>
  Effect.flatMap(Scheduler, (scheduler) =>
    Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      (i) => Effect.flatMap(Task.make(name, { i }), scheduler.create),
      { concurrency: 8, discard: true },
    ),
  )

/** Seconds for one runner (concurrency 8) to drain `count` due no-op tasks named `name`. */
const drainOnce = (name: string, count: number) =>
  Effect.gen(function* () {
    yield* createTasks(name, count)
    const done = yield* Deferred.make<void>()
    const start = performance.now()
    const runner = yield* Effect.fork(
      TaskRunner.run({
        concurrency: 8,
        pollInterval: "1 minute",
        handlers: { [name]: () => Effect.void },
      }).pipe(Effect.provide(countingReleases(count, done))),
    )
    yield* Deferred.await(done)
    const elapsed = performance.now() - start
    yield* Fiber.interrupt(runner)
    return elapsed / 1000
  })

/** tasks/s draining `drainCount` tasks, after an unmeasured warm-up of `warmUpCount` (JIT, caches). */
const drain = Effect.gen(function* () {
  yield* drainOnce("warm-up", warmUpCount)
  return drainCount / (yield* drainOnce("drain", drainCount))
})

/** Milliseconds from `create` to handler start, for tasks created one by one into an idle runner. */
const pickup = Effect.gen(function* () {
  const latencies: Array<number> = []
  const all = yield* Deferred.make<void>()
  const runner = yield* Effect.fork(
    TaskRunner.run({
      concurrency: 8,
      pollInterval: "1 minute",
      handlers: {
        pickup: (task) =>
          Effect.sync(() => {
            latencies.push(performance.now() - (task.payload as { t0: number }).t0)
            if (latencies.length === pickupCount) Deferred.unsafeDone(all, Effect.void)
          }),
      },
    }),
  )
  const scheduler = yield* Scheduler
  yield* Effect.sleep("200 millis") // the runner is idle, waiting
  for (let i = 0; i < pickupCount; i++) {
    const task = yield* Task.make("pickup", { t0: 0 })
    const t0 = performance.now()
    yield* scheduler.create({ ...task, payload: { t0 } })
    yield* Effect.sleep(`${pickupSpacingMs} millis`)
  }
  yield* Deferred.await(all)
  yield* Fiber.interrupt(runner)
  const sorted = [...latencies].sort((a, b) => a - b)
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
})

const measure = (backend: Backend): Promise<Row> =>
  Effect.gen(function* () {
    const tasksPerSecond = yield* drain
    const { p50, p99 } = yield* pickup
    return { backend: backend.name, tasksPerSecond, p50, p99, targets: backend.targets }
  }).pipe(
    Effect.provide(backend.layer),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.runPromise,
  ) as Promise<Row>

// --- backends -------------------------------------------------------------------------

const sqlite = async (): Promise<Backend> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bench-tasks-"))
  return {
    name: "SQLite (file)",
    layer: KvSqlite.layer({ filename: `file:${path.join(dir, "data.db")}?mode=rwc` }),
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    targets: { tasksPerSecond: 5000, pickupP50Ms: 2 },
  }
}

const postgres = async (): Promise<Backend> => {
  const scratch = await createScratchDatabase()
  return {
    name: "PostgreSQL",
    layer: KvPostgres.layer({ url: scratch.url }),
    cleanup: () => scratch.drop(),
    targets: { tasksPerSecond: 2000, pickupP50Ms: 4 },
  }
}

const rqlite = async (): Promise<Backend> => {
  const server = await startRqlite()
  return {
    name: "rqlite",
    layer: KvRqlite.layer({ url: server.url }),
    cleanup: () => server.stop(),
    targets: { tasksPerSecond: 500 },
  }
}

const backends: Record<string, () => Promise<Backend>> = { sqlite, postgres, rqlite }

const cell = (value: string, width: number) => value.padEnd(width)

const printRow = (row: Row) => {
  const target = (met: boolean | undefined) => (met === undefined ? "" : met ? " (ok)" : " (MISSED)")
  const { pickupP50Ms, tasksPerSecond } = row.targets
  console.log(
    [
      cell(row.backend, 14),
      cell(
        `${Math.round(row.tasksPerSecond)}${tasksPerSecond ? ` / ${tasksPerSecond}` : ""}${target(
          tasksPerSecond === undefined ? undefined : row.tasksPerSecond >= tasksPerSecond,
        )}`,
        24,
      ),
      cell(
        `${row.p50.toFixed(2)}${pickupP50Ms ? ` / ${pickupP50Ms}` : ""}${target(
          pickupP50Ms === undefined ? undefined : row.p50 <= pickupP50Ms,
        )}`,
        22,
      ),
      row.p99.toFixed(2),
    ].join(" | "),
  )
}

const main = async () => {
  const wanted = new Set(process.argv.slice(2).map((name) => (name === "pg" ? "postgres" : name)))
  const names = Object.keys(backends).filter((name) => wanted.size === 0 || wanted.has(name))
  console.log(
    `drain: ${drainCount} no-op tasks, one runner, concurrency 8 | pickup: ${pickupCount} tasks ${pickupSpacingMs} ms apart into an idle runner`,
  )
  console.log(
    [
      cell("backend", 14),
      cell("drain tasks/s / target", 24),
      cell("pickup p50 ms / target", 22),
      "p99 ms",
    ].join(" | "),
  )
  for (const name of names) {
    const backend = await backends[name]!()
    try {
      printRow(await measure(backend))
    } finally {
      await backend.cleanup()
    }
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
