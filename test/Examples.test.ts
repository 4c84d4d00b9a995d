/**
 * Every program in examples/ runs (with tsx, each on a SQLite file in its own temporary
 * directory, the NATS one against the local server) and prints what it is meant to show, so
 * that none can rot. `examples/opentelemetry.ts` has its own test (ExampleOpenTelemetry.test.ts).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { afterAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const dirs: Array<string> = []
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
})

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** The SQLite file the example was given. */
  readonly database: string
}

/** Runs `examples/<name>.ts` with the path of a new SQLite file as its argument. */
const runExample = (name: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `effect-kv-example-${name}-`))
  dirs.push(dir)
  const database = path.join(dir, "example.db")
  return new Promise<Run>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", `examples/${name}.ts`, database], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      // KV_EXAMPLE_DB from the environment must not win over the argument
      env: { ...process.env, KV_EXAMPLE_DB: path.join(dir, "not-this.db") },
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once("error", reject)
    child.once("close", (code) => resolve({ code, stdout, stderr, database }))
  })
}

/** The run succeeded quietly on its own SQLite file; its stdout as lines. */
const linesOf = (run: Run) => {
  expect(run.stderr).toBe("")
  expect(run.code).toBe(0)
  expect(fs.existsSync(run.database)).toBe(true)
  expect(fs.existsSync(path.join(path.dirname(run.database), "not-this.db"))).toBe(false)
  return run.stdout.trimEnd().split("\n")
}

const timeout = 60_000

