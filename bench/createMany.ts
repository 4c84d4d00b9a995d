/**
 * Bulk enqueue: `scheduler.createMany` of 10,000 tasks in one call (one atomic write) on each
 * backend, unkeyed and with a key each (replace mode), then the same keys again (all 10,000
 * replaced in place).
 *
 *   npx tsx bench/createMany.ts                  # every backend
 *   npx tsx bench/createMany.ts sqlite postgres  # some of them (sqlite, postgres, rqlite)
 *
 * Needs the local PostgreSQL (KV_POSTGRES_URL) and starts its own rqlite server. Prints one
 * row per backend and case: milliseconds for the call and tasks/s.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import { createScratchDatabase } from "../test/support/postgres.js"
import { startRqlite } from "../test/support/rqlite.js"

const count = 10_000

const cases = [
  { label: "unkeyed", key: (_: number) => undefined as string | undefined },
  { label: "keyed (new keys)", key: (i: number) => `bulk/${i}` },
  { label: "keyed (replacing)", key: (i: number) => `bulk/${i}` },
]

const measure = (layer: Layer.Layer<Scheduler, unknown>) =>
  Effect.gen(function* () {
    const scheduler = yield* Scheduler
    const rows: Array<{ label: string; ms: number }> = []
    for (const c of cases) {
      const tasks = yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        (i) => Task.make("bulk", { i }, { key: c.key(i), priority: i % 3 }),
      )
      const start = performance.now()
      const stored = yield* scheduler.createMany(tasks)
      const ms = performance.now() - start
      if (stored.length !== count) throw new Error(`stored ${stored.length} tasks`)
      rows.push({ label: c.label, ms })
    }
    const pending = yield* scheduler.list({ name: "bulk", status: "pending" })
    if (pending.length !== 2 * count)
      throw new Error(`${pending.length} pending tasks, expected ${2 * count}`)
    return rows
  }).pipe(Effect.provide(layer))

const main = async () => {
  const wanted = process.argv.slice(2)
  const want = (name: string) => wanted.length === 0 || wanted.some((w) => name.startsWith(w))
  const results: Array<string> = []
  const report = (backend: string, rows: ReadonlyArray<{ label: string; ms: number }>) => {
    for (const row of rows) {
      const line = `${backend.padEnd(10)} ${row.label.padEnd(18)} ${count} tasks in ${row.ms.toFixed(0).padStart(6)} ms  (${Math.round((count / row.ms) * 1000)} tasks/s)`
      console.log(line)
      results.push(line)
    }
  }
  if (want("sqlite")) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bench-bulk-"))
    try {
      const layer = KvSqlite.layer({ filename: `file:${path.join(dir, "data.db")}?mode=rwc` })
      report("sqlite", await Effect.runPromise(measure(layer)))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  if (want("postgres") || want("pg")) {
    const scratch = await createScratchDatabase()
    try {
      report("postgres", await Effect.runPromise(measure(KvPostgres.layer({ url: scratch.url }))))
    } finally {
      await scratch.drop()
    }
  }
  if (want("rqlite")) {
    const server = await startRqlite()
    try {
      report("rqlite", await Effect.runPromise(measure(KvRqlite.layer({ url: server.url }))))
    } finally {
      await server.stop()
    }
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
