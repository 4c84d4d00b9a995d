/**
 * The PostgreSQL backend: the store through `@effect/sql-pg`, i.e. `KvSql.layer` on a
 * `PgClient`.
 *
 * The connection string stays `Redacted`; errors name the server without its password.
 */

import type * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ConnectionString from "../internal/connection.js"
import { InvalidArgumentError, type Store, StoreError } from "../Store.js"
import * as KvSql from "./Sql.js"
import { explainGeneric } from "./SqlExecutor.js"

export interface PostgresConfig {
  /** `postgres://user:password@host:5432/database?sslmode=disable` */
  readonly url: ConnectionString.Secret
  /** Run the migrations when the layer is built (default true). */
  readonly migrate?: boolean | undefined
  /** Pool size (default 10). */
  readonly maxConnections?: number | undefined
  /** How long to wait for the server (default 5 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/** A `PgClient` (also as `SqlClient`) on the server, or a `StoreError` saying it cannot be reached. */
export const layerClient = (
  config: PostgresConfig,
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, StoreError | InvalidArgumentError> =>
  Layer.unwrapEffect(
    Effect.map(
      Either.mapLeft(
        ConnectionString.parsePostgres(config.url),
        (message) => new InvalidArgumentError({ message }),
      ),
      (target) =>
        PgClient.layer({
          url: target.url,
          maxConnections: config.maxConnections ?? 10,
          connectTimeout: config.connectTimeout ?? Duration.seconds(5),
          applicationName: "effect-kv",
        }).pipe(
          Layer.mapError((cause) => {
            const why = cause._tag === "SqlError" ? explainGeneric(cause).detail : String(cause)
            return new StoreError({
              operation: "connect",
              reason: "connect",
              detail: `cannot connect to ${target.display}: ${why}`,
              cause,
            })
          }),
        ),
    ),
  )

/** `Store` on PostgreSQL: a `PgClient` + `KvSql.layer`. */
export const layer = (config: PostgresConfig): Layer.Layer<Store, StoreError | InvalidArgumentError> =>
  KvSql.layer({ migrate: config.migrate }).pipe(Layer.provide(layerClient(config)))
