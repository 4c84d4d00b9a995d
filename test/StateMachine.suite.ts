/**
 * The StateMachine conformance suite: the same expectations on every backend.
 *
 * `stateMachineSuite(backend)` registers the tests on the database behind `backend.connection`,
 * which must be private to the suite. Tests share it and run in order, each on ids of its own.
 * The races are real: fibers whose writes interleave at a chosen point, many fibers at once
 * (on PostgreSQL and rqlite each on its own connection or request), and two OS processes.
 */
import { assert, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import * as StateMachine from "../src/StateMachine.js"
import { Store } from "../src/Store.js"
import {
  Changed,
  Counter,
  CounterEvent,
  counterMachine,
  increment,
  reset,
  step,
} from "./support/counterMachine.js"
import { killAll, spawnScript, waitForLine, watch } from "./support/processes.js"

export interface StateMachineBackend {
  readonly type: BackendType
  readonly connection: string
}

const isMismatch = (error: { readonly _tag: string }) => error._tag === "VersionMismatchError"

/** The trail as `version/index in|out/m tag` words. */
const trail = (entries: ReadonlyArray<StateMachine.AuditEntry<CounterEvent, Changed>>) =>
  entries.map((entry) =>
    entry.direction === "inbound"
      ? `${entry.version}/${entry.index} in ${entry.event._tag}`
      : `${entry.version}/${entry.index} out/${entry.outboundIndex} ${entry.event.from}->${entry.event.to}`,
  )

export const stateMachineSuite = (backend: StateMachineBackend) =>
  layer(layerFor(backend.type, Redacted.make(backend.connection)), { timeout: Duration.minutes(2) })(
    `StateMachine on ${backend.type}`,
    (it) => {
      it.effect("load of an id never processed: the initial state at version 0, nothing written", () =>
        Effect.gen(function* () {
          const store = yield* Store
          const machine = yield* counterMachine
          assert.strictEqual(machine.name, "Counter")
          const seq = yield* store.streamSeq()
          const loaded = yield* machine.load("new/1")
          assert.deepStrictEqual(loaded, { id: "new/1", state: new Counter({ count: 0 }), version: 0 })
          assert.strictEqual(yield* store.streamSeq(), seq)
          assert.deepStrictEqual(yield* machine.history("new/1"), [])
        }),
      )

      it.effect("process applies the events in order and writes state and every event in one mutateAll", () =>
        Effect.gen(function* () {
          const store = yield* Store
          const machine = yield* counterMachine
          const seq = yield* store.streamSeq()
          const processed = yield* machine.process("c/1", [increment(2), increment(3), reset, increment(5)])
          assert.deepStrictEqual(processed, {
            id: "c/1",
            state: new Counter({ count: 5 }),
            version: 1,
            outbound: [
              Changed.make({ from: 0, to: 2 }),
              Changed.make({ from: 2, to: 5 }),
              Changed.make({ from: 0, to: 5 }),
            ],
          })
          // one transaction: consecutive seqs, the state first, then each event after its cause
          const written = yield* store.stream("all", seq + 1)
          assert.deepStrictEqual(
            written.map((r) => [r.seq, r.action, r.record.key, r.record.type, r.record.version]),
            [
              [seq + 1, "create", "c/1/_state", "Counter", 1],
              [seq + 2, "create", "c/1/events/0000000000000001/0000000000/in", "Counter.inbound", 1],
              [
                seq + 3,
                "create",
                "c/1/events/0000000000000001/0000000000/out/0000000000",
                "Counter.outbound",
                1,
              ],
              [seq + 4, "create", "c/1/events/0000000000000001/0000000001/in", "Counter.inbound", 1],
              [
                seq + 5,
                "create",
                "c/1/events/0000000000000001/0000000001/out/0000000000",
                "Counter.outbound",
                1,
              ],
              [seq + 6, "create", "c/1/events/0000000000000001/0000000002/in", "Counter.inbound", 1],
              [seq + 7, "create", "c/1/events/0000000000000001/0000000003/in", "Counter.inbound", 1],
              [
                seq + 8,
                "create",
                "c/1/events/0000000000000001/0000000003/out/0000000000",
                "Counter.outbound",
                1,
              ],
            ],
          )
          // stored encoded: plain JSON
          assert.deepStrictEqual(
            written.map((r) => r.record.value),
            [
              { count: 5 },
              { _tag: "Increment", by: 2 },
              { _tag: "Changed", from: 0, to: 2 },
              { _tag: "Increment", by: 3 },
              { _tag: "Changed", from: 2, to: 5 },
              { _tag: "Reset" },
              { _tag: "Increment", by: 5 },
              { _tag: "Changed", from: 0, to: 5 },
            ],
          )
          assert.deepStrictEqual(yield* machine.load("c/1"), {
            id: "c/1",
            state: new Counter({ count: 5 }),
            version: 1,
          })

          const next = yield* machine.process("c/1", [increment(1)])
          assert.deepStrictEqual([next.state.count, next.version], [6, 2])
          assert.deepStrictEqual(trail(yield* machine.history("c/1")), [
            "1/0 in Increment",
            "1/0 out/0 0->2",
            "1/1 in Increment",
            "1/1 out/0 2->5",
            "1/2 in Reset",
            "1/3 in Increment",
            "1/3 out/0 0->5",
            "2/0 in Increment",
            "2/0 out/0 5->6",
          ])
          const [first] = yield* machine.history("c/1")
          assert.strictEqual(first?.key, "c/1/events/0000000000000001/0000000000/in")
          assert.instanceOf(first?.created, Date)
        }),
      )

      it.effect("the trail lists in order past ten versions and ten events of one call", () =>
        Effect.gen(function* () {
          const machine = yield* counterMachine
          for (let i = 0; i < 10; i++) yield* machine.process("order/1", [increment(1)])
          const last = yield* machine.process(
            "order/1",
            Array.from({ length: 12 }, () => increment(1)),
          )
          assert.deepStrictEqual([last.state.count, last.version], [22, 11])
          const history = yield* machine.history("order/1")
          assert.strictEqual(history.length, 10 * 2 + 12 * 2)
          const order = history.map((e) => [
            e.version,
            e.index,
            e.direction === "inbound" ? -1 : e.outboundIndex,
          ])
          const sorted = [...order].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]! || a[2]! - b[2]!)
          assert.deepStrictEqual(order, sorted)
          // and the counts it sent out follow one another
          assert.deepStrictEqual(
            history.flatMap((e) => (e.direction === "outbound" ? [e.event.to] : [])),
            Array.from({ length: 22 }, (_, i) => i + 1),
          )
        }),
      )

      it.effect(
        "a writer that got there first: VersionMismatchError, nothing written; a retry applies to the newer state",
        () =>
          Effect.gen(function* () {
            const store = yield* Store
            const gate = yield* Deferred.make<void>()
            const loaded = yield* Deferred.make<void>()
            // `by: 7` waits at the gate after the state was read
            const machine = yield* StateMachine.make({
              initial: new Counter({ count: 0 }),
              schema: { state: Counter, event: CounterEvent, outbound: Changed },
              process: (state, event) =>
                event._tag === "Increment" && event.by === 7
                  ? Effect.zipRight(
                      Effect.zipRight(Deferred.succeed(loaded, undefined), Deferred.await(gate)),
                      step(state, event),
                    )
                  : step(state, event),
            })
            const slow = yield* Effect.fork(machine.process("race/1", [increment(7)]))
            yield* Deferred.await(loaded)
            const fast = yield* machine.process("race/1", [increment(1)])
            assert.strictEqual(fast.version, 1)
            const seq = yield* store.streamSeq()
            yield* Deferred.succeed(gate, undefined)
            const error = yield* Effect.flip(Fiber.join(slow))
            assert.strictEqual(error._tag, "VersionMismatchError")
            assert.deepInclude(error, { key: "race/1/_state", expected: 0 })
            assert.strictEqual(yield* store.streamSeq(), seq) // the loser wrote nothing
            assert.deepStrictEqual(trail(yield* machine.history("race/1")), [
              "1/0 in Increment",
              "1/0 out/0 0->1",
            ])

            // the same call again reads version 1 and applies its event after the winner's
            const retried = yield* machine.process("race/1", [increment(7)])
            assert.deepStrictEqual([retried.state.count, retried.version], [8, 2])
            assert.deepStrictEqual(retried.outbound, [Changed.make({ from: 1, to: 8 })])
          }),
      )

      it.effect(
        "many fibers at once, each retrying on a conflict: every event applied once, in one version each",
        () =>
          Effect.gen(function* () {
            const machine = yield* counterMachine
            const fibers = 8
            const perFiber = 5
            let mismatches = 0
            yield* Effect.forEach(
              Array.from({ length: fibers }, (_, i) => i),
              () =>
                Effect.repeatN(
                  machine.process("many/1", [increment(1)]).pipe(
                    Effect.tapError((error) =>
                      Effect.sync(() => {
                        if (isMismatch(error)) mismatches++
                      }),
                    ),
                    Effect.retry({ while: isMismatch }),
                  ),
                  perFiber - 1,
                ),
              { concurrency: "unbounded", discard: true },
            )
            const loaded = yield* machine.load("many/1")
            assert.deepStrictEqual(
              [loaded.state.count, loaded.version],
              [fibers * perFiber, fibers * perFiber],
            )
            const history = yield* machine.history("many/1")
            assert.deepStrictEqual(
              history.map((e) => e.version),
              Array.from({ length: fibers * perFiber }, (_, i) => [i + 1, i + 1]).flat(),
            )
            assert.deepStrictEqual(
              history.flatMap((e) => (e.direction === "outbound" ? [`${e.event.from}->${e.event.to}`] : [])),
              Array.from({ length: fibers * perFiber }, (_, i) => `${i}->${i + 1}`),
            )
            yield* Effect.logDebug(`${mismatches} version mismatches retried`)
          }),
      )

      it.effect(
        "two processes racing on one id: every increment applied once, no version lost or doubled",
        () =>
          Effect.gen(function* () {
            const machine = yield* counterMachine
            const increments = 25
            const summaries = yield* Effect.promise(async () => {
              const children = [0, 1].map(() =>
                spawnScript("stateMachineRacer.ts", [
                  backend.type,
                  backend.connection,
                  "procs/1",
                  String(increments),
                ]),
              )
              try {
                const watched = children.map((child) => watch(child))
                await Promise.all(children.map((child) => waitForLine(child, "ready")))
                for (const child of children) child.stdin?.end("go\n")
                const finished = await Promise.all(watched.map((w) => w.finished))
                return finished.map((result) => {
                  if (result.code !== 0) throw new Error(`a racer failed (${result.code}): ${result.stderr}`)
                  return JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { mismatches: number }
                })
              } finally {
                killAll(children)
              }
            })
            assert.strictEqual(summaries.length, 2)
            const loaded = yield* machine.load("procs/1")
            assert.deepStrictEqual([loaded.state.count, loaded.version], [2 * increments, 2 * increments])
            const history = yield* machine.history("procs/1")
            assert.deepStrictEqual(
              history.filter((e) => e.direction === "inbound").map((e) => e.version),
              Array.from({ length: 2 * increments }, (_, i) => i + 1),
            )
            console.log(
              `${backend.type}: 2 processes x ${increments} increments -> version ${loaded.version} ` +
                `(${summaries.reduce((n, s) => n + s.mismatches, 0)} version mismatches retried)`,
            )
          }),
      )

      it.effect("a failing step fails the call with its own error, and nothing is written", () =>
        Effect.gen(function* () {
          const store = yield* Store
          const machine = yield* counterMachine
          yield* machine.process("fail/1", [increment(1)])
          const seq = yield* store.streamSeq()
          const error = yield* Effect.flip(machine.process("fail/1", [increment(2), increment(101)]))
          assert.strictEqual(error._tag, "TooMuch")
          assert.strictEqual(error.message, "cannot increment by 101: at most 100")
          assert.strictEqual(yield* store.streamSeq(), seq)
          assert.deepStrictEqual((yield* machine.load("fail/1")).state.count, 1)
        }),
      )

      it.effect(
        "states and events that do not decode or encode are ParseErrors naming the key; nothing is written",
        () =>
          Effect.gen(function* () {
            const store = yield* Store
            const machine = yield* counterMachine
            yield* store.put("bad/1/_state", -1, { count: "many" })
            const seq = yield* store.streamSeq()
            for (const attempt of [machine.load("bad/1"), machine.process("bad/1", [increment(1)])]) {
              const error = yield* Effect.flip(attempt)
              assert.strictEqual(error._tag, "ParseError")
              assert.include(error.message, "bad/1/_state")
            }
            // the event's Schema refuses it (Increment.by is positive)
            const event = yield* Effect.flip(
              machine.process("bad/2", [increment(1), { _tag: "Increment", by: -1 }]),
            )
            assert.strictEqual(event._tag, "ParseError")
            assert.include(event.message, "bad/2/events/0000000000000001/0000000001/in")
            // an outbound event its Schema refuses
            const loud = yield* StateMachine.make({
              id: "Loud",
              initial: new Counter({ count: 0 }),
              schema: { state: Counter, event: CounterEvent, outbound: Changed },
              process: (state) =>
                Effect.succeed({
                  state,
                  outbound: [{ _tag: "Changed", from: 0, to: "x" } as unknown as Changed],
                }),
            })
            const outbound = yield* Effect.flip(loud.process("bad/3", [reset]))
            assert.strictEqual(outbound._tag, "ParseError")
            assert.include(outbound.message, "bad/3/events/0000000000000001/0000000000/out/0000000000")
            // a stored event that does not decode fails the history
            yield* store.put("bad/4/events/0000000000000001/0000000000/in", -1, { _tag: "Jump" })
            const history = yield* Effect.flip(machine.history("bad/4"))
            assert.strictEqual(history._tag, "ParseError")
            assert.include(history.message, "bad/4/events/0000000000000001/0000000000/in")
            assert.strictEqual(yield* store.streamSeq(), seq + 1) // only that planted record
          }),
      )

      it.effect(
        "without an outbound Schema outbound events are any JSON; the name and record types follow `id`",
        () =>
          Effect.gen(function* () {
            const store = yield* Store
            const plain = yield* StateMachine.make({
              id: "Doorbell",
              initial: { rings: 0 },
              schema: { state: Schema.Struct({ rings: Schema.Number }), event: Schema.Literal("ring") },
              process: (state) =>
                Effect.succeed({
                  state: { rings: state.rings + 1 },
                  outbound: [{ sound: "ding", n: state.rings + 1 }],
                }),
            })
            assert.strictEqual(plain.name, "Doorbell")
            const processed = yield* plain.process("door/1", ["ring", "ring"])
            assert.deepStrictEqual(processed.state, { rings: 2 })
            assert.deepStrictEqual(processed.outbound, [
              { sound: "ding", n: 1 },
              { sound: "ding", n: 2 },
            ])
            assert.deepStrictEqual(
              (yield* store.getPrefix("door/1/")).map((r) => [r.key, r.type]),
              [
                ["door/1/_state", "Doorbell"],
                ["door/1/events/0000000000000001/0000000000/in", "Doorbell.inbound"],
                ["door/1/events/0000000000000001/0000000000/out/0000000000", "Doorbell.outbound"],
                ["door/1/events/0000000000000001/0000000001/in", "Doorbell.inbound"],
                ["door/1/events/0000000000000001/0000000001/out/0000000000", "Doorbell.outbound"],
              ],
            )
            const history = yield* plain.history("door/1")
            assert.deepStrictEqual(
              history.map((e) => e.event),
              ["ring", { sound: "ding", n: 1 }, "ring", { sound: "ding", n: 2 }],
            )
            // what is not JSON is refused by the store, and nothing is written
            const seq = yield* store.streamSeq()
            const odd = yield* StateMachine.make({
              id: "Odd",
              initial: 0,
              schema: { state: Schema.Number, event: Schema.Number },
              process: (state) => Effect.succeed({ state, outbound: [() => 1] }),
            })
            const refused = yield* Effect.flip(odd.process("odd/1", [1]))
            assert.strictEqual(refused._tag, "InvalidArgumentError")
            assert.strictEqual(yield* store.streamSeq(), seq)
            // a state Schema without an identifier and no id: the default name
            assert.strictEqual(odd.name, "Odd")
            const unnamed = yield* StateMachine.make({
              initial: 0,
              schema: { state: Schema.Number, event: Schema.Number },
              process: (state, event) => Effect.succeed({ state: state + event, outbound: [] }),
            })
            assert.strictEqual(unnamed.name, "StateMachine")
          }),
      )

      it.effect("no events: nothing is written, the stored state is returned", () =>
        Effect.gen(function* () {
          const store = yield* Store
          const machine = yield* counterMachine
          yield* machine.process("empty/1", [increment(4)])
          const seq = yield* store.streamSeq()
          assert.deepStrictEqual(yield* machine.process("empty/1", []), {
            id: "empty/1",
            state: new Counter({ count: 4 }),
            version: 1,
            outbound: [],
          })
          assert.deepStrictEqual(yield* machine.process("empty/2", []), {
            id: "empty/2",
            state: new Counter({ count: 0 }),
            version: 0,
            outbound: [],
          })
          assert.strictEqual(yield* store.streamSeq(), seq)
        }),
      )

      it.effect("ids nested under another id's keys are machines of their own, outside its trail", () =>
        Effect.gen(function* () {
          const machine = yield* counterMachine
          yield* machine.process("nest", [increment(1)])
          yield* machine.process("nest/events", [increment(2)])
          yield* machine.process("nest/events/0000000000000001", [increment(3)])
          yield* machine.process("nest/events/0000000000000001/0000000000", [increment(4)])
          assert.deepStrictEqual(trail(yield* machine.history("nest")), [
            "1/0 in Increment",
            "1/0 out/0 0->1",
          ])
          assert.deepStrictEqual(trail(yield* machine.history("nest/events")), [
            "1/0 in Increment",
            "1/0 out/0 0->2",
          ])
          for (const [id, count] of [
            ["nest", 1],
            ["nest/events", 2],
            ["nest/events/0000000000000001", 3],
            ["nest/events/0000000000000001/0000000000", 4],
          ] as const) {
            const loaded = yield* machine.load(id)
            assert.deepStrictEqual([loaded.state.count, loaded.version], [count, 1])
          }
        }),
      )

      it.effect("bad ids are refused before anything is read or written", () =>
        Effect.gen(function* () {
          const store = yield* Store
          const machine = yield* counterMachine
          const seq = yield* store.streamSeq()
          const attempts: Array<
            [Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>, RegExp]
          > = [
            [machine.load(""), /state machine id must be a non-empty string/],
            [machine.process("a\u0000b", [increment(1)]), /must not contain NUL/],
            [machine.history("x".repeat(1000)), /state machine id is too long: .* at most 1024/],
          ]
          for (const [attempt, message] of attempts) {
            const error = yield* Effect.flip(attempt)
            assert.strictEqual(error._tag, "InvalidArgumentError")
            assert.match(error.message, message)
          }
          const named = yield* Effect.flip(
            StateMachine.make({
              id: "",
              initial: 0,
              schema: { state: Schema.Number, event: Schema.Number },
              process: (state) => Effect.succeed({ state, outbound: [] }),
            }),
          )
          assert.strictEqual(named._tag, "InvalidArgumentError")
          assert.strictEqual(yield* store.streamSeq(), seq)
          assert.isTrue(Option.isNone(yield* store.get("/_state")))
        }),
      )
    },
  )
