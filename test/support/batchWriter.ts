/**
 * A process that applies `mutateAll` batches to a SQLite file until it is killed:
 * `node --import tsx test/support/batchWriter.ts <file> <run>`.
 *
 * Batch `b` of run `r` writes `batchSize` keys out of `keyCount` (each value `{ run, batch,
 * key }`) and deletes one more, all in one `mutateAll`. It prints `ready` once its store is
 * built, then `b` after batch `b` committed: everything it printed was acknowledged to it.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as KvSqlite from "../../src/layers/Sqlite.js"
import { Mutation, Store } from "../../src/Store.js"

export const keyCount = 23
export const batchSize = 5

/** The keys batch `batch` writes, and the one it deletes: a different mix every time. */
export const batchKeys = (batch: number) => {
  const keys = Array.from({ length: batchSize }, (_, j) => `crash/${(batch * 7 + j * 3) % keyCount}`)
  return { written: keys, deleted: `crash/${(batch * 7 + batchSize * 3) % keyCount}` }
}

const main = () => {
  const [file, runText] = process.argv.slice(2)
  if (file === undefined || runText === undefined) {
    console.error("usage: batchWriter.ts <file> <run>")
    process.exit(2)
  }
  const run = Number(runText)
  const program = Effect.gen(function* () {
    const store = Context.get(yield* Layer.build(KvSqlite.layer({ filename: file })), Store)
    console.log("ready")
    for (let batch = 0; ; batch++) {
      const { written, deleted } = batchKeys(batch)
      yield* store.mutateAll([
        ...written.map((key) => Mutation.put(key, -1, { run, batch, key })),
        Mutation.delete(deleted),
      ])
      process.stdout.write(`${batch}\n`)
    }
  }).pipe(Effect.scoped)
  Effect.runPromise(program).catch((error: unknown) => {
    console.error(`batchWriter: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  })
}

if (process.argv[1]?.endsWith("batchWriter.ts")) main()
