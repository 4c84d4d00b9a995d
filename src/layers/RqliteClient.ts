/**
 * An `@effect/sql` client for rqlite, over its HTTP API.
 *
 * rqlite speaks SQLite, so the client compiles with the SQLite dialect and the store's SQLite
 * code path serves it unchanged. Every statement is one POST to `/db/request` (the endpoint
 * that takes reads, writes and `RETURNING` alike), sent with undici's `request` over
 * keep-alive connections (undici's fetch, and `@effect/platform`'s HttpClient over it, cost
 * half the throughput under load). rqlite has no interactive
 * transactions: atomic batches go through `executeAtomic`, which sends them as ONE request
 * with `transaction`. The client is also the store's `SqlExecutor`: statements go straight to
 * the HTTP connection, without the per-statement scope and span of `SqlClient`.
 *
 * Behaviour of the rqlite 8.26 server this was checked against (worth knowing when writing
 * SQL for it):
 * - inside a `transaction` request, a failing statement that returns rows (`SELECT`, or a
 *   write with `RETURNING`) or one that fails to prepare (syntax error, missing table) does
 *   NOT roll the batch back: rqlite commits the other statements. Only a plain write that
 *   fails rolls everything back. `executeAtomic` notices when rqlite committed anyway and
 *   fails with a SqlError that says so, instead of a (false) `AtomicStatementError`.
 * - a statement with an empty part (only whitespace or comments, `;;`, a comment after the
 *   last `;`) makes rqlited allocate memory until it is killed; the client refuses them.
 * - `level=linearizable` is only known from rqlite 8.32 on; older servers silently read it
 *   as `weak`. The client asks the server for its version and sends `strong` (which is
 *   linearizable too, through the Raft log) when it cannot tell that the server is 8.32+.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Undici from "undici"
import * as ConnectionString from "../internal/connection.js"
import {
  type AtomicRunner,
  AtomicStatementError,
  type Service as Executor,
  SqlExecutor,
} from "./SqlExecutor.js"

export const TypeId: unique symbol = Symbol.for("effect-kv/RqliteClient")
export type TypeId = typeof TypeId

/** rqlite's read consistency levels (https://rqlite.io/docs/api/read-consistency/). */
export type ReadConsistency = ConnectionString.ReadConsistency

export interface RqliteClientConfig {
  /**
   * `http(s)://host:port`, optionally with credentials as userinfo
   * (`http://admin:secret@host:4001`) or query parameters (`?user=admin&password=secret`)
   * and `level=none|weak|strong|linearizable`. Other query parameters are passed to rqlite.
   * A cluster is a host list: `http://h1:4001,h2:4001,h3:4001?...`.
   */
  readonly url: string | Redacted.Redacted<string>
  /** Read consistency (default: the URL's `level`, else `linearizable`). */
  readonly level?: ReadConsistency | undefined
  /** Per-request timeout (default 10 seconds), kept by the HTTP client of `layer`. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Basic auth user; overrides the URL's. */
  readonly username?: string | undefined
  /** Basic auth password; overrides the URL's. */
  readonly password?: Redacted.Redacted<string> | undefined
  readonly spanAttributes?: Record<string, unknown> | undefined
  readonly transformResultNames?: ((str: string) => string) | undefined
  readonly transformQueryNames?: ((str: string) => string) | undefined
}

export interface RqliteClient extends Client.SqlClient {
  readonly [TypeId]: TypeId
  /** The configuration in use: the nodes without credentials, the password `Redacted`. */
  readonly config: {
    readonly nodes: ReadonlyArray<string>
    readonly level: ReadConsistency
    readonly username?: string | undefined
    readonly password?: Redacted.Redacted<string> | undefined
  }
  /** The level sent with reads: `config.level`, or `strong` for `linearizable` on servers before 8.32. */
  readonly readLevel: ReadConsistency
  /**
   * Runs the statements as one rqlite transaction (one HTTP request) and returns the rows of
   * each. A failing statement rolls the batch back and fails with `AtomicStatementError`.
   */
  readonly executeAtomic: AtomicRunner
  /** The store's executor: statements straight to the HTTP connection, batches as one request. */
  readonly executor: Executor
  /** Not supported by the SQLite dialect. */
  readonly updateValues: never
}

