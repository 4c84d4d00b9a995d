/**
 * The `TaskRunner`: runs the tasks of a `Scheduler` with handlers, as Effect fibers.
 *
 * Handlers are `(task) => Effect`, registered by task name; the runner only takes tasks it has
 * a handler for. Each task it holds is one record of `internal/runner/TaskState` (prefetched,
 * handler, releasing), and three small loops work over them, each restarted (and logged) after
 * a defect:
 * - the poll loop takes up to the free slots plus `prefetch` due tasks in one `lock`, and
 *   drains due tasks back to back; only when it took fewer than it asked for does it wait:
 *   until the next task is due, a wake-up says tasks changed, or `pollInterval` passed.
 *   Taken tasks start in priority and due order as slots free up, each in its own fiber, which
 *   runs the handler, then releases the task: completed, failed (with the handler's message;
 *   retried with backoff by the scheduler), or given back. The slot is free once the handler is
 *   done; the scheduler writes concurrent releases together.
 * - the heartbeat loop extends the locks of all held tasks at once (one write), and stops
 *   those that were cancelled or whose lock was lost; the database's answer is their lease.
 * - the watcher sleeps until the earliest timeout or lease and stops the handlers past theirs:
 *   timed out (a failed attempt), or lease expired (its lock as last confirmed, minus a margin,
 *   has passed by the runner's clock: interrupted, logged, not reported completed, so that it
 *   never runs in two runners at once). Prefetched tasks whose lease lapsed are not started.
 * - database errors are logged and retried with capped, jittered exponential backoff; they
 *   never end the runner.
 * - when the runner is interrupted (its scope closes) it stops taking tasks, gives back the
 *   prefetched ones (uncounted), lets running handlers finish within `shutdownTimeout`, then
 *   interrupts them and gives their tasks back so that another runner takes them at once.
 *
 * - with `cron: true` (the default) it also runs the recurring schedules' ticker (`Cron.ts`).
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
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Arg from "./Arguments.js"
import * as Cron from "./Cron.js"
import { CronStorage } from "./internal/cronStorage.js"
import { type Entry, type Outcome, TaskState } from "./internal/runner/TaskState.js"
import { withSpanWhenTraced } from "./internal/tracing.js"
import * as KvMetrics from "./Metrics.js"
import { Scheduler, type Task } from "./Scheduler.js"
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
   * Tasks a runner may lock ahead of its free slots (default 0), so that one `lock` takes
   * many and a finished handler's slot is filled without a round trip. Tasks taken but not
   * started are given back (uncounted) at shutdown, and never run once their lease could not
   * be extended.
   */
  readonly prefetch?: number | undefined
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
  /**
   * Whether this runner also makes the ticks of the recurring schedules (`Cron.ts`) into tasks
   * while it runs (default true; needs the `CronStorage` every backend layer provides).
   */
  readonly cron?: boolean | undefined
}

export const defaults = {
  concurrency: 1,
  prefetch: 0,
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
  readonly prefetch: number
  readonly pollInterval: Duration.Duration
  readonly lockDuration: Duration.Duration
  readonly heartbeatInterval: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  readonly maxErrorBackoff: Duration.Duration
  readonly cron: boolean
}

const decodeRunnerId = Arg.decoder(Arg.name("runner id"))
const decodeTaskType = Arg.decoder(Arg.name("task type"))
const decodeConcurrency = Arg.decoder(Arg.positive("concurrency"))
const decodePrefetch = Arg.decoder(Arg.nonNegative("prefetch"))
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
      prefetch: yield* decodePrefetch(options.prefetch ?? defaults.prefetch),
      pollInterval: yield* decodeDuration(options.pollInterval ?? defaults.pollInterval),
      lockDuration,
      heartbeatInterval,
      shutdownTimeout: yield* decodeDuration(options.shutdownTimeout ?? defaults.shutdownTimeout),
      maxErrorBackoff: yield* decodeDuration(options.maxErrorBackoff ?? defaults.maxErrorBackoff),
      cron: options.cron !== false,
    }
  })

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

/**
 * How long before its lease expires (as last confirmed) a handler is stopped: a tenth of the
 * lock duration, and less than half the time a heartbeat has to extend it.
 */
const leaseMargin = (lockMillis: number, heartbeatMillis: number) =>
  Math.max(0, Math.min(lockMillis / 10, (lockMillis - heartbeatMillis) / 2))

/** Annotates the current fiber's log lines with the task (`task`, `name`). */
const annotateTask = (task: Task) =>
  FiberRef.update(FiberRef.currentLogAnnotations, (annotations) =>
    HashMap.set(HashMap.set(annotations, "task", task.id), "name", task.name),
  )

