/**
 * Counters under contention from many processes: 8 processes x 250 increments of one key
 * (`store.increment` and `Mutation.increment` in turn, with no retries) end at exactly 2,000,
 * version 2,000 and 2,000 stream records of the key, on a SQLite file, PostgreSQL and rqlite.
 * Unlike version-checked read-modify-write (MultiProcess.test.ts), no write ever has to be
 * retried: the addition happens in SQL.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { afterAll, describe, expect, it } from "vitest"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Store } from "../src/Store.js"
import { createScratchDatabase, type ScratchDatabase } from "./support/postgres.js"
import { killAll, spawnScript, waitForLine, watch } from "./support/processes.js"
import { type RqliteServer, startRqlite } from "./support/rqlite.js"

const processes = 8
const increments = 250
const key = "mp/atomic-counter"

const run = async (
  type: "sqlite" | "postgres" | "rqlite",
  connection: string,
  layer: Layer.Layer<Store, unknown>,
) => {
  const children = Array.from({ length: processes }, () =>
    spawnScript("atomicIncrementer.ts", [type, connection, key, String(increments)]),
  )
  try {
    const watched = children.map((child) => watch(child))
    await Promise.all(children.map((child) => waitForLine(child, "ready")))
    const started = Date.now()
    for (const child of children) child.stdin?.end("go\n")
    const finished = await Promise.all(watched.map((w) => w.finished))
    const seconds = (Date.now() - started) / 1000
    for (const result of finished) {
      expect(result.stderr).not.toMatch(/locked|busy/i)
      expect(result, result.stderr).toMatchObject({ code: 0 })
      expect(JSON.parse(result.stdout.trim().split("\n").at(-1)!)).toEqual({ increments })
    }
    console.log(
      `${type}: ${processes} processes x ${increments} increments of one key in ${seconds.toFixed(1)}s`,
    )
    return await Effect.runPromise(
      Effect.gen(function* () {
        const store = yield* Store
        const record = Option.getOrThrow(yield* store.get(key))
        const changes = yield* store.stream("all", 0, -1, { prefix: key })
        return { record, changes }
      }).pipe(Effect.provide(layer)),
    )
  } finally {
    killAll(children)
  }
}

const check = ({ changes, record }: Awaited<ReturnType<typeof run>>) => {
  const total = processes * increments
  expect([record.value, record.version, record.type]).toEqual([total, total, "number"])
  expect(changes.length).toBe(total)
  // every increment is one stream record, with the version and value it made
  changes.forEach((change, i) => {
    expect([change.action, change.record.version, change.record.value]).toEqual([
      i === 0 ? "create" : "update",
      i + 1,
      i + 1,
    ])
  })
}

describe(`${processes} processes x ${increments} increments of one key`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-increments-"))
  let scratch: ScratchDatabase | undefined
  let rqlite: RqliteServer | undefined
  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true })
    await scratch?.drop()
    await rqlite?.stop()
  })

  it("end at exactly 2,000 on a SQLite file", async () => {
    const filename = `file:${path.join(dir, "counter.db")}?mode=rwc`
    check(await run("sqlite", filename, KvSqlite.layer({ filename })))
  }, 180_000)

  it("end at exactly 2,000 on PostgreSQL", async () => {
    scratch = await createScratchDatabase()
    check(await run("postgres", scratch.url, KvPostgres.layer({ url: scratch.url })))
  }, 180_000)

  it("end at exactly 2,000 on rqlite", async () => {
    rqlite = await startRqlite()
    check(await run("rqlite", rqlite.url, KvRqlite.layer({ url: rqlite.url })))
  }, 180_000)
})
