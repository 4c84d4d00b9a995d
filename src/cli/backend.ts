/**
 * The backend behind `--type` and `--connection`: its layer, loaded on demand so that a command
 * on SQLite does not compile the PostgreSQL and rqlite clients (and the reverse).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as KvSql from "../layers/Sql.js"
import type { InvalidArgumentError, StoreError } from "../Store.js"

export const backendTypes = ["sqlite", "postgres", "rqlite"] as const
export type BackendType = (typeof backendTypes)[number]

/** How long a command runs: a one-shot command hides expired records but does not sweep them. */
export type Lifetime = "one-shot" | "long-running"

/**
 * The store of a backend, the connection string kept `Redacted` up to its client. A
 * long-running command (`task run`, `consumer stream`, `watch`, `nats push`) sweeps expired
 * records while it runs, like a layer kept built in an application.
 */
export const layerFor = (
  type: BackendType,
  connection: Redacted.Redacted<string>,
  lifetime: Lifetime = "one-shot",
): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError> => {
  const expirySweep = lifetime === "one-shot" ? false : undefined
  return Layer.unwrapEffect(
    Effect.promise(async () => {
      switch (type) {
        case "sqlite":
          return (await import("../layers/Sqlite.js")).layer({
            filename: Redacted.value(connection),
            expirySweep,
          })
        case "postgres":
          return (await import("../layers/Postgres.js")).layer({ url: connection, expirySweep })
        case "rqlite":
          return (await import("../layers/Rqlite.js")).layer({ url: connection, expirySweep })
      }
    }),
  )
}
