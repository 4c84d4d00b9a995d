/**
 * JetStream streams for tests, on the shared NATS server (127.0.0.1:4222, JetStream enabled):
 * each test makes its own uniquely named stream over its own subject prefix and deletes it
 * afterwards. The server itself is never stopped or restarted.
 */
import { jetstreamManager, StorageType } from "@nats-io/jetstream"

export { StorageType }

import { connect, type NatsConnection, nanos } from "@nats-io/transport-node"

export const natsPort = 4222
export const natsUrl = `nats://127.0.0.1:${natsPort}`

/** One message as JetStream stored it. */
export interface StoredMessage {
  /** JetStream's own sequence number (the order it stored them in). */
  readonly streamSeq: number
  readonly subject: string
  readonly headers: Readonly<Record<string, string>>
  readonly payload: string
}

export interface TestStream {
  readonly name: string
  /** The stream captures `<subjectPrefix>.>`. */
  readonly subjectPrefix: string
  readonly count: () => Promise<number>
  /** Every message, in the order JetStream stored them. */
  readonly messages: () => Promise<ReadonlyArray<StoredMessage>>
  /** Resolves once the stream holds at least `n` messages; rejects after `timeoutMs`. */
  readonly waitForCount: (n: number, timeoutMs?: number) => Promise<void>
  readonly remove: () => Promise<void>
}

const connections = new Map<string, Promise<NatsConnection>>()
const connection = (url: string) => {
  let opened = connections.get(url)
  if (opened === undefined) {
    opened = connect({
      servers: url,
      name: "effect-kv tests",
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    })
    connections.set(url, opened)
  }
  return opened
}

/** Closes the tests' own connections (call once, after the last stream was removed). */
export const closeConnections = async () => {
  const opened = [...connections.values()]
  connections.clear()
  await Promise.all(opened.map(async (nc) => (await nc).close()))
}

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`

export const uniqueId = unique

/** A new stream on the server at `url` (default the shared one), in memory unless told otherwise. */
export const createTestStream = async (
  options: { readonly url?: string; readonly storage?: StorageType } = {},
): Promise<TestStream> => {
  const id = unique()
  const name = `KV_TEST_${id.toUpperCase()}`
  const subjectPrefix = `kvtest.${id}`
  // JetStream's API answers late on a loaded machine, or on a server of a test's own that has
  // just started: a longer wait than the client's 5 s default
  const jsm = await jetstreamManager(await connection(options.url ?? natsUrl), { timeout: 30_000 })
  await jsm.streams.add({
    name,
    subjects: [`${subjectPrefix}.>`],
    storage: options.storage ?? StorageType.Memory,
    // longer than any test: every duplicate a test provokes is dropped
    duplicate_window: nanos(10 * 60 * 1000),
  })
  const count = async () => (await jsm.streams.info(name)).state.messages
  return {
    name,
    subjectPrefix,
    count,
    messages: async () => {
      const { state } = await jsm.streams.info(name)
      const messages: Array<StoredMessage> = []
      if (state.messages === 0) return messages
      for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
        const message = await jsm.streams.getMessage(name, { seq })
        if (message === null) continue
        const headers: Record<string, string> = {}
        for (const [header, values] of message.header ?? []) headers[header] = values.join(",")
        messages.push({
          streamSeq: message.seq,
          subject: message.subject,
          headers,
          payload: message.string(),
        })
      }
      return messages
    },
    waitForCount: async (n, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const now = await count()
        if (now >= n) return
        if (Date.now() > deadline)
          throw new Error(`stream ${name} holds ${now} messages, not ${n}, after ${timeoutMs} ms`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    remove: async () => {
      await jsm.streams.delete(name)
    },
  }
}
