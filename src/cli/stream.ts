/**
 * The change stream commands: `stream get|seq|trim`.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Arg from "../Arguments.js"
import { limitArg, seqArg } from "./arguments.js"
import { MissingCommandError } from "./errors.js"
import { withStore } from "./globals.js"
import { printInteger, printStreamRecords } from "./output.js"

/** `--of-type`: only changes of records of this type ("all": every type). */
export const ofTypeOption = Options.text("of-type").pipe(
  Options.withDescription('Only changes of records of this type ("all": every type; the default).'),
  Options.withSchema(Arg.name("--of-type")),
  Options.withDefault("all"),
)

/** `--prefix`: only changes of keys that start with this prefix. */
export const prefixFilterOption = Options.text("prefix").pipe(
  Options.withDescription("Only changes of keys that start with this prefix (default: every key)."),
  Options.withSchema(Arg.bound("--prefix")),
  Options.withDefault(""),
)

const streamGet = Command.make(
  "get",
  {
    seq: seqArg("The first sequence number to print (default 0).").pipe(Args.withDefault(0)),
    limit: limitArg,
    ofType: ofTypeOption,
    prefix: prefixFilterOption,
  },
  ({ limit, ofType, prefix, seq }) =>
    Effect.flatMap(
      withStore((store) => store.stream(ofType, seq, limit, { prefix })),
      printStreamRecords,
    ),
).pipe(Command.withDescription("Print the change records with seq >= <seq>, in order."))

const streamSeq = Command.make("seq", {}, () =>
  Effect.flatMap(
    withStore((store) => store.streamSeq()),
    printInteger,
  ),
).pipe(Command.withDescription("Print the latest sequence number (0 when the stream is empty)."))

const streamTrim = Command.make("trim", { seq: seqArg("Delete the records up to this one.") }, ({ seq }) =>
  Effect.flatMap(
    withStore((store) => store.streamTrim(seq)),
    printInteger,
  ),
).pipe(Command.withDescription("Delete the change records with seq <= <seq>; prints the number deleted."))

export const stream = Command.make("stream", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv stream", expected: ["get", "seq", "trim"] })),
).pipe(
  Command.withDescription("The change stream: every write of a key appends one record."),
  Command.withSubcommands([streamGet, streamSeq, streamTrim]),
)
