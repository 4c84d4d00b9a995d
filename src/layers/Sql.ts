/**
 * The store on any `SqlClient`: the layer every backend is made of, and the one to use with a
 * client the application already has (a `PgClient`, a `SqliteClient`, ...), so that the app's
 * own queries and the store share its connections.
 *
 * Two layers, which differ only in who chooses the executor and the wake-ups:
 * - `layerOn(config)` takes them from its inputs (its type says so: `SqlClient | SqlExecutor |
 *   Wakeup`); this package's SQLite, PostgreSQL and rqlite layers provide all three;
 * - `layer(config)` needs only the `SqlClient`: it runs on the client's own executor when the
 *   client brings one (this package's SQLite and rqlite clients do), else on the generic one,
 *   and its wake-ups are this process's writes only (other processes' are found by polling).
 *
 * Built in this order: the dialect check, the schema (migrated, or checked), the services.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { ConsumerStorage, type ConsumerStorageService } from "../Consumer.js"
import * as ConsumerSql from "../internal/consumerSql.js"
import * as CronSql from "../internal/cronSql.js"
import { CronStorage } from "../internal/cronStorage.js"
import { executorOf, SqlExecutor } from "../internal/executor.js"
import { tryOfRepeated } from "../internal/failureRuns.js"
import { makeMigrator } from "../internal/migrations.js"
import * as SchedulerSql from "../internal/schedulerSql.js"
import { failuresOf } from "../internal/sqlShared.js"
import * as StoreSql from "../internal/storeSql.js"
import { schedulerSpec, storeSpec, traced } from "../internal/tracing.js"
import * as Wakeup from "../internal/wakeup.js"
import { type RetryBackoff, Scheduler } from "../Scheduler.js"
import { InvalidArgumentError, Store, StoreError, type StoreService } from "../Store.js"

export interface SqlConfig {
  /** Run the migrations when the layer is built, if the database lacks any (default true). */
  readonly migrate?: boolean | undefined
  /** The delay before a failed task is retried (default 1 minute, doubled per failure, at most 1 hour). */
  readonly taskRetryBackoff?: RetryBackoff | undefined
  /**
   * A span per Store, Scheduler and Consumer operation (`kv.store.get`, `kv.scheduler.lock`,
   * `kv.consumer.get`, ...; see README, "Observability"); default true. `false` leaves them
   * out. Spans are only made under a tracer the application installed (see `internal/tracing.ts`):
   * a span costs several microseconds, as much as a SQLite point read.
   */
  readonly spans?: boolean | undefined
  /**
   * How often the layer, while built, sweeps expired records (`store.expire()`, which deletes
   * them with their `delete` stream records; expired records are absent for reads either way):
   * default every second; `false`: never (one-shot programs: the CLI's one-shot commands).
   */
  readonly expirySweep?: Duration.DurationInput | false | undefined
}

/** The SQL is written for SQLite (also rqlite) and PostgreSQL; any other dialect is refused. */
const dialectCheck = Layer.effectDiscard(
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.onDialectOrElse({
      pg: () => Effect.void,
      sqlite: () => Effect.void,
      orElse: () =>
        Effect.fail(
          new InvalidArgumentError({
            message: `effect-kv runs on SQLite, rqlite and PostgreSQL clients; this SqlClient speaks ${dialectOf(sql)}`,
          }),
        ),
    }),
  ),
)

const dialectOf = (sql: SqlClient.SqlClient): string =>
  sql.onDialect({
    pg: () => "PostgreSQL",
    sqlite: () => "SQLite",
    mysql: () => "MySQL",
    mssql: () => "Microsoft SQL Server",
    clickhouse: () => "ClickHouse",
  })

/**
 * Applies the missing migrations, or (`migrate: false`) checks that every one was applied, so
 * that a database from an older version says what to do instead of failing later.
 */