/** The shortest wait of an idle runner. */
const minimumWait = 10

const isStoreError = (error: unknown): error is StoreError =>
  (error as { _tag?: unknown } | null)?._tag === "StoreError"

/**
 * Whether info lines are logged: a task's `task started` and `task finished` are only built
 * then (the annotations of a line cost more than the check; the level is the fiber's).
 */
const infoLogged = Effect.map(FiberRef.get(FiberRef.currentMinimumLogLevel), (minimum) =>
  LogLevel.lessThanEqual(minimum, LogLevel.Info),
)

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
    const lockMillis = Duration.toMillis(config.lockDuration)
    const heartbeatMillis = Duration.toMillis(config.heartbeatInterval)
    const wakeups = yield* scheduler.wakeups
    const state = new TaskState(config.concurrency, config.prefetch, leaseMargin(lockMillis, heartbeatMillis))
    /** The fibers of the tasks (and of prefetched tasks being given back). */
    const running = yield* FiberSet.make<void, never>()
    const fork = yield* FiberSet.runtime(running)<R>()
    /** Room for more tasks: a handler finished, a task was released or dropped. */
    const roomMade = yield* Queue.sliding<void>(1)
    /** Wakes the watcher when a task needs it before the time it sleeps until. */
    const watchEarlier = yield* Queue.sliding<void>(1)
    let shuttingDown = false
    /** The runner's clock, read synchronously (set below to the clock of the runner's fiber). */
    let clockNow: () => number = () => Date.now()

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

    /** A loop that logs a defect (a bug) and starts again after a pause, rather than dying. */
    const forever = <E, R2>(what: string, once: Effect.Effect<void, E, R2>, pause: Duration.Duration) =>
      Effect.forever(
        Effect.catchAllCause(once, (cause) =>
          Effect.zipRight(Effect.logError(`${what} failed; restarting it`, cause), Effect.sleep(pause)),
        ),
      )

    // --- one task -------------------------------------------------------------------

    /** The task's handler; its timeout and lease are kept by the watcher. */
    const attempt = (task: Task) => {
      const handler = config.handlers.get(task.name)
      return handler === undefined
        ? Effect.fail(`no handler for task type "${task.name}"`)
        : Effect.asVoid(Effect.suspend(() => handler(task)))
    }

    const outcomeOf = (exit: Exit.Exit<void, unknown>): Outcome => {
      if (Exit.isSuccess(exit)) return { result: "completed", release: "completed" }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        const error = failure.value
        return { result: "failed", release: "failed", error: describe(error) }
      }
      const defect = Cause.dieOption(exit.cause)
      if (Option.isSome(defect)) return { result: "failed", release: "failed", error: describe(defect.value) }
      return shuttingDown
        ? {
            result: "returned",
            release: "pending",
            error: `interrupted: runner ${runnerId} shut down before the task finished`,
          }
        : { result: "failed", release: "failed", error: "interrupted" }
    }

    /** After its lock has expired, the task is another runner's to give back: retried only that long. */
    const releaseBackoff = backoff.pipe(Schedule.upTo(config.lockDuration))

    const couldNotRelease = (error: { readonly message: string }) =>
      Effect.as(
        Effect.logWarning("could not release the task").pipe(Effect.annotateLogs("error", error.message)),
        false,
      )

    /** Stores the release; whether it was stored. The first try goes without the retry machinery. */
    const release = (task: Task, outcome: Outcome): Effect.Effect<boolean> => {
      const status = outcome.release
      if (status === undefined) return Effect.succeed(false)
      const store = scheduler.release(task.id, runnerId, status, outcome.error)
      const logged = (error: { readonly message: string }) =>
        Effect.logWarning("release failed; retrying").pipe(Effect.annotateLogs("error", error.message))
      return Effect.matchEffect(store, {
        onSuccess: () => Effect.succeed(true),
        onFailure: (error) =>
          isStoreError(error) && !shuttingDown
            ? Effect.zipRight(
                logged(error),
                store.pipe(
                  Effect.tapError((error) => (isStoreError(error) ? logged(error) : Effect.void)),
                  Effect.retry({
                    schedule: releaseBackoff,
                    while: (error) => isStoreError(error) && !shuttingDown,
                  }),
                  Effect.as(true),
                  Effect.catchAll(couldNotRelease),
                ),
              )
            : couldNotRelease(error),
      })
    }

    const signal = (queue: Queue.Queue<void>) => queue.unsafeOffer(undefined)

    /**
     * Runs a started task and releases it. Interrupted by the watcher or the heartbeats (timed
     * out, cancelled, lock lost, lease expired), it is released as that says; interrupted by
     * the shutdown, it gives the task back.
     */
    const execute = (entry: Entry) => {
      const { task } = entry
      return Effect.uninterruptibleMask((restore) =>
        Effect.gen(function* () {
          // the runner's clock, read directly (a TestClock in tests)
          const startedAt = clockNow()
          const info = yield* infoLogged
          if (info) yield* Effect.logInfo("task started")
          yield* Metric.increment(KvMetrics.forTask(KvMetrics.tasksStarted, task.name))
          const exit = yield* Effect.exit(restore(attempt(task)))
          const handlerMs = clockNow() - startedAt
          yield* Metric.update(KvMetrics.forTask(KvMetrics.taskDuration, task.name), handlerMs)
          const stoppedAs = state.handlerDone(entry)
          dispatch()
          const outcome = stoppedAs !== undefined && Exit.isInterrupted(exit) ? stoppedAs : outcomeOf(exit)
          if (outcome.result === "lease-expired") {
            yield* Effect.logWarning("task lease expired; handler interrupted").pipe(
              Effect.annotateLogs("error", outcome.error ?? ""),
            )
          }
          const stored = yield* release(task, outcome)
          if (stored && outcome.release === "completed") {
            yield* Metric.increment(KvMetrics.forTask(KvMetrics.tasksCompleted, task.name))
          } else if (stored && outcome.release === "failed") {
            yield* Metric.increment(KvMetrics.forTask(KvMetrics.tasksFailed, task.name))
          }
          if (!info) return
          const finishedAt = clockNow()
          yield* Effect.logInfo("task finished").pipe(
            Effect.annotateLogs({
              result: outcome.result,
              ms: finishedAt - startedAt,
              ...(outcome.error === undefined ? {} : { error: outcome.error }),
            }),
          )
        }),
      ).pipe(
        Effect.catchAllCause((cause) => Effect.logError("task runner bug while running a task", cause)),
        Effect.ensuring(
          Effect.sync(() => {
            state.released(entry)
            dispatch()
          }),
        ),
        // the task's fiber is this effect alone: its annotations are set, not scoped (which costs more)
        (body) => Effect.zipRight(annotateTask(task), body),
        withSpanWhenTraced("TaskRunner.execute", {
          attributes: { "task.id": task.id, "task.name": task.name },
        }),
      )
    }

    /** A prefetched task that will not run: given back (unless lost), its slot free. */
    const giveBack = (entry: Entry, lapsed = false) =>
      fork(
        (lapsed ? Effect.logWarning("prefetched task's lease expired; not running it") : Effect.void).pipe(
          Effect.zipRight(scheduler.release(entry.task.id, runnerId, "pending")),
          Effect.catchAll((e) =>
            Effect.logInfo("could not give a prefetched task back").pipe(
              Effect.annotateLogs("error", e.message),
            ),
          ),
          Effect.annotateLogs({ task: entry.task.id, name: entry.task.name }),
        ),
        { immediate: false },
      )

    /**
     * Starts prefetched tasks while slots are free, after giving back those whose lease passed
     * (they must not run late). Synchronous: called from any fiber, after any transition.
     */
    function dispatch(): void {
      if (shuttingDown) return
      signal(roomMade)
      const now = clockNow()
      for (const entry of state.dropLapsed(now)) giveBack(entry, true)
      for (;;) {
        const entry = state.start(now)
        if (entry === undefined) return
        if (state.needsWatcher(entry)) signal(watchEarlier)
        // not run at once: this may be another task's fiber, whose span and logs are its own
        entry.fiber = fork(execute(entry), { immediate: false })
      }
    }
    /** Interrupts a running handler (timed out, cancelled, lock or lease lost); a waiting one is dropped. */
    const stop = (entry: Entry, outcome: Outcome) =>
      Effect.suspend(() => {
        if (entry.phase === "prefetched") {
          if (state.drop(entry)) dispatch()
          return Effect.void
        }
        const fiber = state.stop(entry, outcome)
        return fiber === undefined ? Effect.void : Fiber.interruptFork(fiber)
      })

    // --- the watcher: timeouts and leases ---------------------------------------------
    // One fiber for all held tasks rather than a timer fiber each (`Effect.timeout` forks two
    // fibers per call): it sleeps until the earliest deadline or lease and acts on what passed.

    const watchOnce = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const { leaseExpired, timedOut } = state.overdue(now)
      for (const entry of timedOut) {
        const seconds = entry.task.timeoutSeconds
        yield* stop(entry, { result: "timed-out", release: "failed", error: `timed out after ${seconds}s` })
      }
      for (const entry of leaseExpired) {
        yield* stop(entry, {
          result: "lease-expired",
          error: `the lock could not be extended and expires at ${new Date(entry.leaseUntil).toISOString()}`,
        })
      }
      // the prefetched tasks whose lease passed are given back
      dispatch()
      const next = state.nextCheck()
      yield* Number.isFinite(next)
        ? Effect.raceFirst(Queue.take(watchEarlier), Effect.sleep(Math.max(1, next - now)))
        : Queue.take(watchEarlier)
    })

    // --- heartbeats -------------------------------------------------------------------

    /** Extends the lock of one held task; a cancelled or lost one is stopped. */
    const beat = (entry: Entry) =>
      Effect.gen(function* () {
        const sentAt = yield* Clock.currentTimeMillis
        const result = yield* scheduler
          .heartbeat(entry.task.id, runnerId, config.lockDuration)
          .pipe(retrying("heartbeat", backoff.pipe(Schedule.upTo(config.heartbeatInterval))), Effect.either)
        if (result._tag === "Right") {
          if (result.right === "cancelled") return yield* stop(entry, { result: "cancelled" })
          return state.extended(entry, sentAt + lockMillis)
        }
        const error = result.left
        switch (error._tag) {
          case "TaskNotHeldError":
            return yield* stop(entry, { result: "lock-lost", error: error.message })
          case "InvalidArgumentError":
            return yield* Effect.die(error) // the options were checked
          default:
            // the watcher stops the handler if its lease runs out
            return yield* Effect.logWarning("heartbeat failed").pipe(
              Effect.annotateLogs("error", error.message),
            )
        }
      }).pipe(Effect.annotateLogs({ task: entry.task.id, name: entry.task.name }))

    /** Extends the locks of every held task at once (the scheduler writes them together). */
    const heartbeatOnce = Effect.zipRight(
      Effect.sleep(config.heartbeatInterval),
      Effect.suspend(() => Effect.forEach(state.held(), beat, { concurrency: "unbounded", discard: true })),
    )

    // --- the poll loop ----------------------------------------------------------------

    /** Takes up to `wanted` tasks and starts what fits; not interrupted between the two. */
    const take = (wanted: number) =>
      Effect.uninterruptible(
        Effect.flatMap(scheduler.lock(runnerId, config.lockDuration, config.taskTypes, wanted), (tasks) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            if (state.claimed(tasks, lockMillis, now)) signal(watchEarlier)
            dispatch()
            return tasks.length
          }),
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

    /** One round: take what there is room for; wait only when that was less than there was room for. */
    const pollOnce = Effect.gen(function* () {
      const wanted = state.wanted()
      if (wanted === 0) return yield* Queue.take(roomMade)
      const taken = yield* take(wanted)
      if (taken < wanted) yield* idle
    })

    // the clock of the runner's fiber (a TestClock in tests), read synchronously by `dispatch`
    const clock = yield* Effect.clock
    clockNow = () => clock.unsafeCurrentTimeMillis()

    const poller = yield* Effect.forkScoped(forever("poll", pollOnce, config.pollInterval))
    // heartbeats and the watcher go on while running tasks finish at shutdown: these fibers are stopped after them
    // (a round of heartbeats begins with its interval: no pause needed)
    yield* Effect.forkScoped(forever("heartbeats", heartbeatOnce, Duration.zero))
    yield* Effect.forkScoped(forever("task watcher", watchOnce, Duration.seconds(1)))
    // the recurring schedules' ticker, where the backend has schedules (every backend layer's does)
    const cronStorage = config.cron ? yield* Effect.serviceOption(CronStorage) : Option.none()
    if (Option.isSome(cronStorage)) {
      yield* Effect.forkScoped(Effect.provideService(Cron.tickWhileRunning, CronStorage, cronStorage.value))
    }

    // Runs first when the scope closes: stop taking, give back what did not start, let
    // handlers finish, then give the rest back.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(poller)
        const waiting = state.dropAll()
        yield* Effect.logInfo("task runner stopping").pipe(
          Effect.annotateLogs({
            running: state.running,
            releasing: state.releasing,
            prefetched: waiting.length,
          }),
        )
        for (const entry of waiting) giveBack(entry)
        // finalizers are uninterruptible: the wait must be interruptible for the timeout to end it
        yield* Effect.ignore(
          Effect.timeout(Effect.interruptible(FiberSet.awaitEmpty(running)), config.shutdownTimeout),
        )
        shuttingDown = true
        yield* FiberSet.clear(running)
        yield* Effect.logInfo("task runner stopped")
      }),
    )

    yield* Effect.logInfo("task runner started").pipe(
      Effect.annotateLogs({
        taskTypes: config.taskTypes.join(","),
        concurrency: config.concurrency,
        prefetch: config.prefetch,
      }),
    )
    return yield* Effect.never
  })
