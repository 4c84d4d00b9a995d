/**
 * Wake-ups that come back: when the signal from other processes is lost (PostgreSQL's LISTEN
 * connection ended by `pg_terminate_backend`, or gone quiet behind a frozen network; SQLite's
 * `PRAGMA data_version` failing), the loss is logged once, the source tries again, and idle
 * waiters whose poll interval is a minute still take other processes' work within seconds.
 * One source per channel serves every waiter of a layer.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import pg from "pg"
import * as Consumer from "../src/Consumer.js"
import * as Wakeup from "../src/internal/wakeup.js"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import { Store } from "../src/Store.js"
import * as TaskRunner from "../src/TaskRunner.js"
import { createScratchDatabase } from "./support/postgres.js"
import { startProxy } from "./support/proxy.js"

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface LogLine {
  readonly level: string
  readonly message: string
}

/** Every log line of the effect (and of the fibers it starts) into `lines`. */
const capturingLogs = (lines: Array<LogLine>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      const text = Array.isArray(message) ? message.join(" ") : String(message)
      lines.push({ level: logLevel.label, message: text })
    }),
  )

const linesLike = (lines: ReadonlyArray<LogLine>, level: string, text: string) =>
  lines.filter((line) => line.level === level && line.message.includes(text))

/** Checks `condition` every 50 ms until it holds; fails after 10 s. */
const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>, what: string) =>
  condition.pipe(
    Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (holds) => holds }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`never happened: ${what}`) }),
  )

/** Takes the next element of `queue`, failing after `seconds`. */
const next = <A>(queue: Queue.Dequeue<A>, seconds: number) =>
  Queue.take(queue).pipe(
    Effect.timeoutFail({
      duration: `${seconds} seconds`,
      onTimeout: () => new Error(`nothing within ${seconds} s`),
    }),
  )

const scratchDatabase = Effect.acquireRelease(Effect.promise(createScratchDatabase), (database) =>
  Effect.promise(() => database.drop()),
)

/** The scratch database's URL with a password in it (trust auth ignores it): logs must not show it. */
const withPassword = (url: string) => {
  const parsed = new URL(url)
  parsed.password = "hunter2"
  return parsed.toString()
}

/** An administrator's connection to the scratch database (not one of the store's). */
const adminClient = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url })
      client.on("error", () => {}) // ended with the scratch database
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined)),
  )

const listenerName = (channel: Wakeup.Channel) => `effect-kv: LISTEN ${Wakeup.pgChannel(channel)}`

/** The backends of this database's LISTEN connections on `channel`. */
const listeners = (admin: pg.Client, channel: Wakeup.Channel) =>
  Effect.promise(() =>
    admin
      .query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        [listenerName(channel)],
      )
      .then((result) => result.rows.map((row) => row.pid)),
  )

/** Ends this database's LISTEN connections on `channel` and waits until they are gone; how many. */
const terminateListeners = (admin: pg.Client, channel: Wakeup.Channel) =>
  Effect.gen(function* () {
    const pids = yield* listeners(admin, channel)
    yield* Effect.promise(() =>
      admin.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [pids]),
    )
    yield* eventually(
      Effect.map(listeners(admin, channel), (alive) => !alive.some((pid) => pids.includes(pid))),
      "the terminated LISTEN connections are gone",
    )
    return pids.length
  })

/**
 * A TCP forwarder to the server on a port of its own that can be stopped (connections dropped,
 * new ones refused, like a server that went down) and started again on the same port.
 */
