/**
 * What the store accepts, as Schemas: one definition shared by the store (which decodes every
 * argument before it touches the database) and the `kv` command line (which attaches the same
 * Schemas to its arguments, so bad input is refused before a database is opened, in the same
 * words).
 *
 * The limits are those every backend can honour identically:
 * - keys, record types and names (locks, holders, tasks, consumers) are non-empty, well-formed
 *   Unicode without NUL, at most {@link maxNameBytes} bytes of UTF-8 (PostgreSQL cannot index
 *   longer ones);
 * - values and patches are JSON (their `JSON.stringify` form), nested at most {@link maxDepth}
 *   deep, with strings and member names free of NUL and lone surrogates (PostgreSQL's JSON
 *   functions cannot hold them, SQLite's `json_patch` compares member names only up to NUL);
 * - a merge patch is a JSON object by its JSON form (a `Date` is a string, not an object).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as DurationParser from "./internal/duration.js"
import { InvalidArgumentError } from "./Store.js"

/** The longest key, type or name, in bytes of UTF-8. */
export const maxNameBytes = 1024

/** The deepest nesting of arrays and objects in a value or patch. */
export const maxDepth = 100

const isWellFormed = (text: string): boolean =>
  (text as unknown as { isWellFormed(): boolean }).isWellFormed()

const utf8Bytes = (text: string): number =>
  text.length * 3 <= maxNameBytes ? text.length : Buffer.byteLength(text)

/** The message of the innermost issue: the words of the check that failed. */
const innermost = (issue: ParseResult.ParseIssue): string | undefined => {
  if ("message" in issue && typeof issue.message === "string") return issue.message
  return "issue" in issue && typeof issue.issue === "object"
    ? innermost(issue.issue as ParseResult.ParseIssue)
    : undefined
}

/**
 * A refinement whose failure reads as one sentence: `problem` says what is wrong with a value
 * (`undefined`: nothing). Every failure of the Schema, of the base type too, is that sentence.
 */
export const checked = <A, I>(base: Schema.Schema<A, I>, problem: (value: unknown) => string | undefined) =>
  base.pipe(
    Schema.filter((value) => problem(value) === undefined, {
      message: (issue) => ({
        message: problem(issue.actual) ?? innermost(issue) ?? "invalid",
        override: true,
      }),
    }),
  )

/** A string for `what`: `empty` allows "", `maxBytes` caps its UTF-8 length. */
const text = (what: string, options: { readonly empty: boolean; readonly maxBytes?: number }) =>
  checked(Schema.String, (value) => {
    if (typeof value !== "string") return `${what} must be a string`
    if (!options.empty && value.length === 0) return `${what} must be a non-empty string`
    if (value.includes("\u0000")) return `${what} must not contain NUL characters`
    if (!isWellFormed(value)) return `${what} must be well-formed Unicode (it has a lone surrogate)`
    if (options.maxBytes !== undefined && utf8Bytes(value) > options.maxBytes) {
      return `${what} must be at most ${options.maxBytes} bytes of UTF-8, got ${Buffer.byteLength(value)}`
    }
    return undefined
  })

/** A key, type or other name: non-empty, well-formed, no NUL, at most {@link maxNameBytes} bytes. */
export const name = (what: string) => text(what, { empty: false, maxBytes: maxNameBytes })

/** A record's key. */
export const Key = name("key").pipe(Schema.brand("effect-kv/Key"))
export type Key = typeof Key.Type

/** A record type (the explicit `type` of a write, a filter of reads and the stream). */
export const RecordType = name("type").pipe(Schema.brand("effect-kv/RecordType"))
export type RecordType = typeof RecordType.Type

export const LockName = name("lock name").pipe(Schema.brand("effect-kv/LockName"))
export type LockName = typeof LockName.Type
export const LockHolder = name("lock holder").pipe(Schema.brand("effect-kv/LockHolder"))
export type LockHolder = typeof LockHolder.Type

export const TaskId = name("task id").pipe(Schema.brand("effect-kv/TaskId"))
export type TaskId = typeof TaskId.Type
export const TaskName = name("task name").pipe(Schema.brand("effect-kv/TaskName"))
export type TaskName = typeof TaskName.Type
export const RunnerId = name("runner id").pipe(Schema.brand("effect-kv/RunnerId"))
export type RunnerId = typeof RunnerId.Type

/** A consumer (`streamName`) and an instance of it (`consumerName`, the lock holder). */
export const StreamName = name("stream name").pipe(Schema.brand("effect-kv/StreamName"))
export type StreamName = typeof StreamName.Type
export const ConsumerName = name("consumer name").pipe(Schema.brand("effect-kv/ConsumerName"))
export type ConsumerName = typeof ConsumerName.Type

