#!/usr/bin/env node
/**
 * The `kv` executable: runs the command tree of `Cli.ts` on Node.
 *
 * Every failure ends as exactly one `kv: ...` line on stderr and exit code 1; interruption
 * (SIGINT/SIGTERM, or stdout closed by its reader as in `kv list | head -1`) exits 0 after the
 * running command has cleaned up.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"
import * as CliEnvironment from "./cli/environment.js"
import * as Stdout from "./cli/stdout.js"

const secrets = Cli.secretsOf(process.argv, process.env)

Cli.run(process.argv).pipe(
  Stdout.interruptWhenClosed,
  Effect.catchAllCause(
    (cause): Effect.Effect<never, "reported"> =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : // printed here, then a bare failure so that the runtime exits with code 1
          Effect.zipRight(Console.error(Cli.formatError(cause, secrets)), Effect.fail("reported" as const)),
  ),
  Effect.provide(CliEnvironment.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true }),
)
