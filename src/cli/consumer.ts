/**
 * The consumer commands: `consumer get|stream|status|commit|delete`.
 *
 * `get`, `status`, `commit` and `delete` administer a consumer without taking its lock;
 * `stream` runs an instance: it prints the records as NDJSON as they arrive, commits by mode,
 * and on SIGINT/SIGTERM, or when its stdout is closed, releases its lock and exits 0.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Arg from "../Arguments.js"
import * as Consumer from "../Consumer.js"
import type { InvalidArgumentError, StoreError } from "../Store.js"
import { StreamRecord } from "../Store.js"
import { nameArg } from "./arguments.js"
import { type Lifetime, layerFor } from "./backend.js"
import { MissingCommandError, NotFoundError } from "./errors.js"
import { kv } from "./globals.js"
import { printEncoded, printInteger, printStreamRecords } from "./output.js"
import * as Stdout from "./stdout.js"
import { ofTypeOption, prefixFilterOption } from "./stream.js"

/** Runs `effect` with the consumer storage of the backend chosen by the global flags. */
const withConsumers = <A, E>(
  effect: Effect.Effect<A, E, Consumer.ConsumerStorage>,
  lifetime: Lifetime = "one-shot",
) =>
  Effect.flatMap(kv, ({ connection, type }) =>
    Effect.provide(effect, layerFor(type, connection, lifetime)),
  ) as Effect.Effect<A, E | StoreError | InvalidArgumentError, Command.Command.Context<"kv">>

const streamNameArg = (name: string) =>
  nameArg(name, "stream name", "The consumer: a named cursor over the stream.")

/** `--limit`: as an option here, where the positional arguments are names. */
const limitOption = Options.integer("limit").pipe(
  Options.withDescription("At most this many records; -1: no limit (default 1000)."),
  Options.withSchema(Arg.Limit),
  Options.withDefault(1000),
)

const consumerGet = Command.make(
  "get",
  { name: streamNameArg("name"), ofType: ofTypeOption, prefix: prefixFilterOption, limit: limitOption },
  ({ limit, name, ofType, prefix }) =>
    Effect.flatMap(withConsumers(Consumer.peek(name, { ofType, prefix, limit })), printStreamRecords),
).pipe(
  Command.withDescription(
    "Print the records the consumer reads next (after its committed position), without taking its lock.",
  ),
)

const encodeRecord = Schema.encodeSync(StreamRecord)

const consumerStream = Command.make(
  "stream",
  {
    streamName: streamNameArg("stream-name"),
    consumerName: nameArg(
      "consumer-name",
      "consumer name",
      "This instance: the holder of the consumer's lock.",
    ),
    ofType: ofTypeOption,
    prefix: prefixFilterOption,
    commitMode: Options.choice("commit-mode", Consumer.CommitMode.literals).pipe(
      Options.withDescription(
        "When to commit: after each batch (default), after each record, or never (none).",
      ),
      Options.withDefault("batch" as const),
    ),
    limit: Options.integer("limit").pipe(
      Options.withDescription("Records per read (default 100)."),
      Options.withSchema(Arg.positive("limit")),
      Options.withDefault(100),
    ),
  },
  ({ commitMode, consumerName, limit, ofType, prefix, streamName }) =>
    withConsumers(
      Consumer.stream({ streamName, consumerName, ofType, prefix, commitMode, batchSize: limit }).pipe(
        Stream.runForEachChunk((records) =>
          // one write per batch, one line per record, as they arrive; a batch is committed only
          // once written: with stdout closed, it stays for the next instance
          Stdout.write(Array.from(records, (record) => `${JSON.stringify(encodeRecord(record))}\n`).join("")),
        ),
      ),
      "long-running",
    ),
).pipe(
  Command.withDescription(
    "Run an instance of the consumer: print its records as NDJSON (one per line) as they arrive, " +
      "until SIGINT/SIGTERM or until stdout is closed (e.g. by | head -1); it then releases its lock and exits 0.",
  ),
)

const consumerStatus = Command.make("status", { name: streamNameArg("name") }, ({ name }) =>
  Effect.gen(function* () {
    const status = yield* withConsumers(Consumer.status(name))
    if (Option.isNone(status)) return yield* new NotFoundError({ what: "consumer", name })
    yield* printEncoded(Consumer.ConsumerStatus)(status.value)
  }),
).pipe(Command.withDescription("Print the consumer's position and lock as a JSON object."))

const consumerCommit = Command.make(
  "commit",
  {
    name: streamNameArg("name"),
    seq: Args.integer({ name: "last-seq" }).pipe(
      Args.withDescription("The last processed seq: the consumer reads on after it."),
      Args.withSchema(Arg.Seq),
    ),
  },
  ({ name, seq }) => withConsumers(Consumer.commit(name, seq)),
).pipe(
  Command.withDescription(
    "Move the consumer's position to <last-seq>, whoever holds its lock (a new consumer is created " +
      "there); e.g. to skip records trimmed from the stream.",
  ),
)

const consumerDelete = Command.make("delete", { name: streamNameArg("name") }, ({ name }) =>
  Effect.flatMap(withConsumers(Consumer.delete(name)), (deleted) => printInteger(deleted ? 1 : 0)),
).pipe(
  Command.withDescription("Delete the consumer (position and lock); prints the number deleted (0 or 1)."),
)

export const consumer = Command.make("consumer", {}, () =>
  Effect.fail(
    new MissingCommandError({
      path: "kv consumer",
      expected: ["get", "stream", "status", "commit", "delete"],
    }),
  ),
).pipe(
  Command.withDescription(
    "Stream consumers: named cursors over the change stream, read by one instance at a time.",
  ),
  Command.withSubcommands([consumerGet, consumerStream, consumerStatus, consumerCommit, consumerDelete]),
)
