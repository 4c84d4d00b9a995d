/**
 * rqlite's wire protocol and the sorting of its answers, without a server: statement and
 * parameter encoding, the SQL that must not reach rqlited, the atomic-batch protocol, the
 * read level per server version, and which failure kind each answer or transport error is.
 */
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import { AtomicStatementError } from "../src/internal/executor.js"
import {
  errorCode,
  fromAnswer,
  fromFailedAnswer,
  fromStatusAnswer,
  fromTransportError,
  mayTryElsewhere,
  type NodeFailure,
  wasSent,
} from "../src/internal/rqlite/nodeFailure.js"
import * as Protocol from "../src/internal/rqlite/protocol.js"

const right = <A, E>(either: Either.Either<A, E>): A =>
  Either.isRight(either) ? either.right : assert.fail(`expected a success, got ${String(either.left)}`)

const left = <A, E>(either: Either.Either<A, E>): E =>
  Either.isLeft(either) ? either.left : assert.fail(`expected a failure, got ${JSON.stringify(either.right)}`)

describe("rqlite parameters", () => {
  it("encodes every parameter type as rqlite's JSON", () => {
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      ['it\'s "quoted"\n', JSON.stringify('it\'s "quoted"\n')],
      ["", '""'],
      [42, "42"],
      [-1.5, "-1.5"],
      [0, "0"],
      [2n ** 63n - 1n, "9223372036854775807"],
      [-(2n ** 63n), "-9223372036854775808"],
      [true, "1"],
      [false, "0"],
      [null, "null"],
      [undefined, "null"],
      [new Date("2024-05-06T07:08:09.010Z"), '"2024-05-06T07:08:09.010Z"'],
    ]
    for (const [value, json] of cases) {
      assert.strictEqual(right(Protocol.encodeParam(value)), json, String(value))
    }
  })

  it("refuses what rqlite cannot take, saying why", () => {
    for (const [value, message] of [
      [Number.NaN, "cannot bind NaN as an rqlite parameter"],
      [Number.POSITIVE_INFINITY, "cannot bind Infinity as an rqlite parameter"],
      [new Uint8Array([1, 2]), "rqlite 8 does not take binary parameters; bind a hex or base64 string"],
      [{ a: 1 }, "cannot bind a value of type object as an rqlite parameter"],
      [Symbol("s"), "cannot bind a value of type symbol as an rqlite parameter"],
      [() => 1, "cannot bind a value of type function as an rqlite parameter"],
    ] as const) {
      const error = left(Protocol.encodeParam(value))
      assert.instanceOf(error, SqlError)
      assert.strictEqual(error.message, message)
    }
  })

  it("encodes a statement as [sql, ...params] and stops at the first parameter it cannot bind", () => {
    const sql = JSON.stringify("SELECT ?, ?")
    assert.strictEqual(right(Protocol.encodeStatement(sql, ["a", 1n])), '["SELECT ?, ?","a",1]')
    assert.strictEqual(right(Protocol.encodeStatement(sql, [])), '["SELECT ?, ?"]')
    assert.strictEqual(
      left(Protocol.encodeStatement(sql, [1, Number.NaN])).message,
      "cannot bind NaN as an rqlite parameter",
    )
  })

  it("builds the body of a request of one statement, or keeps the refusal", () => {
    assert.deepStrictEqual(right(Protocol.singleRequest(Protocol.prepareSql("SELECT ?"), [1])), {
      body: '[["SELECT ?",1]]',
      read: true,
    })
    assert.deepStrictEqual(right(Protocol.singleRequest(Protocol.prepareSql("DELETE FROM t"), [])), {
      body: '[["DELETE FROM t"]]',
      read: false,
    })
    assert.match(left(Protocol.singleRequest(Protocol.prepareSql(";"), [])).message, /empty SQL statement/)
    assert.match(
      left(Protocol.singleRequest(Protocol.prepareSql("SELECT ?"), [Symbol()])).message,
      /type symbol/,
    )
  })
})

