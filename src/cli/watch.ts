/**
 * `kv watch key|prefix|range|all [--since <seq>]`: the current records, then every change, as
 * NDJSON, until SIGINT/SIGTERM or until stdout is closed.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Arg from "../Arguments.js"
import * as Watch from "../Watch.js"
import { boundArg, keyArg } from "./arguments.js"
import { layerFor } from "./backend.js"
import { MissingCommandError } from "./errors.js"
import { kv } from "./globals.js"
import * as Stdout from "./stdout.js"

const sinceOption = Options.integer("since").pipe(
  Options.withDescription(
    "Print the changes with seq >= this one instead of the current records first (default: the current records, then live changes).",
  ),
  Options.withSchema(Arg.Seq),
  Options.optional,
)

const encodeEvent = Schema.encodeSync(Watch.WatchEvent)

/** Prints each event of the watch as one line, as they come. */
const printWatch = (selector: Watch.Selector, since: Option.Option<number>) =>
  Effect.flatMap(kv, ({ connection, type }) =>
    Watch.stream(selector, { since: Option.getOrUndefined(since) }).pipe(
      Stream.runForEachChunk((events) =>
        Stdout.write(Array.from(events, (event) => `${JSON.stringify(encodeEvent(event))}\n`).join("")),
      ),
      Effect.provide(layerFor(type, connection, "long-running")),
    ),
  )

const described =
  "Print the current records (action snapshot), then every change, as NDJSON lines, until SIGINT/SIGTERM."

const watchKey = Command.make("key", { key: keyArg, since: sinceOption }, ({ key, since }) =>
  printWatch({ key }, since),
).pipe(Command.withDescription(`Watch one key. ${described}`))

const watchPrefix = Command.make(
  "prefix",
  { prefix: boundArg("prefix", "The key prefix (exact: %, _ and \\ are ordinary)."), since: sinceOption },
  ({ prefix, since }) => printWatch({ prefix }, since),
).pipe(Command.withDescription(`Watch the keys that start with <prefix>. ${described}`))

const watchRange = Command.make(
  "range",
  {
    from: boundArg("from", "The first key of the range."),
    to: boundArg("to", "The key after the range."),
    since: sinceOption,
  },
  ({ from, since, to }) => printWatch({ from, to }, since),
).pipe(Command.withDescription(`Watch the keys with <from> <= key < <to>. ${described}`))

const watchAll = Command.make("all", { since: sinceOption }, ({ since }) => printWatch("all", since)).pipe(
  Command.withDescription(`Watch every key. ${described}`),
)

export const watch = Command.make("watch", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv watch", expected: ["key", "prefix", "range", "all"] })),
).pipe(
  Command.withDescription(
    "Watch a key, a prefix, a range or every key: the current records, then live changes.",
  ),
  Command.withSubcommands([watchKey, watchPrefix, watchRange, watchAll]),
)
