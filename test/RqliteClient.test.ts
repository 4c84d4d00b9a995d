import { randomBytes } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import { inspect } from "node:util"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import { inject } from "vitest"
import { AtomicStatementError } from "../src/internal/executor.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as RqliteClient from "../src/layers/RqliteClient.js"
import { Store } from "../src/Store.js"
import { spawnKv, ok as succeeded } from "./Cli.suite.js"

const url = inject("rqliteUrl")
if (url === undefined) {
  throw new Error('no "rqliteUrl": add "test/setup/rqlite.ts" to test.globalSetup in vitest.config.ts')
}

/** The server is shared by every test file and worker: each test gets its own table. */
const tableName = () => `t_${randomBytes(6).toString("hex")}`

const failureOf = <A>(exit: Exit.Exit<A, unknown>): unknown =>
  Exit.isFailure(exit) ? Cause.squash(exit.cause) : assert.fail("expected a failure")

/** A loopback port nobody listens on. */
const closedPort = () =>
  Effect.async<number>((resume) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resume(Effect.succeed(port)))
    })
  })

/** An HTTP server that records requests and answers with `respond`, or never when it returns undefined. */
const fakeServer = (respond: (body: string, url: string) => string | undefined) =>
  Effect.acquireRelease(
    Effect.async<{
      port: number
      requests: Array<{ url: string; headers: http.IncomingHttpHeaders; body: string }>
      server: http.Server
    }>((resume) => {
      const requests: Array<{ url: string; headers: http.IncomingHttpHeaders; body: string }> = []
      const server = http.createServer((req, res) => {
        let body = ""
        req.on("data", (chunk: Buffer) => {
          body += chunk.toString()
        })
        req.on("end", () => {
          requests.push({ url: req.url ?? "", headers: req.headers, body })
          const answer = respond(body, req.url ?? "")
          if (answer !== undefined) res.writeHead(200, { "content-type": "application/json" }).end(answer)
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ port: (server.address() as AddressInfo).port, requests, server })),
      )
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      }),
  )

/** What a fake node does with a request: answer, close the connection, or never answer. */
type Reply = { readonly status?: number; readonly body: string } | "drop" | "hang"

/** A fake rqlite node: `reply` decides per request; every request is recorded. */
const fakeNode = (reply: (request: { url: string; body: string }) => Reply) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; requests: Array<{ url: string; body: string }>; server: http.Server }>(
      (resume) => {
        const requests: Array<{ url: string; body: string }> = []
        const server = http.createServer((req, res) => {
          let body = ""
          req.on("data", (chunk: Buffer) => {
            body += chunk.toString()
          })
          req.on("end", () => {
            const request = { url: req.url ?? "", body }
            requests.push(request)
            const answer = reply(request)
            if (answer === "drop") req.socket.destroy()
            else if (answer !== "hang")
              res.writeHead(answer.status ?? 200, { "content-type": "application/json" }).end(answer.body)
          })
        })
        server.listen(0, "127.0.0.1", () =>
          resume(Effect.succeed({ port: (server.address() as AddressInfo).port, requests, server })),
        )
      },
    ),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      }),
  )

const ok = (values: ReadonlyArray<ReadonlyArray<unknown>> = [[1]]): Reply => ({
  body: JSON.stringify({ results: [{ columns: ["x"], values }] }),
})
const written: Reply = {
  body: JSON.stringify({ results: [{ rows_affected: 1 }, { columns: ["1"], values: [[1]] }] }),
}
const noLeader: Reply = { status: 503, body: "leader not found\n" }

/** A client of `ports` (weak reads: no status request) that runs `f`, with a short failover. */
const onNodes = <A, E>(
  ports: ReadonlyArray<number>,
  f: (client: RqliteClient.RqliteClient) => Effect.Effect<A, E>,
  failoverTimeout: Duration.DurationInput = "5 seconds",
) =>
  Effect.flatMap(RqliteClient.RqliteClient, f).pipe(
    Effect.provide(
      RqliteClient.layer({
        url: `http://admin:Fa1l0ver-secret@${ports.map((port) => `127.0.0.1:${port}`).join(",")}?level=weak`,
        failoverTimeout,
      }),
    ),
  )

