/**
 * PostgreSQL wake-ups that come back: a `LISTEN` connection of its own per channel, watched
 * and opened again when it is lost.
 *
 * `@effect/sql-pg`'s `listen` shares one connection and ignores its errors, so after a
 * `pg_terminate_backend` or a server restart its stream neither ends nor emits again: idle
 * waiters then sleep their whole poll interval, silently. Here the connection's 'error' and
 * 'end' events end the session at once, and a cheap query every `checkEvery` ends it when the
 * connection went quiet without failing (a dead peer, a frozen network), so a loss is noticed
 * within `checkEvery + checkTimeout`. The loss is logged once; the listener connects again
 * with a capped backoff while the server is down, logs when it listens again and wakes every
 * waiter once then, since notifications sent in the gap are gone. It is ready (the first
 * subscriber goes on) once the first LISTEN took effect or failed.
 *
 * Liveness is real-world time: it runs on the live clock, so that a test's `TestClock`
 * neither freezes the checks nor mistakes a slow answer for a loss.
 */
import type { PgClientConfig } from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import pg from "pg"
import * as Wakeup from "./wakeup.js"

/** A check every 1.5 s that must answer within 2 s: a quiet loss is noticed within 3.5 s. */
const checkEvery = Duration.millis(1500)
const checkTimeout = Duration.seconds(2)
/** How long closing a connection may take before its socket is destroyed (finalizers stay short). */
const closeTimeout = Duration.seconds(1)
/** Connecting again: soon after a loss, at most every 5 s while the server is down. */
const relisten = Schedule.exponential("250 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered,
)

export interface ListenerOptions {
  /** How to connect (with the password: never logged). */
  readonly connection: pg.ClientConfig
  /** The server as the logs name it, without its password. */
  readonly server: string
}

/** The connection options of a `PgClient`'s pool, for a connection of its own. */
export const connectionOf = (config: PgClientConfig): pg.ClientConfig => ({
  connectionString: config.url === undefined ? undefined : Redacted.value(config.url),
  host: config.host,
  port: config.port,
  database: config.database,
  user: config.username,
  password: config.password === undefined ? undefined : Redacted.value(config.password),
  ssl: config.ssl,
  ...(config.stream === undefined ? {} : { stream: config.stream }),
  connectionTimeoutMillis: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
  keepAlive: true,
  application_name: config.applicationName,
})

const reasonOf = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return error.message || (typeof code === "string" ? code : error.name)
}

/** A promise of the driver as an effect failing with a reason, bounded by `timeout`. */
const request = (what: string, run: () => Promise<unknown>, timeout: Duration.Duration) =>
  Effect.tryPromise({ try: run, catch: reasonOf }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => `no answer to ${what} within ${Duration.format(timeout)}`,
    }),
    Effect.asVoid,
  )

/** Ends the connection politely if it answers in time, else destroys its socket. */
const close = (client: pg.Client) =>
  Effect.promise(() => client.end()).pipe(
    // finalizers run uninterruptibly: without this, the timeout would wait for `end` anyway
    Effect.interruptible,
    Effect.timeout(closeTimeout),
    Effect.ignore,
    Effect.zipRight(Effect.sync(() => client.connection?.stream?.destroy())),
  )

/**
 * One connection's life: connect, `LISTEN`, run `listening`, then wake on each notification
 * until the connection is lost; fails with the reason.
 */
const session = (
  options: ListenerOptions,
  channel: string,
  listening: Effect.Effect<void>,
  wake: Effect.Effect<void>,
): Effect.Effect<never, string, Scope.Scope> =>
  Effect.gen(function* () {
    const lost = yield* Deferred.make<never, string>()
    const heard = yield* Queue.sliding<void>(1)
    // named for administrators (and tests) looking for it in pg_stat_activity
    const client = new pg.Client({
      ...options.connection,
      application_name: `${options.connection.application_name ?? "effect-kv"}: LISTEN ${channel}`,
    })
    // Never removed: the driver may report an error after `end`, and an EventEmitter with no
    // 'error' listener throws.
    client.on("error", (error) => Deferred.unsafeDone(lost, Effect.fail(reasonOf(error))))
    client.on("end", () => Deferred.unsafeDone(lost, Effect.fail("the connection ended")))
    client.on("notification", (message) => {
      if (message.channel === channel) heard.unsafeOffer(undefined)
    })
    yield* Effect.addFinalizer(() => close(client))
    const connectTimeout = Duration.millis((options.connection.connectionTimeoutMillis ?? 5000) + 1000)
    yield* request("connecting", () => client.connect(), connectTimeout)
    yield* request("LISTEN", () => client.query(`LISTEN ${pg.escapeIdentifier(channel)}`), checkTimeout)
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(heard), wake)))
    yield* listening
    const checks = Effect.forever(
      Effect.zipRight(
        Effect.sleep(checkEvery),
        request("a check", () => client.query("SELECT 1"), checkTimeout),
      ),
    )
    return yield* Effect.raceFirst(Deferred.await(lost), checks)
  })

/** Wake-ups of other processes' writes on PostgreSQL, by `LISTEN` on a connection per channel. */
export const make =
  (options: ListenerOptions): Wakeup.External =>
  (name, { wake, ready }) =>
    Effect.gen(function* () {
      const channel = Wakeup.pgChannel(name)
      const where = `LISTEN ${channel} on ${options.server}`
      const backoff = yield* Schedule.driver(relisten)
      let state: "starting" | "listening" | "lost" = "starting"
      const listening = Effect.suspend(() => {
        const was = state
        state = "listening"
        return Effect.zipRight(
          Effect.zipRight(backoff.reset, ready),
          was === "lost"
            ? Effect.zipRight(
                Effect.logInfo(`${where}: listening again; every waiter looks once for what it missed`),
                wake,
              )
            : Effect.void,
        )
      })
      const failed = (reason: string) =>
        Effect.suspend(() => {
          const was = state
          state = "lost"
          if (was === "lost") return Effect.logDebug(`${where}: still cannot listen: ${reason}`)
          return Effect.zipRight(
            Effect.logWarning(
              `${where}: ${was === "listening" ? "lost the connection" : "cannot listen"} (${reason}); ` +
                "trying again, idle waiters poll meanwhile",
            ),
            ready,
          )
        })
      return yield* Effect.forever(
        Effect.scoped(session(options, channel, listening, wake)).pipe(
          Effect.catchAll(failed),
          Effect.zipRight(Effect.ignore(backoff.next(undefined))),
        ),
      )
    }).pipe(Effect.withClock(Clock.make()))
