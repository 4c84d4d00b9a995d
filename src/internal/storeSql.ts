/**
 * The one SQL implementation of `Store`, for every backend.
 *
 * It builds statements with the `SqlClient` and runs them on the backend's `SqlExecutor`; the
 * few dialect differences (merge patch, time values, lists, "no limit", stream counter) are
 * chosen once here. SQLite and rqlite share the SQLite dialect. Every statement is compiled
 * once, with named parameters (`statements.ts`).
 *
 * Arguments are decoded once, by each public method (`Arguments.ts`); the statements take the
 * decoded (branded) values.
 *
 * Every single-key write is one statement (an upsert or a conditional update with
 * `RETURNING`), atomic on its own. Multi-statement writes are one atomic batch of the
 * executor, and a batch never uses `RETURNING` (rqlite does not roll a batch back when such a
 * statement fails): what a batch reports comes from the rows each statement changed.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment, Statement } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Arg from "../Arguments.js"
import { type CheckedTask, checkTask } from "../Scheduler.js"
import {
  InvalidArgumentError,
  type KvRecord,
  type LockStatus,
  Mutation,
  type Page,
  Store,
  type StoreError,
  type StoreService,
  typeOf,
  VersionMismatchError,
} from "../Store.js"
import {
  type AtomicStatementError,
  type Service as Executor,
  SqlExecutor,
  type StatementResult,
  storeError,
} from "./executor.js"
import { makeMigrator } from "./migrations.js"
import * as ReadCoalescer from "./readCoalescer.js"
import { makeTaskWrites } from "./schedulerSql.js"
import {
  failuresOf,
  inList,
  isLive,
  isPostgres,
  limitBinder,
  listBinder,
  type MalformedRowError,
  parseRows,
  type RecordRow,
  type StreamRow,
  startsWith,
  type TimeValue,
  timeBinder,
  toDate,
  toRecord,
  toStreamRecord,
} from "./sqlShared.js"
import * as Statements from "./statements.js"
import { versionMismatchMarker } from "./storeSchema.js"
import { Wakeup } from "./wakeup.js"

interface LockRow {
  readonly name: string
  readonly locked_by: string
  readonly locked_at: TimeValue
  readonly expires_at: TimeValue
}

const toLockStatus = (row: LockRow): LockStatus => ({
  name: row.name,
  lockedBy: row.locked_by,
  lockedAt: toDate(row.locked_at),
  expiresAt: toDate(row.expires_at),
})

/**
 * The smallest string above every string that starts with `prefix`, in code point order
 * (which is byte order of UTF-8: SQLite's BINARY collation and PostgreSQL's "C"), or
 * `undefined` when there is none. `[prefix, successor)` is then exactly the keys with
 * that prefix, so no LIKE pattern (and no escaping of `%`, `_`, `\`) is involved.
 */
export const prefixSuccessor = (prefix: string): string | undefined => {
  const codePoints = Array.from(prefix)
  while (codePoints.length > 0) {
    const last = codePoints.pop()!.codePointAt(0)!
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1 // skip the surrogate block
      codePoints.push(String.fromCodePoint(next))
      return codePoints.join("")
    }
  }
  return undefined
}

/** Whether the caller runs inside a transaction of the client (a read then stays in it). */
const inTransaction = (context: Context.Context<never>): boolean =>
  Option.isSome(Context.getOption(context, SqlClient.TransactionConnection))

/** RqliteClient's TypeId (not imported: the SQLite and PostgreSQL bundles must not load that client). */
const rqliteClientId = Symbol.for("effect-kv/RqliteClient")

/** A batch's insert met a live key (see `createConflict`): it set the NOT NULL version to NULL. */
const isLiveConflict = (error: SqlError, explain: Executor["explain"]): boolean =>
  /NOT NULL constraint failed: kv_records\.version|null value in column "version" of relation "kv_records"/i.test(
    explain(error).detail,
  )

/** What a statement of a `mutateAll` batch is for, to explain its failure and count its rows. */
type BatchStep =
  | { readonly kind: "guard"; readonly key: string; readonly version: number }
  /** an increment's check that the key's value is a number */
  | { readonly kind: "number"; readonly key: string }
  /** a statement that stores the batch's tasks (or reads them back) */
  | { readonly kind: "task" }
  | { readonly kind: "write"; readonly mutation: number; readonly key?: string; readonly version?: number }
  | { readonly kind: "set"; readonly writes: ReadonlyArray<KeyedWrite> }

/** How a run of writes is one statement: by its version check, or (version -1) by whether its keys exist. */
type SetKind = "create" | "update" | "new" | "existing"

/** A put or patch of a `mutateAll` batch, decoded. */
interface KeyedWrite {
  readonly op: "put" | "patch"
  /** its position in the batch */
  readonly mutation: number
  readonly key: Arg.Key
  readonly version: Arg.Version
  readonly value: Arg.Json | Arg.MergePatch
  /** a patch without a type keeps the record's (NULL) */
  readonly type: string | null
  /** when it expires, epoch ms; NULL: a put clears the expiry, a patch keeps it */
  readonly expiresAt: number | null
}

/**
 * The text a set-based write raises when row `n` (from 1) of its arrays fails its version
 * check; a row number, not a key, so that no key text has to survive an error message.
 */
const setMismatchMarker = "effect-kv: version mismatch at row "
const setMismatchRow = /effect-kv: version mismatch at row (\d+)/
/** What a run of unconditional writes raises when a key's existence was not what its plan read. */
const setReplanMarker = "effect-kv: batch planned on a stale read at row "
const setReplan = /effect-kv: batch planned on a stale read at row \d+/

/** A batch's plan read a key's existence that changed before the batch ran: plan it again. */
class Replan extends Data.TaggedError("Replan") {}
/** Plans of a batch, after which it is planned without a read: every write one statement. */
const maxPlans = 3

/** What a batch's plan knows of a key when a run starts; `undefined`: not known. */
interface KnownKeys {
  /** whether it has a live record */
  readonly exists: (key: string) => boolean | undefined
  /** whether it has an expired record (still in the table) */
  readonly expired: (key: string) => boolean | undefined
}

/**
 * Writes of one run of a batch that can be one statement over arrays: puts (or patches) of
 * the same kind of version check, on keys in strictly increasing order, none known to hold an
 * expired record. Distinct keys make the checks of the run independent of its own writes;
 * increasing keys keep the stream records (which PostgreSQL appends per statement and per
 * kind of row change, in key order) in mutation order: a write replacing an expired record is
 * an update of its row among inserts, so it goes on its own.
 */
const continuesRun = (previous: KeyedWrite, next: KeyedWrite, known: KnownKeys): boolean => {
  if (
    previous.op !== next.op ||
    Math.sign(previous.version) !== Math.sign(next.version) ||
    !codePointLess(previous.key, next.key) ||
    known.expired(previous.key) !== false ||
    known.expired(next.key) !== false
  ) {
    return false
  }
  if (next.version >= 0) return true
  // A create and an update in one statement would append their stream records per kind.
  const before = known.exists(previous.key)
  return before !== undefined && before === known.exists(next.key)
}

/** Any run could be formed, as far as the batch alone tells. */
const optimistic: KnownKeys = { exists: () => true, expired: () => false }

/** A UTF-16 code unit, moved so that code units compare in code point order (surrogates last). */
const inCodePointOrder = (unit: number): number =>
  unit >= 0xd800 ? (unit <= 0xdfff ? unit + 0x2000 : unit - 0x800) : unit

/**
 * `a < b` in code point order, the order of PostgreSQL's "C" collation and SQLite's BINARY
 * (JavaScript's `<` compares UTF-16 code units, which puts U+E000..U+FFFF after the others).
 */
export const codePointLess = (a: string, b: string): boolean => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return inCodePointOrder(x) < inCodePointOrder(y)
  }
  return a.length < b.length
}

/** The rows of a batch's keys when it was planned: live (`true`) or expired; absent: no row. */
type KeyStates = ReadonlyMap<string, boolean>

/** Runs shorter than this keep one statement per mutation. */
const minSetRun = 2

/** Keys from `from` on, below `to` when there is a bound above (a prefix may have none). */
interface KeyRange {
  readonly from: string
  readonly to: string | undefined
}

const prefixRange = (prefix: string): KeyRange => ({ from: prefix, to: prefixSuccessor(prefix) })

interface CheckedPage {
  readonly offset: Arg.Offset
  /** -1: no limit */
  readonly limit: Arg.Limit
}

