/**
 * The one SQL implementation of `ConsumerStorage`, for every backend.
 *
 * Every operation is ONE statement, atomic on its own on every backend (rqlite has no
 * interactive transactions):
 * - the lock is an upsert of the consumer's row that only takes it when it is free, expired
 *   or already the caller's (the same rule as the store's locks);
 * - a commit is an UPDATE guarded by the holder, the lock's expiry, the version the instance
 *   read and the stream's end, so an instance that lost its lock (or read a position an
 *   operator moved since) changes nothing; only when it changed nothing is the row read
 *   again, to say why;
 * - a read returns the consumer's position, the stream's first and latest seq and the next
 *   records from one snapshot (one SELECT), so a trim between "where am I" and "what comes
 *   next" cannot hide a gap.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Fragment } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import {
  type Acquired,
  type CommitOutcome,
  type ConsumerStatus,
  ConsumerStorage,
  type ConsumerStorageService,
  type StreamWindow,
} from "../Consumer.js"
import { InvalidArgumentError, type StreamAction } from "../Store.js"
import { SqlExecutor } from "./executor.js"
import {
  failuresOf,
  type StreamRow,
  type TimeValue as Time,
  timeBinder,
  toDate,
  toStreamRecord,
} from "./sqlShared.js"
import { Wakeup } from "./wakeup.js"

/** Epoch milliseconds of a time a row holds. */
const toMillis = (value: Time): number => toDate(value).getTime()
type Int = number | string

interface ConsumerRow {
  readonly name: string
  readonly position: Int
  readonly version: Int
  readonly locked_by: string | null
  readonly locked_at: Time | null
  readonly lock_expires_at: Time | null
  readonly created: Time
  readonly updated: Time
  readonly latest_seq: Int | null
}

/** One row per record of the window (one row without a record when there is none). */
interface WindowRow {
  readonly consumer_position: Int | null
  readonly consumer_version: Int | null
  readonly first_seq: Int | null
  readonly latest_seq: Int | null
  readonly seq: Int | null
  readonly action: StreamAction
  readonly key: string
  readonly version: Int
  readonly value: string
  readonly type: string
  readonly created: Time
}

const toNumber = (value: Int | null): number => Number(value ?? 0)

const decodeName = Arg.decoder(Arg.name("stream name"))
const decodeHolder = Arg.decoder(Arg.name("consumer name"))
const decodeType = Arg.decoder(Arg.name("type"))
const decodeLimit = Arg.decoder(Arg.Limit)
const decodeSeq = Arg.decoder(Arg.Seq)
const decodeDuration = Arg.decoder(Arg.PositiveDuration)

