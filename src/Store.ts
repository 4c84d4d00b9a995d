/**
 * The `Store` service: a versioned key-value store with a change stream and locks.
 *
 * This module holds the abstract service, its models, mutation constructors and errors.
 * The SQL implementation shared by every backend lives in `internal/storeSql.ts`; typed access
 * (values through a Schema) in `TypedStore.ts`.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Task } from "./Scheduler.js"

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

// Models are plain readonly objects described by a Schema (which encodes them for the CLI:
// dates as RFC 3339 strings). Plain objects, not Schema classes: a read builds one per row,
// and a class instance costs ten times as much to make.

/**
 * One stored key. `created` is set when the key is first written and never changes (an expired
 * key written again is a new record). `expiresAt`: when the record expires (see
 * {@link WriteOptions.ttl}); absent when it does not.
 */
export const KvRecord = Schema.Struct({
  key: Schema.String,
  version: Schema.Number,
  value: Schema.Unknown,
  type: Schema.String,
  created: Schema.Date,
  expiresAt: Schema.optional(Schema.Date),
}).annotations({ identifier: "KvRecord" })
export interface KvRecord extends Schema.Schema.Type<typeof KvRecord> {}

export const StreamAction = Schema.Literal("create", "update", "delete")
export type StreamAction = typeof StreamAction.Type

/** One change of a user key, in commit order. */
export const StreamRecord = Schema.Struct({
  seq: Schema.Number,
  action: StreamAction,
  record: KvRecord,
}).annotations({ identifier: "StreamRecord" })
export interface StreamRecord extends Schema.Schema.Type<typeof StreamRecord> {}

export const LockStatus = Schema.Struct({
  name: Schema.String,
  lockedBy: Schema.String,
  lockedAt: Schema.Date,
  expiresAt: Schema.Date,
}).annotations({ identifier: "LockStatus" })
export interface LockStatus extends Schema.Schema.Type<typeof LockStatus> {}

/** `offset` absent means 0; `limit` absent or `-1` means no limit. */
export interface Page {
  readonly offset?: number | undefined
  readonly limit?: number | undefined
}

export interface WriteOptions extends ExpiryOptions {
  /** The record type; derived from the value when absent (see {@link typeOf}). */
  readonly type?: string | undefined
}

export interface ExpiryOptions {
  /**
   * The record expires this long after the write (by the `Clock`): from then on every read and
   * version check finds the key absent, and an expiry sweep deletes it with a `delete` stream
   * record that keeps its `expiresAt`. Without it, `put` clears an expiry and `patch` and
   * `increment` keep it.
   */
  readonly ttl?: Duration.DurationInput | undefined
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** A version check failed; nothing was written. `expected` is the version the caller gave. */
export class VersionMismatchError extends Schema.TaggedError<VersionMismatchError>()("VersionMismatchError", {
  key: Schema.String,
  expected: Schema.Number,
}) {
  override get message() {
    return this.expected === 0
      ? `version mismatch on "${this.key}": expected the key to be absent`
      : `version mismatch on "${this.key}": expected version ${this.expected}`
  }
}

/** The arguments were rejected before the database was touched. */
export class InvalidArgumentError extends Schema.TaggedError<InvalidArgumentError>()("InvalidArgumentError", {
  message: Schema.String,
}) {}

/**
 * The backend failed. `reason` says whether the database could not be reached (`connect`), a
 * statement failed (`query`), or a write got no answer and may or may not have been applied
 * (`unknown-outcome`: read the data back before retrying it); `detail` is the client's own
 * description (without passwords); `cause` keeps the driver's error for debugging.
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  operation: Schema.String,
  reason: Schema.Literal("connect", "query", "unknown-outcome"),
  detail: Schema.String,
  cause: Schema.Defect,
}) {
  override get message() {
    return this.operation === "connect" ? this.detail : `${this.operation} failed: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// Mutations for `mutateAll`
// ---------------------------------------------------------------------------

export type Mutation = Data.TaggedEnum<{
  Put: {
    readonly key: string
    readonly version: number
    readonly value: unknown
    readonly type?: string | undefined
    readonly ttl?: Duration.DurationInput | undefined
  }
  Patch: {
    readonly key: string
    readonly version: number
    readonly patch: unknown
    readonly type?: string | undefined
    readonly ttl?: Duration.DurationInput | undefined
  }
  Delete: { readonly key: string }
  /** Fails the batch unless `key` is at `version` (0: absent); writes nothing. */
  Check: { readonly key: string; readonly version: number }
  /** Adds `by` to the key's number value (a missing key counts from 0). */
  Increment: { readonly key: string; readonly by: number; readonly ttl?: Duration.DurationInput | undefined }
  /** Creates the task (the outbox) in the batch's transaction. */
  Task: { readonly task: Task }
  DeletePrefix: { readonly prefix: string; readonly page?: Page | undefined }
  DeleteRange: { readonly from: string; readonly to: string; readonly page?: Page | undefined }
}>

