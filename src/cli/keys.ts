/**
 * The key commands: `init`, `put`, `patch`, `increment`, `get key|prefix|range|batch`, `list`,
 * `delete`, `count`, `expire`.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import {
  InvalidArgumentError,
  type KvRecord,
  type Page,
  type StoreError,
  type StoreService,
  type VersionMismatchError,
} from "../Store.js"
import {
  boundArg,
  keyArg,
  limitArg,
  offsetArg,
  recordTypeOption,
  ttlOption,
  versionOption,
} from "./arguments.js"
import { MissingCommandError, NotFoundError } from "./errors.js"
import { withStore } from "./globals.js"
import { printInteger, printJson, printRecords, readStdinJson, readStdinText } from "./output.js"

export const init = Command.make("init", {}, () => withStore((store) => store.init())).pipe(
  Command.withDescription("Create or upgrade the tables (idempotent)."),
)

const decodeValue = Arg.decoder(Arg.Value)
const decodePatch = Arg.decoder(Arg.MergePatch)

/** `put` and `patch`: the value comes from stdin and is checked before the database is opened. */
const writeCommand = (
  name: "put" | "patch",
  description: string,
  write: (
    store: StoreService,
    key: string,
    version: number,
    value: unknown,
    options: { readonly type: string | undefined; readonly ttl: Duration.Duration | undefined },
  ) => Effect.Effect<KvRecord, VersionMismatchError | InvalidArgumentError | StoreError>,
) =>
  Command.make(
    name,
    { key: keyArg, version: versionOption, recordType: recordTypeOption, ttl: ttlOption },
    ({ key, recordType, ttl, version }) =>
      Effect.gen(function* () {
        const value = yield* readStdinJson
        yield* name === "put" ? decodeValue(value) : decodePatch(value)
        const options = { type: Option.getOrUndefined(recordType), ttl: Option.getOrUndefined(ttl) }
        yield* withStore((store) => write(store, key, version, value, options))
      }),
  ).pipe(Command.withDescription(description))

export const put = writeCommand(
  "put",
  "Store the JSON value read from stdin under <key>.",
  (store, key, version, value, options) => store.put(key, version, value, options),
)

export const patch = writeCommand(
  "patch",
  "Apply the JSON merge patch (RFC 7396, an object) read from stdin to <key>; a missing key is created.",
  (store, key, version, value, options) => store.patch(key, version, value, options),
)

export const increment = Command.make(
  "increment",
  {
    key: keyArg,
    by: Args.float({ name: "by" }).pipe(
      Args.withDescription("What to add, any finite number (default 1)."),
      Args.withDefault(1),
    ),
    ttl: ttlOption,
  },
  ({ by, key, ttl }) =>
    Effect.flatMap(
      withStore((store) => store.increment(key, by, { ttl: Option.getOrUndefined(ttl) })),
      (record) => printJson(record.value),
    ),
).pipe(
  Command.withDescription(
    "Add <by> to the number value of <key> atomically (a missing key counts from 0); print the new value.",
  ),
)

const getKey = Command.make(
  "key",
  {
    key: keyArg,
    printVersion: Options.boolean("print-version").pipe(
      Options.withDescription("Print only the version number."),
    ),
  },
  ({ key, printVersion }) =>
    Effect.gen(function* () {
      const found = yield* withStore((store) => store.get(key))
      if (Option.isNone(found)) return yield* new NotFoundError({ what: "key", name: key })
      yield* printVersion ? printInteger(found.value.version) : printJson(found.value.value)
    }),
).pipe(Command.withDescription("Print the value of <key> as JSON."))

const getPrefix = Command.make(
  "prefix",
  {
    prefix: boundArg("prefix", "The key prefix (exact: %, _ and \\ are ordinary)."),
    offset: offsetArg,
    limit: limitArg,
  },
  ({ limit, offset, prefix }) =>
    Effect.flatMap(
      withStore((store) => store.getPrefix(prefix, { offset, limit })),
      printRecords,
    ),
).pipe(Command.withDescription("Print the records whose key starts with <prefix>, ordered by key."))

const from = boundArg("from", "The first key of the range.")
const to = boundArg("to", "The key after the range.")

