/**
 * `NatsPusher.run` in this process, on SQLite, against real NATS servers: the shared one
 * (each test its own JetStream stream), one behind a proxy that stops moving bytes, and one of
 * the test's own that it stops and starts again.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Consumer from "../src/Consumer.js"
import { NatsPusher } from "../src/nats.js"
import { Mutation, Store } from "../src/Store.js"
import { KvSqlite } from "../src/sqlite.js"
import {
  closeConnections,
  createTestStream,
  natsPort,
  natsUrl,
  StorageType,
  type StoredMessage,
  type TestStream,
  uniqueId,
} from "./support/jetstream.js"
import { startNatsServer } from "./support/natsServer.js"
import { startSwitchableProxy } from "./support/switchableProxy.js"

afterAll(() => closeConnections())

/** A fresh in-memory store, and a JetStream stream removed afterwards. */
const withStream = <A, E, R>(test: (stream: TestStream) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.promise(() => createTestStream()),
    (stream) => Effect.scoped(test(stream)),
    (stream) => Effect.promise(() => stream.remove()),
  ).pipe(Effect.provide(KvSqlite.layer({ filename: ":memory:" })))

/** Runs the pusher in the background (interrupted with the test's scope). */
const startPusher = (options: NatsPusher.RunOptions, servers = natsUrl) =>
  Effect.forkScoped(
    NatsPusher.run(options).pipe(
      Effect.provide(NatsPusher.layerConnection({ servers, reconnectTimeWait: 250 })),
    ),
  )

/** Polls `check` until it holds (external systems: NATS, another fiber). */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, what: string) =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (done) => done }),
    Effect.timeoutFail({
      duration: "60 seconds",
      onTimeout: () => new Error(`timed out waiting for ${what}`),
    }),
  )

const positionOf = (streamName: string) =>
  Effect.map(Consumer.status(streamName), Option.match({ onNone: () => 0, onSome: (s) => s.position }))

const headersOf = (message: StoredMessage) =>
  Object.fromEntries(Object.entries(message.headers).filter(([name]) => name.startsWith("kv-")))

/** Log lines written while `effect` runs, as they come. */
const capturingLogs = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => {
      lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    }),
  )

