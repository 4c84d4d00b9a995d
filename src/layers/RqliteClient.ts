/**
 * An `@effect/sql` client for rqlite, over its HTTP API.
 *
 * rqlite speaks SQLite, so the client compiles with the SQLite dialect and the store's SQLite
 * code path serves it unchanged. Every statement is one POST to `/db/request` (the endpoint
 * that takes reads, writes and `RETURNING` alike). rqlite has no interactive transactions:
 * atomic batches go through `executeAtomic`, which sends them as ONE request with
 * `transaction`. The client is also the store's `SqlExecutor`: statements go straight to the
 * HTTP connection, without the per-statement scope and span of `SqlClient`.
 *
 * This file assembles the parts under `internal/rqlite/`: `protocol.ts` (encoding, the SQL
 * that must not reach rqlited, results, the atomic-batch protocol, the read level per server
 * version), `transport.ts` (one HTTP exchange, every failure sorted into a `NodeFailure` by
 * `nodeFailure.ts`) and `failover.ts` (which node serves a request).
 *
 * Behaviour of the rqlite 8.26 server this was checked against:
 * - inside a `transaction` request, a failing statement that returns rows or fails to
 *   prepare does NOT roll the batch back; `executeAtomic` notices and says so, instead of
 *   failing with a (false) `AtomicStatementError`.
 * - a statement with an empty part (`;;`, a comment after the last `;`) makes rqlited
 *   allocate memory until it is killed; the client refuses them.
 * - `level=linearizable` is only known from rqlite 8.32 on (older servers read it as `weak`),
 *   and 8.32.0 to 9.1.0 run read-only requests on `/db/request` at it as plain local reads,
 *   which may be stale (rqlite issue 2347, fixed in 9.1.1). The client asks the server for its
 *   version and sends `linearizable` only to 9.1.1 or later; otherwise `strong`, which is
 *   linearizable too, through the Raft log.
 *
 * A cluster is a list of nodes (`http://h1:4001,h2:4001,h3:4001`). Requests go to the node that
 * answered last. When a node cannot serve a request (it refuses the connection, times out, or
 * has no leader), the client moves on to the next node, backing off (a `Schedule` on the live
 * clock) for up to `failoverTimeout`, then fails naming every node and why. Reads are sent
 * again freely; a write only when it provably was not applied. A write sent without an answer
 * fails with a `WriteOutcomeUnknown` cause (`isOutcomeUnknown`): it may or may not have been
 * applied, and only the caller can find out.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ConnectionString from "../internal/connection.js"
import {
  type AtomicRunner,
  type Service as Executor,
  ExecutorId,
  type Failure,
  SqlExecutor,
  type WithExecutor,
} from "../internal/executor.js"
import { Failover, isOutcomeUnknown, NoNodeServed, type RequestFailure } from "../internal/rqlite/failover.js"
import { NodeFailure } from "../internal/rqlite/nodeFailure.js"
import * as Protocol from "../internal/rqlite/protocol.js"
import * as Transport from "../internal/rqlite/transport.js"

export { isOutcomeUnknown, WriteOutcomeUnknown } from "../internal/rqlite/failover.js"
export type { RqliteResult } from "../internal/rqlite/protocol.js"

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
  /** The level sent with reads: `config.level`, or `strong` for `linearizable` on servers before 9.1.1. */
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

/** The real clock: failover waits for real servers, also under a TestClock. */
const liveClock = Clock.make()

const fail = (message: string) => new SqlError({ message })

/** The nodes, credentials and level of a connection string (see `internal/connection.ts`). */
export const parseUrl = (
  input: string | Redacted.Redacted<string>,
): Either.Either<ConnectionString.RqliteTarget, SqlError> =>
  Either.mapLeft(ConnectionString.parseRqlite(input), fail)

/** The target of a configuration: its `url`, or its `urls` (one node each). */
export const parseConfig = (
  config: Pick<RqliteClientConfig, "url" | "urls">,
): Either.Either<ConnectionString.RqliteTarget, SqlError> =>
  Either.mapLeft(ConnectionString.parseRqliteConfig(config), fail)