const schema = (config: SqlConfig) =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const executor = yield* SqlExecutor
      const run = failuresOf(executor)
      const migrator = yield* makeMigrator(executor)
      if (config.migrate !== false) {
        if ((yield* run("init", migrator.pending)).length > 0) yield* run("init", migrator.run)
        return
      }
      const fail = (detail: string) =>
        Effect.fail(new StoreError({ operation: "open", reason: "query", detail, cause: null }))
      if (!(yield* run("open", migrator.initialised))) {
        return yield* fail("the database has no effect-kv tables: run `kv init` (or `store.init()`) first")
      }
      const missing = yield* run("open", migrator.pending)
      if (missing.length > 0) {
        return yield* fail(
          `the database's effect-kv tables are from an older version (missing ${missing.join(", ")}): ` +
            "run `kv init` (or `store.init()`) to upgrade them",
        )
      }
    }),
  )

/** The pace of the sweep: real time, whatever `Clock` the application runs on. */
const liveClock = Clock.make()

/**
 * Sweeps expired records every `interval` for as long as the layer is built, from its start.
 * What is expired is judged by the application's `Clock` (the one the layer was built with);
 * the pace is the live clock's, so that a `TestClock` moved by a day does not run 86,400
 * sweeps. A failing sweep is logged once, until one works again; the sweep makes no span.
 */
const sweepExpired = (store: StoreService, interval: Duration.DurationInput) =>
  Effect.flatMap(Effect.clock, (clock) =>
    Effect.repeat(Effect.withClock(sweepOnce(store), clock), Schedule.spaced(interval)).pipe(
      Effect.withClock(liveClock),
    ),
  )

const sweepOnce = (store: StoreService) =>
  tryOfRepeated(store.expire(), {
    onFirstFailure: (cause) => Effect.logWarning("effect-kv: the expiry sweep failed; retrying", cause),
    onSuccess: (_, recovered) =>
      recovered ? Effect.logInfo("effect-kv: the expiry sweep works again") : Effect.void,
  })

/**
 * The Store and the Scheduler, each operation in a span (unless `spans: false`): the one place
 * spans are added to the SQL services (`internal/tracing.ts`). The consumers' spans are added
 * where `Consumer.ts` builds its instances, when their storage says `spans`. The Store's
 * expiry sweep runs in the layer's scope.
 */
const services = (config: SqlConfig) => {
  const spans = config.spans !== false
  return Layer.mergeAll(
    Layer.scoped(
      Store,
      Effect.gen(function* () {
        const store = yield* StoreSql.make
        if (config.expirySweep !== false) {
          yield* Effect.forkScoped(sweepExpired(store, config.expirySweep ?? "1 second"))
        }
        return spans ? traced("kv.store", store, storeSpec) : store
      }),
    ),
    Layer.effect(
      Scheduler,
      spans
        ? Effect.map(SchedulerSql.make(config.taskRetryBackoff), (scheduler) =>
            traced("kv.scheduler", scheduler, schedulerSpec),
          )
        : SchedulerSql.make(config.taskRetryBackoff),
    ),
    Layer.effect(
      ConsumerStorage,
      Effect.map(ConsumerSql.make, (storage): ConsumerStorageService => ({ ...storage, spans })),
    ),
    Layer.effect(CronStorage, CronSql.make),
  )
}

/** The services every backend layer provides. */
export type Services = Store | Scheduler | ConsumerStorage | CronStorage

/** The services on the `SqlClient`, its `SqlExecutor` and the `Wakeup` hub of the context. */
export const layerOn = (
  config: SqlConfig = {},
): Layer.Layer<
  Services,
  StoreError | InvalidArgumentError,
  SqlClient.SqlClient | SqlExecutor | Wakeup.Wakeup
> => services(config).pipe(Layer.provide(schema(config)), Layer.provide(dialectCheck))

/** The client's own executor (see `executorOf`). */
const clientExecutor: Layer.Layer<SqlExecutor, never, SqlClient.SqlClient> = Layer.effect(
  SqlExecutor,
  Effect.map(SqlClient.SqlClient, executorOf),
)

/**
 * The services on the `SqlClient` of the context alone: on the client's own executor (else the
 * generic one), with wake-ups from this process's writes.
 */
export const layer = (
  config: SqlConfig = {},
): Layer.Layer<Services, StoreError | InvalidArgumentError, SqlClient.SqlClient> =>
  layerOn(config).pipe(Layer.provide(Layer.merge(clientExecutor, Wakeup.layerLocal)))
