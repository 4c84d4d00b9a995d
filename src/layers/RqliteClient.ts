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
 *
 * A cluster is a list of nodes (`http://h1:4001,h2:4001,h3:4001`). Requests go to the node that
 * answered last (followers forward writes and strong reads to the leader). When a node cannot
 * serve a request (it refuses the connection, times out, or has no leader), the client moves
 * on to the next node, backing off (a `Schedule` on the live clock) for up to
 * `failoverTimeout`, then fails naming every node and why. Reads are sent again freely. A
 * write is sent again only when it provably was not applied (the connection was refused, or
 * rqlite answered that it has no leader, which it does before touching the Raft log); when
 * the connection dropped after the write was sent, or it timed out, or the leader lost its
 * leadership while committing it, the write fails with a `WriteOutcomeUnknown` cause
 * (`isOutcomeUnknown`): it may or may not have been applied, and only the caller can find out.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Undici from "undici"
import * as ConnectionString from "../internal/connection.js"
import {
  type AtomicRunner,
  AtomicStatementError,
  type Service as Executor,
  ExecutorId,
  SqlExecutor,
  type WithExecutor,
} from "../internal/executor.js"

export const TypeId: unique symbol = Symbol.for("effect-kv/RqliteClient")
export type TypeId = typeof TypeId

/** rqlite's read consistency levels (https://rqlite.io/docs/api/read-consistency/). */
export type ReadConsistency = ConnectionString.ReadConsistency

export interface RqliteClientConfig {
  /**
   * `http(s)://host:port`, optionally with credentials as userinfo
   * (`http://admin:secret@host:4001`) or query parameters (`?user=admin&password=secret`)
   * and `level=none|weak|strong|linearizable`. Other query parameters are passed to rqlite.
   * A cluster is a host list: `http://h1:4001,h2:4001,h3:4001?...`. Give `url` or `urls`.
   */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** The nodes of a cluster one URL each (`["http://h1:4001", "http://h2:4001"]`), instead of `url`. */
  readonly urls?: ReadonlyArray<string | Redacted.Redacted<string>> | undefined
  /** Read consistency (default: the URL's `level`, else `linearizable`). */
  readonly level?: ReadConsistency | undefined
  /** Per-request timeout (default 10 seconds), kept by the HTTP client of `layer`. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * How long a request keeps trying other nodes after a node could not serve it (refused the
   * connection, timed out, had no leader) before it fails (default 10 seconds). Counted from
   * the first failure, on the real clock.
   */
  readonly failoverTimeout?: Duration.DurationInput | undefined
  /** Basic auth user; overrides the URL's. */
  readonly username?: string | undefined
  /** Basic auth password; overrides the URL's. */
  readonly password?: Redacted.Redacted<string> | undefined
  readonly spanAttributes?: Record<string, unknown> | undefined
  readonly transformResultNames?: ((str: string) => string) | undefined
  readonly transformQueryNames?: ((str: string) => string) | undefined
}

export interface RqliteClient extends Client.SqlClient, WithExecutor {
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
const defaultFailoverTimeout = Duration.seconds(10)

/**
 * An undici dispatcher that gives every request `timeoutMs` to answer. Timeouts live in
 * the dispatcher (undici's own timers) rather than in `Effect.timeout`, which costs a fiber
 * per request; they also run on the real clock, which a TestClock does not drive.
 */
const makeDispatcher = (timeoutMs: number) =>
  new Undici.Agent({
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: timeoutMs },
  })

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

/** The target of a configuration: its `url`, or its `urls` (one node each). */
export const parseConfig = (
  config: Pick<RqliteClientConfig, "url" | "urls">,
): Either.Either<ConnectionString.RqliteTarget, SqlError> =>
  Either.mapLeft(ConnectionString.parseRqliteConfig(config), (message) => fail(message))

// ---------------------------------------------------------------------------------------------
// Failures of a node
// ---------------------------------------------------------------------------------------------

/**
 * The cause of a write that failed in a way that leaves its outcome unknown: the request
 * reached rqlite, but no answer came back (the connection dropped, the request timed out, or
 * the leader was deposed while committing it). It may or may not have been applied.
 */
