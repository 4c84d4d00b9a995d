/**
 * The change stream published to NATS JetStream: a consumer (`Consumer.stream`) whose records
 * become JetStream messages, committed only once JetStream acknowledged them.
 *
 * Each record goes to `<subjectPrefix>.<key segments>.<type>` (see {@link subjectOf}) with the
 * headers of {@link messageOf} and `Nats-Msg-Id: <streamName>:<seq>`, so that JetStream drops a
 * message it already stored (within the stream's duplicate window, 2 minutes by default).
 *
 * Why nothing is committed before its acknowledgement: the consumer runs in `batch` mode and
 * each batch is published from `Stream.runForEachChunk`. `Consumer.stream` commits a batch only
 * when the next one is pulled, and `runForEachChunk` pulls the next one only after the handler
 * of this one succeeded, i.e. after every message of the batch was acknowledged. A process that
 * dies in between leaves its batch to the next instance, which publishes it again (deduplicated).
 *
 * The messages of a batch are sent back to back (in seq order, on one connection) and their
 * acknowledgements awaited together. Those not acknowledged (a timeout, a lost connection) are
 * sent again with a backoff, for as long as it takes, while the consumer keeps its lock and its
 * position; the client reconnects by itself. What cannot succeed by waiting fails the run with a
 * typed error: a subject no stream captures (NATS answers "no responders"), a message NATS
 * refuses (e.g. larger than its `max_payload`).
 */
import { type JetStreamClient, jetstream, type PubAck } from "@nats-io/jetstream"
import {
  type NatsConnection as Connection,
  connect,
  type MsgHdrs,
  type NodeConnectionOptions,
  headers as natsHeaders,
  type Status,
} from "@nats-io/transport-node"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Arg from "./Arguments.js"
import * as Consumer from "./Consumer.js"
import { type Message, MessageIdStreamName, messageOf, SubjectPrefix } from "./NatsMessage.js"
import type { InvalidArgumentError, StoreError } from "./Store.js"

export { type Message, messageOf, SubjectPrefix, subjectOf } from "./NatsMessage.js"

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** The first connection to NATS failed (later disconnections are retried by the client). */
export class NatsConnectionError extends Schema.TaggedError<NatsConnectionError>()("NatsConnectionError", {
  /** The servers, without credentials. */
  servers: Schema.String,
  reason: Schema.String,
}) {
  override get message() {
    return `cannot connect to NATS at ${this.servers}: ${this.reason}`
  }
}

/** NATS answered "no responders": no JetStream stream captures the subject (or JetStream is off). */
export class NatsNoStreamError extends Schema.TaggedError<NatsNoStreamError>()("NatsNoStreamError", {
  subject: Schema.String,
  subjectPrefix: Schema.String,
  seq: Schema.Number,
  key: Schema.String,
}) {
  override get message() {
    return (
      `no JetStream stream captures subject "${this.subject}" (record seq ${this.seq}, key "${this.key}"): ` +
      `NATS answered "no responders"; create a stream whose subjects include it, e.g. ` +
      `nats stream add KV --subjects '${this.subjectPrefix}.>' (or enable JetStream on the server)`
    )
  }
}

/** NATS refused a message for good (too large for the server's `max_payload`, no permission, ...). */
export class NatsPublishRejectedError extends Schema.TaggedError<NatsPublishRejectedError>()(
  "NatsPublishRejectedError",
  { subject: Schema.String, seq: Schema.Number, key: Schema.String, reason: Schema.String },
) {
  override get message() {
    return `NATS refused the record of seq ${this.seq} (key "${this.key}", subject "${this.subject}"): ${this.reason}`
  }
}

/**
 * JetStream did not acknowledge some messages (a timeout, a lost connection, a stream that
 * refused them for now). Retried by `run` with `retrySchedule`; it fails the run only when that
 * schedule ends (the default never does).
 */
export class NatsNotAcknowledgedError extends Schema.TaggedError<NatsNotAcknowledgedError>()(
  "NatsNotAcknowledgedError",
  { count: Schema.Number, firstSeq: Schema.Number, reason: Schema.String },
) {
  override get message() {
    const what =
      this.count === 1
        ? `the message of seq ${this.firstSeq}`
        : `${this.count} messages from seq ${this.firstSeq}`
    return `JetStream did not acknowledge ${what}: ${this.reason}`
  }
}

export type NatsPusherError = NatsNoStreamError | NatsPublishRejectedError | NatsNotAcknowledgedError

// ---------------------------------------------------------------------------------------------
// The connection
// ---------------------------------------------------------------------------------------------

/** A connection to NATS (`@nats-io/transport-node`). */
export class NatsConnection extends Context.Tag("effect-kv/NatsConnection")<NatsConnection, Connection>() {}

const reasonOf = (error: unknown): string =>
  error instanceof Error && error.message !== "" ? error.message : String(error)

