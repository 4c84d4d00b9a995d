/**
 * Store throughput through the Effect service next to the same SQL sent through the raw
 * driver (better-sqlite3, pg, plain HTTP to rqlite), in the same run, on the same tables.
 *
 *   npm run bench:store                 # every backend
 *   npm run bench:store -- sqlite pg    # some of them (sqlite, postgres, rqlite)
 *   npm run bench:store -- --only=get   # some operations (get, put, patch, getPrefix)
 *   npm run bench:store -- --batch      # big mutateAll batches instead (with backends as above)
 *   npm run bench:store -- --no-spans   # the store layers with `spans: false`
 *   npm run bench:store -- --traced     # with a tracer installed: the spans are made
 *
 * Needs the local PostgreSQL (KV_POSTGRES_URL) and starts its own rqlite server.
 * Prints, per backend, operation and fiber count: ops/s, p50 and p99 latency, and the
 * ratio store/raw. With `--batch`: the time of one `mutateAll` of 10,000 creates (version 0),
 * then of 10,000 version-checked updates of them, then of 10,000 unconditional puts, and of a
 * 10,000-mutation batch whose stale version in the middle rolls it back.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import Sqlite from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Tracer from "effect/Tracer"
import pg from "pg"
import { Agent, request } from "undici"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as RqliteClient from "../src/layers/RqliteClient.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Mutation, Store } from "../src/Store.js"
import { createScratchDatabase } from "../test/support/postgres.js"
import { startRqlite } from "../test/support/rqlite.js"

type Operation = "get" | "put" | "patch" | "getPrefix"
const operations: ReadonlyArray<Operation> = ["get", "put", "patch", "getPrefix"]
const fiberCounts = [1, 50] as const

/** Rows the benchmark works on: `bench/00000` .. `bench/00999`. */
const keyCount = 1000
const keyOf = (i: number) => `bench/${String(i % keyCount).padStart(5, "0")}`
const recordValue = (i: number) => ({
  n: i,
  name: `item ${i}`,
  tags: ["a", "b"],
  nested: { flag: i % 2 === 0 },
})
const patchOf = (i: number) => ({ n: i, nested: { seen: i } })
/** 10 keys each: bench/0010x */
const prefixOf = (i: number) => `bench/00${String(i % 100).padStart(2, "0")}`
const successorOf = (prefix: string) =>
  prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)

/** The statements the store sends, written out for the raw driver. */
interface RawDriver {
  readonly get: (key: string) => Promise<unknown>
  readonly put: (key: string, value: string, type: string, now: number) => Promise<unknown>
  readonly patch: (key: string, patch: string, now: number) => Promise<unknown>
  readonly getPrefix: (prefix: string, upper: string) => Promise<unknown>
  readonly close: () => Promise<void>
}

interface Backend {
  readonly name: string
  readonly layer: Layer.Layer<Store, unknown>
  readonly raw: () => RawDriver
  /** operations per (operation, fibers) case */
  readonly ops: (fibers: number) => number
  readonly cleanup: () => Promise<void>
}

interface Result {
  readonly opsPerSecond: number
  readonly p50: number
  readonly p99: number
}

const parseRows = (rows: ReadonlyArray<{ value: string }>) =>
  rows.map((row) => ({ ...row, value: JSON.parse(row.value) }))

// --- measurement -----------------------------------------------------------------

const summarize = (latencies: Array<number>, elapsedMs: number): Result => {
  latencies.sort((a, b) => a - b)
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!
  return { opsPerSecond: (latencies.length / elapsedMs) * 1000, p50: at(0.5), p99: at(0.99) }
}

/** `n` calls of `op`, `fibers` at a time, as promises. */
const measureRaw = async (
  n: number,
  fibers: number,
  op: (i: number) => Promise<unknown>,
): Promise<Result> => {
  const latencies: Array<number> = []
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      const t0 = performance.now()
      await op(i)
      latencies.push(performance.now() - t0)
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: fibers }, worker))
  return summarize(latencies, performance.now() - start)
}

/** `n` runs of `op` by `fibers` fibers, each taking the next index until all are done. */
const measureStore = <E>(
  n: number,
  fibers: number,
  op: (i: number) => Effect.Effect<unknown, E, Store>,
): Effect.Effect<Result, E, Store> =>
  Effect.gen(function* () {
    const latencies: Array<number> = []
    let next = 0
    const timed = Effect.suspend(() => {
      const i = next++
      const t0 = performance.now()
      return Effect.map(op(i), () => {
        latencies.push(performance.now() - t0)
      })
    })
    const worker = Effect.whileLoop({ while: () => next < n, body: () => timed, step: () => {} })
    const start = performance.now()
    yield* Effect.all(
      Array.from({ length: fibers }, () => worker),
      { concurrency: "unbounded", discard: true },
    )
    return summarize(latencies, performance.now() - start)
  })

