/**
 * The `kv` command-line tool: an `@effect/cli` command tree over the `Store` service.
 *
 * stdout carries only data (JSON, integers); hints and logs go to stderr. Every failure is
 * reported by the entry point (`bin.ts`) as one `kv: ...` line on stderr (see
 * {@link formatError}), with secrets in connection strings redacted.
 *
 * The global flags `--type` and `--connection` belong to the root command. So that they can
 * also be written after the command words (`kv get key k --type postgres`, even
 * `kv get key --type postgres k`), {@link normalizeArgs} moves them in front of the command
 * words before `@effect/cli` parses the line.
 */
import { createRequire } from "node:module"
import { text as readAllText } from "node:stream/consumers"
import * as Args from "@effect/cli/Args"
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Arguments from "./internal/arguments.js"
import { backendTypes, isBackendType, layerFor } from "./internal/backend.js"
import * as DurationText from "./internal/duration.js"
import {
  InvalidArgumentError,
  KvRecord,
  LockStatus,
  Store,
  type StoreService,
  StreamRecord,
} from "./Store.js"

// ---------------------------------------------------------------------------
// Errors of the command line itself
// ---------------------------------------------------------------------------

/** A key, lock, ... that does not exist. */
export class NotFoundError extends Schema.TaggedError<NotFoundError>()("NotFoundError", {
  what: Schema.String,
  name: Schema.String,
}) {
  override get message() {
    return `${this.what} "${this.name}" not found`
  }
}

/** `lock acquire` did not get the lock. */
export class LockHeldError extends Schema.TaggedError<LockHeldError>()("LockHeldError", {
  name: Schema.String,
  holder: Schema.Option(LockStatus),
}) {
  override get message() {
    return Option.match(this.holder, {
      onNone: () => `lock "${this.name}" is held by another holder`,
      onSome: (status) =>
        `lock "${this.name}" is held by ${status.lockedBy} until ${status.expiresAt.toISOString()}`,
    })
  }
}

/** A group command (`get`, `count`, ...) was given without its subcommand. */
export class MissingCommandError extends Schema.TaggedError<MissingCommandError>()("MissingCommandError", {
  path: Schema.String,
  expected: Schema.Array(Schema.String),
}) {
  override get message() {
    return `missing command: "${this.path}" expects one of ${this.expected.join(", ")} (see ${this.path} --help)`
  }
}

// ---------------------------------------------------------------------------
// Global flags
// ---------------------------------------------------------------------------

export const defaultConnection = "file:data.db?mode=rwc"

const invalidValue = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

const typeOption = Options.text("type").pipe(
  Options.withPseudoName(backendTypes.join("|")),
  Options.withDescription("The backend (env KV_TYPE; default sqlite)."),
  Options.withFallbackConfig(Config.string("KV_TYPE")),
  Options.withDefault("sqlite"),
  Options.mapEffect((raw) => {
    const type = raw.trim().toLowerCase()
    return isBackendType(type)
      ? Effect.succeed(type)
      : Effect.fail(
          invalidValue(
            `unknown backend type "${raw}" (--type or KV_TYPE): expected ${backendTypes.join(", ")}`,
          ),
        )
  }),
)

const connectionOption = Options.redacted("connection").pipe(
  Options.withPseudoName("string"),
  Options.withDescription(
    `Where the data lives (env KV_CONNECTION; default ${defaultConnection}): ` +
      "file:x.db?mode=rwc|rw|ro or :memory: (sqlite), " +
      "postgres://user:password@host:5432/db (postgres), http://host:4001?user=u&password=p (rqlite).",
  ),
  Options.withFallbackConfig(Config.redacted("KV_CONNECTION")),
  Options.optional,
  Options.map(Option.getOrElse(() => Redacted.make(defaultConnection))),
)

/** The root command, holding the global flags; subcommands read them with `yield* kv`. */
const kv = Command.make("kv", { type: typeOption, connection: connectionOption })

