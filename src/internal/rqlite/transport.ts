/**
 * One HTTP exchange with one rqlite node, with undici's `request` over keep-alive connections
 * (undici's fetch, and `@effect/platform`'s HttpClient over it, cost half the throughput under
 * load). rqlite's redirects (a follower sending a write to the leader) are followed. Every
 * failure comes out as a `NodeFailure`, sorted by `nodeFailure.ts`; which node to ask, and
 * whether to ask another, is failover's business.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Undici from "undici"
import type { ReadConsistency } from "../connection.js"
import { fromAnswer, fromStatusAnswer, fromTransportError, type NodeFailure } from "./nodeFailure.js"
import type { RqliteResult } from "./protocol.js"

/** A node's URLs, built once: URL building is a noticeable part of a request's cost. */
export interface Node {
  /** Its index in the configuration. */
  readonly index: number
  /** `http://host:port`: how errors name the node (the request carries the credentials). */
  readonly origin: string
  readonly status: string
  /** `/db/request` for one statement, and with `transaction` for an atomic batch. */
  readonly single: string
  readonly batch: string
}

/** The nodes (base URLs without credentials) with their URLs for reads at `level`. */
export const nodesAt = (
  bases: ReadonlyArray<string>,
  params: URLSearchParams,
  level: ReadConsistency,
): ReadonlyArray<Node> =>
  bases.map((node, index) => {
    const base = new URL(node)
    const basePath = base.pathname.replace(/\/+$/, "")
    const endpoint = (transaction: boolean) => {
      const url = new URL(`${basePath}/db/request`, base.origin)
      url.search = params.toString()
      url.searchParams.set("level", level)
      if (transaction) url.searchParams.set("transaction", "")
      return url.toString()
    }
    return {
      index,
      origin: base.origin,
      status: new URL(`${basePath}/status`, base.origin).toString(),
      single: endpoint(false),
      batch: endpoint(true),
    }
  })

export interface Transport {
  /** POSTs the statements (already JSON) and returns one result per statement. */
  readonly post: (
    node: Node,
    transaction: boolean,
    statements: string,
  ) => Effect.Effect<ReadonlyArray<RqliteResult>, NodeFailure>
  /** The server's `build.version` from `/status`; `undefined` when it does not say. */
  readonly version: (node: Node) => Effect.Effect<unknown, NodeFailure>
}

export interface TransportOptions {
  /** Per-request timeout, kept by the HTTP client. */
  readonly timeout: Duration.Duration
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
}

/** What an HTTP exchange returned. */
interface Answer {
  readonly status: number
  readonly body: string
  readonly location: string | undefined
}

const redirects = new Set([301, 302, 307, 308])
const maxRedirects = 3

/**
 * An undici dispatcher that gives every request `timeoutMs` to answer. Timeouts live in the
 * dispatcher (undici's own timers) rather than in `Effect.timeout`, which costs a fiber per
 * request; they also run on the real clock, which a TestClock does not drive.
 */
const makeDispatcher = (timeoutMs: number) =>
  new Undici.Agent({
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: timeoutMs },
  })

/** The transport of one client; its connections close with the scope. */
export const make = (options: TransportOptions): Effect.Effect<Transport, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => makeDispatcher(Math.max(1, Math.round(Duration.toMillis(options.timeout))))),
      (dispatcher) => Effect.promise(() => dispatcher.destroy()),
    ),
    (dispatcher): Transport => {
      const headers: Record<string, string> = {}
      if (options.username !== undefined || options.password !== undefined) {
        const password = options.password ? Redacted.value(options.password) : ""
        headers.authorization = `Basic ${Buffer.from(`${options.username ?? ""}:${password}`).toString("base64")}`
      }
      const postHeaders = { ...headers, "content-type": "application/json" }

      const exchange = (
        node: Node,
        method: "GET" | "POST",
        url: string,
        body: string | undefined,
        hops: number,
      ): Effect.Effect<Answer, NodeFailure> =>
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
            catch: (cause) => fromTransportError(node.index, node.origin, cause, options.timeout),
          }),
          (answer) =>
            redirects.has(answer.status) && answer.location !== undefined && hops < maxRedirects
              ? exchange(node, method, new URL(answer.location, url).toString(), body, hops + 1)
              : Effect.succeed(answer),
        )

      return {
        post: (node, transaction, statements) =>
          Effect.flatMap(
            exchange(node, "POST", transaction ? node.batch : node.single, statements, 0),
            (answer) => fromAnswer(node.index, node.origin, answer.status, answer.body),
          ),
        version: (node) =>
          Effect.flatMap(exchange(node, "GET", node.status, undefined, 0), (answer) =>
            fromStatusAnswer(node.index, node.origin, answer.status, answer.body),
          ),
      }
    },
  )
