/**
 * Expiry: records with a time to live. A session that expires, a counter that counts per
 * window, what reads see once they expired, the sweep that deletes them, and how the change
 * stream tells an expiry from a delete.
 *
 *   npx tsx examples/expiry.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory. The layer's own sweep (every second while it is built) is turned off here, so
 * that `store.expire()` shows what it deletes.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Effect, Option } from "effect"
import { Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-expiry-")), "example.db")

const program = Effect.gen(function* () {
  const store = yield* Store
  const first = (yield* store.streamSeq()) + 1

  const session = yield* store.put("sessions/s1", 0, { user: "ada" }, { ttl: "1 second" })
  const lifetime = session.expiresAt!.getTime() - session.created.getTime()
  yield* Console.log(`put ${session.key}: expires ${lifetime} ms after it was written`)
  // a patch keeps the expiry; a put without a ttl would clear it
  const touched = yield* store.patch("sessions/s1", session.version, { seen: true })
  yield* Console.log(
    `patch keeps expiresAt: ${touched.expiresAt?.getTime() === session.expiresAt?.getTime()}`,
  )

  // a counter per window: the first increment of a window sets its ttl, later ones keep it
  yield* store.increment("rate/ada", 1, { ttl: "1 second" })
  const counted = yield* store.increment("rate/ada")
  yield* Console.log(`rate/ada: ${counted.value} requests in this window`)

  yield* store.put("sessions/s2", 0, { user: "grace" }, { ttl: "1 hour" })
  yield* store.put("sessions/s3", 0, { user: "alan" }, { ttl: "1 hour" })
  yield* store.delete("sessions/s3")

  yield* Effect.sleep("1200 millis")
  yield* Console.log(
    `after 1.2 s: sessions/s1 ${Option.isSome(yield* store.get("sessions/s1")) ? "found" : "gone"}`,
  )
  const live = yield* store.getPrefix("sessions/")
  yield* Console.log(`getPrefix sessions/: ${live.map((record) => record.key).join(", ")}`)
  // an expired counter counts from 0 again, as a new record
  const fresh = yield* store.increment("rate/ada")
  yield* Console.log(`rate/ada: ${fresh.value} request in the new window (version ${fresh.version})`)

  yield* Console.log(`expire: ${yield* store.expire()} expired record(s) deleted`)

  // deletes of expired records keep their expiresAt; other deletes have none
  for (const change of yield* store.stream("all", first)) {
    if (change.action !== "delete") continue
    const why = change.record.expiresAt === undefined ? "deleted" : "expired"
    yield* Console.log(`stream: delete ${change.record.key} (${why})`)
  }
})

program
  .pipe(Effect.provide(KvSqlite.layer({ filename, expirySweep: false })), Effect.runPromise)
  .catch((error) => {
    console.error(error)
    process.exit(1)
  })