/** Runs `f` with the Store of the backend chosen by the global flags. */
const withStore = <A, E>(f: (store: StoreService) => Effect.Effect<A, E>) =>
  Effect.flatMap(kv, ({ connection, type }) =>
    Effect.provide(Effect.flatMap(Store, f), layerFor(type, Redacted.value(connection))),
  )

// ---------------------------------------------------------------------------
// Arguments, options, input and output
// ---------------------------------------------------------------------------

const keyArg = Args.text({ name: "key" }).pipe(Args.withDescription("The key."))
const offsetArg = Args.integer({ name: "offset" }).pipe(
  Args.withDescription("How many records to skip (default 0)."),
  Args.withDefault(0),
)
const limitArg = Args.integer({ name: "limit" }).pipe(
  Args.withDescription("At most this many records; -1: no limit (default 1000)."),
  Args.withDefault(1000),
)

/**
 * `--version N`. `@effect/cli` reserves `--version` (show the program version), so
 * {@link normalizeArgs} rewrites `--version N` to this option's alias `--if-version N`.
 */
const versionOption = Options.integer("version").pipe(
  Options.withAlias("if-version"),
  Options.withDescription(
    "-1: write unconditionally (default); 0: only if the key is absent; N: only if the current version is N.",
  ),
  Options.withDefault(-1),
)

const recordTypeOption = Options.text("record-type").pipe(
  Options.withDescription("The record type (default: derived from the value, e.g. object, array, string)."),
  Options.optional,
)

/** A `1h30m`-style duration option. */
const durationOption = (name: string, fallback: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.withDescription(`e.g. 500ms, 10s, 5m, 1h30m (default ${fallback}).`),
    Options.withDefault(fallback),
    Options.mapEffect((text) =>
      Either.match(DurationText.parsePositive(text), {
        onLeft: (message) => Effect.fail(invalidValue(`--${name}: ${message}`)),
        onRight: Effect.succeed,
      }),
    ),
  )

const invalidArgument = (message: string) => new InvalidArgumentError({ message })

/** All of stdin as JSON; nothing is written when it is not JSON. */
const readStdinJson: Effect.Effect<unknown, InvalidArgumentError> = Effect.gen(function* () {
  if (process.stdin.isTTY) {
    yield* Console.error("reading a JSON value from stdin (end it with Ctrl-D)")
  }
  const text = yield* Effect.tryPromise({
    try: () => readAllText(process.stdin),
    catch: (error) => invalidArgument(`cannot read stdin: ${errorText(error)}`),
  })
  return yield* Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (error) => invalidArgument(`stdin is not valid JSON: ${errorText(error)}`),
  })
})

const checkedRecordType = (recordType: Option.Option<string>) =>
  Option.match(recordType, {
    onNone: () => Effect.succeed(undefined),
    onSome: (type) => Arguments.name("--record-type", type),
  })

const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))
const printRecords = (records: ReadonlyArray<KvRecord>) =>
  Effect.flatMap(Schema.encode(Schema.Array(KvRecord))(records), printJson)
const printStreamRecords = (records: ReadonlyArray<StreamRecord>) =>
  Effect.flatMap(Schema.encode(Schema.Array(StreamRecord))(records), printJson)
const printInteger = (n: number) => Console.log(String(n))

const missingCommand = (path: string, expected: ReadonlyArray<string>) =>
  Effect.fail(new MissingCommandError({ path, expected }))

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

const init = Command.make("init", {}, () => withStore((store) => store.init())).pipe(
  Command.withDescription("Create or upgrade the tables (idempotent)."),
)