describe("rqlite SQL refusals", () => {
  it("finds empty parts: only whitespace or comments, ';;', a comment after the last ';'", () => {
    for (const sql of [
      "",
      "  \n",
      ";",
      "SELECT 1;;",
      "SELECT 1; ;",
      "SELECT 1; -- done",
      "SELECT 1; /* done */",
      "/* only a comment */",
      "-- only a comment",
      "; SELECT 1",
      "SELECT 1; /* a */ ; SELECT 2",
    ]) {
      assert.isTrue(Protocol.hasEmptyPart(sql), JSON.stringify(sql))
    }
    for (const sql of [
      "SELECT 1",
      "SELECT 1;",
      "SELECT 1;  \n",
      "SELECT 1; SELECT 2",
      "-- why\nSELECT ';;' /* x */",
      "SELECT 'it''s; -- not a comment'",
      'SELECT ";" AS "a;b"',
      "SELECT [;] FROM t",
      "SELECT `;`",
      "/* a */ SELECT 1",
    ]) {
      assert.isFalse(Protocol.hasEmptyPart(sql), JSON.stringify(sql))
    }
  })

  it("refuses transaction control and empty parts, and lets the rest through", () => {
    for (const sql of [
      "BEGIN",
      "begin immediate",
      "  COMMIT",
      "END",
      "ROLLBACK",
      "SAVEPOINT a",
      "RELEASE a",
    ]) {
      assert.strictEqual(Protocol.refusalOf(sql), "rqlite has no interactive transactions; use executeAtomic")
      assert.strictEqual(left(Protocol.prepareSql(sql)).message, Protocol.noTransactions)
    }
    assert.strictEqual(
      Protocol.refusalOf("SELECT 1;;"),
      "empty SQL statement or part of one (e.g. ';;' or a comment after the last ';'), which makes rqlited 8 run out of memory",
    )
    for (const sql of [
      "SELECT 1",
      "BEGINNING_TABLE",
      "INSERT INTO commits VALUES (1)",
      "UPDATE t SET end = 1",
    ]) {
      assert.isNull(Protocol.refusalOf(sql), sql)
    }
  })

  it("counts only SELECT as read-only", () => {
    for (const sql of ["SELECT 1", "  select * from t", "\nSELECT\n1"])
      assert.isTrue(Protocol.isReadOnly(sql))
    for (const sql of [
      "INSERT INTO t VALUES (1)",
      "UPDATE t SET x = 1 RETURNING x",
      "DELETE FROM t",
      "WITH x AS (SELECT 1) DELETE FROM t",
      "SELECTED",
      "CREATE TABLE t (x)",
    ]) {
      assert.isFalse(Protocol.isReadOnly(sql), sql)
    }
    assert.deepStrictEqual(right(Protocol.prepareSql("SELECT 'a'")), { json: `"SELECT 'a'"`, read: true })
  })

  it("remembers prepared SQL per text, and forgets it all at capacity", () => {
    const prepare = Protocol.memoizedPrepareSql(2)
    const a = prepare("SELECT 1")
    assert.strictEqual(prepare("SELECT 1"), a)
    prepare("SELECT 2")
    prepare("SELECT 3") // full: the memory starts again
    assert.notStrictEqual(prepare("SELECT 1"), a)
    assert.deepStrictEqual(prepare("SELECT 1"), a)
    assert.isTrue(Either.isLeft(prepare("SELECT 1;;")))
  })
})