/** Names separated by commas (`a,b`), each checked like {@link name}; at least one. */
export const nameList = (what: string) => {
  const check = ParseResult.decodeUnknownEither(name(what))
  return Schema.transformOrFail(Schema.String, Schema.Array(Schema.String), {
    strict: true,
    decode: (input, _, ast) => {
      const names = input.split(",").map((part) => part.trim())
      const problem =
        input.trim() === ""
          ? `${what} must name at least one`
          : names.map((part) => check(part)).find(Either.isLeft)?.left
      return problem === undefined
        ? ParseResult.succeed(names)
        : ParseResult.fail(
            new ParseResult.Type(ast, input, typeof problem === "string" ? problem : describeIssue(problem)),
          )
    },
    encode: (names) => ParseResult.succeed(names.join(",")),
  }).annotations({ message: (issue) => ({ message: innermost(issue) ?? `invalid ${what}`, override: true }) })
}

/** A prefix or range bound: like a key, but it may be empty and has no length limit. */
export const bound = (what: string) => text(what, { empty: true })

export const Prefix = bound("prefix").pipe(Schema.brand("effect-kv/Prefix"))
export type Prefix = typeof Prefix.Type
/** The bounds of a range, `from <= key < to`. */
export const From = bound("from").pipe(Schema.brand("effect-kv/From"))
export type From = typeof From.Type
export const To = bound("to").pipe(Schema.brand("effect-kv/To"))
export type To = typeof To.Type

const integer = (what: string, min: number, expected: string) =>
  checked(Schema.Number, (n) =>
    typeof n === "number" && Number.isSafeInteger(n) && n >= min
      ? undefined
      : `${what} must be ${expected}, got ${typeof n === "string" ? JSON.stringify(n) : String(n)}`,
  )

/** `-1` (write unconditionally), `0` (only create) or the version to replace. */
export const Version = integer("version", -1, "-1, 0 or a positive integer").pipe(
  Schema.brand("effect-kv/Version"),
)
export type Version = typeof Version.Type

export const Offset = integer("offset", 0, "a non-negative integer").pipe(Schema.brand("effect-kv/Offset"))
export type Offset = typeof Offset.Type

/** `-1`: no limit. */
export const Limit = integer("limit", -1, "-1 (no limit) or a non-negative integer").pipe(
  Schema.brand("effect-kv/Limit"),
)
export type Limit = typeof Limit.Type

export const Seq = integer("seq", 0, "a non-negative integer").pipe(Schema.brand("effect-kv/Seq"))
export type Seq = typeof Seq.Type

/** A positive whole number (counts of records, operations, workers, retries). */
export const positive = (what: string) => integer(what, 1, "a positive integer")

/** Zero or a positive whole number (e.g. how often a task is retried). */
export const nonNegative = (what: string) => integer(what, 0, "a non-negative integer")

const isPositiveFinite = (duration: Duration.Duration) =>
  Duration.isFinite(duration) && Duration.greaterThan(duration, Duration.zero)

/** A finite duration longer than zero, from any `Duration.DurationInput`. */
export const PositiveDuration = Schema.transformOrFail(Schema.Unknown, Schema.DurationFromSelf, {
  strict: true,
  decode: (input, _, ast) => {
    const decoded = Duration.decodeUnknown(input)
    return decoded._tag === "Some" && isPositiveFinite(decoded.value)
      ? ParseResult.succeed(decoded.value)
      : ParseResult.fail(
          new ParseResult.Type(
            ast,
            input,
            `duration must be finite and longer than zero, got ${String(input)}`,
          ),
        )
  },
  encode: ParseResult.succeed,
}).annotations({ message: (issue) => ({ message: innermost(issue) ?? "invalid duration", override: true }) })

/** A positive duration as whole milliseconds (rounded up): how leases and delays are stored. */
export const Millis = PositiveDuration.pipe(
  Schema.transform(Schema.Number, {
    strict: true,
    decode: (duration) => Math.ceil(Duration.toMillis(duration)),
    encode: (millis) => Duration.millis(millis),
  }),
  Schema.brand("effect-kv/Millis"),
)
export type Millis = typeof Millis.Type

/** A record's time to live (the `ttl` of put, patch and increment), as whole milliseconds. */
export const Ttl = Millis.annotations({
  message: (issue) => ({
    message: `invalid ttl: ${innermost(issue) ?? "expected a duration"}`,
    override: true,
  }),
})

