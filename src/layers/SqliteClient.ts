/**
 * An `@effect/sql` client for SQLite on better-sqlite3, with the executor the store runs on.
 *
 * better-sqlite3 is synchronous and has one connection, so a statement outside a transaction
 * needs no connection management at all: it can run on the spot, and nothing can interleave
 * with it. The executor does exactly that (with its own prepared statements, no span, no
 * lock and no cache lookup per call), and runs atomic batches as one synchronous
 * transaction. The one thing it must never do is run a statement while another fiber's
 * asynchronous transaction is open on the connection (`SqlClient.withTransaction`), because
 * the statement would join that transaction and vanish if it rolled back: then it waits for
 * the transaction to end, the way the client's own statements do.
 *
 * `@effect/sql-sqlite-node` keeps its database handle to itself, so it cannot tell whether a
 * transaction is open; this client can (`db.inTransaction`). A `SqliteClient` of
 * `@effect/sql-sqlite-node` works with the store too, through `KvSql.layer` and the generic
 * executor.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import Sqlite from "better-sqlite3"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  AtomicStatementError,
  type Service as Executor,
  ExecutorId,
  SqlExecutor,
  type StatementResult,
  type WithExecutor,
} from "../internal/executor.js"

export const TypeId: unique symbol = Symbol.for("effect-kv/SqliteClient")
export type TypeId = typeof TypeId

export interface SqliteClientConfig {
  /** A file path or `:memory:`. */
  readonly filename: string
  readonly readonly?: boolean | undefined
  /** Fail instead of creating a missing file. */
  readonly fileMustExist?: boolean | undefined
  /** How long a write waits for another process's lock before it fails (default 1 second). */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** Keep the rollback journal instead of WAL (always for `:memory:` and read-only files). */
  readonly disableWAL?: boolean | undefined
}

export interface SqliteClient extends Client.SqlClient, WithExecutor {
  readonly [TypeId]: TypeId
  readonly config: SqliteClientConfig
  /** The executor the store runs on: prepared statements on the connection, guarded. */
  readonly executor: Executor
  /** Not supported by SQLite. */
  readonly updateValues: never
}

export const SqliteClient = Context.GenericTag<SqliteClient>("effect-kv/SqliteClient")

const messageOf = (cause: unknown) =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "unknown SQLite error"

const sqlError = (cause: unknown) => new SqlError({ message: messageOf(cause), cause })

const isBusy = (cause: unknown): boolean => {
  const code = (cause as { code?: unknown } | null)?.code
  return typeof code === "string" && code.startsWith("SQLITE_BUSY")
}

/** Another process kept the write lock past the busy timeout: try again a few times. */
const busyRetry = Schedule.exponential("20 millis").pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(8)),
)

/** A statement of a batch failed; thrown inside the transaction so that it rolls back. */
class BatchFailure {
  constructor(
    readonly index: number,
    readonly cause: unknown,
  ) {}
}

/** Prepared statements kept per SQL text; a full cache starts over (the texts are few and fixed). */
const cacheLimit = 500