describe("rqlite results", () => {
  it("makes rows objects keyed by column", () => {
    assert.deepStrictEqual(
      Protocol.toObjects({
        columns: ["id", "name"],
        values: [
          [1, "a"],
          [2, null],
        ],
      }),
      [
        { id: 1, name: "a" },
        { id: 2, name: null },
      ],
    )
    assert.deepStrictEqual(Protocol.toObjects({ rows_affected: 3 }), [])
    assert.deepStrictEqual(Protocol.toObjects({ columns: ["x"] }), [])
  })

  it("takes the one result of a statement, or its error", () => {
    assert.deepStrictEqual(right(Protocol.singleResult([{ rows_affected: 1 }])), { rows_affected: 1 })
    assert.strictEqual(
      left(Protocol.singleResult([{ error: "no such table: t" }])).message,
      "no such table: t",
    )
    assert.strictEqual(left(Protocol.singleResult([])).message, "rqlite returned no result for the statement")
  })
})

describe("rqlite atomic batches", () => {
  const insert = ["INSERT INTO t (k) VALUES (?)", ["a"]] as const
  const select = ["SELECT k FROM t", []] as const

  it("sends the statements as one array with the SELECT 1 sentinel last", () => {
    assert.deepStrictEqual(right(Protocol.atomicRequest([insert, select])), {
      body: '[["INSERT INTO t (k) VALUES (?)","a"],["SELECT k FROM t"],["SELECT 1"]]',
      read: false,
    })
    assert.deepStrictEqual(right(Protocol.atomicRequest([select, select])).read, true)
    assert.strictEqual(Protocol.atomicBody([]), '[["SELECT 1"]]')
  })

  it("refuses a batch with a statement rqlite must not get", () => {
    assert.strictEqual(
      left(Protocol.atomicRequest([insert, ["COMMIT", []]])).message,
      Protocol.noTransactions,
    )
    assert.match(left(Protocol.atomicRequest([["INSERT INTO t VALUES (?)", [Number.NaN]]])).message, /NaN/)
  })

  it("gives each statement's rows and rows changed when all ran, the sentinel's result dropped", () => {
    const results = right(
      Protocol.atomicOutcome(
        [
          { rows_affected: 1, last_insert_id: 7 },
          { columns: ["k"], values: [["a"]] },
          { columns: ["k"], values: [["b"]], rows_affected: 1 },
          { columns: ["1"], values: [[1]] },
        ],
        3,
      ),
    )
    assert.deepStrictEqual(results, [
      { rows: [], affected: 1 },
      { rows: [{ k: "a" }], affected: 1 },
      { rows: [{ k: "b" }], affected: 1 },
    ])
    const upper = (result: Protocol.RqliteResult) =>
      Protocol.toObjects(result).map((row) => ({ K: (row as { k: string }).k }))
    assert.deepStrictEqual(
      right(
        Protocol.atomicOutcome(
          [
            { columns: ["k"], values: [["a"]] },
            { columns: ["1"], values: [[1]] },
          ],
          1,
          upper,
        ),
      ),
      [{ rows: [{ K: "a" }], affected: 1 }],
    )
  })

  it("names the failing statement when rqlite stopped there (it rolled back)", () => {
    const error = left(
      Protocol.atomicOutcome([{ rows_affected: 1 }, { error: "CHECK constraint failed: v >= 0" }], 3),
    )
    assert.instanceOf(error, AtomicStatementError)
    const atomic = error as AtomicStatementError
    assert.strictEqual(atomic.index, 1)
    assert.strictEqual(atomic.cause.message, "CHECK constraint failed: v >= 0")
    assert.strictEqual(
      atomic.message,
      "statement 1 of an atomic batch failed: CHECK constraint failed: v >= 0",
    )
    // the first statement failing is index 0
    assert.strictEqual((left(Protocol.atomicOutcome([{ error: "x" }], 2)) as AtomicStatementError).index, 0)
  })

  it("says rqlite did not roll back when it ran past the failing statement", () => {
    const error = left(
      Protocol.atomicOutcome(
        [{ rows_affected: 1 }, { error: "CHECK constraint failed" }, { columns: ["1"], values: [[1]] }],
        2,
      ),
    )
    assert.notInstanceOf(error, AtomicStatementError)
    assert.strictEqual(error._tag, "SqlError")
    assert.strictEqual(
      error.message,
      "rqlite did not roll back the atomic batch: statement 1 failed (CHECK constraint failed) but the other " +
        "statements were committed. rqlite 8 ignores errors of statements that return rows (SELECT, RETURNING) " +
        "or fail to prepare inside a transaction; make the statement that is meant to fail a plain write",
    )
    assert.strictEqual((error.cause as SqlError).message, "CHECK constraint failed")
    // an error in the middle, with later statements run too
    assert.match(
      left(Protocol.atomicOutcome([{ error: "no such table: x" }, { rows_affected: 1 }, { columns: [] }], 2))
        .message,
      /^rqlite did not roll back the atomic batch: statement 0 failed \(no such table: x\)/,
    )
  })

  it("says rqlite did not roll back when the sentinel itself failed", () => {
    const error = left(Protocol.atomicOutcome([{ rows_affected: 1 }, { error: "interrupted" }], 1))
    assert.notInstanceOf(error, AtomicStatementError)
    assert.match(
      error.message,
      /^rqlite did not roll back the atomic batch: statement 1 failed \(interrupted\)/,
    )
  })

  it("fails when the number of results does not match", () => {
    assert.strictEqual(
      left(Protocol.atomicOutcome([{ rows_affected: 1 }], 2)).message,
      "rqlite returned 0 results for 2 statements",
    )
    assert.strictEqual(
      left(Protocol.atomicOutcome([{}, {}, {}, {}], 2)).message,
      "rqlite returned 3 results for 2 statements",
    )
  })
})