// Argument decoders, one per method (or mutation), made once.
const decodeKey = Arg.decoder(Arg.Key)
const decodeKeys = (keys: Iterable<string>) => Effect.forEach(new Set(keys), decodeKey)
const decodePageFields = Arg.args({ offset: Arg.Offset, limit: Arg.Limit })
const decodePage = (page: Page | undefined): Effect.Effect<CheckedPage, InvalidArgumentError> =>
  page === undefined
    ? Effect.succeed({ offset: 0 as Arg.Offset, limit: -1 as Arg.Limit })
    : decodePageFields({ offset: page.offset ?? 0, limit: page.limit ?? -1 })
const decodePut = Arg.args({
  key: Arg.Key,
  version: Arg.Version,
  value: Arg.Value,
  type: Arg.optional(Arg.RecordType),
  ttl: Arg.optional(Arg.Ttl),
})
const decodePatch = Arg.args({
  key: Arg.Key,
  version: Arg.Version,
  patch: Arg.MergePatch,
  type: Arg.optional(Arg.RecordType),
  ttl: Arg.optional(Arg.Ttl),
})
/** Decoded write arguments with the expiry their `ttl` gives at `now` (`expiresAt`). */
const withExpiry = <A extends { readonly ttl: Arg.Millis | undefined }>(
  now: number,
  decoded: Effect.Effect<A, InvalidArgumentError>,
): Effect.Effect<A & { readonly expiresAt: number | null }, InvalidArgumentError> =>
  Effect.flatMap(decoded, (args) =>
    Effect.map(expiryOf(now, args.ttl), (expiresAt) => ({ ...args, expiresAt })),
  )

/** When a record written at `now` with `ttl` expires (epoch ms); `null` without a ttl. */
const expiryOf = (
  now: number,
  ttl: Arg.Millis | undefined,
): Effect.Effect<number | null, InvalidArgumentError> => {
  if (ttl === undefined) return Effect.succeed(null)
  const expiresAt = now + ttl
  return Arg.isStorable(expiresAt)
    ? Effect.succeed(expiresAt)
    : Effect.fail(
        new InvalidArgumentError({ message: "invalid ttl: the record would expire after the year 9999" }),
      )
}
const decodePrefix = Arg.decoder(Arg.Prefix)
const decodeRange = Arg.args({ from: Arg.From, to: Arg.To })
const decodeType = Arg.decoder(Arg.RecordType)
const decodeOptionalType = Arg.args({ type: Arg.optional(Arg.RecordType) })
const decodeStream = Arg.args({
  type: Arg.RecordType,
  seq: Arg.Seq,
  limit: Arg.Limit,
  prefix: Arg.optional(Arg.Prefix),
})
const decodeSeq = Arg.decoder(Arg.Seq)
const decodeLockAcquire = Arg.args({ name: Arg.LockName, holder: Arg.LockHolder, duration: Arg.Millis })
const decodeLockRelease = Arg.args({ name: Arg.LockName, holder: Arg.LockHolder })
const decodeLockName = Arg.decoder(Arg.LockName)
const decodeCheck = Arg.args({ key: Arg.Key, version: Arg.nonNegative("version") })
const decodeIncrement = Arg.args({
  key: Arg.Key,
  by: Arg.checked(Schema.Number, (n) =>
    typeof n === "number" && Number.isFinite(n)
      ? undefined
      : `the increment must be a finite number, got ${typeof n === "string" ? JSON.stringify(n) : String(n)}`,
  ),
  ttl: Arg.optional(Arg.Ttl),
})
const notANumber = (key: string) =>
  new InvalidArgumentError({ message: `cannot increment "${key}": its value is not a number` })

