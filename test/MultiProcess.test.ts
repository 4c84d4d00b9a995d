/**
 * Many processes on one database: 8 processes x 500 version-checked increments of one key
 * (each retrying on a version mismatch) end at exactly 4,000, on a SQLite file and on
 * PostgreSQL. Every process also runs the migrations at start-up, all at once. On SQLite no
 * process ever sees "database is locked": contention is the store's to absorb.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { afterAll, describe, expect, it } from "vitest"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Store } from "../src/Store.js"
import { createScratchDatabase, type ScratchDatabase } from "./support/postgres.js"
import { killAll, spawnScript, waitForLine, watch } from "./support/processes.js"

const processes = 8
const increments = 500

/** Runs the incrementers against one database and returns their summaries and the final record. */
const run = async (type: "sqlite" | "postgres", connection: string) => {
  const children = Array.from({ length: processes }, () =>
    spawnScript("incrementer.ts", [type, connection, "mp/counter", String(increments)]),
  )
  try {
    const watched = children.map((child) => watch(child))
    // every process has built its store (and raced the others through the migrations)
    await Promise.all(children.map((child) => waitForLine(child, "ready")))
    for (const child of children) child.stdin?.end("go\n")
    const finished = await Promise.all(watched.map((w) => w.finished))
    for (const result of finished) {
      expect(result.stderr).not.toMatch(/locked|busy/i)
      expect(result, result.stderr).toMatchObject({ code: 0 })
    }
    const summaries = finished.map(
      (result) => JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { mismatches: number },
    )
    const layer =
      type === "postgres" ? KvPostgres.layer({ url: connection }) : KvSqlite.layer({ filename: connection })
    const record = await Effect.runPromise(
      Effect.flatMap(Store, (store) => store.get("mp/counter")).pipe(Effect.provide(layer)),
    )
    const mismatches = summaries.reduce((n, s) => n + s.mismatches, 0)
    console.log(
      `${type}: ${processes} processes x ${increments} increments -> ${JSON.stringify(Option.getOrThrow(record).value)} ` +
        `(${mismatches} version mismatches retried)`,
    )
    return Option.getOrThrow(record)
  } finally {
    killAll(children)
  }
}

describe(`${processes} processes x ${increments} version-checked increments of one key`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-processes-"))
  let scratch: ScratchDatabase | undefined
  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true })
    await scratch?.drop()
  })

  it("end at exactly 4,000 on a SQLite file, without 'database is locked'", async () => {
    const record = await run("sqlite", `file:${path.join(dir, "counter.db")}?mode=rwc`)
    expect(record.value).toBe(processes * increments)
    expect(record.version).toBe(processes * increments)
  }, 120_000)

  it("end at exactly 4,000 on PostgreSQL", async () => {
    scratch = await createScratchDatabase()
    const record = await run("postgres", scratch.url)
    expect(record.value).toBe(processes * increments)
    expect(record.version).toBe(processes * increments)
  }, 120_000)
})
