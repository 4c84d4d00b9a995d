/**
 * How a change record becomes a NATS message: its subject, headers, message id and payload.
 * Pure functions and Schemas, without the NATS client (the CLI checks its arguments with them
 * before it loads the client).
 */
import * as Schema from "effect/Schema"
import * as Arg from "./Arguments.js"
import type { StreamRecord } from "./Store.js"

/** A subject token: every character other than an ASCII letter, digit, `-` or `_` as `_`; empty: `_`. */
const token = (text: string) => (text === "" ? "_" : text.replace(/[^A-Za-z0-9_-]/gu, "_"))

/**
 * The subject of a record: `<subjectPrefix>.<key segments>.<type>`, the key split at `/`, each
 * segment and the type made a subject token (`user/42` of type `User`: `kv.user.42.User`).
 */
export const subjectOf = (subjectPrefix: string, key: string, type: string): string =>
  [subjectPrefix, ...key.split("/").map(token), token(type)].join(".")

/** NATS header values cannot hold line breaks and lose surrounding white space. */
export const headerSafe = (value: string) => !/[\r\n]/.test(value) && value.trim() === value

/** One message to publish. */
export interface Message {
  readonly seq: number
  readonly key: string
  readonly subject: string
  /** `<streamName>:<seq>`: JetStream drops a second message with the same id. */
  readonly msgId: string
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
  /** The value as JSON; empty for a delete. */
  readonly payload: string
}

/**
 * The message of a stream record: headers `kv-seq`, `kv-action`, `kv-key`, `kv-type`,
 * `kv-version`, `kv-created` (RFC 3339). A key or type a header cannot carry as it is (with a
 * line break, or white space at either end) is percent-encoded (`encodeURIComponent`) and
 * named in the header `kv-encoded` (e.g. `kv-encoded: kv-key`).
 */
export const messageOf = (streamName: string, subjectPrefix: string, record: StreamRecord): Message => {
  const { created, key, type, value, version } = record.record
  const encoded: Array<string> = []
  const carried = (name: string, text: string) => {
    if (headerSafe(text)) return text
    encoded.push(name)
    return encodeURIComponent(text)
  }
  const headers: Array<readonly [string, string]> = [
    ["kv-seq", String(record.seq)],
    ["kv-action", record.action],
    ["kv-key", carried("kv-key", key)],
    ["kv-type", carried("kv-type", type)],
    ["kv-version", String(version)],
    ["kv-created", created.toISOString()],
  ]
  if (encoded.length > 0) headers.push(["kv-encoded", encoded.join(",")])
  return {
    seq: record.seq,
    key,
    subject: subjectOf(subjectPrefix, key, type),
    msgId: `${streamName}:${record.seq}`,
    headers,
    payload: record.action === "delete" ? "" : JSON.stringify(value),
  }
}

const subjectPrefixProblem = (prefix: unknown) =>
  typeof prefix === "string" && prefix.split(".").every((part) => part !== "" && !/[\s*>\p{Cc}]/u.test(part))
    ? undefined
    : `subject prefix must be NATS subject tokens separated by dots (no spaces, * or >), got ${JSON.stringify(prefix)}`

/** A subject prefix: `kv`, `app.changes`. */
export const SubjectPrefix = Arg.checked(Schema.String, subjectPrefixProblem)

/** A stream name that can be the first part of a `Nats-Msg-Id` header as it is. */
export const MessageIdStreamName = Arg.checked(Arg.StreamName, (name) =>
  typeof name === "string" && !headerSafe(name)
    ? `stream name ${JSON.stringify(name)} cannot be a NATS message id: no line breaks or white space at either end`
    : undefined,
)