export const make: Effect.Effect<StoreService, never, SqlClient.SqlClient | SqlExecutor | Wakeup> =
  Effect.gen(function* () {
    const client = yield* SqlClient.SqlClient
    const sql = client.withoutTransforms()
    const executor = yield* SqlExecutor
    const { compiled } = Statements.make(sql, executor)
    const isPg = isPostgres(sql)

    /** Wraps backend failures once, keeping the cause and the client's own words. */
    const run = failuresOf(executor)

    // --- dialect differences -----------------------------------------------------------

    /** SQLite keeps epoch milliseconds, PostgreSQL timestamptz. */
    const time = timeBinder(sql)
    /** An expiry as bound (NULL: none). */
    const expiryTime = (expiresAt: number | null) => (expiresAt === null ? null : time(expiresAt))
    const limit = limitBinder(sql)
    const list = listBinder(sql)
    const keyIn = inList(sql)

    /** RFC 7396: SQLite's built-in json_patch, PostgreSQL's kv_merge_patch (see migrations.ts). */
    const mergePatch = (target: Fragment, patch: unknown): Fragment =>
      isPg ? sql`kv_merge_patch(${target}::json, ${patch}::json)::text` : sql`json_patch(${target}, ${patch})`

    const latestSeq = isPg
      ? sql<{ seq: number | string }>`SELECT seq FROM kv_stream_counter WHERE id = 1`
      : sql<{ seq: number | string }>`SELECT seq FROM sqlite_sequence WHERE name = 'kv_stream'`

    // --- reading rows --------------------------------------------------------------------

    const records = (rows: ReadonlyArray<RecordRow>) => parseRows("kv_records", rows, toRecord)
    const countOf = (rows: ReadonlyArray<{ n: number | string }>) => Number(rows[0]?.n ?? 0)

    // --- statements ---------------------------------------------------------------------

    // Identifiers are quoted: rqlite parses statements to find `RETURNING`, and its parser
    // gives up on an unquoted `key` (or a subquery), silently dropping the returned rows.
    const columns = sql.literal(`"key", "version", "value", "type", "created", "expires_at"`)
    const returning = sql.literal(`RETURNING "key", "version", "value", "type", "created", "expires_at"`)
    const noReturning = sql.literal("")

    // Expiry: a record is live while `expires_at` is unset or after `now` (the caller's Clock,
    // bound); an expired record is absent for every read, count, delete and version check.
    // Reads by key filter in the process (`isLive`), so that coalesced reads of callers with
    // different clocks can share a statement; everything else filters in SQL.
    // (`COALESCE(... > now, TRUE)`, not `IS NULL OR ... > now`: one parameter, and a shorter
    // statement for rqlite to parse)
    const liveAt = (now: unknown, table?: string) => {
      const column = table === undefined ? sql`"expires_at"` : sql`${sql.literal(table)}."expires_at"`
      return sql`COALESCE(${column} > ${now}, TRUE)`
    }
    // An upsert's conflicting row is judged at the write's own time, the new row's `created`
    // (`excluded."created"`), not at a bound `now`: rqlite parses every statement, and an
    // upsert with parameters in its DO UPDATE part (or a longer one) cost its puts a quarter
    // of their rate at 50 in flight. NULL `expires_at` is not expired.
    const expiredRow = sql`kv_records."expires_at" <= excluded."created"`

    const selectKey = compiled<{ key: Arg.Key }, RecordRow>(
      ({ key }) => sql`SELECT ${columns} FROM kv_records WHERE "key" = ${key}`,
    )
    const selectKeys = compiled<{ keys: unknown }, RecordRow>(
      ({ keys }) => sql`SELECT ${columns} FROM kv_records WHERE ${keyIn(sql`"key"`, keys)}`,
    )
    /** The keys that have a row, and whether it is live (1) or expired (0) at `now`. */
    const selectKeyStates = compiled<{ keys: unknown; now: number | Date }, { key: string; live: unknown }>(
      ({ keys, now }) => sql`SELECT "key", CASE WHEN ${liveAt(now)} THEN 1 ELSE 0 END AS "live"
        FROM kv_records WHERE ${keyIn(sql`"key"`, keys)}`,
    )

    /** The rows of these (distinct) keys: one `=` for one key, else one bound list. */
    const selectRows = (keys: ReadonlyArray<Arg.Key>): Effect.Effect<ReadonlyArray<RecordRow>, SqlError> =>
      keys.length === 1 ? selectKey.rows({ key: keys[0]! }) : selectKeys.rows({ keys: list(keys) })

    /**
     * Reads by key (`get`, `getBatch`) of different fibers share round trips on PostgreSQL and
     * rqlite (see readCoalescer.ts). Reads in flight at once: two on PostgreSQL (its pool serves
     * them in parallel), one on rqlite (where bigger, fewer linearizable reads served 1.7-3.9x
     * the rate of two in flight in bench:store). SQLite answers synchronously, without a round trip to share. A read inside
     * the caller's own PostgreSQL transaction stays in it.
     */
    const readRows = ((): ((
      keys: ReadonlyArray<Arg.Key>,
    ) => Effect.Effect<ReadonlyArray<RecordRow>, SqlError>) => {
      if (!isPg && !(rqliteClientId in client)) return selectRows
      const shared = ReadCoalescer.make({
        fetch: selectRows as (
          keys: ReadonlyArray<string>,
        ) => Effect.Effect<ReadonlyArray<RecordRow>, SqlError>,
        keyOf: (row: RecordRow) => row.key,
        maxInFlight: isPg ? 2 : 1,
        maxKeys: 1000,
      })
      if (!isPg) return shared
      return (keys) =>
        Effect.contextWithEffect((context: Context.Context<never>) =>
          inTransaction(context) ? selectRows(keys) : shared(keys),
        )
    })()

    /**
     * Reads of key ranges (`getPrefix`, `getRange`, without a type) of different fibers share
     * round trips on PostgreSQL like reads by key: one query for every range waiting, each
     * with its page (`LATERAL`) and its caller's time, its rows tagged with the range's request.
     */
    const readRange = (():
      | ((
          range: ByRange,
          page: CheckedPage,
          now: number,
        ) => Effect.Effect<ReadonlyArray<RecordRow>, SqlError>)
      | undefined => {
      if (!isPg) return undefined
      interface Requests {
        readonly requests: ReadonlyArray<string>
        readonly froms: ReadonlyArray<string>
        readonly tos: ReadonlyArray<string>
        readonly limits: ReadonlyArray<number | null>
        readonly offsets: ReadonlyArray<number>
        /** RFC 3339 */
        readonly nows: ReadonlyArray<string>
      }
      type Request = readonly [from: string, to: string, limit: number | null, offset: number, now: number]
      const selectRanges = compiled<Requests, RecordRow & { readonly request: string }>(
        (
          p,
        ) => sql`SELECT q."request", r.* FROM unnest(${p.requests}::text[], ${p.froms}::text[], ${p.tos}::text[],
            ${p.limits}::bigint[], ${p.offsets}::bigint[], ${p.nows}::timestamptz[])
            WITH ORDINALITY AS q("request", "from", "to", "limit", "offset", "now", "n")
          CROSS JOIN LATERAL (SELECT ${columns} FROM kv_records WHERE "key" >= q."from" AND "key" < q."to"
            AND ${liveAt(sql`q."now"`)} ORDER BY "key" LIMIT q."limit" OFFSET q."offset") AS r
          ORDER BY q."n", r."key"`,
      )
      const fetch = (requests: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<RecordRow>, SqlError> => {
        const parsed = requests.map((request) => JSON.parse(request) as Request)
        if (parsed.length === 1) {
          const [from, to, limit, offset, now] = parsed[0]!
          return selects.range.rows({ from, to, limit, offset, now: time(now) })
        }
        return selectRanges.rows({
          requests,
          froms: parsed.map((r) => r[0]),
          tos: parsed.map((r) => r[1]),
          limits: parsed.map((r) => r[2]),
          offsets: parsed.map((r) => r[3]),
          nows: parsed.map((r) => new Date(r[4]).toISOString()),
        })
      }
      const shared = ReadCoalescer.make({
        fetch,
        keyOf: (row: RecordRow) => (row as RecordRow & { readonly request: string }).request,
        maxInFlight: 2,
        maxKeys: 100,
      })
      return (range, page, now) =>
        Effect.contextWithEffect((context: Context.Context<never>) => {
          const request = JSON.stringify([range.from, range.to, limit(page.limit), page.offset, now])
          return inTransaction(context) ? fetch([request]) : shared([request])
        })
    })()

    // The conditions of reads and deletes by key range or type; each read and delete below is
    // compiled once per condition, with the page (`limit`, `offset`) as parameters.
    interface ByRange {
      readonly from: string
      readonly to: string
    }
    interface ByFrom {
      readonly from: string
    }
    interface ByType {
      readonly type: string
    }
    interface Paged {
      readonly limit: number | null
      readonly offset: number
    }
    /** The time the expiry of records is judged at. */
    interface At {
      readonly now: number | Date
    }
    const inRange = (p: { from: unknown; to: unknown }) => sql`"key" >= ${p.from} AND "key" < ${p.to}`
    const fromOn = (p: { from: unknown }) => sql`"key" >= ${p.from}`
    const ofType = (p: { type: unknown }) => sql`"type" = ${p.type}`
    const everything = () => sql`1 = 1`

    const selectWhere = <P extends object>(where: (p: Statements.Placeholders<P & Paged & At>) => Fragment) =>
      compiled<P & Paged & At, RecordRow>(
        (p) =>
          sql`SELECT ${columns} FROM kv_records WHERE ${where(p)} AND ${liveAt(p.now)}
            ORDER BY "key" LIMIT ${p.limit} OFFSET ${p.offset}`,
      )
    const selects = {
      range: selectWhere<ByRange>(inRange),
      from: selectWhere<ByFrom>(fromOn),
      rangeOfType: selectWhere<ByRange & ByType>((p) => sql`${inRange(p)} AND ${ofType(p)}`),
      fromOfType: selectWhere<ByFrom & ByType>((p) => sql`${fromOn(p)} AND ${ofType(p)}`),
      type: selectWhere<ByType>(ofType),
      all: selectWhere<object>(everything),
    }

    const countWhere = <P extends object>(where: (p: Statements.Placeholders<P & At>) => Fragment) =>
      compiled<P & At, { n: number | string }>(
        (p) => sql`SELECT COUNT(*) AS n FROM kv_records WHERE ${where(p)} AND ${liveAt(p.now)}`,
      )
    const counts = {
      range: countWhere<ByRange>(inRange),
      from: countWhere<ByFrom>(fromOn),
      all: countWhere<object>(everything),
    }

    /**
     * Deletes the keys matching a condition, all of them or a page of them in key order, so that
     * their stream records are in key order: PostgreSQL's trigger sorts them; SQLite deletes
     * them one by one in the order they are queued (`kv_delete_keys`, see storeSchema.ts).
     * Counted by rows changed. Expired records are left to the sweep (see `expire`).
     */
    const deleteWhere = <P extends object>(where: (p: Statements.Placeholders<P & At>) => Fragment) =>
      isPg
        ? {
            all: compiled<P & At>((p) => sql`DELETE FROM kv_records WHERE ${where(p)} AND ${liveAt(p.now)}`),
            page: compiled<P & Paged & At>(
              (p) => sql`DELETE FROM kv_records WHERE "key" IN (
                SELECT "key" FROM kv_records WHERE ${where(p)} AND ${liveAt(p.now)}
                ORDER BY "key" LIMIT ${p.limit} OFFSET ${p.offset}) AND ${liveAt(p.now)}`,
            ),
          }
        : {
            all: compiled<P & At>(
              (p) => sql`INSERT INTO kv_delete_keys ("key")
                SELECT "key" FROM kv_records WHERE ${where(p)} AND ${liveAt(p.now)} ORDER BY "key"`,
            ),
            page: compiled<P & Paged & At>(
              (p) => sql`INSERT INTO kv_delete_keys ("key")
                SELECT "key" FROM kv_records WHERE ${where(p)} AND ${liveAt(p.now)}
                ORDER BY "key" LIMIT ${p.limit} OFFSET ${p.offset}`,
            ),
          }
    const deletes = {
      range: deleteWhere<ByRange>(inRange),
      from: deleteWhere<ByFrom>(fromOn),
      all: deleteWhere<object>(everything),
    }
    const deleteKey = deleteWhere<{ key: Arg.Key }>(({ key }) => sql`"key" = ${key}`).all
    const deleteKeys = deleteWhere<{ keys: unknown }>(({ keys }) => keyIn(sql`"key"`, keys)).all

    /**
     * The expiry sweep's step: deletes up to `limit` records expired at `now`, the ones that
     * expired first (the order of the index `kv_records_expiry`, so that a step reads only
     * them: ordered by key, SQLite would walk the whole key index), their delete records in key
     * order. Each is deleted only if it is still expired then (a concurrent sweep or write may
     * have got there first), so that records are deleted and counted once whoever sweeps. Its
     * delete records keep `expires_at` (see 0009_expiry): on SQLite through the
     * `kv_expire_keys` queue, on PostgreSQL by marking the transaction first.
     */
    const sweepStep = ((): ((
      p: At & { limit: number },
    ) => Effect.Effect<number, SqlError | AtomicStatementError>) => {
      if (!isPg) {
        return compiled<At & { limit: number }>(
          ({ limit, now }) => sql`INSERT INTO kv_expire_keys ("key", "now")
            SELECT e."key", ${now} FROM (SELECT "key" FROM kv_records WHERE "expires_at" <= ${now}
              ORDER BY "expires_at", "key" LIMIT ${limit}) AS e ORDER BY e."key"`,
        ).affected
      }
      const mark = compiled<object>(() => sql`SELECT set_config('effect_kv.expiring', 'on', true)`)
      // the outer condition again: a row a concurrent sweep or write changed meanwhile is checked anew
      const deleteExpired = compiled<At & { limit: number }>(
        ({ limit, now }) => sql`DELETE FROM kv_records WHERE "key" IN (
          SELECT "key" FROM kv_records WHERE "expires_at" <= ${now} ORDER BY "expires_at", "key" LIMIT ${limit})
          AND "expires_at" <= ${now}`,
      )
      return (p) =>
        Effect.map(executor.atomic([mark({}), deleteExpired(p)]), (results) => results[1]!.affected)
    })()
    /**
     * Whether any record is expired at `now`: a read, so that a sweep with nothing to do writes
     * nothing. In the index's order: with a bare `LIMIT 1`, PostgreSQL (no statistics yet on a
     * freshly filled table) expected an early match and scanned the whole table instead.
     */
    const anyExpired = compiled<At, { found: unknown }>(
      ({ now }) =>
        sql`SELECT 1 AS "found" FROM kv_records WHERE "expires_at" <= ${now} ORDER BY "expires_at" LIMIT 1`,
    )
    /** Records one sweep step deletes at most (one statement, one transaction). */
    const sweepLimit = 1000

    /** The page as bound. */
    const paged = (page: CheckedPage): Paged => ({ limit: limit(page.limit), offset: page.offset })

    /** The read of a key range (of one type, when given), of the records live at `now`. */
    const selectRange = (range: KeyRange, page: CheckedPage, type: string | undefined, now: number) => {
      if (readRange !== undefined && type === undefined && range.to !== undefined) {
        return readRange({ from: range.from, to: range.to }, page, now)
      }
      const bounds = { ...paged(page), from: range.from, now: time(now) }
      if (range.to === undefined) {
        return type === undefined ? selects.from.rows(bounds) : selects.fromOfType.rows({ ...bounds, type })
      }
      const to = range.to
      return type === undefined
        ? selects.range.rows({ ...bounds, to })
        : selects.rangeOfType.rows({ ...bounds, to, type })
    }

    /** The delete of a key range (`undefined`: every key), all or a page, of the records live at `now`. */
    const deleteRange = (
      range: KeyRange | undefined,
      page: CheckedPage,
      at: number | Date,
    ): Statement<never> => {
      const whole = page.offset === 0 && page.limit < 0
      const now = { now: at }
      if (range === undefined)
        return whole ? deletes.all.all(now) : deletes.all.page({ ...paged(page), ...now })
      if (range.to === undefined) {
        return whole
          ? deletes.from.all({ from: range.from, ...now })
          : deletes.from.page({ ...paged(page), from: range.from, ...now })
      }
      const bounds = { from: range.from, to: range.to, ...now }
      return whole ? deletes.range.all(bounds) : deletes.range.page({ ...paged(page), ...bounds })
    }

    // The writes of `put` and `patch`, by version: -1 upserts, 0 inserts, n > 0 updates
    // version n. A single write returns the record (none: the version check left the row
    // alone); in a batch a live key fails an insert (the batch's guard explains it).
    //
    // An expired row counts as absent: an upsert or insert that meets one replaces it with a new
    // record (version 1, its own `created`; the stream trigger writes the expiry's `delete` first,
    // see 0009_expiry), and an update of a version does not find it. A write's `created` is
    // also the `now` its expiry checks are made at.
    interface Write {
      readonly key: Arg.Key
      readonly value: Arg.Json | Arg.MergePatch
      readonly type: string | null
      /** when the record expires; NULL: a put clears the expiry, a patch keeps it */
      readonly expires: number | Date | null
      readonly created: number | Date
    }
    interface Replace extends Write {
      readonly version: Arg.Version
    }
    const insert = (p: Statements.Placeholders<Write>, value: unknown, type: unknown) =>
      sql`INSERT INTO kv_records ("key", "version", "value", "type", "created", "expires_at")
        VALUES (${p.key}, 1, ${value}, ${type}, ${p.created}, ${p.expires})`
    /** `then` where an upsert's conflicting row is live, else (it expired) `otherwise`. */
    const ifLive = (then: Fragment, otherwise: Fragment) =>
      sql`CASE WHEN ${expiredRow} THEN ${otherwise} ELSE ${then} END`
    /**
     * An upsert's columns: the record's own where it is live, a new record's where it expired.
     * A column given as `undefined` is the new record's either way (a put's value, type and
     * expiry): no CASE.
     */
    const upsertSet = (
      value: Fragment | undefined,
      type: Fragment | undefined,
      expires: Fragment | undefined,
    ) => {
      const column = (name: string, live: Fragment | undefined) => {
        const fresh = sql`excluded.${sql.literal(`"${name}"`)}`
        return sql`${sql.literal(`"${name}"`)} = ${live === undefined ? fresh : ifLive(live, fresh)}`
      }
      return sql`"version" = ${ifLive(sql`kv_records."version" + 1`, sql`1`)},
        ${column("value", value)}, ${column("type", type)},
        "created" = ${ifLive(sql`kv_records."created"`, sql`excluded."created"`)},
        ${column("expires_at", expires)}`
    }
    /**
     * An insert's answer to an existing row: replace it if it expired. A single write returns
     * nothing for a live row (a mismatch); in a batch a live row fails the NOT NULL version
     * (after the guard passed: a concurrent writer on PostgreSQL), and so the batch.
     */
    const createConflict = (tail: Fragment) =>
      tail === noReturning
        ? sql`ON CONFLICT ("key") DO UPDATE SET "version" = CASE WHEN ${expiredRow} THEN 1 ELSE NULL END,
            "value" = excluded."value", "type" = excluded."type", "created" = excluded."created",
            "expires_at" = excluded."expires_at"`
        : sql`ON CONFLICT ("key") DO UPDATE SET "version" = 1, "value" = excluded."value", "type" = excluded."type",
            "created" = excluded."created", "expires_at" = excluded."expires_at"
            WHERE ${expiredRow} ${tail}`
    const putWrites = (tail: Fragment) => ({
      upsert: compiled<Write, RecordRow>(
        (p) => sql`${insert(p, p.value, p.type)} ON CONFLICT ("key") DO UPDATE SET
          ${upsertSet(undefined, undefined, undefined)} ${tail}`,
      ),
      create: compiled<Write, RecordRow>((p) => sql`${insert(p, p.value, p.type)} ${createConflict(tail)}`),
      update: compiled<Replace, RecordRow>(
        (p) => sql`UPDATE kv_records SET "version" = "version" + 1, "value" = ${p.value}, "type" = ${p.type},
          "expires_at" = ${p.expires}
          WHERE "key" = ${p.key} AND "version" = ${p.version} AND ${liveAt(p.created)} ${tail}`,
      ),
    })
    // a patch keeps the record's type unless one is given (`type` NULL); a new key is an object
    const patchWrites = (tail: Fragment) => {
      const created = (p: Statements.Placeholders<Write>) =>
        insert(p, mergePatch(sql`'{}'`, p.value), sql`COALESCE(${p.type}, 'object')`)
      return {
        upsert: compiled<Write, RecordRow>(
          (p) =>
            sql`${created(p)} ON CONFLICT ("key") DO UPDATE SET ${upsertSet(
              mergePatch(sql`kv_records."value"`, p.value),
              sql`COALESCE(${p.type}, kv_records."type")`,
              sql`COALESCE(excluded."expires_at", kv_records."expires_at")`,
            )} ${tail}`,
        ),
        create: compiled<Write, RecordRow>((p) => sql`${created(p)} ${createConflict(tail)}`),
        update: compiled<Replace, RecordRow>(
          (
            p,
          ) => sql`UPDATE kv_records SET "version" = "version" + 1, "value" = ${mergePatch(sql`"value"`, p.value)},
            "type" = COALESCE(${p.type}, "type"), "expires_at" = COALESCE(${p.expires}, "expires_at")
            WHERE "key" = ${p.key} AND "version" = ${p.version} AND ${liveAt(p.created)} ${tail}`,
        ),
      }
    }
    const writes = {
      put: { single: putWrites(returning), batch: putWrites(noReturning) },
      patch: { single: patchWrites(returning), batch: patchWrites(noReturning) },
    }

    /**
     * A run of puts or patches (see `continuesRun`) as ONE statement over arrays, on PostgreSQL:
     * a round trip per mutation is most of the time of a big batch there. The write is a
     * data-modifying CTE whose version check is the write itself (an insert that found a live
     * key, an update that found another version or an expired record, even after waiting for a
     * concurrent writer, leave their row out of `RETURNING`); the outer query then fails the
     * statement, and so the batch, naming the first such row. `undefined` on SQLite (and
     * rqlite), whose batches have no round trip per statement.
     */
    const setWrites = (():
      | ((run: ReadonlyArray<KeyedWrite>, created: number | Date, kind: SetKind) => Statement<unknown>)
      | undefined => {
      if (!isPg) return undefined
      interface SetParams {
        readonly keys: ReadonlyArray<string>
        readonly versions: ReadonlyArray<number>
        readonly values: ReadonlyArray<string>
        readonly types: ReadonlyArray<string | null>
        /** RFC 3339, or null */
        readonly expires: ReadonlyArray<string | null>
        readonly created: number | Date
      }
      const input = (p: Statements.Placeholders<SetParams>) =>
        sql`SELECT * FROM unnest(${p.keys}::text[], ${p.versions}::bigint[], ${p.values}::text[], ${p.types}::text[],
          ${p.expires}::timestamptz[]) WITH ORDINALITY AS u("key", "version", "value", "type", "expires_at", "row")`
      const failFirstMissing = (
        marker: string,
      ) => sql`SELECT CAST(${marker} || min(i."row") AS integer) AS "row"
        FROM input AS i WHERE NOT EXISTS (SELECT 1 FROM written AS w WHERE w."key" = i."key") HAVING count(*) > 0`
      const create = (value: Fragment, type: Fragment, marker = setMismatchMarker) =>
        compiled<SetParams>(
          (p) => sql`WITH input AS (${input(p)}),
            written AS (INSERT INTO kv_records ("key", "version", "value", "type", "created", "expires_at")
              SELECT i."key", 1, ${value}, ${type}, ${p.created}::timestamptz, i."expires_at"
              FROM input AS i ORDER BY i."row"
              ON CONFLICT ("key") DO UPDATE SET "version" = 1, "value" = excluded."value", "type" = excluded."type",
                "created" = excluded."created", "expires_at" = excluded."expires_at"
              WHERE ${expiredRow}
              RETURNING "key")
            ${failFirstMissing(marker)}`,
        )
      // `checked`: the version too; else (a run of unconditional writes of existing keys) any version
      const update = (value: Fragment, type: Fragment, expires: Fragment, checked = true) =>
        compiled<SetParams>(
          (p) => sql`WITH input AS (${input(p)}),
            written AS (UPDATE kv_records AS r SET "version" = r."version" + 1, "value" = ${value}, "type" = ${type},
                "expires_at" = ${expires}
              FROM input AS i WHERE r."key" = i."key" ${checked ? sql`AND r."version" = i."version"` : sql``}
                AND ${liveAt(sql`${p.created}::timestamptz`, "r")}
              RETURNING r."key")
            ${failFirstMissing(checked ? setMismatchMarker : setReplanMarker)}`,
        )
      const writesOf = (
        value: { create: Fragment; update: Fragment },
        type: { create: Fragment; update: Fragment },
        expires: Fragment,
      ) => ({
        create: create(value.create, type.create),
        update: update(value.update, type.update, expires),
        new: create(value.create, type.create, setReplanMarker),
        existing: update(value.update, type.update, expires, false),
      })
      const statements = {
        put: writesOf(
          { create: sql`i."value"`, update: sql`i."value"` },
          { create: sql`i."type"`, update: sql`i."type"` },
          sql`i."expires_at"`,
        ),
        patch: writesOf(
          {
            create: mergePatch(sql`'{}'`, sql`i."value"`),
            update: mergePatch(sql`r."value"`, sql`i."value"`),
          },
          { create: sql`COALESCE(i."type", 'object')`, update: sql`COALESCE(i."type", r."type")` },
          sql`COALESCE(i."expires_at", r."expires_at")`,
        ),
      }
      return (run, created, kind) => {
        const first = run[0]!
        const params: SetParams = {
          keys: run.map((w) => w.key),
          versions: run.map((w) => w.version),
          values: run.map((w) => w.value),
          types: run.map((w) => w.type),
          expires: run.map((w) => (w.expiresAt === null ? null : new Date(w.expiresAt).toISOString())),
          created,
        }
        return statements[first.op][kind](params)
      }
    })()

    const expectVersion = compiled<{ key: Arg.Key; version: Arg.Version; now: number | Date }>(
      ({ key, now, version }) =>
        sql`INSERT INTO kv_expect ("key", "version", "now") VALUES (${key}, ${version}, ${now})`,
    )

    // Increments add in SQL, so concurrent ones never lose an update. `by` is bound as JSON
    // text (the same on every driver). Like SQLite, PostgreSQL adds integers exactly and anything
    // with a fraction or an exponent as doubles, so that every backend reads back the number
    // JavaScript's `+` would give. An expired record counts from 0, like a missing one.
    interface Increment {
      readonly key: Arg.Key
      /** the increment as JSON text */
      readonly by: string
      readonly created: number | Date
      /** NULL: the record's expiry stays */
      readonly expires: number | Date | null
    }
    const isNumber = (value: Fragment) =>
      isPg ? sql`json_typeof(${value}::json) = 'number'` : sql`json_type(${value}) IN ('integer', 'real')`
    const sum = (value: Fragment, by: unknown) =>
      isPg
        ? sql`(SELECT CASE WHEN a.t ~ '^-?[0-9]+$' AND b.t ~ '^-?[0-9]+$' THEN (a.t::numeric + b.t::numeric)::text
            ELSE (a.t::float8 + b.t::float8)::text END
            FROM (SELECT ${value}::json #>> '{}' AS t) AS a, (SELECT ${by}::text AS t) AS b)`
        : ((r: Fragment) =>
            // doubles with 17 digits (round-trip on every SQLite); an overflow is NULL, which the
            // NOT NULL column refuses
            sql`CASE typeof(${r}) WHEN 'integer' THEN CAST(${r} AS TEXT)
              WHEN 'real' THEN CASE WHEN ${r} - ${r} = 0 THEN printf('%!.17g', ${r}) END END`)(
            sql`(json_extract(${value}, '$') + json_extract(${by}, '$'))`,
          )
    const incrementWrite = (tail: Fragment) =>
      compiled<Increment, RecordRow>(
        (p) => sql`INSERT INTO kv_records ("key", "version", "value", "type", "created", "expires_at")
          VALUES (${p.key}, 1, ${p.by}, 'number', ${p.created}, ${p.expires})
          ON CONFLICT ("key") DO UPDATE SET ${upsertSet(
            sum(sql`kv_records."value"`, p.by),
            sql`kv_records."type"`,
            sql`COALESCE(excluded."expires_at", kv_records."expires_at")`,
          )}
          WHERE ${expiredRow} OR ${isNumber(sql`kv_records."value"`)} ${tail}`,
      )
    const increments = { single: incrementWrite(returning), batch: incrementWrite(noReturning) }
    /**
     * An increment's check in a batch: fails the batch (through `kv_expect`, with a version no
     * key has) when the key holds a live value that is not a number.
     */
    const expectNumber = compiled<{ key: Arg.Key; now: number | Date }>(
      ({ key, now }) => sql`INSERT INTO kv_expect ("key", "version")
        SELECT "key", -1 FROM kv_records WHERE "key" = ${key} AND ${liveAt(now)} AND NOT (${isNumber(sql`"value"`)})`,
    )

    // one statement per filter combination, so none of them tests a filter it does not have
    type StreamWindow = { seq: number; limit: number | null; type: string; prefix: string }
    const streamWhere = (typed: boolean, prefixed: boolean) =>
      compiled<StreamWindow, StreamRow>((p) => {
        const ofType = typed ? sql`AND "type" = ${p.type}` : sql.literal("")
        const under = prefixed ? sql`AND ${startsWith(sql)(sql`"key"`, p.prefix)}` : sql.literal("")
        return sql`SELECT "seq", "action", ${columns} FROM kv_stream
          WHERE "seq" >= ${p.seq} ${ofType} ${under} ORDER BY "seq" LIMIT ${p.limit}`
      })
    const streams = {
      all: streamWhere(false, false),
      typed: streamWhere(true, false),
      prefixed: streamWhere(false, true),
      typedPrefixed: streamWhere(true, true),
    }
    const selectLatestSeq = compiled<object, { seq: number | string }>(() => latestSeq)
    const trimStream = compiled<{ seq: number }>(
      ({ seq }) => sql`DELETE FROM kv_stream WHERE "seq" <= ${seq}`,
    )

    // Taken when free or expired; refreshed (same lockedAt) by the same holder.
    const acquireLock = compiled<
      { name: string; holder: string; now: number | Date; expires: number | Date },
      { name: string }
    >(
      ({
        expires,
        holder,
        name,
        now,
      }) => sql`INSERT INTO kv_locks ("name", "locked_by", "locked_at", "expires_at")
        VALUES (${name}, ${holder}, ${now}, ${expires})
        ON CONFLICT ("name") DO UPDATE SET
          "locked_by" = excluded."locked_by",
          "locked_at" = CASE WHEN kv_locks."locked_by" = excluded."locked_by"
            AND kv_locks."expires_at" > excluded."locked_at" THEN kv_locks."locked_at" ELSE excluded."locked_at" END,
          "expires_at" = excluded."expires_at"
        WHERE kv_locks."locked_by" = excluded."locked_by" OR kv_locks."expires_at" <= excluded."locked_at"
        RETURNING "name"`,
    )
    const releaseLock = compiled<{ name: string; holder: string }>(
      ({ holder, name }) => sql`DELETE FROM kv_locks WHERE "name" = ${name} AND "locked_by" = ${holder}`,
    )
    const selectLock = compiled<{ name: string; now: number | Date }, LockRow>(
      ({ name, now }) => sql`SELECT "name", "locked_by", "locked_at", "expires_at" FROM kv_locks
        WHERE "name" = ${name} AND "expires_at" > ${now}`,
    )

    /** The written record, or a mismatch when the version check left the row alone. */
    const writeOne = (
      key: string,
      version: number,
      written: Effect.Effect<ReadonlyArray<RecordRow>, SqlError>,
    ): Effect.Effect<KvRecord, SqlError | MalformedRowError | VersionMismatchError> =>
      Effect.flatMap(
        written,
        (rows): Effect.Effect<KvRecord, MalformedRowError | VersionMismatchError> =>
          rows.length === 1
            ? Effect.map(records(rows), (r) => r[0]!)
            : Effect.fail(new VersionMismatchError({ key, expected: version })),
      )

    // --- migrations and wake-ups ------------------------------------------------------

    const migrator = yield* makeMigrator(executor)
    const init = () =>
      run(
        "init",
        Effect.catchTag(migrator.run, "AtomicStatementError", (e) => Effect.fail(e.cause)),
      )

    // every write of a user key appends to the stream: wake this process's consumers
    const wakeup = yield* Wakeup
    const written = wakeup.notify("stream")
    const notifying = <A, E>(write: Effect.Effect<A, E>) => Effect.tap(write, () => written)
    // tasks of a batch (the outbox): wake this process's (and, through the channel, every) runner
    const tasksChanged = wakeup.notify("tasks")
    const taskWrites = yield* makeTaskWrites

    // --- mutateAll -------------------------------------------------------------------

    type Planned = ReadonlyArray<readonly [Statement<unknown>, BatchStep]>

    /** A mutation of a batch: a put or patch (which may join a set-based run), or its statements. */
    type Decoded =
      | { readonly _tag: "write"; readonly write: KeyedWrite }
      | {
          readonly _tag: "statements"
          readonly planned: Planned
          /** the key it deletes, or every key of a range */
          readonly touches: { readonly key: Arg.Key; readonly exists: boolean } | "range" | undefined
        }

    /** `now`: the batch's time, epoch ms; `created` the same as bound. */
    const decodeMutation = (
      mutation: Mutation,
      index: number,
      now: number,
      created: number | Date,
    ): Effect.Effect<Decoded, InvalidArgumentError> => {
      const deleting =
        (deletes: Arg.Key | "range") =>
        (statement: Statement<unknown>): Decoded => ({
          _tag: "statements",
          planned: [[statement, { kind: "write", mutation: index }]],
          touches: deletes === "range" ? "range" : { key: deletes, exists: false },
        })
      return Mutation.$match(mutation, {
        Put: (m) =>
          Effect.map(
            withExpiry(now, decodePut(m)),
            ({ expiresAt, key, type, value, version }): Decoded => ({
              _tag: "write",
              write: {
                op: "put",
                mutation: index,
                key,
                version,
                value,
                type: type ?? typeOf(m.value),
                expiresAt,
              },
            }),
          ),
        Patch: (m) =>
          Effect.map(
            withExpiry(now, decodePatch(m)),
            ({ expiresAt, key, patch, type, version }): Decoded => ({
              _tag: "write",
              write: {
                op: "patch",
                mutation: index,
                key,
                version,
                value: patch,
                type: type ?? null,
                expiresAt,
              },
            }),
          ),
        Delete: (m) => Effect.map(decodeKey(m.key), (key) => deleting(key)(deleteKey({ key, now: created }))),
        Check: (m) =>
          Effect.map(
            decodeCheck(m),
            ({ key, version }): Decoded => ({
              _tag: "statements",
              planned: [
                [
                  expectVersion({ key, version: version as number as Arg.Version, now: created }),
                  { kind: "guard", key, version },
                ],
              ],
              touches: undefined,
            }),
          ),
        Increment: (m) =>
          Effect.map(
            withExpiry(now, decodeIncrement(m)),
            ({ by, expiresAt, key }): Decoded => ({
              _tag: "statements",
              planned: [
                [expectNumber({ key, now: created }), { kind: "number", key }],
                [
                  increments.batch({
                    key,
                    by: JSON.stringify(by),
                    created,
                    expires: expiryTime(expiresAt),
                  }),
                  { kind: "write", mutation: index },
                ],
              ],
              touches: { key, exists: true },
            }),
          ),
        // the batch's tasks are written together after its key writes (see `mutateAll`)
        Task: () => Effect.succeed<Decoded>({ _tag: "statements", planned: [], touches: undefined }),
        DeletePrefix: (m) => Effect.map(deletePrefixStatement(m.prefix, m.page, created), deleting("range")),
        DeleteRange: (m) =>
          Effect.map(deleteRangeStatement(m.from, m.to, m.page, created), deleting("range")),
      })
    }

    /**
     * The statements of a batch: runs of puts or patches (see `continuesRun`) as one statement
     * over arrays where the dialect has them (`setWrites`), everything else one statement per
     * mutation (and one per version check). `states`: the rows of its writes' keys when the
     * batch was planned, live (`true`) or expired (none read: every write goes one by one).
     */
    const planBatch = (
      decoded: ReadonlyArray<Decoded>,
      created: number | Date,
      states: KeyStates | undefined,
    ): Planned => {
      const planned: Array<readonly [Statement<unknown>, BatchStep]> = []
      // whether a key exists at this point of the batch, as far as the plan knows
      const written = new Map<string, boolean>()
      let rangeDeleted = false
      const known: KnownKeys = {
        exists: (key) =>
          written.get(key) ?? (rangeDeleted || states === undefined ? undefined : states.get(key) === true),
        // a range delete leaves expired records alone
        expired: (key) =>
          written.has(key) ? false : states === undefined ? undefined : states.get(key) === false,
      }
      const exists = known.exists
      let i = 0
      while (i < decoded.length) {
        const first = decoded[i]!
        if (first._tag === "statements") {
          planned.push(...first.planned)
          if (first.touches === "range") {
            rangeDeleted = true
            written.clear()
          } else if (first.touches !== undefined) {
            written.set(first.touches.key, first.touches.exists)
          }
          i++
          continue
        }
        const run = [first.write]
        while (setWrites !== undefined && i + run.length < decoded.length) {
          const next = decoded[i + run.length]!
          if (next._tag !== "write" || !continuesRun(run[run.length - 1]!, next.write, known)) break
          run.push(next.write)
        }
        if (setWrites !== undefined && run.length >= minSetRun) {
          const version = first.write.version
          const kind: SetKind =
            version > 0 ? "update" : version === 0 ? "create" : exists(first.write.key) ? "existing" : "new"
          planned.push([setWrites(run, created, kind), { kind: "set", writes: run }])
        } else {
          for (const write of run) planned.push(...planWrite(write, created))
        }
        for (const write of run) written.set(write.key, true)
        i += run.length
      }
      return planned
    }

    /**
     * The rows of a batch's write keys now (live or expired), read for its plan when it could
     * have runs (PostgreSQL); `undefined`: none read.
     */
    const keyStates = (
      decoded: ReadonlyArray<Decoded>,
      now: number | Date,
    ): Effect.Effect<KeyStates | undefined, SqlError> => {
      const keys = new Set<Arg.Key>()
      let runs = false
      decoded.forEach((d, i) => {
        if (d._tag !== "write") return
        keys.add(d.write.key)
        const previous = decoded[i - 1]
        if (previous?._tag === "write" && continuesRun(previous.write, d.write, optimistic)) runs = true
      })
      if (setWrites === undefined || !runs) return Effect.succeed(undefined)
      return Effect.map(
        selectKeyStates.rows({ keys: list([...keys]), now }),
        (rows): KeyStates => new Map(rows.map((row) => [row.key, Number(row.live) === 1])),
      )
    }

    /** The statements of one put or patch of a batch: its version check, then its write. */
    const planWrite = (w: KeyedWrite, created: number | Date): Planned => {
      const statements = w.op === "put" ? writes.put.batch : writes.patch.batch
      const fields: Write = {
        key: w.key,
        value: w.value,
        type: w.type,
        expires: expiryTime(w.expiresAt),
        created,
      }
      const statement =
        w.version > 0
          ? statements.update({ ...fields, version: w.version })
          : w.version === 0
            ? statements.create(fields)
            : statements.upsert(fields)
      const write: readonly [Statement<unknown>, BatchStep] = [
        statement,
        w.version >= 0
          ? { kind: "write", mutation: w.mutation, key: w.key, version: w.version }
          : { kind: "write", mutation: w.mutation },
      ]
      // A version check is its own statement first: it raises inside SQL and so aborts the batch.
      return w.version >= 0
        ? [
            [
              expectVersion({ key: w.key, version: w.version, now: created }),
              { kind: "guard", key: w.key, version: w.version },
            ],
            write,
          ]
        : [write]
    }

    const deleteRangeStatement = (from: string, to: string, page: Page | undefined, now: number | Date) =>
      Effect.gen(function* () {
        const range = yield* decodeRange({ from, to })
        return deleteRange(range, yield* decodePage(page), now)
      })

    const deletePrefixStatement = (prefix: string, page: Page | undefined, now: number | Date) =>
      Effect.gen(function* () {
        const checked = yield* decodePrefix(prefix)
        if (checked === "") {
          return yield* new InvalidArgumentError({
            message: 'deletePrefix needs a prefix; use "*" to delete every key',
          })
        }
        return deleteRange(checked === "*" ? undefined : prefixRange(checked), yield* decodePage(page), now)
      })

    /** Explains why statement `index` of a batch failed. */
    const batchFailure = (steps: ReadonlyArray<BatchStep>, error: AtomicStatementError) => {
      const step = steps[error.index]
      if (step?.kind === "set") {
        if (setReplan.test(executor.explain(error.cause).detail)) return new Replan()
        const row = setMismatchRow.exec(executor.explain(error.cause).detail)
        const write = row === null ? undefined : step.writes[Number(row[1]) - 1]
        if (write !== undefined) return new VersionMismatchError({ key: write.key, expected: write.version })
      }
      if (step?.kind === "number" && executor.explain(error.cause).detail.includes(versionMismatchMarker)) {
        return notANumber(step.key)
      }
      if (step?.kind === "guard" && executor.explain(error.cause).detail.includes(versionMismatchMarker)) {
        return new VersionMismatchError({ key: step.key, expected: step.version })
      }
      // A concurrent insert between the guard and an insert-only write (PostgreSQL).
      if (
        step?.kind === "write" &&
        step.version === 0 &&
        step.key !== undefined &&
        isLiveConflict(error.cause, executor.explain)
      ) {
        return new VersionMismatchError({ key: step.key, expected: 0 })
      }
      return storeError(executor, "mutateAll", error)
    }

    /** A single put or patch: one statement by version, returning the record. */
    const writeSingle = (
      operation: "put" | "patch",
      statements: (typeof writes)["put"]["single"],
      fields: Pick<Write, "key" | "value" | "type">,
      version: Arg.Version,
      ttl: Arg.Millis | undefined,
    ) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(expiryOf(now, ttl), (expiresAt) => {
          const write: Write = { ...fields, expires: expiryTime(expiresAt), created: time(now) }
          const written =
            version > 0
              ? statements.update.rows({ ...write, version })
              : version === 0
                ? statements.create.rows(write)
                : statements.upsert.rows(write)
          return notifying(run(operation, writeOne(fields.key, version, written)))
        }),
      )

    /**
     * The record of a read by key if it is live: the clock is read only for a record that
     * expires (a point read on SQLite costs a few microseconds, and so would the clock).
     */
    const firstLive = (rows: ReadonlyArray<RecordRow>) =>
      rows.length === 0
        ? Effect.succeedNone
        : Effect.flatMap(records(rows.slice(0, 1)), ([record]) =>
            record!.expiresAt === undefined
              ? Effect.succeedSome(record!)
              : Effect.map(Clock.currentTimeMillis, (now) =>
                  isLive(record!, now) ? Option.some(record!) : Option.none(),
                ),
          )

    /** The live records of a read by key (the clock read only when one of them expires). */
    const liveRecords = (rows: ReadonlyArray<RecordRow>) =>
      Effect.flatMap(records(rows), (found) =>
        found.every((record) => record.expiresAt === undefined)
          ? Effect.succeed(found)
          : Effect.map(Clock.currentTimeMillis, (now) => found.filter((record) => isLive(record, now))),
      )

    /** The number of records live now that match a count's condition. */
    const counted = <P extends object>(
      operation: string,
      count: { rows: (p: P & At) => Effect.Effect<ReadonlyArray<{ n: number | string }>, SqlError> },
      params: P,
    ) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        run(operation, Effect.map(count.rows({ ...params, now: time(now) }), countOf)),
      )

    /** Sweep steps until one finds fewer expired records than it may delete. */
    const sweepSteps = (now: number | Date): Effect.Effect<number, SqlError | AtomicStatementError> =>
      Effect.flatMap(sweepStep({ now, limit: sweepLimit }), (deleted) =>
        deleted < sweepLimit
          ? Effect.succeed(deleted)
          : Effect.map(sweepSteps(now), (more) => deleted + more),
      )
    const sweep = (now: number | Date) =>
      Effect.flatMap(anyExpired.rows({ now }), (found) =>
        found.length === 0 ? Effect.succeed(0) : sweepSteps(now),
      )

    // --- the service -------------------------------------------------------------------

    const service: StoreService = {
      init,

      get: (key) =>
        Effect.flatMap(decodeKey(key), (key) => run("get", Effect.flatMap(readRows([key]), firstLive))),

      getBatch: (keys) =>
        Effect.flatMap(decodeKeys(keys), (keys) =>
          keys.length === 0
            ? Effect.succeed(new Map<string, KvRecord>())
            : run(
                "getBatch",
                Effect.map(
                  Effect.flatMap(readRows(keys), liveRecords),
                  (found) => new Map(found.map((record) => [record.key, record])),
                ),
              ),
        ),

      getPrefix: (prefix, page, options) =>
        Effect.gen(function* () {
          const checked = yield* decodePrefix(prefix)
          const { type } = yield* decodeOptionalType({ type: options?.type })
          const now = yield* Clock.currentTimeMillis
          const rows = selectRange(prefixRange(checked), yield* decodePage(page), type, now)
          return yield* run("getPrefix", Effect.flatMap(rows, records))
        }),

      getRange: (from, to, page) =>
        Effect.gen(function* () {
          const range = yield* decodeRange({ from, to })
          const now = yield* Clock.currentTimeMillis
          const rows = selectRange(range, yield* decodePage(page), undefined, now)
          return yield* run("getRange", Effect.flatMap(rows, records))
        }),

      getType: (type, page) =>
        Effect.gen(function* () {
          const checked = yield* decodeType(type)
          const bounds = { ...paged(yield* decodePage(page)), now: time(yield* Clock.currentTimeMillis) }
          const rows =
            checked === "all" ? selects.all.rows(bounds) : selects.type.rows({ ...bounds, type: checked })
          return yield* run("getType", Effect.flatMap(rows, records))
        }),

      list: (page) =>
        Effect.flatMap(decodePage(page), (page) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            run("list", Effect.flatMap(selects.all.rows({ ...paged(page), now: time(now) }), records)),
          ),
        ),

      put: (key, version, value, options) =>
        Effect.flatMap(
          decodePut({ key, version, value, type: options?.type, ttl: options?.ttl }),
          (checked) =>
            writeSingle(
              "put",
              writes.put.single,
              { key: checked.key, value: checked.value, type: checked.type ?? typeOf(value) },
              checked.version,
              checked.ttl,
            ),
        ),

      patch: (key, version, patch, options) =>
        Effect.flatMap(
          decodePatch({ key, version, patch, type: options?.type, ttl: options?.ttl }),
          (checked) =>
            writeSingle(
              "patch",
              writes.patch.single,
              { key: checked.key, value: checked.patch, type: checked.type ?? null },
              checked.version,
              checked.ttl,
            ),
        ),

      increment: (key, by = 1, options) =>
        Effect.gen(function* () {
          const checked = yield* decodeIncrement({ key, by, ttl: options?.ttl })
          const now = yield* Clock.currentTimeMillis
          const expires = expiryTime(yield* expiryOf(now, checked.ttl))
          const rows = yield* notifying(
            run(
              "increment",
              increments.single.rows({
                key: checked.key,
                by: JSON.stringify(checked.by),
                created: time(now),
                expires,
              }),
            ),
          )
          if (rows.length === 0) return yield* notANumber(checked.key)
          return yield* run(
            "increment",
            Effect.map(records(rows.slice(0, 1)), (found) => found[0]!),
          )
        }),

      delete: (...keys) =>
        Effect.flatMap(decodeKeys(keys), (checked) =>
          checked.length === 0
            ? Effect.succeed(0)
            : Effect.flatMap(Clock.currentTimeMillis, (now) =>
                notifying(run("delete", deleteKeys.affected({ keys: list(checked), now: time(now) }))),
              ),
        ),

      deletePrefix: (prefix, page) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.flatMap(deletePrefixStatement(prefix, page, time(now)), (statement) =>
            notifying(run("deletePrefix", executor.affected(statement))),
          ),
        ),

      deleteRange: (from, to, page) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.flatMap(deleteRangeStatement(from, to, page, time(now)), (statement) =>
            notifying(run("deleteRange", executor.affected(statement))),
          ),
        ),

      count: () => counted("count", counts.all, {}),

      countPrefix: (prefix) =>
        Effect.flatMap(decodePrefix(prefix), (prefix) => {
          const range = prefixRange(prefix)
          return range.to === undefined
            ? counted("countPrefix", counts.from, { from: range.from })
            : counted("countPrefix", counts.range, { from: range.from, to: range.to })
        }),

      countRange: (from, to) =>
        Effect.flatMap(decodeRange({ from, to }), (range) => counted("countRange", counts.range, range)),

      expire: () =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.tap(run("expire", sweep(time(now))), (expired) => (expired > 0 ? written : Effect.void)),
        ),

      mutateAll: (mutations) =>
        Effect.gen(function* () {
          if (mutations.length === 0) return []
          const now = yield* Clock.currentTimeMillis
          const created = time(now)
          const decoded = yield* Effect.forEach(mutations, (mutation, i) =>
            decodeMutation(mutation, i, now, created),
          )
          // the outbox: the batch's tasks, stored after its key writes, in the batch's order
          const tasks: Array<CheckedTask> = []
          for (const mutation of mutations) {
            if (mutation._tag === "Task") tasks.push(yield* checkTask(mutation.task))
          }
          const ids = new Set<string>()
          for (const task of tasks) {
            if (ids.has(task.id)) {
              return yield* new InvalidArgumentError({ message: `the batch creates task "${task.id}" twice` })
            }
            ids.add(task.id)
          }
          const taskStatements: Planned =
            tasks.length === 0
              ? []
              : taskWrites
                  .statementsOf(tasks)
                  .statements.map((statement) => [statement, { kind: "task" }] as const)
          // A plan from a read that a concurrent writer made stale is made again (the batch was
          // rolled back), at last without reading.
          const attempt = (
            plans: number,
          ): Effect.Effect<
            ReadonlyArray<readonly [BatchStep, StatementResult]>,
            SqlError | VersionMismatchError | InvalidArgumentError | StoreError
          > =>
            Effect.gen(function* () {
              const states = plans < maxPlans ? yield* keyStates(decoded, created) : undefined
              const planned = [...planBatch(decoded, created, states), ...taskStatements]
              const steps = planned.map(([, step]) => step)
              const results = yield* executor
                .atomic(planned.map(([statement]) => statement))
                .pipe(
                  Effect.catchTag("AtomicStatementError", (error) => Effect.fail(batchFailure(steps, error))),
                )
              return results.map((result, i) => [steps[i]!, result] as const)
            }).pipe(
              Effect.catchIf(
                (e): e is Replan => e instanceof Replan,
                () => attempt(plans + 1),
              ),
            )
          const results = yield* notifying(run("mutateAll", attempt(1)))
          if (tasks.length > 0) yield* tasksChanged
          const affected = mutations.map((mutation): number => (mutation._tag === "Task" ? 1 : 0))
          results.forEach(([step, result]) => {
            if (step.kind === "write") affected[step.mutation] = result.affected
            // every write of a set that passed its checks changed its row
            if (step.kind === "set") for (const write of step.writes) affected[write.mutation] = 1
          })
          return affected
        }),

      stream: (type, seq, limitOf, options) =>
        Effect.gen(function* () {
          const checked = yield* decodeStream({ type, seq, limit: limitOf ?? -1, prefix: options?.prefix })
          const typed = checked.type !== "all"
          const prefixed = checked.prefix !== undefined && checked.prefix !== ""
          const statement = typed
            ? prefixed
              ? streams.typedPrefixed
              : streams.typed
            : prefixed
              ? streams.prefixed
              : streams.all
          const rows = statement.rows({
            seq: checked.seq,
            limit: limit(checked.limit),
            type: checked.type,
            prefix: checked.prefix ?? "",
          })
          return yield* run(
            "stream",
            Effect.flatMap(rows, (found) => parseRows("kv_stream", found, toStreamRecord)),
          )
        }),

      streamSeq: () =>
        run(
          "streamSeq",
          Effect.map(selectLatestSeq.rows({}), (found) => Number(found[0]?.seq ?? 0)),
        ),

      streamTrim: (seq) =>
        Effect.flatMap(decodeSeq(seq), (seq) => run("streamTrim", trimStream.affected({ seq }))),

      lockAcquire: (name, lockedBy, duration) =>
        Effect.gen(function* () {
          const lock = yield* decodeLockAcquire({ name, holder: lockedBy, duration })
          const now = yield* Clock.currentTimeMillis
          const taken = acquireLock.rows({
            name: lock.name,
            holder: lock.holder,
            now: time(now),
            expires: time(now + lock.duration),
          })
          return yield* run(
            "lockAcquire",
            Effect.map(taken, (rows) => rows.length === 1),
          )
        }),

      lockRelease: (name, lockedBy) =>
        Effect.flatMap(decodeLockRelease({ name, holder: lockedBy }), (lock) =>
          run(
            "lockRelease",
            Effect.map(releaseLock.affected(lock), (deleted) => deleted === 1),
          ),
        ),

      lockStatus: (name) =>
        Effect.gen(function* () {
          const lock = yield* decodeLockName(name)
          const now = yield* Clock.currentTimeMillis
          return yield* run(
            "lockStatus",
            Effect.flatMap(selectLock.rows({ name: lock, now: time(now) }), (rows) =>
              Effect.map(parseRows("kv_locks", rows.slice(0, 1), toLockStatus), (found) =>
                Option.fromNullable(found[0]),
              ),
            ),
          )
        }),
    }
    return service
  })

export const layer: Layer.Layer<Store, never, SqlClient.SqlClient | SqlExecutor | Wakeup> = Layer.effect(
  Store,
  make,
)
