/**
 * Stream consumers: a named cursor over the change stream (`streamName`), held by one
 * instance (`consumerName`) at a time.
 *
 * An instance takes the consumer's lock, reads the records after the committed position and
 * commits what it processed, so that the next read starts after it. Delivery is at least
 * once: an instance that stops before committing leaves its records to the next one. The
 * position has a version: a commit names the version it read, and only succeeds while the
 * instance still holds an unexpired lock, so an instance that lost its lock (or whose
 * position an operator moved) can never commit over another.
 *
 * `Consumer.stream(...)` is the same as an Effect `Stream` (polling with a `Schedule`,
 * woken at once by writes, refreshing its lock, committing by mode), `Consumer.run` feeds a
 * handler and commits after it succeeded. The storage (`ConsumerStorage`) is provided by
 * every backend's layer; its SQL lives in `internal/consumerSql.ts`.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Arg from "./Arguments.js"
import { type Attributes, type Spec, traced } from "./internal/tracing.js"
import type { Signal } from "./internal/wakeup.js"
import { consumerLagMs, consumerLagRecords, forConsumer } from "./Metrics.js"
import type { InvalidArgumentError, StoreError, StreamRecord } from "./Store.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** When `Consumer.stream` commits: after each batch, after each record, or never. */
export const CommitMode = Schema.Literal("batch", "record", "none")
export type CommitMode = typeof CommitMode.Type

/** A consumer as stored. `lockedBy` and the lock times are `null` while nobody holds a live lock. */
export const ConsumerStatus = Schema.Struct({
  name: Schema.String,
  /** The last committed seq: the next read starts after it. */
  position: Schema.Number,
  /** How often the position changed (commits name the version they read). */
  version: Schema.Number,
  lockedBy: Schema.NullOr(Schema.String),
  lockedAt: Schema.NullOr(Schema.Date),
  lockExpiresAt: Schema.NullOr(Schema.Date),
  /** The stream's latest seq when the status was read. */
  latestSeq: Schema.Number,
  created: Schema.Date,
  updated: Schema.Date,
}).annotations({ identifier: "ConsumerStatus" })
export interface ConsumerStatus extends Schema.Schema.Type<typeof ConsumerStatus> {}

