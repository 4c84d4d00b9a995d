/**
 * Wake-ups: how an idle task runner or stream consumer learns at once that there is work,
 * instead of waiting out its poll interval.
 *
 * A wake-up is only a hint: waiters still poll on their interval, so a lost signal costs one
 * interval, never a task or a record. Each channel has one hub per layer built, which every
 * waiter of the channel subscribes to. Signals come from two places:
 * - this process: a write through the layer calls `notify` after it committed;
 * - other processes, per backend: one external source per channel, started when the channel's
 *   first waiter subscribes and stopped when its last one leaves (a layer that only writes
 *   starts none). PostgreSQL `LISTEN`s on a connection of its own (fed by `pg_notify` in the
 *   writing transaction, see `pgListener.ts`); SQLite checks `PRAGMA data_version` on a short
 *   interval (`polled`); rqlite has none (its waiters poll).
 * The first subscriber waits until the source's first attempt is over (e.g. LISTEN took
 * effect), so that its first look for work comes after it. A source that loses its signal logs
 * it once, tries again, and wakes every waiter once when it is back, since changes made in the
 * gap went unheard.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as RcRef from "effect/RcRef"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { tryOfRepeated } from "./failureRuns.js"

/** What changed: the task table, or the change stream. */
export type Channel = "tasks" | "stream"

/**
 * The PostgreSQL channel that `pg_notify` signals a change of `channel` on (lower case). The
 * payload is not empty (`@effect/sql-pg`'s `listen` would drop notifications without one).
 */
export const pgChannel = (channel: Channel): string => `effect_kv_${channel}`

export interface Signal {
  /** Waits until the channel changed since the last wait (true), or for `timeout` (false). */
  readonly wait: (timeout: Duration.DurationInput) => Effect.Effect<boolean>
}

export interface Service {
  /** Wakes this process's waiters on `channel`; called after a local write committed. */
  readonly notify: (channel: Channel) => Effect.Effect<void>
  /** Starts listening to `channel`, until the scope closes. */
  readonly subscribe: (channel: Channel) => Effect.Effect<Signal, never, Scope.Scope>
}

export class Wakeup extends Context.Tag("effect-kv/Wakeup")<Wakeup, Service>() {}

export interface Hooks {
  /** Wakes every waiter of the channel. */
  readonly wake: Effect.Effect<void>
  /**
   * The first attempt is over: the source hears changes from now on, or it failed (logged) and
   * tries again. Subscribing waits for it, so that a waiter's first look comes after it.
   */
  readonly ready: Effect.Effect<void>
}

/**
 * Another process's changes on `channel`: runs until it is interrupted, running `wake` when
 * another process changed the channel, and once when it hears changes again after a gap in
 * which they went unheard. It deals with its own failures (logs them, tries again): it neither
 * fails nor ends.
 */
export type External = (channel: Channel, hooks: Hooks) => Effect.Effect<never>

/** Wake-ups from local writes, plus `external` ones (another process's writes). */
export const make = (external?: External): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function* () {
    const open = (channel: Channel) =>
      Effect.gen(function* () {
        // Capacity 1, sliding: a waiter that has not looked yet has one signal pending, not many.
        const hub = yield* PubSub.sliding<void>(1)
        const wake = PubSub.publish(hub, undefined)
        const start = (source: External) =>
          Effect.gen(function* () {
            const ready = yield* Deferred.make<void>()
            const running = yield* Effect.forkScoped(
              source(channel, { wake, ready: Deferred.complete(ready, Effect.void) }).pipe(
                Effect.catchAllCause((cause) =>
                  Effect.logError(`wake-ups from other processes on "${channel}" stopped`, cause),
                ),
                // a source that broke before it was ready must not hold up its subscribers
                Effect.ensuring(Deferred.complete(ready, Effect.void)),
              ),
            )
            // RcRef does not close the scope of an acquisition that was interrupted: stop it here
            yield* Effect.onInterrupt(Deferred.await(ready), () => Fiber.interrupt(running))
          })
        // Started by the first subscriber, stopped (its scope closed) when the last one leaves.
        const source = external === undefined ? undefined : yield* RcRef.make({ acquire: start(external) })
        return { hub, wake, source, listeners: 0 }
      })
    const channels = { tasks: yield* open("tasks"), stream: yield* open("stream") }
    return {
      // `notify` is on every write's path: skip the hub while nobody listens. Checked when the
      // effect runs, not when it is made: writers build `notify(channel)` once and run it often.
      notify: (channel) =>
        Effect.suspend(() => (channels[channel].listeners === 0 ? Effect.void : channels[channel].wake)),
      subscribe: (name) =>
        Effect.gen(function* () {
          const channel = channels[name]
          // subscribed before the source starts, so that none of its signals is missed
          const signals = yield* PubSub.subscribe(channel.hub)
          yield* Effect.acquireRelease(
            Effect.sync(() => channel.listeners++),
            () => Effect.sync(() => channel.listeners--),
          )
          if (channel.source !== undefined) yield* RcRef.get(channel.source)
          return {
            wait: (timeout) =>
              Effect.timeoutTo(Queue.take(signals), {
                duration: timeout,
                onSuccess: () => true,
                onTimeout: () => false,
              }),
          }
        }),
    }
  })

/** Local wake-ups only. */
export const layerLocal: Layer.Layer<Wakeup> = Layer.scoped(Wakeup, make())

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * A source that reads `version` every `interval` and wakes when it changed (e.g. SQLite's
 * `PRAGMA data_version`, which changes when another connection committed); ready after the
 * first reading. A failing read is logged once per run of failures, naming `what`; the first
 * read that works again wakes, since changes made meanwhile went unnoticed.
 */
export const polled =
  <A>(version: Effect.Effect<A, unknown>, interval: Duration.DurationInput, what: string): External =>
  (channel, { wake, ready }) =>
    Effect.suspend(() => {
      let last: { readonly version: A } | undefined
      const check = tryOfRepeated(version, {
        onFirstFailure: (cause) =>
          Effect.logWarning(
            `${what} failed: ${messageOf(Cause.squash(cause))}; until it works again, idle waiters on "${channel}" ` +
              "notice other processes' changes only when they poll",
            cause,
          ),
        onSuccess: (current, recovered) => {
          const changed = last !== undefined && last.version !== current
          last = { version: current }
          if (recovered) return Effect.zipRight(Effect.logInfo(`${what} works again`), wake)
          return changed ? wake : Effect.void
        },
      })
      return Effect.zipRight(check, ready).pipe(
        Effect.zipRight(Effect.repeat(Effect.delay(check, interval), Schedule.forever)),
        Effect.zipRight(Effect.never),
      )
    })
