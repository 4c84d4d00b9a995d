/**
 * How a change record becomes a NATS message (subject, headers, id, payload), and the
 * arguments of `kv nats push`: pure functions, no server.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { parseNatsUrl } from "../src/cli/nats.js"
import { MessageIdStreamName, messageOf, SubjectPrefix, subjectOf } from "../src/NatsMessage.js"
import type { StreamRecord } from "../src/Store.js"

describe("subjects", () => {
  it.each([
    ["kv", "user/42", "User", "kv.user.42.User"],
    ["kv", "a//b", "object", "kv.a._.b.object"],
    ["kv", "/x/", "object", "kv._.x._.object"],
    ["app.changes", "plain", "string", "app.changes.plain.string"],
    ["kv", "sp ace.dot*star>gt", "My Type", "kv.sp_ace_dot_star_gt.My_Type"],
    ["kv", "é/ü-_9", "t.x", "kv._._-_9.t_x"],
    // one character, one underscore (a code point above U+FFFF too)
    ["kv", "\u{1F600}x", "\u{1F600}", "kv._x._"],
    ["kv", "tab\tnew\nline", "a\u0000b", "kv.tab_new_line.a_b"],
  ])("%s + %j of type %j is %s", (prefix, key, type, subject) => {
    expect(subjectOf(prefix, key, type)).toBe(subject)
  })
})

const record = (action: StreamRecord["action"], key: string, type: string, value: unknown): StreamRecord => ({
  seq: 17,
  action,
  record: { key, version: 3, value, type, created: new Date("2030-01-02T03:04:05.678Z") },
})

describe("messages", () => {
  it("carries the kv-* headers, the message id and the value as JSON", () => {
    const message = messageOf("orders", "kv", record("update", "user/42", "User", { name: "Ada", n: [1] }))
    expect(message).toEqual({
      seq: 17,
      key: "user/42",
      subject: "kv.user.42.User",
      msgId: "orders:17",
      headers: [
        ["kv-seq", "17"],
        ["kv-action", "update"],
        ["kv-key", "user/42"],
        ["kv-type", "User"],
        ["kv-version", "3"],
        ["kv-created", "2030-01-02T03:04:05.678Z"],
      ],
      payload: '{"name":"Ada","n":[1]}',
    })
  })

  it("a delete has an empty payload; JSON scalars are JSON", () => {
    expect(messageOf("s", "kv", record("delete", "k", "object", { a: 1 })).payload).toBe("")
    expect(messageOf("s", "kv", record("create", "k", "string", "text")).payload).toBe('"text"')
    expect(messageOf("s", "kv", record("create", "k", "null", null)).payload).toBe("null")
  })

  it("a key or type a header cannot carry is percent-encoded and named in kv-encoded", () => {
    const message = messageOf("s", "kv", record("create", " lead/two\nlines", "type ", 1))
    const headers = Object.fromEntries(message.headers)
    expect(headers["kv-key"]).toBe("%20lead%2Ftwo%0Alines")
    expect(decodeURIComponent(headers["kv-key"]!)).toBe(" lead/two\nlines")
    expect(headers["kv-type"]).toBe("type%20")
    expect(headers["kv-encoded"]).toBe("kv-key,kv-type")
    // Unicode as such is fine in a header
    const plain = Object.fromEntries(messageOf("s", "kv", record("create", "é/\u{1F600}", "t", 1)).headers)
    expect(plain["kv-key"]).toBe("é/\u{1F600}")
    expect(plain["kv-encoded"]).toBeUndefined()
  })
})

describe("arguments", () => {
  const prefix = Schema.decodeUnknownEither(SubjectPrefix)
  it.each(["kv", "app.changes", "a-b_c.D9"])("subject prefix %j is valid", (text) => {
    expect(Either.isRight(prefix(text))).toBe(true)
  })
  it.each(["", "a..b", ".kv", "kv.", "k v", "kv.*", "kv.>", "a>b", "tab\t"])(
    "subject prefix %j is not",
    (text) => {
      expect(Either.isLeft(prefix(text))).toBe(true)
    },
  )

  it("a stream name must be a message id as it is", () => {
    const name = Schema.decodeUnknownEither(MessageIdStreamName)
    expect(Either.isRight(name("orders to nats"))).toBe(true)
    expect(Either.isLeft(name("two\nlines"))).toBe(true)
    expect(Either.isLeft(name(" padded"))).toBe(true)
    expect(Either.isLeft(name(""))).toBe(true)
  })

  it("--nats-url: servers, and credentials apart", () => {
    expect(parseNatsUrl("nats://127.0.0.1:4222")).toEqual({ servers: ["nats://127.0.0.1:4222"] })
    expect(parseNatsUrl("nats://a:4222, b:4223")).toEqual({ servers: ["nats://a:4222", "nats://b:4223"] })
    expect(parseNatsUrl("nats://me:p%40ss@h:4222")).toEqual({
      servers: ["nats://h:4222"],
      user: "me",
      pass: "p@ss",
    })
    expect(parseNatsUrl("tls://s3cret@h:4222")).toEqual({ servers: ["tls://h:4222"], token: "s3cret" })
    expect(parseNatsUrl("nats://")).toMatchObject({ _tag: "InvalidArgumentError" })
  })
})