const MutationCtor = Data.taggedEnum<Mutation>()

/** Constructors for the mutations `mutateAll` applies in one transaction. */
export const Mutation = {
  put: (key: string, version: number, value: unknown, options?: WriteOptions): Mutation =>
    MutationCtor.Put({ key, version, value, type: options?.type, ttl: options?.ttl }),
  patch: (key: string, version: number, patch: unknown, options?: WriteOptions): Mutation =>
    MutationCtor.Patch({ key, version, patch, type: options?.type, ttl: options?.ttl }),
  delete: (key: string): Mutation => MutationCtor.Delete({ key }),
  /** The batch fails with `VersionMismatchError` unless `key` is at `version` (`0`: absent). */
  check: (key: string, version: number): Mutation => MutationCtor.Check({ key, version }),
  /** Adds `by` (default 1) to a number value; a missing key counts from 0. */
  increment: (key: string, by = 1, options?: ExpiryOptions): Mutation =>
    MutationCtor.Increment({ key, by, ttl: options?.ttl }),
  /** Creates the task (see `Task.make`) in the same transaction as the batch's key writes. */
  task: (task: Task): Mutation => MutationCtor.Task({ task }),
  deletePrefix: (prefix: string, page?: Page): Mutation => MutationCtor.DeletePrefix({ prefix, page }),
  deleteRange: (from: string, to: string, page?: Page): Mutation =>
    MutationCtor.DeleteRange({ from, to, page }),
  $match: MutationCtor.$match,
  $is: MutationCtor.$is,
}

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------

type Fails<A, E = never> = Effect.Effect<A, E | InvalidArgumentError | StoreError>

/** Filters of `store.stream` beyond the record type. */
export interface StreamOptions {
  /** Only changes of keys starting with this prefix (default: every key). */
  readonly prefix?: string | undefined
}

