/**
 * Which node of a cluster serves a request. Requests go to the node that answered last
 * (followers forward writes and strong reads to the leader). When a node cannot serve a
 * request (see `NodeFailure`), the request moves on to the next node in turn, backing off on
 * a `Schedule` up to a deadline, then fails naming every node and what it last said.
 *
 * Reads are sent again freely. A write is sent again only when it provably was not applied
 * (the node was unreachable, or answered that it has no leader); when it was sent without an
 * answer, it fails with `WriteOutcomeUnknown` and is never sent again.
 *
 * The state of one request (the nodes it tried, the ones that refused the connection) lives in
 * one `Attempts` object; the only state shared between requests is the preferred node.
 */
import type * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { WriteOutcomeUnknown } from "../executor.js"
import { mayTryElsewhere, type NodeFailure, wasSent } from "./nodeFailure.js"

// The cause of a write whose outcome is unknown is the executor's, the same on every backend.
export { isOutcomeUnknown, WriteOutcomeUnknown } from "../executor.js"

/** No node could serve the request: none was reachable, or none could serve it in time. */
export class NoNodeServed extends Data.TaggedError("NoNodeServed")<{
  /** What each node tried last said, in the order of the configuration. */
  readonly failures: ReadonlyArray<NodeFailure>
  /** Every node refused the connection. */
  readonly unreachable: boolean
  /** How long the request tried. */
  readonly within: Duration.Duration
}> {
  override get message() {
    const each = this.failures.map((failure) => `${failure.origin} (${failure.reason})`).join(", ")
    return this.unreachable
      ? `cannot connect to any rqlite node: ${each}`
      : `no rqlite node could serve the request within ${Duration.format(this.within)}: ${each}`
  }
}

/** Why a request failed after failover: a final failure of a node, an unknown outcome, or no node. */
export type RequestFailure = NodeFailure | WriteOutcomeUnknown | NoNodeServed

/**
 * The pause before trying the next node: short at first (another node is usually fine), then
 * growing to a poll of the cluster every 250 ms while it elects a leader; jittered so that
 * many waiting requests do not arrive together.
 */
export const backoff = Schedule.exponential("25 millis", 2).pipe(
  Schedule.union(Schedule.spaced("250 millis")),
  Schedule.jittered,
)

/** One request's way through the nodes after its first node failed. */
export class Attempts {
  /** What each node tried last said. */
  private readonly tried = new Map<number, NodeFailure>()
  /** Nodes that refused the connection since the last one that answered. */
  private readonly unreachable = new Set<number>()
  private node: number

  constructor(
    readonly write: boolean,
    readonly nodes: number,
    first: NodeFailure,
    readonly within: Duration.Duration,
  ) {
    this.node = first.node
    this.failed(first)
  }

  /** A node could not serve the request. */
  failed(failure: NodeFailure): void {
    this.tried.set(failure.node, failure)
    if (failure.kind === "unreachable") this.unreachable.add(failure.node)
    else this.unreachable.clear()
  }

  /**
   * Whether to stop after `failure`: no other node would do better, a write may have been
   * applied, or no node answers at all.
   */
  isFinal(failure: NodeFailure): boolean {
    return (
      !mayTryElsewhere(failure) || (this.write && wasSent(failure)) || this.unreachable.size === this.nodes
    )
  }

  /** The node to try next, in turn. */
  advance(): number {
    this.node = (this.node + 1) % this.nodes
    return this.node
  }

  /** The request's failure, after `last` failed it. */
  verdict(last: NodeFailure): RequestFailure {
    if (!mayTryElsewhere(last)) return last
    if (this.write && wasSent(last))
      return new WriteOutcomeUnknown({ node: last.origin, reason: last.reason })
    const failures = [...this.tried.values()].sort((a, b) => a.node - b.node)
    const unreachable = this.unreachable.size === this.nodes
    // a single node that cannot be reached: its own words
    if (unreachable && failures.length === 1) return failures[0]!
    return new NoNodeServed({ failures, unreachable, within: this.within })
  }
}

export interface FailoverOptions {
  /** How many nodes there are (requests name them by index). */
  readonly nodes: number
  /** How long a request keeps trying other nodes after a node could not serve it. */
  readonly timeout: Duration.Duration
  /** The clock of the pauses and the deadline (default: the fiber's own). */
  readonly clock?: Clock.Clock | undefined
  /** The pauses between nodes (default `backoff`). */
  readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined
}

/** The failover of one client: the preferred node, and the way of each request through the nodes. */
export class Failover {
  /** The node that answered last: requests go there first. */
  private preferredNode = 0
  private readonly schedule: Schedule.Schedule<unknown, unknown>

  constructor(readonly options: FailoverOptions) {
    this.schedule = (options.schedule ?? backoff).pipe(Schedule.upTo(options.timeout))
  }

  get preferred(): number {
    return this.preferredNode
  }

  /**
   * Runs `attempt` on the preferred node, and on the others in turn when it cannot serve the
   * request; `write` says whether the request may change the database.
   */
  run<A>(
    write: boolean,
    attempt: (node: number) => Effect.Effect<A, NodeFailure>,
  ): Effect.Effect<A, RequestFailure> {
    return Effect.suspend(() =>
      Effect.catchAll(attempt(this.preferredNode), (first) => this.failover(write, attempt, first)),
    )
  }

  private failover<A>(
    write: boolean,
    attempt: (node: number) => Effect.Effect<A, NodeFailure>,
    first: NodeFailure,
  ): Effect.Effect<A, RequestFailure> {
    const attempts = new Attempts(write, this.options.nodes, first, this.options.timeout)
    if (attempts.isFinal(first)) return Effect.fail(attempts.verdict(first))
    const next = Effect.suspend(() => {
      const node = attempts.advance()
      return Effect.tap(attempt(node), () => {
        this.preferredNode = node
      })
    }).pipe(Effect.tapError((failure) => Effect.sync(() => attempts.failed(failure))))
    const retried = next.pipe(
      Effect.retry({ schedule: this.schedule, while: (failure) => !attempts.isFinal(failure) }),
      Effect.catchAll((last) => Effect.fail(attempts.verdict(last))),
    )
    return this.options.clock === undefined ? retried : Effect.withClock(retried, this.options.clock)
  }
}
