/**
 * The embedded backend: `Store` on a SQLite file through `@effect/sql-sqlite-node`.
 *
 * The file is opened in WAL mode with a busy timeout, so several processes can share it.
 */
import * as fs from "node:fs"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as StoreSql from "../internal/storeSql.js"
import { InvalidArgumentError, Store, StoreError } from "../Store.js"

export interface SqliteConfig {
  /**
   * A path, `:memory:`, or a `file:` URI with `mode=rwc` (read/write, create; the
   * default), `mode=rw` (the file must exist) or `mode=ro` (read only).
   */
  readonly filename: string
  /** Run the migrations when the layer is built (default true; never on read-only files). */
  readonly migrate?: boolean | undefined
  /** How long a write waits for another process's lock before failing (default 1 second). */
  readonly busyTimeout?: Duration.DurationInput | undefined
}

export interface SqliteLocation {
  readonly filename: string
  readonly readonly: boolean
  readonly mustExist: boolean
}

/** Reads a path, `:memory:` or a `file:` URI. */
export const parseFilename = (input: string): Effect.Effect<SqliteLocation, InvalidArgumentError> => {
  if (input.length === 0) {
    return Effect.fail(new InvalidArgumentError({ message: "the SQLite connection string is empty" }))
  }
  if (!input.startsWith("file:")) {
    return Effect.succeed({ filename: input, readonly: false, mustExist: false })
  }
  const [rawPath = "", query = ""] = input.slice("file:".length).split("?", 2)
  const params = new URLSearchParams(query)
  // file:///abs/path and file:/abs/path are both absolute paths
  const path = decodeURIComponent(rawPath.startsWith("//") ? rawPath.slice(2) : rawPath)
  const mode = params.get("mode") ?? "rwc"
  if (path.length === 0) {
    return Effect.fail(new InvalidArgumentError({ message: `no file name in "${input}"` }))
  }
  switch (mode) {
    case "rwc":
      return Effect.succeed({ filename: path, readonly: false, mustExist: false })
    case "rw":
      return Effect.succeed({ filename: path, readonly: false, mustExist: true })
    case "ro":
      return Effect.succeed({ filename: path, readonly: true, mustExist: true })
    case "memory":
      return Effect.succeed({ filename: ":memory:", readonly: false, mustExist: false })
    default:
      return Effect.fail(
        new InvalidArgumentError({
          message: `unknown SQLite mode "${mode}" (expected ro, rw, rwc or memory)`,
        }),
      )
  }
}

/** A `SqlClient` on the file, or a `StoreError` saying why it cannot be opened. */
export const layerClient = (
  config: SqliteConfig,
): Layer.Layer<SqlClient.SqlClient, StoreError | InvalidArgumentError> =>
  Layer.unwrapEffect(Effect.map(parseFilename(config.filename), (location) => clientAt(location, config)))

const clientAt = (
  location: SqliteLocation,
  config: SqliteConfig,
): Layer.Layer<SqlClient.SqlClient, StoreError> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const isMemory = location.filename === ":memory:"
      if (location.mustExist && !isMemory && !fs.existsSync(location.filename)) {
        return yield* Effect.fail(
          new StoreError({
            operation: "open",
            cause: new Error(`database file "${location.filename}" does not exist`),
          }),
        )
      }
      const busyMillis = Duration.toMillis(config.busyTimeout ?? Duration.seconds(1))
      const client = SqliteClient.layer({
        filename: location.filename,
        readonly: location.readonly,
        disableWAL: location.readonly || isMemory,
      })
      const withBusyTimeout = Layer.effectDiscard(
        Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.unsafe(`PRAGMA busy_timeout = ${Math.round(busyMillis)}`),
        ),
      )
      // better-sqlite3 throws while opening (missing directory, no permission): a defect
      // inside SqliteClient.make, turned here into a readable typed error.
      return Layer.provideMerge(withBusyTimeout, client).pipe(
        Layer.catchAllCause((cause) =>
          Layer.fail(
            new StoreError({ operation: `open "${location.filename}"`, cause: Cause.squash(cause) }),
          ),
        ),
      )
    }),
  )

/** `Store` on a SQLite file. */
export const layer = (config: SqliteConfig): Layer.Layer<Store, StoreError | InvalidArgumentError> =>
  Layer.unwrapEffect(
    Effect.map(parseFilename(config.filename), (location) =>
      Layer.effect(
        Store,
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          // SqliteClient has one connection behind a lock; taking it and giving the lock back
          // right away leaves the connection for the store's single statements, which run
          // synchronously and so can never interleave with a transaction's.
          const connection = yield* Effect.scoped(sql.reserve).pipe(
            Effect.mapError((cause) => new StoreError({ operation: "open", cause })),
          )
          return yield* StoreSql.make({
            migrate: config.migrate !== false && !location.readonly,
            connection,
          })
        }),
      ).pipe(Layer.provide(clientAt(location, config))),
    ),
  )