const writeCommand = <Name extends string>(
  name: Name,
  description: string,
  write: (
    store: StoreService,
    input: {
      readonly key: string
      readonly version: number
      readonly value: unknown
      readonly type?: string
    },
  ) => Effect.Effect<unknown, unknown>,
  check: (value: unknown) => Effect.Effect<unknown, InvalidArgumentError> = () => Effect.void,
) =>
  Command.make(
    name,
    { key: keyArg, version: versionOption, recordType: recordTypeOption },
    ({ key, recordType, version }) =>
      Effect.gen(function* () {
        yield* Arguments.key(key)
        yield* Arguments.version(version)
        const type = yield* checkedRecordType(recordType)
        const value = yield* readStdinJson
        yield* check(value)
        yield* withStore((store) =>
          write(store, type === undefined ? { key, version, value } : { key, version, value, type }),
        )
      }),
  ).pipe(Command.withDescription(description))

const put = writeCommand(
  "put",
  "Store the JSON value read from stdin under <key>.",
  (store, { key, type, value, version }) => store.put(key, version, value, { type }),
)

const patch = writeCommand(
  "patch",
  "Apply the JSON merge patch (RFC 7396, an object) read from stdin to <key>; a missing key is created.",
  (store, { key, type, value, version }) => store.patch(key, version, value, { type }),
  // the store's own check, before the database is opened
  Arguments.patch,
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
      yield* Arguments.key(key)
      const found = yield* withStore((store) => store.get(key))
      if (Option.isNone(found)) return yield* new NotFoundError({ what: "key", name: key })
      const record = found.value
      yield* printVersion ? printInteger(record.version) : printJson(record.value)
    }),
).pipe(Command.withDescription("Print the value of <key> as JSON."))

const getPrefix = Command.make(
  "prefix",
  { prefix: Args.text({ name: "prefix" }), offset: offsetArg, limit: limitArg },
  ({ limit, offset, prefix }) =>
    Effect.gen(function* () {
      const page = yield* Arguments.page({ offset, limit })
      yield* printRecords(yield* withStore((store) => store.getPrefix(prefix, page)))
    }),
).pipe(Command.withDescription("Print the records whose key starts with <prefix>, ordered by key."))

const getRange = Command.make(
  "range",
  { from: Args.text({ name: "from" }), to: Args.text({ name: "to" }), offset: offsetArg, limit: limitArg },
  ({ from, limit, offset, to }) =>
    Effect.gen(function* () {
      const page = yield* Arguments.page({ offset, limit })
      yield* printRecords(yield* withStore((store) => store.getRange(from, to, page)))
    }),
).pipe(Command.withDescription("Print the records with from <= key < to, ordered by key."))

const get = Command.make("get", {}, () => missingCommand("kv get", ["key", "prefix", "range"])).pipe(
  Command.withDescription("Read records: by key, by prefix or by key range."),
  Command.withSubcommands([getKey, getPrefix, getRange]),
)

const list = Command.make("list", { offset: offsetArg, limit: limitArg }, ({ limit, offset }) =>
  Effect.gen(function* () {
    const page = yield* Arguments.page({ offset, limit })
    yield* printRecords(yield* withStore((store) => store.list(page)))
  }),
).pipe(Command.withDescription("Print all records, ordered by key."))

const del = Command.make("delete", { key: keyArg }, ({ key }) =>
  Effect.gen(function* () {
    yield* Arguments.key(key)
    yield* printInteger(yield* withStore((store) => store.delete(key)))
  }),
).pipe(Command.withDescription("Delete <key>; prints the number of keys deleted (0 or 1)."))

const countAll = Command.make("all", {}, () =>
  Effect.flatMap(
    withStore((store) => store.count()),
    printInteger,
  ),
).pipe(Command.withDescription("Count all records."))

const countPrefix = Command.make("prefix", { prefix: Args.text({ name: "prefix" }) }, ({ prefix }) =>
  Effect.flatMap(
    withStore((store) => store.countPrefix(prefix)),
    printInteger,
  ),
).pipe(Command.withDescription("Count the records whose key starts with <prefix>."))

const countRange = Command.make(
  "range",
  { from: Args.text({ name: "from" }), to: Args.text({ name: "to" }) },
  ({ from, to }) =>
    Effect.flatMap(
      withStore((store) => store.countRange(from, to)),
      printInteger,
    ),
).pipe(Command.withDescription("Count the records with from <= key < to."))

