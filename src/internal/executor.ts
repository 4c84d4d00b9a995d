/**
 * The one seam between the shared SQL (store, scheduler, consumers) and a driver.
 *
 * The shared code builds `Statement`s with `SqlClient` and hands them to an executor: for
 * their rows, for the number of rows they changed, or as a batch that commits all or nothing.
 * Each backend brings its own executor and keeps its driver's details behind it: SQLite its
 * prepared statements and connection guard, rqlite its one-request batches, and any other
 * `SqlClient` (PostgreSQL, or a client the application already has) the generic one below.
 * Raw result shapes and error shapes never leak above this module.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import type { Statement } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { StoreError } from "../Store.js"

/** What one statement of a batch produced: its rows (a query or `RETURNING`) and the rows it changed. */
export interface StatementResult {
  readonly rows: ReadonlyArray<any>
  readonly affected: number
}

/** Statement `index` of an atomic batch failed, so the whole batch was rolled back. */
export class AtomicStatementError extends Data.TaggedError("AtomicStatementError")<{
  readonly index: number
  readonly cause: SqlError
}> {
  override get message() {
    return `statement ${this.index} of an atomic batch failed: ${this.cause.message}`
  }
}

/** Runs statements all or nothing and returns what each one produced. */
export type AtomicRunner = (
  statements: ReadonlyArray<Statement<unknown>>,
) => Effect.Effect<ReadonlyArray<StatementResult>, AtomicStatementError | SqlError>

/**
 * Why a statement failed: the database could not be reached, the statement itself failed, or
 * a write got no answer and may or may not have been applied.
 */
export interface Failure {
  readonly reason: "connect" | "query" | "unknown-outcome"
  /** The client's own description, without passwords. */
  readonly detail: string
}

/** A statement compiled once, run with new parameters (in the order its text binds them). */
export interface Prepared<A> {
  /** The rows it returns. */
  readonly rows: (params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** The number of rows it changed. */
  readonly affected: (params: ReadonlyArray<unknown>) => Effect.Effect<number, SqlError>
}

export interface Service {
  /** The rows a statement returns. */
  readonly rows: <A extends object>(statement: Statement<A>) => Effect.Effect<ReadonlyArray<A>, SqlError>
  /** The number of rows a write changed. */
  readonly affected: (statement: Statement<unknown>) => Effect.Effect<number, SqlError>
  readonly atomic: AtomicRunner
  /**
   * A statement whose SQL text never changes, compiled (and, where the driver can, prepared)
   * once: the result runs it with new parameters, in the order its text binds them.
   */
  readonly prepare: <A extends object>(statement: Statement<A>) => Prepared<A>
  /** Says what went wrong in a failure of this executor. */
  readonly explain: (error: SqlError) => Failure
}

export class SqlExecutor extends Context.Tag("effect-kv/SqlExecutor")<SqlExecutor, Service>() {}

// ---------------------------------------------------------------------------------------------
// The generic executor, for any SqlClient
// ---------------------------------------------------------------------------------------------

/**
 * Reads a driver's raw result (`Statement.raw`): rows (a reading statement), better-sqlite3's
 * `RunResult` (`changes`), node-postgres' `Result` (`rows`, `rowCount`) or mysql2's
 * `ResultSetHeader` (`affectedRows`).
 */
const resultOf = (raw: unknown): StatementResult => {
  if (Array.isArray(raw)) return { rows: raw, affected: raw.length }
  const result = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>
  const rows = Array.isArray(result.rows) ? result.rows : []
  const affected = [result.rowCount, result.changes, result.affectedRows].find((n) => typeof n === "number")
  return { rows, affected: typeof affected === "number" ? affected : rows.length }
}

/** Messages the @effect/sql drivers use for every failure of a kind; the cause says more. */
const genericMessage = /^(?:PgClient: )?(?:Failed to [a-z ]+|Connection error|Connection timed out)$/i
const connectMessage = /connect|connection/i

/** SQLSTATE classes of a connection that could not be made or was lost (PostgreSQL). */
const connectStates = /^(?:08|28|3D|57P0[1-3])/
const networkCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EPIPE",
])

const messageOf = (u: unknown): string | undefined => {
  if (typeof u !== "object" || u === null) return undefined
  const { message, errors } = u as { message?: unknown; errors?: unknown }
  if (typeof message === "string" && message.length > 0) return message
  // a refused connection to several addresses is an AggregateError without a message
  return Array.isArray(errors) ? messageOf(errors[0]) : undefined
}

const codeOf = (u: unknown): string | undefined => {
  if (typeof u !== "object" || u === null) return undefined
  const { code, errors } = u as { code?: unknown; errors?: unknown }
  if (typeof code === "string") return code
  return Array.isArray(errors) ? codeOf(errors[0]) : undefined
}

/**
 * The cause of a write that reached the database but got no answer (the connection dropped,
 * the request timed out, an rqlite leader was deposed while committing it): it may or may not
 * have been applied, and only the caller can find out. It is never sent again.
 */
export class WriteOutcomeUnknown extends Data.TaggedError("WriteOutcomeUnknown")<{
  /** Where the write was sent (an rqlite node, the database server), without credentials. */
  readonly node: string
  /** What happened to it there. */
  readonly reason: string
}> {
  override get message() {
    return (
      `the outcome of the write is unknown: ${this.node} ${this.reason}. It may or may not have been ` +
      "applied; read the data back before retrying it"
    )
  }
}