export interface StoreService {
  /** Create or upgrade the tables; idempotent. */
  readonly init: () => Effect.Effect<void, StoreError>
  readonly get: (key: string) => Fails<Option.Option<KvRecord>>
  /** Any number of keys; missing keys are absent from the map. */
  readonly getBatch: (keys: Iterable<string>) => Fails<ReadonlyMap<string, KvRecord>>
  /**
   * Keys starting with `prefix`, ordered by key; `%`, `_` and `\` are ordinary characters. With
   * `type`, only the records of that type (the page counts those).
   */
  readonly getPrefix: (
    prefix: string,
    page?: Page,
    options?: { readonly type?: string | undefined },
  ) => Fails<ReadonlyArray<KvRecord>>
  /** `from <= key < to`, ordered by key. */
  readonly getRange: (from: string, to: string, page?: Page) => Fails<ReadonlyArray<KvRecord>>
  /** Records of one type; `"all"` means every record. */
  readonly getType: (type: string, page?: Page) => Fails<ReadonlyArray<KvRecord>>
  readonly list: (page?: Page) => Fails<ReadonlyArray<KvRecord>>
  /** Version `-1` writes unconditionally, `0` only inserts, `n > 0` only replaces version `n`. */
  readonly put: (
    key: string,
    version: number,
    value: unknown,
    options?: WriteOptions,
  ) => Fails<KvRecord, VersionMismatchError>
  /** RFC 7396 merge patch with the same version rules as `put`; a missing key is created. */
  readonly patch: (
    key: string,
    version: number,
    patch: unknown,
    options?: WriteOptions,
  ) => Fails<KvRecord, VersionMismatchError>
  /**
   * Adds `by` (default 1, any finite number) to the key's number value atomically, in SQL, and
   * returns the new record; a missing key counts from 0 (created with type `number`), an
   * existing key keeps its type. A value that is not a number is an `InvalidArgumentError`.
   */
  readonly increment: (key: string, by?: number, options?: ExpiryOptions) => Fails<KvRecord>
  /** The number of keys deleted; missing keys are not an error. */
  readonly delete: (...keys: ReadonlyArray<string>) => Fails<number>
  /** `"*"` deletes every key; an empty prefix is rejected. */
  readonly deletePrefix: (prefix: string, page?: Page) => Fails<number>
  readonly deleteRange: (from: string, to: string, page?: Page) => Fails<number>
  readonly count: () => Fails<number>
  /**
   * The expiry sweep, now: deletes every record expired by the `Clock` (each with one `delete`
   * stream record, even when several processes sweep at once) and returns how many it deleted.
   */
  readonly expire: () => Fails<number>
  readonly countPrefix: (prefix: string) => Fails<number>
  readonly countRange: (from: string, to: string) => Fails<number>
  /**
   * All mutations in one transaction; the rows each affected (a check 0, an increment 1, a task
   * 1). One failure rolls back all, tasks included.
   */
  readonly mutateAll: (
    mutations: ReadonlyArray<Mutation>,
  ) => Fails<ReadonlyArray<number>, VersionMismatchError>
  /**
   * Change records with `seq >= seq`, in order; `type` `"all"` means every record type;
   * `prefix`: only changes of keys that start with it (exactly: `%`, `_`, `\` are ordinary).
   */
  readonly stream: (
    type: string,
    seq: number,
    limit?: number,
    options?: StreamOptions,
  ) => Fails<ReadonlyArray<StreamRecord>>
  /** The latest seq, 0 when the stream has never been written. */
  readonly streamSeq: () => Fails<number>
  /** Delete stream records with `seq <= seq`; the number deleted. */
  readonly streamTrim: (seq: number) => Fails<number>
  /** `true` when acquired or refreshed by the same holder, `false` while another holder's lock is live. */
  readonly lockAcquire: (name: string, lockedBy: string, duration: Duration.DurationInput) => Fails<boolean>
  /** Releases only when held by `lockedBy`; `true` when it was released. */
  readonly lockRelease: (name: string, lockedBy: string) => Fails<boolean>
  readonly lockStatus: (name: string) => Fails<Option.Option<LockStatus>>
}

export class Store extends Context.Tag("effect-kv/Store")<Store, StoreService>() {}

// ---------------------------------------------------------------------------
// Record types
// ---------------------------------------------------------------------------

/**
 * The type a value is stored under when no explicit type is given: a class instance's
 * constructor name, `object` for plain objects, else `array`, `string`, `number`,
 * `boolean` or `null`.
 */
export const typeOf = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "array"
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return typeof value
    case "object": {
      const proto = Object.getPrototypeOf(value)
      if (proto === null || proto === Object.prototype) return "object"
      const name = (proto.constructor as { name?: unknown } | undefined)?.name
      return typeof name === "string" && name.length > 0 ? name : "object"
    }
    default:
      return "object"
  }
}
