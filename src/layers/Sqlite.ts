/**
 * The embedded backend: the store on a SQLite file, i.e. `KvSql.layer` on this package's
 * SQLite client (which runs the store's statements on its one connection directly).
 *
 * The file is opened in WAL mode with a busy timeout, so several processes can share it.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ConnectionString from "../internal/connection.js"
import type { SqlExecutor } from "../internal/executor.js"
import * as Wakeup from "../internal/wakeup.js"
import type { RetryBackoff } from "../Scheduler.js"
import { InvalidArgumentError, StoreError } from "../Store.js"
import * as KvSql from "./Sql.js"
import * as SqliteClient from "./SqliteClient.js"

export interface SqliteConfig {
  /**
   * A path, `:memory:`, or a `file:` URI with `mode=rwc` (read/write, create; the
   * default), `mode=rw` (the file must exist) or `mode=ro` (read only).
   */
  readonly filename: string
  /** Run the migrations when the layer is built (default true; never on read-only files). */
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
  /** How long a write waits for another process's lock before failing (default 1 second). */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /**
   * How often idle runners and consumers check whether another process changed the file
   * (`PRAGMA data_version`, a cheap read; default 20 ms). This process's own writes wake them
   * at once.
   */
  readonly changeCheckInterval?: Duration.DurationInput | undefined
}

const location = (filename: string) =>
  Either.mapLeft(ConnectionString.parseSqlite(filename), (message) => new InvalidArgumentError({ message }))

/**
 * Wake-ups on a file: this process's writes, and other processes' writes noticed by
 * `PRAGMA data_version`, which changes when another connection committed (one check per
 * channel with waiters, every `interval`; a failing check is logged once, until it works).
 */
const layerWakeup = (interval: Duration.DurationInput) =>
  Layer.scoped(
    Wakeup.Wakeup,
    Effect.gen(function* () {
      const client = yield* SqliteClient.SqliteClient
      if (client.config.filename === ":memory:") return yield* Wakeup.make() // no other process can see it
      const dataVersion = Effect.map(
        client.executor.rows(client.unsafe<{ data_version: number }>("PRAGMA data_version")),
        (rows) => rows[0]?.data_version,
      )
      return yield* Wakeup.make(
        Wakeup.polled(dataVersion, interval, `PRAGMA data_version on "${client.config.filename}"`),
      )
    }),
  )

/** The SQLite client (also as `SqlClient`) on the file, with its executor and wake-ups. */
export const layerClient = (
  config: SqliteConfig,
): Layer.Layer<
  SqliteClient.SqliteClient | SqlClient.SqlClient | SqlExecutor | Wakeup.Wakeup,
  StoreError | InvalidArgumentError
> =>
  Layer.unwrapEffect(
    Effect.map(location(config.filename), (location) =>
      layerWakeup(config.changeCheckInterval ?? Duration.millis(20)).pipe(
        Layer.provideMerge(
          SqliteClient.layer({
            filename: location.filename,
            readonly: location.readonly,
            fileMustExist: location.mustExist,
            busyTimeout: config.busyTimeout,
          }),
        ),
        Layer.mapError(
          (cause) =>
            new StoreError({ operation: "connect", reason: "connect", detail: cause.message, cause }),
        ),
      ),
    ),
  )

/** `Store` on a SQLite file: the SQLite client + `KvSql.layerOn`. */
export const layer = (config: SqliteConfig): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError> =>
  Layer.unwrapEffect(
    Effect.map(location(config.filename), (location) =>
      KvSql.layerOn({
        migrate: config.migrate !== false && !location.readonly,
        taskRetryBackoff: config.taskRetryBackoff,
        spans: config.spans,
        expirySweep: config.expirySweep,
      }).pipe(Layer.provide(layerClient(config))),
    ),
  )

/**
 * `layer` with its settings read from Effect `Config` when the layer is built, e.g.
 * `layerConfig({ filename: Config.string("KV_SQLITE_FILE") })`.
 */
export const layerConfig = (
  config: Config.Config.Wrap<SqliteConfig>,
): Layer.Layer<KvSql.Services, StoreError | InvalidArgumentError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
