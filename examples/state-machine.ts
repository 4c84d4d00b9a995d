/**
 * A state machine: `StateMachine.process` applies events (an Effect Schema) to a stored state
 * with one version-checked write, keeps the audit trail of inbound and outbound events, and
 * fails with `VersionMismatchError` when another writer got there first.
 *
 *   npx tsx examples/state-machine.ts [file.db]
 *
 * Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new file in a temporary
 * directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Console, Effect, Schema } from "effect"
import { StateMachine, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-machine-")), "example.db")

/** A bank account: its balance, stored under `<id>/_state` as the type `Account`. */
class Account extends Schema.Class<Account>("Account")({ balance: Schema.Number }) {}

const Deposit = Schema.TaggedStruct("Deposit", { amount: Schema.Number })
const Withdraw = Schema.TaggedStruct("Withdraw", { amount: Schema.Number })
const Event = Schema.Union(Deposit, Withdraw)

/** What the account tells the outside world. */
const Overdrawn = Schema.TaggedStruct("Overdrawn", { balance: Schema.Number })

const program = Effect.gen(function* () {
  // set below to play another writer that stores a new state while `process` runs
  let interfere = false
  const accounts = yield* StateMachine.make({
    initial: new Account({ balance: 0 }),
    schema: { state: Account, event: Event, outbound: Overdrawn },
    process: (state, event) =>
      Effect.gen(function* () {
        if (interfere) {
          interfere = false
          const store = yield* Store
          yield* store.put(StateMachine.stateKey("accounts/ada"), -1, { balance: 1000 }, { type: "Account" })
        }
        const balance = event._tag === "Deposit" ? state.balance + event.amount : state.balance - event.amount
        return {
          state: new Account({ balance }),
          outbound: balance < 0 && state.balance >= 0 ? [Overdrawn.make({ balance })] : [],
        }
      }),
  })

  const first = yield* accounts.process("accounts/ada", [
    Deposit.make({ amount: 100 }),
    Withdraw.make({ amount: 30 }),
  ])
  yield* Console.log(`after 2 events: balance ${first.state.balance}, version ${first.version}`)
  const second = yield* accounts.process("accounts/ada", [Withdraw.make({ amount: 100 })])
  yield* Console.log(
    `after 1 more: balance ${second.state.balance}, version ${second.version}, outbound ${second.outbound.map((event) => `${event._tag}(${event.balance})`).join(", ")}`,
  )

  // another writer (here: inside the first attempt) stores a new state between our read and
  // our write: the attempt fails with VersionMismatchError and writes nothing; retrying reads
  // the state again and applies the event on top of the other writer's
  interfere = true
  let attempts = 0
  const third = yield* Effect.suspend(() => {
    attempts++
    return accounts.process("accounts/ada", [Deposit.make({ amount: 1 })])
  }).pipe(
    Effect.tapError((error) => Console.log(`attempt ${attempts} failed: ${error._tag}: ${error.message}`)),
    Effect.retry({ while: (error) => error._tag === "VersionMismatchError" }),
  )
  yield* Console.log(`after ${attempts} attempts: balance ${third.state.balance}, version ${third.version}`)

  // the audit trail, in order
  for (const entry of yield* accounts.history("accounts/ada")) {
    yield* Console.log(
      `${entry.direction} v${entry.version} ${entry.event._tag} ${JSON.stringify(entry.event)}`,
    )
  }
})

program.pipe(Effect.provide(KvSqlite.layer({ filename })), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
