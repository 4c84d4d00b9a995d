/**
 * Typed access: the records of one type, their values encoded and decoded with an Effect
 * `Schema`.
 *
 * `typed(schema)` binds the Schema and the type name its records are stored under (the
 * Schema's identifier, e.g. a `Schema.Class` name, or an explicit name: one is required, since
 * every plain object is of type `object`). Reads only see records of that type, and a value
 * that does not decode fails the read with a `ParseError` that names the key; the same holds
 * for every read, lists and the stream included (a list never skips a record silently).
 * Writes encode with the Schema; `patch` merges (RFC 7396), decodes the result and only then
 * writes it, so a patch can never leave a value its Schema rejects.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as Arg from "./Arguments.js"
import {
  InvalidArgumentError,
  type KvRecord,
  type Page,
  Store,
  type StoreError,
  type StreamAction,
  VersionMismatchError,
} from "./Store.js"

/** A record whose value was decoded with a Schema. */
export interface TypedRecord<A> {
  readonly key: string
  readonly version: number
  readonly value: A
  readonly type: string
  readonly created: Date
}

/** A change of a record of the type, its value decoded. */
export interface TypedStreamRecord<A> {
  readonly seq: number
  readonly action: StreamAction
  readonly record: TypedRecord<A>
}

type Fails<A, E = never> = Effect.Effect<A, E | InvalidArgumentError | StoreError | ParseResult.ParseError>

export interface TypedStore<A> {
  /** The type name the records are stored under. */
  readonly type: string
  readonly get: (key: string) => Fails<Option.Option<TypedRecord<A>>>
  /** The keys that hold a record of this type. */
  readonly getBatch: (keys: Iterable<string>) => Fails<ReadonlyMap<string, TypedRecord<A>>>
  /** Same version rules as `Store.put`. */
  readonly put: (key: string, version: number, value: A) => Fails<TypedRecord<A>, VersionMismatchError>
  /**
   * An RFC 7396 merge patch of the encoded value, with the version rules of `Store.patch`; the
   * merged value must decode, else nothing is written.
   */
  readonly patch: (key: string, version: number, patch: object) => Fails<TypedRecord<A>, VersionMismatchError>
  /** Deletes the keys (whatever their type); the number deleted. */
  readonly delete: (...keys: ReadonlyArray<string>) => Fails<number>
  /** The records of this type whose key starts with `prefix`, ordered by key; the page counts those. */
  readonly getPrefix: (prefix: string, page?: Page) => Fails<ReadonlyArray<TypedRecord<A>>>
  /** Every record of this type, ordered by key. */
  readonly list: (page?: Page) => Fails<ReadonlyArray<TypedRecord<A>>>
  /** The changes of records of this type with `seq >= seq`, in order. */
  readonly stream: (seq: number, limit?: number) => Fails<ReadonlyArray<TypedStreamRecord<A>>>
}

/** The Schema's identifier (of its type side for a transformation such as a Class). */
const identifierOf = (schema: Schema.Schema.Any): Option.Option<string> => {
  const ast = schema.ast
  return Option.orElse(SchemaAST.getIdentifierAnnotation(ast), () =>
    SchemaAST.isTransformation(ast) ? SchemaAST.getIdentifierAnnotation(ast.to) : Option.none(),
  )
}

const decodeTypeName = Arg.decoder(Arg.RecordType)
const decodePatch = Arg.decoder(Arg.MergePatch)

/**
 * An unconditional typed patch that lost a race to another write reads and tries again: soon,
 * spread out (jittered, at most 100 ms apart) and not forever (then the mismatch is the answer).
 */
const patchRetry = Schedule.exponential("2 millis").pipe(
  Schedule.union(Schedule.spaced("100 millis")),
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(50)),
)

/** RFC 7396 on plain JSON values. */
const mergePatch = (target: unknown, patch: unknown): unknown => {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch
  const result: Record<string, unknown> =
    typeof target === "object" && target !== null && !Array.isArray(target) ? { ...target } : {}
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) delete result[name]
    else result[name] = mergePatch(result[name], value)
  }
  return result
}