/** What one `get` returned. */
export interface ConsumerBatch {
  /** Whether this instance holds the lock; when not, `records` is empty. */
  readonly held: boolean
  /** The committed position the batch was read after. */
  readonly position: number
  /** The version of that position; `commit(batch)` only succeeds while it is current. */
  readonly version: number
  readonly records: ReadonlyArray<StreamRecord>
  /**
   * Every record up to this seq has been read: the last record's seq, or, when the batch was
   * not full, the stream's latest seq (with `ofType` or `prefix`, the records in between that
   * did not match were skipped). `commit(batch)` moves the position here.
   */
  readonly through: number
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * The records after the consumer's position were trimmed away (`streamTrim`). The consumer
 * stops here instead of skipping them, until its position is moved past the gap with
 * `Consumer.commit` (`kv consumer commit`).
 */
export class ConsumerGapError extends Schema.TaggedError<ConsumerGapError>()("ConsumerGapError", {
  streamName: Schema.String,
  /** The committed position. */
  position: Schema.Number,
  /** The first seq still in the stream (the next seq to be written when it is empty). */
  firstAvailable: Schema.Number,
  /** Set when a watch (`Watch.stream` with `since`), not a consumer, found the gap. */
  watch: Schema.optional(Schema.Boolean),
}) {
  override get message() {
    const missing =
      this.position + 1 === this.firstAvailable - 1
        ? `seq ${this.position + 1} was`
        : `seqs ${this.position + 1} to ${this.firstAvailable - 1} were`
    if (this.watch === true) {
      return (
        `the watch reads from seq ${this.position + 1}, but ${missing} trimmed from the stream ` +
        `(the first available is ${this.firstAvailable}); watch from there, or without a seq for a snapshot`
      )
    }
    return (
      `consumer "${this.streamName}" is at seq ${this.position}, but ${missing} trimmed from the stream ` +
      `(the first available is ${this.firstAvailable}); commit past the gap ` +
      `(kv consumer commit ${this.streamName} ${this.firstAvailable - 1}) to skip them`
    )
  }
}

/** A commit by an instance that does not hold the consumer's lock (any more); nothing changed. */
export class ConsumerLockLostError extends Schema.TaggedError<ConsumerLockLostError>()(
  "ConsumerLockLostError",
  { streamName: Schema.String, consumerName: Schema.String, holder: Schema.NullOr(Schema.String) },
) {
  override get message() {
    const held = this.holder === null ? "nobody holds it" : `it is held by "${this.holder}"`
    return `consumer "${this.streamName}": "${this.consumerName}" does not hold the lock (${held}); nothing committed`
  }
}

/** The position changed since the instance read it (another instance or an operator committed). */
export class ConsumerMovedError extends Schema.TaggedError<ConsumerMovedError>()("ConsumerMovedError", {
  streamName: Schema.String,
  consumerName: Schema.String,
  expectedVersion: Schema.Number,
}) {
  override get message() {
    return (
      `consumer "${this.streamName}": the position changed since "${this.consumerName}" read it ` +
      `(version ${this.expectedVersion}); nothing committed, read again`
    )
  }
}

export type CommitError = ConsumerLockLostError | ConsumerMovedError

// ---------------------------------------------------------------------------------------------
// Storage: provided by every backend's layer
// ---------------------------------------------------------------------------------------------

type Fails<A, E = never> = Effect.Effect<A, E | InvalidArgumentError | StoreError>

/** The committed position of a consumer and its version. */
export interface StoredPosition {
  readonly position: number
  readonly version: number
}

/** A lock taken by `acquire`: the position, and whether the holder already held it (extended). */
export interface Acquired extends StoredPosition {
  readonly extended: boolean
}

/** The records after a consumer's position, read at one instant with the stream's bounds. */
export interface StreamWindow extends StoredPosition {
  /** Whether the reader holds a live lock at this read (`false` when no reader was named). */
  readonly held: boolean
  readonly records: ReadonlyArray<StreamRecord>
  /** The lowest seq in the stream (trimmed records are gone); `undefined` when it is empty. */
  readonly firstSeq: number | undefined
  /** The latest seq ever written (0 when never). */
  readonly latestSeq: number
}

/** Which records a consumer reads: of one type (`"all"`: every type), under a key prefix (`""`: every key). */
export interface RecordFilter {
  readonly type: Arg.RecordType
  readonly prefix: Arg.Prefix
}

/** What a guarded commit did: committed, or nothing because of the lock or the version. */
export type CommitOutcome =
  | { readonly _tag: "Committed" }
  | { readonly _tag: "NotHeld"; readonly holder: string | null }
  | { readonly _tag: "Moved" }

/**
 * The storage of consumers. Its arguments are checked by the callers in this module (once per
 * instance, or per administrative call): they arrive branded.
 */
export interface ConsumerStorageService {
  /**
   * Takes the lock of `name` for `holder` for `lockMillis` (created at position 0 if new) when
   * it is free, expired or already `holder`'s (then extended); `None` while another holder's
   * lock is live.
   */
  readonly acquire: (
    name: Arg.StreamName,
    holder: Arg.ConsumerName,
    lockMillis: Arg.Millis,
  ) => Fails<Option.Option<Acquired>>
  /** Extends the lock while `holder` holds it; `false` when it does not. */
  readonly extend: (name: Arg.StreamName, holder: Arg.ConsumerName, lockMillis: Arg.Millis) => Fails<boolean>
  /** Releases the lock: `holder`'s only, or (`None`) whoever holds it. `true` when it was held. */
  readonly release: (name: Arg.StreamName, holder: Option.Option<Arg.ConsumerName>) => Fails<boolean>
  /**
   * Up to `limit` records (`-1`: all) that pass `filter` after `after`, or (`None`)
   * after the committed position (0 for an unknown consumer); `reader`: the instance to tell
   * whether it holds the lock at this read.
   */
  readonly read: (
    name: Arg.StreamName,
    after: Option.Option<Arg.Seq>,
    filter: RecordFilter,
    limit: Arg.Limit,
    reader: Option.Option<Arg.ConsumerName>,
  ) => Fails<StreamWindow>
  /**
   * Sets the position to `seq` if `holder` holds a live lock and the position is at `version`.
   * A `seq` beyond the stream's latest is an `InvalidArgumentError`.
   */
  readonly commit: (
    name: Arg.StreamName,
    holder: Arg.ConsumerName,
    version: number,
    seq: Arg.Seq,
  ) => Fails<CommitOutcome>
  /** Sets the position to `seq` whoever holds the lock (creates the consumer if new). */
  readonly move: (name: Arg.StreamName, seq: Arg.Seq) => Fails<void>
  readonly status: (name: Arg.StreamName) => Fails<Option.Option<ConsumerStatus>>
  /** Deletes the consumer (position and lock); `true` when it existed. */
  readonly delete: (name: Arg.StreamName) => Fails<boolean>
  /** Signals appends to the stream (this process's, and other processes' where the backend can tell). */
  readonly changes: Effect.Effect<Signal, never, Scope.Scope>
  /**
   * Whether the consumers on this storage put their operations in spans (`kv.consumer.get`,
   * ...; the backend layer's `spans` option); absent means true.
   */
  readonly spans?: boolean | undefined
}

export class ConsumerStorage extends Context.Tag("effect-kv/ConsumerStorage")<
  ConsumerStorage,
  ConsumerStorageService
>() {}

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

const decodeStreamName = Arg.decoder(Arg.StreamName)
const decodeInstance = Arg.args({
  streamName: Arg.StreamName,
  consumerName: Arg.ConsumerName,
  ofType: Arg.RecordType,
  prefix: Arg.Prefix,
  lockDuration: Arg.Millis,
})
const decodeBatchSize = Arg.decoder(Arg.positive("batch size"))
const decodePeek = Arg.args({
  streamName: Arg.StreamName,
  ofType: Arg.RecordType,
  prefix: Arg.Prefix,
  limit: Arg.Limit,
})
const decodeMove = Arg.args({ streamName: Arg.StreamName, seq: Arg.Seq })
const decodeSeq = Arg.decoder(Arg.Seq)
const decodeStreamOptions = Arg.args({
  commitMode: CommitMode,
  batchSize: Arg.positive("batch size"),
  pollInterval: Arg.PositiveDuration,
  standbyInterval: Arg.PositiveDuration,
})

// ---------------------------------------------------------------------------------------------
// An instance
// ---------------------------------------------------------------------------------------------

export interface ConsumerOptions {
  /** The consumer: its position and lock. */
  readonly streamName: string
  /** This instance: the lock holder. */
  readonly consumerName: string
  /** Only records of this type (default "all"); the position still moves over the others. */
  readonly ofType?: string | undefined
  /**
   * Only records whose key starts with this prefix (default: every key; `%`, `_`, `\` are
   * ordinary characters); the position still moves over the others.
   */
  readonly prefix?: string | undefined
  /** How long the lock lasts unless extended (default 30 seconds). */
  readonly lockDuration?: Duration.DurationInput | undefined
}

/** One instance of a consumer. */
export interface Consumer {
  readonly streamName: string
  readonly consumerName: string
  readonly ofType: string
  /** The key prefix it reads under (`""`: every key). */
  readonly prefix: string
  /**
   * Acquires or extends the lock and returns up to `batchSize` (default 100) records after the
   * committed position; an empty batch with `held: false` while another instance holds it.
   */
  readonly get: (batchSize?: number) => Fails<ConsumerBatch, ConsumerGapError>
  /** Commits everything the batch read (`batch.through`); nothing when it moved nothing. */
  readonly commit: (batch: ConsumerBatch) => Fails<void, CommitError>
  /**
   * Commits everything up to `seq`: the next read starts at `seq + 1`. Succeeds only while the
   * position is the one this instance last read or committed.
   */
  readonly commitUpTo: (seq: number) => Fails<void, CommitError>
  readonly status: Fails<Option.Option<ConsumerStatus>>
  /** Deletes the consumer: its position and lock. */
  readonly delete: Fails<boolean>
  /** Releases the lock if this instance holds it. */
  readonly unlock: Fails<boolean>
  /** Extends the lock if this instance holds it (`false`: it does not). */
  readonly refresh: Fails<boolean>
}

/** What `Consumer.stream` needs beyond the public instance: reading after its own cursor. */
interface Instance extends Consumer {
  readonly lockMillis: number
  /**
   * Like `get`, after `after` (`None`: after the committed position), unless the lock was just
   * taken anew (not extended): then another instance may have moved the position meanwhile, and
   * the read starts after the committed position.
   */
  readonly getAfter: (
    after: Option.Option<number>,
    batchSize: number,
  ) => Fails<ConsumerBatch, ConsumerGapError>
}

const defaultLockDuration = Duration.seconds(30)
const defaultBatchSize = 100

/** When this instance extends the lock it holds next; `None`: it does not hold it. */
type Lease = Option.Option<{ readonly renewAt: number }>

/** At most this many observations of the stream's end are kept per instance (see `lagGauges`). */
const maxSightings = 1024

/**
 * The lag gauges of one instance, set at each read it makes while holding the lock:
 * - records: the stream's latest seq minus the committed position;
 * - milliseconds: how long ago this instance first saw the oldest record it has not committed
 *   (0 when caught up). The stream keeps no write time (a record's `created` is its key's), so
 *   the age is counted from the first read whose stream end covered that record: a lower
 *   bound, exact to a poll interval for records written while the instance runs; a backlog
 *   found at its first read counts from that read.
 */
const lagGauges = (streamName: string, consumerName: string) => {
  const records = forConsumer(consumerLagRecords, streamName, consumerName)
  const millis = forConsumer(consumerLagMs, streamName, consumerName)
  // `seq`: a stream end seen; `at`: the first read that saw the end at or beyond it
  let sightings: Array<{ seq: number; at: number }> = []
  return (window: StreamWindow, now: number) => {
    const { latestSeq, position } = window
    if (latestSeq <= position) {
      sightings = []
      return Effect.zipRight(Metric.set(records, 0), Metric.set(millis, 0))
    }
    const last = sightings.at(-1)
    if (last === undefined || latestSeq > last.seq) {
      // full: the last sighting covers the new end too (its records count as older)
      if (last !== undefined && sightings.length >= maxSightings) last.seq = latestSeq
      else sightings.push({ seq: latestSeq, at: now })
    }
    const oldest = sightings.findIndex((sighting) => sighting.seq > position)
    if (oldest > 0) sightings = sightings.slice(oldest)
    return Effect.zipRight(
      Metric.set(records, latestSeq - position),
      Metric.set(millis, Math.max(0, now - sightings[0]!.at)),
    )
  }
}

/** A gap when the records right after `after` are gone: below the first kept seq. */
const gapAfter = (streamName: string, after: number, window: StreamWindow) => {
  const firstAvailable = window.firstSeq ?? window.latestSeq + 1
  return after + 1 < firstAvailable
    ? Effect.fail(new ConsumerGapError({ streamName, position: after, firstAvailable }))
    : Effect.void
}

const makeInstance = (
  options: ConsumerOptions,
): Effect.Effect<Instance, InvalidArgumentError, ConsumerStorage> =>
  Effect.gen(function* () {
    const storage = yield* ConsumerStorage
    // checked once: every call below takes the checked names
    const { consumerName, lockDuration, ofType, prefix, streamName } = yield* decodeInstance({
      streamName: options.streamName,
      consumerName: options.consumerName,
      ofType: options.ofType ?? "all",
      prefix: options.prefix ?? "",
      lockDuration: options.lockDuration ?? defaultLockDuration,
    })
    const lockMillis = lockDuration
    const filter: RecordFilter = { type: ofType, prefix }
    const reader = Option.some(consumerName)
    // A held lock is extended once a third of it has passed: reads in between cost no write.
    // Each read still asks the database whether this instance holds the lock (in the same
    // statement), so a lock taken away meanwhile is noticed at the next read, and commits
    // check it again.
    const lease = yield* Ref.make<Lease>(Option.none())
    // the position this instance last read or committed, with its version (for `commitUpTo`)
    const known = yield* Ref.make<StoredPosition>({ position: 0, version: 0 })

    const recordLag = lagGauges(streamName, consumerName)

    const renewed = (now: number): Lease => Option.some({ renewAt: now + lockMillis / 3 })
    const forgetLease = Ref.set(lease, Option.none())

    /** Whether this instance holds the lock (still, or anew), taking or extending it when due. */
    const hold: Effect.Effect<"held" | "taken" | "not-held", InvalidArgumentError | StoreError> = Effect.gen(
      function* () {
        const now = yield* Clock.currentTimeMillis
        const current = yield* Ref.get(lease)
        if (Option.isSome(current) && now < current.value.renewAt) return "held"
        const acquired = yield* storage.acquire(streamName, consumerName, lockMillis)
        yield* Ref.set(lease, Option.isSome(acquired) ? renewed(now) : Option.none())
        if (Option.isNone(acquired)) return "not-held"
        return acquired.value.extended && Option.isSome(current) ? "held" : "taken"
      },
    )

    const notHeld = Effect.map(storage.status(streamName), (status): ConsumerBatch => {
      const position = Option.match(status, { onNone: () => 0, onSome: (s) => s.position })
      const version = Option.match(status, { onNone: () => 0, onSome: (s) => s.version })
      return { held: false, position, version, records: [], through: position }
    })

    /**
     * Reads the next batch while this instance holds the lock: after `after` while it held it
     * all along, else after the committed position (another instance may have moved it).
     */
    const readHeld = (after: Option.Option<number>, limit: Arg.Limit) =>
      Effect.gen(function* () {
        const holding = yield* hold
        if (holding === "not-held") return Option.none()
        const start = holding === "held" ? (after as Option.Option<Arg.Seq>) : Option.none()
        const window = yield* storage.read(streamName, start, filter, limit, reader)
        return window.held ? Option.some({ start, window }) : Option.none()
      })

    const getAfter = (after: Option.Option<number>, batchSize: number) =>
      Effect.gen(function* () {
        const limit = (yield* decodeBatchSize(batchSize)) as unknown as Arg.Limit
        let read = yield* readHeld(after, limit)
        if (Option.isNone(read) && Option.isSome(yield* Ref.get(lease))) {
          // the database says the lock is not ours (an operator released it, another instance
          // took it): forget the lease and ask for the lock again
          yield* forgetLease
          read = yield* readHeld(Option.none(), limit)
        }
        if (Option.isNone(read)) {
          yield* forgetLease
          return yield* notHeld
        }
        const { start, window } = read.value
        yield* recordLag(window, yield* Clock.currentTimeMillis)
        const from = Option.getOrElse(start, () => window.position)
        yield* gapAfter(streamName, from, window)
        yield* Ref.set(known, { position: window.position, version: window.version })
        const through =
          window.records.length < limit ? Math.max(window.latestSeq, from) : window.records.at(-1)!.seq
        return {
          held: true,
          position: window.position,
          version: window.version,
          records: window.records,
          through,
        } satisfies ConsumerBatch
      })

    const commitAt = (position: StoredPosition, seq: number) =>
      Effect.gen(function* () {
        const checked = yield* decodeSeq(seq)
        if (checked === position.position) return
        const outcome = yield* storage.commit(streamName, consumerName, position.version, checked)
        switch (outcome._tag) {
          case "Committed":
            return yield* Ref.set(known, { position: checked, version: position.version + 1 })
          case "NotHeld":
            yield* forgetLease
            return yield* new ConsumerLockLostError({ streamName, consumerName, holder: outcome.holder })
          case "Moved":
            return yield* new ConsumerMovedError({
              streamName,
              consumerName,
              expectedVersion: position.version,
            })
        }
      })

    const instance: Instance = {
      streamName,
      consumerName,
      ofType,
      prefix,
      lockMillis,
      getAfter,
      get: (batchSize = defaultBatchSize) => getAfter(Option.none(), batchSize),
      commit: (batch) => (batch.held ? commitAt(batch, batch.through) : Effect.void),
      commitUpTo: (seq) => Effect.flatMap(Ref.get(known), (position) => commitAt(position, seq)),
      status: storage.status(streamName),
      delete: Effect.zipLeft(storage.delete(streamName), forgetLease),
      unlock: Effect.zipLeft(storage.release(streamName, reader), forgetLease),
      refresh: Effect.gen(function* () {
        if (Option.isNone(yield* Ref.get(lease))) return false
        const now = yield* Clock.currentTimeMillis
        const extended = yield* storage.extend(streamName, consumerName, lockMillis)
        yield* Ref.set(lease, extended ? renewed(now) : Option.none())
        return extended
      }),
    }
    return storage.spans === false ? instance : traced("kv.consumer", instance, instanceSpec(instance))
  })

/** The consumer's attributes: its stream, instance and type. */
const consumerAttributes = (instance: Instance): Attributes => ({
  "kv.stream": instance.streamName,
  "kv.consumer": instance.consumerName,
  "kv.type": instance.ofType,
  ...(instance.prefix === "" ? {} : { "kv.prefix": instance.prefix }),
})

const batchAttributes = (batch: ConsumerBatch): Attributes => ({
  "kv.held": batch.held,
  "kv.result_count": batch.records.length,
  "kv.position": batch.position,
  "kv.through": batch.through,
})

/** `kv.consumer.*` of an instance: a span per read (`get`, also each read of a stream), commit, ... */
const instanceSpec = (instance: Instance): Spec<Instance> => {
  const attributes = consumerAttributes(instance)
  const withSeq = (seq: number): Attributes => ({ ...attributes, "kv.seq": seq })
  return {
    streamName: false,
    consumerName: false,
    ofType: false,
    prefix: false,
    lockMillis: false,
    get: {
      attributes: (batchSize) =>
        batchSize === undefined ? attributes : { ...attributes, "kv.limit": batchSize },
      result: batchAttributes,
    },
    getAfter: {
      name: "get",
      attributes: (_after, batchSize) => ({ ...attributes, "kv.limit": batchSize }),
      result: batchAttributes,
    },
    commit: (batch) => withSeq(batch?.through ?? 0),
    commitUpTo: withSeq,
    status: () => attributes,
    delete: () => attributes,
    unlock: { attributes: () => attributes, result: (released) => ({ "kv.released": released }) },
    refresh: { attributes: () => attributes, result: (extended) => ({ "kv.extended": extended }) },
  }
}

/** An instance (`consumerName`) of the consumer `streamName`. */
export const make = (
  options: ConsumerOptions,
): Effect.Effect<Consumer, InvalidArgumentError, ConsumerStorage> => makeInstance(options)

// ---------------------------------------------------------------------------------------------
// As a Stream
// ---------------------------------------------------------------------------------------------

export interface StreamOptions extends ConsumerOptions {
  /**
   * `batch` (default): a batch is committed when the next one is pulled, i.e. after the stream's
   * consumer processed all of it; `record`: each record when the next is pulled; `none`: never
   * (the stream keeps its place in memory only, and starts again from the committed position
   * when it had to take the lock anew).
   */
  readonly commitMode?: CommitMode | undefined
  /** Records per read (default 100). */
  readonly batchSize?: number | undefined
  /**
   * The longest an idle consumer waits between reads (default 500 ms). Writes wake it at once
   * where the backend can tell (this process's writes; other processes' on PostgreSQL and
   * SQLite); on rqlite, other processes' writes are found by polling: the wait starts at 10 ms
   * after the last record and doubles up to this interval.
   */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** The longest wait between attempts to take a lock another instance holds (default 5 s). */
  readonly standbyInterval?: Duration.DurationInput | undefined
}

export const defaultPollInterval = Duration.millis(500)
const defaultStandbyInterval = Duration.seconds(5)
const firstPoll = Duration.millis(10)

/** Backoff for a failing database: logged and retried, never ending the stream. */
const storeRetry = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered,
)

