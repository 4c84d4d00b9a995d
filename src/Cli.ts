/**
 * The `kv` command-line tool: the root `@effect/cli` command tree. The command groups live in
 * `cli/` (one file each), with the shared plumbing: global flags (`cli/globals.ts`), argument
 * rewriting (`cli/argv.ts`), output (`cli/output.ts`) and errors (`cli/errors.ts`).
 *
 * stdout carries only data (JSON, integers); hints and logs go to stderr. Every failure is
 * reported by the entry point (`bin.ts`) as one `kv: ...` line on stderr (`formatError`),
 * with secrets in connection strings redacted.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Logger from "effect/Logger"
import packageJson from "../package.json" with { type: "json" }
import { normalizeArgs } from "./cli/argv.js"
import { benchmark } from "./cli/benchmark.js"
import { consumer } from "./cli/consumer.js"
import { cron } from "./cli/cron.js"
import { MissingCommandError, stripAnsi } from "./cli/errors.js"
import { kv } from "./cli/globals.js"
import { graph } from "./cli/graph.js"
import { asKvShowsIt } from "./cli/help.js"
import { count, del, expire, get, increment, init, list, patch, put } from "./cli/keys.js"
import { lock } from "./cli/lock.js"
import { nats } from "./cli/nats.js"
import { stream } from "./cli/stream.js"
import { task } from "./cli/task.js"
import { watch } from "./cli/watch.js"

export { normalizeArgs, secretsOf } from "./cli/argv.js"
export { formatError } from "./cli/errors.js"

/** While true, `@effect/cli`'s own error printing is muted: `formatError` reports errors. */
const parsing = FiberRef.unsafeMake(false)

const subcommands = [
  init,
  put,
  get,
  list,
  del,
  count,
  patch,
  increment,
  expire,
  stream,
  consumer,
  lock,
  task,
  cron,
  benchmark,
  graph,
  nats,
  watch,
] as const
const topLevel = [
  "init",
  "put",
  "get",
  "list",
  "delete",
  "count",
  "patch",
  "increment",
  "expire",
  "stream",
  "consumer",
  "lock",
  "task",
  "cron",
  "benchmark",
  "graph",
  "nats",
  "watch",
]

/** The whole command tree. */
export const command = kv.pipe(
  Command.withHandler(() => Effect.fail(new MissingCommandError({ path: "kv", expected: topLevel }))),
  Command.withDescription(
    "A key-value store with a change stream, stream consumers, distributed locks and a task " +
      "scheduler, on SQLite, PostgreSQL or rqlite. Every command takes --help; --type and " +
      "--connection may come before or after the command words. Shell completion: " +
      "kv --completions bash|zsh|fish.",
  ),
  Command.withSubcommands(subcommands),
  Command.transformHandler((effect) => Effect.locally(effect, parsing, false)),
)

const cli = Command.run(command, { name: "kv", version: packageJson.version })

/**
 * Runs the command line (`argv` as in `process.argv`). Fails with the command's error or with
 * `@effect/cli`'s `ValidationError`; neither has been printed yet: see `formatError`.
 */
export const run = (argv: ReadonlyArray<string>) => {
  const [runtime = "node", script = "kv", ...args] = argv
  // While parsing, `@effect/cli` prints its errors (muted: `formatError` reports them) and help
  // and completion scripts (plain text unless stdout is a terminal; corrected: see cli/help.ts).
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
            console.log(...message.map((text) => asKvShowsIt(plainHelp ? stripAnsi(text) : text))),
            console.log(...message),
          ),
      }),
      Effect.locally(parsing, true),
      Effect.provide(CliConfig.layer({ showBuiltIns: false, showAllNames: false })),
      Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
    ),
  )
}