/**
 * Binds a Schema, and the type name its records are stored under, to the store. The name is
 * `typeName`, else the Schema's identifier; a Schema without either is refused.
 */
export const typed = <A, I>(
  schema: Schema.Schema<A, I>,
  typeName?: string,
): Effect.Effect<TypedStore<A>, InvalidArgumentError, Store> =>
  Effect.gen(function* () {
    const store = yield* Store
    const name = typeName ?? Option.getOrUndefined(identifierOf(schema))
    if (name === undefined) {
      return yield* new InvalidArgumentError({
        message:
          "typed(schema) needs a type name: give the Schema an identifier (a Schema.Class has one) or pass the name",
      })
    }
    const type = yield* decodeTypeName(name)
    const decodeValue = ParseResult.decodeUnknown(schema)
    const encode = ParseResult.encode(schema)
    /** A failure names the key: `["user/1"]` leads the message. */
    const atKey = (key: string, actual: unknown) => (issue: ParseResult.ParseIssue) =>
      new ParseResult.ParseError({ issue: new ParseResult.Pointer(key, actual, issue) })
    const decodeAt = (key: string, value: unknown) => Effect.mapError(decodeValue(value), atKey(key, value))

    /** The record's value decoded; a failure names the key. */
    const decodeRecord = (record: KvRecord): Effect.Effect<TypedRecord<A>, ParseResult.ParseError> =>
      Effect.map(decodeAt(record.key, record.value), (value) => ({ ...record, value }))
    const decodeAll = (records: ReadonlyArray<KvRecord>) => Effect.forEach(records, decodeRecord)
    const ofType = (record: KvRecord) => record.type === type

    const patchOnce = (key: string, version: number, patch: object) =>
      Effect.gen(function* () {
        const current = yield* store.get(key)
        if (
          version >= 0 &&
          Option.match(current, { onNone: () => version !== 0, onSome: (r) => r.version !== version })
        ) {
          return yield* new VersionMismatchError({ key, expected: version })
        }
        const json = yield* decodePatch(patch)
        const merged = mergePatch(
          Option.match(current, { onNone: () => ({}), onSome: (r) => r.value }),
          JSON.parse(json),
        )
        yield* decodeAt(key, merged)
        // written only if nobody changed the record since it was read
        const expected = Option.match(current, { onNone: () => 0, onSome: (r) => r.version })
        return yield* Effect.flatMap(store.patch(key, expected, patch, { type }), decodeRecord)
      })

    return {
      type,
      get: (key) =>
        Effect.flatMap(store.get(key), (found) =>
          Option.match(Option.filter(found, ofType), {
            onNone: () => Effect.succeedNone,
            onSome: (record) => Effect.asSome(decodeRecord(record)),
          }),
        ),
      getBatch: (keys) =>
        Effect.flatMap(store.getBatch(keys), (found) =>
          Effect.map(
            decodeAll([...found.values()].filter(ofType)),
            (records) => new Map(records.map((r) => [r.key, r])),
          ),
        ),
      put: (key, version, value) =>
        encode(value).pipe(
          Effect.mapError(atKey(key, value)),
          Effect.flatMap((encoded) => store.put(key, version, encoded, { type })),
          Effect.map((record): TypedRecord<A> => ({ ...record, value })),
        ),
      patch: (key, version, patch) =>
        // unconditional (-1): retried when another write came between the read and the write
        version === -1
          ? Effect.retry(patchOnce(key, -1, patch), {
              schedule: patchRetry,
              while: (error) => error._tag === "VersionMismatchError",
            })
          : patchOnce(key, version, patch),
      delete: (...keys) => store.delete(...keys),
      getPrefix: (prefix, page) => Effect.flatMap(store.getPrefix(prefix, page, { type }), decodeAll),
      list: (page) => Effect.flatMap(store.getType(type, page), decodeAll),
      stream: (seq, limit) =>
        Effect.flatMap(store.stream(type, seq, limit), (records) =>
          Effect.forEach(records, (change) =>
            Effect.map(decodeRecord(change.record), (record) => ({
              seq: change.seq,
              action: change.action,
              record,
            })),
          ),
        ),
    }
  })