/**
 * The delays of `schedule` as its output, without sleeping: the consumer spends them waiting
 * for a wake-up instead.
 */
const delaysOf = <Out>(schedule: Schedule.Schedule<Out>) =>
  schedule.pipe(
    Schedule.delays,
    Schedule.modifyDelay(() => Duration.zero),
  )

/** Exponential from `first`, doubling, capped at `max`. */
const backoff = (first: Duration.DurationInput, max: Duration.Duration) =>
  Schedule.exponential(first, 2).pipe(Schedule.union(Schedule.spaced(max)))

/** The next delay of a driver of `delaysOf` (its schedules never end: else `max`). */
const nextDelay = (driver: Schedule.ScheduleDriver<Duration.Duration>, max: Duration.Duration) =>
  Effect.orElseSucceed(driver.next(undefined), () => max)

const isStoreError = (error: unknown): error is StoreError =>
  (error as { _tag?: unknown } | null)?._tag === "StoreError"

/**
 * The consumer's records as a Stream, for as long as it is pulled: the lock is taken (waiting,
 * with backoff, while another instance holds it), extended in the background and released
 * when the stream ends or is interrupted. Idle, it waits for a write (see `pollInterval`).
 * Commits follow `commitMode`: a chunk (one batch, or one record in `record` mode) is
 * committed when the next chunk is pulled, so a record whose processing failed or was
 * interrupted is delivered again (at least once). A failing database is logged and retried;
 * a trimmed gap fails the stream with `ConsumerGapError`.
 */
