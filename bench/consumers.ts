/**
 * Consumer lag: the time from a `put` to its record arriving on an idle `Consumer.stream`,
 * p50/p99 over 200 puts 10 ms apart, per backend and per writer:
 *
 * - one process: the writer shares the consumer's layer (a local write wakes it at once);
 * - another process: a child process writes (PostgreSQL: the trigger's NOTIFY reaches the
 *   consumer's LISTEN; SQLite: the consumer's layer notices `PRAGMA data_version` change;
 *   rqlite: no signal crosses processes, the consumer polls, backing off from 10 ms up to its
 *   poll interval).
 *
 *   npm run bench:consumers                 # every backend
 *   npm run bench:consumers -- sqlite pg    # some of them (sqlite, postgres, rqlite)
 *
 * Each put carries its start time (`performance.timeOrigin + performance.now()`, comparable
 * across processes on one machine); the lag is the consumer's clock at arrival minus that.
 * Needs the local PostgreSQL (KV_POSTGRES_URL) and starts its own rqlite server.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import hdr from "hdr-histogram-js"
import * as Consumer from "../src/Consumer.js"
import type * as KvSql from "../src/layers/Sql.js"
import { Store } from "../src/Store.js"
import { createScratchDatabase } from "../test/support/postgres.js"
import { startRqlite } from "../test/support/rqlite.js"

const puts = 200
const spacing = Duration.millis(10)

type BackendType = "sqlite" | "postgres" | "rqlite"

const layerOf = async (
  type: BackendType,
  connection: string,
): Promise<Layer.Layer<KvSql.Services, unknown>> => {
  switch (type) {
    case "sqlite":
      return (await import("../src/layers/Sqlite.js")).layer({ filename: connection })
    case "postgres":
      return (await import("../src/layers/Postgres.js")).layer({ url: connection })
    case "rqlite":
      return (await import("../src/layers/Rqlite.js")).layer({ url: connection })
  }
}

/** Epoch milliseconds with sub-millisecond precision, comparable between processes. */
const now = () => performance.timeOrigin + performance.now()

/** The writer: `puts` puts under `prefix`, `spacing` apart, each with its start time. */
const writeAll = (prefix: string) =>
  Effect.gen(function* () {
    const store = yield* Store
    for (let i = 0; i < puts; i++) {
      yield* store.put(`${prefix}/${i}`, -1, { i, sentAt: now() })
      yield* Effect.sleep(spacing)
    }
  })

interface Lag {
  readonly p50: number
  readonly p99: number
  readonly max: number
}

/**
 * Starts an idle consumer of a new stream name, lets `writer` write, and collects the lag of
 * each record (in microseconds) until all `puts` arrived.
 */
const measure = (
  runtime: ManagedRuntime.ManagedRuntime<KvSql.Services, unknown>,
  writer: (prefix: string) => Promise<void>,
) =>
  runtime.runPromise(
    Effect.gen(function* () {
      const name = `lag-${Math.random().toString(36).slice(2, 8)}`
      const store = yield* Store
      yield* Consumer.commit(name, yield* store.streamSeq())
      const histogram = hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 })
      const consumer = yield* Effect.fork(
        Consumer.stream({ streamName: name, consumerName: "bench" }).pipe(
          Stream.filter((record) => record.record.key.startsWith(`${name}/`)),
          Stream.take(puts),
          Stream.runForEach((record) =>
            Effect.sync(() => {
              const sentAt = (record.record.value as { sentAt: number }).sentAt
              histogram.recordValue(Math.max(0, Math.round((now() - sentAt) * 1000)))
            }),
          ),
        ),
      )
      // the consumer holds its lock and idles before the first put
      yield* Effect.sleep("300 millis")
      yield* Effect.promise(() => writer(name))
      yield* Fiber.join(consumer)
      const lag: Lag = {
        p50: histogram.getValueAtPercentile(50) / 1000,
        p99: histogram.getValueAtPercentile(99) / 1000,
        max: histogram.maxValue / 1000,
      }
      histogram.destroy()
      return lag
    }),
  )

/** Runs this file as a writer process on the same database. */
const writerProcess = (type: BackendType, connection: string) => (prefix: string) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), "--writer", type, connection, prefix],
      { stdio: ["ignore", "inherit", "inherit"] },
    )
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`writer exited with ${code}`))))
  })

const format = (n: number) => n.toFixed(2).padStart(8)

const runBackend = async (type: BackendType, connection: string, cleanup: () => Promise<void>) => {
  const runtime = ManagedRuntime.make(await layerOf(type, connection))
  try {
    await runtime.runPromise(Effect.flatMap(Store, (store) => store.init()))
    const scenarios: ReadonlyArray<readonly [string, (prefix: string) => Promise<void>]> = [
      ["one process", (prefix) => runtime.runPromise(writeAll(prefix))],
      ["another process", writerProcess(type, connection)],
    ]
    for (const [writer, write] of scenarios) {
      const lag = await measure(runtime, write)
      console.log(
        `${type.padEnd(8)} | ${writer.padEnd(15)} | ${format(lag.p50)} | ${format(lag.p99)} | ${format(lag.max)}`,
      )
    }
  } finally {
    await runtime.dispose()
    await cleanup()
  }
}

const main = async () => {
  const args = process.argv.slice(2)
  if (args[0] === "--writer") {
    const [, type, connection, prefix] = args as [string, BackendType, string, string]
    const runtime = ManagedRuntime.make(await layerOf(type, connection))
    await runtime.runPromise(writeAll(prefix))
    await runtime.dispose()
    return
  }
  const wanted = new Set(args.map((name) => (name === "pg" ? "postgres" : name)))
  const pick = (name: string) => wanted.size === 0 || wanted.has(name)
  console.log(
    `consumer lag over ${puts} puts ${Duration.format(spacing)} apart (ms; default pollInterval ${Duration.format(Consumer.defaultPollInterval)})`,
  )
  console.log(
    `${"backend".padEnd(8)} | ${"writer".padEnd(15)} | ${"p50".padStart(8)} | ${"p99".padStart(8)} | ${"max".padStart(8)}`,
  )
  if (pick("sqlite")) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bench-consumers-"))
    await runBackend("sqlite", `file:${path.join(dir, "bench.db")}?mode=rwc`, async () =>
      fs.rmSync(dir, { recursive: true, force: true }),
    )
  }
  if (pick("postgres")) {
    const scratch = await createScratchDatabase()
    await runBackend("postgres", scratch.url, () => scratch.drop())
  }
  if (pick("rqlite")) {
    const server = await startRqlite()
    await runBackend("rqlite", server.url, () => server.stop())
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
