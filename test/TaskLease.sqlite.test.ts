import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import Database from "better-sqlite3"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { KvSqlite } from "../src/sqlite.js"
import { taskLeaseSuite } from "./TaskLease.suite.js"

taskLeaseSuite(
  "a SQLite file locked by another connection",
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-lease-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
    )
    const file = path.join(dir, "data.db")
    const layer = (busyTimeout: Duration.DurationInput) =>
      KvSqlite.layer({ filename: `file:${file}?mode=rwc`, changeCheckInterval: "1 hour", busyTimeout })
    // another process's connection holding the write lock: every writer gets SQLITE_BUSY
    let blocker: Database.Database | undefined
    const thaw = () => {
      if (blocker?.inTransaction) blocker.exec("ROLLBACK")
      blocker?.close()
      blocker = undefined
    }
    return {
      cut: layer("10 millis"),
      working: layer("10 millis"),
      freeze: () => {
        blocker = new Database(file)
        blocker.exec("BEGIN EXCLUSIVE")
      },
      thaw,
      close: async () => thaw(),
    }
  }),
)
