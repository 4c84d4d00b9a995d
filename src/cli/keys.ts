/**
 * The key commands: `init`, `put`, `patch`, `get key|prefix|range`, `list`, `delete`, `count`.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Arg from "../Arguments.js"
import type {
  InvalidArgumentError,
  KvRecord,
  StoreError,
  StoreService,
  VersionMismatchError,
} from "../Store.js"
import { boundArg, keyArg, limitArg, offsetArg, recordTypeOption, versionOption } from "./arguments.js"
import { MissingCommandError, NotFoundError } from "./errors.js"
import { withStore } from "./globals.js"
import { printInteger, printJson, printRecords, readStdinJson } from "./output.js"

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
    type: string | undefined,
  ) => Effect.Effect<KvRecord, VersionMismatchError | InvalidArgumentError | StoreError>,
) =>
  Command.make(
    name,
    { key: keyArg, version: versionOption, recordType: recordTypeOption },
    ({ key, recordType, version }) =>
      Effect.gen(function* () {
        const value = yield* readStdinJson
        yield* name === "put" ? decodeValue(value) : decodePatch(value)
        yield* withStore((store) => write(store, key, version, value, Option.getOrUndefined(recordType)))
      }),
  ).pipe(Command.withDescription(description))

export const put = writeCommand(
  "put",
  "Store the JSON value read from stdin under <key>.",
  (store, key, version, value, type) => store.put(key, version, value, { type }),
)

export const patch = writeCommand(
  "patch",
  "Apply the JSON merge patch (RFC 7396, an object) read from stdin to <key>; a missing key is created.",
  (store, key, version, value, type) => store.patch(key, version, value, { type }),
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

export const get = Command.make("get", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv get", expected: ["key", "prefix", "range"] })),
).pipe(
  Command.withDescription("Read records: by key, by prefix or by key range."),
  Command.withSubcommands([getKey, getPrefix, getRange]),
)

export const list = Command.make("list", { offset: offsetArg, limit: limitArg }, ({ limit, offset }) =>
  Effect.flatMap(
    withStore((store) => store.list({ offset, limit })),
    printRecords,
  ),
).pipe(Command.withDescription("Print all records, ordered by key."))

export const del = Command.make("delete", { key: keyArg }, ({ key }) =>
  Effect.flatMap(
    withStore((store) => store.delete(key)),
    printInteger,
  ),
).pipe(Command.withDescription("Delete <key>; prints the number of keys deleted (0 or 1)."))

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

export const count = Command.make("count", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv count", expected: ["all", "prefix", "range"] })),
).pipe(
  Command.withDescription("Count records: all, by prefix or by key range."),
  Command.withSubcommands([countAll, countPrefix, countRange]),
)
