/**
 * The change stream published to NATS JetStream: `NatsPusher.run` sends each record to a
 * subject made of its key and type, with `Nats-Msg-Id` for JetStream's dedupe, and commits its
 * position only once JetStream acknowledged.
 *
 *   npx tsx examples/nats.ts [file.db]
 *
 * Needs a NATS server with JetStream (`NATS_URL`, default nats://127.0.0.1:4222; e.g.
 * `docker compose up nats`). It creates a JetStream stream of its own, uniquely named, and
 * deletes it at the end. Runs on a SQLite file: the argument, else `KV_EXAMPLE_DB`, else a new
 * file in a temporary directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { jetstreamManager, StorageType } from "@nats-io/jetstream"
import { Console, Effect, Fiber, Layer, Option, Schedule } from "effect"
import { Consumer, Store } from "../src/index.js"
import { NatsPusher } from "../src/nats.js"
import { KvSqlite } from "../src/sqlite.js"

const filename =
  process.argv[2] ??
  process.env.KV_EXAMPLE_DB ??
  path.join(fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-nats-")), "example.db")
const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222"

const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
/** The JetStream stream this example creates: it captures every subject under `subjectPrefix`. */
const jetStreamName = `KV_EXAMPLE_${id.toUpperCase()}`
const subjectPrefix = `kvexample.${id}`

/** The JetStream stream for the life of the program (in production: `nats stream add ...`, once). */
const withJetStream = Effect.acquireRelease(
  Effect.gen(function* () {
    const connection = yield* NatsPusher.NatsConnection
    const jsm = yield* Effect.promise(() => jetstreamManager(connection))
    yield* Effect.promise(() =>
      jsm.streams.add({ name: jetStreamName, subjects: [`${subjectPrefix}.>`], storage: StorageType.Memory }),
    )
    return jsm
  }),
  (jsm) => Effect.promise(() => jsm.streams.delete(jetStreamName)),
)

const program = Effect.gen(function* () {
  const jsm = yield* withJetStream
  yield* Console.log(`JetStream stream created, capturing ${subjectPrefix}.>`)

  const store = yield* Store
  yield* store.put("users/42", 0, { name: "Ada" }, { type: "User" })
  yield* store.patch("users/42", 1, { email: "ada@example.com" }, { type: "User" })
  yield* store.put("orders/7", 0, { total: 30 }, { type: "Order" })
  yield* store.delete("orders/7")

  // the pusher is a stream consumer ("nats"): it runs until interrupted
  const pusher = yield* Effect.fork(
    NatsPusher.run({ streamName: "nats", consumerName: "pusher-1", subjectPrefix }),
  )
  // wait until it committed all four records (committed only after JetStream's acks)
  yield* Consumer.status("nats").pipe(
    Effect.map(Option.match({ onNone: () => 0, onSome: (status) => status.position })),
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (position) => position === 4 }),
    // a pusher that fails (e.g. no JetStream stream captures the subjects) ends the wait with its error
    Effect.raceFirst(Fiber.join(pusher)),
    Effect.timeoutFail({
      duration: "30 seconds",
      onTimeout: () => new Error("the pusher did not commit in 30 s"),
    }),
  )
  yield* Fiber.interrupt(pusher)
  yield* Console.log("pusher committed position 4")

  // what JetStream stored
  const info = yield* Effect.promise(() => jsm.streams.info(jetStreamName))
  yield* Console.log(`JetStream holds ${info.state.messages} messages`)
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const message = yield* Effect.promise(() => jsm.streams.getMessage(jetStreamName, { seq }))
    if (message === null) continue
    const header = (name: string) => message.header?.get(name) ?? ""
    yield* Console.log(
      `${message.subject} ${header("kv-action")} Nats-Msg-Id=${header("Nats-Msg-Id")} ${message.string() || "(no payload)"}`,
    )
  }
})

program
  .pipe(
    Effect.scoped,
    Effect.provide(Layer.merge(NatsPusher.layerConnection({ servers }), KvSqlite.layer({ filename }))),
    Effect.runPromise,
  )
  .catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
