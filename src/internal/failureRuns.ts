/**
 * Work that runs again and again (a poll, a sweep) and keeps running through failures: a
 * failure is logged once per run of failures, not on every try, and the first success after a
 * run of failures is told apart, so that it can be logged (and acted on) once.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"

/**
 * `effect` as one try of such work. Make it once and repeat the result (the state of the run of
 * failures lives in it): `onFirstFailure` runs at the first failure of a run, `onSuccess` on
 * every success, told whether it ends a run of failures. Interruption is passed on.
 */
export const tryOfRepeated = <A, E, R, R2>(
  effect: Effect.Effect<A, E, R>,
  handlers: {
    readonly onFirstFailure: (cause: Cause.Cause<E>) => Effect.Effect<void>
    readonly onSuccess: (value: A, recovered: boolean) => Effect.Effect<void, never, R2>
  },
): Effect.Effect<void, never, R | R2> => {
  let failing = false
  return Effect.matchCauseEffect(effect, {
    onFailure: (cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause) as Effect.Effect<never>
      if (failing) return Effect.void
      failing = true
      return handlers.onFirstFailure(cause)
    },
    onSuccess: (value) => {
      const recovered = failing
      failing = false
      return handlers.onSuccess(value, recovered)
    },
  })
}
