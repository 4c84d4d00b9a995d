/**
 * Atomic batches: several statements that commit together or not at all.
 *
 * Backends with interactive transactions run the batch inside one; rqlite has none and
 * sends the whole batch as one HTTP request with `transaction`. Either way a failing
 * statement rolls back the batch and is reported with its position.
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Statement } from "@effect/sql/Statement"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/** Statement `index` of a batch failed, so the whole batch was rolled back. */
export class AtomicStatementError extends Data.TaggedError("AtomicStatementError")<{
  readonly index: number
  readonly cause: SqlError
}> {
  override get message() {
    return `statement ${this.index} of an atomic batch failed: ${this.cause.message}`
  }
}

/** What one statement produced: its rows (from `RETURNING` or a query) and the rows it changed. */
export interface StatementResult {
  readonly rows: ReadonlyArray<any>
  readonly affected: number
}

/** Runs the statements atomically and returns what each one produced. */
export type AtomicRunner = (
  statements: ReadonlyArray<Statement<any>>,
) => Effect.Effect<ReadonlyArray<StatementResult>, AtomicStatementError | SqlError>

/**
 * Reads a driver's raw result (`Statement.raw`): rows from better-sqlite3 (a reading
 * statement), its `RunResult` (`changes`), node-postgres' `Result` (`rows`, `rowCount`) or
 * rqlite's result (`rows_affected`).
 */
export const statementResult = (raw: unknown): StatementResult => {
  if (Array.isArray(raw)) return { rows: raw, affected: raw.length }
  const result = (typeof raw === "object" && raw !== null ? raw : {}) as {
    readonly rows?: unknown
    readonly rowCount?: unknown
    readonly changes?: unknown
    readonly rows_affected?: unknown
  }
  const rows = Array.isArray(result.rows) ? result.rows : []
  const affected = [result.rowCount, result.changes, result.rows_affected].find((n) => typeof n === "number")
  return { rows, affected: typeof affected === "number" ? affected : rows.length }
}

/** The runner for clients with interactive transactions. */
export const transactional =
  (sql: SqlClient): AtomicRunner =>
  (statements) =>
    sql.withTransaction(
      Effect.forEach(statements, (statement, index) =>
        statement.raw.pipe(
          Effect.map(statementResult),
          Effect.mapError((cause) => new AtomicStatementError({ index, cause })),
        ),
      ),
    )