const count = Command.make("count", {}, () => missingCommand("kv count", ["all", "prefix", "range"])).pipe(
  Command.withDescription("Count records: all, by prefix or by key range."),
  Command.withSubcommands([countAll, countPrefix, countRange]),
)

const streamGet = Command.make(
  "get",
  {
    seq: Args.integer({ name: "seq" }).pipe(
      Args.withDescription("The first sequence number to print (default 0)."),
      Args.withDefault(0),
    ),
    limit: limitArg,
    ofType: Options.text("of-type").pipe(
      Options.withDescription('Only changes of records of this type ("all": every type; the default).'),
      Options.withDefault("all"),
    ),
  },
  ({ limit, ofType, seq }) =>
    Effect.gen(function* () {
      const from = yield* Arguments.seq(seq)
      const max = yield* Arguments.limit(limit)
      const type = yield* Arguments.name("--of-type", ofType)
      yield* printStreamRecords(yield* withStore((store) => store.stream(type, from, max)))
    }),
).pipe(Command.withDescription("Print the change records with seq >= <seq>, in order."))

const streamSeq = Command.make("seq", {}, () =>
  Effect.flatMap(
    withStore((store) => store.streamSeq()),
    printInteger,
  ),
).pipe(Command.withDescription("Print the latest sequence number (0 when the stream is empty)."))

const streamTrim = Command.make("trim", { seq: Args.integer({ name: "seq" }) }, ({ seq }) =>
  Effect.gen(function* () {
    const upTo = yield* Arguments.seq(seq)
    yield* printInteger(yield* withStore((store) => store.streamTrim(upTo)))
  }),
).pipe(Command.withDescription("Delete the change records with seq <= <seq>; prints the number deleted."))

const stream = Command.make("stream", {}, () => missingCommand("kv stream", ["get", "seq", "trim"])).pipe(
  Command.withDescription("The change stream: every write of a key appends one record."),
  Command.withSubcommands([streamGet, streamSeq, streamTrim]),
)

const lockName = Args.text({ name: "name" }).pipe(Args.withDescription("The lock."))
const lockHolder = Args.text({ name: "locked-by" }).pipe(Args.withDescription("Who holds the lock."))

const lockAcquire = Command.make(
  "acquire",
  { name: lockName, lockedBy: lockHolder, duration: durationOption("duration", "10m") },
  ({ duration, lockedBy, name }) =>
    Effect.gen(function* () {
      yield* Arguments.name("lock name", name)
      yield* Arguments.name("<locked-by>", lockedBy)
      yield* withStore((store) =>
        Effect.gen(function* () {
          if (yield* store.lockAcquire(name, lockedBy, duration)) return
          const holder = yield* store.lockStatus(name)
          return yield* new LockHeldError({ name, holder })
        }),
      )
    }),
).pipe(
  Command.withDescription(
    "Acquire (or, by the same holder, extend) a lock; exits 1 while another holder's lock is live.",
  ),
)

const lockRelease = Command.make("release", { name: lockName, lockedBy: lockHolder }, ({ lockedBy, name }) =>
  Effect.gen(function* () {
    yield* Arguments.name("lock name", name)
    yield* Arguments.name("<locked-by>", lockedBy)
    const released = yield* withStore((store) => store.lockRelease(name, lockedBy))
    if (!released) yield* Console.error(`lock "${name}" is not held by ${lockedBy}: nothing released`)
  }),
).pipe(Command.withDescription("Release a lock held by <locked-by>; otherwise nothing happens."))

const lockStatus = Command.make("status", { name: lockName }, ({ name }) =>
  Effect.gen(function* () {
    yield* Arguments.name("lock name", name)
    const status = yield* withStore((store) => store.lockStatus(name))
    if (Option.isNone(status)) return yield* new NotFoundError({ what: "lock", name })
    yield* Effect.flatMap(Schema.encode(LockStatus)(status.value), printJson)
  }),
).pipe(Command.withDescription("Print the lock as a JSON object."))