const startForwarder = async (targetPort: number) => {
  const sockets = new Set<net.Socket>()
  let server: net.Server | undefined
  let port = 0
  const start = () =>
    new Promise<void>((resolve, reject) => {
      const listening = net.createServer((client) => {
        const upstream = net.connect(targetPort, "127.0.0.1")
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.on("error", () => socket.destroy())
          socket.on("close", () => sockets.delete(socket))
        }
        client.pipe(upstream)
        upstream.pipe(client)
      })
      listening.once("error", reject)
      listening.listen(port, "127.0.0.1", () => {
        port = (listening.address() as net.AddressInfo).port
        server = listening
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      if (server === undefined) return resolve()
      server.close(() => resolve())
      server = undefined
    })
  await start()
  return { port, start, stop }
}

const createTask = (process: Context.Context<Scheduler>) =>
  Effect.flatMap(Scheduler, (scheduler) => Effect.flatMap(Task.make("ping", {}), scheduler.create)).pipe(
    Effect.provide(process),
  )

/** The loss of LISTEN on `channel` was logged once as a warning, the return once as info. */
const assertLoggedOnce = (lines: ReadonlyArray<LogLine>, channel: Wakeup.Channel, database: string) => {
  const where = `LISTEN ${Wakeup.pgChannel(channel)} on`
  const lost = linesLike(lines, "WARN", where)
  assert.lengthOf(lost, 1, JSON.stringify(lines))
  assert.include(lost[0]!.message, "lost the connection")
  assert.include(lost[0]!.message, database)
  assert.notInclude(lost[0]!.message, "hunter2")
  assert.lengthOf(
    linesLike(lines, "INFO", where).filter((l) => l.message.includes("listening again")),
    1,
  )
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

describe("PostgreSQL: a terminated LISTEN connection comes back", () => {
  it.scopedLive(
    "an idle runner (poll interval 1 minute) takes another process's tasks within seconds after its LISTEN connection was terminated",
    () => {
      const lines: Array<LogLine> = []
      return Effect.gen(function* () {
        const database = yield* scratchDatabase
        const url = withPassword(database.url)
        const admin = yield* adminClient(database.url)
        const [a, b] = [
          yield* Layer.build(KvPostgres.layer({ url })),
          yield* Layer.build(KvPostgres.layer({ url })),
        ]
        const ran = yield* Queue.unbounded<string>()
        yield* Effect.forkScoped(
          TaskRunner.run({
            runnerId: "idle",
            pollInterval: "1 minute",
            handlers: { ping: (task) => Queue.offer(ran, task.id) },
          }).pipe(Effect.provide(a)),
        )
        // woken as usual: the runner is in its loop, listening
        const first = yield* createTask(b)
        assert.strictEqual(yield* next(ran, 10), first.id)
        assert.lengthOf(yield* listeners(admin, "tasks"), 1)
        // let the runner settle into its one-minute wait (taking any signal still pending)
        yield* Effect.sleep("500 millis")

        assert.strictEqual(yield* terminateListeners(admin, "tasks"), 1)
        // Created at once: its notification is likely sent before LISTEN is back, and lost; the
        // runner looks anyway when its listener is back.
        const started = Date.now()
        const lostOne = yield* createTask(b)
        assert.strictEqual(yield* next(ran, 10), lostOne.id)
        assert.isBelow(Date.now() - started, 10_000)

        // heard again: the next task wakes the runner by its notification
        yield* eventually(
          Effect.sync(() => linesLike(lines, "INFO", "listening again").length > 0),
          "listening again",
        )
        const heard = yield* createTask(b)
        assert.strictEqual(yield* next(ran, 5), heard.id)
        assert.lengthOf(yield* listeners(admin, "tasks"), 1)
        assertLoggedOnce(lines, "tasks", new URL(database.url).pathname.slice(1))
      }).pipe(Effect.provide(capturingLogs(lines)))
    },
    { timeout: 60_000 },
  )

  it.scopedLive(
    "an idle consumer stream (poll interval 1 minute) gets another process's writes within seconds after its LISTEN connection was terminated",
    () => {
      const lines: Array<LogLine> = []
      return Effect.gen(function* () {
        const database = yield* scratchDatabase
        const url = withPassword(database.url)
        const admin = yield* adminClient(database.url)
        const [a, b] = [
          yield* Layer.build(KvPostgres.layer({ url })),
          yield* Layer.build(KvPostgres.layer({ url })),
        ]
        const received = yield* Queue.unbounded<string>()
        yield* Effect.forkScoped(
          Stream.runForEach(
            Consumer.stream({ streamName: "s", consumerName: "c", pollInterval: "1 minute" }),
            (record) => Queue.offer(received, record.record.key),
          ).pipe(Effect.provide(a)),
        )
        const write = (key: string) =>
          Effect.flatMap(Store, (store) => store.put(key, -1, { key })).pipe(Effect.provide(b))

        yield* write("before")
        assert.strictEqual(yield* next(received, 10), "before")
        assert.lengthOf(yield* listeners(admin, "stream"), 1)
        // Idle, the stream looks again after 10 ms, doubling (10.23 s after the last record it
        // has looked 10 times): 6 s on, its current wait lasts until 10.23 s, so only a wake-up
        // brings the next record within 3 s.
        yield* Effect.sleep("6 seconds")

        assert.strictEqual(yield* terminateListeners(admin, "stream"), 1)
        const started = Date.now()
        yield* write("in-the-gap")
        assert.strictEqual(yield* next(received, 10), "in-the-gap")
        assert.isBelow(Date.now() - started, 3_000)

        yield* eventually(
          Effect.sync(() => linesLike(lines, "INFO", "listening again").length > 0),
          "listening again",
        )
        yield* write("after")
        assert.strictEqual(yield* next(received, 5), "after")
        assertLoggedOnce(lines, "stream", new URL(database.url).pathname.slice(1))
      }).pipe(Effect.provide(capturingLogs(lines)))
    },
    { timeout: 60_000 },
  )

  it.scopedLive(
    "the waiters of a layer share one LISTEN connection per channel, opened with the first and closed after the last",
    () =>
      Effect.gen(function* () {
        const database = yield* scratchDatabase
        const admin = yield* adminClient(database.url)
        const a = yield* Layer.build(KvPostgres.layer({ url: database.url }))
        const runner = (runnerId: string) =>
          Effect.forkScoped(
            TaskRunner.run({
              runnerId,
              pollInterval: "1 minute",
              handlers: { ping: () => Effect.void },
            }).pipe(Effect.provide(a)),
          )
        // a layer that only writes listens to nothing
        yield* createTask(a)
        assert.lengthOf(yield* listeners(admin, "tasks"), 0)

        const runners = [yield* runner("r1"), yield* runner("r2"), yield* runner("r3")]
        yield* eventually(
          Effect.map(listeners(admin, "tasks"), (pids) => pids.length > 0),
          "a LISTEN connection",
        )
        // another layer built: a hub, and a connection, of its own
        const other = yield* Layer.build(KvPostgres.layerClient({ url: database.url }))
        yield* Effect.flatMap(Wakeup.Wakeup, (wakeup) => wakeup.subscribe("tasks")).pipe(
          Effect.provide(other),
        )
        yield* eventually(
          Effect.map(listeners(admin, "tasks"), (pids) => pids.length === 2),
          "two LISTEN connections",
        )
        yield* Effect.sleep("300 millis")
        assert.lengthOf(yield* listeners(admin, "tasks"), 2)
        assert.lengthOf(yield* listeners(admin, "stream"), 0)

        yield* Fiber.interruptAll(runners)
        yield* eventually(
          Effect.map(listeners(admin, "tasks"), (pids) => pids.length === 1),
          "the runners' LISTEN connection closed after the last runner stopped",
        )
        yield* runner("r4")
        yield* eventually(
          Effect.map(listeners(admin, "tasks"), (pids) => pids.length === 2),
          "a LISTEN connection for the new runner",
        )
      }),
    { timeout: 60_000 },
  )

  it.scopedLive(
    "a LISTEN connection that goes quiet is noticed within 5 seconds, logged once, and closes without hanging",
    () => {
      const lines: Array<LogLine> = []
      return Effect.gen(function* () {
        const database = yield* scratchDatabase
        const admin = yield* adminClient(database.url)
        const proxy = yield* Effect.acquireRelease(
          Effect.promise(() => startProxy(Number(new URL(database.url).port || 5432))),
          (proxy) => Effect.promise(() => proxy.close()),
        )
        const proxied = new URL(database.url)
        proxied.port = String(proxy.port)
        const scope = yield* Scope.make()
        const client = yield* Layer.buildWithScope(
          KvPostgres.layerClient({ url: proxied.toString(), connectTimeout: "1 second" }),
          scope,
        )
        yield* Effect.flatMap(Wakeup.Wakeup, (wakeup) => wakeup.subscribe("tasks")).pipe(
          Effect.provide(client),
          Scope.extend(scope),
        )
        yield* eventually(
          Effect.map(listeners(admin, "tasks"), (pids) => pids.length === 1),
          "a LISTEN connection",
        )

        proxy.freeze()
        const frozen = Date.now()
        yield* eventually(
          Effect.sync(() => linesLike(lines, "WARN", "LISTEN effect_kv_tasks").length > 0),
          "the quiet connection noticed",
        )
        assert.isBelow(Date.now() - frozen, 5_000)
        assert.include(linesLike(lines, "WARN", "LISTEN effect_kv_tasks")[0]!.message, "no answer to a check")
        // connecting again fails (the proxy swallows everything): not logged again
        yield* Effect.sleep("2500 millis")
        assert.lengthOf(linesLike(lines, "WARN", "LISTEN effect_kv_tasks"), 1, JSON.stringify(lines))

        const closing = Date.now()
        yield* Scope.close(scope, Exit.void)
        assert.isBelow(Date.now() - closing, 3_000)
      }).pipe(Effect.provide(capturingLogs(lines)))
    },
    { timeout: 60_000 },
  )

  it.scopedLive(
    "while the server is away, connecting again fails quietly; once it is back, LISTEN works again and every waiter is woken",
    () => {
      const lines: Array<LogLine> = []
      return Effect.gen(function* () {
        const database = yield* scratchDatabase
        const admin = yield* adminClient(database.url)
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => startForwarder(Number(new URL(database.url).port || 5432))),
          (server) => Effect.promise(() => server.stop()),
        )
        const through = new URL(database.url)
        through.port = String(server.port)
        const client = yield* Layer.build(KvPostgres.layerClient({ url: through.toString() }))
        const signal = yield* Effect.flatMap(Wakeup.Wakeup, (wakeup) => wakeup.subscribe("tasks")).pipe(
          Effect.provide(client),
        )
        assert.lengthOf(yield* listeners(admin, "tasks"), 1)

        // the "server" goes away: its connections drop, new ones are refused
        yield* Effect.promise(() => server.stop())
        yield* eventually(
          Effect.sync(() => linesLike(lines, "WARN", "LISTEN effect_kv_tasks").length > 0),
          "the loss logged",
        )
        // several attempts to connect again fail meanwhile (after 0.25, 0.5, 1, 2 s): not logged again
        yield* Effect.sleep("3 seconds")
        assert.lengthOf(linesLike(lines, "WARN", "LISTEN effect_kv_tasks"), 1, JSON.stringify(lines))
        assert.lengthOf(linesLike(lines, "INFO", "listening again"), 0)
        assert.isFalse(yield* signal.wait("1 millis"))

        yield* Effect.promise(() => server.start())
        yield* eventually(
          Effect.sync(() => linesLike(lines, "INFO", "listening again").length > 0),
          "listening again within the capped backoff",
        )
        assert.isTrue(yield* signal.wait("1 millis")) // woken once, to look for what it missed
        assert.isFalse(yield* signal.wait("1 millis"))
        yield* Effect.promise(() => admin.query("SELECT pg_notify($1, 'x')", [Wakeup.pgChannel("tasks")]))
        assert.isTrue(yield* signal.wait("5 seconds"))
        assert.lengthOf(linesLike(lines, "WARN", "LISTEN effect_kv_tasks"), 1)
      }).pipe(Effect.provide(capturingLogs(lines)))
    },
    { timeout: 60_000 },
  )
})

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/** Overwrites a file's bytes in place (same inode, same size), as another program might. */
const overwrite = (file: string, bytes: Buffer) => {
  const fd = fs.openSync(file, "r+")
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, 0)
  } finally {
    fs.closeSync(fd)
  }
}

