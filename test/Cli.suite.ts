/**
 * The `kv` command line, end to end: spawns the BUILT executable (`node dist/kv.js`; run
 * `npm run build` first) and checks stdout, stderr and exit codes. One suite for every
 * backend, like the Store conformance suite.
 *
 * `cliSuite(backend)` registers the tests for one backend; the database behind
 * `backend.connection` must be private to the suite (counts are compared before and after bad
 * input). Tests use their own key prefixes. Processes are spawned concurrently wherever the
 * order does not matter: each one costs a Node start-up.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { beforeAll, describe, expect, it } from "vitest"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import { Mutation, Store } from "../src/Store.js"

const bin = fileURLToPath(new URL("../dist/kv.js", import.meta.url))

// ---------------------------------------------------------------------------
// Running the executable
// ---------------------------------------------------------------------------

export interface Result {
  readonly stdout: string
  readonly stderr: string
  readonly code: number | null
}

interface RunOptions {
  /** Written to stdin, which is then closed (empty when absent). */
  readonly input?: string
  /** Added to the environment; KV_TYPE and KV_CONNECTION are removed from it first. */
  readonly env?: Readonly<Record<string, string>>
  readonly cwd?: string
}

// A few processes at a time: enough to overlap start-ups without starving the machine.
const slots = Math.max(2, os.availableParallelism()) * 2
let running = 0
const waiting: Array<() => void> = []
const withSlot = async <A>(f: () => Promise<A>): Promise<A> => {
  if (running >= slots) await new Promise<void>((resolve) => waiting.push(resolve))
  running++
  try {
    return await f()
  } finally {
    running--
    waiting.shift()?.()
  }
}

export const spawnKv = (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Result> =>
  withSlot(
    () =>
      new Promise((resolve, reject) => {
        const env: Record<string, string | undefined> = { ...process.env }
        delete env.KV_TYPE
        delete env.KV_CONNECTION
        const child = spawn(process.execPath, [bin, ...args], {
          cwd: options.cwd ?? os.tmpdir(),
          env: { ...env, ...options.env },
          stdio: ["pipe", "pipe", "pipe"],
        })
        let stdout = ""
        let stderr = ""
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
          stdout += chunk
        })
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
          stderr += chunk
        })
        child.on("error", reject)
        child.on("close", (code) => resolve({ stdout, stderr, code }))
        child.stdin.on("error", () => {}) // the process may exit without reading stdin
        child.stdin.end(options.input ?? "")
      }),
  )

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

/** Exit 0, nothing on stderr; the stdout. */
export const ok = (result: Result): string => {
  expect(result.stderr, "stderr").toBe("")
  expect(result.code, `exit code (stderr: ${result.stderr})`).toBe(0)
  return result.stdout
}

const json = (result: Result): any => JSON.parse(ok(result))

/** Exit 1, nothing on stdout, exactly one `kv: ...` line on stderr and no stack trace. */
export const fails = (result: Result, message?: RegExp): string => {
  expect(result.code, `exit code (stdout: ${result.stdout})`).toBe(1)
  expect(result.stdout, "stdout").toBe("")
  expect(result.stderr, "stderr").toMatch(/^kv: [^\n]+\n$/)
  expect(result.stderr).not.toMatch(/\n\s+at /)
  if (message !== undefined) expect(result.stderr).toMatch(message)
  return result.stderr
}

const keysOf = (records: ReadonlyArray<{ key: string }>) => records.map((record) => record.key)

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

export interface CliBackend {
  readonly type: BackendType
  /** A database private to this suite. */
  readonly connection: string
  /** The same database through a connection that refuses writes, when the backend has one. */
  readonly readOnlyConnection?: string | undefined
  /** A connection that cannot be opened or reached (e.g. a SQLite file under a non-directory). */
  readonly unusableConnection?: string | undefined
}