export const make: Effect.Effect<ConsumerStorageService, never, SqlClient.SqlClient | SqlExecutor | Wakeup> =
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const executor = yield* SqlExecutor
    const wakeup = yield* Wakeup
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })

    /** Wraps backend failures once, keeping the cause and the client's own words. */
    const run = failuresOf(executor)

    /** SQLite keeps epoch milliseconds, PostgreSQL timestamptz. */
    const time = timeBinder(sql)

    const lockMillis = (duration: Duration.DurationInput) =>
      Effect.map(decodeDuration(duration), (checked) => Math.ceil(Duration.toMillis(checked)))

    /** The latest seq ever written (0 when never): the stream's counter. */
    const latestSeq: Fragment = isPg
      ? sql`(SELECT "seq" FROM kv_stream_counter WHERE "id" = 1)`
      : sql`COALESCE((SELECT "seq" FROM sqlite_sequence WHERE "name" = 'kv_stream'), 0)`

    const noLimit = (limit: number): Fragment =>
      isPg ? sql`LIMIT ${limit < 0 ? null : limit}` : sql`LIMIT ${limit}`

    const statusOf = (row: ConsumerRow, now: number): ConsumerStatus => {
      const live =
        row.locked_by !== null && row.lock_expires_at !== null && toMillis(row.lock_expires_at) > now
      return {
        name: row.name,
        position: toNumber(row.position),
        version: toNumber(row.version),
        lockedBy: live ? row.locked_by : null,
        lockedAt: live && row.locked_at !== null ? toDate(row.locked_at) : null,
        lockExpiresAt: live ? toDate(row.lock_expires_at!) : null,
        latestSeq: toNumber(row.latest_seq),
        created: toDate(row.created),
        updated: toDate(row.updated),
      }
    }

    const selectStatus = (name: string) =>
      Effect.gen(function* () {
        const rows = yield* executor.rows(
          sql<ConsumerRow>`SELECT "name", "position", "version", "locked_by", "locked_at", "lock_expires_at",
            "created", "updated", ${latestSeq} AS "latest_seq" FROM kv_consumers WHERE "name" = ${name}`,
        )
        const now = yield* Clock.currentTimeMillis
        return Option.map(Option.fromNullable(rows[0]), (row) => statusOf(row, now))
      })

    const service: ConsumerStorageService = {
      acquire: (name, holder, duration) =>
        Effect.gen(function* () {
          const consumer = yield* decodeName(name)
          const lockedBy = yield* decodeHolder(holder)
          const millis = yield* lockMillis(duration)
          const now = yield* Clock.currentTimeMillis
          // Taken when free or expired; extended (same lockedAt) by the same holder.
          const acquired = sql<{ position: Int; version: Int; locked_at: Time }>`INSERT INTO kv_consumers
              ("name", "position", "version", "locked_by", "locked_at", "lock_expires_at", "created", "updated")
            VALUES (${consumer}, 0, 0, ${lockedBy}, ${time(now)}, ${time(now + millis)}, ${time(now)}, ${time(now)})
            ON CONFLICT ("name") DO UPDATE SET
              "locked_by" = excluded."locked_by",
              "locked_at" = CASE WHEN kv_consumers."locked_by" = excluded."locked_by"
                AND kv_consumers."lock_expires_at" > excluded."locked_at"
                THEN kv_consumers."locked_at" ELSE excluded."locked_at" END,
              "lock_expires_at" = excluded."lock_expires_at"
            WHERE kv_consumers."locked_by" IS NULL OR kv_consumers."locked_by" = excluded."locked_by"
              OR kv_consumers."lock_expires_at" <= excluded."locked_at"
            RETURNING "position", "version", "locked_at"`
          const rows = yield* run("consumer acquire", executor.rows(acquired))
          return Option.map(
            Option.fromNullable(rows[0]),
            (row): Acquired => ({
              position: toNumber(row.position),
              version: toNumber(row.version),
              // an extended lock keeps the time it was taken
              extended: toMillis(row.locked_at) < now,
            }),
          )
        }),

      extend: (name, holder, duration) =>
        Effect.gen(function* () {
          const consumer = yield* decodeName(name)
          const lockedBy = yield* decodeHolder(holder)
          const millis = yield* lockMillis(duration)
          const now = yield* Clock.currentTimeMillis
          const extended = sql`UPDATE kv_consumers SET "lock_expires_at" = ${time(now + millis)}
            WHERE "name" = ${consumer} AND "locked_by" = ${lockedBy} AND "lock_expires_at" > ${time(now)}`
          return (yield* run("consumer extend", executor.affected(extended))) === 1
        }),

      release: (name, holder) =>
        Effect.gen(function* () {
          const consumer = yield* decodeName(name)
          const byHolder = Option.isSome(holder)
            ? sql`AND "locked_by" = ${yield* decodeHolder(holder.value)}`
            : sql`AND "locked_by" IS NOT NULL`
          const now = yield* Clock.currentTimeMillis
          const released = sql`UPDATE kv_consumers SET "locked_by" = NULL, "locked_at" = NULL, "lock_expires_at" = NULL
            WHERE "name" = ${consumer} ${byHolder} AND "lock_expires_at" > ${time(now)}`
          return (yield* run("consumer unlock", executor.affected(released))) === 1
        }),

      read: (name, after, ofType, limit) =>
        Effect.gen(function* () {
          const consumer = yield* decodeName(name)
          const type = yield* decodeType(ofType)
          const checkedLimit = yield* decodeLimit(limit)
          const from = Option.isSome(after)
            ? sql`${yield* decodeSeq(after.value)}`
            : sql`COALESCE((SELECT "position" FROM kv_consumers WHERE "name" = ${consumer}), 0)`
          const typed = type === "all" ? sql.literal("") : sql`AND "type" = ${type}`
          // One statement, one snapshot: the position, the stream's bounds and the records.
          const window = sql<WindowRow>`SELECT c."position" AS "consumer_position", c."version" AS "consumer_version",
              (SELECT MIN("seq") FROM kv_stream) AS "first_seq", ${latestSeq} AS "latest_seq",
              s."seq", s."action", s."key", s."version", s."value", s."type", s."created"
            FROM (SELECT 1 AS "one") AS d
            LEFT JOIN kv_consumers AS c ON c."name" = ${consumer}
            LEFT JOIN (
              SELECT "seq", "action", "key", "version", "value", "type", "created" FROM kv_stream
              WHERE "seq" > ${from} ${typed} ORDER BY "seq" ${noLimit(checkedLimit)}
            ) AS s ON 1 = 1
            ORDER BY s."seq"`
          const rows = yield* run("consumer read", executor.rows(window))
          const head = rows[0]
          return {
            position: toNumber(head?.consumer_position ?? 0),
            version: toNumber(head?.consumer_version ?? 0),
            firstSeq:
              head?.first_seq === null || head?.first_seq === undefined ? undefined : Number(head.first_seq),
            latestSeq: toNumber(head?.latest_seq ?? 0),
            records: rows.filter((row): row is WindowRow & StreamRow => row.seq !== null).map(toStreamRecord),
          } satisfies StreamWindow
        }),

      commit: (name, holder, version, seq) =>
        Effect.gen(function* () {
          const consumer = yield* decodeName(name)
          const lockedBy = yield* decodeHolder(holder)
          const position = yield* decodeSeq(seq)
          const now = yield* Clock.currentTimeMillis
          const committed = sql`UPDATE kv_consumers SET "position" = ${position}, "version" = "version" + 1,
              "updated" = ${time(now)}
            WHERE "name" = ${consumer} AND "locked_by" = ${lockedBy} AND "lock_expires_at" > ${time(now)}
              AND "version" = ${version} AND ${position} <= ${latestSeq}`
          if ((yield* run("consumer commit", executor.affected(committed))) === 1) {
            return { _tag: "Committed" } satisfies CommitOutcome
          }
          // nothing changed: say why
          const status = yield* run("consumer commit", selectStatus(consumer))
          if (Option.isNone(status) || status.value.lockedBy !== lockedBy) {
            const holder = Option.isSome(status) ? status.value.lockedBy : null
            return { _tag: "NotHeld", holder } satisfies CommitOutcome
          }
          if (status.value.version !== version) return { _tag: "Moved" } satisfies CommitOutcome
          return yield* beyondEnd(position, status.value.latestSeq)
        }),

      move: (name, seq) =>
        Effect.gen(function* () {
          const consumer = yield* decodeName(name)
          const position = yield* decodeSeq(seq)
          // the stream's end only grows: a seq within it now stays within it
          const latest = yield* run(
            "consumer commit",
            Effect.map(executor.rows(sql<{ n: Int }>`SELECT ${latestSeq} AS "n"`), (rows) =>
              toNumber(rows[0]?.n ?? 0),
            ),
          )
          if (position > latest) return yield* beyondEnd(position, latest)
          const now = yield* Clock.currentTimeMillis
          yield* run(
            "consumer commit",
            executor.affected(sql`INSERT INTO kv_consumers
                ("name", "position", "version", "locked_by", "locked_at", "lock_expires_at", "created", "updated")
              VALUES (${consumer}, ${position}, 0, NULL, NULL, NULL, ${time(now)}, ${time(now)})
              ON CONFLICT ("name") DO UPDATE SET "position" = excluded."position",
                "version" = kv_consumers."version" + 1, "updated" = excluded."updated"`),
          )
        }),

      status: (name) =>
        Effect.flatMap(decodeName(name), (consumer) => run("consumer status", selectStatus(consumer))),

      delete: (name) =>
        Effect.flatMap(decodeName(name), (consumer) =>
          run(
            "consumer delete",
            Effect.map(
              executor.affected(sql`DELETE FROM kv_consumers WHERE "name" = ${consumer}`),
              (deleted) => deleted === 1,
            ),
          ),
        ),

      changes: wakeup.subscribe("stream"),
    }
    return service
  })

const beyondEnd = (seq: number, latest: number) =>
  Effect.fail(
    new InvalidArgumentError({
      message: `seq ${seq} is beyond the end of the stream (its latest seq is ${latest})`,
    }),
  )

export const layer: Layer.Layer<ConsumerStorage, never, SqlClient.SqlClient | SqlExecutor | Wakeup> =
  Layer.effect(ConsumerStorage, make)