const storeOperation = (operation: Operation) => (i: number) =>
  Effect.flatMap(Store, (store): Effect.Effect<unknown, unknown> => {
    switch (operation) {
      case "get":
        return store.get(keyOf(i * 7))
      case "put":
        return store.put(keyOf(i), -1, recordValue(i))
      case "patch":
        return store.patch(keyOf(i), -1, patchOf(i))
      case "getPrefix":
        return store.getPrefix(prefixOf(i))
    }
  })

const rawOperation = (raw: RawDriver, operation: Operation) => (i: number) => {
  switch (operation) {
    case "get":
      return raw.get(keyOf(i * 7))
    case "put":
      return raw.put(keyOf(i), JSON.stringify(recordValue(i)), "object", Date.now())
    case "patch":
      return raw.patch(keyOf(i), JSON.stringify(patchOf(i)), Date.now())
    case "getPrefix": {
      const prefix = prefixOf(i)
      return raw.getPrefix(prefix, successorOf(prefix))
    }
  }
}

// --- backends --------------------------------------------------------------------

/** `--no-spans`: the layers without their spans (`spans: false`), to measure what spans cost. */
const spans = !process.argv.includes("--no-spans")

/**
 * `--traced`: a tracer of the application's (Effect's own one, as another object), so that the
 * spans are made as under an exporter; without it the store runs under Effect's built-in
 * tracer, where it makes none.
 */
const tracing = (layer: Layer.Layer<Store, unknown>): Layer.Layer<Store, unknown> => {
  if (!process.argv.includes("--traced")) return layer
  const builtIn = Effect.runSync(Effect.tracer)
  return Layer.merge(layer, Layer.setTracer(Tracer.make({ span: builtIn.span, context: builtIn.context })))
}

const sqliteBackend = (): Backend => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bench-"))
  const filename = path.join(dir, "bench.db")
  return {
    name: "sqlite",
    layer: KvSqlite.layer({ filename, spans }),
    ops: (fibers) => (fibers === 1 ? 20_000 : 20_000),
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    raw: () => {
      const db = new Sqlite(filename)
      db.pragma("journal_mode = WAL")
      db.pragma("busy_timeout = 1000")
      const columns = `"key", "version", "value", "type", "created"`
      const get = db.prepare(`SELECT ${columns} FROM kv_records WHERE "key" = ?`)
      const put =
        db.prepare(`INSERT INTO kv_records ("key", "version", "value", "type", "created") VALUES (?, 1, ?, ?, ?)
        ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1, "value" = excluded."value", "type" = excluded."type"
        RETURNING ${columns}`)
      const patch = db.prepare(`INSERT INTO kv_records ("key", "version", "value", "type", "created")
        VALUES (?, 1, json_patch('{}', ?), ?, ?) ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1,
        "value" = json_patch(kv_records."value", ?), "type" = COALESCE(?, kv_records."type") RETURNING ${columns}`)
      const prefix = db.prepare(
        `SELECT ${columns} FROM kv_records WHERE "key" >= ? AND "key" < ? ORDER BY "key" LIMIT ? OFFSET ?`,
      )
      type Row = { value: string }
      return {
        get: async (key) => parseRows(get.all(key) as Array<Row>),
        put: async (key, value, type, now) => parseRows(put.all(key, value, type, now) as Array<Row>),
        patch: async (key, p, now) => parseRows(patch.all(key, p, "object", now, p, null) as Array<Row>),
        getPrefix: async (p, upper) => parseRows(prefix.all(p, upper, -1, 0) as Array<Row>),
        close: async () => {
          db.close()
        },
      }
    },
  }
}