export const stream = (
  options: StreamOptions,
): Stream.Stream<StreamRecord, ConsumerGapError | InvalidArgumentError | StoreError, ConsumerStorage> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const storage = yield* ConsumerStorage
      const consumer = yield* makeInstance(options)
      const {
        batchSize,
        commitMode: mode,
        pollInterval,
        standbyInterval,
      } = yield* decodeStreamOptions({
        commitMode: options.commitMode ?? "batch",
        batchSize: options.batchSize ?? defaultBatchSize,
        pollInterval: options.pollInterval ?? defaultPollInterval,
        standbyInterval: options.standbyInterval ?? defaultStandbyInterval,
      })

      const changes = yield* storage.changes
      yield* Effect.addFinalizer(() =>
        consumer.unlock.pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("releasing the lock failed", cause)),
        ),
      )
      // extends the lock while the records of a batch are processed (a no-op while not held)
      yield* Effect.forkScoped(
        consumer.refresh.pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("extending the lock failed", cause)),
          Effect.repeat(Schedule.spaced(Duration.millis(consumer.lockMillis / 3))),
        ),
      )
      const idle = yield* Schedule.driver(
        delaysOf(backoff(Duration.min(firstPoll, pollInterval), pollInterval)),
      )
      const standby = yield* Schedule.driver(
        delaysOf(
          backoff(Duration.min(pollInterval, standbyInterval), standbyInterval).pipe(Schedule.jittered),
        ),
      )

      // `cursor`: the last seq delivered (None: start at the committed position);
      // `pending`: the seq to commit when the next chunk is pulled; `queue`: records of the
      // current batch not yet delivered (record mode), `queueThrough` that batch's end.
      let cursor: Option.Option<number> = Option.none()
      let pending: number | undefined
      let queue: Array<StreamRecord> = []
      let queueThrough = 0

      /** Starts again from the committed position (the lock or the position changed under us). */
      const restart = (error: CommitError) =>
        Effect.sync(() => {
          cursor = Option.none()
          queue = []
        }).pipe(Effect.zipRight(Effect.logWarning(error.message)))

      const commitPending = Effect.suspend(() =>
        pending === undefined
          ? Effect.void
          : consumer.commitUpTo(pending).pipe(
              Effect.catchTags({ ConsumerLockLostError: restart, ConsumerMovedError: restart }),
              Effect.zipRight(
                Effect.sync(() => {
                  pending = undefined
                }),
              ),
            ),
      )

      /** Delivers the next record of the queue (record mode). */
      const nextOfQueue = Effect.sync(() => {
        const record = queue.shift()!
        const through = queue.length === 0 ? Math.max(record.seq, queueThrough) : record.seq
        pending = through
        cursor = Option.some(through)
        return Chunk.of(record)
      })

      /** Reads until there are records, waiting while idle or while another instance holds the lock. */
      const nextBatch: Effect.Effect<
        Chunk.Chunk<StreamRecord>,
        ConsumerGapError | InvalidArgumentError | StoreError
      > = Effect.gen(function* () {
        for (;;) {
          const batch = yield* consumer.getAfter(cursor, batchSize)
          if (!batch.held) {
            cursor = Option.none()
            yield* idle.reset
            yield* Effect.sleep(yield* nextDelay(standby, standbyInterval))
            continue
          }
          yield* standby.reset
          if (batch.records.length === 0) {
            cursor = Option.some(batch.through)
            // records of other types moved the end: keep the position up with it
            if (mode !== "none" && batch.through > batch.position) {
              pending = batch.through
              yield* commitPending
            }
            yield* changes.wait(yield* nextDelay(idle, pollInterval))
            continue
          }
          yield* idle.reset
          if (mode === "record") {
            queue = [...batch.records]
            queueThrough = batch.through
            return yield* nextOfQueue
          }
          if (mode === "batch") pending = batch.through
          cursor = Option.some(batch.through)
          return Chunk.unsafeFromArray(batch.records as Array<StreamRecord>)
        }
      })

      const pull = Effect.suspend(() =>
        Effect.zipRight(commitPending, queue.length > 0 ? nextOfQueue : nextBatch),
      ).pipe(
        Effect.tapError((error) =>
          isStoreError(error)
            ? Effect.logWarning(`consumer "${consumer.streamName}": ${error.message}`)
            : Effect.void,
        ),
        Effect.retry({ schedule: storeRetry, while: isStoreError }),
      )

      return Stream.repeatEffectChunk(pull)
    }),
  )