describe("NatsPusher", () => {
  it.live(
    "publishes every record with the subject, headers, message id and payload SPEC gives, then releases its lock",
    () =>
      withStream((stream) =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("user/42", -1, { name: "Ada" }, { type: "User" })
          yield* store.put("a//b", -1, [1, 2])
          yield* store.patch("user/42", -1, { n: 1 }, { type: "User" })
          yield* store.put(" lead/x\ny", -1, "text", { type: "My Type" })
          yield* store.delete("a//b")
          const changes = yield* store.stream("all", 0, -1)
          const streamName = `orders-${uniqueId()}`
          const pusher = yield* startPusher({
            streamName,
            consumerName: "pusher-1",
            subjectPrefix: stream.subjectPrefix,
          })
          yield* Effect.promise(() => stream.waitForCount(5))
          yield* eventually(
            Effect.map(positionOf(streamName), (p) => p === 5),
            "the commit",
          )
          yield* Fiber.interrupt(pusher)
          const status = Option.getOrThrow(yield* Consumer.status(streamName))
          expect(status).toMatchObject({ position: 5, lockedBy: null })

          const messages = yield* Effect.promise(() => stream.messages())
          const p = stream.subjectPrefix
          const created = changes.map((change) => change.record.created.toISOString())
          expect(messages.map((m) => [m.subject, m.headers["Nats-Msg-Id"], m.payload])).toEqual([
            [`${p}.user.42.User`, `${streamName}:1`, '{"name":"Ada"}'],
            [`${p}.a._.b.array`, `${streamName}:2`, "[1,2]"],
            [`${p}.user.42.User`, `${streamName}:3`, '{"name":"Ada","n":1}'],
            [`${p}._lead.x_y.My_Type`, `${streamName}:4`, '"text"'],
            [`${p}.a._.b.array`, `${streamName}:5`, ""],
          ])
          expect(messages.map(headersOf)).toEqual([
            {
              "kv-seq": "1",
              "kv-action": "create",
              "kv-key": "user/42",
              "kv-type": "User",
              "kv-version": "1",
              "kv-created": created[0],
            },
            {
              "kv-seq": "2",
              "kv-action": "create",
              "kv-key": "a//b",
              "kv-type": "array",
              "kv-version": "1",
              "kv-created": created[1],
            },
            {
              "kv-seq": "3",
              "kv-action": "update",
              "kv-key": "user/42",
              "kv-type": "User",
              "kv-version": "2",
              "kv-created": created[0],
            },
            {
              "kv-seq": "4",
              "kv-action": "create",
              "kv-key": "%20lead%2Fx%0Ay",
              "kv-type": "My Type",
              "kv-version": "1",
              "kv-created": created[3],
              "kv-encoded": "kv-key",
            },
            {
              "kv-seq": "5",
              "kv-action": "delete",
              "kv-key": "a//b",
              "kv-type": "array",
              "kv-version": "1",
              "kv-created": created[1],
            },
          ])
          expect(created[0]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
        }),
      ),
  )

  it.live(
    "a subject no stream captures fails the run with NatsNoStreamError; nothing committed, lock released",
    () =>
      withStream(() =>
        Effect.gen(function* () {
          const store = yield* Store
          yield* store.put("user/1", -1, { a: 1 })
          const streamName = `nostream-${uniqueId()}`
          const subjectPrefix = `kvtest.nostream.${uniqueId()}`
          const error = yield* NatsPusher.run({ streamName, consumerName: "p", subjectPrefix }).pipe(
            Effect.provide(NatsPusher.layerConnection({ servers: natsUrl })),
            Effect.flip,
          )
          expect(error._tag).toBe("NatsNoStreamError")
          expect(error).toMatchObject({ subject: `${subjectPrefix}.user.1.object`, seq: 1, key: "user/1" })
          expect(error.message).toMatch(
            /^no JetStream stream captures subject "kvtest\.nostream\.\S+\.user\.1\.object"/,
          )
          expect(Option.getOrThrow(yield* Consumer.status(streamName))).toMatchObject({
            position: 0,
            lockedBy: null,
          })
        }),
      ),
  )

  it.live("ofType and prefix: only those records are published; the position moves over the others", () =>
    withStream((stream) =>
      Effect.gen(function* () {
        const store = yield* Store
        yield* store.mutateAll(
          Array.from({ length: 40 }, (_, i) =>
            Mutation.put(`${i % 2 === 0 ? "x" : "y"}/${i}`, -1, { i }, { type: i % 4 < 2 ? "A" : "B" }),
          ),
        )
        yield* store.put("xylophone", -1, 1, { type: "A" }) // "x" but not "x/"
        const latest = yield* store.streamSeq()
        const streamName = `filtered-${uniqueId()}`
        yield* startPusher({
          streamName,
          consumerName: "p",
          subjectPrefix: stream.subjectPrefix,
          ofType: "A",
          prefix: "x/",
          batchSize: 7,
        })
        yield* eventually(
          Effect.map(positionOf(streamName), (p) => p === latest),
          "the position to reach the end",
        )
        const expected = (yield* store.stream("all", 0, -1)).filter(
          (change) => change.record.type === "A" && change.record.key.startsWith("x/"),
        )
        expect(expected).toHaveLength(10)
        const messages = yield* Effect.promise(() => stream.messages())
        expect(messages.map((m) => m.headers["kv-key"])).toEqual(expected.map((change) => change.record.key))
        expect(messages.every((m) => m.subject.startsWith(`${stream.subjectPrefix}.x.`))).toBe(true)
      }),
    ),
  )

  it.live("bad options are InvalidArgumentError", () =>
    withStream(() =>
      Effect.gen(function* () {
        const connection = NatsPusher.layerConnection({ servers: natsUrl })
        const bad = (options: Partial<NatsPusher.RunOptions>) =>
          NatsPusher.run({ streamName: "s", consumerName: "c", ...options }).pipe(
            Effect.provide(connection),
            Effect.flip,
          )
        const prefix = yield* bad({ subjectPrefix: "a..b" })
        expect(prefix).toMatchObject({ _tag: "InvalidArgumentError" })
        expect(prefix.message).toMatch(/subject prefix must be NATS subject tokens/)
        expect(yield* bad({ streamName: "two\nlines" })).toMatchObject({ _tag: "InvalidArgumentError" })
        expect(yield* bad({ publishTimeout: 0 })).toMatchObject({ _tag: "InvalidArgumentError" })
      }),
    ),
  )

  it.live("a connection that stops moving bytes: nothing is committed until JetStream acknowledged it", () =>
    withStream((stream) =>
      Effect.gen(function* () {
        const store = yield* Store
        const proxy = yield* Effect.acquireRelease(
          Effect.promise(() => startSwitchableProxy(natsPort)),
          (proxy) => Effect.promise(() => proxy.close()),
        )
        const logs: Array<string> = []
        const streamName = `stalled-${uniqueId()}`
        yield* Effect.forkScoped(
          NatsPusher.run({
            streamName,
            consumerName: "p",
            subjectPrefix: stream.subjectPrefix,
            publishTimeout: "300 millis",
          }).pipe(
            Effect.provide(
              NatsPusher.layerConnection({ servers: `127.0.0.1:${proxy.port}`, pingInterval: 60_000 }),
            ),
            // outside: the connection's own log lines too
            Effect.provide(capturingLogs(logs)),
          ),
        )
        yield* store.mutateAll(Array.from({ length: 5 }, (_, i) => Mutation.put(`s/${i}`, -1, i)))
        yield* Effect.promise(() => stream.waitForCount(5))
        yield* eventually(
          Effect.map(positionOf(streamName), (p) => p === 5),
          "the first commit",
        )

        proxy.pause()
        yield* store.mutateAll(Array.from({ length: 5 }, (_, i) => Mutation.put(`s/${5 + i}`, -1, 5 + i)))
        // the pusher read them, sent them, and saw them time out (at least twice)
        yield* eventually(
          Effect.sync(() => logs.filter((line) => line.includes("did not acknowledge")).length >= 2),
          "the publish to time out",
        )
        expect(logs.find((line) => line.includes("did not acknowledge"))).toMatch(
          /JetStream did not acknowledge 5 messages from seq 6: .*; retrying/,
        )
        expect(yield* positionOf(streamName)).toBe(5)
        expect(yield* Effect.promise(() => stream.count())).toBe(5)

        proxy.resume()
        yield* Effect.promise(() => stream.waitForCount(10))
        yield* eventually(
          Effect.map(positionOf(streamName), (p) => p === 10),
          "the commit after the acks",
        )
        // the messages sent again were duplicates: dropped
        const messages = yield* Effect.promise(() => stream.messages())
        expect(messages.map((m) => m.headers["Nats-Msg-Id"])).toEqual(
          Array.from({ length: 10 }, (_, i) => `${streamName}:${i + 1}`),
        )
      }),
    ),
  )

  it.live("NATS stopped and started again: the pusher waits, reconnects and delivers everything once", () =>
    Effect.gen(function* () {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startNatsServer()),
        (server) => Effect.promise(() => server.remove()),
      )
      const stream = yield* Effect.promise(() =>
        createTestStream({ url: server.url, storage: StorageType.File }),
      )
      const store = yield* Store
      const logs: Array<string> = []
      const streamName = `restarted-${uniqueId()}`
      yield* Effect.forkScoped(
        NatsPusher.run({
          streamName,
          consumerName: "p",
          subjectPrefix: stream.subjectPrefix,
          publishTimeout: "500 millis",
        }).pipe(
          Effect.provide(NatsPusher.layerConnection({ servers: server.url, reconnectTimeWait: 200 })),
          Effect.provide(capturingLogs(logs)),
        ),
      )
      const write = (from: number) =>
        store.mutateAll(Array.from({ length: 50 }, (_, i) => Mutation.put(`r/${from + i}`, -1, from + i)))
      yield* write(0)
      yield* Effect.promise(() => stream.waitForCount(50))
      yield* Effect.promise(() => server.stop())
      yield* eventually(
        Effect.sync(() => logs.some((line) => line.includes("disconnected"))),
        "the pusher to notice",
      )
      yield* write(50)
      // the pusher read them and could not publish them: it waits, keeping its position
      yield* eventually(
        Effect.sync(() => logs.some((line) => line.includes("did not acknowledge"))),
        "a failed publish",
      )
      expect(yield* positionOf(streamName)).toBe(50)
      yield* Effect.promise(() => server.start())
      yield* write(100)
      yield* eventually(
        Effect.map(positionOf(streamName), (p) => p === 150),
        "everything committed",
      )
      const messages = yield* Effect.promise(() => stream.messages())
      expect(messages.map((m) => m.headers["Nats-Msg-Id"])).toEqual(
        Array.from({ length: 150 }, (_, i) => `${streamName}:${i + 1}`),
      )
      expect(logs.some((line) => line.includes("reconnected"))).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(KvSqlite.layer({ filename: ":memory:" }))),
  )
})