const earliestTime = Date.parse("0001-01-01T00:00:00.000Z")
const latestTime = Date.parse("9999-12-31T23:59:59.999Z")

/** A time every backend stores, as epoch milliseconds: a valid `Date` in the years 1 to 9999. */
export const storedTime = (what: string) =>
  checked(Schema.DateFromSelf, (date) =>
    date instanceof Date && date.getTime() >= earliestTime && date.getTime() <= latestTime
      ? undefined
      : `${what} must be a valid Date between the years 1 and 9999`,
  ).pipe(
    Schema.transform(Schema.Number, {
      strict: true,
      decode: (date) => date.getTime(),
      encode: (millis) => new Date(millis),
    }),
    Schema.brand("effect-kv/StoredTime"),
  )
export type StoredTime = Schema.Schema.Type<ReturnType<typeof storedTime>>

/** Whether a time in epoch milliseconds is one every backend stores. */
export const isStorable = (millis: number): boolean => millis >= earliestTime && millis <= latestTime

/** A duration as people type it: `500ms`, `10s`, `5m`, `1h30m`; longer than zero. */
export const DurationText = Schema.transformOrFail(Schema.String, Schema.DurationFromSelf, {
  strict: true,
  decode: (input, _, ast) =>
    Either.match(DurationParser.parsePositive(input), {
      onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, input, message)),
      onRight: ParseResult.succeed,
    }),
  encode: (duration) => ParseResult.succeed(`${Duration.toMillis(duration)}ms`),
}).annotations({ message: (issue) => ({ message: innermost(issue) ?? "invalid duration", override: true }) })

const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/

/** A point in time as RFC 3339 text with its offset (`2030-01-02T15:04:05Z`, `...+02:00`). */
export const Timestamp = Schema.transformOrFail(Schema.String, Schema.ValidDateFromSelf, {
  strict: true,
  decode: (input, _, ast) => {
    const date = new Date(input)
    return rfc3339.test(input) && !Number.isNaN(date.getTime())
      ? ParseResult.succeed(date)
      : ParseResult.fail(
          new ParseResult.Type(
            ast,
            input,
            `invalid time "${input}": expected RFC 3339, e.g. 2030-01-02T15:04:05Z`,
          ),
        )
  },
  encode: (date) => ParseResult.succeed(date.toISOString()),
}).annotations({ message: (issue) => ({ message: innermost(issue) ?? "invalid time", override: true }) })

// ---------------------------------------------------------------------------------------------
// JSON values
// ---------------------------------------------------------------------------------------------

// JSON.stringify writes a \u escape only for control characters and lone surrogates, so an
// escape of NUL or of a surrogate (after an even run of backslashes) is exactly what we refuse.
const refusedEscape = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i

/** Whether arrays and objects nest deeper than `max` in JSON text. */
const nestsDeeper = (json: string, max: number): boolean => {
  if (json.length <= 2 * max) return false // too short to open max + 1 brackets
  let depth = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (inString) {
      if (c === 92)
        i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 123 || c === 91) {
      if (++depth > max) return true
    } else if (c === 125 || c === 93) depth--
  }
  return false
}

/** The JSON text of `value`, or why it cannot be stored. */
export const jsonText = (value: unknown, what = "the value"): Either.Either<string, string> => {
  let json: string | undefined
  try {
    json = JSON.stringify(value)
  } catch (error) {
    // JSON.stringify runs out of stack thousands of levels deep, long after the limit
    return error instanceof RangeError && /call stack/i.test(error.message)
      ? Either.left(`${what} nests arrays and objects more than ${maxDepth} deep`)
      : Either.left(`${what} cannot be represented as JSON: ${(error as Error).message}`)
  }
  if (json === undefined) return Either.left(`${what} cannot be represented as JSON`)
  if (json.includes("\\u") && refusedEscape.test(json)) {
    return Either.left(
      `${what} must not contain NUL characters or lone surrogates in its strings or member names`,
    )
  }
  if (nestsDeeper(json, maxDepth))
    return Either.left(`${what} nests arrays and objects more than ${maxDepth} deep`)
  return Either.right(json)
}

const jsonSchema = (what: string, check: (json: string) => string | undefined = () => undefined) =>
  Schema.transformOrFail(Schema.Unknown, Schema.String, {
    strict: true,
    decode: (input, _, ast) => {
      const json = Either.flatMap(jsonText(input, what), (json) => {
        const problem = check(json)
        return problem === undefined ? Either.right(json) : Either.left(problem)
      })
      return Either.isRight(json)
        ? ParseResult.succeed(json.right)
        : ParseResult.fail(new ParseResult.Type(ast, input, json.left))
    },
    encode: (json) => ParseResult.succeed(JSON.parse(json) as unknown),
  }).annotations({
    message: (issue) => ({ message: innermost(issue) ?? `${what} is not JSON`, override: true }),
  })

