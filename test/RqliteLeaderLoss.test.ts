/**
 * Leader loss under load: fibers write distinct keys (create only) and run version-checked
 * increments of one counter through a client that knows all three nodes, while the leader
 * is killed with SIGKILL (three times, a different leader each time). The client carries on
 * once a new leader is elected; at the end every acknowledged write is present, the counter
 * equals the number of acknowledged increments, and no write was applied twice.
 *
 * A write whose outcome is unknown (the leader died with it in flight) is resolved the way a
 * careful caller would: a create is sent again (a version-checked write cannot apply twice)
 * and a mismatch is checked against the value; an increment looks for its own id in the
 * counter's change stream before it tries again.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as KvRqlite from "../src/layers/Rqlite.js"
import { isOutcomeUnknown } from "../src/layers/RqliteClient.js"
import { Store, type StoreService } from "../src/Store.js"
import { type RqliteCluster, startRqliteCluster } from "./support/rqlite.js"

const writers = 4
const incrementers = 8
const kills = 3

interface Counter {
  readonly n: number
  /** The increment that wrote this value: `fiber/attempt`. */
  readonly by: string
}

const isMismatch = (error: { readonly _tag: string }) => error._tag === "VersionMismatchError"

/** What the load saw. */
interface Tally {
  /** key -> value of every acknowledged create */
  readonly created: Map<string, string>
  /** ids of every acknowledged increment */
  readonly increments: Set<string>
  /** writes that failed with an unknown outcome (later resolved) */
  unknown: number
  /** of those, the ones that turned out to be applied */
  unknownApplied: number
  /** start and end (ms, performance clock) of every acknowledged write */
  readonly acknowledged: Array<readonly [number, number]>
}

const now = () => performance.now()

/** Creates `key` once: on an unknown outcome, sends it again and checks a mismatch against the value. */
const create = (store: StoreService, tally: Tally, key: string, value: string) =>
  Effect.gen(function* () {
    for (;;) {
      const started = now()
      const result = yield* Effect.either(store.put(key, 0, value, { type: "Created" }))
      if (result._tag === "Right") {
        tally.acknowledged.push([started, now()])
        tally.created.set(key, value)
        return
      }
      const error = result.left
      if (error._tag === "StoreError" && isOutcomeUnknown(error)) {
        tally.unknown++
        continue
      }
      if (isMismatch(error)) {
        // an earlier attempt whose outcome was unknown did apply: it must be ours
        const found = Option.getOrThrow(yield* store.get(key))
        assert.strictEqual(found.value, value)
        assert.strictEqual(found.version, 1)
        tally.unknownApplied++
        tally.created.set(key, value)
        return
      }
      return yield* Effect.fail(error)
    }
  })

/** One version-checked increment, identified by `id`, applied exactly once. */
const increment = (store: StoreService, tally: Tally, id: string) =>
  Effect.gen(function* () {
    for (;;) {
      const current = Option.getOrThrow(yield* store.get("ll/counter"))
      const started = now()
      const next: Counter = { n: (current.value as Counter).n + 1, by: id }
      const result = yield* Effect.either(store.put("ll/counter", current.version, next, { type: "Counter" }))
      if (result._tag === "Right") {
        tally.acknowledged.push([started, now()])
        tally.increments.add(id)
        return
      }
      const error = result.left
      if (isMismatch(error)) continue
      if (error._tag === "StoreError" && isOutcomeUnknown(error)) {
        tally.unknown++
        // applied or not: the counter's stream says (a strong read, after a new leader took over)
        const history = yield* store.stream("Counter", 0)
        if (history.some((record) => (record.record.value as Counter).by === id)) {
          tally.unknownApplied++
          tally.increments.add(id)
          return
        }
        continue
      }
      return yield* Effect.fail(error)
    }
  })

/** Milliseconds from the kill until a write sent after it was acknowledged. */
const stallAfter = (tally: Tally, killedAt: number): number | undefined => {
  const after = tally.acknowledged.filter(([started]) => started >= killedAt).map(([, ended]) => ended)
  return after.length === 0 ? undefined : Math.min(...after) - killedAt
}

