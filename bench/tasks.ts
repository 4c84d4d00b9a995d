/**
 * The TaskRunner next to graphile-worker on the same PostgreSQL, and on SQLite and rqlite.
 *
 *   npm run bench:tasks                  # every backend
 *   npm run bench:tasks -- pg            # some of them (sqlite, postgres/pg, rqlite)
 *   ROUNDS=3 npm run bench:tasks -- pg   # more alternating rounds (default 2)
 *
 * The workload of issue 14, per system and round:
 * - enqueue: 5,000 no-op jobs created with 10 calls in flight (jobs/s);
 * - drain: those 5,000 drained by one runner with concurrency 10, from its start until the last
 *   one's completion is stored (graphile-worker: until its jobs table is empty);
 * - pickup: 200 jobs created 10 ms apart into an idle runner (poll interval 1 minute for
 *   effect-kv; graphile-worker's default 2 s: both are woken by LISTEN/NOTIFY): the time from
 *   the create call to the start of the handler, p50 and p99.
 *
 * On PostgreSQL four systems run in alternating rounds in one process: graphile-worker 0.17
 * with its defaults, graphile-worker with `localQueue: { size: 50 }, completeJobBatchDelay: 0,
 * failJobBatchDelay: 0`, effect-kv with defaults, effect-kv with `prefetch: 50`. Each has its
 * own scratch database on the same server. Printed: each round's figures, then the ranges and
 * the ratios of effect-kv to graphile-worker (per round, then min–max) against the targets.
 * SQLite (a file) and rqlite run the effect-kv rows only.
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
import { makeWorkerUtils, run as runGraphile } from "graphile-worker"
import pg from "pg"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import * as TaskRunner from "../src/TaskRunner.js"
import { createScratchDatabase } from "../test/support/postgres.js"
import { startRqlite } from "../test/support/rqlite.js"

const jobCount = 5000
const enqueueInFlight = 10
const concurrency = 10
const pickupCount = 200
const pickupSpacingMs = 10
const rounds = Number(process.env.ROUNDS ?? 2)

interface Figures {
  readonly enqueue: number
  readonly drain: number
  readonly p50: number
  readonly p99: number
}

interface System {
  readonly name: string
  readonly measure: (round: number) => Promise<Figures>
  readonly cleanup: () => Promise<void>
}

const percentile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

const latencies = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Runs `n` calls of `call`, `inFlight` at a time; calls per second. */
const inParallel = async (n: number, inFlight: number, call: (i: number) => Promise<unknown>) => {
  let next = 0
  const start = performance.now()
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) await call(next++)
    }),
  )
  return n / ((performance.now() - start) / 1000)
}

// --- effect-kv --------------------------------------------------------------------------

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

const effectKv = (
  name: string,
  layer: Layer.Layer<Scheduler, unknown>,
  options: { readonly prefetch?: number },
  cleanup: () => Promise<void>,
): System => {
  const run = <A>(effect: Effect.Effect<A, unknown, Scheduler>) =>
    Effect.runPromise(
      effect.pipe(Effect.provide(layer), Logger.withMinimumLogLevel(LogLevel.Warning)) as Effect.Effect<A>,
    )
  const measure = (round: number) =>
    run(
      Effect.gen(function* () {
        const scheduler = yield* Scheduler
        const type = `noop-${round}`
        const enqueueStart = performance.now()
        yield* Effect.forEach(
          Array.from({ length: jobCount }, (_, i) => i),
          (i) => Effect.flatMap(Task.make(type, { i }), scheduler.create),
          { concurrency: enqueueInFlight, discard: true },
        )
        const enqueue = jobCount / ((performance.now() - enqueueStart) / 1000)
        const done = yield* Deferred.make<void>()
        const drainStart = performance.now()
        const drainer = yield* Effect.fork(
          TaskRunner.run({
            concurrency,
            ...options,
            pollInterval: "1 minute",
            handlers: { [type]: () => Effect.void },
          }).pipe(Effect.provide(countingReleases(jobCount, done))),
        )
        yield* Deferred.await(done)
        const drain = jobCount / ((performance.now() - drainStart) / 1000)
        yield* Fiber.interrupt(drainer)

        const picked: Array<number> = []
        const all = yield* Deferred.make<void>()
        const pickupType = `pickup-${round}`
        const idle = yield* Effect.fork(
          TaskRunner.run({
            concurrency,
            ...options,
            pollInterval: "1 minute",
            handlers: {
              [pickupType]: (task) =>
                Effect.sync(() => {
                  picked.push(performance.now() - (task.payload as { t0: number }).t0)
                  if (picked.length === pickupCount) Deferred.unsafeDone(all, Effect.void)
                }),
            },
          }),
        )
        yield* Effect.sleep("300 millis") // the runner is idle, waiting
        for (let i = 0; i < pickupCount; i++) {
          const task = yield* Task.make(pickupType, { t0: 0 })
          yield* scheduler.create({ ...task, payload: { t0: performance.now() } })
          yield* Effect.sleep(`${pickupSpacingMs} millis`)
        }
        yield* Deferred.await(all)
        yield* Fiber.interrupt(idle)
        return { enqueue, drain, ...latencies(picked) }
      }),
    )
  return { name, measure, cleanup }
}