const select = (client: RqliteClient.RqliteClient) => client`SELECT 1 AS x`
const insert = (client: RqliteClient.RqliteClient) =>
  client.executeAtomic([client`INSERT INTO t (x) VALUES (${1})`])

describe("RqliteClient failover between nodes", () => {
  it.live("moves past a node that refuses the connection, and stays on the one that answered", () =>
    Effect.gen(function* () {
      const dead = yield* closedPort()
      const node = yield* fakeNode((request) => (request.url.includes("transaction") ? written : ok()))
      yield* onNodes([dead, node.port], (client) =>
        Effect.gen(function* () {
          assert.deepStrictEqual(yield* select(client), [{ x: 1 }])
          assert.deepStrictEqual(yield* insert(client), [{ rows: [], affected: 1 }])
          assert.deepStrictEqual(yield* select(client), [{ x: 1 }])
        }),
      )
      assert.strictEqual(node.requests.length, 3)
    }).pipe(Effect.scoped),
  )

  it.live("waits with backoff while the nodes have no leader, then sends the write once", () =>
    Effect.gen(function* () {
      let refusals = 4
      const answer = (request: { url: string }): Reply =>
        refusals-- > 0 ? noLeader : request.url.includes("transaction") ? written : ok()
      const a = yield* fakeNode(answer)
      const b = yield* fakeNode(answer)
      const result = yield* onNodes([a.port, b.port], insert)
      assert.deepStrictEqual(result, [{ rows: [], affected: 1 }])
      const writes = [...a.requests, ...b.requests]
      // four refusals, then the one write: it moved between both nodes
      assert.strictEqual(writes.length, 5)
      assert.isAbove(a.requests.length, 0)
      assert.isAbove(b.requests.length, 0)
    }).pipe(Effect.scoped),
  )

  it.live(
    "a write whose connection dropped after it was sent is not sent again: its outcome is unknown",
    () =>
      Effect.gen(function* () {
        const a = yield* fakeNode(() => "drop")
        const b = yield* fakeNode((request) => (request.url.includes("transaction") ? written : ok()))
        const error = yield* Effect.flip(onNodes([a.port, b.port], insert))
        assert.isTrue(RqliteClient.isOutcomeUnknown(error))
        assert.match(
          error.message,
          /^the outcome of the write is unknown: http:\/\/127\.0\.0\.1:\d+ dropped the connection/,
        )
        assert.match(error.message, /may or may not have been applied/)
        assert.notInclude(error.message, "Fa1l0ver-secret")
        assert.strictEqual(a.requests.length, 1)
        assert.strictEqual(b.requests.length, 0)
        // the same failure on a read: it is simply asked of the next node
        assert.deepStrictEqual(yield* onNodes([a.port, b.port], select), [{ x: 1 }])
        assert.strictEqual(b.requests.length, 1)
      }).pipe(Effect.scoped),
  )

  it.live("a write that timed out is not sent again; a read that timed out is", () =>
    Effect.gen(function* () {
      const a = yield* fakeNode(() => "hang")
      const b = yield* fakeNode((request) => (request.url.includes("transaction") ? written : ok()))
      const client = (f: (client: RqliteClient.RqliteClient) => Effect.Effect<unknown, unknown>) =>
        Effect.flatMap(RqliteClient.RqliteClient, f).pipe(
          Effect.provide(
            RqliteClient.layer({
              url: `http://127.0.0.1:${a.port},127.0.0.1:${b.port}?level=weak`,
              timeout: "300 millis",
            }),
          ),
        )
      const error = yield* Effect.flip(client(insert))
      assert.isTrue(RqliteClient.isOutcomeUnknown(error))
      assert.match(String((error as Error).message), /timed out after 300ms/)
      assert.strictEqual(b.requests.length, 0)
      yield* client(select)
      assert.strictEqual(b.requests.length, 1)
    }).pipe(Effect.scoped),
  )

  it.live(
    "rqlite's own answers: 'not leader' is sent elsewhere, 'leadership lost' is an unknown outcome",
    () =>
      Effect.gen(function* () {
        let said = "not leader"
        const a = yield* fakeNode(() => ({ body: JSON.stringify({ results: [], error: said }) }))
        const b = yield* fakeNode((request) => (request.url.includes("transaction") ? written : ok()))
        assert.deepStrictEqual(yield* onNodes([a.port, b.port], insert), [{ rows: [], affected: 1 }])
        assert.strictEqual(b.requests.length, 1)
        said = "store not open"
        yield* onNodes([a.port, b.port], insert)
        assert.strictEqual(b.requests.length, 2)
        said = "leadership lost while committing log"
        const lost = yield* Effect.flip(onNodes([a.port, b.port], insert))
        assert.isTrue(RqliteClient.isOutcomeUnknown(lost))
        assert.include(lost.message, "leadership lost while committing log")
        said =
          "node failed to process Request on remote node at 127.0.0.1:1: pool get: dial tcp 127.0.0.1:1: connect: connection refused"
        yield* onNodes([a.port, b.port], insert)
        said = "node failed to process Request on remote node at 127.0.0.1:1: read protobuf length: EOF"
        assert.isTrue(RqliteClient.isOutcomeUnknown(yield* Effect.flip(onNodes([a.port, b.port], insert))))
        assert.strictEqual(b.requests.length, 3)
      }).pipe(Effect.scoped),
  )

  it.live("gives up at the deadline, naming every node and what it said, without the password", () =>
    Effect.gen(function* () {
      const a = yield* fakeNode(() => noLeader)
      const dead = yield* closedPort()
      const started = Date.now()
      const error = yield* Effect.flip(onNodes([a.port, dead], select, "400 millis"))
      const elapsed = Date.now() - started
      assert.isAtLeast(elapsed, 400)
      assert.isBelow(elapsed, 5000)
      assert.strictEqual(
        error.message,
        `no rqlite node could serve the request within 400ms: http://127.0.0.1:${a.port} (answered HTTP 503: leader not found), ` +
          `http://127.0.0.1:${dead} (cannot connect (ECONNREFUSED))`,
      )
      assert.isAbove(a.requests.length, 1)
      const store = yield* Effect.flip(
        Effect.flatMap(Store, (store) => store.count()).pipe(
          Effect.provide(
            KvRqlite.layer({
              url: `http://admin:Fa1l0ver-secret@127.0.0.1:${a.port},127.0.0.1:${dead}?level=weak`,
              failoverTimeout: "300 millis",
            }),
          ),
        ),
      )
      assert.strictEqual(store._tag, "StoreError")
      if (store._tag === "StoreError") assert.strictEqual(store.reason, "connect")
      assert.notInclude(inspect(store, { depth: 10 }), "Fa1l0ver-secret")
    }).pipe(Effect.scoped),
  )

  it.live("fails at once when no node listens, naming each", () =>
    Effect.gen(function* () {
      const [a, b] = [yield* closedPort(), yield* closedPort()]
      const started = Date.now()
      const error = yield* Effect.flip(onNodes([a, b], select))
      assert.isBelow(Date.now() - started, 2000)
      assert.strictEqual(
        error.message,
        `cannot connect to any rqlite node: http://127.0.0.1:${a} (cannot connect (ECONNREFUSED)), ` +
          `http://127.0.0.1:${b} (cannot connect (ECONNREFUSED))`,
      )
    }),
  )

  it.live("a server that is not rqlite is a clear error, not a failover", () =>
    Effect.gen(function* () {
      const web = yield* fakeNode(() => ({ body: "<html>hello</html>" }))
      const error = yield* Effect.flip(onNodes([web.port], select))
      assert.match(error.message, /does not answer like rqlite .*is it an rqlite node\?/)
      assert.strictEqual(web.requests.length, 1)
    }).pipe(Effect.scoped),
  )

  it.live("asks the nodes in turn for their version when the first is down", () =>
    Effect.gen(function* () {
      const dead = yield* closedPort()
      const node = yield* fakeNode((request) =>
        request.url === "/status" ? { body: JSON.stringify({ build: { version: "v9.1.1" } }) } : ok(),
      )
      const level = yield* Effect.map(RqliteClient.RqliteClient, (client) => client.readLevel).pipe(
        Effect.provide(
          RqliteClient.layer({ urls: [`http://127.0.0.1:${dead}`, `http://127.0.0.1:${node.port}`] }),
        ),
      )
      assert.strictEqual(level, "linearizable")
    }).pipe(Effect.scoped),
  )
})