const postgresBackend = async (): Promise<Backend> => {
  const scratch = await createScratchDatabase()
  return {
    name: "postgres",
    layer: KvPostgres.layer({ url: scratch.url, spans }),
    ops: (fibers) => (fibers === 1 ? 3_000 : 10_000),
    cleanup: () => scratch.drop(),
    raw: () => {
      // the same pool size as the store's client
      const pool = new pg.Pool({ connectionString: scratch.url, max: 10 })
      // dropping the scratch database ends idle connections; that is expected here
      pool.on("error", () => {})
      const columns = `"key", "version", "value", "type", "created"`
      type Row = { value: string }
      const rows = (text: string, values: Array<unknown>) =>
        pool.query<Row>(text, values).then((result) => parseRows(result.rows))
      return {
        get: (key) => rows(`SELECT ${columns} FROM kv_records WHERE "key" = $1`, [key]),
        put: (key, value, type, now) =>
          rows(
            `INSERT INTO kv_records ("key", "version", "value", "type", "created") VALUES ($1, 1, $2, $3, $4)
            ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1, "value" = excluded."value",
            "type" = excluded."type" RETURNING ${columns}`,
            [key, value, type, new Date(now)],
          ),
        patch: (key, p, now) =>
          rows(
            `INSERT INTO kv_records ("key", "version", "value", "type", "created")
            VALUES ($1, 1, kv_merge_patch('{}'::json, $2::json)::text, $3, $4) ON CONFLICT ("key") DO UPDATE
            SET "version" = kv_records."version" + 1, "value" = kv_merge_patch(kv_records."value"::json, $5::json)::text,
            "type" = COALESCE($6, kv_records."type") RETURNING ${columns}`,
            [key, p, "object", new Date(now), p, null],
          ),
        getPrefix: (p, upper) =>
          rows(
            `SELECT ${columns} FROM kv_records WHERE "key" >= $1 AND "key" < $2 ORDER BY "key" LIMIT $3 OFFSET $4`,
            [p, upper, null, 0],
          ),
        close: () => pool.end(),
      }
    },
  }
}

const rqliteBackend = async (): Promise<Backend> => {
  const server = await startRqlite()
  const url = new URL(server.url)
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`
  const base = `${url.protocol}//${url.host}`
  // the read consistency the store's client settled on (linearizable or, on older servers, strong)
  const level = await Effect.runPromise(
    Effect.map(RqliteClient.RqliteClient, (client) => client.readLevel).pipe(
      Effect.provide(RqliteClient.layer({ url: server.url })),
    ),
  )
  return {
    name: "rqlite",
    layer: KvRqlite.layer({ url: server.url, spans }),
    ops: (fibers) => (fibers === 1 ? 1_000 : 3_000),
    cleanup: () => server.stop(),
    raw: () => {
      const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 64 })
      const columns = `"key", "version", "value", "type", "created"`
      type Row = { value: string }
      const rows = async (statement: ReadonlyArray<unknown>) => {
        const response = await request(`${base}/db/request?level=${level}`, {
          method: "POST",
          dispatcher,
          headers: { "content-type": "application/json", authorization: auth },
          body: JSON.stringify([statement]),
        })
        const body = (await response.body.json()) as {
          results: Array<{ columns?: Array<string>; values?: Array<Array<unknown>>; error?: string }>
        }
        const result = body.results[0]!
        if (result.error) throw new Error(result.error)
        // the same conversion the client makes: column/value arrays to row objects
        const names = result.columns ?? []
        const objects = (result.values ?? []).map((values) =>
          Object.fromEntries(names.map((name, i) => [name, values[i]])),
        ) as Array<Row>
        return parseRows(objects)
      }
      return {
        get: (key) => rows([`SELECT ${columns} FROM kv_records WHERE "key" = ?`, key]),
        put: (key, value, type, now) =>
          rows([
            `INSERT INTO kv_records ("key", "version", "value", "type", "created") VALUES (?, 1, ?, ?, ?)
            ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1, "value" = excluded."value",
            "type" = excluded."type" RETURNING ${columns}`,
            key,
            value,
            type,
            now,
          ]),
        patch: (key, p, now) =>
          rows([
            `INSERT INTO kv_records ("key", "version", "value", "type", "created")
            VALUES (?, 1, json_patch('{}', ?), ?, ?) ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1,
            "value" = json_patch(kv_records."value", ?), "type" = COALESCE(?, kv_records."type") RETURNING ${columns}`,
            key,
            p,
            "object",
            now,
            p,
            null,
          ]),
        getPrefix: (p, upper) =>
          rows([
            `SELECT ${columns} FROM kv_records WHERE "key" >= ? AND "key" < ? ORDER BY "key" LIMIT ? OFFSET ?`,
            p,
            upper,
            -1,
            0,
          ]),
        close: () => dispatcher.close(),
      }
    },
  }
}

// --- run ---------------------------------------------------------------------------

const format = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

