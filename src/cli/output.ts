/**
 * What commands print on stdout (data only, through `stdout.ts`: a write that fails is
 * reported, a closed stdout ends the command) and read from stdin.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { InvalidArgumentError, KvRecord, StreamRecord } from "../Store.js"
import { errorText } from "./errors.js"
import * as Stdout from "./stdout.js"

const invalid = (message: string) => new InvalidArgumentError({ message })

/** All of stdin as text. */
export const readStdinText: Effect.Effect<string, InvalidArgumentError> = Effect.tryPromise({
  try: async () => {
    let text = ""
    process.stdin.setEncoding("utf8")
    for await (const chunk of process.stdin) text += chunk
    return text
  },
  catch: (error) => invalid(`cannot read stdin: ${errorText(error)}`),
})

const parseStdinJson = (text: string) =>
  Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (error) => invalid(`stdin is not valid JSON: ${errorText(error)}`),
  })

/** All of stdin as JSON; nothing is written when it is not JSON. */
export const readStdinJson: Effect.Effect<unknown, InvalidArgumentError> = Effect.gen(function* () {
  if (process.stdin.isTTY) {
    yield* Console.error("reading a JSON value from stdin (end it with Ctrl-D)")
  }
  return yield* parseStdinJson(yield* readStdinText)
})

/** stdin as JSON when there is any: `absent` when stdin is a terminal or empty. */
export const readOptionalStdinJson = (absent: unknown): Effect.Effect<unknown, InvalidArgumentError> =>
  Effect.gen(function* () {
    if (process.stdin.isTTY) return absent
    const text = yield* readStdinText
    return text.trim() === "" ? absent : yield* parseStdinJson(text)
  })

/** 2-space JSON. */
export const printJson = (value: unknown) => Stdout.writeLine(JSON.stringify(value, null, 2))

/** One value encoded with its Schema (dates as RFC 3339 strings), as 2-space JSON. */
export const printEncoded =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (value: A) =>
    Effect.flatMap(Effect.orDie(Schema.encode(schema)(value)), printJson)

export const printRecords = printEncoded(Schema.Array(KvRecord))
export const printStreamRecords = printEncoded(Schema.Array(StreamRecord))
export const printInteger = (n: number) => Stdout.writeLine(String(n))
