/**
 * Watching a key, a prefix, a range or every key: the current records first (a snapshot), then
 * every later change of a matching key, live, as an Effect `Stream`. No lock, no stored position.
 *
 * The snapshot and the live part meet exactly: the records are read after noting the stream's
 * latest seq `s0`; the changes from `s0` to the seq `s1` of a later read are laid over them,
 * so the snapshot is the state at `s1` (each key as its last change up to `s1` left it), and the
 * live part starts after `s1`. No change is lost or repeated, whoever writes meanwhile.
 */
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Arg from "./Arguments.js"
import { ConsumerGapError, ConsumerStorage, defaultPollInterval, type StreamWindow } from "./Consumer.js"
import { type InvalidArgumentError, KvRecord, Store, type StoreError, StreamAction } from "./Store.js"

/** What to watch: one key, the keys starting with a prefix, `from <= key < to`, or every key. */
export type Selector =
  | { readonly key: string }
  | { readonly prefix: string }
  | { readonly from: string; readonly to: string }
  | "all"

/** A record of the snapshot (`action: "snapshot"`, `seq`: the stream seq it was taken at) or a change. */
export const WatchEvent = Schema.Struct({
  seq: Schema.Number,
  action: Schema.Union(Schema.Literal("snapshot"), StreamAction),
  record: KvRecord,
})
export interface WatchEvent extends Schema.Schema.Type<typeof WatchEvent> {}

export interface WatchOptions {
  /** Only the changes with `seq >= since`, without a snapshot (default: snapshot, then live). */
  readonly since?: number | undefined
  /** The longest an idle watch waits between reads (default 500 ms; writes wake it where the backend can tell). */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** Stream records read at a time (default 100). */
  readonly batchSize?: number | undefined
}

/** Keys in code point order, as every backend orders them. */
const compareKeys = (a: string, b: string): number => {
  const left = a[Symbol.iterator]()
  const right = b[Symbol.iterator]()
  for (;;) {
    const x = left.next()
    const y = right.next()
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1
    const difference = x.value.codePointAt(0)! - y.value.codePointAt(0)!
    if (difference !== 0) return difference
  }
}

/** The longest prefix every key in `[from, to)` shares: what the stream can be filtered by in SQL. */
const sharedPrefix = (from: string, to: string): string => {
  const a = Array.from(from)
  const b = Array.from(to)
  let i = 0
  while (i < a.length && i < b.length && a[i] === b[i]) i++
  return a.slice(0, i).join("")
}

interface Plan {
  /** The records matching now, in key order. */
  readonly current: Effect.Effect<ReadonlyArray<KvRecord>, StoreError | InvalidArgumentError, Store>
  /** The prefix the stream is read under (`""`: every key). */
  readonly prefix: Arg.Prefix
  /** Whether a key of a stream record read under `prefix` is watched. */
  readonly matches: (key: string) => boolean
}

const decodeKey = Arg.decoder(Arg.Key)
const decodePrefix = Arg.decoder(Arg.Prefix)
const decodeRange = Arg.args({ from: Arg.From, to: Arg.To })
const decodeOptions = Arg.args({
  since: Arg.optional(Arg.Seq),
  pollInterval: Arg.PositiveDuration,
  batchSize: Arg.positive("batch size"),
})

const everything = { limit: -1 }

const planOf = (selector: Selector): Effect.Effect<Plan, InvalidArgumentError> => {
  if (selector === "all") {
    return Effect.succeed({
      current: Effect.flatMap(Store, (store) => store.list(everything)),
      prefix: "" as Arg.Prefix,
      matches: () => true,
    })
  }
  if ("key" in selector) {
    return Effect.map(decodeKey(selector.key), (key) => ({
      current: Effect.flatMap(Store, (store) =>
        Effect.map(store.get(key), (found) => (Option.isSome(found) ? [found.value] : [])),
      ),
      prefix: key as unknown as Arg.Prefix,
      matches: (other: string) => other === key,
    }))
  }
  if ("prefix" in selector) {
    return Effect.map(decodePrefix(selector.prefix), (prefix) => ({
      current: Effect.flatMap(Store, (store) => store.getPrefix(prefix, everything)),
      prefix,
      matches: () => true,
    }))
  }
  return Effect.map(decodeRange({ from: selector.from, to: selector.to }), ({ from, to }) => ({
    current: Effect.flatMap(Store, (store) => store.getRange(from, to, everything)),
    prefix: sharedPrefix(from, to) as Arg.Prefix,
    matches: (key: string) => compareKeys(key, from) >= 0 && compareKeys(key, to) < 0,
  }))
}