export class WriteOutcomeUnknown extends Data.TaggedError("WriteOutcomeUnknown")<{
  /** The node the write was sent to, without credentials. */
  readonly node: string
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

/** A node could not serve a request; another node may. */
class NodeFailure {
  readonly _tag = "NodeFailure"
  constructor(
    /** The index of the node in the configuration. */
    readonly node: number,
    /** What happened, naming the node. */
    readonly error: SqlError,
    /** What happened, without the node's name. */
    readonly reason: string,
    /** The request reached rqlite: a write may have been applied. */
    readonly sent: boolean,
    /** Nothing answered at the node's address. */
    readonly unreachable: boolean,
  ) {}
}

const isNodeFailure = (u: unknown): u is NodeFailure => u instanceof NodeFailure

/**
 * rqlite's answers (a 503 body, or the `error` of a 200) that mean "no leader here", given
 * before the request touched the Raft log: sending it again elsewhere is safe.
 */
const notAppliedAnswer =
  /\b(?:not leader|leader not found|store not (?:open|ready)|stale read)\b|\bdial tcp\b.*\bconnection refused\b/i

/**
 * rqlite's answers that mean the node lost the leader or the connection to it while the
 * request was on its way: a write may or may not have been applied.
 */
const interruptedAnswer =
  /leadership lost|\bEOF\b|connection reset|broken pipe|i\/o timeout|deadline exceeded|timed out|remote node|shutdown/i

/** Transport errors before the request was sent: nothing reached rqlite. */
const connectErrorCodes = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
])

/** Transport errors after the request was sent, or while it was. */
const droppedErrorCodes = new Set([
  "ECONNRESET",
  "EPIPE",
  "ECONNABORTED",
  "ETIMEDOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
])

const timeoutErrorCodes = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"])

/**
 * The pause before trying the next node: short at first (another node is usually fine), then
 * growing to a poll of the cluster every 250 ms while it elects a leader; jittered so that
 * many waiting requests do not arrive together.
 */
const failoverBackoff = Schedule.exponential("25 millis", 2).pipe(
  Schedule.union(Schedule.spaced("250 millis")),
  Schedule.jittered,
)

/** The real clock: failover waits for real servers, also under a TestClock. */
const liveClock = Clock.make()

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

/**
 * Statements that only read: sending one again cannot change anything. Anything else (also a
 * `WITH` that may write) counts as a write.
 */
