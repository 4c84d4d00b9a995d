/**
 * `kv nats push` end to end, on the BUILT executable (`npm run build` first), against the
 * shared NATS server: each test its own JetStream stream, deleted afterwards.
 *
 * `natsKillSuite(backend)`: on a database private to it, the pusher is killed with SIGKILL
 * mid-run twice and started again, while records keep coming; every record must be in the
 * JetStream stream exactly once, in seq order, with SPEC's subject, headers, id and payload.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { afterAll, describe, expect, it, onTestFinished } from "vitest"
import * as Consumer from "../src/Consumer.js"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import { messageOf } from "../src/NatsMessage.js"
import { Mutation, Store, type StreamRecord } from "../src/Store.js"
import {
  closeConnections,
  createTestStream,
  natsUrl,
  type TestStream,
  uniqueId,
} from "./support/jetstream.js"
import { type KvProcess, startKv } from "./support/kvProcess.js"

export interface NatsBackend {
  readonly type: BackendType
  /** A database private to the test that uses it. */
  readonly connection: string
}

/** The library on the same database: writes, the stream as stored, the consumer's status. */
export const libraryOn = (backend: NatsBackend) => {
  const layer = layerFor(backend.type, Redacted.make(backend.connection))
  const run = <A, E>(effect: Effect.Effect<A, E, Store | Consumer.ConsumerStorage>) =>
    Effect.runPromise(Effect.provide(effect, layer))
  return {
    /** `count` records from `from` on: puts over 250 keys of two types, and some deletes. */
    write: (from: number, count: number) =>
      run(
        Effect.flatMap(Store, (store) =>
          Effect.forEach(
            Array.from({ length: Math.ceil(count / 100) }, (_, chunk) => chunk),
            (chunk) => {
              const start = from + chunk * 100
              const size = Math.min(100, from + count - start)
              const mutations = Array.from({ length: size }, (_, i) => {
                const n = start + i
                return n % 10 === 9 && n >= 250
                  ? Mutation.delete(`k/${(n - 9) % 250}`)
                  : Mutation.put(`k/${n % 250}`, -1, { n }, { type: n % 3 === 0 ? "Order" : "object" })
              })
              return store.mutateAll(mutations)
            },
            { discard: true },
          ),
        ),
      ),
    changes: () => run(Effect.flatMap(Store, (store) => store.stream("all", 0, -1))),
    latestSeq: () => run(Effect.flatMap(Store, (store) => store.streamSeq())),
    status: (name: string) => run(Consumer.status(name)).then(Option.getOrUndefined),
  }
}

/** Resolves once `check()` holds; rejects after `timeoutMs`. */
export const eventually = async (check: () => Promise<boolean>, what: string, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Every change (of `keyPrefix`, default all) is in the stream exactly once, in seq order, as SPEC says. */
export const expectDeliveredOnce = async (
  stream: TestStream,
  streamName: string,
  changes: ReadonlyArray<StreamRecord>,
) => {
  const messages = await stream.messages()
  expect(messages.map((m) => m.headers["Nats-Msg-Id"])).toEqual(changes.map((c) => `${streamName}:${c.seq}`))
  for (const [i, message] of messages.entries()) {
    const expected = messageOf(streamName, stream.subjectPrefix, changes[i]!)
    expect(message.subject).toBe(expected.subject)
    expect(message.payload).toBe(expected.payload)
    for (const [name, value] of expected.headers) expect(message.headers[name]).toBe(value)
  }
}

/** `kv nats push <streamName> <consumerName> ...` on `backend`. */
export const startPush = (
  backend: NatsBackend,
  streamName: string,
  consumerName: string,
  flags: ReadonlyArray<string>,
): KvProcess => {
  const push = startKv(
    [
      "nats",
      "push",
      streamName,
      consumerName,
      ...flags,
      "--type",
      backend.type,
      "--connection",
      backend.connection,
    ],
    { keepStdout: true },
  )
  onTestFinished(() => push.kill("SIGKILL")) // a failed test must not leave it running
  return push
}

export const natsKillSuite = (backend: NatsBackend) =>
  describe(`kv nats push on ${backend.type}`, () => {
    afterAll(() => closeConnections())

    it("every record arrives exactly once after the pusher is killed (SIGKILL) mid-run and restarted", async () => {
      const stream = await createTestStream()
      onTestFinished(() => stream.remove())
      const library = libraryOn(backend)
      const streamName = `kill-${uniqueId()}`
      const flags = ["--nats-url", natsUrl, "--subject-prefix", stream.subjectPrefix]
      const kill = async (push: KvProcess) => {
        push.kill("SIGKILL")
        expect((await push.exited).signal).toBe("SIGKILL")
      }

      await library.write(0, 1000)
      // the same consumer name each time: a restarted instance takes its own lock back at once
      const first = startPush(backend, streamName, "pusher", flags)
      await stream.waitForCount(150)
      await kill(first)
      await library.write(1000, 500)
      const second = startPush(backend, streamName, "pusher", flags)
      await stream.waitForCount(1100)
      await kill(second)
      const third = startPush(backend, streamName, "pusher", flags)
      await library.write(1500, 300)
      const latest = await library.latestSeq()
      await eventually(async () => (await library.status(streamName))?.position === latest, "the last commit")
      third.kill("SIGTERM")
      expect(await third.exited).toEqual({ code: 0, signal: null })
      expect(third.stdout()).toBe("")
      expect(third.stderr()).toBe("")
      expect(await library.status(streamName)).toMatchObject({ position: latest, lockedBy: null })

      const changes = await library.changes()
      expect(changes).toHaveLength(1800)
      expect(changes.some((change) => change.action === "delete")).toBe(true)
      await expectDeliveredOnce(stream, streamName, changes)
    })
  })