describe("examples/", () => {
  it(
    "store.ts: put, get, patch, a failed version check, getPrefix, mutateAll and the stream",
    async () => {
      expect(linesOf(await runExample("store"))).toEqual([
        "put users/ada v1",
        'get users/ada v1 {"name":"Ada","visits":0}',
        'patch users/ada v2 {"name":"Ada","visits":1}',
        'version check: version mismatch on "users/ada": expected version 1',
        "getPrefix users/: users/ada v2, users/alan v1",
        "mutateAll: rows affected 1, 1, 1",
        "stream 1 create users/ada v1",
        "stream 2 create users/alan v1",
        "stream 3 update users/ada v2",
        "stream 4 create users/grace v1",
        "stream 5 update users/alan v2",
        "stream 6 delete users/ada v2",
      ])
    },
    timeout,
  )

  it(
    "typed-store.ts: class instances back, a patch that would not decode refused, reads of one type",
    async () => {
      expect(linesOf(await runExample("typed-store"))).toEqual([
        "records of type User",
        "Hello, Ada (User instance: true, joined 1843)",
        "patch refused: the email would not decode",
        "patched users/ada v2: countess@example.com",
        "typed getPrefix users/: Ada, Alan",
        "untyped getPrefix users/: 3 records",
        'read failed: ["users/broken"]',
      ])
    },
    timeout,
  )

  it(
    "tasks.ts: a keyed task replaced, createMany, the runner in priority order, then stopped; stats",
    async () => {
      expect(linesOf(await runExample("tasks"))).toEqual([
        "created 3 tasks",
        "keyed task digest:ada: the same task both times: true",
        "pending before the runner: 4",
        'sent "password reset" to alan@example.com (priority 10)',
        'sent "invoice" to grace@example.com (priority 5)',
        'sent "newsletter" to ada@example.com (priority 0)',
        'sent "digest" to ada@example.com (priority 0)',
        "stats: total 4, completed 4, pending 0",
        'by name: {"send-email":{"completed":4}}',
      ])
    },
    timeout,
  )

  it(
    "cron.ts: a schedule every second in a named zone; the runner makes one task per tick",
    async () => {
      expect(linesOf(await runExample("cron"))).toEqual([
        'schedule report: "* * * * * *" in Europe/Berlin, makes "report" tasks',
        "two ticks, one task each, a second apart: 1000 ms",
        "removed: true",
      ])
    },
    timeout,
  )

  it(
    "outbox.ts: a task committed with the key writes wakes an idle runner; a stale batch makes none",
    async () => {
      expect(linesOf(await runExample("outbox"))).toEqual([
        'order/7 placed; the runner sent the confirmation for {"order":7}',
        "stale batch: VersionMismatchError; order/7 is still v1",
        "send-confirmation tasks: 1",
      ])
    },
    timeout,
  )

  it(
    "consumer.ts: Consumer.stream in the record, none and batch commit modes, each taking N",
    async () => {
      expect(linesOf(await runExample("consumer"))).toEqual([
        "stream seq 6",
        "record: took 1:orders/1 2:orders/2 3:orders/3; committed position 2",
        "none: took 3:orders/3 4:orders/4; committed position 2",
        "batch: took 3:orders/3 4:orders/4 5:orders/5; committed position 4",
        "record: took 5:orders/5 6:orders/6; committed position 5",
      ])
    },
    timeout,
  )

  it(
    "watch.ts: the snapshot under a prefix, then the live changes of its keys only",
    async () => {
      expect(linesOf(await runExample("watch"))).toEqual([
        'snapshot config/language v1 = "en" (seq 3)',
        'snapshot config/theme v1 = "dark" (seq 3)',
        'update config/theme v2 = "light" (seq 5)',
        'create config/timezone v1 = "UTC" (seq 6)',
        "delete config/language v1 (seq 7)",
        "watched 2 snapshot records and 3 live changes",
      ])
    },
    timeout,
  )

  it(
    "expiry.ts: a session and a counter with ttls, absent once expired, swept, and told apart from deletes",
    async () => {
      expect(linesOf(await runExample("expiry"))).toEqual([
        "put sessions/s1: expires 1000 ms after it was written",
        "patch keeps expiresAt: true",
        "rate/ada: 2 requests in this window",
        "after 1.2 s: sessions/s1 gone",
        "getPrefix sessions/: sessions/s2",
        "rate/ada: 1 request in the new window (version 1)",
        "expire: 1 expired record(s) deleted",
        "stream: delete sessions/s3 (deleted)",
        "stream: delete rate/ada (expired)",
        "stream: delete sessions/s1 (expired)",
      ])
    },
    timeout,
  )

  it(
    "interop.ts: KeyValueStore.forSchema under a prefix, clear of the prefix only; PersistedCache rebuilt, then past its ttl",
    async () => {
      expect(linesOf(await runExample("interop"))).toEqual([
        "forSchema: a Settings instance: true, font size 15",
        'record app/settings/ui v2 (string): {"theme":"dark","fontSize":15}',
        "size under app/settings/: 1",
        "after clear: 0 under the prefix, 1 record(s) in all",
        "first cache: Ada, lookups 1",
        "rebuilt cache: Ada, lookups 1",
        "record app/cache/users/user-1 expires: true",
        "after the ttl: record present false",
        "rebuilt cache after the ttl: lookups 2",
      ])
    },
    timeout,
  )

  it(
    "graph.ts: outgoing and incoming edges, findPath with and without enough depth, the Mermaid view",
    async () => {
      expect(linesOf(await runExample("graph"))).toEqual([
        "alice follows: bob (since 2020), erin (since 2023)",
        "carol is followed by: bob",
        "path alice -> dave: alice -> bob -> carol -> dave",
        "within 2 edges: no path",
        "records under graph/: 15",
        "flowchart LR",
        '  n0["User: alice"]',
        '  n1["User: bob"]',
        '  n2["User: erin"]',
        '  n3["User: carol"]',
        '  n4["User: dave"]',
        '  n5["Post: p1"]',
        '  n0 -->|"follows {#quot;since#quot;:2020}"| n1',
        '  n0 -->|"follows {#quot;since#quot;:2023}"| n2',
        '  n1 -->|"follows {#quot;since#quot;:2021}"| n3',
        '  n3 -->|"follows {#quot;since#quot;:2022}"| n4',
        '  n2 -->|"wrote"| n5',
      ])
    },
    timeout,
  )

  it(
    "state-machine.ts: process with Schemas, an outbound event, a conflict retried, the audit trail",
    async () => {
      expect(linesOf(await runExample("state-machine"))).toEqual([
        "after 2 events: balance 70, version 1",
        "after 1 more: balance -30, version 2, outbound Overdrawn(-30)",
        'attempt 1 failed: VersionMismatchError: version mismatch on "accounts/ada/_state": expected version 2',
        "after 2 attempts: balance 1001, version 4",
        'inbound v1 Deposit {"_tag":"Deposit","amount":100}',
        'inbound v1 Withdraw {"_tag":"Withdraw","amount":30}',
        'inbound v2 Withdraw {"_tag":"Withdraw","amount":100}',
        'outbound v2 Overdrawn {"_tag":"Overdrawn","balance":-30}',
        'inbound v4 Deposit {"_tag":"Deposit","amount":1}',
      ])
    },
    timeout,
  )

  it(
    "nats.ts: every change in its own JetStream stream with subject, action and message id; the stream deleted after",
    async () => {
      const lines = linesOf(await runExample("nats"))
      const created = /^JetStream stream created, capturing (kvexample\.([a-z0-9]+))\.>$/.exec(lines[0] ?? "")
      expect(created).not.toBeNull()
      const [, prefix, id] = created as RegExpExecArray
      expect(lines.slice(1)).toEqual([
        "pusher committed position 4",
        "JetStream holds 4 messages",
        `${prefix}.users.42.User create Nats-Msg-Id=nats:1 {"name":"Ada"}`,
        `${prefix}.users.42.User update Nats-Msg-Id=nats:2 {"name":"Ada","email":"ada@example.com"}`,
        `${prefix}.orders.7.Order create Nats-Msg-Id=nats:3 {"total":30}`,
        `${prefix}.orders.7.Order delete Nats-Msg-Id=nats:4 (no payload)`,
      ])
      // the example removed the stream it made
      const nc = await connect({ servers: "nats://127.0.0.1:4222" })
      try {
        const jsm = await jetstreamManager(nc)
        const names: Array<string> = []
        for await (const name of jsm.streams.names()) names.push(name)
        expect(names).not.toContain(`KV_EXAMPLE_${(id as string).toUpperCase()}`)
      } finally {
        await nc.close()
      }
    },
    timeout,
  )
})
