/**
 * The expiry sweep under contention: 3 processes sweep 5,000 expired keys at once (and the
 * same again) and, together, delete and report each key exactly once: the sum of what they
 * report is 5,000 and the stream holds one `delete` record per key, with its `expiresAt`, on
 * a SQLite file, PostgreSQL and rqlite.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { afterAll, describe, expect, it } from "vitest"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Mutation, Store } from "../src/Store.js"
import { createScratchDatabase, type ScratchDatabase } from "./support/postgres.js"
import { killAll, spawnScript, waitForLine, watch } from "./support/processes.js"
import { type RqliteServer, startRqlite } from "./support/rqlite.js"

const processes = 3
const keys = Array.from({ length: 5000 }, (_, i) => `sweep/${String(i).padStart(4, "0")}`)

const run = async (
  type: "sqlite" | "postgres" | "rqlite",
  connection: string,
  layer: Layer.Layer<Store, unknown>,
) => {
  const use = <A, E>(effect: Effect.Effect<A, E, Store>) => Effect.runPromise(Effect.provide(effect, layer))
  const first = await use(
    Effect.gen(function* () {
      const store = yield* Store
      const seq = (yield* store.streamSeq()) + 1
      // a key that does not expire, and 5,000 that expire at once (ttl 1 ms: by the time the
      // sweepers start, all of them have)
      yield* store.put("sweep/kept", -1, "kept")
      yield* store.mutateAll(keys.map((key) => Mutation.put(key, -1, key, { ttl: "1 millis" })))
      return seq
    }),
  )
  const children = Array.from({ length: processes }, () =>
    spawnScript("expirySweeper.ts", [type, connection]),
  )
  try {
    const watched = children.map((child) => watch(child))
    await Promise.all(children.map((child) => waitForLine(child, "ready")))
    for (const child of children) child.stdin?.end("go\n")
    const finished = await Promise.all(watched.map((w) => w.finished))
    const reported = finished.map((result) => {
      expect(result, result.stderr).toMatchObject({ code: 0 })
      return (JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { expired: number }).expired
    })
    console.log(`${type}: ${processes} sweepers reported ${reported.join(" + ")} expired records`)
    expect(reported.reduce((a, b) => a + b, 0)).toBe(keys.length)
    const changes = await use(
      Effect.flatMap(Store, (store) => store.stream("all", first, -1, { prefix: "sweep/" })),
    )
    const deletes = changes.filter((change) => change.action === "delete")
    expect(deletes.map((change) => change.record.key).sort()).toEqual(keys)
    for (const change of deletes) expect(change.record.expiresAt).toBeInstanceOf(Date)
    const left = await use(Effect.flatMap(Store, (store) => store.getPrefix("sweep/")))
    expect(left.map((record) => record.key)).toEqual(["sweep/kept"])
  } finally {
    killAll(children)
  }
}

describe(`${processes} processes sweeping 5,000 expired keys at once`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-sweep-"))
  let scratch: ScratchDatabase | undefined
  let rqlite: RqliteServer | undefined
  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true })
    await scratch?.drop()
    await rqlite?.stop()
  })

  it("delete and report each key once on a SQLite file", async () => {
    const filename = `file:${path.join(dir, "sweep.db")}?mode=rwc`
    await run("sqlite", filename, KvSqlite.layer({ filename, expirySweep: false }))
  }, 180_000)

  it("delete and report each key once on PostgreSQL", async () => {
    scratch = await createScratchDatabase()
    await run("postgres", scratch.url, KvPostgres.layer({ url: scratch.url, expirySweep: false }))
  }, 180_000)

  it("delete and report each key once on rqlite", async () => {
    rqlite = await startRqlite()
    await run("rqlite", rqlite.url, KvRqlite.layer({ url: rqlite.url, expirySweep: false }))
  }, 180_000)
})