const describeServers = (servers: NodeConnectionOptions["servers"]) =>
  (servers === undefined ? ["127.0.0.1:4222"] : Array.isArray(servers) ? servers : [servers]).join(",")

/** Connection changes, as log lines (the client reconnects by itself). */
const logStatus = (status: Status): Effect.Effect<void> => {
  switch (status.type) {
    case "disconnect":
      return Effect.logWarning(`NATS: disconnected from ${status.server}; reconnecting`)
    case "reconnect":
      return Effect.logInfo(`NATS: reconnected to ${status.server}`)
    case "staleConnection":
      return Effect.logWarning("NATS: the connection stopped answering pings; reconnecting")
    case "ldm":
      return Effect.logInfo(`NATS: ${status.server} is entering lame duck mode`)
    case "error":
      return Effect.logWarning(`NATS: ${reasonOf(status.error)}`)
    default:
      return Effect.void
  }
}

/**
 * A connection to NATS for the life of the layer, closed when it ends. The first connection
 * must succeed (else `NatsConnectionError`); afterwards the client reconnects by itself, for
 * ever by default (`maxReconnectAttempts: -1`), every second, and pings every 10 seconds so that
 * a server that stopped answering is noticed. Any client option may be given.
 */
export const layerConnection = (
  options: NodeConnectionOptions = {},
): Layer.Layer<NatsConnection, NatsConnectionError> =>
  Layer.scoped(
    NatsConnection,
    Effect.gen(function* () {
      const config: NodeConnectionOptions = {
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
        pingInterval: 10_000,
        ...options,
      }
      const connection = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => connect(config),
          catch: (error) =>
            new NatsConnectionError({ servers: describeServers(config.servers), reason: reasonOf(error) }),
        }),
        (connection) =>
          Effect.promise(() => connection.close()).pipe(Effect.timeout("5 seconds"), Effect.ignore),
      )
      // the status iterator is read by hand: `Stream.fromAsyncIterable` would call its `return()`
      // when interrupted, which waits for the next status (a ping, seconds away); this iterator
      // simply ends when the connection closes
      const statuses = connection.status()[Symbol.asyncIterator]()
      yield* Effect.forkScoped(
        Effect.promise(() => statuses.next()).pipe(
          Effect.flatMap((next) =>
            next.done === true ? Effect.fail("closed" as const) : logStatus(next.value),
          ),
          Effect.forever,
          Effect.ignore,
        ),
      )
      return connection
    }),
  )

// ---------------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------------

/** What became of one message that was not acknowledged. */
type Refusal =
  | { readonly _tag: "Final"; readonly error: NatsNoStreamError | NatsPublishRejectedError }
  | { readonly _tag: "Retry"; readonly reason: string }

/** Sorts a failed publish: what waiting cannot fix is final. */
const refusal = (message: Message, subjectPrefix: string, error: unknown): Refusal => {
  const name = error instanceof Error ? error.name : ""
  switch (name) {
    case "JetStreamNotEnabled": // the client's name for a 503 "no responders" answer
      return {
        _tag: "Final",
        error: new NatsNoStreamError({
          subject: message.subject,
          subjectPrefix,
          seq: message.seq,
          key: message.key,
        }),
      }
    case "InvalidArgumentError": // e.g. "max_payload size exceeded"
    case "InvalidSubjectError":
    case "PermissionViolationError":
    case "AuthorizationError":
    case "ClosedConnectionError":
      return {
        _tag: "Final",
        error: new NatsPublishRejectedError({
          subject: message.subject,
          seq: message.seq,
          key: message.key,
          reason: reasonOf(error),
        }),
      }
    default: // timeouts, a lost connection, a stream refusing for now (JetStreamApiError)
      return { _tag: "Retry", reason: reasonOf(error) }
  }
}

const send = (js: JetStreamClient, message: Message, timeout: number): Promise<PubAck> => {
  const headers: MsgHdrs = natsHeaders()
  for (const [name, value] of message.headers) headers.set(name, value)
  return js.publish(message.subject, message.payload, { msgID: message.msgId, headers, timeout })
}

/**
 * Publishes `messages` until JetStream acknowledged every one: all are sent back to back (the
 * client writes them in this order), their acknowledgements awaited together; the ones not
 * acknowledged are sent again, in order, after a delay of `retry`.
 */