const getRange = Command.make(
  "range",
  { from, to, offset: offsetArg, limit: limitArg },
  ({ from, limit, offset, to }) =>
    Effect.flatMap(
      withStore((store) => store.getRange(from, to, { offset, limit })),
      printRecords,
    ),
).pipe(Command.withDescription("Print the records with from <= key < to, ordered by key."))

const decodeKey = Arg.decoder(Arg.Key)

/** The keys on stdin, one per line (a final line break, CRs before it and blank lines are ignored). */
const readStdinKeys: Effect.Effect<ReadonlyArray<string>, InvalidArgumentError> = Effect.gen(function* () {
  if (process.stdin.isTTY) {
    yield* Effect.sync(() =>
      process.stderr.write("reading keys from stdin, one per line (end with Ctrl-D)\n"),
    )
  }
  const text = yield* readStdinText
  const keys: Array<string> = []
  for (const [i, line] of text.split("\n").entries()) {
    const key = line.endsWith("\r") ? line.slice(0, -1) : line
    if (key === "") continue
    yield* Effect.mapError(
      decodeKey(key),
      (error) => new InvalidArgumentError({ message: `stdin line ${i + 1}: ${error.message}` }),
    )
    keys.push(key)
  }
  return keys
})

/**
 * The store's key order: by UTF-8 bytes, i.e. by code point (SQLite's BINARY, PostgreSQL's
 * COLLATE "C"), where JavaScript's `<` compares UTF-16 units: a surrogate (a code point above
 * U+FFFF) must sort after U+E000..U+FFFF.
 */
const compareKeys = (a: string, b: string): number => {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) {
      const rank = (unit: number) => (unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit)
      return rank(x) - rank(y)
    }
  }
  return a.length - b.length
}

const getBatch = Command.make(
  "batch",
  {
    keys: Args.text({ name: "key" }).pipe(
      Args.withDescription("The keys (none: one key per line on stdin)."),
      Args.withSchema(Arg.Key),
      Args.repeated,
    ),
  },
  ({ keys }) =>
    Effect.gen(function* () {
      const wanted = keys.length > 0 ? keys : yield* readStdinKeys
      const found = yield* withStore((store) => store.getBatch(wanted))
      yield* printRecords([...found.values()].sort((a, b) => compareKeys(a.key, b.key)))
    }),
).pipe(
  Command.withDescription(
    "Print the records of the keys given (or read from stdin, one per line) that exist, ordered by key.",
  ),
)

export const get = Command.make("get", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv get", expected: ["key", "prefix", "range", "batch"] })),
).pipe(
  Command.withDescription("Read records: by key, by prefix, by key range or a batch of keys."),
  Command.withSubcommands([getKey, getPrefix, getRange, getBatch]),
)

export const list = Command.make("list", { offset: offsetArg, limit: limitArg }, ({ limit, offset }) =>
  Effect.flatMap(
    withStore((store) => store.list({ offset, limit })),
    printRecords,
  ),
).pipe(Command.withDescription("Print all records, ordered by key."))

/** What `delete` was asked to delete. */
type Deletion =
  | { readonly _tag: "Keys"; readonly keys: ReadonlyArray<string> }
  | { readonly _tag: "Prefix"; readonly prefix: string; readonly page: Page }
  | { readonly _tag: "Range"; readonly from: string; readonly to: string; readonly page: Page }

const deleteUsage = "kv delete <key>... | --prefix <prefix> | --from <from> --to <to>"