const lock = Command.make("lock", {}, () => missingCommand("kv lock", ["acquire", "release", "status"])).pipe(
  Command.withDescription("Distributed locks with an expiry."),
  Command.withSubcommands([lockAcquire, lockRelease, lockStatus]),
)

/** While true, `@effect/cli`'s own error printing is muted: {@link formatError} reports errors. */
const parsing = FiberRef.unsafeMake(false)

const topLevel = ["init", "put", "get", "list", "delete", "count", "patch", "stream", "lock"]

/** The whole command tree. */
export const command = kv.pipe(
  Command.withHandler(() => missingCommand("kv", topLevel)),
  Command.withDescription(
    "A key-value store with a change stream and locks on SQLite, PostgreSQL or rqlite. " +
      "Every command takes --help; --type and --connection may come before or after the command words.",
  ),
  Command.withSubcommands([init, put, get, list, del, count, patch, stream, lock]),
  Command.transformHandler((effect) => Effect.locally(effect, parsing, false)),
)

const version: string = (() => {
  try {
    return (createRequire(import.meta.url)("../package.json") as { version: string }).version
  } catch {
    return "0.0.0"
  }
})()

const cli = Command.run(command, { name: "kv", version })

const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g")
const stripAnsi = (text: unknown) => (typeof text === "string" ? text.replace(ansi, "") : text)

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

const globalFlags = new Set(["--type", "--connection"])

/**
 * Rewrites the arguments (without `node` and the script) before `@effect/cli` parses them:
 * - the global flags `--type`/`--connection` (`--flag value` or `--flag=value`), wherever they
 *   are, move to the front as `--flag=value` (so a value equal to a command word, e.g.
 *   `--connection list`, is not mistaken for a command); given twice, the last one wins;
 * - `--version N` becomes `--if-version=N` (`@effect/cli` reserves `--version`; `kv --version`
 *   alone still prints the program version);
 * - with `--help` or `--version` (the built-in one), the global flags are dropped.
 * Everything after `--` is left alone.
 */
export const normalizeArgs = (args: ReadonlyArray<string>): Array<string> => {
  const globals = new Map<string, string>() // the last value of each global flag wins
  const rest: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      rest.push(...args.slice(i))
      break
    }
    const eq = arg.indexOf("=")
    const flag = (eq === -1 ? arg : arg.slice(0, eq)).toLowerCase()
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    const next = args[i + 1]
    if (globalFlags.has(flag)) {
      const value = inline ?? next
      if (value === undefined) {
        rest.push(arg)
      } else {
        globals.set(flag, value)
        if (inline === undefined) i++
      }
    } else if (
      flag === "--version" &&
      (inline !== undefined || (next !== undefined && !next.startsWith("--")))
    ) {
      rest.push(`--if-version=${inline ?? next}`)
      if (inline === undefined) i++
    } else {
      rest.push(arg)
    }
  }
  // `@effect/cli` cannot show the root's help after root options (`kv --type x --help` fails);
  // the global flags do not change any help or the version, so they are dropped then.
  const end = rest.indexOf("--")
  const words = end === -1 ? rest : rest.slice(0, end)
  const builtIn = words.some((word) => ["--help", "-h", "--version"].includes(word.toLowerCase()))
  // an empty value cannot be written as `--flag=` (the parser needs a value after `=`)
  const front = [...globals].flatMap(([flag, value]) => (value === "" ? [flag, value] : [`${flag}=${value}`]))
  return builtIn ? rest : [...front, ...rest]
}

/**
 * Runs the command line (`argv` as in `process.argv`). Fails with the command's error or with
 * `@effect/cli`'s `ValidationError`; neither has been printed yet: see {@link formatError}.
 */
