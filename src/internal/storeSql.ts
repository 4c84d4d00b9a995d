/**
 * The one SQL implementation of `Store`, for every backend.
 *
 * It needs only a `SqlClient`; the few dialect differences (merge patch, time values,
 * "no limit", stream counter) are chosen once here with `sql.onDialectOrElse`. SQLite and
 * rqlite share the SQLite dialect; PostgreSQL has its own.
 *
 * Every single-key write is one statement (an upsert or a conditional update with
 * `RETURNING`), so it is atomic on its own and needs no transaction. Multi-statement
 * writes go through an `AtomicRunner`: a transaction where the client has one, a single
 * request on rqlite.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment, Statement } from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import {
  type InvalidArgumentError,
  type KvRecord,
  type LockStatus,
  Mutation,
  type Page,
  StoreError,
  type StoreService,
  type StreamAction,
  type StreamRecord,
  typeOf,
  VersionMismatchError,
  type WriteOptions,
} from "../Store.js"
import * as Arg from "./arguments.js"
import { type AtomicRunner, type AtomicStatementError, statementResult, transactional } from "./atomic.js"
import { postgresSchema, schemaVersion, sqliteSchema, versionMismatchMarker } from "./schema.js"

export interface StoreSqlOptions {
  /** Run the migrations when the store is made, if the database is behind (default true). */
  readonly migrate?: boolean | undefined
  /** How multi-statement writes run atomically; by default in a transaction of the client. */
  readonly atomic?: AtomicRunner | undefined
  /**
   * A connection that single statements may use directly, skipping the per-statement scope,
   * lock and span of `SqlClient` (several times faster for SQLite's in-process reads). Only
   * for drivers where a statement needs no connection management: SQLite's one synchronous
   * connection, rqlite's stateless HTTP. Statements inside or during a transaction of this
   * store take the normal path.
   */
  readonly connection?: Connection | undefined
}

interface RecordRow {
  readonly key: string
  readonly version: number | string
  readonly value: string
  readonly type: string
  readonly created: number | string | Date
}

interface StreamRow extends RecordRow {
  readonly seq: number | string
  readonly action: StreamAction
}

interface LockRow {
  readonly name: string
  readonly locked_by: string
  readonly locked_at: number | string | Date
  readonly expires_at: number | string | Date
}

/** Keys per `IN (...)` list: well below every backend's limit on bound parameters. */
const chunkSize = 500

const toDate = (value: number | string | Date): Date =>
  new Date(value instanceof Date ? value : Number(value))

const toRecord = (row: RecordRow): KvRecord => ({
  key: row.key,
  version: Number(row.version),
  value: JSON.parse(row.value),
  type: row.type,
  created: toDate(row.created),
})

const toStreamRecord = (row: StreamRow): StreamRecord => ({
  seq: Number(row.seq),
  action: row.action,
  record: toRecord(row),
})

const toLockStatus = (row: LockRow): LockStatus => ({
  name: row.name,
  lockedBy: row.locked_by,
  lockedAt: toDate(row.locked_at),
  expiresAt: toDate(row.expires_at),
})

const chunks = <A>(items: ReadonlyArray<A>): ReadonlyArray<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += chunkSize) out.push(items.slice(i, i + chunkSize))
  return out
}

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

const isBusy = (error: SqlError | undefined): boolean => {
  const cause = error?.cause as { code?: unknown; message?: unknown } | undefined
  return (
    (typeof cause?.code === "string" && cause.code.startsWith("SQLITE_BUSY")) ||
    (typeof cause?.message === "string" && cause.message.includes("database is locked"))
  )
}

/** Another process holds SQLite's write lock longer than the busy timeout: try again a few times. */
const busyRetry = Schedule.exponential("20 millis").pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(8)),
)

const messageOf = (error: SqlError): string => {
  const cause = error.cause as { message?: unknown } | undefined
  return `${error.message} ${typeof cause?.message === "string" ? cause.message : ""}`
}

const isUniqueViolation = (error: SqlError): boolean =>
  /UNIQUE constraint failed|duplicate key value/i.test(messageOf(error))

/** What a statement of a `mutateAll` batch is for, to explain its failure. */
type BatchStep =
  | { readonly kind: "guard"; readonly key: string; readonly version: number }
  | { readonly kind: "write"; readonly mutation: number; readonly key?: string; readonly version?: number }