/** The one deletion the arguments name, or why they name none (checked before the database is opened). */
export const deletionOf = (given: {
  readonly keys: ReadonlyArray<string>
  readonly prefix: Option.Option<string>
  readonly from: Option.Option<string>
  readonly to: Option.Option<string>
  readonly offset: Option.Option<number>
  readonly limit: Option.Option<number>
}): Deletion | InvalidArgumentError => {
  const invalid = (message: string) => new InvalidArgumentError({ message })
  const range = Option.isSome(given.from) || Option.isSome(given.to)
  const ways = [given.keys.length > 0, Option.isSome(given.prefix), range].filter(Boolean).length
  if (ways === 0) return invalid(`delete needs keys, --prefix or --from and --to (${deleteUsage})`)
  if (ways > 1) {
    return invalid(`delete takes keys, --prefix or --from and --to, only one of them (${deleteUsage})`)
  }
  const page = { offset: Option.getOrUndefined(given.offset), limit: Option.getOrUndefined(given.limit) }
  if (given.keys.length > 0) {
    if (Option.isSome(given.offset) || Option.isSome(given.limit)) {
      return invalid("--offset and --limit go with --prefix or --from and --to, not with keys")
    }
    return { _tag: "Keys", keys: given.keys }
  }
  if (Option.isSome(given.prefix)) {
    if (given.prefix.value === "") return invalid('--prefix needs a prefix; use "*" to delete every key')
    return { _tag: "Prefix", prefix: given.prefix.value, page }
  }
  if (Option.isNone(given.from)) return invalid("--to needs --from: delete --from <from> --to <to>")
  if (Option.isNone(given.to)) return invalid("--from needs --to: delete --from <from> --to <to>")
  return { _tag: "Range", from: given.from.value, to: given.to.value, page }
}

const boundOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withDescription(description),
    Options.withSchema(Arg.bound(`--${name}`)),
    Options.optional,
  )

export const del = Command.make(
  "delete",
  {
    keys: Args.text({ name: "key" }).pipe(
      Args.withDescription("The keys to delete."),
      Args.withSchema(Arg.Key),
      Args.repeated,
    ),
    prefix: boundOption("prefix", 'Delete the keys starting with this prefix ("*": every key).'),
    from: boundOption("from", "Delete the keys with from <= key < to: the first key of the range."),
    to: boundOption("to", "The key after the range (with --from)."),
    offset: Options.integer("offset").pipe(
      Options.withDescription("With --prefix or --from/--to: skip this many keys, in key order (default 0)."),
      Options.withSchema(Arg.Offset),
      Options.optional,
    ),
    limit: Options.integer("limit").pipe(
      Options.withDescription(
        "With --prefix or --from/--to: delete at most this many keys (default, or -1: all).",
      ),
      Options.withSchema(Arg.Limit),
      Options.optional,
    ),
  },
  (given) =>
    Effect.gen(function* () {
      const deletion = deletionOf(given)
      if (deletion instanceof InvalidArgumentError) return yield* deletion
      const deleted = yield* withStore((store) => {
        switch (deletion._tag) {
          case "Keys":
            return store.delete(...deletion.keys)
          case "Prefix":
            return store.deletePrefix(deletion.prefix, deletion.page)
          case "Range":
            return store.deleteRange(deletion.from, deletion.to, deletion.page)
        }
      })
      yield* printInteger(deleted)
    }),
).pipe(
  Command.withDescription(
    "Delete keys: the keys given, the keys under --prefix, or the keys with --from <= key < --to " +
      "(with --offset and --limit, in key order); prints the number of keys deleted.",
  ),
)

const countAll = Command.make("all", {}, () =>
  Effect.flatMap(
    withStore((store) => store.count()),
    printInteger,
  ),
).pipe(Command.withDescription("Count all records."))

const countPrefix = Command.make("prefix", { prefix: boundArg("prefix", "The key prefix.") }, ({ prefix }) =>
  Effect.flatMap(
    withStore((store) => store.countPrefix(prefix)),
    printInteger,
  ),
).pipe(Command.withDescription("Count the records whose key starts with <prefix>."))

const countRange = Command.make("range", { from, to }, ({ from, to }) =>
  Effect.flatMap(
    withStore((store) => store.countRange(from, to)),
    printInteger,
  ),
).pipe(Command.withDescription("Count the records with from <= key < to."))

export const expire = Command.make("expire", {}, () =>
  Effect.flatMap(
    withStore((store) => store.expire()),
    printInteger,
  ),
).pipe(
  Command.withDescription(
    "Delete the expired records now (each with a delete record in the stream); print how many. " +
      "Long-running commands (task run, consumer stream, watch, nats push) sweep by themselves.",
  ),
)

export const count = Command.make("count", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv count", expected: ["all", "prefix", "range"] })),
).pipe(
  Command.withDescription("Count records: all, by prefix or by key range."),
  Command.withSubcommands([countAll, countPrefix, countRange]),
)