export const run = (argv: ReadonlyArray<string>) => {
  const [runtime = "node", script = "kv", ...args] = argv
  // While parsing, `@effect/cli` prints its errors (muted: `formatError` reports them) and help
  // (plain text unless stdout is a terminal).
  const plainHelp = process.stdout.isTTY !== true
  const whenParsing = (parsingCase: Effect.Effect<void>, otherwise: Effect.Effect<void>) =>
    Effect.flatMap(FiberRef.get(parsing), (isParsing) => (isParsing ? parsingCase : otherwise))
  return Console.consoleWith((console) =>
    cli([runtime, script, ...normalizeArgs(args)]).pipe(
      Effect.withConsole({
        ...console,
        error: (...message: ReadonlyArray<unknown>) => whenParsing(Effect.void, console.error(...message)),
        log: (...message: ReadonlyArray<unknown>) =>
          whenParsing(
            console.log(...(plainHelp ? message.map(stripAnsi) : message)),
            console.log(...message),
          ),
      }),
      Effect.locally(parsing, true),
      Effect.provide(CliConfig.layer({ showBuiltIns: false, showAllNames: false })),
      Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
    ),
  )
}

// ---------------------------------------------------------------------------
// Error reporting
// ---------------------------------------------------------------------------

function errorText(error: unknown): string {
  if (ValidationError.isValidationError(error)) {
    const text = String(stripAnsi(HelpDoc.toAnsiText(error.error))).trim()
    return text.length > 0 ? text : "invalid command line (see kv --help)"
  }
  if (typeof error === "object" && error !== null) {
    const message = (error as { message?: unknown }).message
    if (typeof message === "string" && message.length > 0) return message
    const tag = (error as { _tag?: unknown })._tag
    if (typeof tag === "string") return tag
  }
  return String(error)
}

/** The secrets in the connection strings given on the command line or in `KV_CONNECTION`. */
export const secretsOf = (
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
): Array<string> => {
  const connections: Array<string> = []
  if (env.KV_CONNECTION !== undefined) connections.push(env.KV_CONNECTION)
  argv.forEach((arg, i) => {
    if (arg.toLowerCase() === "--connection" && argv[i + 1] !== undefined) connections.push(argv[i + 1]!)
    if (arg.toLowerCase().startsWith("--connection=")) connections.push(arg.slice("--connection=".length))
  })
  const secrets: Array<string> = []
  for (const connection of connections) {
    try {
      const url = new URL(connection)
      if (url.password !== "") secrets.push(url.password, decodeURIComponent(url.password))
      for (const [name, value] of url.searchParams) {
        if (/^(password|passwd|pwd|pass|secret|token)$/i.test(name) && value !== "") {
          secrets.push(value, encodeURIComponent(value))
        }
      }
    } catch {
      // not a URL: the patterns in `redact` still apply
    }
  }
  return secrets.filter((secret) => secret.length >= 3)
}

/** Hides passwords: URL user info, `password=` parameters and the given secrets. */
export const redact = (text: string, secrets: ReadonlyArray<string> = []): string => {
  let out = text
    .replace(/(\/\/[^/?#@\s:]*:)[^@\s/]*@/g, "$1***@")
    .replace(/\b(password|passwd|pwd|pass|secret|token)=[^&\s"']*/gi, "$1=***")
  for (const secret of secrets) out = out.split(secret).join("***")
  return out
}

/** The one stderr line for a failed run: `kv: <message>`, on one line, secrets redacted. */
export const formatError = (cause: Cause.Cause<unknown>, secrets: ReadonlyArray<string> = []): string => {
  const message = Option.match(Cause.failureOption(cause), {
    onSome: errorText,
    onNone: () =>
      Option.match(Cause.dieOption(cause), {
        onSome: (defect) => `unexpected error: ${errorText(defect)}`,
        onNone: () => (Cause.isInterrupted(cause) ? "interrupted" : "unexpected error"),
      }),
  })
  const line = redact(message.replace(/\s*\n\s*/g, " ").trim(), secrets)
  return `kv: ${line.replace(/^kv: /, "")}`
}