const runBackend = async (backend: Backend) => {
  const runtime = ManagedRuntime.make(tracing(backend.layer))
  const lines: Array<string> = []
  let raw: RawDriver | undefined
  try {
    await runtime.runPromise(
      Effect.flatMap(Store, (store) =>
        store.mutateAll(
          Array.from({ length: keyCount }, (_, i) => Mutation.put(keyOf(i), -1, recordValue(i))),
        ),
      ),
    )
    // the store's layer created the tables; the raw driver uses them as they are
    raw = backend.raw()
    const driver = raw
    for (const operation of operations.filter(
      (op) => onlyOperations === undefined || onlyOperations.includes(op),
    )) {
      for (const fibers of fiberCounts) {
        const n = backend.ops(fibers)
        // warm up both paths (prepared statements, connections, JIT)
        await measureRaw(Math.min(200, n), fibers, rawOperation(driver, operation))
        await runtime.runPromise(measureStore(Math.min(200, n), fibers, storeOperation(operation)))
        const rawResult = await measureRaw(n, fibers, rawOperation(driver, operation))
        const storeResult = await runtime.runPromise(measureStore(n, fibers, storeOperation(operation)))
        const line = [
          backend.name.padEnd(8),
          operation.padEnd(9),
          String(fibers).padStart(6),
          format(storeResult.opsPerSecond).padStart(10),
          format(storeResult.p50, 3).padStart(8),
          format(storeResult.p99, 3).padStart(8),
          format(rawResult.opsPerSecond).padStart(10),
          format(rawResult.p50, 3).padStart(8),
          format(rawResult.p99, 3).padStart(8),
          `${format(storeResult.opsPerSecond / rawResult.opsPerSecond, 2)}x`.padStart(7),
        ].join(" | ")
        console.log(line)
        lines.push(line)
      }
    }
  } finally {
    await raw?.close()
    await runtime.dispose()
    await backend.cleanup()
  }
  return lines
}

// --- big batches (--batch) -----------------------------------------------------------

const batchSize = 10_000

const runBatches = async (backend: Backend) => {
  const runtime = ManagedRuntime.make(backend.layer)
  const keys = Array.from({ length: batchSize }, (_, i) => `batch/${String(i).padStart(5, "0")}`)
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<Mutation>, boolean]> = [
    ["creates (version 0)", keys.map((key, i) => Mutation.put(key, 0, recordValue(i))), true],
    ["updates (version 1)", keys.map((key, i) => Mutation.put(key, 1, recordValue(i + 1))), true],
    ["puts (version -1)", keys.map((key, i) => Mutation.put(key, -1, recordValue(i + 2))), true],
    ["patches (version 3)", keys.map((key, i) => Mutation.patch(key, 3, patchOf(i))), true],
    [
      "stale in the middle",
      keys.map((key, i) => Mutation.put(key, i === batchSize / 2 ? 1 : 4, recordValue(i))),
      false,
    ],
  ]
  try {
    // build the layer (connections, migrations) before timing
    await runtime.runPromise(Effect.flatMap(Store, (store) => store.count()))
    for (const [what, mutations, succeeds] of cases) {
      const start = performance.now()
      const outcome = await runtime.runPromise(
        Effect.either(Effect.flatMap(Store, (store) => store.mutateAll(mutations))),
      )
      const elapsed = performance.now() - start
      if ((outcome._tag === "Right") !== succeeds) throw new Error(`${what}: unexpected ${outcome._tag}`)
      console.log(
        [
          backend.name.padEnd(8),
          what.padEnd(20),
          String(mutations.length).padStart(9),
          format(elapsed, 0).padStart(8),
        ].join(" | "),
      )
    }
  } finally {
    await runtime.dispose()
    await backend.cleanup()
  }
}

const onlyArgument = process.argv.find((arg) => arg.startsWith("--only="))
const onlyOperations = onlyArgument?.slice("--only=".length).split(",")

const main = async () => {
  const args = process.argv.slice(2)
  const batch = args.includes("--batch")
  const wanted = new Set(
    args.filter((arg) => !arg.startsWith("--")).map((name) => (name === "pg" ? "postgres" : name)),
  )
  const pick = (name: string) => wanted.size === 0 || wanted.has(name)
  if (batch) {
    console.log(`${"backend".padEnd(8)} | ${"mutateAll".padEnd(20)} | mutations | ${"ms".padStart(8)}`)
    if (pick("sqlite")) await runBatches(sqliteBackend())
    if (pick("postgres")) await runBatches(await postgresBackend())
    if (pick("rqlite")) await runBatches(await rqliteBackend())
    return
  }
  console.log(
    `${"backend".padEnd(8)} | ${"operation".padEnd(9)} | fibers | ${"store/s".padStart(10)} | ${"p50 ms".padStart(8)} | ${"p99 ms".padStart(8)} | ${"raw/s".padStart(10)} | ${"p50 ms".padStart(8)} | ${"p99 ms".padStart(8)} | ratio`,
  )
  if (pick("sqlite")) await runBackend(sqliteBackend())
  if (pick("postgres")) await runBackend(await postgresBackend())
  if (pick("rqlite")) await runBackend(await rqliteBackend())
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
