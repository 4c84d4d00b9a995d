/**
 * The PostgreSQL backend: `Store` through `@effect/sql-pg`.
 *
 * The connection string is kept `Redacted`; errors name the server without its password.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as StoreSql from "../internal/storeSql.js"
import { InvalidArgumentError, Store, StoreError } from "../Store.js"

export interface PostgresConfig {
  /** `postgres://user:password@host:5432/database?sslmode=disable` */
  readonly url: string | Redacted.Redacted<string>
  /** Run the migrations when the layer is built (default true). */
  readonly migrate?: boolean | undefined
  /** Pool size (default 10). */
  readonly maxConnections?: number | undefined
  /** How long to wait for the server (default 5 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/** The URL with its password removed, for messages. */
export const displayUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = ""
    return parsed.toString()
  } catch {
    return "the PostgreSQL server"
  }
}

const checkUrl = (url: string): Effect.Effect<string, InvalidArgumentError> => {
  try {
    const parsed = new URL(url)
    if (parsed.protocol === "postgres:" || parsed.protocol === "postgresql:") return Effect.succeed(url)
  } catch {
    // reported below
  }
  return Effect.fail(
    new InvalidArgumentError({
      message: `not a PostgreSQL connection string (expected postgres://user:password@host:port/database): ${displayUrl(url)}`,
    }),
  )
}

/** A `SqlClient` on the server, or a `StoreError` saying it cannot be reached. */
export const layerClient = (
  config: PostgresConfig,
): Layer.Layer<SqlClient.SqlClient, StoreError | InvalidArgumentError> => {
  const url = Redacted.isRedacted(config.url) ? Redacted.value(config.url) : config.url
  return Layer.unwrapEffect(
    Effect.map(checkUrl(url), (url) =>
      PgClient.layer({
        url: Redacted.make(url),
        maxConnections: config.maxConnections ?? 10,
        connectTimeout: config.connectTimeout ?? Duration.seconds(5),
        applicationName: "effect-kv",
      }).pipe(
        Layer.mapError((cause) => new StoreError({ operation: `connect to ${displayUrl(url)}`, cause })),
      ),
    ),
  )
}

/** `Store` on PostgreSQL. */
export const layer = (config: PostgresConfig): Layer.Layer<Store, StoreError | InvalidArgumentError> =>
  Layer.effect(Store, StoreSql.make({ migrate: config.migrate })).pipe(Layer.provide(layerClient(config)))
