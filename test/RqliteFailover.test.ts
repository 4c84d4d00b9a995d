/**
 * Failover between the nodes of an rqlite cluster, without a server: each node plays a script
 * of outcomes (plain functions: it answers, refuses the connection, has no leader, drops the
 * connection...), sorted into node failures by the same functions the transport uses. The
 * pauses between nodes run on the TestClock, so their lengths and the deadline are exact.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import {
  Failover,
  isOutcomeUnknown,
  NoNodeServed,
  type RequestFailure,
  WriteOutcomeUnknown,
} from "../src/internal/rqlite/failover.js"
import { fromFailedAnswer, fromTransportError, NodeFailure } from "../src/internal/rqlite/nodeFailure.js"

const origins = ["http://10.0.0.1:4001", "http://10.0.0.2:4001", "http://10.0.0.3:4001"]
const requestTimeout = Duration.millis(300)

/** What a node does with one request. */
type Outcome = (node: number) => Effect.Effect<string, NodeFailure>

const coded = (code: string, message: string) => Object.assign(new Error(message), { code })

const answers: Outcome = (node) => Effect.succeed(`answer of node ${node}`)
const refuses: Outcome = (node) =>
  Effect.fail(
    fromTransportError(node, origins[node]!, coded("ECONNREFUSED", "connect failed"), requestTimeout),
  )
const hasNoLeader: Outcome = (node) =>
  Effect.fail(fromFailedAnswer(node, origins[node]!, 503, "leader not found\n"))
const drops: Outcome = (node) =>
  Effect.fail(
    fromTransportError(node, origins[node]!, coded("ECONNRESET", "other side closed"), requestTimeout),
  )
const timesOut: Outcome = (node) =>
  Effect.fail(
    fromTransportError(node, origins[node]!, coded("UND_ERR_HEADERS_TIMEOUT", "timeout"), requestTimeout),
  )
const rejectsCredentials: Outcome = (node) => Effect.fail(fromFailedAnswer(node, origins[node]!, 401, ""))

/**
 * A cluster whose node `i` plays `scripts[i]` in order, repeating its last outcome; every
 * attempt is recorded with the node and the (test) time it was made at.
 */
const cluster = (...scripts: ReadonlyArray<ReadonlyArray<Outcome>>) => {
  const played = scripts.map(() => 0)
  const attempts: Array<{ readonly node: number; readonly at: number }> = []
  const attempt = (node: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => {
      attempts.push({ node, at })
      const script = scripts[node]!
      return script[Math.min(played[node]++, script.length - 1)]!(node)
    })
  return { attempt, attempts, nodes: () => attempts.map((each) => each.node) }
}

const failoverOf = (nodes: number, timeout: Duration.DurationInput = "10 seconds") =>
  new Failover({ nodes, timeout: Duration.decode(timeout) })

/** Runs a request to its end, moving the TestClock through every pause; the exit and when it ended. */
const settle = <A>(request: Effect.Effect<A, RequestFailure>) =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const fiber = yield* Effect.fork(
      Effect.flatMap(Effect.exit(request), (exit) =>
        Effect.map(Clock.currentTimeMillis, (ended) => ({ exit, took: ended - started })),
      ),
    )
    yield* TestClock.adjust("1 minute")
    return yield* Fiber.join(fiber)
  })

const failureOf = <A>(exit: Exit.Exit<A, RequestFailure>): RequestFailure =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : assert.fail("expected a failure")

const answerOf = <A>(exit: Exit.Exit<A, RequestFailure>): A =>
  Exit.isSuccess(exit) ? exit.value : assert.fail(`expected a success: ${String(exit.cause)}`)

