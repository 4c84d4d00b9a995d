/**
 * The one SQL implementation of `Store`, for every backend.
 *
 * It builds statements with the `SqlClient` and runs them on the backend's `SqlExecutor`; the
 * few dialect differences (merge patch, time values, "no limit", stream counter) are chosen
 * once here with `sql.onDialectOrElse`. SQLite and rqlite share the SQLite dialect.
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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import {
  InvalidArgumentError,
  type KvRecord,
  type LockStatus,
  Mutation,
  type Page,
  Store,
  type StoreService,
  typeOf,
  VersionMismatchError,
  type WriteOptions,
} from "../Store.js"
import { type AtomicStatementError, type Service as Executor, SqlExecutor, storeError } from "./executor.js"
import { makeMigrator } from "./migrations.js"
import {
  failuresOf,
  type RecordRow,
  type StreamRow,
  type TimeValue,
  timeBinder,
  toDate,
  toRecord,
  toStreamRecord,
} from "./sqlShared.js"
import { versionMismatchMarker } from "./storeSchema.js"
import { Wakeup } from "./wakeup.js"

interface LockRow {
  readonly name: string
  readonly locked_by: string
  readonly locked_at: TimeValue
  readonly expires_at: TimeValue
}

/** Keys per `IN (...)` list: well below every backend's limit on bound parameters. */
const chunkSize = 500

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

const isUniqueViolation = (error: SqlError, explain: Executor["explain"]): boolean =>
  /UNIQUE constraint failed|duplicate key value/i.test(explain(error).detail)

/** What a statement of a `mutateAll` batch is for, to explain its failure and count its rows. */
type BatchStep =
  | { readonly kind: "guard"; readonly key: string; readonly version: number }
  | { readonly kind: "write"; readonly mutation: number; readonly key?: string; readonly version?: number }

/** A bound value standing for argument `index` while a prepared statement is compiled. */
class Hole {
  constructor(readonly index: number) {}
}

// Argument decoders, made once.
const decodeKey = Arg.decoder(Arg.Key)
const decodeVersion = Arg.decoder(Arg.Version)
const decodeValue = Arg.decoder(Arg.Value)
const decodePatch = Arg.decoder(Arg.MergePatch)
const decodeType = Arg.decoder(Arg.name("type"))
const decodeLockName = Arg.decoder(Arg.name("lock name"))
const decodeHolder = Arg.decoder(Arg.name("lock holder"))
const decodePrefix = Arg.decoder(Arg.bound("prefix"))
const decodeFrom = Arg.decoder(Arg.bound("from"))
const decodeTo = Arg.decoder(Arg.bound("to"))
const decodeOffset = Arg.decoder(Arg.Offset)
const decodeLimit = Arg.decoder(Arg.Limit)
const decodeSeq = Arg.decoder(Arg.Seq)
const decodeDuration = Arg.decoder(Arg.PositiveDuration)

interface CheckedPage {
  readonly offset: number
  /** -1: no limit */
  readonly limit: number
}

const decodePage = (page: Page | undefined): Effect.Effect<CheckedPage, InvalidArgumentError> =>
  page === undefined
    ? Effect.succeed({ offset: 0, limit: -1 })
    : Effect.all({ offset: decodeOffset(page.offset ?? 0), limit: decodeLimit(page.limit ?? -1) })

const decodeKeys = (keys: Iterable<string>) => Effect.forEach(new Set(keys), decodeKey)

/** The explicit type option, checked; `undefined` when absent. */
const decodeTypeOption = (options: WriteOptions | undefined) =>
  options?.type === undefined ? Effect.succeed(undefined) : decodeType(options.type)

