/**
 * The PostgreSQL backend: the store through `@effect/sql-pg`, i.e. `KvSql.layer` on a
 * `PgClient`.
 *
 * The connection string stays `Redacted`; errors name the server without its password.
 */

import type * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ConnectionString from "../internal/connection.js"
import { explainGeneric, fromSqlClient, SqlExecutor } from "../internal/executor.js"
import * as PgListener from "../internal/pgListener.js"
import * as Wakeup from "../internal/wakeup.js"
import type { RetryBackoff } from "../Scheduler.js"
import { InvalidArgumentError, StoreError } from "../Store.js"
import * as KvSql from "./Sql.js"

export interface PostgresConfig {
  /** `postgres://user:password@host:5432/database?sslmode=disable` */
  readonly url: ConnectionString.Secret
  /** Run the migrations when the layer is built (default true). */
  readonly migrate?: boolean | undefined
  /** The delay before a failed task is retried (default 1 minute, doubled per failure, at most 1 hour). */
  readonly taskRetryBackoff?: RetryBackoff | undefined
  /** A span per Store, Scheduler and Consumer operation (default true; see README, "Observability"). */
  readonly spans?: boolean | undefined
  /**
   * How often the layer, while built, sweeps expired records (`store.expire()`): default every
   * second; `false`: never (one-shot programs such as the CLI's one-shot commands).
   */
  readonly expirySweep?: Duration.DurationInput | false | undefined
  /** Pool size (default 10). */
  readonly maxConnections?: number | undefined
  /** How long to wait for the server (default 5 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/**
 * Wake-ups from `LISTEN`: every write's transaction signals with `pg_notify` (see the
 * migrations), this process's included. Each channel with waiters has one connection of its
 * own (named `effect-kv: LISTEN <channel>`), watched and opened again when lost (see
 * `pgListener.ts`); `server` names the server in its logs, without the password.
 */
const layerWakeup = (server: string) =>
  Layer.scoped(
    Wakeup.Wakeup,
    Effect.flatMap(PgClient.PgClient, (pg) =>
      Wakeup.make(PgListener.make({ connection: PgListener.connectionOf(pg.config), server })),
    ),
  )

/** The generic executor of the `PgClient`. */
const layerExecutor = Layer.effect(SqlExecutor, Effect.map(PgClient.PgClient, fromSqlClient))

/**
 * A `PgClient` (also as `SqlClient`) on the server with its executor and wake-ups, or a `StoreError` saying
 * it cannot be reached.
 */
export const layerClient = (
  config: PostgresConfig,
): Layer.Layer<
  PgClient.PgClient | SqlClient.SqlClient | SqlExecutor | Wakeup.Wakeup,
  StoreError | InvalidArgumentError
> =>
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
          (client) => Layer.provideMerge(Layer.merge(layerWakeup(target.display), layerExecutor), client),
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

/** `Store` on PostgreSQL: a `PgClient` + `KvSql.layerOn`. */
export const layer = (
  config: PostgresConfig,
): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError> =>
  KvSql.layerOn({
    migrate: config.migrate,
    taskRetryBackoff: config.taskRetryBackoff,
    spans: config.spans,
    expirySweep: config.expirySweep,
  }).pipe(Layer.provide(layerClient(config)))

/**
 * `layer` with its settings read from Effect `Config` when the layer is built, e.g.
 * `layerConfig({ url: Config.redacted("KV_DATABASE_URL") })`.
 */
export const layerConfig = (
  config: Config.Config.Wrap<PostgresConfig>,
): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
