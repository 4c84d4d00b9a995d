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

/** Runs the statements atomically and returns the rows each one produced. */
export type AtomicRunner = (
  statements: ReadonlyArray<Statement<any>>,
) => Effect.Effect<ReadonlyArray<ReadonlyArray<any>>, AtomicStatementError | SqlError>

/** The runner for clients with interactive transactions. */
export const transactional =
  (sql: SqlClient): AtomicRunner =>
  (statements) =>
    sql.withTransaction(
      Effect.forEach(statements, (statement, index) =>
        Effect.mapError(statement, (cause) => new AtomicStatementError({ index, cause })),
      ),
    )
