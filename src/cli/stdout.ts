/**
 * stdout, which its reader may close (`kv consumer stream s c1 | head -1`).
 *
 * A closed stdout interrupts the running command instead of exiting the process, so that every
 * finalizer runs: a consumer's lock is released, running tasks are given back, the benchmark's
 * keys are deleted. The process then exits 0 quietly. Later writes neither throw nor print.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Schema from "effect/Schema"

/** stdout failed otherwise than by its reader closing it (e.g. a full disk behind `> file`). */
export class StdoutError extends Schema.TaggedError<StdoutError>()("StdoutError", {
  reason: Schema.String,
}) {
  override get message() {
    return `cannot write to stdout: ${this.reason}`
  }
}

/** Done when stdout was closed (EPIPE), failed when it broke otherwise; the first error decides. */
const ended = Deferred.unsafeMake<void, StdoutError>(FiberId.none)

const end = (error: NodeJS.ErrnoException) =>
  Deferred.unsafeDone(
    ended,
    error.code === "EPIPE" ? Exit.void : Exit.fail(new StdoutError({ reason: error.message })),
  )

let watching = false

/**
 * Listens for stdout's errors for the life of the process: writes to a closed stdout may emit
 * 'error' again, and an 'error' without a listener would crash the process with a stack trace.
 */
const watch = () => {
  if (watching) return
  watching = true
  process.stdout.on("error", end)
}

/**
 * Runs `program` until stdout is closed; `program` is then interrupted (its finalizers run) and
 * the result is an interruption. A stdout that broke otherwise fails it with `StdoutError`.
 */
export const interruptWhenClosed = <A, E, R>(
  program: Effect.Effect<A, E, R>,
): Effect.Effect<A, E | StdoutError, R> =>
  Effect.suspend(() => {
    watch()
    return Effect.raceFirst(
      program,
      Effect.flatMap(Deferred.await(ended), () => Effect.interrupt),
    )
  })

/**
 * Writes `text` to stdout and completes once it has been handed to the operating system (so a
 * slow reader slows the writer down). When it cannot be delivered it never completes: the
 * caller does not go on as if it had been (commit the record, complete the task) but waits for
 * the interruption of `interruptWhenClosed`. Not for uninterruptible regions (finalizers).
 */
export const write = (text: string): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (process.stdout.destroyed) {
      Deferred.unsafeDone(ended, Exit.void)
      return
    }
    process.stdout.write(text, (error) => {
      if (error === null || error === undefined) resume(Effect.void)
      else end(error)
    })
  })

/** `text` and a newline, as `write`. */
export const writeLine = (text: string): Effect.Effect<void> => write(`${text}\n`)
