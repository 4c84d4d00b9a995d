/**
 * The store on any `SqlClient`: the layer every backend is made of, and the one to use with a
 * client the application already has (a `PgClient`, a `SqliteClient`, ...), so that the app's
 * own queries and the store share its connections.
 *
 * The statements run on the backend's `SqlExecutor` when the client's layer provides one (the
 * SQLite and rqlite clients of this package do), else on the generic executor of the client:
 * statements through the client, batches in one of its transactions.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as StoreSql from "../internal/storeSql.js"
import { Store, type StoreError } from "../Store.js"
import { fromSqlClient, SqlExecutor } from "./SqlExecutor.js"

export interface SqlConfig {
  /** Run the migrations when the layer is built, if the database lacks any (default true). */
  readonly migrate?: boolean | undefined
}

/** The executor in the context, else the generic one of the `SqlClient`. */
const executor = Effect.flatMap(Effect.serviceOption(SqlExecutor), (provided) =>
  Option.match(provided, {
    onSome: Effect.succeed,
    onNone: () => Effect.map(SqlClient.SqlClient, fromSqlClient),
  }),
)

/** `Store` on the `SqlClient` of the context. */
export const layer = (config: SqlConfig = {}): Layer.Layer<Store, StoreError, SqlClient.SqlClient> =>
  Layer.effect(
    Store,
    Effect.flatMap(executor, (executor) =>
      Effect.provideService(StoreSql.make({ migrate: config.migrate }), SqlExecutor, executor),
    ),
  )