/** Whether `error` (a `StoreError`, a `SqlError`, ...) is a write whose outcome is unknown. */
export const isOutcomeUnknown = (error: unknown): boolean => {
  for (let u = error, depth = 0; typeof u === "object" && u !== null && depth < 5; depth++) {
    if ((u as { _tag?: unknown })._tag === "WriteOutcomeUnknown") return true
    u = (u as { cause?: unknown }).cause
  }
  return false
}

/**
 * Failures of a connection that was open (it dropped, or the server ended it): a statement on
 * it may have reached the server. A connection that could not be made is not one of them.
 */
const lostCodes = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT"])
const lostStates = /^(?:08003|08006|57P01|57P02)$/
const isLostConnection = (error: SqlError): boolean => {
  const code = codeOf(error.cause)
  const inner = messageOf(error.cause) ?? ""
  return (
    (code !== undefined && (lostCodes.has(code) || lostStates.test(code))) ||
    (/Connection terminated/i.test(inner) && !/connection timeout/i.test(inner))
  )
}

/** The explanation for drivers that wrap every failure in one generic SqlError message. */
export const explainGeneric = (error: SqlError): Failure => {
  if (isOutcomeUnknown(error)) return { reason: "unknown-outcome", detail: error.message }
  const inner = messageOf(error.cause)
  const isGeneric = genericMessage.test(error.message)
  const detail = inner === undefined ? error.message : isGeneric ? inner : `${error.message}: ${inner}`
  const code = codeOf(error.cause)
  const connect =
    (isGeneric && connectMessage.test(error.message) && !/statement/i.test(error.message)) ||
    (code !== undefined && (networkCodes.has(code) || connectStates.test(code))) ||
    /Connection terminated/i.test(inner ?? "")
  return { reason: connect ? "connect" : "query", detail }
}

/**
 * An executor for any `SqlClient`: statements go through the client, batches run in one of
 * its transactions. Right for clients with interactive transactions and a connection pool
 * (PostgreSQL, MySQL, a SqliteClient of the application's own).
 */
export const fromSqlClient = (client: SqlClient.SqlClient): Service => {
  const sql = client.withoutTransforms()
  const rows = <A extends object>(text: string, params: ReadonlyArray<unknown>) =>
    onceMore(text, sql.unsafe<A>(text, params).withoutTransform)
  const affected = (text: string, params: ReadonlyArray<unknown>) =>
    onceMore(
      text,
      Effect.map(sql.unsafe(text, params).raw, (raw) => resultOf(raw).affected),
    )
  return {
    rows: <A extends object>(statement: Statement<A>) =>
      Effect.suspend(() => rows<A>(...statement.compile())),
    affected: (statement) => Effect.suspend(() => affected(...statement.compile())),
    atomic: (statements) =>
      sql
        .withTransaction(
          Effect.forEach(statements, (statement, index) =>
            statement.raw.pipe(
              Effect.map(resultOf),
              Effect.mapError((cause) => new AtomicStatementError({ index, cause })),
            ),
          ),
        )
        .pipe(
          // a statement that failed rolled the transaction back; a lost COMMIT may have committed
          Effect.mapError((error) => (error._tag === "SqlError" ? unknownIfLost(error) : error)),
        ),
    prepare: <A extends object>(statement: Statement<A>) => {
      const [text] = statement.compile()
      return {
        rows: (params: ReadonlyArray<unknown>) => rows<A>(text, params),
        affected: (params) => affected(text, params),
      }
    },
    explain: explainGeneric,
  }
}

/** Statements that only read: sending one again cannot change anything. */
const readOnly = /^\s*SELECT\b/i

/** The real clock: the pause before a read is retried is for a real pool, also under a TestClock. */
const liveClock = Clock.make()

/** A read whose connection failed is tried once more, after a pause in which the pool drops dead connections. */
const readRetry = Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(1)))

const unknownIfLost = (error: SqlError): SqlError => {
  if (!isLostConnection(error)) return error
  const unknown = new WriteOutcomeUnknown({
    node: "the database server",
    reason: `lost the connection while it ran the write (${explainGeneric(error).detail})`,
  })
  return new SqlError({ message: unknown.message, cause: unknown })
}

/**
 * A read that failed because its connection could not be made or was lost is sent once more
 * (on another connection of the pool); a write whose connection was lost is never sent again:
 * its outcome is unknown.
 */
const onceMore = <A>(text: string, effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
  readOnly.test(text)
    ? Effect.retry(effect, {
        schedule: readRetry,
        while: (error) => explainGeneric(error).reason === "connect",
      }).pipe(Effect.withClock(liveClock))
    : Effect.mapError(effect, unknownIfLost)

/**
 * Where a client keeps the executor it should be run with (this package's SQLite and rqlite
 * clients): a property of the client itself, never looked up in the context.
 */
export const ExecutorId: unique symbol = Symbol.for("effect-kv/SqlExecutor/ExecutorId")

/** A client that brings its own executor. */
export interface WithExecutor {
  readonly [ExecutorId]: Service
}

const hasExecutor = (client: SqlClient.SqlClient): client is SqlClient.SqlClient & WithExecutor =>
  ExecutorId in client

/** The executor of `client`: its own when it brings one, else the generic one. */
export const executorOf = (client: SqlClient.SqlClient): Service =>
  hasExecutor(client) ? client[ExecutorId] : fromSqlClient(client)

/** A failure of `executor` during `operation`, as the store reports it (the client's own words). */
export const storeError = (
  executor: Service,
  operation: string,
  error: SqlError | AtomicStatementError,
): StoreError => {
  const cause = error._tag === "AtomicStatementError" ? error.cause : error
  const { detail, reason } = executor.explain(cause)
  return new StoreError({ operation, reason, detail, cause })
}
