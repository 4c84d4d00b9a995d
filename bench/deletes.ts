/**
 * `deletePrefix` of 5,000 small records next to one 5 MiB record, per backend: the case that
 * took seconds while `kv_records` was a WITHOUT ROWID table (see `0005_records_rowid`).
 *
 *   npx tsx bench/deletes.ts                 # every backend
 *   npx tsx bench/deletes.ts -- sqlite rqlite
 *
 * The big record sits just before the prefix (`bulk`, before `bulk/...`) or just after it
 * (`bulk0`); each case runs on a fresh database, a few times, and prints each time in ms.
 * Needs the local PostgreSQL (KV_POSTGRES_URL) and starts its own rqlite server.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Mutation, Store } from "../src/Store.js"
import { createScratchDatabase } from "../test/support/postgres.js"
import { startRqlite } from "../test/support/rqlite.js"

const smallCount = 5_000
const bigSize = 5 * 1024 * 1024
const rounds = 3
const bigKeys = ["bulk", "bulk0"] as const

interface Database {
  readonly layer: Layer.Layer<Store, unknown>
  readonly drop: () => Promise<void>
}

const backends: Record<string, () => Promise<Database>> = {
  sqlite: async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-bench-deletes-"))
    return {
      layer: KvSqlite.layer({ filename: path.join(dir, "bench.db") }),
      drop: async () => fs.rmSync(dir, { recursive: true, force: true }),
    }
  },
  postgres: async () => {
    const scratch = await createScratchDatabase()
    return { layer: KvPostgres.layer({ url: scratch.url }), drop: scratch.drop }
  },
  rqlite: async () => {
    const server = await startRqlite()
    return { layer: KvRqlite.layer({ url: server.url }), drop: server.stop }
  },
}

/** Fills the store, then times one `deletePrefix("bulk/")`. */
const deleteNextToBig = (bigKey: string) =>
  Effect.gen(function* () {
    const store = yield* Store
    const small = Array.from({ length: smallCount }, (_, i) =>
      Mutation.put(`bulk/${String(i).padStart(5, "0")}`, -1, { n: i }),
    )
    for (let i = 0; i < small.length; i += 500) yield* store.mutateAll(small.slice(i, i + 500))
    yield* store.put(bigKey, -1, randomBytes(bigSize / 2).toString("hex"))
    const start = performance.now()
    const deleted = yield* store.deletePrefix("bulk/")
    const millis = performance.now() - start
    if (deleted !== smallCount) throw new Error(`deleted ${deleted} records, not ${smallCount}`)
    return millis
  })

const main = async () => {
  const wanted = process.argv.slice(2).filter((arg) => arg !== "--")
  const names = wanted.length > 0 ? wanted : Object.keys(backends)
  console.log("backend  | big record | deletePrefix of 5,000 records, ms per round")
  for (const name of names) {
    const make = backends[name]
    if (make === undefined) {
      throw new Error(`unknown backend ${name}; use ${Object.keys(backends).join(", ")}`)
    }
    for (const bigKey of bigKeys) {
      const times: Array<string> = []
      for (let round = 0; round < rounds; round++) {
        const database = await make()
        const runtime = ManagedRuntime.make(database.layer)
        try {
          times.push((await runtime.runPromise(deleteNextToBig(bigKey))).toFixed(1))
        } finally {
          await runtime.dispose()
          await database.drop()
        }
      }
      console.log(`${name.padEnd(8)} | ${bigKey.padEnd(10)} | ${times.join(", ")}`)
    }
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
