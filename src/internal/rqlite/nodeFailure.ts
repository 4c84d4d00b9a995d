/**
 * Why one node could not serve one request, sorted from what the exchange gave: a transport
 * error code, an HTTP status, or rqlite's error text. The kind says what failover may do:
 *
 * - `unreachable`: nothing answered at the node's address; the request was not sent.
 * - `unavailable`: the node answered that it cannot serve requests now (it has no leader, its
 *   store is not open), which rqlite says before the request touches the Raft log: nothing
 *   was applied.
 * - `interrupted`: the request was sent but no answer came back (the connection dropped, it
 *   timed out, the leader lost its leadership while committing): a write may have been
 *   applied.
 * - `unauthorized`: the node rejected the credentials; every node would.
 * - `failed`: the request itself failed (the statement, a permission, an HTTP status rqlite
 *   does not give for a passing trouble, a server that is not rqlite); another node would say
 *   the same.
 *
 * Sorting is pure: these functions take what the exchange returned and nothing else.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import { isRecord, parseJson, type RqliteResult } from "./protocol.js"

export type NodeFailureKind = "unreachable" | "unavailable" | "interrupted" | "unauthorized" | "failed"

export class NodeFailure extends Data.TaggedError("NodeFailure")<{
  /** The index of the node in the configuration. */
  readonly node: number
  /** `http(s)://host:port`: how messages name the node (never with credentials). */
  readonly origin: string
  readonly kind: NodeFailureKind
  /** What happened, without the node's name (`cannot connect (ECONNREFUSED)`). */
  readonly reason: string
  /** What happened, naming the node where that helps. */
  readonly message: string
  readonly cause?: unknown
}> {}

/** Whether another node may serve the request this node could not. */
export const mayTryElsewhere = (failure: NodeFailure): boolean =>
  failure.kind === "unreachable" || failure.kind === "unavailable" || failure.kind === "interrupted"

/** Whether the request reached rqlite without an answer: a write may have been applied. */
export const wasSent = (failure: NodeFailure): boolean => failure.kind === "interrupted"

// ---------------------------------------------------------------------------------------------
// Transport errors
// ---------------------------------------------------------------------------------------------

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

/** The error code of a transport error, also inside Node's AggregateError or a `cause`. */
export const errorCode = (cause: unknown): string | undefined => {
  if (!isRecord(cause)) return undefined
  if (typeof cause.code === "string") return cause.code
  // Node reports every address it tried in an AggregateError
  if (Array.isArray(cause.errors)) return errorCode(cause.errors[0])
  return errorCode(cause.cause)
}

/** A request to the node at `origin` failed in the transport (undici threw `cause`). */
export const fromTransportError = (
  node: number,
  origin: string,
  cause: unknown,
  timeout: Duration.Duration,
): NodeFailure => {
  const code = errorCode(cause)
  if (code !== undefined && connectErrorCodes.has(code)) {
    return new NodeFailure({
      node,
      origin,
      kind: "unreachable",
      reason: `cannot connect (${code})`,
      message: `cannot connect to ${origin} (${code})`,
      cause,
    })
  }
  if (code !== undefined && droppedErrorCodes.has(code)) {
    const reason = timeoutErrorCodes.has(code)
      ? `timed out after ${Duration.format(timeout)}`
      : `dropped the connection (${code}${cause instanceof Error && cause.message ? `: ${cause.message}` : ""})`
    return new NodeFailure({
      node,
      origin,
      kind: "interrupted",
      reason,
      message: `rqlite at ${origin} ${reason}`,
      cause,
    })
  }
  const reason = cause instanceof Error ? cause.message : String(cause)
  return new NodeFailure({
    node,
    origin,
    kind: "failed",
    reason,
    message: `rqlite request to ${origin} failed: ${reason}`,
    cause,
  })
}

// ---------------------------------------------------------------------------------------------
// rqlite's answers
// ---------------------------------------------------------------------------------------------

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

/** A failed answer: HTTP `status` with rqlite's error text `body`. */
export const fromFailedAnswer = (node: number, origin: string, status: number, body: string): NodeFailure => {
  const detail = body.trim().slice(0, 300)
  if (status === 401) {
    const reason = "rejected the credentials (HTTP 401)"
    return new NodeFailure({
      node,
      origin,
      kind: "unauthorized",
      reason,
      message: `rqlite at ${origin} ${reason}`,
    })
  }
  if (status === 403) {
    const reason = "permission denied for this user (HTTP 403)"
    return new NodeFailure({
      node,
      origin,
      kind: "failed",
      reason,
      message: `rqlite at ${origin}: ${reason}`,
    })
  }
  const reason =
    status === 200 ? `answered "${detail}"` : `answered HTTP ${status}${detail ? `: ${detail}` : ""}`
  const message = `rqlite at ${origin} ${reason}`
  // 503: rqlite has no leader, and says so before it touches the Raft log
  if (status === 503 || notAppliedAnswer.test(detail)) {
    return new NodeFailure({ node, origin, kind: "unavailable", reason, message })
  }
  if (status === 502 || status === 504 || interruptedAnswer.test(detail)) {
    return new NodeFailure({ node, origin, kind: "interrupted", reason, message })
  }
  // an error of the request itself, e.g. SQL that does not parse: in rqlite's own words
  return new NodeFailure({ node, origin, kind: "failed", reason, message: status === 200 ? detail : message })
}

/** A server on the port that is not rqlite (or a proxy's own page). */
const notRqlite = (node: number, origin: string, status: number): NodeFailure =>
  new NodeFailure({
    node,
    origin,
    kind: "failed",
    reason: `answered HTTP ${status} without rqlite's JSON`,
    message: `the server at ${origin} does not answer like rqlite (HTTP ${status} without rqlite's JSON); is it an rqlite node?`,
  })

/** rqlite's answer to `/db/request`: one result per statement, or why the node could not serve it. */
export const fromAnswer = (
  node: number,
  origin: string,
  status: number,
  body: string,
): Either.Either<ReadonlyArray<RqliteResult>, NodeFailure> => {
  if (status < 200 || status >= 300) return Either.left(fromFailedAnswer(node, origin, status, body))
  const json = parseJson(body)
  if (isRecord(json) && typeof json.error === "string") {
    return Either.left(fromFailedAnswer(node, origin, status, json.error))
  }
  if (isRecord(json) && Array.isArray(json.results) && json.results.every(isRecord)) {
    return Either.right(json.results as ReadonlyArray<RqliteResult>)
  }
  return Either.left(notRqlite(node, origin, status))
}

/**
 * rqlite's answer to `/status`: the server's `build.version` (`undefined` when it does not
 * say, e.g. a user without the "status" permission), or why the node could not serve it.
 */
export const fromStatusAnswer = (
  node: number,
  origin: string,
  status: number,
  body: string,
): Either.Either<unknown, NodeFailure> => {
  if (status === 401 || status === 503) return Either.left(fromFailedAnswer(node, origin, status, body))
  if (status !== 200) return Either.right(undefined)
  const json = parseJson(body)
  return Either.right(isRecord(json) && isRecord(json.build) ? json.build.version : undefined)
}
