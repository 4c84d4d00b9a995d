/**
 * The distributed backend: the store on rqlite, i.e. `KvSql.layer` on the HTTP client in
 * `RqliteClient.ts`, which speaks the SQLite dialect and runs atomic batches as one request.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as ConnectionString from "../internal/connection.js"
import type { SqlExecutor } from "../internal/executor.js"
import * as Wakeup from "../internal/wakeup.js"
import type { RetryBackoff } from "../Scheduler.js"
import { InvalidArgumentError, StoreError } from "../Store.js"
import * as RqliteClient from "./RqliteClient.js"
import * as KvSql from "./Sql.js"

export interface RqliteConfig {
  /**
   * `http://host:4001?user=admin&password=secret` or `http://admin:secret@host:4001`, with an
   * optional `level=none|weak|strong|linearizable` (default linearizable). A cluster is a host
   * list, `http://admin:secret@h1:4001,h2:4001,h3:4001`: the client fails over between them.
   * Give `url` or `urls`.
   */
  readonly url?: ConnectionString.Secret | undefined
  /** A cluster's nodes one URL each, instead of `url`: `["http://admin:secret@h1:4001", "http://h2:4001"]`. */
  readonly urls?: ReadonlyArray<ConnectionString.Secret> | undefined
  readonly level?: RqliteClient.ReadConsistency | undefined
  /** Basic auth user and password; override the URL's. */
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  /** Per-request timeout (default 10 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * How long a request keeps trying the other nodes after one could not serve it (default 10
   * seconds): long enough for a cluster to elect a new leader.
   */
  readonly failoverTimeout?: Duration.DurationInput | undefined
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
}

/**
 * The rqlite client (also as `SqlClient`) with its executor and wake-ups (this process's writes:
 * rqlite cannot tell of other processes' writes, their waiters poll), or a `StoreError` saying
 * why not.
 */
export const layerClient = (
  config: RqliteConfig,
): Layer.Layer<
  RqliteClient.RqliteClient | SqlClient.SqlClient | SqlExecutor | Wakeup.Wakeup,
  StoreError | InvalidArgumentError
> =>
  Layer.unwrapEffect(
    Effect.map(
      Either.mapLeft(
        ConnectionString.parseRqliteConfig(config),
        (message) => new InvalidArgumentError({ message }),
      ),
      () =>
        RqliteClient.layer(config).pipe(
          Layer.merge(Wakeup.layerLocal),
          Layer.mapError(
            (cause) =>
              new StoreError({ operation: "connect", reason: "connect", detail: cause.message, cause }),
          ),
        ),
    ),
  )

/** `Store` on rqlite: the rqlite client + `KvSql.layerOn`. */
export const layer = (config: RqliteConfig): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError> =>
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
  config: Config.Config.Wrap<RqliteConfig>,
): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