/** Waits until `condition`; a failure of the load ends the wait with that failure. */
const waitFor = <E>(load: Fiber.Fiber<void, E>, condition: () => boolean) =>
  Effect.raceFirst(
    Effect.repeat(Effect.sleep("20 millis"), { until: condition }).pipe(
      Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("writes did not resume") }),
    ),
    Effect.zipRight(Fiber.join(load), Effect.never),
  )

describe("rqlite cluster: leader loss under load", () => {
  it.live(
    `${writers} writers and ${incrementers} incrementers keep every acknowledged write across ${kills} leader kills`,
    () =>
      Effect.gen(function* () {
        const cluster: RqliteCluster = yield* Effect.acquireRelease(
          Effect.promise(() => startRqliteCluster()),
          (cluster) => Effect.promise(() => cluster.stop()),
        )
        // every node, in an order that starts with the leader (the worst case for the first kill)
        const store = Context.get(
          yield* Layer.build(KvRqlite.layer({ url: cluster.url, failoverTimeout: "30 seconds" })),
          Store,
        )
        yield* store.put("ll/counter", -1, { n: 0, by: "init" } satisfies Counter, { type: "Counter" })
        const tally: Tally = {
          created: new Map(),
          increments: new Set(),
          unknown: 0,
          unknownApplied: 0,
          acknowledged: [],
        }
        let running = true
        const load = Effect.all(
          [
            ...Array.from({ length: writers }, (_, w) =>
              Effect.gen(function* () {
                for (let i = 0; running; i++) yield* create(store, tally, `ll/${w}/${i}`, `value ${w}/${i}`)
              }),
            ),
            ...Array.from({ length: incrementers }, (_, f) =>
              Effect.gen(function* () {
                for (let i = 0; running; i++) yield* increment(store, tally, `${f}/${i}`)
              }),
            ),
          ],
          { concurrency: "unbounded", discard: true },
        )
        const loading = yield* Effect.fork(load)

        const stalls: Array<number> = []
        for (let k = 0; k < kills; k++) {
          const before = tally.acknowledged.length
          yield* waitFor(loading, () => tally.acknowledged.length >= before + 50)
          const leader = yield* Effect.promise(() => cluster.leader())
          const killedAt = now()
          yield* Effect.promise(() => cluster.kill(leader))
          yield* waitFor(loading, () => stallAfter(tally, killedAt) !== undefined)
          stalls.push(stallAfter(tally, killedAt)!)
          // the node comes back as a follower; the next kill takes whoever leads then
          yield* Effect.promise(() => cluster.restart(leader))
        }
        const acknowledgedBeforeStop = tally.acknowledged.length
        yield* waitFor(loading, () => tally.acknowledged.length >= acknowledgedBeforeStop + 50)
        running = false
        yield* Fiber.join(loading)

        // every acknowledged create is there, once
        const created = yield* store.getPrefix("ll/", { limit: -1 })
        const byKey = new Map(created.map((record) => [record.key, record]))
        for (const [key, value] of tally.created) {
          const record = byKey.get(key)
          assert.isDefined(record, `acknowledged ${key} is missing`)
          assert.strictEqual(record!.value, value)
          assert.strictEqual(record!.version, 1)
        }
        // the counter counts each acknowledged increment exactly once
        const counter = Option.getOrThrow(yield* store.get("ll/counter"))
        const history = (yield* store.stream("Counter", 0)).filter((r) => r.record.key === "ll/counter")
        const applied = history.map((r) => (r.record.value as Counter).by).filter((by) => by !== "init")
        assert.strictEqual(new Set(applied).size, applied.length, "an increment was applied twice")
        assert.deepStrictEqual(new Set(applied), tally.increments)
        assert.strictEqual((counter.value as Counter).n, tally.increments.size)
        assert.strictEqual(counter.version, tally.increments.size + 1)
        // nothing but acknowledged creates under ll/<writer>/
        assert.strictEqual(created.length, tally.created.size + 1)

        console.log(
          `leader loss: ${tally.created.size} creates, ${tally.increments.size} increments, ` +
            `${tally.unknown} unknown outcomes (${tally.unknownApplied} applied); write stall after each kill (ms): ` +
            stalls.map((ms) => ms.toFixed(0)).join(", "),
        )
      }).pipe(Effect.scoped),
    { timeout: 120_000 },
  )
})