const readOnly = /^\s*SELECT\b/i

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
    const parsed = yield* parseConfig(options)
    const config: RqliteClient["config"] = {
      nodes: parsed.nodes,
      level: options.level ?? parsed.level ?? "linearizable",
      username: options.username ?? parsed.username,
      password: options.password ?? parsed.password,
    }
    const timeout = Duration.decode(options.timeout ?? defaultTimeout)
    const failoverTimeout = Duration.decode(options.failoverTimeout ?? defaultFailoverTimeout)

    const dispatcher = yield* Effect.acquireRelease(
      Effect.sync(() => makeDispatcher(Math.max(1, Math.round(Duration.toMillis(timeout))))),
      (dispatcher) => Effect.promise(() => dispatcher.destroy()),
    )
    const headers: Record<string, string> = {}
    if (config.username !== undefined || config.password !== undefined) {
      const credentials = `${config.username ?? ""}:${config.password ? Redacted.value(config.password) : ""}`
      headers.authorization = `Basic ${Buffer.from(credentials).toString("base64")}`
    }
    const postHeaders = { ...headers, "content-type": "application/json" }

    // Failures that mean the database could not be reached (for `explain`).
    const unreachable = new WeakSet<SqlError>()
    const connectError = (message: string, cause?: unknown) => {
      const error = fail(message, cause)
      unreachable.add(error)
      return error
    }

    // --- the nodes ---------------------------------------------------------------------

    /** A node's URLs, built once: URL building is a noticeable part of a request's cost. */
    interface Endpoint {
      /** `http://host:port`: how errors name the node (the request carries the credentials). */
      readonly origin: string
      readonly status: string
      readonly single: string
      readonly batch: string
    }
    /** The read level is known after asking a node (see `linearizableLevel`). */
    const endpointsAt = (level: ReadConsistency): ReadonlyArray<Endpoint> =>
      config.nodes.map((node) => {
        const base = new URL(node)
        const basePath = base.pathname.replace(/\/+$/, "")
        const endpoint = (transaction: boolean) => {
          const url = new URL(`${basePath}/db/request`, base.origin)
          url.search = parsed.params.toString()
          url.searchParams.set("level", level)
          if (transaction) url.searchParams.set("transaction", "")
          return url.toString()
        }
        return {
          origin: base.origin,
          status: new URL(`${basePath}/status`, base.origin).toString(),
          single: endpoint(false),
          batch: endpoint(true),
        }
      })
    let endpoints = endpointsAt(config.level)
    /** The node that answered last: requests go there first. */
    let preferred = 0

    // --- one HTTP exchange with a node -------------------------------------------------

    const transportFailure = (node: number, cause: unknown): NodeFailure | SqlError => {
      const { origin } = endpoints[node]!
      const code = errorCode(cause)
      if (code !== undefined && connectErrorCodes.has(code)) {
        return new NodeFailure(
          node,
          connectError(`cannot connect to ${origin} (${code})`, cause),
          `cannot connect (${code})`,
          false,
          true,
        )
      }
      if (code !== undefined && droppedErrorCodes.has(code)) {
        const reason = timeoutErrorCodes.has(code)
          ? `timed out after ${Duration.format(timeout)}`
          : `dropped the connection (${code}${cause instanceof Error && cause.message ? `: ${cause.message}` : ""})`
        return new NodeFailure(node, fail(`rqlite at ${origin} ${reason}`, cause), reason, true, false)
      }
      const reason = cause instanceof Error ? cause.message : String(cause)
      return fail(`rqlite request to ${origin} failed: ${reason}`, cause)
    }

    /** A failed answer: a node failure when another node may do better, else the error. */
    const answerFailure = (node: number, status: number, body: string): NodeFailure | SqlError => {
      const { origin } = endpoints[node]!
      const detail = body.trim().slice(0, 300)
      const said = detail ? `: ${detail}` : ""
      if (status === 401) return connectError(`rqlite at ${origin} rejected the credentials (HTTP 401)`)
      if (status === 403) return fail(`rqlite at ${origin}: permission denied for this user (HTTP 403)`)
      const reason = status === 200 ? `answered "${detail}"` : `answered HTTP ${status}${said}`
      const error = () => fail(`rqlite at ${origin} ${reason}`)
      // 503: rqlite has no leader, and says so before it touches the Raft log
      if (status === 503 || notAppliedAnswer.test(detail)) {
        return new NodeFailure(node, error(), reason, false, false)
      }
      if (status === 502 || status === 504 || interruptedAnswer.test(detail)) {
        return new NodeFailure(node, error(), reason, true, false)
      }
      if (status === 200) return fail(detail)
      return error()
    }

    const notRqlite = (node: number, status: number) =>
      fail(
        `the server at ${endpoints[node]!.origin} does not answer like rqlite (HTTP ${status} without rqlite's JSON); is it an rqlite node?`,
      )

    /** One HTTP exchange; rqlite's redirect of a write from a follower to the leader is followed. */
    const exchange = (
      node: number,
      method: "GET" | "POST",
      url: string,
      body?: string,
      hops = 0,
    ): Effect.Effect<Answer, SqlError | NodeFailure> =>
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
          catch: (cause) => transportFailure(node, cause),
        }),
        (answer) =>
          redirects.has(answer.status) && answer.location !== undefined && hops < 3
            ? exchange(node, method, new URL(answer.location, url).toString(), body, hops + 1)
            : Effect.succeed(answer),
      )

    /** POSTs the statements (already JSON) to a node and returns one result per statement. */
    const post = (
      node: number,
      transaction: boolean,
      statements: string,
    ): Effect.Effect<ReadonlyArray<RqliteResult>, SqlError | NodeFailure> => {
      const endpoint = endpoints[node]!
      return Effect.flatMap(
        exchange(node, "POST", transaction ? endpoint.batch : endpoint.single, statements),
        (answer) => {
          const body = parseJson(answer.body)
          if (answer.status >= 200 && answer.status < 300) {
            if (isRecord(body) && typeof body.error === "string") {
              return Effect.fail(answerFailure(node, answer.status, body.error))
            }
            if (isRecord(body) && Array.isArray(body.results) && body.results.every(isRecord)) {
              return Effect.succeed(body.results as ReadonlyArray<RqliteResult>)
            }
            return Effect.fail(notRqlite(node, answer.status))
          }
          return Effect.fail(answerFailure(node, answer.status, answer.body))
        },
      )
    }

    // --- failover ----------------------------------------------------------------------

    /** A write that reached rqlite without an answer: never sent again. */
    const outcomeUnknown = (failure: NodeFailure) => {
      const cause = new WriteOutcomeUnknown({ node: endpoints[failure.node]!.origin, reason: failure.reason })
      return fail(cause.message, cause)
    }

    /** The failure after the nodes were tried: each node named with what it last said. */
    const exhausted = (tried: ReadonlyMap<number, NodeFailure>, unreachableNodes: number): SqlError => {
      const failures = [...tried.values()].sort((a, b) => a.node - b.node)
      if (unreachableNodes === endpoints.length && failures.length === 1) return failures[0]!.error
      const each = failures
        .map((failure) => `${endpoints[failure.node]!.origin} (${failure.reason})`)
        .join(", ")
      return connectError(
        unreachableNodes === endpoints.length
          ? `cannot connect to any rqlite node: ${each}`
          : `no rqlite node could serve the request within ${Duration.format(failoverTimeout)}: ${each}`,
      )
    }

    /**
     * Tries the other nodes in turn, with backoff, after `first` failed. Stops when a write may
     * have been applied, when no node answers at all, or at the deadline.
     */
    const failover = <A>(
      write: boolean,
      run: (node: number) => Effect.Effect<A, SqlError | NodeFailure>,
      first: NodeFailure,
    ): Effect.Effect<A, SqlError> => {
      if (write && first.sent) return Effect.fail(outcomeUnknown(first))
      const tried = new Map<number, NodeFailure>([[first.node, first]])
      // nodes that refused the connection since the last one that answered
      const refused = new Set<number>(first.unreachable ? [first.node] : [])
      const giveUp = (failure: NodeFailure) => (write && failure.sent) || refused.size === endpoints.length
      if (giveUp(first)) return Effect.fail(exhausted(tried, refused.size))
      let node = first.node
      const next = Effect.suspend(() => {
        node = (node + 1) % endpoints.length
        const current = node
        return Effect.tap(run(current), () => {
          preferred = current
        })
      }).pipe(
        Effect.tapError((error) =>
          Effect.sync(() => {
            if (!isNodeFailure(error)) return
            tried.set(error.node, error)
            if (error.unreachable) refused.add(error.node)
            else refused.clear()
          }),
        ),
      )
      return next.pipe(
        Effect.retry({
          schedule: failoverBackoff.pipe(Schedule.upTo(failoverTimeout)),
          while: (error) => isNodeFailure(error) && !giveUp(error),
        }),
        Effect.catchIf(isNodeFailure, (last) =>
          Effect.fail(write && last.sent ? outcomeUnknown(last) : exhausted(tried, refused.size)),
        ),
        Effect.withClock(liveClock),
      )
    }

    /** Runs a request on the preferred node, and on the others when it cannot serve it. */
    const withFailover = <A>(
      write: boolean,
      run: (node: number) => Effect.Effect<A, SqlError | NodeFailure>,
    ): Effect.Effect<A, SqlError> =>
      Effect.catchIf(run(preferred), isNodeFailure, (failure) =>
        failover(write, run, failure),
      ) as Effect.Effect<A, SqlError>

    // --- the read level ----------------------------------------------------------------

    /**
     * `linearizable` where the server knows it (8.32+), else `strong`. Asking also checks
     * early that a node is reachable and takes the credentials.
     */
    const linearizableLevel = withFailover(false, (node) =>
      Effect.flatMap(
        exchange(node, "GET", endpoints[node]!.status),
        (answer): Effect.Effect<ReadConsistency, SqlError | NodeFailure> => {
          if (answer.status === 401) return Effect.fail(answerFailure(node, 401, ""))
          if (answer.status === 503) return Effect.fail(answerFailure(node, 503, answer.body))
          if (answer.status !== 200) return Effect.succeed("strong") // e.g. no "status" permission
          const body = parseJson(answer.body)
          return Effect.succeed(
            supportsLinearizable(isRecord(body) && isRecord(body.build) ? body.build.version : undefined)
              ? "linearizable"
              : "strong",
          )
        },
      ),
    )

    const readLevel: ReadConsistency =
      config.level === "linearizable" ? yield* linearizableLevel : config.level
    if (readLevel !== config.level) endpoints = endpointsAt(readLevel)

    // --- statements --------------------------------------------------------------------

    /** A statement's SQL as JSON, and whether it only reads (and so may be sent again). */
    interface Prepared {
      readonly json: string
      readonly read: boolean
    }

    /** The SQL text as JSON, or why rqlite must not get it; remembered per text (statements repeat). */
    const sqlCache = new Map<string, Either.Either<Prepared, SqlError>>()
    const prepareSql = (sql: string): Either.Either<Prepared, SqlError> => {
      let prepared = sqlCache.get(sql)
      if (prepared === undefined) {
        const refusal = refusalOf(sql)
        prepared =
          refusal === null
            ? Either.right({ json: JSON.stringify(sql), read: readOnly.test(sql) })
            : Either.left(fail(refusal))
        if (sqlCache.size >= 1000) sqlCache.clear()
        sqlCache.set(sql, prepared)
      }
      return prepared
    }

    /** Sends one statement outside any transaction and returns its result. */
    const sendOne = (read: boolean, statement: string) =>
      Effect.flatMap(
        withFailover(!read, (node) => post(node, false, `[${statement}]`)),
        (results) => {
          const result = results[0]
          if (result === undefined) return Effect.fail(fail("rqlite returned no result for the statement"))
          if (result.error !== undefined) return Effect.fail(fail(result.error))
          return Effect.succeed(result)
        },
      )

    const run = (sql: string, params: ReadonlyArray<unknown>): Effect.Effect<RqliteResult, SqlError> => {
      const prepared = prepareSql(sql)
      if (Either.isLeft(prepared)) return Effect.fail(prepared.left)
      const statement = encodeStatement(prepared.right.json, params)
      return Either.isLeft(statement)
        ? Effect.fail(statement.left)
        : sendOne(prepared.right.read, statement.right)
    }

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
        let read = true
        for (const statement of statements) {
          const [sql, params] = statement.compile()
          const prepared = yield* prepareSql(sql)
          read &&= prepared.read
          encoded.push(yield* encodeStatement(prepared.json, params))
        }
        encoded.push(sentinel)
        const body = `[${encoded.join(",")}]`
        const results = yield* withFailover(!read, (node) => post(node, true, body))
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
        const prepared = prepareSql(statement.compile()[0])
        const send = (params: ReadonlyArray<unknown>) => {
          if (Either.isLeft(prepared)) return Effect.fail(prepared.left)
          const encoded = encodeStatement(prepared.right.json, params)
          return Either.isLeft(encoded)
            ? Effect.fail(encoded.left)
            : sendOne(prepared.right.read, encoded.right)
        }
        return {
          rows: (params) =>
            Effect.map(send(params), toObjects as (result: RqliteResult) => ReadonlyArray<any>),
          affected: (params) => Effect.map(send(params), (result) => result.rows_affected ?? 0),
        }
      },
      explain: (error) => ({
        reason: unreachable.has(error) ? "connect" : isOutcomeUnknown(error) ? "unknown-outcome" : "query",
        detail: error.message,
      }),
    }

    const client = yield* Client.make({
      acquirer: Effect.succeed(connection),
      compiler,
      transactionAcquirer: Effect.fail(fail("rqlite has no interactive transactions; use executeAtomic")),
      spanAttributes: [
        ...(options.spanAttributes ? Object.entries(options.spanAttributes) : []),
        ["db.system.name", "rqlite"],
        ["server.address", new URL(config.nodes[0]!).hostname],
      ],
      transformRows,
    })

    return Object.assign(client, {
      [TypeId]: TypeId,
      config,
      readLevel,
      executeAtomic,
      executor,
      [ExecutorId]: executor,
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