export const RqliteClient = Context.GenericTag<RqliteClient>("effect-kv/RqliteClient")

const defaultTimeout = Duration.seconds(10)

/**
 * An undici dispatcher that gives every request `timeoutMs` to answer. Timeouts live in
 * the dispatcher (undici's own timers) rather than in `Effect.timeout`, which costs a fiber
 * per request; they also run on the real clock, which a TestClock does not drive.
 */
const makeDispatcher = (timeoutMs: number) =>
  new Undici.Agent({ keepAliveTimeout: 30_000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })

/** What an HTTP exchange returned. */
interface Answer {
  readonly status: number
  readonly body: string
  readonly location: string | undefined
}

const redirects = new Set([301, 302, 307, 308])

const fail = (message: string, cause?: unknown) =>
  new SqlError(cause === undefined ? { message } : { message, cause })

// ---------------------------------------------------------------------------------------------
// Connection strings
// ---------------------------------------------------------------------------------------------

/** The nodes, credentials and level of a connection string (see `internal/connection.ts`). */
export const parseUrl = (
  input: string | Redacted.Redacted<string>,
): Either.Either<ConnectionString.RqliteTarget, SqlError> =>
  Either.mapLeft(ConnectionString.parseRqlite(input), (message) => fail(message))

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

// Sent as statements, these would leave rqlite's connection in a transaction of its own
const transactionControl = /^\s*(?:BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b/i

/**
 * Whether some `;`-separated part of the statement holds no SQL, counting comments as empty
 * and ignoring only trailing whitespace: rqlited 8 runs out of memory on such statements.
 */
const hasEmptyPart = (sql: string): boolean => {
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

const encodeParam = (value: unknown): Either.Either<string, SqlError> => {
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

/** Why rqlite must not get this SQL, if it must not. */
const refusalOf = (sql: string): string | null =>
  transactionControl.test(sql)
    ? "rqlite has no interactive transactions; use executeAtomic"
    : hasEmptyPart(sql)
      ? "empty SQL statement or part of one (e.g. ';;' or a comment after the last ';'), which makes rqlited 8 run out of memory"
      : null

/** One statement as rqlite's JSON, `["sql", param, ...]`, from the SQL already as JSON. */
const encodeStatement = (
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

// ---------------------------------------------------------------------------------------------
// Responses
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

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** The body as JSON; `undefined` when it is not (e.g. another HTTP server on the port). */
const parseJson = (body: string): unknown => {
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

const decodeResults = (body: unknown): Either.Either<ReadonlyArray<RqliteResult>, SqlError> => {
  if (isRecord(body) && typeof body.error === "string") return Either.left(fail(body.error))
  if (isRecord(body) && Array.isArray(body.results) && body.results.every(isRecord)) {
    return Either.right(body.results as ReadonlyArray<RqliteResult>)
  }
  return Either.left(fail("unexpected response from rqlite: no results"))
}

type Row = Record<string, unknown>

const toObjects = (result: RqliteResult): ReadonlyArray<Row> => {
  const columns = result.columns ?? []
  return (result.values ?? []).map((values) => {
    const row: Row = {}
    for (let i = 0; i < columns.length; i++) row[columns[i]!] = values[i]
    return row
  })
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/** Whether a `build.version` like "v8.36.2" is 8.32 or later. */
const supportsLinearizable = (version: unknown): boolean => {
  const match = typeof version === "string" ? /^v?(\d+)\.(\d+)/.exec(version) : null
  if (match === null) return false
  const [major, minor] = [Number(match[1]), Number(match[2])]
  return major > 8 || (major === 8 && minor >= 32)
}

const timeoutErrorCodes = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"])

const connectErrorCodes = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "EAI_AGAIN"])

const errorCode = (cause: unknown): string | undefined => {
  if (!isRecord(cause)) return undefined
  if (typeof cause.code === "string") return cause.code
  // Node reports every address it tried in an AggregateError
  if (Array.isArray(cause.errors)) return errorCode(cause.errors[0])
  return errorCode(cause.cause)
}

export const make = (
  options: RqliteClientConfig,
): Effect.Effect<RqliteClient, SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function* () {
    const parsed = yield* parseUrl(options.url)
    const config: RqliteClient["config"] = {
      nodes: parsed.nodes,
      level: options.level ?? parsed.level ?? "linearizable",
      username: options.username ?? parsed.username,
      password: options.password ?? parsed.password,
    }
    const timeout = Duration.decode(options.timeout ?? defaultTimeout)
    const base = new URL(config.nodes[0]!)
    const origin = base.origin
    const basePath = base.pathname.replace(/\/+$/, "")

    const dispatcher = yield* Effect.acquireRelease(
      Effect.sync(() => makeDispatcher(Math.max(1, Math.round(Duration.toMillis(timeout))))),
      (dispatcher) => Effect.promise(() => dispatcher.destroy()),
    )
    const headers: Record<string, string> = {}
    if (config.username !== undefined || config.password !== undefined) {
      const credentials = `${config.username ?? ""}:${config.password ? Redacted.value(config.password) : ""}`
      headers.authorization = `Basic ${Buffer.from(credentials).toString("base64")}`
    }

    // Failures that mean the server could not be reached (for `explain`).
    const unreachable = new WeakSet<SqlError>()
    const connectError = (message: string, cause: unknown) => {
      const error = fail(message, cause)
      unreachable.add(error)
      return error
    }

    // Errors name the server by its origin only: the request carries the credentials
    const transportError = (cause: unknown): SqlError => {
      const code = errorCode(cause)
      if (code !== undefined && connectErrorCodes.has(code)) {
        return connectError(`cannot connect to ${origin} (${code})`, cause)
      }
      if (code !== undefined && timeoutErrorCodes.has(code)) {
        return fail(
          `rqlite request to ${origin} timed out after ${Duration.format(timeout)} (a write may still be applied)`,
          cause,
        )
      }
      const reason = cause instanceof Error ? cause.message : String(cause)
      return fail(`rqlite request to ${origin} failed: ${reason}`, cause)
    }

    const statusError = (status: number, body: string): SqlError => {
      const detail = body.trim().slice(0, 300)
      if (status === 401)
        return connectError(`rqlite at ${origin} rejected the credentials (HTTP 401)`, undefined)
      if (status === 403) return fail(`rqlite at ${origin}: permission denied for this user (HTTP 403)`)
      return fail(`rqlite at ${origin} answered HTTP ${status}${detail ? `: ${detail}` : ""}`)
    }

    const postHeaders = { ...headers, "content-type": "application/json" }

    /** One HTTP exchange; rqlite's redirect of a write from a follower to the leader is followed. */
    const exchange = (
      method: "GET" | "POST",
      url: string,
      body?: string,
      hops = 0,
    ): Effect.Effect<Answer, SqlError> =>
      Effect.flatMap(
        Effect.tryPromise({
          try: async (signal): Promise<Answer> => {
            const response = await Undici.request(url, {
              method,
              headers: body === undefined ? headers : postHeaders,
              body: body ?? null,
              dispatcher,
              signal,
            })
            const location = response.headers.location
            return {
              status: response.statusCode,
              body: await response.body.text(),
              location: Array.isArray(location) ? location[0] : location,
            }
          },
          catch: transportError,
        }),
        (answer) =>
          redirects.has(answer.status) && answer.location !== undefined && hops < 3
            ? exchange(method, new URL(answer.location, url).toString(), body, hops + 1)
            : Effect.succeed(answer),
      )

    /**
     * `linearizable` where the server knows it (8.32+), else `strong`. Asking also checks
     * early that the server is reachable and takes the credentials.
     */
    const linearizableLevel = Effect.flatMap(
      exchange("GET", new URL(`${basePath}/status`, origin).toString()),
      (answer): Effect.Effect<ReadConsistency, SqlError> => {
        if (answer.status === 401) return Effect.fail(statusError(401, ""))
        if (answer.status !== 200) return Effect.succeed("strong") // e.g. no "status" permission
        const body = parseJson(answer.body)
        return Effect.succeed(
          supportsLinearizable(isRecord(body) && isRecord(body.build) ? body.build.version : undefined)
            ? "linearizable"
            : "strong",
        )
      },
    )

    const readLevel: ReadConsistency =
      config.level === "linearizable" ? yield* linearizableLevel : config.level
    const endpoint = (transaction: boolean) => {
      const url = new URL(`${basePath}/db/request`, origin)
      url.search = parsed.params.toString()
      url.searchParams.set("level", readLevel)
      if (transaction) url.searchParams.set("transaction", "")
      return url.toString()
    }
    // built once: URL building is a noticeable part of a request's cost
    const singleEndpoint = endpoint(false)
    const batchEndpoint = endpoint(true)

    /** POSTs the statements (already JSON) and returns one result per statement. */
    const send = (url: string, statements: ReadonlyArray<string>) =>
      Effect.flatMap(exchange("POST", url, `[${statements.join(",")}]`), (answer) =>
        answer.status >= 200 && answer.status < 300
          ? decodeResults(parseJson(answer.body))
          : Effect.fail(statusError(answer.status, answer.body)),
      )

    /** The SQL text as JSON, or why rqlite must not get it; remembered per text (statements repeat). */
    const sqlJsonCache = new Map<string, Either.Either<string, SqlError>>()
    const sqlJson = (sql: string): Either.Either<string, SqlError> => {
      let encoded = sqlJsonCache.get(sql)
      if (encoded === undefined) {
        const refusal = refusalOf(sql)
        encoded = refusal === null ? Either.right(JSON.stringify(sql)) : Either.left(fail(refusal))
        if (sqlJsonCache.size >= 1000) sqlJsonCache.clear()
        sqlJsonCache.set(sql, encoded)
      }
      return encoded
    }

    /** Runs one statement outside any transaction and returns its result. */
    const runEncoded = (statement: Either.Either<string, SqlError>) =>
      Effect.flatMap(statement, (statement) =>
        send(singleEndpoint, [statement]).pipe(
          Effect.flatMap((results) => {
            const result = results[0]
            if (result === undefined) return Effect.fail(fail("rqlite returned no result for the statement"))
            if (result.error !== undefined) return Effect.fail(fail(result.error))
            return Effect.succeed(result)
          }),
        ),
      )
    const run = (sql: string, params: ReadonlyArray<unknown>) =>
      runEncoded(Either.flatMap(sqlJson(sql), (json) => encodeStatement(json, params)))

    const connection: Connection = {
      execute: (sql, params, transformRows) =>
        Effect.map(run(sql, params), (result) =>
          transformRows ? transformRows(toObjects(result)) : toObjects(result),
        ),
      executeRaw: (sql, params) => run(sql, params),
      executeValues: (sql, params) => Effect.map(run(sql, params), (result) => result.values ?? []),
      executeUnprepared: (sql, params, transformRows) =>
        Effect.map(run(sql, params ?? []), (result) =>
          transformRows ? transformRows(toObjects(result)) : toObjects(result),
        ),
      // rqlite answers with the whole result at once
      executeStream: (sql, params, transformRows) =>
        Stream.fromIterableEffect(
          Effect.map(run(sql, params), (result) =>
            transformRows ? transformRows(toObjects(result)) : toObjects(result),
          ),
        ),
    }

    const compiler = Statement.makeCompilerSqlite(options.transformQueryNames)
    const transformRows = options.transformResultNames
      ? Statement.defaultTransforms(options.transformResultNames).array
      : undefined

    // A trailing no-op statement tells whether rqlite aborted the batch: when it rolls back,
    // it stops at the failing statement; when it ignores the error, it runs this one too.
    const sentinel = `["SELECT 1"]`

    const executeAtomic: AtomicRunner = (statements) =>
      Effect.gen(function* () {
        if (statements.length === 0) return []
        const encoded: Array<string> = []
        for (const statement of statements) {
          const [sql, params] = statement.compile()
          encoded.push(yield* Either.flatMap(sqlJson(sql), (json) => encodeStatement(json, params)))
        }
        const results = yield* send(batchEndpoint, [...encoded, sentinel])
        const failed = results.findIndex((result) => result.error !== undefined)
        if (failed === -1) {
          if (results.length !== statements.length + 1) {
            return yield* fail(
              `rqlite returned ${results.length - 1} results for ${statements.length} statements`,
            )
          }
          return results.slice(0, statements.length).map((result) => {
            const rows = transformRows ? transformRows(toObjects(result)) : toObjects(result)
            return { rows, affected: result.rows_affected ?? rows.length }
          })
        }
        const cause = fail(results[failed]!.error!)
        if (failed >= statements.length || results.length > failed + 1) {
          return yield* fail(
            `rqlite did not roll back the atomic batch: statement ${failed} failed (${cause.message}) ` +
              "but the other statements were committed. rqlite 8 ignores errors of statements that return " +
              "rows (SELECT, RETURNING) or fail to prepare inside a transaction; make the statement that " +
              "is meant to fail a plain write",
            cause,
          )
        }
        return yield* new AtomicStatementError({ index: failed, cause })
      })

    const executor: Executor = {
      rows: (statement) =>
        Effect.suspend(() => {
          const [sql, params] = statement.compile()
          return Effect.map(run(sql, params), toObjects as (result: RqliteResult) => ReadonlyArray<any>)
        }),
      affected: (statement) =>
        Effect.suspend(() => {
          const [sql, params] = statement.compile()
          return Effect.map(run(sql, params), (result) => result.rows_affected ?? 0)
        }),
      atomic: executeAtomic,
      prepare: (statement) => {
        const json = sqlJson(statement.compile()[0])
        return (params) =>
          Effect.map(
            runEncoded(Either.flatMap(json, (json) => encodeStatement(json, params))),
            toObjects as (result: RqliteResult) => ReadonlyArray<any>,
          )
      },
      explain: (error) => ({ reason: unreachable.has(error) ? "connect" : "query", detail: error.message }),
    }

    const client = yield* Client.make({
      acquirer: Effect.succeed(connection),
      compiler,
      transactionAcquirer: Effect.fail(fail("rqlite has no interactive transactions; use executeAtomic")),
      spanAttributes: [
        ...(options.spanAttributes ? Object.entries(options.spanAttributes) : []),
        ["db.system.name", "rqlite"],
        ["server.address", base.hostname],
      ],
      transformRows,
    })

    return Object.assign(client, {
      [TypeId]: TypeId,
      config,
      readLevel,
      executeAtomic,
      executor,
    }) as RqliteClient
  })

/** The client, as `SqlClient` too, and its executor. */
export const layer = (
  config: RqliteClientConfig,
): Layer.Layer<RqliteClient | Client.SqlClient | SqlExecutor, SqlError> =>
  Layer.scopedContext(
    Effect.map(make(config), (client) =>
      Context.make(RqliteClient, client).pipe(
        Context.add(Client.SqlClient, client),
        Context.add(SqlExecutor, client.executor),
      ),
    ),
  ).pipe(Layer.provide(Reactivity.layer))