describe("rqlite read level per server version", () => {
  it("sends linearizable only to 9.1.1 or later, strong to everything else", () => {
    const table: ReadonlyArray<readonly [unknown, "linearizable" | "strong"]> = [
      ["8.26.0", "strong"],
      ["v8.26.8", "strong"],
      ["8.31.9", "strong"],
      // 8.32.0 to 9.1.0 take the level but read locally on /db/request (rqlite issue 2347)
      ["8.32.0", "strong"],
      ["v8.36.2", "strong"],
      ["8.43.0", "strong"],
      ["9.0.0", "strong"],
      ["9.1.0", "strong"],
      ["v9.1.0", "strong"],
      ["9.1.1", "linearizable"],
      ["v9.1.1", "linearizable"], // how rqlite's releases name themselves
      ["9.1.2", "linearizable"],
      ["9.2.0", "linearizable"],
      ["v9.10.0", "linearizable"],
      ["10.0.0", "linearizable"],
      ["v10.0.0", "linearizable"],
      // dev builds and versions that cannot be told apart
      ["8", "strong"],
      ["9", "strong"],
      ["v9.1", "strong"],
      ["unknown", "strong"],
      ["", "strong"],
      ["v9.1.1-rc1", "strong"],
      ["9.1.1-dirty", "strong"],
      ["version 9.1.1", "strong"],
      [undefined, "strong"],
      [null, "strong"],
      [911, "strong"],
    ]
    for (const [version, level] of table) {
      assert.strictEqual(Protocol.linearizableLevelFor(version), level, String(version))
    }
  })
})

