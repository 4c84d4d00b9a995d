/**
 * Crashes: a process applying `mutateAll` batches to a SQLite file is killed with SIGKILL
 * mid-run, again and again. After each kill the file opens, every batch is all or nothing,
 * every batch the process saw committed is there, and the change stream agrees with the keys
 * (replaying the stream gives exactly the records in the table).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import { afterAll, describe, expect, it } from "vitest"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { type KvRecord, Store, type StreamRecord } from "../src/Store.js"
import { batchKeys, batchSize } from "./support/batchWriter.js"
import { killAll, spawnScript, waitForLine, watch } from "./support/processes.js"

const runs = 6

interface Tag {
  readonly run: number
  readonly batch: number
  readonly key: string
}

/** Everything in the file: the records and the whole stream. */
const readBack = (filename: string) =>
  Effect.runPromise(
    Effect.flatMap(Store, (store) =>
      Effect.all({ records: store.list(), stream: store.stream("all", 0) }),
    ).pipe(Effect.provide(KvSqlite.layer({ filename }))),
  )

/**
 * Checks the stream batch by batch: each batch is its `batchSize` puts with consecutive seqs,
 * then (when the key existed) the delete of its key, and nothing else; batches of a run come
 * in order without gaps. Returns the last batch of each run found.
 */
const checkBatches = (stream: ReadonlyArray<StreamRecord>): Map<number, number> => {
  const last = new Map<number, number>()
  let i = 0
  while (i < stream.length) {
    const first = stream[i]!
    expect(first.action, `seq ${first.seq} starts a batch`).not.toBe("delete")
    const { run, batch } = first.record.value as Tag
    expect(batch, `run ${run}: batch ${batch} follows ${last.get(run)}`).toBe((last.get(run) ?? -1) + 1)
    const { written, deleted } = batchKeys(batch)
    const puts = stream.slice(i, i + batchSize)
    expect(
      puts.map((r) => [r.seq - first.seq, r.action === "delete", r.record.key, r.record.value]),
      `run ${run} batch ${batch} is whole`,
    ).toEqual(written.map((key, j) => [j, false, key, { run, batch, key }]))
    i += batchSize
    const next = stream[i]
    if (next?.action === "delete") {
      expect(next.record.key).toBe(deleted)
      expect(next.seq).toBe(first.seq + batchSize)
      i++
    }
    last.set(run, batch)
  }
  return last
}

/** The records the stream says exist: each key's last create/update, unless deleted after. */
const replay = (stream: ReadonlyArray<StreamRecord>): Map<string, KvRecord> => {
  const state = new Map<string, KvRecord>()
  for (const { action, record } of stream) {
    if (action === "delete") state.delete(record.key)
    else state.set(record.key, record)
  }
  return state
}

describe("SIGKILL while a process applies mutateAll batches to a SQLite file", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-crash-"))
  const filename = path.join(dir, "crash.db")
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it(`every batch is all or nothing and the stream agrees with the keys, after ${runs} kills`, async () => {
    const acknowledged: Array<number> = []
    for (let run = 0; run < runs; run++) {
      let confirmed = -1
      const child = spawnScript("batchWriter.ts", [filename, String(run)])
      try {
        const watched = watch(child, (line) => {
          if (/^\d+$/.test(line)) confirmed = Number(line)
        })
        await waitForLine(child, "ready")
        // let it get going, then kill it at a moment it does not choose
        while (confirmed < 20 + run * 10) await new Promise((resolve) => setTimeout(resolve, 5))
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 30))
        process.kill(child.pid!, "SIGKILL")
        const result = await watched.finished
        expect(result.signal, result.stderr).toBe("SIGKILL")
        acknowledged.push(confirmed)
      } finally {
        killAll([child])
      }

      const { records, stream } = await readBack(filename)
      const found = checkBatches(stream)
      // every batch the process saw committed survived the kill; at most the one it was
      // committing when it died is there without having been acknowledged
      for (const [r, batch] of acknowledged.entries()) {
        expect(found.get(r) ?? -1).toBeGreaterThanOrEqual(batch)
        expect(found.get(r) ?? -1).toBeLessThanOrEqual(batch + 1)
      }
      // the table is exactly what the stream says, version for version
      const state = replay(stream)
      expect(records.map((r) => [r.key, r.version, r.value])).toEqual(
        [...state.values()].sort((a, b) => (a.key < b.key ? -1 : 1)).map((r) => [r.key, r.version, r.value]),
      )
    }
    console.log(
      `crashes: ${runs} SIGKILLs; batches acknowledged before each kill: ${acknowledged.map((n) => n + 1).join(", ")}`,
    )
  }, 120_000)
})
