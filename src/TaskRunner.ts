/**
 * The `TaskRunner`: runs the tasks of a `Scheduler` with handlers, as Effect fibers.
 *
 * Handlers are `(task) => Effect`, registered by task name; the runner only takes tasks it has
 * a handler for. It is a scoped fiber tree:
 * - a poll loop (`Effect.repeat` with a `Schedule`) waits for free slots (`concurrency` of them,
 *   a `TSemaphore`), takes up to that many due tasks in one `lock`, and starts each in a
 *   `FiberMap` (by task id). It drains due tasks back to back; only when it took fewer than it
 *   asked for does it wait: until the next task is due, a wake-up says tasks changed, or
 *   `pollInterval` passed.
 * - each task's fiber runs its handler, then releases the task: completed, failed (with the
 *   handler's message; retried with backoff by the scheduler), or given back. Its slot is free
 *   as soon as the handler is done; releases in flight are limited to `concurrency` too, so a
 *   runner holds at most twice `concurrency` tasks.
 * - one fiber extends the locks of all running tasks (heartbeats) and stops those that were
 *   cancelled or whose lock was lost; one fiber keeps the tasks' timeouts (it sleeps until the
 *   earliest deadline). A timer fiber per task (`Effect.timeout`) cost as much as the rest of
 *   the runner's own work per task.
 * - database errors are logged and retried with capped, jittered exponential backoff; they
 *   never end the runner.
 * - when the runner is interrupted (its scope closes) it stops taking tasks, lets running
 *   handlers finish within `shutdownTimeout`, then interrupts them and gives their tasks back
 *   so that another runner takes them at once.
 *
 * Every task start and finish is logged (`task started`, `task finished`) with the runner id
 * and the task id as log annotations (`runner`, `task`, `name`; `result`, `error`, `ms`). */
import * as os from "node:os"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as STM from "effect/STM"
import * as TSemaphore from "effect/TSemaphore"
import * as Arg from "./Arguments.js"
import { type ReleaseStatus, Scheduler, type Task } from "./Scheduler.js"
import { InvalidArgumentError, type StoreError } from "./Store.js"

/** Runs one task. Its failure (or defect) fails the attempt, with its message as `lastError`. */
export type Handler<R = never> = (task: Task) => Effect.Effect<unknown, unknown, R>

export interface TaskRunnerOptions<R = never> {
  /** The handler of each task name. */
  readonly handlers: Readonly<Record<string, Handler<R>>>
  /** Who holds the tasks this runner takes (default `<hostname>-<pid>-<random>`); unique per runner. */
  readonly runnerId?: string | undefined
  /** Only these task names (default: every handler's); each needs a handler. */
  readonly taskTypes?: ReadonlyArray<string> | undefined
  /** Tasks run at once (default 1). */
  readonly concurrency?: number | undefined
  /**
   * The longest an idle runner waits before it looks again (default 10 seconds); it looks
   * earlier when the next task is due, or when woken by a new task.
   */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** How long a taken task stays locked without a heartbeat (default 5 minutes). */
  readonly lockDuration?: Duration.DurationInput | undefined
  /** How often running tasks' locks are extended (default a third of `lockDuration`). */
  readonly heartbeatInterval?: Duration.DurationInput | undefined
  /** How long running handlers may take to finish once the runner is interrupted (default 30 seconds). */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** The longest wait between retries after a database error (default 30 seconds). */
  readonly maxErrorBackoff?: Duration.DurationInput | undefined
}

export const defaults = {
  concurrency: 1,
  pollInterval: Duration.seconds(10),
  lockDuration: Duration.minutes(5),
  shutdownTimeout: Duration.seconds(30),
  maxErrorBackoff: Duration.seconds(30),
} as const

interface Config<R> {
  readonly runnerId: string
  readonly handlers: ReadonlyMap<string, Handler<R>>
  readonly taskTypes: ReadonlyArray<string>
  readonly concurrency: number
  readonly pollInterval: Duration.Duration
  readonly lockDuration: Duration.Duration
  readonly heartbeatInterval: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  readonly maxErrorBackoff: Duration.Duration
}