/**
 * Feeds every record to `handler`, one at a time, and commits (by `commitMode`: after each
 * batch, default, or each record) only after the handler succeeded for it: at least once.
 * Runs until interrupted, or until the handler fails (with its error; the records it did not
 * finish are delivered again to the next instance).
 */
export const run = <E, R>(
  options: StreamOptions,
  handler: (record: StreamRecord) => Effect.Effect<unknown, E, R>,
): Effect.Effect<void, E | ConsumerGapError | InvalidArgumentError | StoreError, R | ConsumerStorage> =>
  Stream.runForEach(stream(options), handler)

// ---------------------------------------------------------------------------------------------
// Administration (the `kv consumer` commands): no lock taken
// ---------------------------------------------------------------------------------------------

interface PeekOptions {
  readonly ofType?: string | undefined
  readonly prefix?: string | undefined
  readonly limit?: number | undefined
}

/** The administrative operations on one storage (no lock taken). */
const adminOn = (storage: ConsumerStorageService) => ({
  status: (streamName: string) => Effect.flatMap(decodeStreamName(streamName), storage.status),
  peek: (streamName: string, options: PeekOptions = {}) =>
    Effect.gen(function* () {
      const checked = yield* decodePeek({
        streamName,
        ofType: options.ofType ?? "all",
        prefix: options.prefix ?? "",
        limit: options.limit ?? -1,
      })
      const window = yield* storage.read(
        checked.streamName,
        Option.none(),
        { type: checked.ofType, prefix: checked.prefix },
        checked.limit,
        Option.none(),
      )
      yield* gapAfter(checked.streamName, window.position, window)
      return window.records
    }),
  commit: (streamName: string, seq: number) =>
    Effect.flatMap(decodeMove({ streamName, seq }), (checked) =>
      storage.move(checked.streamName, checked.seq),
    ),
  delete: (streamName: string) => Effect.flatMap(decodeStreamName(streamName), storage.delete),
  unlock: (streamName: string) =>
    Effect.flatMap(decodeStreamName(streamName), (name) => storage.release(name, Option.none())),
})