// --- graphile-worker --------------------------------------------------------------------

const graphileWorker = async (name: string, batched: boolean): Promise<System> => {
  const scratch = await createScratchDatabase()
  const connectionString = scratch.url
  const utils = await makeWorkerUtils({ connectionString })
  await utils.migrate()
  const counter = new pg.Pool({ connectionString, max: 1 })
  const worker = batched ? { localQueue: { size: 50 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } : {}
  const logger = { scope: () => logger, debug() {}, info() {}, warn() {}, error() {} } as never
  const jobsLeft = async () =>
    Number((await counter.query("SELECT count(*) AS n FROM graphile_worker._private_jobs")).rows[0].n)

  const measure = async (round: number): Promise<Figures> => {
    const type = `noop_${round}`
    const enqueue = await inParallel(jobCount, enqueueInFlight, (i) => utils.addJob(type, { i }))
    let handled = 0
    let lastHandled: () => void = () => {}
    const allHandled = new Promise<void>((resolve) => {
      lastHandled = resolve
    })
    const drainStart = performance.now()
    const drainer = await runGraphile({
      connectionString,
      concurrency,
      noHandleSignals: true,
      logger,
      preset: { worker },
      taskList: {
        [type]: async () => {
          if (++handled === jobCount) lastHandled()
        },
      },
    } as never)
    await allHandled
    // done once the completions are stored: graphile-worker deletes completed jobs
    while ((await jobsLeft()) > 0) await sleep(2)
    const drain = jobCount / ((performance.now() - drainStart) / 1000)
    await drainer.stop()

    const picked: Array<number> = []
    let allPicked: () => void = () => {}
    const pickedAll = new Promise<void>((resolve) => {
      allPicked = resolve
    })
    const pickupType = `pickup_${round}`
    const idle = await runGraphile({
      connectionString,
      concurrency,
      noHandleSignals: true,
      logger,
      preset: { worker },
      taskList: {
        [pickupType]: async (payload: unknown) => {
          picked.push(performance.now() - (payload as { t0: number }).t0)
          if (picked.length === pickupCount) allPicked()
        },
      },
    } as never)
    await sleep(300)
    for (let i = 0; i < pickupCount; i++) {
      await utils.addJob(pickupType, { t0: performance.now() })
      await sleep(pickupSpacingMs)
    }
    await pickedAll
    await idle.stop()
    return { enqueue, drain, ...latencies(picked) }
  }
  return {
    name,
    measure,
    cleanup: async () => {
      await utils.release()
      await counter.end()
      await scratch.drop()
    },
  }
}

// --- the runs ---------------------------------------------------------------------------

const kvPostgres = async (name: string, options: { readonly prefetch?: number }) => {
  const scratch = await createScratchDatabase()
  return effectKv(name, KvPostgres.layer({ url: scratch.url }), options, () => scratch.drop())
}

const kvSqlite = async (name: string, options: { readonly prefetch?: number }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bench-tasks-"))
  return effectKv(
    name,
    KvSqlite.layer({ filename: `file:${path.join(dir, "data.db")}?mode=rwc` }),
    options,
    async () => fs.rmSync(dir, { recursive: true, force: true }),
  )
}

const kvRqlite = async (name: string, options: { readonly prefetch?: number }) => {
  const server = await startRqlite()
  return effectKv(name, KvRqlite.layer({ url: server.url }), options, () => server.stop())
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const range = (values: ReadonlyArray<number>, digits = 0) => {
  const lo = Math.min(...values)
  const hi = Math.max(...values)
  return lo === hi ? fmt(lo, digits) : `${fmt(lo, digits)}–${fmt(hi, digits)}`
}

/** Runs the systems in alternating rounds; their figures per round, by name. */
const alternate = async (systems: ReadonlyArray<System>) => {
  const figures = new Map<string, Array<Figures>>(systems.map((s) => [s.name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const system of systems) {
      const f = await system.measure(round)
      figures.get(system.name)!.push(f)
      console.log(
        `round ${round + 1}  ${system.name.padEnd(44)} enqueue ${fmt(f.enqueue).padStart(7)}/s  drain ${fmt(f.drain).padStart(7)}/s  pickup p50 ${fmt(f.p50, 2)} ms  p99 ${fmt(f.p99, 2)} ms`,
      )
    }
  }
  return figures
}

const table = (figures: Map<string, Array<Figures>>) => {
  console.log("")
  console.log("| system | enqueue/s | drain/s | pickup p50 / p99 ms |")
  console.log("|---|---:|---:|---:|")
  for (const [name, fs] of figures) {
    console.log(
      `| ${name} | ${range(fs.map((f) => f.enqueue))} | ${range(fs.map((f) => f.drain))} | ${range(
        fs.map((f) => f.p50),
        2,
      )} / ${range(
        fs.map((f) => f.p99),
        1,
      )} |`,
    )
  }
}

const gwDefaults = "graphile-worker 0.17.3, defaults"
const gwBatched = "graphile-worker 0.17.3, localQueue 50, batched completes"
const kvDefaults = "effect-kv, concurrency 10 (defaults)"
const kvPrefetch = "effect-kv, concurrency 10, prefetch 50"

const ratios = (figures: Map<string, Array<Figures>>) => {
  const per = (a: string, b: string, of: (f: Figures) => number) =>
    figures.get(a)!.map((f, i) => of(f) / of(figures.get(b)![i]!))
  const line = (what: string, values: ReadonlyArray<number>, target: string, met: boolean) =>
    console.log(
      `${what.padEnd(62)} ${values.map((v) => `${v.toFixed(2)}×`).join(", ")}  (target ${target}: ${met ? "ok" : "MISSED"})`,
    )
  console.log("")
  const drainDefaults = per(kvDefaults, gwDefaults, (f) => f.drain)
  line(
    "drain, effect-kv defaults / graphile-worker defaults",
    drainDefaults,
    "≥ 1.0×",
    Math.min(...drainDefaults) >= 1,
  )
  const drainBatched = per(kvPrefetch, gwBatched, (f) => f.drain)
  line(
    "drain, effect-kv prefetch / graphile-worker batched",
    drainBatched,
    "≥ 1.0×",
    Math.min(...drainBatched) >= 1,
  )
  const pickup = per(kvDefaults, gwDefaults, (f) => f.p50)
  line(
    "pickup p50, effect-kv defaults / graphile-worker defaults",
    pickup,
    "≤ 1.0×",
    Math.max(...pickup) <= 1,
  )
}

const main = async () => {
  const wanted = new Set(process.argv.slice(2).map((name) => (name === "pg" ? "postgres" : name)))
  const want = (name: string) => wanted.size === 0 || wanted.has(name)
  console.log(
    `${jobCount} no-op jobs enqueued with ${enqueueInFlight} in flight, drained by one runner with concurrency ${concurrency}; ` +
      `${pickupCount} jobs ${pickupSpacingMs} ms apart into an idle runner; ${rounds} alternating rounds`,
  )
  if (want("postgres")) {
    console.log("\nPostgreSQL (each system its own scratch database on the same server)")
    const systems = [
      await graphileWorker(gwDefaults, false),
      await graphileWorker(gwBatched, true),
      await kvPostgres(kvDefaults, {}),
      await kvPostgres(kvPrefetch, { prefetch: 50 }),
    ]
    try {
      const figures = await alternate(systems)
      table(figures)
      ratios(figures)
    } finally {
      for (const system of systems) await system.cleanup()
    }
  }
  for (const [backend, make, target] of [
    ["sqlite", kvSqlite, 20_000],
    ["rqlite", kvRqlite, 3_200],
  ] as const) {
    if (!want(backend)) continue
    console.log(`\n${backend === "sqlite" ? "SQLite (a file)" : "rqlite (one node)"}`)
    const systems = [
      await make(`effect-kv on ${backend}, defaults`, {}),
      await make(`effect-kv on ${backend}, prefetch 50`, { prefetch: 50 }),
    ]
    try {
      const figures = await alternate(systems)
      table(figures)
      const best = Math.max(...[...figures.values()].flat().map((f) => f.drain))
      console.log(
        `\nbest drain ${fmt(best)}/s (target ≥ ${fmt(target)}/s: ${best >= target ? "ok" : "MISSED"})`,
      )
    } finally {
      for (const system of systems) await system.cleanup()
    }
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  },
)