export const make = (
  options: StoreSqlOptions = {},
): Effect.Effect<StoreService, StoreError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })

    // --- execution -------------------------------------------------------------

    let openTransactions = 0
    const runAtomic = options.atomic ?? transactional(sql)
    const atomic: AtomicRunner = (statements) =>
      Effect.suspend(() => {
        openTransactions++
        return Effect.ensuring(
          runAtomic(statements),
          Effect.sync(() => openTransactions--),
        )
      })

    const direct = options.connection
    const rows = <A>(statement: Statement<A>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
      direct === undefined
        ? statement
        : Effect.suspend(() => {
            if (openTransactions > 0) return statement
            const [text, params] = statement.compile()
            return direct.execute(text, params, undefined) as Effect.Effect<ReadonlyArray<A>, SqlError>
          })
    /** The number of rows a statement changed (deletes are counted this way, not by RETURNING). */
    const affected = (statement: Statement<unknown>): Effect.Effect<number, SqlError> => {
      const raw =
        direct === undefined
          ? statement.raw
          : Effect.suspend(() => {
              if (openTransactions > 0) return statement.raw
              const [text, params] = statement.compile()
              return direct.executeRaw(text, params)
            })
      return Effect.map(raw, (result) => statementResult(result).affected)
    }

    // --- dialect differences -------------------------------------------------

    /** SQLite keeps epoch milliseconds, PostgreSQL timestamptz. */
    const time = (millis: number): number | Date => (isPg ? new Date(millis) : millis)

    /** RFC 7396: SQLite's built-in json_patch, PostgreSQL's kv_merge_patch (see schema.ts). */
    const mergePatch = (target: Fragment | string, patch: string): Fragment => {
      const targetSql = typeof target === "string" ? sql`${target}` : target
      return isPg
        ? sql`kv_merge_patch(${targetSql}::json, ${patch}::json)::text`
        : sql`json_patch(${targetSql}, ${patch})`
    }

    const limitOffset = ({ limit, offset }: Arg.CheckedPage): Fragment =>
      isPg ? sql`LIMIT ${limit < 0 ? null : limit} OFFSET ${offset}` : sql`LIMIT ${limit} OFFSET ${offset}`

    const schema = isPg ? postgresSchema : sqliteSchema

    const latestSeq = isPg
      ? sql<{ seq: number | string }>`SELECT seq FROM kv_stream_counter WHERE id = 1`
      : sql<{ seq: number | string }>`SELECT seq FROM sqlite_sequence WHERE name = 'kv_stream'`

    // --- helpers -------------------------------------------------------------

    /** Wraps backend failures once, keeping the cause; SQLite's busy errors are retried. */
    const run = <A, E>(operation: string, effect: Effect.Effect<A, E | SqlError | AtomicStatementError>) =>
      effect.pipe(
        Effect.catchIf(
          (e) => isBusy(backendCause(e)),
          () => Effect.retry(effect, { schedule: busyRetry, while: (e) => isBusy(backendCause(e)) }),
        ),
        Effect.catchIf(isBackendError, (e) =>
          Effect.fail(new StoreError({ operation, cause: backendCause(e) })),
        ),
      ) as Effect.Effect<A, Exclude<E, SqlError | AtomicStatementError> | StoreError>

    // Identifiers are quoted: rqlite parses statements to find `RETURNING`, and its parser
    // gives up on an unquoted `key` (or a subquery), silently dropping the returned rows.
    const columns = sql.literal(`"key", "version", "value", "type", "created"`)
    const records = (statement: Statement<RecordRow>) =>
      Effect.map(rows(statement), (rows) => rows.map(toRecord))
    const countOf = (statement: Statement<{ n: number | string }>) =>
      Effect.map(rows(statement), (found) => Number(found[0]?.n ?? 0))

    const prefixCondition = (prefix: string): Fragment => {
      const upper = prefixSuccessor(prefix)
      return upper === undefined ? sql`"key" >= ${prefix}` : sql`"key" >= ${prefix} AND "key" < ${upper}`
    }
    const rangeCondition = (from: string, to: string): Fragment => sql`"key" >= ${from} AND "key" < ${to}`

    // `get` is the hottest path: its SQL is compiled once, not per call.
    const [getText] = sql`SELECT ${columns} FROM kv_records WHERE "key" = ${""}`.compile()

    const selectRecords = (condition: Fragment, page: Arg.CheckedPage) =>
      records(
        sql<RecordRow>`SELECT ${columns} FROM kv_records WHERE ${condition} ORDER BY "key" ${limitOffset(page)}`,
      )

    /** Deletes the keys matching `condition` (within `page` of them, in key order). Counted by `affected`. */
    const deleteWhere = (condition: Fragment, page: Arg.CheckedPage): Statement<never> =>
      page.offset === 0 && page.limit < 0
        ? sql`DELETE FROM kv_records WHERE ${condition}`
        : sql`DELETE FROM kv_records WHERE "key" IN (
            SELECT "key" FROM kv_records WHERE ${condition} ORDER BY "key" ${limitOffset(page)}
          )`

    const insertRecord = (key: string, value: Fragment | string, type: string, now: number) =>
      sql`INSERT INTO kv_records ("key", "version", "value", "type", "created")
        VALUES (${key}, 1, ${value}, ${type}, ${time(now)})`

    /** Version 0: skip an existing key (a single write) or fail on it (a batch, see `planMutation`). */
    const insertOnly = (insert: Statement<unknown>, onConflict: "skip" | "fail"): Statement<RecordRow> =>
      onConflict === "skip"
        ? sql`${insert} ON CONFLICT ("key") DO NOTHING RETURNING ${columns}`
        : sql`${insert} RETURNING ${columns}`

    /**
     * The write of a `put`. Version -1 upserts, 0 inserts (`onConflict` says whether an
     * existing key is skipped or an error), n > 0 updates only version n.
     */
    const putStatement = (
      key: string,
      version: number,
      value: string,
      type: string,
      now: number,
      onConflict: "skip" | "fail",
    ): Statement<RecordRow> => {
      if (version > 0) {
        return sql`UPDATE kv_records SET "version" = "version" + 1, "value" = ${value}, "type" = ${type}
          WHERE "key" = ${key} AND "version" = ${version} RETURNING ${columns}`
      }
      const insert = insertRecord(key, value, type, now)
      if (version === 0) return insertOnly(insert, onConflict)
      return sql`${insert} ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1,
        "value" = excluded."value", "type" = excluded."type" RETURNING ${columns}`
    }

    /** The write of a `patch`; the same version rules as `putStatement`. */
    const patchStatement = (
      key: string,
      version: number,
      patch: string,
      explicitType: string | undefined,
      now: number,
      onConflict: "skip" | "fail",
    ): Statement<RecordRow> => {
      // An existing record keeps its type unless one is given; a new one is an object.
      const type = explicitType ?? null
      if (version > 0) {
        return sql`UPDATE kv_records SET "version" = "version" + 1, "value" = ${mergePatch(sql`"value"`, patch)},
          "type" = COALESCE(${type}, "type") WHERE "key" = ${key} AND "version" = ${version} RETURNING ${columns}`
      }
      const insert = insertRecord(key, mergePatch("{}", patch), explicitType ?? "object", now)
      if (version === 0) return insertOnly(insert, onConflict)
      return sql`${insert} ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1,
        "value" = ${mergePatch(sql`kv_records."value"`, patch)}, "type" = COALESCE(${type}, kv_records."type")
        RETURNING ${columns}`
    }

    const expectVersion = (key: string, version: number) =>
      sql`INSERT INTO kv_expect ("key", "version") VALUES (${key}, ${version})`

    /** A checked single-key write: the statement, and the key and version it expects. */
    interface Write {
      readonly key: string
      readonly version: number
      readonly statement: Statement<RecordRow>
    }

    /** The written record, or a mismatch when the version check left the row alone. */
    const writeOne = ({ key, statement, version }: Write) =>
      Effect.flatMap(rows(statement), (written) =>
        written.length === 1
          ? Effect.succeed(toRecord(written[0]!))
          : Effect.fail(new VersionMismatchError({ key, expected: version })),
      )

    /** The explicit type option, checked. */
    const explicitType = (options: WriteOptions | undefined) =>
      options?.type === undefined ? Effect.succeed(undefined) : Arg.name("type", options.type)

    const checkedPut = (
      key: string,
      version: number,
      value: unknown,
      options: WriteOptions | undefined,
      now: number,
      onConflict: "skip" | "fail",
    ): Effect.Effect<Write, InvalidArgumentError> =>
      Effect.gen(function* () {
        const checkedKey = yield* Arg.key(key)
        const checkedVersion = yield* Arg.version(version)
        const json = yield* Arg.json(value)
        const type = (yield* explicitType(options)) ?? typeOf(value)
        const statement = putStatement(checkedKey, checkedVersion, json, type, now, onConflict)
        return { key: checkedKey, version: checkedVersion, statement }
      })

    const checkedPatch = (
      key: string,
      version: number,
      patch: unknown,
      options: WriteOptions | undefined,
      now: number,
      onConflict: "skip" | "fail",
    ): Effect.Effect<Write, InvalidArgumentError> =>
      Effect.gen(function* () {
        const checkedKey = yield* Arg.key(key)
        const checkedVersion = yield* Arg.version(version)
        const json = yield* Arg.patch(patch)
        const type = yield* explicitType(options)
        const statement = patchStatement(checkedKey, checkedVersion, json, type, now, onConflict)
        return { key: checkedKey, version: checkedVersion, statement }
      })

    // --- migrations ----------------------------------------------------------

    const migrate = atomic(schema.map((statement) => sql.unsafe(statement)))
    const currentSchemaVersion = sql<{
      version: number | string
    }>`SELECT version FROM kv_schema WHERE id = 1`.pipe(
      Effect.map((rows) => Number(rows[0]?.version ?? 0)),
      Effect.orElseSucceed(() => 0), // no kv_schema table yet
    )
    const init = () => run("init", migrate).pipe(Effect.asVoid)

    if (options.migrate !== false) {
      const current = yield* currentSchemaVersion
      if (current < schemaVersion) yield* init()
    }

    // --- mutateAll -------------------------------------------------------------

    const planMutation = (
      mutation: Mutation,
      index: number,
      now: number,
    ): Effect.Effect<ReadonlyArray<readonly [Statement<any>, BatchStep]>, InvalidArgumentError> => {
      const guarded = (key: string, version: number, write: Statement<any>) =>
        version >= 0
          ? [
              [expectVersion(key, version), { kind: "guard", key, version }] as const,
              [write, { kind: "write", mutation: index, key, version }] as const,
            ]
          : [[write, { kind: "write", mutation: index }] as const]
      return Mutation.$match(mutation, {
        Put: (m) =>
          Effect.map(checkedPut(m.key, m.version, m.value, m, now, "fail"), (write) =>
            guarded(write.key, write.version, write.statement),
          ),
        Patch: (m) =>
          Effect.map(checkedPatch(m.key, m.version, m.patch, m, now, "fail"), (write) =>
            guarded(write.key, write.version, write.statement),
          ),
        Delete: (m) =>
          Effect.map(Arg.key(m.key), (key) => [
            [sql`DELETE FROM kv_records WHERE "key" = ${key}`, { kind: "write", mutation: index }] as const,
          ]),
        DeletePrefix: (m) =>
          Effect.map(deletePrefixStatement(m.prefix, m.page), (statement) => [
            [statement, { kind: "write", mutation: index }] as const,
          ]),
        DeleteRange: (m) =>
          Effect.map(deleteRangeStatement(m.from, m.to, m.page), (statement) => [
            [statement, { kind: "write", mutation: index }] as const,
          ]),
      })
    }

    const deleteRangeStatement = (from: string, to: string, page: Page | undefined) =>
      Effect.gen(function* () {
        const condition = rangeCondition(yield* Arg.bound("from", from), yield* Arg.bound("to", to))
        return deleteWhere(condition, yield* Arg.page(page))
      })

    const deletePrefixStatement = (prefix: string, page: Page | undefined) =>
      Effect.gen(function* () {
        const checked = yield* Arg.bound("prefix", prefix)
        if (checked === "") {
          return yield* Arg.invalid('deletePrefix needs a prefix; use "*" to delete every key')
        }
        const condition = checked === "*" ? sql`1 = 1` : prefixCondition(checked)
        return deleteWhere(condition, yield* Arg.page(page))
      })

    /** Explains why statement `index` of a batch failed. */
    const batchFailure = (steps: ReadonlyArray<BatchStep>, error: AtomicStatementError) => {
      const step = steps[error.index]
      if (
        step !== undefined &&
        messageOf(error.cause).includes(versionMismatchMarker) &&
        step.kind === "guard"
      ) {
        return new VersionMismatchError({ key: step.key, expected: step.version })
      }
      // A concurrent insert between the guard and an insert-only write (PostgreSQL).
      if (
        step?.kind === "write" &&
        step.version === 0 &&
        step.key !== undefined &&
        isUniqueViolation(error.cause)
      ) {
        return new VersionMismatchError({ key: step.key, expected: 0 })
      }
      return new StoreError({ operation: "mutateAll", cause: error.cause })
    }

    // --- the service -----------------------------------------------------------

    const service: StoreService = {
      init,

      get: (key) =>
        Effect.flatMap(Arg.key(key), (key) =>
          run(
            "get",
            Effect.map(records(sql.unsafe<RecordRow>(getText, [key])), (found) =>
              Option.fromNullable(found[0]),
            ),
          ),
        ),

      getBatch: (keys) =>
        Effect.flatMap(Arg.keys(keys), (keys) =>
          run(
            "getBatch",
            Effect.reduce(chunks(keys), new Map<string, KvRecord>(), (found, chunk) =>
              Effect.map(
                records(sql<RecordRow>`SELECT ${columns} FROM kv_records WHERE key IN ${sql.in(chunk)}`),
                (rows) => {
                  for (const record of rows) found.set(record.key, record)
                  return found
                },
              ),
            ),
          ),
        ),

      getPrefix: (prefix, page) =>
        Effect.gen(function* () {
          const checked = yield* Arg.bound("prefix", prefix)
          return yield* run("getPrefix", selectRecords(prefixCondition(checked), yield* Arg.page(page)))
        }),

      getRange: (from, to, page) =>
        Effect.gen(function* () {
          const condition = rangeCondition(yield* Arg.bound("from", from), yield* Arg.bound("to", to))
          return yield* run("getRange", selectRecords(condition, yield* Arg.page(page)))
        }),

      getType: (type, page) =>
        Effect.gen(function* () {
          const checked = yield* Arg.name("type", type)
          const condition = checked === "all" ? sql`1 = 1` : sql`type = ${checked}`
          return yield* run("getType", selectRecords(condition, yield* Arg.page(page)))
        }),

      list: (page) => Effect.flatMap(Arg.page(page), (page) => run("list", selectRecords(sql`1 = 1`, page))),

      put: (key, version, value, options) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const write = yield* checkedPut(key, version, value, options, now, "skip")
          return yield* run("put", writeOne(write))
        }),

      patch: (key, version, patch, options) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const write = yield* checkedPatch(key, version, patch, options, now, "skip")
          return yield* run("patch", writeOne(write))
        }),

      delete: (...keys) =>
        Effect.gen(function* () {
          const checked = yield* Arg.keys(keys)
          if (checked.length === 0) return 0
          const statements = chunks(checked).map(
            (chunk) => sql<never>`DELETE FROM kv_records WHERE "key" IN ${sql.in(chunk)}`,
          )
          const deleted =
            statements.length === 1
              ? affected(statements[0]!)
              : Effect.map(atomic(statements), (results) => results.reduce((n, r) => n + r.affected, 0))
          return yield* run("delete", deleted)
        }),

      deletePrefix: (prefix, page) =>
        Effect.flatMap(deletePrefixStatement(prefix, page), (statement) =>
          run("deletePrefix", affected(statement)),
        ),

      deleteRange: (from, to, page) =>
        Effect.flatMap(deleteRangeStatement(from, to, page), (statement) =>
          run("deleteRange", affected(statement)),
        ),

      count: () => run("count", countOf(sql`SELECT COUNT(*) AS n FROM kv_records`)),

      countPrefix: (prefix) =>
        Effect.flatMap(Arg.bound("prefix", prefix), (prefix) =>
          run(
            "countPrefix",
            countOf(sql`SELECT COUNT(*) AS n FROM kv_records WHERE ${prefixCondition(prefix)}`),
          ),
        ),

      countRange: (from, to) =>
        Effect.gen(function* () {
          const condition = rangeCondition(yield* Arg.bound("from", from), yield* Arg.bound("to", to))
          return yield* run(
            "countRange",
            countOf(sql`SELECT COUNT(*) AS n FROM kv_records WHERE ${condition}`),
          )
        }),

      mutateAll: (mutations) =>
        Effect.gen(function* () {
          if (mutations.length === 0) return []
          const now = yield* Clock.currentTimeMillis
          const planned = (yield* Effect.forEach(mutations, (mutation, i) =>
            planMutation(mutation, i, now),
          )).flat()
          const steps = planned.map(([, step]) => step)
          const results = yield* run(
            "mutateAll",
            atomic(planned.map(([statement]) => statement)).pipe(
              Effect.catchTag("AtomicStatementError", (error) => Effect.fail(batchFailure(steps, error))),
            ),
          )
          const counts = mutations.map(() => 0)
          results.forEach((result, i) => {
            const step = steps[i]!
            if (step.kind === "write") counts[step.mutation] = result.affected
          })
          return counts
        }),

      stream: (type, seq, limit) =>
        Effect.gen(function* () {
          const checkedType = yield* Arg.name("type", type)
          const from = yield* Arg.seq(seq)
          const page = { offset: 0, limit: yield* Arg.limit(limit) }
          const ofType = checkedType === "all" ? sql.literal("") : sql`AND type = ${checkedType}`
          const found = sql<StreamRow>`SELECT seq, action, ${columns} FROM kv_stream
            WHERE seq >= ${from} ${ofType} ORDER BY seq ${limitOffset(page)}`
          return yield* run(
            "stream",
            Effect.map(rows(found), (records) => records.map(toStreamRecord)),
          )
        }),

      streamSeq: () =>
        run(
          "streamSeq",
          Effect.map(rows(latestSeq), (found) => Number(found[0]?.seq ?? 0)),
        ),

      streamTrim: (seq) =>
        Effect.flatMap(Arg.seq(seq), (seq) =>
          run("streamTrim", affected(sql`DELETE FROM kv_stream WHERE "seq" <= ${seq}`)),
        ),

      lockAcquire: (name, lockedBy, duration) =>
        Effect.gen(function* () {
          const lock = yield* Arg.name("lock name", name)
          const holder = yield* Arg.name("lock holder", lockedBy)
          const millis = yield* Arg.positiveDuration(duration)
          const now = yield* Clock.currentTimeMillis
          // Taken when free or expired; refreshed (same lockedAt) by the same holder.
          const acquired = sql`INSERT INTO kv_locks ("name", "locked_by", "locked_at", "expires_at")
            VALUES (${lock}, ${holder}, ${time(now)}, ${time(now + millis)})
            ON CONFLICT ("name") DO UPDATE SET
              "locked_by" = excluded."locked_by",
              "locked_at" = CASE WHEN kv_locks."locked_by" = excluded."locked_by"
                AND kv_locks."expires_at" > excluded."locked_at" THEN kv_locks."locked_at" ELSE excluded."locked_at" END,
              "expires_at" = excluded."expires_at"
            WHERE kv_locks."locked_by" = excluded."locked_by" OR kv_locks."expires_at" <= excluded."locked_at"
            RETURNING "name"`
          return yield* run(
            "lockAcquire",
            Effect.map(rows(acquired), (taken) => taken.length === 1),
          )
        }),

      lockRelease: (name, lockedBy) =>
        Effect.gen(function* () {
          const lock = yield* Arg.name("lock name", name)
          const holder = yield* Arg.name("lock holder", lockedBy)
          const released = sql`DELETE FROM kv_locks WHERE "name" = ${lock} AND "locked_by" = ${holder}`
          return yield* run(
            "lockRelease",
            Effect.map(affected(released), (deleted) => deleted === 1),
          )
        }),

      lockStatus: (name) =>
        Effect.gen(function* () {
          const lock = yield* Arg.name("lock name", name)
          const now = yield* Clock.currentTimeMillis
          const found = sql<LockRow>`SELECT name, locked_by, locked_at, expires_at FROM kv_locks
            WHERE name = ${lock} AND expires_at > ${time(now)}`
          return yield* run(
            "lockStatus",
            Effect.map(rows(found), (locks) => Option.map(Option.fromNullable(locks[0]), toLockStatus)),
          )
        }),
    }
    return service
  })

const isBackendError = (u: unknown): u is SqlError | AtomicStatementError => {
  const tag = typeof u === "object" && u !== null ? (u as { _tag?: unknown })._tag : undefined
  return tag === "SqlError" || tag === "AtomicStatementError"
}

/** The SqlError behind a backend failure, or `undefined` for other errors. */
const backendCause = (u: unknown): SqlError | undefined =>
  isBackendError(u) ? (u._tag === "AtomicStatementError" ? u.cause : u) : undefined