type Admin = ReturnType<typeof adminOn>

const stream_ = (streamName: unknown): Attributes => ({ "kv.stream": String(streamName) })

/** `kv.consumer.*` of the administrative calls: the stream (no instance). */
const adminSpec: Spec<Admin> = {
  status: stream_,
  peek: {
    attributes: (streamName, options) => ({
      ...stream_(streamName),
      ...(options?.ofType === undefined ? {} : { "kv.type": options.ofType }),
      ...(options?.prefix === undefined ? {} : { "kv.prefix": options.prefix }),
      ...(options?.limit === undefined ? {} : { "kv.limit": options.limit }),
    }),
    result: (records) => ({ "kv.result_count": records.length }),
  },
  commit: (streamName, seq) => ({ ...stream_(streamName), "kv.seq": seq }),
  delete: { attributes: stream_, result: (deleted) => ({ "kv.deleted": deleted }) },
  unlock: { attributes: stream_, result: (released) => ({ "kv.released": released }) },
}

const admin = <A, E>(f: (admin: Admin) => Effect.Effect<A, E>): Effect.Effect<A, E, ConsumerStorage> =>
  Effect.flatMap(ConsumerStorage, (storage) => {
    const ops = adminOn(storage)
    return f(storage.spans === false ? ops : traced("kv.consumer", ops, adminSpec))
  })