describe("sorting rqlite's answers into node failures", () => {
  const origin = "http://127.0.0.1:4001"
  const failure = (status: number, body: string): NodeFailure => left(fromAnswer(2, origin, status, body))

  it("reads the results of a good answer", () => {
    assert.deepStrictEqual(right(fromAnswer(0, origin, 200, '{"results":[{"rows_affected":1},{}]}')), [
      { rows_affected: 1 },
      {},
    ])
    assert.deepStrictEqual(right(fromAnswer(0, origin, 200, '{"results":[]}')), [])
  })

  it("no leader, store not open, stale read: unavailable, safe to send elsewhere", () => {
    for (const [status, body, reason] of [
      [503, "leader not found\n", "answered HTTP 503: leader not found"],
      [503, "", "answered HTTP 503"],
      [200, '{"results":[],"error":"not leader"}', 'answered "not leader"'],
      [200, '{"error":"store not open"}', 'answered "store not open"'],
      [200, '{"error":"stale read"}', 'answered "stale read"'],
      [
        500,
        "node failed to process Request on remote node at 10.0.0.2:4002: pool get: dial tcp 10.0.0.2:4002: connect: connection refused",
        "answered HTTP 500: node failed to process Request on remote node at 10.0.0.2:4002: pool get: dial tcp 10.0.0.2:4002: connect: connection refused",
      ],
    ] as const) {
      const sorted = failure(status, body)
      assert.strictEqual(sorted.kind, "unavailable", body)
      assert.strictEqual(sorted.node, 2)
      assert.strictEqual(sorted.origin, origin)
      assert.strictEqual(sorted.reason, reason)
      assert.strictEqual(sorted.message, `rqlite at ${origin} ${reason}`)
      assert.isTrue(mayTryElsewhere(sorted))
      assert.isFalse(wasSent(sorted))
    }
  })

  it("leadership lost, EOF from the leader, 502/504: interrupted, a write may be applied", () => {
    for (const [status, body] of [
      [200, '{"error":"leadership lost while committing log"}'],
      [500, "node failed to process Request on remote node at 10.0.0.2:4002: read protobuf length: EOF"],
      [500, "context deadline exceeded"],
      [500, "raft is already shutdown"],
      [502, "Bad Gateway"],
      [504, ""],
    ] as const) {
      const sorted = failure(status, body)
      assert.strictEqual(sorted.kind, "interrupted", body)
      assert.isTrue(mayTryElsewhere(sorted))
      assert.isTrue(wasSent(sorted))
    }
  })

  it("credentials, permissions and errors of the request itself are final", () => {
    const unauthorized = failure(401, "unauthorized")
    assert.strictEqual(unauthorized.kind, "unauthorized")
    assert.strictEqual(unauthorized.message, `rqlite at ${origin} rejected the credentials (HTTP 401)`)
    assert.isFalse(mayTryElsewhere(unauthorized))
    const forbidden = failure(403, "")
    assert.strictEqual(forbidden.kind, "failed")
    assert.strictEqual(forbidden.message, `rqlite at ${origin}: permission denied for this user (HTTP 403)`)
    // rqlite's own error for the request, in its words
    const own = failure(200, '{"error":"invalid request"}')
    assert.strictEqual(own.kind, "failed")
    assert.strictEqual(own.message, "invalid request")
    const other = failure(400, "bad request body\n")
    assert.strictEqual(other.kind, "failed")
    assert.strictEqual(other.message, `rqlite at ${origin} answered HTTP 400: bad request body`)
    assert.isFalse(mayTryElsewhere(other))
  })

  it("keeps at most 300 characters of what rqlite said", () => {
    assert.strictEqual(failure(500, "x".repeat(1000)).reason, `answered HTTP 500: ${"x".repeat(300)}`)
  })

  it("a server that is not rqlite is final, and says so", () => {
    for (const body of ["<html>hello</html>", "{}", '{"results":"no"}', '{"results":[1]}', ""]) {
      const sorted = failure(200, body)
      assert.strictEqual(sorted.kind, "failed", body)
      assert.strictEqual(
        sorted.message,
        `the server at ${origin} does not answer like rqlite (HTTP 200 without rqlite's JSON); is it an rqlite node?`,
      )
    }
  })

  it("the /status answer: the version, none, or a failure", () => {
    assert.strictEqual(right(fromStatusAnswer(0, origin, 200, '{"build":{"version":"v9.1.1"}}')), "v9.1.1")
    assert.isUndefined(right(fromStatusAnswer(0, origin, 200, '{"build":{}}')))
    assert.isUndefined(right(fromStatusAnswer(0, origin, 200, "not json")))
    // e.g. a user without the "status" permission
    assert.isUndefined(right(fromStatusAnswer(0, origin, 403, "")))
    assert.strictEqual(left(fromStatusAnswer(0, origin, 401, "")).kind, "unauthorized")
    assert.strictEqual(left(fromStatusAnswer(0, origin, 503, "leader not found")).kind, "unavailable")
  })

  it("fromFailedAnswer names the node in every message but a 200's own error", () => {
    assert.strictEqual(
      fromFailedAnswer(0, origin, 503, " leader not found ").message,
      `rqlite at ${origin} answered HTTP 503: leader not found`,
    )
    assert.strictEqual(
      fromFailedAnswer(0, origin, 200, 'near "SELEC": syntax error').message,
      'near "SELEC": syntax error',
    )
  })
})