/** A result's rows as objects, through the client's `transformRows` if it has one. */
const rowsWith =
  (transform: (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined) =>
  (result: Protocol.RqliteResult) =>
    transform ? transform(Protocol.toObjects(result)) : Protocol.toObjects(result)

/** A request that failed after failover, as the SqlError callers see; the cause says which kind. */
const toSqlError = (failure: RequestFailure) => new SqlError({ message: failure.message, cause: failure })

/** Whether the failure means the database could not be reached, for `explain`. */
const reasonOf = (error: SqlError): Failure["reason"] => {
  const { cause } = error
  if (cause instanceof NoNodeServed) return "connect"
  if (cause instanceof NodeFailure) return cause.kind === "failed" ? "query" : "connect"
  return isOutcomeUnknown(error) ? "unknown-outcome" : "query"
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
    const transport = yield* Transport.make({
      timeout: Duration.decode(options.timeout ?? defaultTimeout),
      username: config.username,
      password: config.password,
    })
    const failover = new Failover({
      nodes: config.nodes.length,
      timeout: Duration.decode(options.failoverTimeout ?? defaultFailoverTimeout),
      clock: liveClock,
    })
    /** Runs a request on the nodes through failover. */
    const onNodes = <A>(
      nodes: ReadonlyArray<Transport.Node>,
      write: boolean,
      attempt: (node: Transport.Node) => Effect.Effect<A, NodeFailure>,
    ): Effect.Effect<A, SqlError> =>
      Effect.mapError(
        failover.run(write, (index) => attempt(nodes[index]!)),
        toSqlError,
      )

    // Asking for the version also checks early that a node is reachable and takes the credentials.
    const readLevel: ReadConsistency =
      config.level === "linearizable"
        ? yield* onNodes(Transport.nodesAt(config.nodes, parsed.params, config.level), false, (node) =>
            Effect.map(transport.version(node), Protocol.linearizableLevelFor),
          )
        : config.level
    const nodes = Transport.nodesAt(config.nodes, parsed.params, readLevel)

    /** The SQL text as JSON, or why rqlite must not get it; remembered per text. */
    const prepareSql = Protocol.memoizedPrepareSql()

    /** Sends one prepared statement outside any transaction and returns its result. */
    const send = (prepared: Either.Either<Protocol.PreparedSql, SqlError>, params: ReadonlyArray<unknown>) =>
      Effect.flatMap(Protocol.singleRequest(prepared, params), ({ body, read }) =>
        Effect.flatMap(
          onNodes(nodes, !read, (node) => transport.post(node, false, body)),
          Protocol.singleResult,
        ),
      )
    const run = (sql: string, params: ReadonlyArray<unknown>) => send(prepareSql(sql), params)

    const compiler = Statement.makeCompilerSqlite(options.transformQueryNames)
    const transformRows = options.transformResultNames
      ? Statement.defaultTransforms(options.transformResultNames).array
      : undefined
    const objects = Protocol.toObjects as (result: Protocol.RqliteResult) => ReadonlyArray<any>
    const affected = (result: Protocol.RqliteResult) => result.rows_affected ?? 0

    const connection: Connection = {
      execute: (sql, params, transform) => Effect.map(run(sql, params), rowsWith(transform)),
      executeRaw: (sql, params) => run(sql, params),
      executeValues: (sql, params) => Effect.map(run(sql, params), (result) => result.values ?? []),
      executeUnprepared: (sql, params, transform) => Effect.map(run(sql, params ?? []), rowsWith(transform)),
      // rqlite answers with the whole result at once
      executeStream: (sql, params, transform) =>
        Stream.fromIterableEffect(Effect.map(run(sql, params), rowsWith(transform))),
    }

    const executeAtomic: AtomicRunner = (statements) =>
      Effect.gen(function* () {
        if (statements.length === 0) return []
        const { body, read } = yield* Protocol.atomicRequest(
          statements.map((statement) => statement.compile()),
          prepareSql,
        )
        const results = yield* onNodes(nodes, !read, (node) => transport.post(node, true, body))
        return yield* Protocol.atomicOutcome(results, statements.length, rowsWith(transformRows))
      })

    const executor: Executor = {
      rows: (statement) => Effect.suspend(() => Effect.map(run(...statement.compile()), objects)),
      affected: (statement) => Effect.suspend(() => Effect.map(run(...statement.compile()), affected)),
      atomic: executeAtomic,
      prepare: (statement) => {
        const prepared = prepareSql(statement.compile()[0])
        return {
          rows: (params) => Effect.map(send(prepared, params), objects),
          affected: (params) => Effect.map(send(prepared, params), affected),
        }
      },
      explain: (error) => ({ reason: reasonOf(error), detail: error.message }),
    }

    const client = yield* Client.make({
      acquirer: Effect.succeed(connection),
      compiler,
      transactionAcquirer: Effect.fail(fail(Protocol.noTransactions)),
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