/** The consumer's position and lock; `None` for an unknown consumer. */
export const status = (
  streamName: string,
): Effect.Effect<Option.Option<ConsumerStatus>, InvalidArgumentError | StoreError, ConsumerStorage> =>
  admin((ops) => ops.status(streamName))

/**
 * The records the consumer would read next, without taking its lock (from seq 1 for an unknown
 * consumer); `limit` -1: all. Fails with `ConsumerGapError` when they were trimmed.
 */
export const peek = (
  streamName: string,
  options: PeekOptions = {},
): Effect.Effect<
  ReadonlyArray<StreamRecord>,
  ConsumerGapError | InvalidArgumentError | StoreError,
  ConsumerStorage
> => admin((ops) => ops.peek(streamName, options))

/**
 * Moves the consumer's position to `seq` (the next read starts at `seq + 1`), whoever holds
 * its lock; an unknown consumer is created there. A running instance's next commit then fails
 * (`ConsumerMovedError`) and it reads on from here. `seq` beyond the stream's end is refused.
 */
export const commit = (
  streamName: string,
  seq: number,
): Effect.Effect<void, InvalidArgumentError | StoreError, ConsumerStorage> =>
  admin((ops) => ops.commit(streamName, seq))

/** Deletes the consumer (position and lock); `true` when it existed. */
const remove = (
  streamName: string,
): Effect.Effect<boolean, InvalidArgumentError | StoreError, ConsumerStorage> =>
  admin((ops) => ops.delete(streamName))

export { remove as delete }

/** Releases the consumer's lock whoever holds it (for an instance that died); `true` when it was held. */
export const unlock = (
  streamName: string,
): Effect.Effect<boolean, InvalidArgumentError | StoreError, ConsumerStorage> =>
  admin((ops) => ops.unlock(streamName))
