/**
 * Stream consumers: `Consumer.stream` gives a named consumer's records as an Effect `Stream`
 * and commits its position as they are processed (`commitMode`); the next stream of the same
 * consumer goes on from there.
 *
 *   npx tsx examples/consumer.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Chunk, Console, Effect, Option, Stream } from "effect"
import { Consumer, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-consumer-")), "example.db")

/** Takes `n` records of the consumer "mailer" and prints them with the position committed afterwards. */
const takeRecords = (n: number, commitMode: Consumer.CommitMode, batchSize = 100) =>
  Effect.gen(function* () {
    const records = yield* Consumer.stream({
      streamName: "mailer",
      consumerName: "mailer-1",
      commitMode,
      batchSize,
    }).pipe(Stream.take(n), Stream.runCollect)
    const status = yield* Consumer.status("mailer")
    const position = Option.match(status, { onNone: () => 0, onSome: (s) => s.position })
    const taken = Chunk.toReadonlyArray(records).map((change) => `${change.seq}:${change.record.key}`)
    yield* Console.log(`${commitMode}: took ${taken.join(" ")}; committed position ${position}`)
  })

const program = Effect.gen(function* () {
  const store = yield* Store
  for (const id of [1, 2, 3, 4, 5, 6]) {
    yield* store.put(`orders/${id}`, 0, { id, total: id * 10 }, { type: "Order" })
  }
  yield* Console.log(`stream seq ${yield* store.streamSeq()}`)

  // "record": each record is committed once the next one is pulled; the last one taken was
  // not finished as far as the consumer knows, so it is delivered again
  yield* takeRecords(3, "record")
  // "none": never commits (a dry run, a replay)
  yield* takeRecords(2, "none")
  // "batch" (the default): a whole read (here 2 records) is committed when the next is pulled
  yield* takeRecords(3, "batch", 2)
  yield* takeRecords(2, "record")
})

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
