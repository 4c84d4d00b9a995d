/**
 * The key-value store: put, get, patch, a version check that fails, prefix reads, an atomic
 * `mutateAll` and the change stream.
 *
 *   npx tsx examples/store.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Effect, Option } from "effect"
import { Mutation, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-store-")), "example.db")

const program = Effect.gen(function* () {
  const store = yield* Store

  // version 0: create only; -1 would write whatever is there
  const ada = yield* store.put("users/ada", 0, { name: "Ada", visits: 0 }, { type: "User" })
  yield* Console.log(`put ${ada.key} v${ada.version}`)
  yield* store.put("users/alan", 0, { name: "Alan", visits: 0 }, { type: "User" })

  const read = Option.getOrThrow(yield* store.get("users/ada"))
  yield* Console.log(`get ${read.key} v${read.version} ${JSON.stringify(read.value)}`)

  // a merge patch of the version just read
  const patched = yield* store.patch("users/ada", read.version, { visits: 1 })
  yield* Console.log(`patch ${patched.key} v${patched.version} ${JSON.stringify(patched.value)}`)

  // the same version again: someone (we) changed it since, so nothing is written
  yield* store
    .patch("users/ada", read.version, { visits: 2 })
    .pipe(Effect.catchTag("VersionMismatchError", (error) => Console.log(`version check: ${error.message}`)))

  const users = yield* store.getPrefix("users/")
  yield* Console.log(`getPrefix users/: ${users.map((user) => `${user.key} v${user.version}`).join(", ")}`)

  // all or nothing, in one transaction
  const affected = yield* store.mutateAll([
    Mutation.put("users/grace", 0, { name: "Grace", visits: 0 }, { type: "User" }),
    Mutation.patch("users/alan", 1, { visits: 1 }),
    Mutation.delete("users/ada"),
  ])
  yield* Console.log(`mutateAll: rows affected ${affected.join(", ")}`)

  // every change, in order
  for (const change of yield* store.stream("all", 0)) {
    yield* Console.log(`stream ${change.seq} ${change.action} ${change.record.key} v${change.record.version}`)
  }
})

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