describe("rqlite failover", () => {
  it.effect(
    "moves past a node that refuses and one without a leader, then prefers the node that answered",
    () =>
      Effect.gen(function* () {
        const nodes = cluster([refuses], [hasNoLeader, hasNoLeader, answers])
        const failover = failoverOf(2)
        const { exit } = yield* settle(failover.run(false, nodes.attempt))
        assert.strictEqual(answerOf(exit), "answer of node 1")
        assert.deepStrictEqual(nodes.nodes(), [0, 1, 0, 1, 0, 1])
        assert.strictEqual(failover.preferred, 1)
        // the next request goes to node 1 first, and nowhere else
        const next = yield* settle(failover.run(true, nodes.attempt))
        assert.strictEqual(answerOf(next.exit), "answer of node 1")
        assert.deepStrictEqual(nodes.nodes(), [0, 1, 0, 1, 0, 1, 1])
        assert.strictEqual(next.took, 0)
      }),
  )

  it.effect("tries the next node at once, then pauses from about 25 ms growing to about 250 ms", () =>
    Effect.gen(function* () {
      const nodes = cluster([...Array.from({ length: 8 }, () => hasNoLeader), answers])
      const { exit } = yield* settle(failoverOf(1).run(true, nodes.attempt))
      assert.strictEqual(answerOf(exit), "answer of node 0")
      const at = nodes.attempts.map((each) => each.at)
      assert.strictEqual(at.length, 9)
      const pauses = at.slice(1).map((time, i) => time - at[i]!)
      // jittered by 0.8 to 1.2: 25, 50, 100, 200, then 250 each
      const expected = [0, 25, 50, 100, 200, 250, 250, 250]
      pauses.forEach((pause, i) => {
        assert.isAtLeast(pause, expected[i]! * 0.8, `pause ${i}: ${pauses}`)
        assert.isAtMost(pause, expected[i]! * 1.2, `pause ${i}: ${pauses}`)
      })
    }),
  )

  it.effect("never sends again a write that was sent without an answer", () =>
    Effect.gen(function* () {
      const nodes = cluster([drops], [answers])
      const { exit } = yield* settle(failoverOf(2).run(true, nodes.attempt))
      const failure = failureOf(exit)
      assert.instanceOf(failure, WriteOutcomeUnknown)
      assert.isTrue(isOutcomeUnknown(failure))
      assert.strictEqual(
        failure.message,
        "the outcome of the write is unknown: http://10.0.0.1:4001 dropped the connection (ECONNRESET: other side closed). " +
          "It may or may not have been applied; read the data back before retrying it",
      )
      assert.deepStrictEqual(nodes.nodes(), [0])
      // a read that met the same is asked of the next node
      const read = yield* settle(failoverOf(2).run(false, nodes.attempt))
      assert.strictEqual(answerOf(read.exit), "answer of node 1")
      assert.deepStrictEqual(nodes.nodes(), [0, 0, 1])
    }),
  )

  it.effect(
    "sends a write on while it provably was not applied, and stops at the first node it may have reached",
    () =>
      Effect.gen(function* () {
        const nodes = cluster([hasNoLeader], [timesOut], [answers])
        const { exit } = yield* settle(failoverOf(3).run(true, nodes.attempt))
        const failure = failureOf(exit)
        assert.instanceOf(failure, WriteOutcomeUnknown)
        assert.strictEqual((failure as WriteOutcomeUnknown).node, "http://10.0.0.2:4001")
        assert.strictEqual((failure as WriteOutcomeUnknown).reason, "timed out after 300ms")
        assert.deepStrictEqual(nodes.nodes(), [0, 1])
      }),
  )

  it.effect("fails as soon as every node refused the connection, naming each", () =>
    Effect.gen(function* () {
      const nodes = cluster([refuses], [refuses], [refuses])
      const failover = failoverOf(3)
      const { exit, took } = yield* settle(failover.run(false, nodes.attempt))
      const failure = failureOf(exit)
      assert.instanceOf(failure, NoNodeServed)
      assert.strictEqual(
        failure.message,
        "cannot connect to any rqlite node: http://10.0.0.1:4001 (cannot connect (ECONNREFUSED)), " +
          "http://10.0.0.2:4001 (cannot connect (ECONNREFUSED)), http://10.0.0.3:4001 (cannot connect (ECONNREFUSED))",
      )
      // each node once: the second at once, the third after the first pause, then no more
      assert.deepStrictEqual(nodes.nodes(), [0, 1, 2])
      const [first, second, third] = nodes.attempts.map((each) => each.at)
      assert.deepStrictEqual([first, second], [0, 0])
      assert.isAtLeast(third!, 20)
      assert.isAtMost(third!, 30)
      assert.strictEqual(took, third)
      assert.strictEqual(failover.preferred, 0)
    }),
  )

  it.effect("a single node that cannot be reached fails in its own words", () =>
    Effect.gen(function* () {
      const nodes = cluster([refuses])
      const { exit, took } = yield* settle(failoverOf(1).run(true, nodes.attempt))
      const failure = failureOf(exit)
      assert.instanceOf(failure, NodeFailure)
      assert.strictEqual(failure.message, "cannot connect to http://10.0.0.1:4001 (ECONNREFUSED)")
      assert.deepStrictEqual(nodes.nodes(), [0])
      assert.strictEqual(took, 0)
    }),
  )

  it.effect("gives up at the deadline, naming each node with what it said last", () =>
    Effect.gen(function* () {
      // node 0 refuses, node 1 answers without a leader: someone answers, so it waits
      const nodes = cluster([refuses], [hasNoLeader])
      const failover = failoverOf(2, "400 millis")
      const { exit, took } = yield* settle(failover.run(false, nodes.attempt))
      const failure = failureOf(exit)
      assert.instanceOf(failure, NoNodeServed)
      assert.strictEqual(
        failure.message,
        "no rqlite node could serve the request within 400ms: http://10.0.0.1:4001 (cannot connect (ECONNREFUSED)), " +
          "http://10.0.0.2:4001 (answered HTTP 503: leader not found)",
      )
      // it stops at the first pause that ends past the deadline, at most one 250 ms pause late
      assert.isAtLeast(took, 400)
      assert.isBelow(took, 400 + 300)
      assert.isAbove(nodes.attempts.length, 4)
      assert.isAtMost(nodes.attempts.at(-1)!.at, took)
    }),
  )

  it.effect("stops at a failure another node would repeat", () =>
    Effect.gen(function* () {
      const nodes = cluster([hasNoLeader], [rejectsCredentials], [answers])
      const { exit } = yield* settle(failoverOf(3).run(false, nodes.attempt))
      const failure = failureOf(exit)
      assert.instanceOf(failure, NodeFailure)
      assert.strictEqual((failure as NodeFailure).kind, "unauthorized")
      assert.strictEqual(
        failure.message,
        "rqlite at http://10.0.0.2:4001 rejected the credentials (HTTP 401)",
      )
      assert.deepStrictEqual(nodes.nodes(), [0, 1])
      // on the first node too: no second node is asked
      const first = cluster([rejectsCredentials], [answers])
      failureOf((yield* settle(failoverOf(2).run(false, first.attempt))).exit)
      assert.deepStrictEqual(first.nodes(), [0])
    }),
  )

  it.effect("starts from the preferred node and goes round from there", () =>
    Effect.gen(function* () {
      const nodes = cluster([refuses, answers], [answers, refuses], [hasNoLeader])
      const failover = failoverOf(3)
      assert.strictEqual(
        answerOf((yield* settle(failover.run(false, nodes.attempt))).exit),
        "answer of node 1",
      )
      assert.strictEqual(failover.preferred, 1)
      // node 1 now refuses: the request goes on to node 2 (no leader), then round to node 0
      const { exit } = yield* settle(failover.run(false, nodes.attempt))
      assert.strictEqual(answerOf(exit), "answer of node 0")
      assert.deepStrictEqual(nodes.nodes(), [0, 1, 1, 2, 0])
      assert.strictEqual(failover.preferred, 0)
    }),
  )
})