export const make = (
  config: SqliteClientConfig,
): Effect.Effect<SqliteClient, SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function* () {
    const isMemory = config.filename === ":memory:"
    const db = yield* Effect.try({
      try: () =>
        new Sqlite(config.filename, {
          readonly: config.readonly ?? false,
          fileMustExist: config.fileMustExist ?? false,
        }),
      catch: (cause) =>
        new SqlError({ message: `cannot open "${config.filename}": ${messageOf(cause)}`, cause }),
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
    yield* Effect.try({
      try: () => {
        db.pragma(
          `busy_timeout = ${Math.round(Duration.toMillis(config.busyTimeout ?? Duration.seconds(1)))}`,
        )
        if (!(config.disableWAL || config.readonly || isMemory)) db.pragma("journal_mode = WAL")
      },
      catch: (cause) =>
        new SqlError({ message: `cannot open "${config.filename}": ${messageOf(cause)}`, cause }),
    })

    const cache = new Map<string, Sqlite.Statement>()
    const prepared = (sql: string): Sqlite.Statement => {
      let statement = cache.get(sql)
      if (statement === undefined) {
        if (cache.size >= cacheLimit) cache.clear()
        statement = db.prepare(sql)
        cache.set(sql, statement)
      }
      return statement
    }

    /** Rows for a reading statement (also `RETURNING`), else the run result. */
    const runRaw = (statement: Sqlite.Statement, params: ReadonlyArray<unknown>): unknown =>
      statement.reader ? statement.all(...params) : statement.run(...params)
    const runRows = (statement: Sqlite.Statement, params: ReadonlyArray<unknown>): ReadonlyArray<any> => {
      if (statement.reader) return statement.all(...params)
      statement.run(...params)
      return []
    }
    const runResult = (statement: Sqlite.Statement, params: ReadonlyArray<unknown>): StatementResult => {
      if (statement.reader) {
        const rows = statement.all(...params)
        return { rows, affected: rows.length }
      }
      return { rows: [], affected: statement.run(...params).changes }
    }

    /** Runs `f` now, once. */
    const once = <A>(f: () => A): Effect.Effect<A, SqlError> => {
      try {
        return Effect.succeed(f())
      } catch (cause) {
        return Effect.fail(sqlError(cause))
      }
    }

    /**
     * Runs `f` now; SQLITE_BUSY is retried with backoff. For the client's own statements,
     * which `Client.make` runs under its transaction lock or inside their transaction; the
     * store's go through `guarded` below.
     */
    const attempt = <A>(f: () => A): Effect.Effect<A, SqlError> =>
      Effect.catchIf(
        once(f),
        (error) => isBusy(error.cause),
        () =>
          Effect.retry(
            Effect.suspend(() => once(f)),
            { schedule: busyRetry, while: (e) => isBusy(e.cause) },
          ),
      )

    // Transactions of the client (`withTransaction`) hold the one permit until they end.
    const transactionLock = yield* Effect.makeSemaphore(1)

    const connection: Connection = {
      execute: (sql, params, transformRows) =>
        Effect.suspend(() => attempt(() => runRows(prepared(sql), params))).pipe(
          transformRows ? Effect.map(transformRows) : (effect) => effect,
        ),
      executeRaw: (sql, params) => Effect.suspend(() => attempt(() => runRaw(prepared(sql), params))),
      executeValues: (sql, params) =>
        Effect.suspend(() =>
          attempt(() => {
            const statement = prepared(sql)
            if (!statement.reader) {
              statement.run(...params)
              return []
            }
            try {
              return statement.raw(true).all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
            } finally {
              statement.raw(false)
            }
          }),
        ),
      executeUnprepared: (sql, params, transformRows) =>
        Effect.suspend(() => attempt(() => runRows(db.prepare(sql), params ?? []))).pipe(
          transformRows ? Effect.map(transformRows) : (effect) => effect,
        ),
      executeStream: (sql, params, transformRows) =>
        Stream.suspend(() =>
          Stream.fromIterableEffect(
            Effect.map(
              attempt(() => runRows(prepared(sql), params)),
              (rows) => (transformRows ? transformRows(rows) : rows),
            ),
          ),
        ),
    }

    const client = yield* Client.make({
      acquirer: transactionLock.withPermits(1)(Effect.succeed(connection)),
      transactionAcquirer: Effect.uninterruptibleMask((restore) =>
        Effect.as(
          Effect.zipRight(
            restore(transactionLock.take(1)),
            Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, transactionLock.release(1))),
          ),
          connection,
        ),
      ),
      // take the write lock at the start: a deferred transaction that reads, then writes,
      // fails at once (SQLITE_BUSY_SNAPSHOT) when another process wrote in between
      beginTransaction: "BEGIN IMMEDIATE",
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"]],
    })

    /**
     * Runs `f` on the connection now, unless an asynchronous transaction is open on it. Inside
     * the fiber's own transaction the statement belongs to it; another fiber's transaction is
     * waited for.
     */
    const guardedOnce = <A>(f: () => A): Effect.Effect<A, SqlError> => {
      if (!db.inTransaction) return once(f)
      return Effect.flatMap(Effect.serviceOption(Client.TransactionConnection), (open) =>
        Option.isSome(open) && open.value[0] === connection
          ? once(f)
          : transactionLock.withPermits(1)(Effect.suspend(() => once(f))),
      )
    }

    /**
     * `guardedOnce`, with SQLITE_BUSY (another process held the write lock past the busy
     * timeout) retried with backoff. Every retry goes through the guard again: while this
     * fiber waited, another one may have opened a transaction, which the retried statement
     * must not join.
     */
    const guarded = <A>(f: () => A): Effect.Effect<A, SqlError> =>
      Effect.catchIf(
        guardedOnce(f),
        (error) => isBusy(error.cause),
        () =>
          Effect.retry(
            Effect.suspend(() => guardedOnce(f)),
            { schedule: busyRetry, while: (error) => isBusy(error.cause) },
          ),
      )

    const executor: Executor = {
      rows: (statement) =>
        Effect.suspend(() => {
          const [sql, params] = statement.compile()
          return guarded(() => runRows(prepared(sql), params))
        }),
      affected: (statement) =>
        Effect.suspend(() => {
          const [sql, params] = statement.compile()
          return guarded(() => runResult(prepared(sql), params).affected)
        }),
      atomic: (statements) =>
        Effect.suspend(() => {
          // a batch is a write (migrations too, even when there is nothing left to create)
          if (db.readonly) {
            return Effect.fail(new SqlError({ message: "attempt to write a readonly database" }))
          }
          const compiled = statements.map((statement) => statement.compile())
          // one synchronous transaction: no other fiber can run a statement in the middle
          const batch = db.transaction(() =>
            compiled.map(([sql, params], index) => {
              try {
                return runResult(prepared(sql), params)
              } catch (cause) {
                throw new BatchFailure(index, cause)
              }
            }),
          )
          return guarded(() => batch.immediate()).pipe(
            Effect.catchAll((error) =>
              Effect.fail(
                error.cause instanceof BatchFailure
                  ? new AtomicStatementError({ index: error.cause.index, cause: sqlError(error.cause.cause) })
                  : error,
              ),
            ),
          )
        }),
      prepare: (statement) => {
        const [sql] = statement.compile()
        let handle: Sqlite.Statement | undefined
        const statementOnce = () => {
          handle ??= db.prepare(sql)
          return handle
        }
        return {
          rows: (params) => Effect.suspend(() => guarded(() => runRows(statementOnce(), params))),
          affected: (params) =>
            Effect.suspend(() => guarded(() => runResult(statementOnce(), params).affected)),
        }
      },
      explain: (error) => ({
        reason:
          (error.cause as { code?: unknown } | undefined)?.code === "SQLITE_CANTOPEN" ? "connect" : "query",
        detail: error.message,
      }),
    }

    return Object.assign(client, {
      [TypeId]: TypeId,
      config,
      executor,
      [ExecutorId]: executor,
    }) as SqliteClient
  })

/** The client, as `SqlClient` too, and its executor. */
export const layer = (
  config: SqliteClientConfig,
): Layer.Layer<SqliteClient | Client.SqlClient | SqlExecutor, SqlError> =>
  Layer.scopedContext(
    Effect.map(make(config), (client) =>
      Context.make(SqliteClient, client).pipe(
        Context.add(Client.SqlClient, client),
        Context.add(SqlExecutor, client.executor),
      ),
    ),
  ).pipe(Layer.provide(Reactivity.layer))
