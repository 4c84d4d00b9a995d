/**
 * The one SQL implementation of `ConsumerStorage`, for every backend.
 *
 * Its arguments are checked once, by `Consumer.ts` (branded); its statements are compiled once
 * with named parameters (`statements.ts`). Every operation is ONE statement, atomic on its own
 * on every backend (rqlite has no interactive transactions):
 * - the lock is an upsert of the consumer's row that only takes it when it is free, expired
 *   or already the caller's (the same rule as the store's locks);
 * - a commit is an UPDATE guarded by the holder, the lock's expiry, the version the instance
 *   read and the stream's end, so an instance that lost its lock (or read a position an
 *   operator moved since) changes nothing; only when it changed nothing is the row read
 *   again, to say why;
 * - a read returns the consumer's position, whether the reader holds the lock, the stream's
 *   first and latest seq and the next records from one snapshot (one SELECT), so a trim
 *   between "where am I" and "what comes next" cannot hide a gap, and a lock taken away since
 *   the reader last looked is noticed at that read.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Fragment } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import {
  type Acquired,
  type CommitOutcome,
  type ConsumerStatus,
  ConsumerStorage,
  type ConsumerStorageService,
  type RecordFilter,
  type StreamWindow,
} from "../Consumer.js"
import { InvalidArgumentError, type StreamAction } from "../Store.js"
import { SqlExecutor } from "./executor.js"
import {
  failuresOf,
  isPostgres,
  limitBinder,
  parseRows,
  type StreamRow,
  startsWith,
  type TimeValue as Time,
  timeBinder,
  toDate,
  toStreamRecord,
} from "./sqlShared.js"
import * as Statements from "./statements.js"
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
  /** Whether the reader holds a live lock (1/true), as the database says at this read. */
  readonly held: number | boolean | string | null
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
const isTrue = (value: number | boolean | string | null | undefined) =>
  value === true || value === 1 || value === "1" || value === "t" || value === "true"