describe("SQLite: a failing data_version check", () => {
  it.scopedLive("is logged once while it fails, and wakes the waiters when it works again", () => {
    const lines: Array<LogLine> = []
    return Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-wake-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
      )
      const file = path.join(dir, "wake.db")
      const other = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const db = new Sqlite(file)
          db.pragma("journal_mode = WAL")
          db.exec("CREATE TABLE t (x INTEGER)")
          return db
        }),
        (db) => Effect.sync(() => db.close()),
      )
      const client = yield* Layer.build(KvSqlite.layerClient({ filename: file }))
      const signal = yield* Effect.flatMap(Wakeup.Wakeup, (wakeup) => wakeup.subscribe("tasks")).pipe(
        Effect.provide(client),
      )
      // heard as usual (once the source took its first reading: a write before that is news to no one)
      yield* eventually(
        Effect.suspend(() => {
          other.exec("INSERT INTO t VALUES (1)")
          return signal.wait("500 millis")
        }),
        "a write of another connection heard",
      )

      // Everything in the database file, then the file and its WAL index overwritten with
      // garbage: this connection's reads now fail ("file is not a database").
      other.pragma("wal_checkpoint(TRUNCATE)")
      const database = fs.readFileSync(file)
      const index = fs.readFileSync(`${file}-shm`)
      overwrite(file, Buffer.alloc(database.length, 7))
      overwrite(`${file}-shm`, Buffer.alloc(index.length, 9))
      yield* eventually(
        Effect.sync(() => linesLike(lines, "WARN", "PRAGMA data_version").length > 0),
        "the failure logged",
      )
      const failure = linesLike(lines, "WARN", "PRAGMA data_version")[0]!.message
      assert.include(failure, file)
      assert.include(failure, "file is not a database")
      // 20 ms checks keep failing: still one line
      yield* Effect.sleep("500 millis")
      assert.lengthOf(linesLike(lines, "WARN", "PRAGMA data_version"), 1)
      assert.isFalse(yield* signal.wait("1 millis"))

      overwrite(file, database)
      overwrite(`${file}-shm`, index)
      assert.isTrue(yield* signal.wait("5 seconds"))
      assert.lengthOf(linesLike(lines, "INFO", "PRAGMA data_version"), 1)
      assert.include(linesLike(lines, "INFO", "PRAGMA data_version")[0]!.message, "works again")
      // and hears other processes again
      other.exec("INSERT INTO t VALUES (2)")
      assert.isTrue(yield* signal.wait("5 seconds"))
    }).pipe(Effect.provide(capturingLogs(lines)))
  })
})
