/**
 * The lock commands: `lock acquire|release|status`.
 */
import * as Command from "@effect/cli/Command"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { LockStatus } from "../Store.js"
import { durationOption, nameArg } from "./arguments.js"
import { LockHeldError, MissingCommandError, NotFoundError } from "./errors.js"
import { withStore } from "./globals.js"
import { printEncoded } from "./output.js"

const lockName = nameArg("name", "lock name", "The lock.")
const lockHolder = nameArg("locked-by", "<locked-by>", "Who holds the lock.")

const lockAcquire = Command.make(
  "acquire",
  {
    name: lockName,
    lockedBy: lockHolder,
    duration: durationOption("duration", "10m", "How long the lock lasts from now"),
  },
  ({ duration, lockedBy, name }) =>
    withStore((store) =>
      Effect.gen(function* () {
        if (yield* store.lockAcquire(name, lockedBy, duration)) return
        const holder = yield* store.lockStatus(name)
        return yield* new LockHeldError({ name, holder })
      }),
    ),
).pipe(
  Command.withDescription(
    "Acquire (or, by the same holder, extend) a lock; exits 1 while another holder's lock is live.",
  ),
)

const lockRelease = Command.make("release", { name: lockName, lockedBy: lockHolder }, ({ lockedBy, name }) =>
  Effect.gen(function* () {
    const released = yield* withStore((store) => store.lockRelease(name, lockedBy))
    if (!released) yield* Console.error(`lock "${name}" is not held by ${lockedBy}: nothing released`)
  }),
).pipe(Command.withDescription("Release a lock held by <locked-by>; otherwise nothing happens."))

const lockStatus = Command.make("status", { name: lockName }, ({ name }) =>
  Effect.gen(function* () {
    const status = yield* withStore((store) => store.lockStatus(name))
    if (Option.isNone(status)) return yield* new NotFoundError({ what: "lock", name })
    yield* printEncoded(LockStatus)(status.value)
  }),
).pipe(Command.withDescription("Print the lock as a JSON object."))

export const lock = Command.make("lock", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv lock", expected: ["acquire", "release", "status"] })),
).pipe(
  Command.withDescription("Distributed locks with an expiry."),
  Command.withSubcommands([lockAcquire, lockRelease, lockStatus]),
)