export const make: Effect.Effect<ConsumerStorageService, never, SqlClient.SqlClient | SqlExecutor | Wakeup> =
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const executor = yield* SqlExecutor
    const { compiled } = Statements.make(sql, executor)
    const wakeup = yield* Wakeup
    const isPg = isPostgres(sql)
    const keyStartsWith = startsWith(sql)

    /** Wraps backend failures once, keeping the cause and the client's own words. */
    const run = failuresOf(executor)

    /** SQLite keeps epoch milliseconds, PostgreSQL timestamptz. */
    const time = timeBinder(sql)
    const limit = limitBinder(sql)

    /** The latest seq ever written (0 when never): the stream's counter. */
    const latestSeq: Fragment = isPg
      ? sql`(SELECT "seq" FROM kv_stream_counter WHERE "id" = 1)`
      : sql`COALESCE((SELECT "seq" FROM sqlite_sequence WHERE "name" = 'kv_stream'), 0)`

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

    // --- statements ---------------------------------------------------------------------

    const selectConsumer = compiled<{ name: string }, ConsumerRow>(
      ({ name }) => sql`SELECT "name", "position", "version", "locked_by", "locked_at", "lock_expires_at",
        "created", "updated", ${latestSeq} AS "latest_seq" FROM kv_consumers WHERE "name" = ${name}`,
    )
    const selectStatus = (name: string) =>
      Effect.gen(function* () {
        const rows = yield* selectConsumer.rows({ name })
        const now = yield* Clock.currentTimeMillis
        const found = yield* parseRows("kv_consumers", rows.slice(0, 1), (row) => statusOf(row, now))
        return Option.fromNullable(found[0])
      })

    // Taken when free or expired; extended (same lockedAt) by the same holder.
    const acquireLock = compiled<
      { name: string; holder: string; now: number | Date; expires: number | Date },
      { position: Int; version: Int; locked_at: Time }
    >(
      (p) => sql`INSERT INTO kv_consumers
          ("name", "position", "version", "locked_by", "locked_at", "lock_expires_at", "created", "updated")
        VALUES (${p.name}, 0, 0, ${p.holder}, ${p.now}, ${p.expires}, ${p.now}, ${p.now})
        ON CONFLICT ("name") DO UPDATE SET
          "locked_by" = excluded."locked_by",
          "locked_at" = CASE WHEN kv_consumers."locked_by" = excluded."locked_by"
            AND kv_consumers."lock_expires_at" > excluded."locked_at"
            THEN kv_consumers."locked_at" ELSE excluded."locked_at" END,
          "lock_expires_at" = excluded."lock_expires_at"
        WHERE kv_consumers."locked_by" IS NULL OR kv_consumers."locked_by" = excluded."locked_by"
          OR kv_consumers."lock_expires_at" <= excluded."locked_at"
        RETURNING "position", "version", "locked_at"`,
    )
    const extendLock = compiled<{ name: string; holder: string; now: number | Date; expires: number | Date }>(
      (p) => sql`UPDATE kv_consumers SET "lock_expires_at" = ${p.expires}
        WHERE "name" = ${p.name} AND "locked_by" = ${p.holder} AND "lock_expires_at" > ${p.now}`,
    )
    const releaseLock = {
      byHolder: compiled<{ name: string; holder: string; now: number | Date }>(
        (p) => sql`UPDATE kv_consumers SET "locked_by" = NULL, "locked_at" = NULL, "lock_expires_at" = NULL
          WHERE "name" = ${p.name} AND "locked_by" = ${p.holder} AND "lock_expires_at" > ${p.now}`,
      ),
      anyone: compiled<{ name: string; now: number | Date }>(
        (p) => sql`UPDATE kv_consumers SET "locked_by" = NULL, "locked_at" = NULL, "lock_expires_at" = NULL
          WHERE "name" = ${p.name} AND "locked_by" IS NOT NULL AND "lock_expires_at" > ${p.now}`,
      ),
    }

    interface Window {
      readonly name: string
      /** Read after this seq; `null`: after the committed position. */
      readonly after: number | null
      /** The reader, to say whether it holds the lock; `null`: nobody asks. */
      readonly holder: string | null
      readonly now: number | Date
      readonly limit: number | null
      readonly type: string
      readonly prefix: string
    }
    // One statement, one snapshot: the position, the lock, the stream's bounds and the records.
    const window = (typed: boolean, prefixed: boolean) =>
      compiled<Window, WindowRow>((p) => {
        const from = isPg
          ? sql`COALESCE(${p.after}::bigint, (SELECT "position" FROM kv_consumers WHERE "name" = ${p.name}), 0)`
          : sql`COALESCE(${p.after}, (SELECT "position" FROM kv_consumers WHERE "name" = ${p.name}), 0)`
        const ofType = typed ? sql`AND "type" = ${p.type}` : sql.literal("")
        const under = prefixed ? sql`AND ${keyStartsWith(sql`"key"`, p.prefix)}` : sql.literal("")
        const holder = isPg ? sql`${p.holder}::text` : sql`${p.holder}`
        return sql`SELECT c."position" AS "consumer_position", c."version" AS "consumer_version",
            COALESCE(c."locked_by" = ${holder} AND c."lock_expires_at" > ${p.now}, FALSE) AS "held",
            (SELECT MIN("seq") FROM kv_stream) AS "first_seq", ${latestSeq} AS "latest_seq",
            s."seq", s."action", s."key", s."version", s."value", s."type", s."created", s."expires_at"
          FROM (SELECT 1 AS "one") AS d
          LEFT JOIN kv_consumers AS c ON c."name" = ${p.name}
          LEFT JOIN (
            SELECT "seq", "action", "key", "version", "value", "type", "created", "expires_at" FROM kv_stream
            WHERE "seq" > ${from} ${ofType} ${under} ORDER BY "seq" LIMIT ${p.limit}
          ) AS s ON 1 = 1
          ORDER BY s."seq"`
      })
    // one statement per filter combination, so none of them tests a filter it does not have
    const windows = {
      all: window(false, false),
      typed: window(true, false),
      prefixed: window(false, true),
      typedPrefixed: window(true, true),
    }
    const windowFor = (filter: RecordFilter) =>
      filter.type === "all"
        ? filter.prefix === ""
          ? windows.all
          : windows.prefixed
        : filter.prefix === ""
          ? windows.typed
          : windows.typedPrefixed

    const commitPosition = compiled<{
      name: string
      holder: string
      version: number
      position: number
      now: number | Date
    }>(
      (p) => sql`UPDATE kv_consumers SET "position" = ${p.position}, "version" = "version" + 1,
          "updated" = ${p.now}
        WHERE "name" = ${p.name} AND "locked_by" = ${p.holder} AND "lock_expires_at" > ${p.now}
          AND "version" = ${p.version} AND ${p.position} <= ${latestSeq}`,
    )
    const selectLatest = compiled<object, { n: Int }>(() => sql`SELECT ${latestSeq} AS "n"`)
    const movePosition = compiled<{ name: string; position: number; now: number | Date }>(
      (p) => sql`INSERT INTO kv_consumers
          ("name", "position", "version", "locked_by", "locked_at", "lock_expires_at", "created", "updated")
        VALUES (${p.name}, ${p.position}, 0, NULL, NULL, NULL, ${p.now}, ${p.now})
        ON CONFLICT ("name") DO UPDATE SET "position" = excluded."position",
          "version" = kv_consumers."version" + 1, "updated" = excluded."updated"`,
    )
    const deleteConsumer = compiled<{ name: string }>(
      ({ name }) => sql`DELETE FROM kv_consumers WHERE "name" = ${name}`,
    )

    // --- the service -------------------------------------------------------------------

    const service: ConsumerStorageService = {
      acquire: (name, holder, lockMillis) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const rows = yield* run(
            "consumer acquire",
            acquireLock.rows({ name, holder, now: time(now), expires: time(now + lockMillis) }),
          )
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

      extend: (name, holder, lockMillis) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const extended = extendLock.affected({
            name,
            holder,
            now: time(now),
            expires: time(now + lockMillis),
          })
          return (yield* run("consumer extend", extended)) === 1
        }),

      release: (name, holder) =>
        Effect.gen(function* () {
          const now = time(yield* Clock.currentTimeMillis)
          const released = Option.isSome(holder)
            ? releaseLock.byHolder.affected({ name, holder: holder.value, now })
            : releaseLock.anyone.affected({ name, now })
          return (yield* run("consumer unlock", released)) === 1
        }),

      read: (name, after, filter, count, reader) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const bound: Window = {
            name,
            after: Option.getOrNull(after),
            holder: Option.getOrNull(reader),
            now: time(now),
            limit: limit(count),
            type: filter.type,
            prefix: filter.prefix,
          }
          const rows = yield* run("consumer read", windowFor(filter).rows(bound))
          const head = rows[0]
          const records = yield* run(
            "consumer read",
            parseRows(
              "kv_stream",
              rows.filter((row): row is WindowRow & StreamRow => row.seq !== null),
              toStreamRecord,
            ),
          )
          return {
            position: toNumber(head?.consumer_position ?? 0),
            version: toNumber(head?.consumer_version ?? 0),
            held: isTrue(head?.held),
            firstSeq:
              head?.first_seq === null || head?.first_seq === undefined ? undefined : Number(head.first_seq),
            latestSeq: toNumber(head?.latest_seq ?? 0),
            records,
          } satisfies StreamWindow
        }),

      commit: (name, holder, version, position) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const committed = commitPosition.affected({ name, holder, version, position, now: time(now) })
          if ((yield* run("consumer commit", committed)) === 1) {
            return { _tag: "Committed" } satisfies CommitOutcome
          }
          // nothing changed: say why
          const status = yield* run("consumer commit", selectStatus(name))
          if (Option.isNone(status) || status.value.lockedBy !== holder) {
            const holder = Option.isSome(status) ? status.value.lockedBy : null
            return { _tag: "NotHeld", holder } satisfies CommitOutcome
          }
          if (status.value.version !== version) return { _tag: "Moved" } satisfies CommitOutcome
          return yield* beyondEnd(position, status.value.latestSeq)
        }),

      move: (name, position) =>
        Effect.gen(function* () {
          // the stream's end only grows: a seq within it now stays within it
          const latest = yield* run(
            "consumer commit",
            Effect.map(selectLatest.rows({}), (rows) => toNumber(rows[0]?.n ?? 0)),
          )
          if (position > latest) return yield* beyondEnd(position, latest)
          const now = yield* Clock.currentTimeMillis
          yield* run("consumer commit", movePosition.affected({ name, position, now: time(now) }))
        }),

      status: (name) => run("consumer status", selectStatus(name)),

      delete: (name) =>
        run(
          "consumer delete",
          Effect.map(deleteConsumer.affected({ name }), (deleted) => deleted === 1),
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