export const make: Effect.Effect<StoreService, never, SqlClient.SqlClient | SqlExecutor | Wakeup> =
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const executor = yield* SqlExecutor
    const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })

    // --- failures ------------------------------------------------------------------

    /** Wraps backend failures once, keeping the cause and the client's own words. */
    const run = failuresOf(executor)

    // --- dialect differences -----------------------------------------------------------

    /** SQLite keeps epoch milliseconds, PostgreSQL timestamptz. */
    const time = timeBinder(sql)

    /** RFC 7396: SQLite's built-in json_patch, PostgreSQL's kv_merge_patch (see migrations.ts). */
    const mergePatch = (target: Fragment, patch: unknown): Fragment =>
      isPg ? sql`kv_merge_patch(${target}::json, ${patch}::json)::text` : sql`json_patch(${target}, ${patch})`

    const limitOffset = ({ limit, offset }: CheckedPage): Fragment =>
      isPg ? sql`LIMIT ${limit < 0 ? null : limit} OFFSET ${offset}` : sql`LIMIT ${limit} OFFSET ${offset}`

    const latestSeq = isPg
      ? sql<{ seq: number | string }>`SELECT seq FROM kv_stream_counter WHERE id = 1`
      : sql<{ seq: number | string }>`SELECT seq FROM sqlite_sequence WHERE name = 'kv_stream'`

    // --- statements ---------------------------------------------------------------------

    // Identifiers are quoted: rqlite parses statements to find `RETURNING`, and its parser
    // gives up on an unquoted `key` (or a subquery), silently dropping the returned rows.
    const columns = sql.literal(`"key", "version", "value", "type", "created"`)
    const returning = sql.literal(`RETURNING "key", "version", "value", "type", "created"`)
    const noReturning = sql.literal("")

    /**
     * A statement whose text never changes, compiled and prepared once. `build` receives
     * placeholders for the arguments; the result takes the arguments in that order.
     */
    const prepared = <A extends object>(arity: number, build: (...holes: Array<Hole>) => Statement<A>) => {
      const statement = build(...Array.from({ length: arity }, (_, i) => new Hole(i)))
      const order = statement.compile()[1].map((param) => (param as Hole).index)
      const execute = executor.prepare(statement)
      return (...args: ReadonlyArray<unknown>) => execute.rows(order.map((i) => args[i]))
    }

    const records = (statement: Statement<RecordRow>) =>
      Effect.map(executor.rows(statement), (rows) => rows.map(toRecord))
    const countOf = (statement: Statement<{ n: number | string }>) =>
      Effect.map(executor.rows(statement), (found) => Number(found[0]?.n ?? 0))

    const prefixCondition = (prefix: string): Fragment => {
      const upper = prefixSuccessor(prefix)
      return upper === undefined ? sql`"key" >= ${prefix}` : sql`"key" >= ${prefix} AND "key" < ${upper}`
    }
    const rangeCondition = (from: string, to: string): Fragment => sql`"key" >= ${from} AND "key" < ${to}`

    const selectRecords = (condition: Fragment, page: CheckedPage) =>
      records(
        sql<RecordRow>`SELECT ${columns} FROM kv_records WHERE ${condition} ORDER BY "key" ${limitOffset(page)}`,
      )

    /**
     * Deletes the keys matching `condition` (within `page` of them, in key order), so that their
     * stream records are in key order: PostgreSQL's trigger sorts them; SQLite deletes them one by
     * one in the order they are queued (`kv_delete_keys`, see storeSchema.ts). Counted by rows changed.
     */
    const deleteWhere = (condition: Fragment, page: CheckedPage): Statement<never> =>
      !isPg
        ? sql`INSERT INTO kv_delete_keys ("key")
            SELECT "key" FROM kv_records WHERE ${condition} ORDER BY "key" ${limitOffset(page)}`
        : page.offset === 0 && page.limit < 0
          ? sql`DELETE FROM kv_records WHERE ${condition}`
          : sql`DELETE FROM kv_records WHERE "key" IN (
            SELECT "key" FROM kv_records WHERE ${condition} ORDER BY "key" ${limitOffset(page)}
          )`

    // The writes of `put` and `patch`, by version: -1 upserts, 0 inserts, n > 0 updates
    // version n. A single write returns the record (none: the version check left the row
    // alone); in a batch an existing key fails an insert (the batch's guard explains it).
    const insert = (key: unknown, value: Fragment | unknown, type: unknown, created: unknown) =>
      sql`INSERT INTO kv_records ("key", "version", "value", "type", "created") VALUES (${key}, 1, ${value}, ${type}, ${created})`
    const putUpsert = (key: unknown, value: unknown, type: unknown, created: unknown, tail: Fragment) =>
      sql<RecordRow>`${insert(key, value, type, created)} ON CONFLICT ("key") DO UPDATE SET
        "version" = kv_records."version" + 1, "value" = excluded."value", "type" = excluded."type" ${tail}`
    const putUpdate = (key: unknown, version: unknown, value: unknown, type: unknown, tail: Fragment) =>
      sql<RecordRow>`UPDATE kv_records SET "version" = "version" + 1, "value" = ${value}, "type" = ${type}
        WHERE "key" = ${key} AND "version" = ${version} ${tail}`
    // a patch keeps the record's type unless one is given (`type` NULL); a new key is an object
    const patchUpsert = (key: unknown, patch: unknown, type: unknown, created: unknown, tail: Fragment) =>
      sql<RecordRow>`${insert(key, mergePatch(sql`'{}'`, patch), sql`COALESCE(${type}, 'object')`, created)}
        ON CONFLICT ("key") DO UPDATE SET "version" = kv_records."version" + 1,
        "value" = ${mergePatch(sql`kv_records."value"`, patch)}, "type" = COALESCE(${type}, kv_records."type") ${tail}`
    const patchInsert = (key: unknown, patch: unknown, type: unknown, created: unknown) =>
      insert(key, mergePatch(sql`'{}'`, patch), sql`COALESCE(${type}, 'object')`, created)
    const patchUpdate = (key: unknown, version: unknown, patch: unknown, type: unknown, tail: Fragment) =>
      sql<RecordRow>`UPDATE kv_records SET "version" = "version" + 1, "value" = ${mergePatch(sql`"value"`, patch)},
        "type" = COALESCE(${type}, "type") WHERE "key" = ${key} AND "version" = ${version} ${tail}`

    // The hot paths, prepared once.
    const getOne = prepared(
      1,
      (key) => sql<RecordRow>`SELECT ${columns} FROM kv_records WHERE "key" = ${key}`,
    )
    const putWrites = {
      upsert: prepared(4, (k, v, t, c) => putUpsert(k, v, t, c, returning)),
      create: prepared(
        4,
        (k, v, t, c) => sql<RecordRow>`${insert(k, v, t, c)} ON CONFLICT ("key") DO NOTHING ${returning}`,
      ),
      update: prepared(4, (k, n, v, t) => putUpdate(k, n, v, t, returning)),
    }
    const patchWrites = {
      upsert: prepared(4, (k, p, t, c) => patchUpsert(k, p, t, c, returning)),
      create: prepared(
        4,
        (k, p, t, c) =>
          sql<RecordRow>`${patchInsert(k, p, t, c)} ON CONFLICT ("key") DO NOTHING ${returning}`,
      ),
      update: prepared(4, (k, n, p, t) => patchUpdate(k, n, p, t, returning)),
    }

    /** The written record, or a mismatch when the version check left the row alone. */
    const writeOne = (
      key: string,
      version: number,
      written: Effect.Effect<ReadonlyArray<RecordRow>, SqlError>,
    ) =>
      Effect.flatMap(written, (rows) =>
        rows.length === 1
          ? Effect.succeed(toRecord(rows[0]!))
          : Effect.fail(new VersionMismatchError({ key, expected: version })),
      )

    const expectVersion = (key: string, version: number) =>
      sql`INSERT INTO kv_expect ("key", "version") VALUES (${key}, ${version})`

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

    // --- mutateAll -------------------------------------------------------------------

    /** The statements of one mutation of a batch, each with what it is for. */
    const planMutation = (
      mutation: Mutation,
      index: number,
      now: number,
    ): Effect.Effect<ReadonlyArray<readonly [Statement<unknown>, BatchStep]>, InvalidArgumentError> => {
      const write = (
        statement: Statement<unknown>,
        key?: string,
        version?: number,
      ): readonly [Statement<unknown>, BatchStep] => [
        statement,
        key === undefined || version === undefined
          ? { kind: "write", mutation: index }
          : { kind: "write", mutation: index, key, version },
      ]
      // A version check is its own statement first: it raises inside SQL and so aborts the batch.
      const guarded = (key: string, version: number, statement: Statement<unknown>) =>
        version >= 0
          ? [
              [expectVersion(key, version), { kind: "guard", key, version }] as const,
              write(statement, key, version),
            ]
          : [write(statement)]
      const created = time(now)
      return Mutation.$match(mutation, {
        Put: (m) =>
          Effect.gen(function* () {
            const key = yield* decodeKey(m.key)
            const version = yield* decodeVersion(m.version)
            const value = yield* decodeValue(m.value)
            const type = (yield* decodeTypeOption(m)) ?? typeOf(m.value)
            const statement =
              version > 0
                ? putUpdate(key, version, value, type, noReturning)
                : version === 0
                  ? insert(key, value, type, created)
                  : putUpsert(key, value, type, created, noReturning)
            return guarded(key, version, statement)
          }),
        Patch: (m) =>
          Effect.gen(function* () {
            const key = yield* decodeKey(m.key)
            const version = yield* decodeVersion(m.version)
            const patch = yield* decodePatch(m.patch)
            const type = (yield* decodeTypeOption(m)) ?? null
            const statement =
              version > 0
                ? patchUpdate(key, version, patch, type, noReturning)
                : version === 0
                  ? patchInsert(key, patch, type, created)
                  : patchUpsert(key, patch, type, created, noReturning)
            return guarded(key, version, statement)
          }),
        Delete: (m) =>
          Effect.map(decodeKey(m.key), (key) => [write(sql`DELETE FROM kv_records WHERE "key" = ${key}`)]),
        DeletePrefix: (m) => Effect.map(deletePrefixStatement(m.prefix, m.page), (s) => [write(s)]),
        DeleteRange: (m) => Effect.map(deleteRangeStatement(m.from, m.to, m.page), (s) => [write(s)]),
      })
    }

    const deleteRangeStatement = (from: string, to: string, page: Page | undefined) =>
      Effect.gen(function* () {
        const condition = rangeCondition(yield* decodeFrom(from), yield* decodeTo(to))
        return deleteWhere(condition, yield* decodePage(page))
      })

    const deletePrefixStatement = (prefix: string, page: Page | undefined) =>
      Effect.gen(function* () {
        const checked = yield* decodePrefix(prefix)
        if (checked === "") {
          return yield* new InvalidArgumentError({
            message: 'deletePrefix needs a prefix; use "*" to delete every key',
          })
        }
        const condition = checked === "*" ? sql`1 = 1` : prefixCondition(checked)
        return deleteWhere(condition, yield* decodePage(page))
      })

    /** Explains why statement `index` of a batch failed. */
    const batchFailure = (steps: ReadonlyArray<BatchStep>, error: AtomicStatementError) => {
      const step = steps[error.index]
      if (step?.kind === "guard" && executor.explain(error.cause).detail.includes(versionMismatchMarker)) {
        return new VersionMismatchError({ key: step.key, expected: step.version })
      }
      // A concurrent insert between the guard and an insert-only write (PostgreSQL).
      if (
        step?.kind === "write" &&
        step.version === 0 &&
        step.key !== undefined &&
        isUniqueViolation(error.cause, executor.explain)
      ) {
        return new VersionMismatchError({ key: step.key, expected: 0 })
      }
      return storeError(executor, "mutateAll", error)
    }

    // --- the service -------------------------------------------------------------------

    const service: StoreService = {
      init,

      get: (key) =>
        Effect.flatMap(decodeKey(key), (key) =>
          run(
            "get",
            Effect.map(getOne(key), (rows) =>
              rows.length === 0 ? Option.none() : Option.some(toRecord(rows[0]!)),
            ),
          ),
        ),

      getBatch: (keys) =>
        Effect.flatMap(decodeKeys(keys), (keys) =>
          run(
            "getBatch",
            Effect.reduce(chunks(keys), new Map<string, KvRecord>(), (found, chunk) =>
              Effect.map(
                records(sql<RecordRow>`SELECT ${columns} FROM kv_records WHERE "key" IN ${sql.in(chunk)}`),
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
          const condition = prefixCondition(yield* decodePrefix(prefix))
          return yield* run("getPrefix", selectRecords(condition, yield* decodePage(page)))
        }),

      getRange: (from, to, page) =>
        Effect.gen(function* () {
          const condition = rangeCondition(yield* decodeFrom(from), yield* decodeTo(to))
          return yield* run("getRange", selectRecords(condition, yield* decodePage(page)))
        }),

      getType: (type, page) =>
        Effect.gen(function* () {
          const checked = yield* decodeType(type)
          const condition = checked === "all" ? sql`1 = 1` : sql`"type" = ${checked}`
          return yield* run("getType", selectRecords(condition, yield* decodePage(page)))
        }),

      list: (page) =>
        Effect.flatMap(decodePage(page), (page) => run("list", selectRecords(sql`1 = 1`, page))),

      put: (key, version, value, options) =>
        Effect.gen(function* () {
          const checkedKey = yield* decodeKey(key)
          const checkedVersion = yield* decodeVersion(version)
          const json = yield* decodeValue(value)
          const type = (yield* decodeTypeOption(options)) ?? typeOf(value)
          const created = time(yield* Clock.currentTimeMillis)
          const written =
            checkedVersion > 0
              ? putWrites.update(checkedKey, checkedVersion, json, type)
              : checkedVersion === 0
                ? putWrites.create(checkedKey, json, type, created)
                : putWrites.upsert(checkedKey, json, type, created)
          return yield* notifying(run("put", writeOne(checkedKey, checkedVersion, written)))
        }),

      patch: (key, version, patch, options) =>
        Effect.gen(function* () {
          const checkedKey = yield* decodeKey(key)
          const checkedVersion = yield* decodeVersion(version)
          const json = yield* decodePatch(patch)
          const type = (yield* decodeTypeOption(options)) ?? null
          const created = time(yield* Clock.currentTimeMillis)
          const written =
            checkedVersion > 0
              ? patchWrites.update(checkedKey, checkedVersion, json, type)
              : checkedVersion === 0
                ? patchWrites.create(checkedKey, json, type, created)
                : patchWrites.upsert(checkedKey, json, type, created)
          return yield* notifying(run("patch", writeOne(checkedKey, checkedVersion, written)))
        }),

      delete: (...keys) =>
        Effect.gen(function* () {
          const checked = yield* decodeKeys(keys)
          if (checked.length === 0) return 0
          const statements = chunks(checked).map((chunk) =>
            deleteWhere(sql`"key" IN ${sql.in(chunk)}`, { offset: 0, limit: -1 }),
          )
          const deleted =
            statements.length === 1
              ? executor.affected(statements[0]!)
              : Effect.map(
                  Effect.catchTag(executor.atomic(statements), "AtomicStatementError", (e) =>
                    Effect.fail(e.cause),
                  ),
                  (results) => results.reduce((n, r) => n + r.affected, 0),
                )
          return yield* notifying(run("delete", deleted))
        }),

      deletePrefix: (prefix, page) =>
        Effect.flatMap(deletePrefixStatement(prefix, page), (statement) =>
          notifying(run("deletePrefix", executor.affected(statement))),
        ),

      deleteRange: (from, to, page) =>
        Effect.flatMap(deleteRangeStatement(from, to, page), (statement) =>
          notifying(run("deleteRange", executor.affected(statement))),
        ),

      count: () => run("count", countOf(sql`SELECT COUNT(*) AS n FROM kv_records`)),

      countPrefix: (prefix) =>
        Effect.flatMap(decodePrefix(prefix), (prefix) =>
          run(
            "countPrefix",
            countOf(sql`SELECT COUNT(*) AS n FROM kv_records WHERE ${prefixCondition(prefix)}`),
          ),
        ),

      countRange: (from, to) =>
        Effect.gen(function* () {
          const condition = rangeCondition(yield* decodeFrom(from), yield* decodeTo(to))
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
          const results = yield* notifying(
            run(
              "mutateAll",
              executor
                .atomic(planned.map(([statement]) => statement))
                .pipe(
                  Effect.catchTag("AtomicStatementError", (error) => Effect.fail(batchFailure(steps, error))),
                ),
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
          const checkedType = yield* decodeType(type)
          const from = yield* decodeSeq(seq)
          const page = { offset: 0, limit: yield* decodeLimit(limit ?? -1) }
          const ofType = checkedType === "all" ? sql.literal("") : sql`AND "type" = ${checkedType}`
          const found = sql<StreamRow>`SELECT "seq", "action", ${columns} FROM kv_stream
            WHERE "seq" >= ${from} ${ofType} ORDER BY "seq" ${limitOffset(page)}`
          return yield* run(
            "stream",
            Effect.map(executor.rows(found), (rows) => rows.map(toStreamRecord)),
          )
        }),

      streamSeq: () =>
        run(
          "streamSeq",
          Effect.map(executor.rows(latestSeq), (found) => Number(found[0]?.seq ?? 0)),
        ),

      streamTrim: (seq) =>
        Effect.flatMap(decodeSeq(seq), (seq) =>
          run("streamTrim", executor.affected(sql`DELETE FROM kv_stream WHERE "seq" <= ${seq}`)),
        ),

      lockAcquire: (name, lockedBy, duration) =>
        Effect.gen(function* () {
          const lock = yield* decodeLockName(name)
          const holder = yield* decodeHolder(lockedBy)
          const millis = Math.ceil(Duration.toMillis(yield* decodeDuration(duration)))
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
            Effect.map(executor.rows(acquired), (taken) => taken.length === 1),
          )
        }),

      lockRelease: (name, lockedBy) =>
        Effect.gen(function* () {
          const lock = yield* decodeLockName(name)
          const holder = yield* decodeHolder(lockedBy)
          const released = sql`DELETE FROM kv_locks WHERE "name" = ${lock} AND "locked_by" = ${holder}`
          return yield* run(
            "lockRelease",
            Effect.map(executor.affected(released), (deleted) => deleted === 1),
          )
        }),

      lockStatus: (name) =>
        Effect.gen(function* () {
          const lock = yield* decodeLockName(name)
          const now = yield* Clock.currentTimeMillis
          const found = sql<LockRow>`SELECT "name", "locked_by", "locked_at", "expires_at" FROM kv_locks
            WHERE "name" = ${lock} AND "expires_at" > ${time(now)}`
          return yield* run(
            "lockStatus",
            Effect.map(executor.rows(found), (locks) =>
              Option.map(Option.fromNullable(locks[0]), toLockStatus),
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