// Stream records are read through the consumers' storage, which gives the stream's bounds in
// the same statement (to tell a trimmed gap); this name's position is never used (`after` is
// always given) and nothing is stored under it.
const reader = "effect-kv/watch" as Arg.StreamName

/** A gap when the records right after `after` are gone, as consumers report it. */
const gapAfter = (after: number, window: StreamWindow) => {
  const firstAvailable = window.firstSeq ?? window.latestSeq + 1
  return after + 1 < firstAvailable
    ? Effect.fail(new ConsumerGapError({ streamName: "watch", position: after, firstAvailable, watch: true }))
    : Effect.void
}

/** Backoff for a failing database: logged and retried, never ending the watch. */
const storeRetry = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered,
)

const isStoreError = (error: unknown): error is StoreError =>
  (error as { _tag?: unknown } | null)?._tag === "StoreError"

/**
 * Watches `selector`: without `since`, one `snapshot` event per matching record (in key order,
 * `seq` the stream seq it was taken at), then each later change of a matching key in seq order,
 * live; with `since`, the matching changes from that seq on. Changes trimmed away before they
 * were read fail the stream with `ConsumerGapError`. A failing database is logged and retried.
 */
export const stream = (
  selector: Selector,
  options: WatchOptions = {},
): Stream.Stream<WatchEvent, ConsumerGapError | InvalidArgumentError | StoreError, Store | ConsumerStorage> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const storage = yield* ConsumerStorage
      const plan = yield* planOf(selector)
      const checked = yield* decodeOptions({
        since: options.since,
        pollInterval: options.pollInterval ?? defaultPollInterval,
        batchSize: options.batchSize ?? 100,
      })
      const filter = { type: "all" as Arg.RecordType, prefix: plan.prefix }
      const changes = yield* storage.changes
      const read = (after: number, limit: number) =>
        Effect.tap(
          storage.read(reader, Option.some(after as Arg.Seq), filter, limit as Arg.Limit, Option.none()),
          (window) => gapAfter(after, window),
        )

      /** The records at one seq: read after `s0`, with the changes since `s0` laid over them. */
      const snapshot = Effect.gen(function* () {
        const s0 = yield* Effect.flatMap(Store, (store) => store.streamSeq())
        const records = yield* plan.current
        const since = yield* read(s0, -1)
        const state = new Map(records.map((record) => [record.key, record]))
        for (const change of since.records) {
          if (!plan.matches(change.record.key)) continue
          if (change.action === "delete") state.delete(change.record.key)
          else state.set(change.record.key, change.record)
        }
        const seq = since.latestSeq
        const events = [...state.values()]
          .sort((a, b) => compareKeys(a.key, b.key))
          .map((record): WatchEvent => ({ seq, action: "snapshot", record }))
        return { seq, events }
      })

      let after = 0
      let start: Stream.Stream<WatchEvent, ConsumerGapError | InvalidArgumentError | StoreError, Store> =
        Stream.empty
      if (checked.since === undefined) {
        start = Stream.unwrap(
          Effect.map(snapshot, ({ events, seq }) => {
            after = seq
            return Stream.fromIterable(events)
          }),
        )
      } else {
        after = Math.max(0, checked.since - 1)
      }

      /** The next changes of matching keys, waiting while there are none. */
      const next: Effect.Effect<
        Chunk.Chunk<WatchEvent>,
        ConsumerGapError | InvalidArgumentError | StoreError
      > = Effect.gen(function* () {
        for (;;) {
          const window = yield* read(after, checked.batchSize)
          const full = window.records.length === checked.batchSize
          after = full ? window.records[window.records.length - 1]!.seq : Math.max(after, window.latestSeq)
          const events = window.records
            .filter((change) => plan.matches(change.record.key))
            .map((change): WatchEvent => ({ seq: change.seq, action: change.action, record: change.record }))
          if (events.length > 0) return Chunk.unsafeFromArray(events)
          if (!full) yield* changes.wait(checked.pollInterval)
        }
      })
      const live = Stream.repeatEffectChunk(
        next.pipe(
          Effect.tapError((error) =>
            isStoreError(error) ? Effect.logWarning(`watch: ${error.message}`) : Effect.void,
          ),
          Effect.retry({ schedule: storeRetry, while: isStoreError }),
        ),
      )
      return Stream.concat(start, live)
    }),
  )