describe("kv with a host list", () => {
  it.live("works through the node that answers when the first one is down", () =>
    Effect.gen(function* () {
      const dead = yield* closedPort()
      const live = new URL(url)
      const connection = `http://${live.username}:${live.password}@127.0.0.1:${dead},${live.host}`
      const key = `hosts/${randomBytes(4).toString("hex")}`
      const put = yield* Effect.promise(() =>
        spawnKv(["put", key, "--type", "rqlite", "--connection", connection], { input: '{"via": "list"}' }),
      )
      succeeded(put)
      const got = yield* Effect.promise(() =>
        spawnKv(["get", "key", key, "--type", "rqlite", "--connection", connection]),
      )
      assert.deepStrictEqual(JSON.parse(succeeded(got)), { via: "list" })
    }),
  )
})

layer(RqliteClient.layer({ url }))("RqliteClient against rqlited", (it) => {
  it.effect("creates, inserts with parameters and selects", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const t = tableName()
      yield* sql`CREATE TABLE ${sql(t)} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER, f REAL, flag INTEGER, note TEXT)`
      yield* sql`INSERT INTO ${sql(t)} ${sql.insert({ name: "a", n: 1, f: 1.5, flag: true, note: null })}`
      yield* sql`INSERT INTO ${sql(t)} (name, n, f, flag, note) VALUES (${"b"}, ${2n ** 53n + 1n}, ${2}, ${false}, ${"it's"})`
      const rows = yield* sql<{
        id: number
        name: string
        n: number
        f: number
        flag: number
        note: string | null
      }>`
        SELECT id, name, n, f, flag, note FROM ${sql(t)} WHERE name IN ${sql.in(["a", "b"])} ORDER BY id`
      assert.deepStrictEqual(rows, [
        { id: 1, name: "a", n: 1, f: 1.5, flag: 1, note: null },
        // beyond 2^53 JSON numbers lose precision: integers come back as JS numbers
        { id: 2, name: "b", n: 2 ** 53, f: 2, flag: 0, note: "it's" },
      ])
      assert.strictEqual(typeof rows[0]!.id, "number")
      const values = yield* sql`SELECT name, n FROM ${sql(t)} WHERE id = ${1}`.values
      assert.deepStrictEqual(values, [["a", 1]])
      assert.deepStrictEqual(yield* sql`SELECT * FROM ${sql(t)} WHERE id = ${99}`, [])
      const raw = yield* sql`UPDATE ${sql(t)} SET n = n + 1`.raw
      assert.deepStrictEqual(raw, { last_insert_id: 2, rows_affected: 2 })
    }),
  )

  it.effect("returns rows from INSERT, UPDATE and DELETE ... RETURNING", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const t = tableName()
      yield* sql`CREATE TABLE ${sql(t)} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`
      const inserted = yield* sql`INSERT INTO ${sql(t)} (v) VALUES (${10}), (${20}) RETURNING id, v`
      assert.deepStrictEqual(inserted, [
        { id: 1, v: 10 },
        { id: 2, v: 20 },
      ])
      const updated = yield* sql`UPDATE ${sql(t)} SET v = v + 1 WHERE id = ${2} RETURNING v`
      assert.deepStrictEqual(updated, [{ v: 21 }])
      const none = yield* sql`UPDATE ${sql(t)} SET v = 0 WHERE id = ${3} RETURNING v`
      assert.deepStrictEqual(none, [])
      const deleted = yield* sql`DELETE FROM ${sql(t)} WHERE id = ${1} RETURNING *`
      assert.deepStrictEqual(deleted, [{ id: 1, v: 10 }])
    }),
  )

  it.effect("carries rqlite's message for a failing statement", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(sql`SELECT * FROM ${sql(tableName())}`)
      assert.strictEqual(error._tag, "SqlError")
      assert.match(error.message, /no such table/)
    }),
  )

  it.effect("executeAtomic commits every statement and returns the rows of each", () =>
    Effect.gen(function* () {
      const client = yield* RqliteClient.RqliteClient
      const sql = client
      const t = tableName()
      yield* sql`CREATE TABLE ${sql(t)} (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`
      const results = yield* client.executeAtomic([
        sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"a"}, ${1})`,
        sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"b"}, ${2}) RETURNING k`,
        sql`UPDATE ${sql(t)} SET v = v * 10 WHERE k = ${"a"} RETURNING v`,
        sql`SELECT count(*) AS n FROM ${sql(t)}`,
      ])
      assert.deepStrictEqual(results, [
        { rows: [], affected: 1 },
        { rows: [{ k: "b" }], affected: 1 },
        { rows: [{ v: 10 }], affected: 1 },
        { rows: [{ n: 2 }], affected: 1 },
      ])
      assert.deepStrictEqual(yield* client.executeAtomic([]), [])
      assert.deepStrictEqual(yield* sql`SELECT k, v FROM ${sql(t)} ORDER BY k`, [
        { k: "a", v: 10 },
        { k: "b", v: 2 },
      ])
    }),
  )

  it.effect("executeAtomic rolls back every statement when a CHECK fails and names its index", () =>
    Effect.gen(function* () {
      const client = yield* RqliteClient.RqliteClient
      const sql = client
      const t = tableName()
      yield* sql`CREATE TABLE ${sql(t)} (k TEXT PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))`
      yield* sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"kept"}, ${1})`
      const error = yield* Effect.flip(
        client.executeAtomic([
          sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"a"}, ${1})`,
          sql`UPDATE ${sql(t)} SET v = v + 1 WHERE k = ${"kept"}`,
          sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"b"}, ${-1})`,
          sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"c"}, ${3})`,
        ]),
      )
      assert.instanceOf(error, AtomicStatementError)
      assert.strictEqual((error as AtomicStatementError).index, 2)
      assert.match(error.message, /^statement 2 of an atomic batch failed: CHECK constraint failed/)
      assert.deepStrictEqual(yield* sql`SELECT k, v FROM ${sql(t)} ORDER BY k`, [{ k: "kept", v: 1 }])
    }),
  )

  it.effect("executeAtomic rolls back when a trigger raises", () =>
    Effect.gen(function* () {
      const client = yield* RqliteClient.RqliteClient
      const sql = client
      const t = tableName()
      yield* sql`CREATE TABLE ${sql(t)} (k TEXT PRIMARY KEY, version INTEGER NOT NULL)`
      yield* sql.unsafe(`CREATE TRIGGER ${t}_guard BEFORE UPDATE ON ${t}
        WHEN NEW.version <> OLD.version + 1 BEGIN SELECT RAISE(ABORT, 'version mismatch'); END`)
      yield* sql`INSERT INTO ${sql(t)} (k, version) VALUES (${"x"}, ${1})`
      const error = yield* Effect.flip(
        client.executeAtomic([
          sql`INSERT INTO ${sql(t)} (k, version) VALUES (${"y"}, ${1})`,
          sql`UPDATE ${sql(t)} SET version = ${5} WHERE k = ${"x"}`,
        ]),
      )
      assert.instanceOf(error, AtomicStatementError)
      assert.strictEqual((error as AtomicStatementError).index, 1)
      assert.strictEqual((error as AtomicStatementError).cause.message, "version mismatch")
      assert.deepStrictEqual(yield* sql`SELECT k FROM ${sql(t)}`, [{ k: "x" }])
    }),
  )

  it.effect("executeAtomic reports it when rqlite commits around a failing RETURNING statement", () =>
    Effect.gen(function* () {
      const client = yield* RqliteClient.RqliteClient
      const sql = client
      const t = tableName()
      yield* sql`CREATE TABLE ${sql(t)} (k TEXT PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))`
      const error = yield* Effect.flip(
        client.executeAtomic([
          sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"a"}, ${1})`,
          sql`INSERT INTO ${sql(t)} (k, v) VALUES (${"b"}, ${-1}) RETURNING k`,
        ]),
      )
      const rows = yield* sql`SELECT k FROM ${sql(t)}`
      if (error instanceof AtomicStatementError) {
        // a server that rolls back here (fixed upstream as rqlite issue #2530)
        assert.strictEqual(error.index, 1)
        assert.deepStrictEqual(rows, [])
      } else {
        // rqlite 8: the batch was committed without the failing statement, and we say so
        assert.strictEqual(error._tag, "SqlError")
        assert.match(error.message, /did not roll back.*statement 1 failed \(CHECK constraint failed/)
        assert.deepStrictEqual(rows, [{ k: "a" }])
      }
    }),
  )

  it.effect("refuses interactive transactions", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(sql.withTransaction(sql`SELECT 1`))
      assert.strictEqual(error.message, "rqlite has no interactive transactions; use executeAtomic")
      const begin = yield* Effect.flip(sql`BEGIN IMMEDIATE`)
      assert.strictEqual(begin.message, "rqlite has no interactive transactions; use executeAtomic")
    }),
  )

  it.effect("reads at every consistency level", () =>
    Effect.gen(function* () {
      for (const level of ["none", "weak", "strong", "linearizable"] as const) {
        const rows = yield* Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          return yield* sql`SELECT ${level} AS level`
        }).pipe(Effect.provide(RqliteClient.layer({ url, level })))
        assert.deepStrictEqual(rows, [{ level }])
      }
    }),
  )
})

describe("RqliteClient failures", () => {
  it.effect("a wrong password is a SqlError that does not contain it", () =>
    Effect.gen(function* () {
      const wrong = new URL(url)
      wrong.password = "wrong-pass-123"
      const exit = yield* Effect.exit(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(
          Effect.provide(RqliteClient.layer({ url: wrong.toString() })),
        ),
      )
      const error = failureOf(exit) as SqlError
      assert.strictEqual(error._tag, "SqlError")
      assert.match(error.message, /rejected the credentials \(HTTP 401\)/)
      for (const text of [
        error.message,
        inspect(error, { depth: 10 }),
        Cause.pretty((exit as Exit.Failure<never, SqlError>).cause),
      ]) {
        assert.notInclude(text, "wrong-pass-123")
      }
    }),
  )

  it.live('a closed port fails fast with "cannot connect"', () =>
    Effect.gen(function* () {
      const port = yield* closedPort()
      const started = Date.now()
      const exit = yield* Effect.exit(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(
          Effect.provide(RqliteClient.layer({ url: `http://admin:hunter2@127.0.0.1:${port}` })),
        ),
      )
      const error = failureOf(exit) as SqlError
      assert.isBelow(Date.now() - started, 2000)
      assert.strictEqual(error._tag, "SqlError")
      assert.strictEqual(error.message, `cannot connect to http://127.0.0.1:${port} (ECONNREFUSED)`)
      assert.notInclude(Cause.pretty((exit as Exit.Failure<never, SqlError>).cause), "hunter2")
    }),
  )

  it.live("a server that does not answer times out", () =>
    Effect.gen(function* () {
      const { port } = yield* fakeServer(() => undefined)
      const error = yield* Effect.flip(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`).pipe(
          Effect.provide(
            RqliteClient.layer({
              url: `http://127.0.0.1:${port}`,
              level: "weak",
              timeout: "200 millis",
              failoverTimeout: "100 millis",
            }),
          ),
        ),
      )
      assert.match(error.message, /within 100ms: http:\/\/127\.0\.0\.1:\d+ \(timed out after 200ms\)/)
    }).pipe(Effect.scoped),
  )

  it.live("sends one JSON statement to /db/request with basic auth and the level", () =>
    Effect.gen(function* () {
      const server = yield* fakeServer((_, url) =>
        JSON.stringify(
          url === "/status"
            ? { build: { version: "v9.2.0" } }
            : { results: [{ columns: ["x"], values: [[1]] }] },
        ),
      )
      const rows = yield* Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql`SELECT ${"a"}, ${2}, ${null}`,
      ).pipe(
        Effect.provide(
          RqliteClient.layer({ url: `http://127.0.0.1:${server.port}/?user=u&password=p%40ss&freshness=1s` }),
        ),
      )
      assert.deepStrictEqual(rows, [{ x: 1 }])
      const [status, request] = server.requests
      assert.strictEqual(status!.url, "/status")
      assert.strictEqual(request!.url, "/db/request?freshness=1s&level=linearizable")
      assert.strictEqual(request!.headers.authorization, `Basic ${Buffer.from("u:p@ss").toString("base64")}`)
      assert.strictEqual(request!.body, '[["SELECT ?, ?, ?","a",2,null]]')
    }).pipe(Effect.scoped),
  )

  it.live("linearizable reads are sent as strong to servers before 9.1.1 or of unknown version", () =>
    Effect.gen(function* () {
      // 8.32.0 to 9.1.0 take `linearizable` but read locally on /db/request (rqlite issue 2347)
      for (const version of ["8", "v8.31.9", "v8.32.0", "v8.36.2", "v9.1.0", undefined]) {
        const server = yield* fakeServer((_, url) =>
          JSON.stringify(
            url === "/status" ? { build: { version } } : { results: [{ columns: ["x"], values: [[1]] }] },
          ),
        )
        yield* Effect.gen(function* () {
          const client = yield* RqliteClient.RqliteClient
          assert.strictEqual(client.config.level, "linearizable")
          assert.strictEqual(client.readLevel, "strong")
          yield* client`SELECT 1`
        }).pipe(Effect.provide(RqliteClient.layer({ url: `http://127.0.0.1:${server.port}` })))
        assert.strictEqual(server.requests[1]!.url, "/db/request?level=strong")
      }
    }).pipe(Effect.scoped),
  )

  it.live("refuses statements that would hang rqlited, before sending them", () =>
    Effect.gen(function* () {
      const server = yield* fakeServer(() => JSON.stringify({ results: [{}] }))
      const live = RqliteClient.layer({ url: `http://127.0.0.1:${server.port}`, level: "weak" })
      for (const bad of ["", "  \n", ";", "SELECT 1;;", "SELECT 1; -- done", "/* only a comment */"]) {
        const error = yield* Effect.flip(
          Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(bad)).pipe(Effect.provide(live)),
        )
        assert.match(error.message, /empty SQL statement/, JSON.stringify(bad))
      }
      for (const good of [
        "SELECT 1",
        "SELECT 1;  ",
        "-- why\nSELECT ';;' /* x */",
        "SELECT 'it''s; -- not a comment'",
      ]) {
        yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(good)).pipe(Effect.provide(live))
      }
      assert.strictEqual(server.requests.length, 4)
    }).pipe(Effect.scoped),
  )
})

