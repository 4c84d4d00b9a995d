/**
 * Wake-ups: how an idle task runner or stream consumer learns at once that there is work,
 * instead of waiting out its poll interval.
 *
 * A wake-up is only a hint: waiters still poll on their interval, so a lost signal costs one
 * interval, never a task or a record. Signals come from two places:
 * - this process: a write through the layer calls `notify` after it committed;
 * - other processes, per backend: PostgreSQL's `LISTEN` (one connection per process, fed by
 *   `pg_notify` in the writing transaction), SQLite's `PRAGMA data_version` checked on a short
 *   interval; rqlite has none (its waiters poll).
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** What changed: the task table, or the change stream. */
export type Channel = "tasks" | "stream"

/**
 * The PostgreSQL channel that `pg_notify` signals a change of `channel` on (lower case). The
 * payload must not be empty: `@effect/sql-pg`'s `listen` drops notifications without one.
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

/**
 * Signals of other processes on a channel, for as long as the stream runs (it is interrupted
 * when the subscriber goes away). It should not fail: a source that breaks goes quiet.
 */
export type External = (channel: Channel) => Stream.Stream<unknown>

/** Wake-ups from local writes, plus `external` ones (another process's writes). */
export const make = (external?: External): Effect.Effect<Service> =>
  Effect.gen(function* () {
    const hubs = {
      tasks: yield* PubSub.sliding<void>(1),
      stream: yield* PubSub.sliding<void>(1),
    }
    // `notify` is on every write's path: skip the hub while nobody listens. Checked when the
    // effect runs, not when it is made: writers build `notify(channel)` once and run it often.
    const listeners = { tasks: 0, stream: 0 }
    return {
      notify: (channel) =>
        Effect.suspend(() =>
          listeners[channel] === 0 ? Effect.void : PubSub.publish(hubs[channel], undefined),
        ),
      subscribe: (channel) =>
        Effect.gen(function* () {
          const signals = yield* Queue.sliding<void>(1)
          const local = yield* PubSub.subscribe(hubs[channel])
          yield* Effect.acquireRelease(
            Effect.sync(() => listeners[channel]++),
            () => Effect.sync(() => listeners[channel]--),
          )
          yield* Effect.forkScoped(
            Effect.forever(Effect.flatMap(Queue.take(local), () => Queue.offer(signals, undefined))),
          )
          if (external !== undefined) {
            yield* Effect.forkScoped(
              Stream.runForEach(external(channel), () => Queue.offer(signals, undefined)),
            )
          }
          return {
            wait: (timeout) =>
              Effect.raceFirst(Effect.as(Queue.take(signals), true), Effect.as(Effect.sleep(timeout), false)),
          }
        }),
    }
  })

/** Local wake-ups only. */
export const layerLocal: Layer.Layer<Wakeup> = Layer.effect(Wakeup, make())

/** Polls `changed` every `interval` and signals when it says so (e.g. SQLite's data_version). */
export const polled = (
  changed: Effect.Effect<boolean, unknown>,
  interval: Duration.DurationInput,
): Stream.Stream<unknown> =>
  Stream.repeatEffectWithSchedule(
    Effect.orElseSucceed(changed, () => false),
    Schedule.spaced(interval),
  ).pipe(Stream.filter((changed) => changed))
