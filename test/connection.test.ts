/** Connection strings: parsing, the display form and redaction (rqlite's are in RqliteClient.test.ts). */
import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { parsePostgres, parseSqlite, redact, secretsOf } from "../src/internal/connection.js"

describe("SQLite connection strings", () => {
  it("paths, :memory: and file: URIs with a mode", () => {
    assert.deepStrictEqual(Either.getOrThrow(parseSqlite("data.db")), {
      filename: "data.db",
      readonly: false,
      mustExist: false,
    })
    assert.deepStrictEqual(Either.getOrThrow(parseSqlite("file:data.db?mode=ro")), {
      filename: "data.db",
      readonly: true,
      mustExist: true,
    })
    assert.deepStrictEqual(Either.getOrThrow(parseSqlite("file:///tmp/a%20b.db?mode=rw")), {
      filename: "/tmp/a b.db",
      readonly: false,
      mustExist: true,
    })
    assert.strictEqual(Either.getOrThrow(parseSqlite("file:x?mode=memory")).filename, ":memory:")
  })

  it("rejects an empty string, a missing file name and an unknown mode", () => {
    for (const [input, message] of [
      ["", /empty/],
      ["file:?mode=rw", /no file name/],
      ["file:x.db?mode=rwx", /unknown SQLite mode "rwx"/],
    ] as const) {
      assert.match(
        Either.getLeft(parseSqlite(input)).pipe((o) => (o._tag === "Some" ? o.value : "")),
        message,
      )
    }
  })
})

describe("PostgreSQL connection strings", () => {
  it("keeps the URL redacted and shows it without the password", () => {
    const target = Either.getOrThrow(
      parsePostgres("postgres://kv:s3cret-pw@db:5432/app?sslmode=disable&password=x2"),
    )
    assert.strictEqual(
      Redacted.value(target.url),
      "postgres://kv:s3cret-pw@db:5432/app?sslmode=disable&password=x2",
    )
    assert.strictEqual(target.display, "postgres://kv@db:5432/app?sslmode=disable&password=***")
    assert.notInclude(String(target.url), "s3cret")
  })

  it("rejects other schemes without repeating the input", () => {
    for (const input of ["mysql://kv:s3cret-pw@db/app", "not a url s3cret-pw"]) {
      const message = Either.getLeft(parsePostgres(Redacted.make(input))).pipe((o) =>
        o._tag === "Some" ? o.value : "",
      )
      assert.match(message, /not a PostgreSQL connection string/)
      assert.notInclude(message, "s3cret")
    }
  })
})

describe("redaction", () => {
  it("hides URL passwords, password parameters and known secrets", () => {
    assert.strictEqual(
      redact("cannot reach postgres://u:pw1@h:5432/db or http://h:4001?user=a&password=pw2"),
      "cannot reach postgres://u:***@h:5432/db or http://h:4001?user=a&password=***",
    )
    const secrets = secretsOf("http://admin:p%40ss-word@h:4001,h2:4001?token=tok-123")
    assert.includeMembers([...secrets], ["p%40ss-word", "p@ss-word", "tok-123"])
    assert.strictEqual(
      redact("auth failed for p@ss-word and tok-123", secrets),
      "auth failed for *** and ***",
    )
  })
})
