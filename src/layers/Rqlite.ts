/**
 * The distributed backend: the store on rqlite, i.e. `KvSql.layer` on the HTTP client in
 * `RqliteClient.ts`, which speaks the SQLite dialect and runs atomic batches as one request.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as ConnectionString from "../internal/connection.js"
import { InvalidArgumentError, type Store, StoreError } from "../Store.js"
import * as RqliteClient from "./RqliteClient.js"
import * as KvSql from "./Sql.js"
import type { SqlExecutor } from "./SqlExecutor.js"

export interface RqliteConfig {
  /**
   * `http://host:4001?user=admin&password=secret` or `http://admin:secret@host:4001`, with an
   * optional `level=none|weak|strong|linearizable` (default linearizable).
   */
  readonly url: ConnectionString.Secret
  readonly level?: RqliteClient.ReadConsistency | undefined
  /** Basic auth user and password; override the URL's. */
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  /** Per-request timeout (default 10 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Run the migrations when the layer is built (default true). */
  readonly migrate?: boolean | undefined
}

/** The rqlite client (also as `SqlClient`) with its executor, or a `StoreError` saying why not. */
export const layerClient = (
  config: RqliteConfig,
): Layer.Layer<
  RqliteClient.RqliteClient | SqlClient.SqlClient | SqlExecutor,
  StoreError | InvalidArgumentError
> =>
  Layer.unwrapEffect(
    Effect.map(
      Either.mapLeft(
        ConnectionString.parseRqlite(config.url),
        (message) => new InvalidArgumentError({ message }),
      ),
      () =>
        RqliteClient.layer(config).pipe(
          Layer.mapError(
            (cause) =>
              new StoreError({ operation: "connect", reason: "connect", detail: cause.message, cause }),
          ),
        ),
    ),
  )

/** `Store` on rqlite: the rqlite client + `KvSql.layer`. */
export const layer = (config: RqliteConfig): Layer.Layer<Store, StoreError | InvalidArgumentError> =>
  KvSql.layer({ migrate: config.migrate }).pipe(Layer.provide(layerClient(config)))
