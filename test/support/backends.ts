/**
 * Every backend on a fresh database, for tests that need a layer with settings of their own
 * or the `SqlClient` under the store: a SQLite file in a new directory, a PostgreSQL scratch
 * database, a new rqlited. The database goes away with the layer.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Layer from "effect/Layer"
import * as KvPostgres from "../../src/layers/Postgres.js"
import * as KvRqlite from "../../src/layers/Rqlite.js"
import * as KvSql from "../../src/layers/Sql.js"
import * as KvSqlite from "../../src/layers/Sqlite.js"
import { createScratchDatabase } from "./postgres.js"
import { startRqlite } from "./rqlite.js"
import { layerOnScratch } from "./scratch.js"

export const backendNames = ["sqlite", "postgres", "rqlite"] as const
export type BackendName = (typeof backendNames)[number]

/** The client layer of `backend` on a fresh database (its executor and wake-ups included). */
const clientOn = (backend: BackendName) => {
  switch (backend) {
    case "sqlite":
      return layerOnScratch(
        async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-backend-")),
        async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
        (dir) => KvSqlite.layerClient({ filename: path.join(dir, "data.db") }),
      )
    case "postgres":
      return layerOnScratch(
        createScratchDatabase,
        (database) => database.drop(),
        (database) => KvPostgres.layerClient({ url: database.url }),
      )
    case "rqlite":
      return layerOnScratch(
        startRqlite,
        (server) => server.stop(),
        (server) => KvRqlite.layerClient({ url: server.url }),
      )
  }
}

/** The services (and the `SqlClient` they run on) of `backend` on a fresh database. */
export const freshBackend = (
  backend: BackendName,
  config: KvSql.SqlConfig = {},
): Layer.Layer<KvSql.Services | SqlClient.SqlClient, unknown> =>
  KvSql.layerOn(config).pipe(Layer.provideMerge(clientOn(backend)))
