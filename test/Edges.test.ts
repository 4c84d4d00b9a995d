/**
 * Bad (or merely big) input at the edges, on every backend: values of several MiB, 10,000-key
 * `getBatch` and `mutateAll`, deeply nested JSON, keys and values with NUL or lone
 * surrogates, wrong credentials and a server that is not the database. Each is a success or
 * one clear typed error; after an error nothing was written and the same store keeps working.
 * The command line gives the same answers as one `kv: ...` line.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { inspect } from "node:util"
import { assert, describe, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { afterAll, beforeAll, expect, it } from "vitest"
import { maxDepth } from "../src/Arguments.js"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Mutation, Store } from "../src/Store.js"
import { fails, ok, spawnKv } from "./Cli.suite.js"
import { createScratchDatabase, type ScratchDatabase } from "./support/postgres.js"
import { type RqliteServer, startRqlite } from "./support/rqlite.js"
import { layerOnScratch } from "./support/scratch.js"

/** An array nested `depth` deep: `[[[...]]]`. */
const nested = (depth: number): unknown => {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = [value]
  return value
}

/** An object nested `depth` deep: `{"a":{"a":...}}`. */
const nestedObject = (depth: number): unknown => {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = { a: value }
  return value
}

const MiB = 1024 * 1024

/** The store's observable state: the number of keys and the stream position. */
const snapshot = Effect.flatMap(Store, (store) => Effect.all([store.count(), store.streamSeq()]))

/** `attempt` fails with an InvalidArgumentError and changes nothing. */
const refused = <A, E extends { readonly _tag: string }, R>(attempt: Effect.Effect<A, E, R>, what: string) =>
  Effect.gen(function* () {
    const before = yield* snapshot
    const result = yield* Effect.either(attempt)
    assert.isTrue(Either.isLeft(result), `${what}: expected a refusal`)
    if (Either.isLeft(result)) {
      assert.strictEqual(result.left._tag, "InvalidArgumentError", `${what}: ${String(result.left)}`)
      assert.isAbove((result.left as unknown as Error).message.length, 10, what)
    }
    assert.deepStrictEqual(yield* snapshot, before, `${what} changed the database`)
  })