const decodeRunnerId = Arg.decoder(Arg.name("runner id"))
const decodeTaskType = Arg.decoder(Arg.name("task type"))
const decodeConcurrency = Arg.decoder(Arg.positive("concurrency"))
const decodeDuration = Arg.decoder(Arg.PositiveDuration)

/** A runner id unique to this process: `<hostname>-<pid>-<random>`. */
export const defaultRunnerId = (): string =>
  `${os.hostname()}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`

/** The options, checked, with the defaults filled in. */
export const validate = <R>(options: TaskRunnerOptions<R>): Effect.Effect<Config<R>, InvalidArgumentError> =>
  Effect.gen(function* () {
    const handlers = new Map(Object.entries(options.handlers))
    if (handlers.size === 0)
      return yield* new InvalidArgumentError({ message: "a task runner needs handlers" })
    for (const name of handlers.keys()) yield* decodeTaskType(name)
    const taskTypes = options.taskTypes === undefined ? [...handlers.keys()] : [...new Set(options.taskTypes)]
    for (const name of taskTypes) {
      yield* decodeTaskType(name)
      if (!handlers.has(name)) {
        return yield* new InvalidArgumentError({
          message: `no handler for task type "${name}" (handlers: ${[...handlers.keys()].join(", ")})`,
        })
      }
    }
    const lockDuration = yield* decodeDuration(options.lockDuration ?? defaults.lockDuration)
    const heartbeatInterval = yield* decodeDuration(
      options.heartbeatInterval ?? Duration.millis(Math.max(1, Duration.toMillis(lockDuration) / 3)),
    )
    if (!Duration.lessThan(heartbeatInterval, lockDuration)) {
      return yield* new InvalidArgumentError({
        message:
          "the heartbeat interval must be shorter than the lock duration, or locks expire while tasks run",
      })
    }
    return {
      runnerId: yield* decodeRunnerId(options.runnerId ?? defaultRunnerId()),
      handlers,
      taskTypes,
      concurrency: yield* decodeConcurrency(options.concurrency ?? defaults.concurrency),
      pollInterval: yield* decodeDuration(options.pollInterval ?? defaults.pollInterval),
      lockDuration,
      heartbeatInterval,
      shutdownTimeout: yield* decodeDuration(options.shutdownTimeout ?? defaults.shutdownTimeout),
      maxErrorBackoff: yield* decodeDuration(options.maxErrorBackoff ?? defaults.maxErrorBackoff),
    }
  })

/** How an attempt ended: what the log says, and how the task is given back (if at all). */
interface Outcome {
  readonly result: "completed" | "failed" | "timed-out" | "cancelled" | "lock-lost" | "returned"
  readonly release?: ReleaseStatus | undefined
  readonly error?: string | undefined
}

/** A failure's message, as `lastError` keeps it. */
const describe = (error: unknown): string => {
  if (typeof error === "string") return error
  if (typeof error === "object" && error !== null) {
    const { _tag, message } = error as { _tag?: unknown; message?: unknown }
    const text = typeof message === "string" && message.length > 0 ? message : undefined
    if (typeof _tag === "string") return text === undefined || text === "An error has occurred" ? _tag : text
    if (text !== undefined) return text
  }
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}

/** The shortest wait of an idle runner. */
const minimumWait = 10

const isStoreError = (error: unknown): error is StoreError =>
  (error as { _tag?: unknown } | null)?._tag === "StoreError"

/**
 * Runs the tasks of the `Scheduler` with `handlers` until interrupted; then shuts down
 * gracefully (see the module description). Fails only on invalid options.
 */
export const run = <R = never>(
  options: TaskRunnerOptions<R>,
): Effect.Effect<never, InvalidArgumentError, Scheduler | R> =>
  Effect.flatMap(validate(options), (config) =>
    Effect.scoped(runWith(config)).pipe(Effect.annotateLogs({ runner: config.runnerId })),
  )

/** The runner as a layer: it starts when the layer is built and shuts down gracefully with it. */
export const layer = <R = never>(
  options: TaskRunnerOptions<R>,
): Layer.Layer<never, InvalidArgumentError, Scheduler | R> =>
  Layer.scopedDiscard(
    Effect.flatMap(validate(options), (config) =>
      Effect.forkScoped(
        Effect.scoped(runWith(config)).pipe(Effect.annotateLogs({ runner: config.runnerId })),
      ),
    ),
  )