export const cliSuite = (backend: CliBackend) =>
  describe(`kv on ${backend.type}`, () => {
    const globals = ["--type", backend.type, "--connection", backend.connection]
    /** Runs `kv <args>` with the global flags after the command words. */
    const kv = (args: ReadonlyArray<string>, options?: RunOptions) => spawnKv([...args, ...globals], options)
    const put = (key: string, value: unknown, ...flags: Array<string>) =>
      kv(["put", key, ...flags], { input: JSON.stringify(value) })

    /** Writes records directly through the library (many records, one transaction). */
    const seed = (records: ReadonlyArray<readonly [string, unknown]>) =>
      Effect.runPromise(
        Effect.flatMap(Store, (store) =>
          store.mutateAll(records.map(([key, value]) => Mutation.put(key, -1, value))),
        ).pipe(Effect.provide(layerFor(backend.type, Redacted.make(backend.connection)))),
      )

    beforeAll(() => {
      if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`npm run build\` before the tests`)
    })

    // The first test: the database is new, so the four processes race to create the tables.
    it("init is idempotent, also from four processes at once on a new database", async () => {
      const results = await Promise.all([kv(["init"]), kv(["init"]), kv(["init"]), kv(["init"])])
      for (const result of results) expect(ok(result)).toBe("")
      expect(ok(await kv(["init"]))).toBe("")
    })

    it("put, then get key prints the value (2-space JSON) or the version", async () => {
      const value = { hello: "world", list: [1, 2], nested: { a: null } }
      expect(ok(await put("pg/1", value))).toBe("")
      const [got, version] = await Promise.all([
        kv(["get", "key", "pg/1"]),
        kv(["get", "key", "pg/1", "--print-version"]),
      ])
      expect(ok(got)).toBe(`${JSON.stringify(value, null, 2)}\n`)
      expect(ok(version)).toBe("1\n")
      ok(await put("pg/1", "second"))
      const [second, secondVersion] = await Promise.all([
        kv(["get", "key", "pg/1"]),
        kv(["get", "key", "--print-version", "pg/1"]),
      ])
      expect(ok(second)).toBe('"second"\n')
      expect(ok(secondVersion)).toBe("2\n")
    })

    it("put --version: 0 creates only, N replaces only version N", async () => {
      ok(await put("pv/1", { n: 1 }, "--version", "0"))
      const [again, stale, wrongForm] = await Promise.all([
        put("pv/1", { n: 2 }, "--version", "0"),
        put("pv/1", { n: 2 }, "--version", "7"),
        put("pv/1", { n: 2 }, "--version", "abc"),
      ])
      fails(again, /version mismatch on "pv\/1"/)
      fails(stale, /version mismatch on "pv\/1"/)
      fails(wrongForm)
      ok(await put("pv/1", { n: 3 }, "--version", "1"))
      ok(await put("pv/1", { n: 4 }, "--version=2"))
      const [value, version] = await Promise.all([
        kv(["get", "key", "pv/1"]),
        kv(["get", "key", "pv/1", "--print-version"]),
      ])
      expect(JSON.parse(ok(value))).toEqual({ n: 4 })
      expect(ok(version)).toBe("3\n")
    })

    it("put --record-type sets the type; otherwise it is derived from the value", async () => {
      await Promise.all([
        put("rt/1", { a: 1 }, "--record-type", "greeting"),
        put("rt/2", [1, 2]),
        put("rt/3", "text"),
        put("rt/4", 42),
        put("rt/5", { a: 1 }),
      ]).then((results) => results.forEach(ok))
      const records = json(await kv(["get", "prefix", "rt/"]))
      expect(records.map((r: { type: string }) => r.type)).toEqual([
        "greeting",
        "array",
        "string",
        "number",
        "object",
      ])
    })

    it("get key of a missing key fails with not found", async () => {
      fails(await kv(["get", "key", "missing/nothing"]), /not found/)
    })

    it("get prefix, get range and list print JSON arrays of records, with offset and limit", async () => {
      await Promise.all(["r/0", "r/1", "r/2", "r/3", "r/4"].map((key, i) => put(key, { i }))).then(
        (results) => results.forEach(ok),
      )
      await Promise.all([put("r%/x", 1), put("r_/x", 2), put("r\\/x", 3)]).then((results) =>
        results.forEach(ok),
      )
      const [all, paged, range, rangeFrom, listed, exact, underscore] = await Promise.all([
        kv(["get", "prefix", "r/"]),
        kv(["get", "prefix", "r/", "1", "2"]),
        kv(["get", "range", "r/1", "r/3"]),
        kv(["get", "range", "r/0", "r/5", "3"]),
        kv(["list", "0", "-1"]),
        kv(["get", "prefix", "r%"]),
        kv(["get", "prefix", "r_"]),
      ])
      const records = json(all)
      expect(keysOf(records)).toEqual(["r/0", "r/1", "r/2", "r/3", "r/4"])
      for (const [i, record] of records.entries()) {
        expect(Object.keys(record)).toEqual(["key", "version", "value", "type", "created"])
        expect(record).toMatchObject({ version: 1, value: { i }, type: "object" })
        expect(record.created).toMatch(RFC3339)
      }
      expect(all.stdout).toBe(`${JSON.stringify(records, null, 2)}\n`)
      expect(keysOf(json(paged))).toEqual(["r/1", "r/2"])
      expect(keysOf(json(range))).toEqual(["r/1", "r/2"])
      expect(keysOf(json(rangeFrom))).toEqual(["r/3", "r/4"])
      const listedKeys = keysOf(json(listed))
      expect(listedKeys).toEqual([...listedKeys].sort())
      expect(listedKeys).toEqual(expect.arrayContaining(["r/0", "r/4", "r%/x", "r_/x", "r\\/x"]))
      expect(keysOf(json(exact))).toEqual(["r%/x"])
      expect(keysOf(json(underscore))).toEqual(["r_/x"])
      expect(ok(await kv(["get", "prefix", "r/", "9"]))).toBe("[]\n")
    })

    it("the default limit is 1000; -1 means no limit", async () => {
      const records = Array.from(
        { length: 1001 },
        (_, i) => [`lim/${String(i).padStart(4, "0")}`, i] as const,
      )
      await seed(records)
      const [limited, unlimited, listed, streamed] = await Promise.all([
        kv(["get", "prefix", "lim/"]),
        kv(["get", "prefix", "lim/", "0", "-1"]),
        kv(["list"]),
        kv(["stream", "get"]),
      ])
      expect(json(limited)).toHaveLength(1000)
      expect(json(unlimited)).toHaveLength(1001)
      expect(json(listed)).toHaveLength(1000)
      expect(json(streamed)).toHaveLength(1000)
    })

    it("count all | prefix | range print one integer", async () => {
      await Promise.all([put("c/a", 1), put("c/b", 2), put("c/c", 3)]).then((results) => results.forEach(ok))
      const [all, listed, prefix, range, none] = await Promise.all([
        kv(["count", "all"]),
        kv(["list", "0", "-1"]),
        kv(["count", "prefix", "c/"]),
        kv(["count", "range", "c/a", "c/c"]),
        kv(["count", "prefix", "c/zzz"]),
      ])
      expect(ok(all)).toMatch(/^\d+\n$/)
      expect(Number(all.stdout)).toBe(json(listed).length)
      expect(ok(prefix)).toBe("3\n")
      expect(ok(range)).toBe("2\n")
      expect(ok(none)).toBe("0\n")
    })

    it("delete prints the number of keys deleted", async () => {
      ok(await put("d/1", { a: 1 }))
      expect(ok(await kv(["delete", "d/1"]))).toBe("1\n")
      const [again, get] = await Promise.all([kv(["delete", "d/1"]), kv(["get", "key", "d/1"])])
      expect(ok(again)).toBe("0\n")
      fails(get, /not found/)
    })

    it("delete several keys, --prefix and --from/--to (with --offset and --limit) print the number deleted", async () => {
      await seed([
        ["dm/1", 1],
        ["dm/2", 2],
        ["dm/3", 3],
        ...Array.from({ length: 6 }, (_, i) => [`dp/${i}`, i] as const),
        ...Array.from({ length: 6 }, (_, i) => [`dr/${i}`, i] as const),
        ["dp_/x", "not under dp/"],
      ])
      const remaining = async (prefix: string) => keysOf(json(await kv(["get", "prefix", prefix])))
      // missing keys and a key given twice count once
      expect(ok(await kv(["delete", "dm/1", "dm/3", "dm/missing", "dm/3"]))).toBe("2\n")
      expect(await remaining("dm/")).toEqual(["dm/2"])
      // in key order: skip 1, then delete 2
      expect(ok(await kv(["delete", "--prefix", "dp/", "--offset", "1", "--limit", "2"]))).toBe("2\n")
      expect(await remaining("dp/")).toEqual(["dp/0", "dp/3", "dp/4", "dp/5"])
      expect(ok(await kv(["delete", "--limit=-1", "--prefix", "dp/"]))).toBe("4\n")
      expect(await remaining("dp")).toEqual(["dp_/x"])
      expect(ok(await kv(["delete", "--from", "dr/1", "--to", "dr/5", "--offset=1", "--limit", "2"]))).toBe(
        "2\n",
      )
      expect(await remaining("dr/")).toEqual(["dr/0", "dr/1", "dr/4", "dr/5"])
      expect(ok(await kv(["delete", "--to", "dr/5", "--from", "dr/"]))).toBe("3\n")
      expect(await remaining("dr/")).toEqual(["dr/5"])
      expect(ok(await kv(["delete", "--prefix", "dr/nothing"]))).toBe("0\n")
      // every deleted key is one delete in the stream
      const deletes = json(await kv(["stream", "get", "0", "-1"])).filter(
        (change: any) => change.action === "delete" && /^d[mpr]\//.test(change.record.key),
      )
      expect(deletes).toHaveLength(2 + 2 + 4 + 2 + 3)
    })

    it("get batch prints the records found, in key order, for keys given or read from stdin", async () => {
      // U+E000 sorts before U+1F600 by code point (the store's order), after it by UTF-16 unit
      const keys = ["gb/b", "gb/a", "gb/\u{1F600}", "gb/\uE000", "gb/ spaced "]
      await seed(keys.map((key, i) => [key, { i }] as const))
      const [byArgs, byStdin, crlf, none, empty, stored] = await Promise.all([
        kv(["get", "batch", "gb/b", "gb/missing", "gb/a", "gb/\u{1F600}", "gb/\uE000", "gb/b"]),
        kv(["get", "batch"], { input: `${keys.join("\n")}\ngb/missing\n\n` }),
        kv(["get", "batch"], { input: "gb/b\r\ngb/a\r\n" }),
        kv(["get", "batch", "gb/missing", "gb/other"]),
        kv(["get", "batch"]),
        kv(["get", "prefix", "gb/"]),
      ])
      const inStoreOrder = keysOf(json(stored))
      expect(inStoreOrder).toEqual(["gb/ spaced ", "gb/a", "gb/b", "gb/\uE000", "gb/\u{1F600}"])
      const records = json(byArgs)
      expect(keysOf(records)).toEqual(inStoreOrder.filter((key) => key !== "gb/ spaced "))
      expect(byArgs.stdout).toBe(`${JSON.stringify(records, null, 2)}\n`)
      expect(Object.keys(records[0])).toEqual(["key", "version", "value", "type", "created"])
      expect(records[0]).toMatchObject({ key: "gb/a", version: 1, value: { i: 1 }, type: "object" })
      expect(records[0].created).toMatch(RFC3339)
      expect(json(byStdin)).toEqual(json(stored))
      expect(keysOf(json(crlf))).toEqual(["gb/a", "gb/b"])
      expect(ok(none)).toBe("[]\n")
      expect(ok(empty)).toBe("[]\n")
    })

    it("patch merges (RFC 7396), checks versions and creates missing keys", async () => {
      ok(await put("p/1", { a: 1, b: { c: 1, d: 2 } }))
      const patch = { b: { c: null, e: 3 }, f: "x" }
      ok(await kv(["patch", "p/1", "--version", "1"], { input: JSON.stringify(patch) }))
      const [value, version, stale, created] = await Promise.all([
        kv(["get", "key", "p/1"]),
        kv(["get", "key", "p/1", "--print-version"]),
        kv(["patch", "p/1", "--version", "1"], { input: '{"g": 1}' }),
        kv(["patch", "p/new", "--record-type", "patched"], { input: '{"z": true}' }),
      ])
      expect(json(value)).toEqual({ a: 1, b: { d: 2, e: 3 }, f: "x" })
      expect(ok(version)).toBe("2\n")
      fails(stale, /version mismatch/)
      ok(created)
      const [record] = json(await kv(["get", "prefix", "p/new"]))
      expect(record).toMatchObject({ key: "p/new", version: 1, value: { z: true }, type: "patched" })
    })

    it("increment adds to a number (a missing key counts from 0) and prints the new value", async () => {
      expect(ok(await kv(["increment", "inc/a"]))).toBe("1\n")
      expect(ok(await kv(["increment", "inc/a", "41"]))).toBe("42\n")
      expect(ok(await kv(["increment", "inc/a", "--", "-50"]))).toBe("-8\n")
      expect(ok(await kv(["increment", "inc/a", "0.5"]))).toBe("-7.5\n")
      // concurrent processes lose no increment
      await Promise.all(
        Array.from({ length: 4 }, () => kv(["increment", "inc/b", "2"])).map(async (r) => ok(await r)),
      )
      expect(json(await kv(["get", "key", "inc/b"]))).toBe(8)
      const [record] = json(await kv(["get", "prefix", "inc/a"]))
      expect(record).toMatchObject({ key: "inc/a", version: 4, value: -7.5, type: "number" })
      ok(await put("inc/s", "text"))
      fails(await kv(["increment", "inc/s"]), /^kv: cannot increment "inc\/s": its value is not a number\n$/)
      fails(await kv(["increment", "inc/a", "abc"]), /not a float/)
      fails(
        await kv(["increment", "inc/a", "1e400"]),
        /^kv: the increment must be a finite number, got Infinity\n$/,
      )
      expect(json(await kv(["get", "key", "inc/a"]))).toBe(-7.5)
      ok(await kv(["delete", "--prefix", "inc/"]))
    })

    it("--ttl on put, patch and increment; expired keys are absent; expire deletes them and prints how many", async () => {
      ok(await kv(["put", "ttl/long", "--ttl", "1h"], { input: '"kept"' }))
      const [long] = json(await kv(["get", "prefix", "ttl/long"]))
      const expiresIn = Date.parse(long.expiresAt) - Date.now()
      expect(expiresIn).toBeGreaterThan(3_500_000)
      expect(expiresIn).toBeLessThanOrEqual(3_600_000)
      ok(await kv(["patch", "ttl/long"], { input: '{"a": 1}' }))
      expect(json(await kv(["get", "prefix", "ttl/long"]))[0].expiresAt).toBe(long.expiresAt)
      // a millisecond: expired before the next command starts
      ok(await kv(["put", "ttl/short", "--ttl", "1ms"], { input: '"gone"' }))
      ok(await kv(["increment", "ttl/count", "--ttl", "1ms"]))
      ok(await kv(["patch", "ttl/patched", "--ttl", "1ms"], { input: '{"a": 1}' }))
      fails(await kv(["get", "key", "ttl/short"]), /^kv: key "ttl\/short" not found\n$/)
      expect(ok(await kv(["count", "prefix", "ttl/"]))).toBe("1\n")
      // one-shot commands do not sweep: the expired records wait for expire
      expect(ok(await kv(["expire"]))).toBe("3\n")
      expect(ok(await kv(["expire"]))).toBe("0\n")
      expect(ok(await kv(["increment", "ttl/count"]))).toBe("1\n")
      // a bad ttl: one kv: line, nothing written
      const before = ok(await kv(["get", "prefix", "ttl/"]))
      fails(await kv(["put", "ttl/long", "--ttl", "soon"], { input: "1" }), /^kv: .*invalid duration "soon"/)
      fails(await kv(["put", "ttl/long", "--ttl", "0"], { input: "1" }), /^kv: .*longer than zero/)
      fails(await kv(["increment", "ttl/count", "--ttl", "-1s"]), /^kv: .*invalid duration/)
      expect(ok(await kv(["get", "prefix", "ttl/"]))).toBe(before)
      ok(await kv(["delete", "--prefix", "ttl/"]))
    })

    it("stream get | seq | trim", async () => {
      const before = Number(ok(await kv(["stream", "seq"])))
      ok(await put("s/1", { v: 1 }, "--record-type", "streamed"))
      ok(await kv(["patch", "s/1"], { input: '{"v": 2}' }))
      ok(await kv(["delete", "s/1"]))
      ok(await put("s/2", { v: 1 }))
      const from = String(before + 1)
      const [seq, all, limited, ofType, ofTypeEq, prefixed] = await Promise.all([
        kv(["stream", "seq"]),
        kv(["stream", "get", from]),
        kv(["stream", "get", from, "2"]),
        kv(["stream", "get", from, "--of-type", "streamed"]),
        kv(["stream", "get", "--of-type=object", from, "-1"]),
        kv(["stream", "get", from, "--prefix", "s/2"]),
      ])
      expect(ok(seq)).toBe(`${before + 4}\n`)
      const changes = json(all)
      expect(changes.map((c: any) => [c.seq, c.action, c.record.key])).toEqual([
        [before + 1, "create", "s/1"],
        [before + 2, "update", "s/1"],
        [before + 3, "delete", "s/1"],
        [before + 4, "create", "s/2"],
      ])
      expect(Object.keys(changes[0])).toEqual(["seq", "action", "record"])
      expect(Object.keys(changes[0].record)).toEqual(["key", "version", "value", "type", "created"])
      expect(changes[0].record.created).toMatch(RFC3339)
      expect(changes[1].record).toMatchObject({ version: 2, value: { v: 2 }, type: "streamed" })
      expect(json(limited)).toHaveLength(2)
      expect(json(ofType).map((c: any) => c.seq)).toEqual([before + 1, before + 2, before + 3])
      expect(json(ofTypeEq).map((c: any) => c.seq)).toEqual([before + 4])
      expect(json(prefixed).map((c: any) => c.seq)).toEqual([before + 4])

      expect(ok(await kv(["stream", "trim", String(before + 2)]))).toMatch(/^\d+\n$/)
      const [rest, seqAfter] = await Promise.all([kv(["stream", "get", "0", "-1"]), kv(["stream", "seq"])])
      const seqs = json(rest).map((c: any) => c.seq)
      expect(seqs).toEqual([before + 3, before + 4])
      expect(ok(seqAfter)).toBe(`${before + 4}\n`)
    })

    it("lock acquire | status | release", async () => {
      const started = Date.now()
      expect(ok(await kv(["lock", "acquire", "L1", "alice", "--duration", "5m"]))).toBe("")
      const [held, refreshed, status] = await Promise.all([
        kv(["lock", "acquire", "L1", "bob"]),
        kv(["lock", "acquire", "L1", "alice", "--duration=1h30m"]),
        kv(["lock", "status", "L1"]),
      ])
      const line = fails(held, /^kv: lock "L1" is held by alice until \S+\n$/)
      const until = line.trim().split(" ").at(-1)!
      expect(until).toMatch(RFC3339)
      expect(Date.parse(until)).toBeGreaterThan(started)
      ok(refreshed)
      const lock = json(status)
      expect(Object.keys(lock)).toEqual(["name", "lockedBy", "lockedAt", "expiresAt"])
      expect(lock).toMatchObject({ name: "L1", lockedBy: "alice" })
      expect(lock.lockedAt).toMatch(RFC3339)
      expect(lock.expiresAt).toMatch(RFC3339)

      const [refreshedStatus, notHolder] = await Promise.all([
        kv(["lock", "status", "L1"]),
        kv(["lock", "release", "L1", "bob"]),
      ])
      const remaining = Date.parse(json(refreshedStatus).expiresAt) - Date.now()
      expect(remaining).toBeGreaterThan(80 * 60 * 1000) // refreshed to 1h30m, not 5m
      expect(remaining).toBeLessThanOrEqual(90 * 60 * 1000)
      expect(notHolder.code).toBe(0)
      expect(notHolder.stdout).toBe("")
      expect(notHolder.stderr).not.toMatch(/\n./) // at most one short line
      expect(ok(await kv(["lock", "release", "L1", "alice"]))).toBe("")
      const [gone, free] = await Promise.all([
        kv(["lock", "status", "L1"]),
        kv(["lock", "acquire", "L1x", "bob", "--duration", "1ms"]),
      ])
      fails(gone, /^kv: lock "L1" not found\n$/)
      ok(free)
      // the next process starts well after 1ms: the lock has expired and anyone can take it
      // (expiry itself is tested with TestClock in the Store conformance suite)
      ok(await kv(["lock", "acquire", "L1x", "carol"]))
    })

    it("global flags before, between and after the command words, and from the environment", async () => {
      ok(await put("gf/1", { g: 1 }))
      const expected = `${JSON.stringify({ g: 1 }, null, 2)}\n`
      const env = { KV_TYPE: backend.type, KV_CONNECTION: backend.connection }
      const results = await Promise.all([
        spawnKv([...globals, "get", "key", "gf/1"]),
        spawnKv(["get", ...globals, "key", "gf/1"]),
        spawnKv(["get", "key", ...globals, "gf/1"]),
        spawnKv(["get", "key", "gf/1", `--type=${backend.type}`, `--connection=${backend.connection}`]),
        spawnKv(["get", "key", "gf/1"], { env }),
        // given twice, the last one wins
        spawnKv(["--type", "nosuch", "get", "key", "gf/1", ...globals]),
        // flags win over the environment
        spawnKv(["get", "key", "gf/1", ...globals], {
          env: { KV_TYPE: "nosuch", KV_CONNECTION: "file:/nonexistent/dir/x.db" },
        }),
      ])
      for (const result of results) expect(ok(result)).toBe(expected)
    })

    it("--help works on every command; missing and unknown commands are one-line errors", async () => {
      const helps = await Promise.all(
        [
          ["--help"],
          ["put", "--help"],
          ["get", "--help"],
          ["get", "key", "--help"],
          ["count", "range", "--help"],
          ["patch", "-h"],
          ["stream", "get", "--help"],
          ["get", "batch", "--help"],
          ["delete", "--help"],
          ["nats", "push", "--help"],
          ["lock", "acquire", "--help"],
        ].map((args) => kv(args)),
      )
      for (const help of helps) expect(ok(help)).toMatch(/USAGE/)
      expect(ok(await kv(["--version"]))).toMatch(/^\d+\.\d+\.\d+/)
      const [noCommand, noSubcommand, unknown, unknownFlag, extra] = await Promise.all([
        kv([]),
        kv(["get"]),
        kv(["frobnicate"]),
        kv(["count", "all", "--frobnicate"]),
        kv(["count", "all", "extra"]),
      ])
      fails(noCommand, /missing command/)
      fails(noSubcommand, /missing command.*key, prefix, range/)
      fails(unknown)
      fails(unknownFlag, /--frobnicate/)
      fails(extra, /extra/)
    })

    describe("bad input is one error line and changes nothing", () => {
      const type = `--type=${backend.type}`
      const cases: Array<{
        readonly name: string
        readonly args: ReadonlyArray<string>
        readonly input?: string
        readonly env?: Record<string, string>
        readonly message?: RegExp
        /** Runs with these exact arguments (no global flags added). */
        readonly raw?: boolean
      }> = [
        { name: "put: invalid JSON", args: ["put", "bad/1"], input: "{not json", message: /JSON/ },
        { name: "put: invalid JSON, new key", args: ["put", "bad/new"], input: '{"a": 1', message: /JSON/ },
        { name: "put: empty stdin", args: ["put", "bad/new"], input: "", message: /JSON/ },
        { name: "patch: invalid JSON", args: ["patch", "bad/1"], input: "nope", message: /JSON/ },
        { name: "patch: an array", args: ["patch", "bad/1"], input: "[1, 2]", message: /object/ },
        { name: "patch: a string", args: ["patch", "bad/1"], input: '"x"', message: /object/ },
        { name: "patch: null", args: ["patch", "bad/new"], input: "null", message: /object/ },
        { name: "patch: a number", args: ["patch", "bad/new"], input: "42", message: /object/ },
        { name: "put: empty key", args: ["put", ""], input: '{"a": 1}', message: /key/ },
        { name: "patch: empty key", args: ["patch", ""], input: '{"a": 1}', message: /key/ },
        { name: "delete: empty key", args: ["delete", ""], message: /key/ },
        { name: "get key: empty key", args: ["get", "key", ""], message: /key/ },
        { name: "get batch: empty key", args: ["get", "batch", "bad/1", ""], message: /key/ },
        {
          name: "get batch: a NUL on stdin",
          args: ["get", "batch"],
          input: "bad/1\nbad/\u0000x\n",
          message: /stdin line 2: key must not contain NUL/,
        },
        {
          name: "delete: nothing to delete",
          args: ["delete"],
          message: /delete needs keys, --prefix or --from/,
        },
        {
          name: "delete: keys and --prefix",
          args: ["delete", "bad/1", "--prefix", "bad/"],
          message: /only one of them/,
        },
        {
          name: "delete: --prefix and --from/--to",
          args: ["delete", "--prefix", "bad/", "--from", "bad/", "--to", "bad0"],
          message: /only one of them/,
        },
        {
          name: "delete: keys and --from/--to",
          args: ["delete", "bad/1", "--from", "bad/", "--to", "bad0"],
          message: /only one of them/,
        },
        {
          name: "delete: empty --prefix",
          args: ["delete", "--prefix", ""],
          message: /--prefix needs a prefix/,
        },
        {
          name: "delete: --from without --to",
          args: ["delete", "--from", "bad/"],
          message: /--from needs --to/,
        },
        {
          name: "delete: --to without --from",
          args: ["delete", "--to", "bad0"],
          message: /--to needs --from/,
        },
        {
          name: "delete: keys with --limit",
          args: ["delete", "bad/1", "--limit", "1"],
          message: /--offset and --limit go with --prefix/,
        },
        {
          name: "delete: negative --offset",
          args: ["delete", "--prefix", "bad/", "--offset", "-1"],
          message: /offset/,
        },
        {
          name: "delete: --limit below -1",
          args: ["delete", "--from", "bad/", "--to", "bad0", "--limit", "-2"],
          message: /limit/,
        },
        { name: "delete: one of several keys empty", args: ["delete", "bad/1", ""], message: /key/ },
        { name: "list: negative offset", args: ["list", "-1"], message: /offset/ },
        { name: "get prefix: negative offset", args: ["get", "prefix", "bad/", "-5"], message: /offset/ },
        {
          name: "get range: negative offset",
          args: ["get", "range", "a", "z", "-1", "10"],
          message: /offset/,
        },
        { name: "list: limit below -1", args: ["list", "0", "-2"], message: /limit/ },
        { name: "stream get: negative seq", args: ["stream", "get", "-1"], message: /seq/ },
        { name: "stream trim: negative seq", args: ["stream", "trim", "-1"], message: /seq/ },
        {
          name: "put: version mismatch",
          args: ["put", "bad/1", "--version", "5"],
          input: "1",
          message: /version/,
        },
        { name: "put: version 0 on an existing key", args: ["put", "bad/1", "--version", "0"], input: "1" },
        {
          name: "put: version below -1",
          args: ["put", "bad/1", "--version", "-2"],
          input: "1",
          message: /version/,
        },
        { name: "put: --version not a number", args: ["put", "bad/1", "--version", "x"], input: "1" },
        {
          name: "put: unknown flag",
          args: ["put", "bad/1", "--frobnicate"],
          input: "1",
          message: /frobnicate/,
        },
        { name: "put: missing key", args: ["put"], input: "1" },
        { name: "unknown command", args: ["frobnicate", "bad/1"] },
        {
          name: "unknown --type before the command",
          args: ["--type", "nosuch", "--connection", backend.connection, "put", "bad/1"],
          input: "1",
          message: /sqlite, postgres, rqlite/,
          raw: true,
        },
        {
          name: "unknown --type after the command",
          args: ["put", "bad/1", "--type", "nosuch", "--connection", backend.connection],
          input: "1",
          message: /sqlite, postgres, rqlite/,
          raw: true,
        },
        {
          name: "unknown KV_TYPE",
          args: ["put", "bad/1"],
          input: "1",
          env: { KV_TYPE: "nosuch", KV_CONNECTION: backend.connection },
          message: /nosuch/,
          raw: true,
        },
        {
          name: "lock acquire: invalid duration",
          args: ["lock", "acquire", "bad-lock", "me", "--duration", "10x"],
          message: /duration/,
        },
        { name: "lock acquire: empty name", args: ["lock", "acquire", "", "me"] },
        ...(backend.readOnlyConnection === undefined
          ? []
          : (
              [
                ["put", "bad/1"],
                ["put", "bad/ro"],
                ["patch", "bad/1"],
                ["delete", "bad/1"],
                ["stream", "trim", "1000000"],
                ["init"],
              ] as const
            ).map((args) => ({
              name: `read-only connection: ${args.join(" ")}`,
              args: [...args, type, "--connection", backend.readOnlyConnection!],
              input: '{"changed": true}',
              raw: true,
            }))),
        ...(backend.unusableConnection === undefined
          ? []
          : [
              {
                name: "unusable connection (e.g. unwritable database path)",
                args: ["put", "bad/1", type, "--connection", backend.unusableConnection],
                input: '{"changed": true}',
                raw: true,
              },
            ]),
      ]

      interface Snapshot {
        readonly count: string
        readonly records: string
        readonly seq: string
      }
      const snapshot = async (): Promise<Snapshot> => {
        const [count, records, seq] = await Promise.all([
          kv(["count", "all"]),
          kv(["list", "0", "-1"]),
          kv(["stream", "seq"]),
        ])
        return { count: ok(count), records: ok(records), seq: ok(seq) }
      }

      let before: Snapshot
      let after: Snapshot
      const results = new Map<string, Result>()

      beforeAll(async () => {
        ok(await put("bad/1", { original: true }))
        before = await snapshot()
        await Promise.all(
          cases.map(async (c) => {
            const args = c.raw === true ? c.args : [...c.args, ...globals]
            const options = {
              ...(c.input === undefined ? {} : { input: c.input }),
              ...(c.env ? { env: c.env } : {}),
            }
            results.set(c.name, await spawnKv(args, options))
          }),
        )
        after = await snapshot()
      })

      for (const c of cases) {
        it(c.name, () => {
          fails(results.get(c.name)!, c.message)
        })
      }

      it("the database is unchanged", async () => {
        expect(after).toEqual(before)
        expect(json(await kv(["get", "prefix", "bad/"])).map((r: any) => [r.key, r.value])).toEqual([
          ["bad/1", { original: true }],
        ])
      })
    })
  })

/** A loopback port nobody listens on. */
const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/**
 * An unreachable server is one `kv: cannot connect to ...` line within 10 seconds, and the
 * password in the connection string appears nowhere.
 */
export const unreachableServerTest = (
  type: BackendType,
  connectionTo: (port: number, password: string) => string,
) =>
  it(`kv --type ${type} against a closed port: cannot connect, quickly, without the password`, async () => {
    const password = "Cl0sed-P0rt-secret"
    const connection = connectionTo(await closedPort(), password)
    const started = Date.now()
    const [viaFlags, viaEnv] = await Promise.all([
      spawnKv(["count", "all", "--type", type, "--connection", connection]),
      spawnKv(["put", "k"], { input: "1", env: { KV_TYPE: type, KV_CONNECTION: connection } }),
    ])
    expect(Date.now() - started).toBeLessThan(10_000)
    for (const result of [viaFlags, viaEnv]) {
      fails(result, /^kv: cannot connect to /)
      expect(result.stderr).not.toContain(password)
    }
  })