describe("RqliteClient.parseUrl", () => {
  it("reads credentials from the userinfo", () => {
    const config = Either.getOrThrow(RqliteClient.parseUrl("http://admin:s%3Acret@127.0.0.1:4001/"))
    assert.deepStrictEqual(config.nodes, ["http://127.0.0.1:4001"])
    assert.strictEqual(config.username, "admin")
    assert.strictEqual(Redacted.value(config.password!), "s:cret")
    assert.strictEqual(config.level, undefined)
  })

  it("reads credentials and level from the query and keeps other parameters", () => {
    const config = Either.getOrThrow(
      RqliteClient.parseUrl(
        Redacted.make("https://db.local:4001?user=admin&password=secret&level=strong&freshness=1s"),
      ),
    )
    assert.deepStrictEqual(config.nodes, ["https://db.local:4001"])
    assert.strictEqual(config.params.toString(), "freshness=1s")
    assert.strictEqual(config.username, "admin")
    assert.strictEqual(Redacted.value(config.password!), "secret")
    assert.strictEqual(config.level, "strong")
  })

  it("rejects bad URLs and levels without repeating the password", () => {
    for (const [input, message] of [
      ["http://admin:secret@host:notaport", /invalid rqlite URL/],
      ["postgres://admin:secret@host:5432", /scheme must be http or https/],
      ["http://admin:secret@host:4001?level=eventual", /invalid rqlite read consistency level "eventual"/],
    ] as const) {
      const error = Either.flip(RqliteClient.parseUrl(input)).pipe(Either.getOrThrow)
      assert.match(error.message, message)
      assert.notInclude(error.message, "secret")
    }
  })

  it("reads a cluster as a host list or as urls, one node each", () => {
    const list = Either.getOrThrow(
      RqliteClient.parseUrl("http://admin:secret@10.0.0.1:4001, 10.0.0.2:4001,10.0.0.3:4001/?level=weak"),
    )
    assert.deepStrictEqual(list.nodes, [
      "http://10.0.0.1:4001",
      "http://10.0.0.2:4001",
      "http://10.0.0.3:4001",
    ])
    assert.strictEqual(list.level, "weak")
    const urls = Either.getOrThrow(
      RqliteClient.parseConfig({
        urls: [
          "http://admin:secret@10.0.0.1:4001?level=weak",
          "http://10.0.0.2:4001",
          "https://10.0.0.3:4443",
        ],
      }),
    )
    assert.deepStrictEqual(urls.nodes, [
      "http://10.0.0.1:4001",
      "http://10.0.0.2:4001",
      "https://10.0.0.3:4443",
    ])
    assert.strictEqual(urls.username, "admin")
    assert.strictEqual(Redacted.value(urls.password!), "secret")
    assert.strictEqual(urls.level, "weak")
    for (const [config, message] of [
      [{ urls: ["http://a:secret@h1:4001", "http://a:other@h2:4001"] }, /disagree on the password/],
      [{ urls: ["http://h1:4001?level=weak", "http://h2:4001?level=none"] }, /disagree on the level/],
      [{ url: "http://h1:4001", urls: ["http://h2:4001"] }, /either url or urls/],
      [{ urls: [] }, /give url or urls/],
      [{ urls: ["http://h1:4001", "ftp://secret@h2"] }, /scheme must be http or https/],
    ] as const) {
      const error = Either.flip(RqliteClient.parseConfig(config)).pipe(Either.getOrThrow)
      assert.match(error.message, message)
      assert.notInclude(error.message, "secret")
    }
  })

  it.effect("keeps the password redacted in the client's config", () =>
    Effect.gen(function* () {
      const client = yield* RqliteClient.RqliteClient
      assert.deepStrictEqual(client.config.nodes, ["http://127.0.0.1:4001"])
      assert.strictEqual(client.config.level, "weak")
      assert.strictEqual(client.config.username, "admin")
      for (const text of [
        JSON.stringify(client.config),
        inspect(client.config),
        String(client.config.password),
      ]) {
        assert.notInclude(text, "secret")
      }
      assert.include(JSON.stringify(client.config), "<redacted>")
    }).pipe(Effect.provide(RqliteClient.layer({ url: "http://admin:secret@127.0.0.1:4001?level=weak" }))),
  )

  it.effect("explicit options override the URL", () =>
    Effect.gen(function* () {
      const client = yield* RqliteClient.RqliteClient
      assert.strictEqual(client.config.level, "none")
      assert.strictEqual(client.config.username, "other")
      assert.strictEqual(Redacted.value(client.config.password!), "pw")
    }).pipe(
      Effect.provide(
        RqliteClient.layer({
          url: "http://admin:secret@127.0.0.1:4001?level=weak",
          level: "none",
          username: "other",
          password: Redacted.make("pw"),
        }),
      ),
    ),
  )
})