const edgeSuite = (name: string, backend: Layer.Layer<Store, unknown>) =>
  layer(backend, { timeout: "3 minutes" })(name, (it) => {
    it.effect("10,000-key mutateAll and getBatch; a 10,000-mutation batch that fails writes nothing", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const keys = Array.from({ length: 10_000 }, (_, i) => `many/${String(i).padStart(5, "0")}`)
        const counts = yield* store.mutateAll(keys.map((key, i) => Mutation.put(key, 0, i)))
        assert.strictEqual(counts.length, keys.length)
        assert.isTrue(counts.every((n) => n === 1))
        const found = yield* store.getBatch([...keys, "many/missing"])
        assert.strictEqual(found.size, keys.length)
        assert.strictEqual(found.get("many/09999")?.value, 9999)
        const before = yield* snapshot
        const error = yield* Effect.flip(
          store.mutateAll([
            ...keys.map((key) => Mutation.put(key, 1, "changed")),
            Mutation.put("many/00000", 1, 0),
          ]),
        )
        assert.strictEqual(error._tag, "VersionMismatchError")
        assert.deepStrictEqual(yield* snapshot, before)
        assert.strictEqual(Option.getOrThrow(yield* store.get("many/05000")).value, 5000)
        assert.strictEqual(yield* store.deletePrefix("many/"), keys.length)
      }),
    )

    it.effect(`JSON nested ${maxDepth} deep is stored; deeper is refused, however deep`, () =>
      Effect.gen(function* () {
        const store = yield* Store
        assert.deepStrictEqual((yield* store.put("deep/ok", -1, nested(maxDepth))).value, nested(maxDepth))
        assert.deepStrictEqual(
          (yield* store.patch("deep/patch", -1, nestedObject(maxDepth))).value,
          nestedObject(maxDepth),
        )
        for (const depth of [maxDepth + 1, 10_000, 1_000_000]) {
          yield* refused(store.put("deep/bad", -1, nested(depth)), `put nested ${depth}`)
          yield* refused(store.patch("deep/bad", -1, nestedObject(depth)), `patch nested ${depth}`)
          yield* refused(
            store.mutateAll([Mutation.put("deep/fine", -1, 1), Mutation.put("deep/bad", -1, nested(depth))]),
            `mutateAll nested ${depth}`,
          )
        }
        assert.isTrue(Option.isNone(yield* store.get("deep/fine")))
      }),
    )

    it.effect("keys and values with NUL or lone surrogates are refused before anything is written", () =>
      Effect.gen(function* () {
        const store = yield* Store
        for (const key of ["nul/\u0000", "\u0000", "lone/\ud800", "lone/\udfff/x", "lone/a\ud83d"]) {
          const shown = JSON.stringify(key)
          yield* refused(store.put(key, -1, 1), `put ${shown}`)
          yield* refused(store.patch(key, -1, { a: 1 }), `patch ${shown}`)
          yield* refused(store.get(key), `get ${shown}`)
          yield* refused(store.getBatch(["fine", key]), `getBatch ${shown}`)
          yield* refused(store.delete("fine", key), `delete ${shown}`)
          yield* refused(store.getPrefix(key), `getPrefix ${shown}`)
          yield* refused(
            store.mutateAll([Mutation.put("fine", -1, 1), Mutation.put(key, -1, 1)]),
            `mutateAll ${shown}`,
          )
        }
        for (const value of ["a\u0000b", "\ud800", { "k\u0000": 1 }, { k: ["\udc00"] }, { "\ud83d": true }]) {
          const shown = inspect(value)
          yield* refused(store.put("values/bad", -1, value), `put value ${shown}`)
          yield* refused(store.mutateAll([Mutation.put("values/bad", -1, value)]), `mutateAll value ${shown}`)
          if (typeof value === "object")
            yield* refused(store.patch("values/bad", -1, value), `patch ${shown}`)
        }
        // a well-formed pair is fine
        assert.strictEqual((yield* store.put("emoji/😀", -1, "😀")).value, "😀")
      }),
    )

    // last: on rqlite a range delete next to multi-MiB rows is slow (see the README)
    it.effect("values of several MiB are stored and read back whole", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const text = "x".repeat(5 * MiB)
        const rows = Array.from({ length: 40_000 }, (_, i) => ({
          i,
          name: `row ${i}`,
          tags: ["a", "ü", "😀"],
        }))
        assert.strictEqual((yield* store.put("big/text", -1, text)).version, 1)
        yield* store.put("big/rows", -1, rows)
        assert.isAbove(JSON.stringify(rows).length, 2 * MiB)
        assert.strictEqual(Option.getOrThrow(yield* store.get("big/text")).value, text)
        assert.deepStrictEqual(Option.getOrThrow(yield* store.get("big/rows")).value, rows)
        const patched = yield* store.patch("big/object", -1, { blob: text, n: 1 })
        assert.strictEqual((patched.value as { blob: string }).blob.length, 5 * MiB)
        const last = yield* store.stream("all", yield* store.streamSeq())
        assert.strictEqual(((last[0]!.record.value as { blob: string }).blob as string).length, 5 * MiB)
      }),
    )

    it.effect("after every refusal the store still works", () =>
      Effect.gen(function* () {
        const store = yield* Store
        const record = yield* store.put("healthy", -1, { ok: true })
        assert.deepStrictEqual(Option.getOrThrow(yield* store.get("healthy")).value, { ok: true })
        assert.strictEqual(yield* store.delete("healthy"), 1)
        assert.isAbove(record.version, 0)
      }),
    )
  })

// ---------------------------------------------------------------------------------------------
// The three backends
// ---------------------------------------------------------------------------------------------

edgeSuite(
  "edges on a SQLite file",
  layerOnScratch(
    async () => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-edges-")),
    async (dir) => fs.rmSync(dir, { recursive: true, force: true }),
    (dir) => KvSqlite.layer({ filename: path.join(dir, "edges.db") }),
  ),
)
edgeSuite(
  "edges on PostgreSQL",
  layerOnScratch(
    createScratchDatabase,
    (db) => db.drop(),
    (db) => KvPostgres.layer({ url: db.url }),
  ),
)
edgeSuite(
  "edges on rqlite",
  layerOnScratch(
    startRqlite,
    (server) => server.stop(),
    (server) => KvRqlite.layer({ url: server.url }),
  ),
)

// ---------------------------------------------------------------------------------------------
// Connections: wrong credentials, a server that is not the database
// ---------------------------------------------------------------------------------------------

