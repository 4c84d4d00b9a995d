/**
 * The store on any `SqlClient`: the layer every backend is made of, and the one to use with a
 * client the application already has (a `PgClient`, a `SqliteClient`, ...), so that the app's
 * own queries and the store share its connections.
 *
 * Built in this order: the executor and the wake-ups (from the client's layer when it provides
 * them, as this package's SQLite, PostgreSQL and rqlite layers do; else the generic executor of
 * the client and in-process wake-ups), then the schema (migrated, or checked), then the
 * services.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { ConsumerStorage } from "../Consumer.js"
import * as ConsumerSql from "../internal/consumerSql.js"
import { makeMigrator } from "../internal/migrations.js"
import * as SchedulerSql from "../internal/schedulerSql.js"
import * as StoreSql from "../internal/storeSql.js"
import * as Wakeup from "../internal/wakeup.js"
import type { RetryBackoff, Scheduler } from "../Scheduler.js"
import { type InvalidArgumentError, type Store, StoreError } from "../Store.js"
import { type AtomicStatementError, fromSqlClient, SqlExecutor, storeError } from "./SqlExecutor.js"

export interface SqlConfig {
  /** Run the migrations when the layer is built, if the database lacks any (default true). */
  readonly migrate?: boolean | undefined
  /** The delay before a failed task is retried (default 1 minute, doubled per failure, at most 1 hour). */
  readonly taskRetryBackoff?: RetryBackoff | undefined
}

/** The executor in the context, else the generic one of the `SqlClient`. */
const executor = Layer.effect(
  SqlExecutor,
  Effect.flatMap(Effect.serviceOption(SqlExecutor), (provided) =>
    Option.match(provided, {
      onSome: Effect.succeed,
      onNone: () => Effect.map(SqlClient.SqlClient, fromSqlClient),
    }),
  ),
)

/** The wake-ups in the context, else in-process ones. */
const wakeup = Layer.effect(
  Wakeup.Wakeup,
  Effect.flatMap(Effect.serviceOption(Wakeup.Wakeup), (provided) =>
    Option.match(provided, { onSome: Effect.succeed, onNone: () => Wakeup.make() }),
  ),
)

/** Applies the missing migrations, or (`migrate: false`) checks that the tables exist. */
const schema = (config: SqlConfig) =>
  Layer.effectDiscard(
    Effect.gen(function* () {
      const executor = yield* SqlExecutor
      const migrator = yield* makeMigrator(executor)
      const failed = (operation: string) => (error: SqlError | AtomicStatementError) =>
        Effect.fail(storeError(executor, operation, error))
      if (config.migrate === false) {
        if (!(yield* Effect.catchAll(migrator.initialised, failed("open")))) {
          return yield* new StoreError({
            operation: "open",
            reason: "query",
            detail: "the database has no effect-kv tables: run `kv init` (or `store.init()`) first",
            cause: null,
          })
        }
      } else if ((yield* Effect.catchAll(migrator.pending, failed("init"))).length > 0) {
        yield* Effect.catchAll(migrator.run, failed("init"))
      }
    }),
  )

/** The services every backend layer provides. */
export type Services = Store | Scheduler | ConsumerStorage

/** The services on the `SqlClient` of the context (one executor and one wake-up hub for all). */
export const layer = (
  config: SqlConfig = {},
): Layer.Layer<Services, StoreError | InvalidArgumentError, SqlClient.SqlClient> =>
  Layer.mergeAll(StoreSql.layer, SchedulerSql.layer(config.taskRetryBackoff), ConsumerSql.layer).pipe(
    Layer.provide(schema(config)),
    Layer.provide(Layer.merge(executor, wakeup)),
  )