const publishAll = (
  js: JetStreamClient,
  messages: ReadonlyArray<Message>,
  options: {
    readonly subjectPrefix: string
    readonly timeout: number
    readonly retry: Schedule.Schedule<unknown>
  },
): Effect.Effect<void, NatsPusherError> => {
  let waiting = messages
  const attempt = Effect.gen(function* () {
    const outcomes = yield* Effect.promise(() =>
      Promise.allSettled(waiting.map((message) => send(js, message, options.timeout))),
    )
    const unacknowledged: Array<Message> = []
    let reason = ""
    for (const [i, outcome] of outcomes.entries()) {
      if (outcome.status === "fulfilled") continue
      const sorted = refusal(waiting[i]!, options.subjectPrefix, outcome.reason)
      if (sorted._tag === "Final") return yield* sorted.error
      if (unacknowledged.length === 0) reason = sorted.reason
      unacknowledged.push(waiting[i]!)
    }
    waiting = unacknowledged
    if (unacknowledged.length > 0) {
      return yield* new NatsNotAcknowledgedError({
        count: unacknowledged.length,
        firstSeq: unacknowledged[0]!.seq,
        reason,
      })
    }
  })
  return attempt.pipe(
    Effect.tapError((error) =>
      error._tag === "NatsNotAcknowledgedError"
        ? Effect.logWarning(`${error.message}; retrying`)
        : Effect.void,
    ),
    Effect.retry({
      schedule: options.retry,
      while: (error) => error._tag === "NatsNotAcknowledgedError",
    }),
    Effect.withSpan("NatsPusher.publish", {
      attributes: { messages: messages.length, firstSeq: messages[0]?.seq, lastSeq: messages.at(-1)?.seq },
    }),
  )
}

// ---------------------------------------------------------------------------------------------
// The pusher
// ---------------------------------------------------------------------------------------------

export interface RunOptions {
  /** The consumer (its position and lock) and the first part of each `Nats-Msg-Id`. */
  readonly streamName: string
  /** This instance: the holder of the consumer's lock. */
  readonly consumerName: string
  /** The first token(s) of every subject (default `kv`): NATS subject tokens separated by dots. */
  readonly subjectPrefix?: string | undefined
  /** Only records of this type (default "all"); the position moves over the others. */
  readonly ofType?: string | undefined
  /** Only records whose key starts with this prefix (read so from the stream); the position moves over the others. */
  readonly prefix?: string | undefined
  /** Records read and published at a time (default 100). */
  readonly batchSize?: number | undefined
  /** How long JetStream has to acknowledge a message before it is sent again (default 5 s). */
  readonly publishTimeout?: Duration.DurationInput | undefined
  /**
   * The delays between attempts to publish what was not acknowledged (default: from 100 ms,
   * doubling, at most 5 s apart, jittered, for ever). When it ends, `run` fails with
   * `NatsNotAcknowledgedError`.
   */
  readonly retrySchedule?: Schedule.Schedule<unknown> | undefined
  /** The consumer's lock duration (default 30 s; extended while the pusher runs). */
  readonly lockDuration?: Duration.DurationInput | undefined
  /** The longest an idle pusher waits between reads of the stream (default 500 ms). */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** The longest wait between attempts to take a lock another instance holds (default 5 s). */
  readonly standbyInterval?: Duration.DurationInput | undefined
}

const defaultRetry = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered,
)

const decodeOptions = Arg.args({
  streamName: MessageIdStreamName,
  subjectPrefix: SubjectPrefix,
  prefix: Arg.Prefix,
  publishTimeout: Arg.Millis,
})

/**
 * Runs the pusher until interrupted: the consumer `streamName`'s records (after its committed
 * position, of `ofType`, under `prefix`) published to JetStream and committed once acknowledged.
 * Fails with `NatsNoStreamError` or `NatsPublishRejectedError` for what waiting cannot fix, and
 * as `Consumer.stream` does (a trimmed gap); its lock is released when it ends.
 */
export const run = (
  options: RunOptions,
): Effect.Effect<
  void,
  NatsPusherError | Consumer.ConsumerGapError | InvalidArgumentError | StoreError,
  NatsConnection | Consumer.ConsumerStorage
> =>
  Effect.gen(function* () {
    const connection = yield* NatsConnection
    const checked = yield* decodeOptions({
      streamName: options.streamName,
      subjectPrefix: options.subjectPrefix ?? "kv",
      prefix: options.prefix ?? "",
      publishTimeout: options.publishTimeout ?? Duration.seconds(5),
    })
    const js = jetstream(connection)
    const publish = {
      subjectPrefix: checked.subjectPrefix,
      timeout: checked.publishTimeout,
      retry: options.retrySchedule ?? defaultRetry,
    }
    yield* Consumer.stream({
      streamName: checked.streamName,
      consumerName: options.consumerName,
      ofType: options.ofType,
      prefix: checked.prefix,
      // committed when the next batch is pulled: after this batch's handler succeeded
      commitMode: "batch",
      batchSize: options.batchSize,
      lockDuration: options.lockDuration,
      pollInterval: options.pollInterval,
      standbyInterval: options.standbyInterval,
    }).pipe(
      Stream.runForEachChunk((records) => {
        const messages = Array.from(records, (record) =>
          messageOf(checked.streamName, checked.subjectPrefix, record),
        )
        return messages.length === 0 ? Effect.void : publishAll(js, messages, publish)
      }),
    )
  })