const runWith = <R>(config: Config<R>) =>
  Effect.gen(function* () {
    const scheduler = yield* Scheduler
    const { runnerId } = config
    const wakeups = yield* scheduler.wakeups
    /** Handlers running at once. */
    const slots = yield* STM.commit(TSemaphore.make(config.concurrency))
    /** Releases in flight at once. */
    const releases = yield* STM.commit(TSemaphore.make(config.concurrency))
    /** The running tasks' fibers, by task id. */
    const running = yield* FiberMap.make<string, void, never>()
    /** Why a running handler was stopped (timed out, cancelled, lock lost), by task id. */
    const stopped = new Map<string, Outcome>()
    const shuttingDown = yield* Ref.make(false)

    const backoff = Schedule.exponential(Duration.millis(100), 2).pipe(
      Schedule.union(Schedule.spaced(config.maxErrorBackoff)),
      Schedule.jittered,
    )

    /** Logs each database failure of `what` and tries again with backoff, for as long as `schedule` allows. */
    const retrying =
      (what: string, schedule: Schedule.Schedule<unknown, unknown> = backoff) =>
      <A, E, R2>(effect: Effect.Effect<A, E, R2>): Effect.Effect<A, E, R2> =>
        effect.pipe(
          Effect.tapError((error) =>
            isStoreError(error)
              ? Effect.logWarning(`${what} failed; retrying`).pipe(
                  Effect.annotateLogs("error", error.message),
                )
              : Effect.void,
          ),
          Effect.retry({ schedule, while: isStoreError }),
        )

    // --- one task -------------------------------------------------------------------

    /** The task's handler; its timeout is kept by the deadline watcher below. */
    const attempt = (task: Task) => {
      const handler = config.handlers.get(task.name)
      return handler === undefined
        ? Effect.fail(`no handler for task type "${task.name}"`)
        : Effect.asVoid(Effect.suspend(() => handler(task)))
    }

    const outcomeOf = (exit: Exit.Exit<void, unknown>, stopping: boolean): Outcome => {
      if (Exit.isSuccess(exit)) return { result: "completed", release: "completed" }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        const error = failure.value
        return { result: "failed", release: "failed", error: describe(error) }
      }
      const defect = Cause.dieOption(exit.cause)
      if (Option.isSome(defect)) return { result: "failed", release: "failed", error: describe(defect.value) }
      return stopping
        ? {
            result: "returned",
            release: "pending",
            error: `interrupted: runner ${runnerId} shut down before the task finished`,
          }
        : { result: "failed", release: "failed", error: "interrupted" }
    }

    const release = (task: Task, outcome: Outcome) =>
      outcome.release === undefined
        ? Effect.void
        : scheduler.release(task.id, runnerId, outcome.release, outcome.error).pipe(
            // after its lock has expired, the task is another runner's to give back
            Effect.tapError((error) =>
              isStoreError(error)
                ? Effect.logWarning("release failed; retrying").pipe(
                    Effect.annotateLogs("error", error.message),
                  )
                : Effect.void,
            ),
            Effect.retry({
              schedule: backoff.pipe(Schedule.upTo(config.lockDuration)),
              while: (error) =>
                isStoreError(error) ? Effect.map(Ref.get(shuttingDown), (stopping) => !stopping) : false,
            }),
            Effect.catchAll((error) =>
              Effect.logWarning("could not release the task").pipe(
                Effect.annotateLogs("error", error.message),
              ),
            ),
          )

    /**
     * Runs a taken task and releases it. Interrupted by the heartbeats (cancelled, lock lost),
     * it leaves the task alone; interrupted by the shutdown, it gives the task back.
     */
    const execute = (task: Task, handlerDone: Effect.Effect<void>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function* () {
          const startedAt = yield* Clock.currentTimeMillis
          yield* Effect.logInfo("task started")
          yield* watchDeadline(task, startedAt)
          const exit = yield* Effect.exit(restore(attempt(task)))
          deadlines.delete(task.id)
          yield* handlerDone
          const stoppedAs = stopped.get(task.id)
          stopped.delete(task.id)
          const outcome =
            stoppedAs !== undefined && Exit.isInterrupted(exit)
              ? stoppedAs
              : outcomeOf(exit, yield* Ref.get(shuttingDown))
          yield* release(task, outcome)
          const finishedAt = yield* Clock.currentTimeMillis
          yield* Effect.logInfo("task finished").pipe(
            Effect.annotateLogs({
              result: outcome.result,
              ms: finishedAt - startedAt,
              ...(outcome.error === undefined ? {} : { error: outcome.error }),
            }),
          )
        }),
      ).pipe(
        Effect.annotateLogs({ task: task.id, name: task.name }),
        Effect.withSpan("TaskRunner.execute", {
          attributes: { "task.id": task.id, "task.name": task.name },
          captureStackTrace: false,
        }),
      )

    // --- heartbeats -------------------------------------------------------------------

    /** Interrupts a running handler: timed out, cancelled, or its lock lost. */
    const stop = (id: string, fiber: Fiber.RuntimeFiber<void>, outcome: Outcome) =>
      Effect.suspend(() => {
        // only while its handler runs: afterwards the task's own result stands
        if (!deadlines.has(id)) return Effect.void
        stopped.set(id, outcome)
        return Fiber.interruptFork(fiber)
      })

    // --- timeouts ---------------------------------------------------------------------
    // One watcher for all running handlers rather than a timer fiber each (`Effect.timeout`
    // forks two fibers per call): it sleeps until the earliest deadline and stops the handlers
    // that passed theirs.

    /** The running handlers' deadlines (epoch ms) and timeouts (s), by task id. */
    const deadlines = new Map<string, { readonly at: number; readonly seconds: number }>()
    /** Wakes the watcher when a deadline comes before the one it sleeps until. */
    const earlierDeadline = yield* Queue.sliding<void>(1)
    let watching = Number.POSITIVE_INFINITY

    const watchDeadline = (task: Task, startedAt: number) =>
      Effect.suspend(() => {
        const at = startedAt + Math.ceil(task.timeoutSeconds * 1000)
        deadlines.set(task.id, { at, seconds: task.timeoutSeconds })
        return at < watching ? Queue.offer(earlierDeadline, undefined) : Effect.void
      })

    const stopOverdue = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      let next = Number.POSITIVE_INFINITY
      for (const [id, { at, seconds }] of deadlines) {
        if (at <= now) {
          const fiber = yield* FiberMap.get(running, id).pipe(Effect.option)
          if (Option.isSome(fiber)) {
            yield* stop(id, fiber.value, {
              result: "timed-out",
              release: "failed",
              error: `timed out after ${seconds}s`,
            })
          }
        } else if (at < next) next = at
      }
      watching = next
      yield* Number.isFinite(next)
        ? Effect.raceFirst(Queue.take(earlierDeadline), Effect.sleep(next - now))
        : Queue.take(earlierDeadline)
    })

    /** Extends the lock of every running task, one statement each. */
    const heartbeats = Effect.suspend(() =>
      Effect.forEach(
        Array.from(running),
        ([id, fiber]) =>
          scheduler.heartbeat(id, runnerId, config.lockDuration).pipe(
            retrying("heartbeat"),
            Effect.flatMap((state) =>
              state === "cancelled" ? stop(id, fiber, { result: "cancelled" }) : Effect.void,
            ),
            Effect.catchTags({
              TaskNotHeldError: (error) => stop(id, fiber, { result: "lock-lost", error: error.message }),
              InvalidArgumentError: Effect.die, // the options were checked
            }),
          ),
        { discard: true },
      ),
    )

    // --- the poll loop ----------------------------------------------------------------

    /** Waits for at least one free slot and takes every free one. */
    const takeFreeSlots = STM.commit(
      STM.flatMap(TSemaphore.available(slots), (free) =>
        free === 0 ? STM.retry : STM.as(TSemaphore.acquireN(slots, free), free),
      ),
    )
    const freeSlots = (n: number) => (n > 0 ? STM.commit(TSemaphore.releaseN(slots, n)) : Effect.void)

    /**
     * Runs a task in its slot. The slot is free once the handler is done; the release waits for
     * a place among `concurrency` releases in flight. So the next task need not wait for this
     * one's round trip, and a runner holds at most twice `concurrency` tasks.
     */
    const start = (task: Task) =>
      Effect.suspend(() => {
        let slotFree = false
        let releasing = false
        const handlerDone = Effect.suspend(() => {
          slotFree = true
          return Effect.zipRight(
            Effect.tap(STM.commit(TSemaphore.acquire(releases)), () => {
              releasing = true
            }),
            freeSlots(1),
          )
        })
        const done = Effect.suspend(() =>
          Effect.zipRight(
            slotFree ? Effect.void : freeSlots(1),
            releasing ? STM.commit(TSemaphore.release(releases)) : Effect.void,
          ),
        )
        return Effect.ensuring(execute(task, handlerDone), done)
      })

    /** Takes up to `wanted` tasks and starts them; not interrupted between the two. */
    const takeAndStart = (wanted: number) =>
      Effect.uninterruptible(
        Effect.tap(scheduler.lock(runnerId, config.lockDuration, config.taskTypes, wanted), (tasks) =>
          Effect.forEach(
            tasks,
            // forked from an uninterruptible region: the handler must be interruptible again
            (task) => FiberMap.run(running, task.id, Effect.interruptible(start(task))),
            { discard: true },
          ),
        ),
      ).pipe(
        retrying("taking tasks"),
        Effect.catchTag("InvalidArgumentError", Effect.die), // the options were checked
      )

    /**
     * Nothing more is due: wait for a wake-up, the next task's due time or `pollInterval`,
     * whichever comes first (a short pause at least, should a due task be out of reach).
     */
    const idle = Effect.gen(function* () {
      const next = yield* scheduler
        .nextDue(config.taskTypes)
        .pipe(retrying("looking for the next task"), Effect.catchTag("InvalidArgumentError", Effect.die))
      const now = yield* Clock.currentTimeMillis
      const poll = Duration.toMillis(config.pollInterval)
      const wait = Option.match(next, {
        onNone: () => poll,
        onSome: (due) => Math.min(poll, Math.max(minimumWait, due.getTime() - now)),
      })
      yield* wakeups.wait(Duration.millis(wait))
    })

    /** One round: take what is due; wait only when that was less than there was room for. */
    const pollOnce = Effect.gen(function* () {
      const wanted = yield* takeFreeSlots
      const taken = (yield* takeAndStart(wanted)).length
      yield* freeSlots(wanted - taken)
      if (taken < wanted) yield* idle
    })

    const poller = yield* Effect.forkScoped(
      Effect.repeat(
        // a defect (a bug) is logged, and the loop goes on after a pause
        Effect.catchAllCause(pollOnce, (cause) =>
          Effect.zipRight(Effect.logError("poll failed", cause), Effect.sleep(config.pollInterval)),
        ),
        Schedule.forever,
      ),
    )

    // heartbeats and timeouts go on while running tasks finish at shutdown: these fibers are stopped after them
    yield* Effect.forkScoped(Effect.schedule(heartbeats, Schedule.spaced(config.heartbeatInterval)))
    yield* Effect.forkScoped(Effect.forever(stopOverdue))

    // Runs first when the scope closes: stop taking, let handlers finish, then give the rest back.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(poller)
        yield* Effect.logInfo("task runner stopping").pipe(
          Effect.annotateLogs("running", yield* FiberMap.size(running)),
        )
        // finalizers are uninterruptible: the wait must be interruptible for the timeout to end it
        yield* Effect.ignore(
          Effect.timeout(Effect.interruptible(FiberMap.awaitEmpty(running)), config.shutdownTimeout),
        )
        yield* Ref.set(shuttingDown, true)
        yield* FiberMap.clear(running)
        yield* Effect.logInfo("task runner stopped")
      }),
    )

    yield* Effect.logInfo("task runner started").pipe(
      Effect.annotateLogs({ taskTypes: config.taskTypes.join(","), concurrency: config.concurrency }),
    )
    return yield* Effect.never
  })