/** A value as the JSON text it is stored as. */
export const Value = jsonSchema("the value").pipe(Schema.brand("effect-kv/Json"))
export type Json = typeof Value.Type

/** A merge patch (RFC 7396) as JSON text: a JSON object. */
export const MergePatch = jsonSchema("a patch", (json) =>
  json.startsWith("{") ? undefined : "a patch must be a JSON object",
).pipe(Schema.brand("effect-kv/MergePatch"))
export type MergePatch = typeof MergePatch.Type

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/** The first problem of a failed decoding, in the Schema's own words. */
export const describeIssue = (issue: ParseResult.ParseIssue): string =>
  ParseResult.TreeFormatter.formatIssueSync(issue)

/** A field of {@link args} that may be absent (`undefined` stays `undefined`). */
export interface Optional<A, I> {
  readonly _tag: "Optional"
  readonly schema: Schema.Schema<A, I>
}

export const optional = <A, I>(schema: Schema.Schema<A, I>): Optional<A, I> => ({
  _tag: "Optional",
  schema,
})

type Field = Schema.Schema<any, any> | Optional<any, any>
const isOptional = (field: Field): field is Optional<any, any> =>
  (field as { _tag?: unknown })._tag === "Optional"
type Decoded<F> = F extends Optional<infer A, any> ? A | undefined : Schema.Schema.Type<F>
type OptionalKeys<Fields> = {
  [K in keyof Fields]: Fields[K] extends Optional<any, any> ? K : never
}[keyof Fields]
type ArgsInput<Fields> = { readonly [K in Exclude<keyof Fields, OptionalKeys<Fields>>]: unknown } & {
  readonly [K in OptionalKeys<Fields>]?: unknown
}

/**
 * One decoder for a method's arguments, given as an object: each field is decoded in the order
 * listed and the first failure is an `InvalidArgumentError` with that field's message (the
 * same sentence as the field's own Schema gives). Cheaper than a `Schema.Struct`, which the
 * store's hot paths would notice.
 */
export const args = <const Fields extends Record<string, Field>>(
  fields: Fields,
): ((
  input: ArgsInput<Fields>,
) => Effect.Effect<{ readonly [K in keyof Fields]: Decoded<Fields[K]> }, InvalidArgumentError>) => {
  const decoders = Object.entries(fields).map(([name, field]) => {
    const optional = isOptional(field)
    const decode = ParseResult.decodeUnknownEither(isOptional(field) ? field.schema : field)
    return { name, optional, decode }
  })
  return (input) => {
    const output: Record<string, unknown> = {}
    for (const { decode, name, optional } of decoders) {
      const value = (input as Record<string, unknown>)[name]
      if (optional && value === undefined) {
        output[name] = undefined
        continue
      }
      const result = decode(value)
      if (Either.isLeft(result)) {
        return Effect.fail(new InvalidArgumentError({ message: describeIssue(result.left) }))
      }
      output[name] = result.right
    }
    return Effect.succeed(output as any)
  }
}

/**
 * `decode`, remembering the last input it accepted and its result: a caller that passes the same
 * value on every call (a runner its id, lease and task names, on every poll) has it checked
 * once. Inputs are compared with `===` (an array is remembered as that array).
 */
export const remembered = <A>(
  decode: (input: unknown) => Effect.Effect<A, InvalidArgumentError>,
): ((input: unknown) => Effect.Effect<A, InvalidArgumentError>) => {
  let last: { readonly input: unknown; readonly output: Effect.Effect<A> } | undefined
  return (input) => {
    if (last !== undefined && last.input === input) return last.output
    return Effect.tap(decode(input), (output) => {
      last = { input, output: Effect.succeed(output) }
    })
  }
}

/** A decoder whose failure is an `InvalidArgumentError` with the Schema's message. */
export const decoder = <A, I>(
  schema: Schema.Schema<A, I>,
): ((input: unknown) => Effect.Effect<A, InvalidArgumentError>) => {
  const decode = ParseResult.decodeUnknownEither(schema)
  return (input) => {
    const result = decode(input)
    return Either.isRight(result)
      ? Effect.succeed(result.right)
      : Effect.fail(new InvalidArgumentError({ message: describeIssue(result.left) }))
  }
}
