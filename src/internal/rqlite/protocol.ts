/**
 * rqlite's wire protocol, as pure functions: statements and their parameters as the JSON of
 * `/db/request`, the SQL that must never reach rqlited, rqlite's results as rows, the
 * atomic-batch protocol with its trailing sentinel, and the read level a server version can
 * take. Nothing here does I/O; the transport and the client use these.
 */
import { SqlError } from "@effect/sql/SqlError"
import * as Either from "effect/Either"
import { AtomicStatementError, type StatementResult } from "../executor.js"

const fail = (message: string, cause?: unknown) =>
  new SqlError(cause === undefined ? { message } : { message, cause })

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

// Sent as statements, these would leave rqlite's connection in a transaction of its own
const transactionControl = /^\s*(?:BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b/i

/**
 * Whether some `;`-separated part of the statement holds no SQL, counting comments as empty
 * and ignoring only trailing whitespace: rqlited 8 runs out of memory on such statements.
 */
export const hasEmptyPart = (sql: string): boolean => {
  let code = false // the current part has SQL
  let comment = false // the current part has a comment
  let separated = false // a `;` was seen
  let i = 0
  while (i < sql.length) {
    const c = sql[i]!
    if (c === "-" && sql[i + 1] === "-") {
      const end = sql.indexOf("\n", i)
      i = end === -1 ? sql.length : end + 1
      comment = true
    } else if (c === "/" && sql[i + 1] === "*") {
      const end = sql.indexOf("*/", i + 2)
      i = end === -1 ? sql.length : end + 2
      comment = true
    } else if (c === "'" || c === '"' || c === "`" || c === "[") {
      // a doubled quote inside a literal just reads as two adjacent literals here
      const end = sql.indexOf(c === "[" ? "]" : c, i + 1)
      i = end === -1 ? sql.length : end + 1
      code = true
    } else if (c === ";") {
      if (!code) return true
      code = false
      comment = false
      separated = true
      i++
    } else {
      if (!/\s/.test(c)) code = true
      i++
    }
  }
  // after the last `;` only whitespace may follow; without a `;` there must be SQL
  return !code && (comment || !separated)
}

export const noTransactions = "rqlite has no interactive transactions; use executeAtomic"

/** Why rqlite must not get this SQL, if it must not. */
export const refusalOf = (sql: string): string | null =>
  transactionControl.test(sql)
    ? noTransactions
    : hasEmptyPart(sql)
      ? "empty SQL statement or part of one (e.g. ';;' or a comment after the last ';'), which makes rqlited 8 run out of memory"
      : null

/**
 * Whether a statement only reads, so that sending it again cannot change anything. Anything
 * else (also a `WITH` that may write) counts as a write.
 */
export const isReadOnly = (sql: string): boolean => /^\s*SELECT\b/i.test(sql)

/** One parameter as rqlite's JSON. */
export const encodeParam = (value: unknown): Either.Either<string, SqlError> => {
  switch (typeof value) {
    case "string":
      return Either.right(JSON.stringify(value))
    case "number":
      return Number.isFinite(value)
        ? Either.right(JSON.stringify(value))
        : Either.left(fail(`cannot bind ${value} as an rqlite parameter`))
    case "bigint":
      // JSON numbers carry all 64 bits to rqlite, which parses them as integers
      return Either.right(value.toString())
    case "boolean":
      return Either.right(value ? "1" : "0")
    case "undefined":
      return Either.right("null")
    case "object":
      if (value === null) return Either.right("null")
      if (value instanceof Date) return Either.right(JSON.stringify(value.toISOString()))
      if (value instanceof Uint8Array) {
        return Either.left(fail("rqlite 8 does not take binary parameters; bind a hex or base64 string"))
      }
  }
  return Either.left(fail(`cannot bind a value of type ${typeof value} as an rqlite parameter`))
}

/** A statement's SQL as JSON, and whether it only reads (and so may be sent again). */
export interface PreparedSql {
  readonly json: string
  readonly read: boolean
}

/** The SQL text as JSON, or why rqlite must not get it. */
export const prepareSql = (sql: string): Either.Either<PreparedSql, SqlError> => {
  const refusal = refusalOf(sql)
  return refusal === null
    ? Either.right({ json: JSON.stringify(sql), read: isReadOnly(sql) })
    : Either.left(fail(refusal))
}

/**
 * `prepareSql`, remembered per text (statements repeat; it is a pure function of the text).
 * The memory is dropped when it holds `capacity` texts.
 */
export const memoizedPrepareSql = (capacity = 1000) => {
  const cache = new Map<string, Either.Either<PreparedSql, SqlError>>()
  return (sql: string): Either.Either<PreparedSql, SqlError> => {
    let prepared = cache.get(sql)
    if (prepared === undefined) {
      prepared = prepareSql(sql)
      if (cache.size >= capacity) cache.clear()
      cache.set(sql, prepared)
    }
    return prepared
  }
}

/** One statement as rqlite's JSON, `["sql", param, ...]`, from the SQL already as JSON. */
export const encodeStatement = (
  sqlJson: string,
  params: ReadonlyArray<unknown>,
): Either.Either<string, SqlError> => {
  const parts = [sqlJson]
  for (const param of params) {
    const encoded = encodeParam(param)
    if (Either.isLeft(encoded)) return encoded
    parts.push(encoded.right)
  }
  return Either.right(`[${parts.join(",")}]`)
}

/** The body of a request of one statement (outside any transaction), and whether it only reads. */
export const singleRequest = (
  prepared: Either.Either<PreparedSql, SqlError>,
  params: ReadonlyArray<unknown>,
): Either.Either<{ readonly body: string; readonly read: boolean }, SqlError> => {
  if (Either.isLeft(prepared)) return Either.left(prepared.left)
  const statement = encodeStatement(prepared.right.json, params)
  return Either.isLeft(statement)
    ? Either.left(statement.left)
    : Either.right({ body: `[${statement.right}]`, read: prepared.right.read })
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/** One entry of rqlite's `results` (non-associative form). */
export interface RqliteResult {
  readonly columns?: ReadonlyArray<string>
  readonly types?: ReadonlyArray<string>
  readonly values?: ReadonlyArray<ReadonlyArray<unknown>>
  readonly last_insert_id?: number
  readonly rows_affected?: number
  readonly error?: string
}

export const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** The body as JSON; `undefined` when it is not (e.g. another HTTP server on the port). */
export const parseJson = (body: string): unknown => {
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

export type Row = Record<string, unknown>

/** A result's rows as objects keyed by column name. */
export const toObjects = (result: RqliteResult): ReadonlyArray<Row> => {
  const columns = result.columns ?? []
  return (result.values ?? []).map((values) => {
    const row: Row = {}
    for (let i = 0; i < columns.length; i++) row[columns[i]!] = values[i]
    return row
  })
}

/** The result of the one statement of a request, or its error. */
export const singleResult = (results: ReadonlyArray<RqliteResult>): Either.Either<RqliteResult, SqlError> => {
  const result = results[0]
  if (result === undefined) return Either.left(fail("rqlite returned no result for the statement"))
  if (result.error !== undefined) return Either.left(fail(result.error))
  return Either.right(result)
}

// ---------------------------------------------------------------------------------------------
// Atomic batches
// ---------------------------------------------------------------------------------------------

// A trailing no-op statement tells whether rqlite aborted the batch: when it rolls back, it
// stops at the failing statement; when it ignores the error, it runs this one too.
const sentinel = `["SELECT 1"]`

/** The body of an atomic batch (sent with `transaction`): the statements, then the sentinel. */
export const atomicBody = (statements: ReadonlyArray<string>): string =>
  `[${[...statements, sentinel].join(",")}]`

/** An atomic batch of compiled statements (SQL and parameters) as a request. */
export interface AtomicRequest {
  readonly body: string
  /** Every statement only reads: the batch may be sent again. */
  readonly read: boolean
}

/** The request of an atomic batch, or why rqlite must not get one of its statements. */
export const atomicRequest = (
  statements: ReadonlyArray<readonly [sql: string, params: ReadonlyArray<unknown>]>,
  prepare: (sql: string) => Either.Either<PreparedSql, SqlError> = prepareSql,
): Either.Either<AtomicRequest, SqlError> => {
  const encoded: Array<string> = []
  let read = true
  for (const [sql, params] of statements) {
    const prepared = prepare(sql)
    if (Either.isLeft(prepared)) return Either.left(prepared.left)
    read &&= prepared.right.read
    const statement = encodeStatement(prepared.right.json, params)
    if (Either.isLeft(statement)) return Either.left(statement.left)
    encoded.push(statement.right)
  }
  return Either.right({ body: atomicBody(encoded), read })
}

/**
 * What rqlite's results of an atomic batch of `count` statements mean: what each statement
 * produced, its rows by `rowsOf` (all applied); statement `index` failed and the batch was rolled back; or a
 * statement failed but rqlite committed the others anyway (or the answer has the wrong shape).
 */
export const atomicOutcome = (
  results: ReadonlyArray<RqliteResult>,
  count: number,
  rowsOf: (result: RqliteResult) => ReadonlyArray<object> = toObjects,
): Either.Either<ReadonlyArray<StatementResult>, AtomicStatementError | SqlError> => {
  const failed = results.findIndex((result) => result.error !== undefined)
  if (failed === -1) {
    if (results.length !== count + 1) {
      return Either.left(fail(`rqlite returned ${results.length - 1} results for ${count} statements`))
    }
    return Either.right(
      results.slice(0, count).map((result) => {
        const rows = rowsOf(result)
        return { rows, affected: result.rows_affected ?? rows.length }
      }),
    )
  }
  const cause = fail(results[failed]!.error!)
  // it ran past the failing statement, or the sentinel itself failed: nothing was rolled back
  if (failed >= count || results.length > failed + 1) {
    return Either.left(
      fail(
        `rqlite did not roll back the atomic batch: statement ${failed} failed (${cause.message}) ` +
          "but the other statements were committed. rqlite 8 ignores errors of statements that return " +
          "rows (SELECT, RETURNING) or fail to prepare inside a transaction; make the statement that " +
          "is meant to fail a plain write",
        cause,
      ),
    )
  }
  return Either.left(new AtomicStatementError({ index: failed, cause }))
}

// ---------------------------------------------------------------------------------------------
// The read level
// ---------------------------------------------------------------------------------------------

/** The first release whose `/db/request` runs read-only requests at `linearizable` (rqlite PR 2349). */
const linearizableSince = [9, 1, 1] as const

/**
 * The level to send for `linearizable` reads to a server whose `/status` says `build.version`
 * is `version`. rqlite before 8.32 reads `linearizable` as `weak`; 8.32.0 to 9.1.0 accept it
 * on `/db/request` but run read-only requests as plain local reads (rqlite issue 2347). So
 * only a release (`v9.1.1`, `9.1.1` or later, as rqlite's releases name themselves) gets
 * `linearizable`; every other version, a dev build (`8`, `unknown`) or none gets `strong`,
 * which is linearizable too, through the Raft log.
 */
export const linearizableLevelFor = (version: unknown): "linearizable" | "strong" => {
  const match = typeof version === "string" ? /^v?(\d+)\.(\d+)\.(\d+)$/.exec(version.trim()) : null
  if (match === null) return "strong"
  for (let i = 0; i < 3; i++) {
    const part = Number(match[i + 1])
    if (part !== linearizableSince[i]) return part > linearizableSince[i]! ? "linearizable" : "strong"
  }
  return "linearizable"
}