/** An HTTP server that answers every request with a web page. */
const startWebServer = () =>
  new Promise<http.Server>((resolve) => {
    const server = http.createServer((_, res) =>
      res.writeHead(200, { "content-type": "text/html" }).end("<html>hi</html>"),
    )
    server.listen(0, "127.0.0.1", () => resolve(server))
  })

describe("connections that cannot work", () => {
  let rqlite: RqliteServer
  let scratch: ScratchDatabase
  let web: http.Server
  let webPort: number
  const secret = "Wr0ng-pa55word"
  beforeAll(async () => {
    ;[rqlite, scratch, web] = await Promise.all([startRqlite(), createScratchDatabase(), startWebServer()])
    webPort = (web.address() as AddressInfo).port
  })
  afterAll(async () => {
    web.closeAllConnections()
    await Promise.all([rqlite.stop(), scratch.drop(), new Promise((resolve) => web.close(resolve))])
  })

  /** Building the store fails with a StoreError that says `message` and never shows the secret. */
  const failsToOpen = async (backend: Layer.Layer<Store, unknown>, message: RegExp) => {
    const started = Date.now()
    const error = await Effect.runPromise(Effect.flip(Effect.provide(Store, backend)))
    expect(Date.now() - started).toBeLessThan(15_000)
    expect((error as { _tag: string })._tag).toBe("StoreError")
    expect((error as Error).message).toMatch(message)
    expect(inspect(error, { depth: 10 })).not.toContain(secret)
  }

  it("rqlite with a wrong password: the credentials are rejected", async () => {
    const wrong = new URL(rqlite.url)
    wrong.password = secret
    await failsToOpen(KvRqlite.layer({ url: wrong.toString() }), /rejected the credentials \(HTTP 401\)/)
    fails(
      await spawnKv(["count", "all", "--type", "rqlite", "--connection", wrong.toString()]),
      /^kv: rqlite at http:\/\/127\.0\.0\.1:\d+ rejected the credentials/,
    )
  })

  it("PostgreSQL with a role that does not exist (the test server trusts every password)", async () => {
    const wrong = new URL(scratch.url)
    wrong.username = "no_such_role"
    wrong.password = secret
    await failsToOpen(KvPostgres.layer({ url: wrong.toString() }), /no_such_role/)
    const result = await spawnKv(["count", "all", "--type", "postgres", "--connection", wrong.toString()])
    expect(fails(result, /^kv: cannot connect to /)).not.toContain(secret)
  })

  it("rqlite pointed at a web server: says it is not rqlite", async () => {
    const url = `http://admin:${secret}@127.0.0.1:${webPort}`
    await failsToOpen(KvRqlite.layer({ url }), /does not answer like rqlite/)
    const result = await spawnKv(["get", "key", "k", "--type", "rqlite", "--connection", url])
    expect(fails(result, /does not answer like rqlite/)).not.toContain(secret)
  })

  it("PostgreSQL pointed at a web server: a connection error, not a hang", async () => {
    const url = `postgres://postgres:${secret}@127.0.0.1:${webPort}/db`
    await failsToOpen(KvPostgres.layer({ url }), /^cannot connect to /)
    const result = await spawnKv(["count", "all", "--type", "postgres", "--connection", url])
    expect(fails(result, /^kv: cannot connect to /)).not.toContain(secret)
  })

  it("the CLI: a value nested too deep is one kv: line and writes nothing; a several-MiB value is fine", async () => {
    const connection = ["--type", "postgres", "--connection", scratch.url]
    const before = ok(await spawnKv(["stream", "seq", ...connection]))
    const deep = "[".repeat(100_000) + "]".repeat(100_000)
    // (too deep even to turn into JSON text: the message says that instead of the depth)
    const tooDeep = /nests arrays and objects more than|cannot be represented as JSON/
    fails(await spawnKv(["put", "cli/deep", ...connection], { input: deep }), tooDeep)
    fails(await spawnKv(["patch", "cli/deep", ...connection], { input: `{"a":${deep}}` }), tooDeep)
    expect(ok(await spawnKv(["stream", "seq", ...connection]))).toBe(before)
    const big = JSON.stringify({ text: "y".repeat(4 * MiB) })
    ok(await spawnKv(["put", "cli/big", ...connection], { input: big }))
    expect(JSON.parse(ok(await spawnKv(["get", "key", "cli/big", ...connection]))).text.length).toBe(4 * MiB)
  }, 60_000)
})
