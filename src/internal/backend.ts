/**
 * Picks the backend layer for the CLI's `--type` and `--connection`.
 */
import type * as Layer from "effect/Layer"
import * as KvPostgres from "../layers/Postgres.js"
import * as KvRqlite from "../layers/Rqlite.js"
import * as KvSqlite from "../layers/Sqlite.js"
import type { InvalidArgumentError, Store, StoreError } from "../Store.js"

export const backendTypes = ["sqlite", "postgres", "rqlite"] as const
export type BackendType = (typeof backendTypes)[number]

export const isBackendType = (u: unknown): u is BackendType => backendTypes.includes(u as BackendType)

export const layerFor = (
  type: BackendType,
  connection: string,
): Layer.Layer<Store, StoreError | InvalidArgumentError> => {
  switch (type) {
    case "sqlite":
      return KvSqlite.layer({ filename: connection })
    case "postgres":
      return KvPostgres.layer({ url: connection })
    case "rqlite":
      return KvRqlite.layer({ url: connection })
  }
}