describe("sorting transport errors into node failures", () => {
  const origin = "http://127.0.0.1:4001"
  const timeout = Duration.millis(300)
  const coded = (code: string, message = `failed: ${code}`) => Object.assign(new Error(message), { code })

  it("errors before the request was sent: unreachable", () => {
    for (const code of [
      "ECONNREFUSED",
      "ENOTFOUND",
      "EHOSTUNREACH",
      "ENETUNREACH",
      "EAI_AGAIN",
      "UND_ERR_CONNECT_TIMEOUT",
    ]) {
      const cause = coded(code)
      const sorted = fromTransportError(1, origin, cause, timeout)
      assert.strictEqual(sorted.kind, "unreachable", code)
      assert.strictEqual(sorted.reason, `cannot connect (${code})`)
      assert.strictEqual(sorted.message, `cannot connect to ${origin} (${code})`)
      assert.strictEqual(sorted.cause, cause)
      assert.isFalse(wasSent(sorted))
    }
  })

  it("finds the code inside Node's AggregateError and in a cause", () => {
    const aggregate = Object.assign(
      new AggregateError([coded("ECONNREFUSED"), coded("ECONNREFUSED")], ""),
      {},
    )
    assert.strictEqual(errorCode(aggregate), "ECONNREFUSED")
    assert.strictEqual(fromTransportError(0, origin, aggregate, timeout).kind, "unreachable")
    const wrapped = new Error("fetch failed", { cause: coded("ECONNRESET") })
    assert.strictEqual(errorCode(wrapped), "ECONNRESET")
    assert.isUndefined(errorCode("a string"))
  })

  it("errors after the request was sent: interrupted, a timeout says how long it waited", () => {
    for (const code of [
      "ECONNRESET",
      "EPIPE",
      "ECONNABORTED",
      "ETIMEDOUT",
      "UND_ERR_SOCKET",
      "UND_ERR_CLOSED",
    ]) {
      const sorted = fromTransportError(0, origin, coded(code, "other side closed"), timeout)
      assert.strictEqual(sorted.kind, "interrupted", code)
      assert.strictEqual(sorted.reason, `dropped the connection (${code}: other side closed)`)
      assert.strictEqual(
        sorted.message,
        `rqlite at ${origin} dropped the connection (${code}: other side closed)`,
      )
      assert.isTrue(wasSent(sorted))
    }
    for (const code of ["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]) {
      const sorted = fromTransportError(0, origin, coded(code), timeout)
      assert.strictEqual(sorted.kind, "interrupted")
      assert.strictEqual(sorted.message, `rqlite at ${origin} timed out after 300ms`)
    }
  })

  it("anything else is final, in the error's own words", () => {
    const sorted = fromTransportError(0, origin, new TypeError("Invalid URL"), timeout)
    assert.strictEqual(sorted.kind, "failed")
    assert.strictEqual(sorted.message, `rqlite request to ${origin} failed: Invalid URL`)
    assert.isFalse(mayTryElsewhere(sorted))
    assert.strictEqual(
      fromTransportError(0, origin, "odd", timeout).message,
      `rqlite request to ${origin} failed: odd`,
    )
  })
})
