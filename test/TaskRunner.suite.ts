/**
 * The TaskRunner on every backend: draining, concurrency, failures and retries, timeouts,
 * heartbeats and cancellation, database errors, graceful shutdown.
 *
 * `taskRunnerSuite(name, backend)` registers the tests; `backend` must give a fresh database.
 * The runner runs on the `TestClock` (shared by the suite's tests), and nothing here waits on
 * the wall clock: tests wait for what the runner did through a probe around the `Scheduler`
 * (every lock, release and heartbeat is published once it returned) and through its log
 * messages. Each test uses task names of its own.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as KvMetrics from "../src/Metrics.js"
import {
  type HeartbeatResult,
  type ReleaseStatus,
  Scheduler,
  Task,
  type TaskOptions,
} from "../src/Scheduler.js"
import { Mutation, Store, StoreError } from "../src/Store.js"
import * as TaskRunner from "../src/TaskRunner.js"

// ---------------------------------------------------------------------------------------------
// The probe: what the runner asked of the Scheduler, and its log
// ---------------------------------------------------------------------------------------------

type Event =
  | { readonly op: "lock"; readonly ids: ReadonlyArray<string> }
  | { readonly op: "lock-failed" }
  | { readonly op: "release"; readonly id: string; readonly status: ReleaseStatus; readonly error?: string }
  | { readonly op: "heartbeat"; readonly id: string; readonly result: HeartbeatResult }
  | { readonly op: "heartbeat-failed"; readonly id: string }
  | { readonly op: "log"; readonly message: string }

interface ProbeService {
  readonly events: PubSub.PubSub<Event>
  /** How many of the next `lock` calls fail with a StoreError. */
  readonly failLocks: Ref.Ref<number>
  /** Whether heartbeats fail with a StoreError (the database out of reach). */
  readonly failHeartbeats: Ref.Ref<boolean>
  /** How many of the next heartbeats die (a defect, as a bug would). */
  readonly dieHeartbeats: Ref.Ref<number>
}

class Probe extends Context.Tag("test/TaskRunnerProbe")<Probe, ProbeService>() {}

const probeLayer = Layer.effect(
  Probe,
  Effect.all({
    events: PubSub.unbounded<Event>(),
    failLocks: Ref.make(0),
    failHeartbeats: Ref.make(false),
    dieHeartbeats: Ref.make(0),
  }),
)

const injected = new StoreError({
  operation: "lock",
  reason: "connect",
  detail: "injected failure",
  cause: null,
})

/** The backend's Scheduler, publishing what the runner did. */
const probedScheduler = Layer.effect(
  Scheduler,
  Effect.gen(function* () {
    const inner = yield* Scheduler
    const { dieHeartbeats, events, failHeartbeats, failLocks } = yield* Probe
    const publish = (event: Event) => PubSub.publish(events, event)
    return {
      ...inner,
      lock: (...args) =>
        Effect.flatMap(
          Ref.modify(failLocks, (n) => [n, Math.max(0, n - 1)] as const),
          (failing) =>
            failing > 0
              ? Effect.zipRight(publish({ op: "lock-failed" }), Effect.fail(injected))
              : Effect.tap(inner.lock(...args), (tasks) =>
                  publish({ op: "lock", ids: tasks.map((t) => t.id) }),
                ),
        ),
      release: (id, runnerId, status, error) =>
        Effect.tap(inner.release(id, runnerId, status, error), () =>
          publish({ op: "release", id, status, ...(error === undefined ? {} : { error }) }),
        ),
      heartbeat: (id, runnerId, duration) =>
        Effect.gen(function* () {
          if (yield* Ref.modify(dieHeartbeats, (n) => [n > 0, Math.max(0, n - 1)] as const)) {
            return yield* Effect.dieMessage("injected defect")
          }
          if (yield* Ref.get(failHeartbeats)) {
            yield* publish({ op: "heartbeat-failed", id })
            return yield* Effect.fail(
              new StoreError({
                operation: "heartbeat",
                reason: "connect",
                detail: "injected failure",
                cause: null,
              }),
            )
          }
          const result = yield* inner.heartbeat(id, runnerId, duration)
          yield* publish({ op: "heartbeat", id, result })
          return result
        }),
    }
  }),
)

const probed = <E>(backend: Layer.Layer<Scheduler | Store, E>) =>
  Layer.merge(
    probeLayer,
    Layer.merge(probedScheduler, Layer.effect(Store, Store)).pipe(
      Layer.provide(Layer.merge(probeLayer, backend)),
    ),
  )

/** The log messages of the runner go to the probe too (@effect/vitest keeps them off the console). */
const logToProbe = Layer.unwrapEffect(
  Effect.map(Probe, ({ events }) =>
    Logger.add(
      Logger.make(({ message }) => {
        const text = Array.isArray(message) ? message.join(" ") : String(message)
        events.unsafeOffer({ op: "log", message: text })
      }),
    ),
  ),
)

/** The probe's events from now on. */
const subscribe = Effect.flatMap(Probe, ({ events }) => PubSub.subscribe(events))

/** Waits for the next event that `matches`. */
const next = <A extends Event>(
  events: Queue.Dequeue<Event>,
  matches: (event: Event) => event is A,
): Effect.Effect<A> =>
  Effect.flatMap(Queue.take(events), (event) =>
    matches(event) ? Effect.succeed(event) : next(events, matches),
  )

const releasedAny = (event: Event): event is Extract<Event, { op: "release" }> => event.op === "release"
const logged =
  (message: string) =>
  (event: Event): event is Extract<Event, { op: "log" }> =>
    event.op === "log" && event.message === message
const heartbeatOf =
  (id: string) =>
  (event: Event): event is Extract<Event, { op: "heartbeat" }> =>
    event.op === "heartbeat" && event.id === id
const lockFailed = (event: Event): event is Extract<Event, { op: "lock-failed" }> =>
  event.op === "lock-failed"
const locked = (event: Event): event is Extract<Event, { op: "lock" }> => event.op === "lock"

/**
 * Moves the TestClock on by `step` until an event that `matches` arrives, letting real time pass
 * in between so that fibers woken by the clock (and their database round trips) can run: a
 * sleep may be registered just after a move, so one move is not enough.
 */
const advanceUntil = <A extends Event>(
  events: Queue.Dequeue<Event>,
  matches: (event: Event) => event is A,
  step: Duration.DurationInput,
  rounds = 400,
): Effect.Effect<A> =>
  Effect.gen(function* () {
    for (let round = 0; round < rounds; round++) {
      for (;;) {
        const event = yield* Queue.poll(events)
        if (Option.isNone(event)) break
        if (matches(event.value)) return event.value
      }
      yield* TestClock.adjust(step)
      yield* TestServices.provideLive(Effect.sleep("5 millis"))
    }
    return yield* Effect.dieMessage(`no such event after ${rounds} steps of ${Duration.format(step)}`)
  })

const create = (name: string, options?: TaskOptions, payload: unknown = {}) =>
  Effect.flatMap(Scheduler, (scheduler) =>
    Effect.flatMap(Task.make(name, payload, options), scheduler.create),
  )

const getTask = (id: string) =>
  Effect.flatMap(Scheduler, (scheduler) => Effect.map(scheduler.get(id), Option.getOrThrow))

/**
 * Starts a runner in the test's scope (interrupted, i.e. shut down, when the test ends), its
 * log going to the probe.
 */
const start = <R>(options: TaskRunner.TaskRunnerOptions<R>) =>
  Effect.forkScoped(TaskRunner.run({ pollInterval: "1 hour", ...options }).pipe(Effect.provide(logToProbe)))

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

export const taskRunnerSuite = (name: string, backend: Layer.Layer<Scheduler | Store, unknown>) =>
  layer(probed(backend), { timeout: Duration.minutes(2) })(name, (it) => {
    it.effect("invalid options are refused before anything runs", () =>
      Effect.gen(function* () {
        const handlers = { a: () => Effect.void }
        const bad: ReadonlyArray<TaskRunner.TaskRunnerOptions> = [
          { handlers: {} },
          { handlers, taskTypes: ["b"] },
          { handlers, concurrency: 0 },
          { handlers, runnerId: "" },
          { handlers, lockDuration: 0 },
          { handlers, pollInterval: "-1 seconds" },
          { handlers, lockDuration: "10 seconds", heartbeatInterval: "10 seconds" },
        ]
        for (const options of bad) {
          const error = yield* Effect.flip(TaskRunner.run(options))
          assert.strictEqual(error._tag, "InvalidArgumentError")
        }
      }),
    )

    it.effect(
      "concurrent releases and heartbeats are written together, each caller getting its own answer",
      () =>
        Effect.gen(function* () {
          const scheduler = yield* Scheduler
          const tasks = yield* Effect.forEach([0, 1, 2, 3, 4, 5], (i) =>
            create("batched", { maxRetries: 3 }, { i }),
          )
          const mine = yield* scheduler.lock("batcher", "1 minute", ["batched"], 5)
          assert.strictEqual(mine.length, 5)
          const [theirs] = yield* scheduler.lock("other", "1 minute", ["batched"], 5)
          assert.isDefined(theirs)
          const ids = mine.map((t) => t.id)
          const beats = yield* Effect.all(
            [...ids, theirs!.id].map((id) => Effect.either(scheduler.heartbeat(id, "batcher", "2 minutes"))),
            { concurrency: "unbounded" },
          )
          assert.deepStrictEqual(
            beats.slice(0, 5).map((b) => b._tag === "Right" && b.right),
            ["running", "running", "running", "running", "running"],
          )
          assert.strictEqual(beats[5]!._tag, "Left")
          const statuses: ReadonlyArray<ReleaseStatus> = [
            "completed",
            "failed",
            "pending",
            "cancelled",
            "completed",
          ]
          const results = yield* Effect.all(
            [
              ...ids.map((id, i) => Effect.either(scheduler.release(id, "batcher", statuses[i]!, `e${i}`))),
              // not held by this runner, and a second release of a task released in the same tick
              Effect.either(scheduler.release(theirs!.id, "batcher", "completed")),
              Effect.either(scheduler.release(ids[0]!, "batcher", "completed")),
            ],
            { concurrency: "unbounded" },
          )
          assert.deepStrictEqual(
            results.map((r) => r._tag),
            ["Right", "Right", "Right", "Right", "Right", "Left", "Left"],
          )
          for (const r of results.slice(5)) {
            assert.strictEqual(r._tag === "Left" && r.left._tag, "TaskNotHeldError")
          }
          const after = yield* Effect.forEach(ids, getTask)
          assert.deepStrictEqual(
            after.map((t) => [t.status, t.retryCount, t.lastError]),
            [
              ["completed", 0, "e0"],
              ["pending", 1, "e1"],
              ["pending", 0, "e2"],
              ["cancelled", 0, "e3"],
              ["completed", 0, "e4"],
            ],
          )
          assert.isDefined(after[0]!.completedAt)
          assert.strictEqual((yield* getTask(theirs!.id)).lockedBy, "other")
          assert.strictEqual(tasks.length, 6)
        }),
    )

    it.scoped("drains due tasks, each once, `concurrency` handlers at a time, woken by create", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const started = yield* Queue.unbounded<string>()
        const gate = yield* Deferred.make<void>()
        let inHandlers = 0
        let mostInHandlers = 0
        yield* start({
          runnerId: "drainer",
          concurrency: 4,
          handlers: {
            drain: (task) =>
              Effect.sync(() => {
                mostInHandlers = Math.max(mostInHandlers, ++inHandlers)
              }).pipe(
                Effect.zipRight(Queue.offer(started, task.id)),
                Effect.zipRight(Deferred.await(gate)),
                Effect.zipRight(Effect.yieldNow()),
                Effect.ensuring(Effect.sync(() => inHandlers--)),
              ),
          },
        })
        yield* next(events, locked) // the first look found nothing: the runner waits (1 hour)
        const tasks = yield* Effect.forEach(
          Array.from({ length: 10 }, (_, i) => i),
          (i) => create("drain", {}, { i }),
        )
        // four run at once, and no more
        const firstFour = yield* Effect.forEach([1, 2, 3, 4], () => Queue.take(started))
        assert.strictEqual(new Set(firstFour).size, 4)
        yield* Deferred.succeed(gate, undefined)
        const seen = new Set<string>()
        let inFlight = 0
        while (seen.size < tasks.length) {
          const event = yield* Queue.take(events)
          if (event.op === "lock") inFlight += event.ids.length
          if (event.op === "release") {
            assert.strictEqual(event.status, "completed")
            assert.isFalse(seen.has(event.id), "released twice")
            seen.add(event.id)
            inFlight--
          }
          // held: the running handlers, and as many tasks on their way back
          assert.isAtMost(inFlight, 8)
        }
        assert.strictEqual(mostInHandlers, 4)
        const ran = yield* Queue.takeAll(started)
        assert.strictEqual(firstFour.length + ran.length, tasks.length)
        for (const task of tasks) {
          const done = yield* getTask(task.id)
          assert.strictEqual(done.status, "completed")
          assert.strictEqual(done.lockedBy, "drainer")
          assert.strictEqual(done.retryCount, 0)
        }
      }),
    )

    it.scoped("a failing handler is released as failed with its message, retried after the backoff", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const attempts = yield* Ref.make(0)
        const task = yield* create("flaky")
        yield* start({
          pollInterval: "1 second",
          handlers: {
            flaky: () =>
              Effect.flatMap(
                Ref.updateAndGet(attempts, (n) => n + 1),
                (n) =>
                  n === 1 ? Effect.fail(new Error("boom")) : n === 2 ? Effect.die("kaput") : Effect.void,
              ),
          },
        })
        const first = yield* next(events, releasedAny)
        assert.deepStrictEqual(first, { op: "release", id: task.id, status: "failed", error: "boom" })
        const pending = yield* getTask(task.id)
        assert.strictEqual(pending.status, "pending")
        assert.strictEqual(pending.retryCount, 1)
        assert.strictEqual(pending.lastError, "boom")
        const second = yield* advanceUntil(events, releasedAny, "10 seconds")
        assert.deepStrictEqual(second, { op: "release", id: task.id, status: "failed", error: "kaput" })
        const third = yield* advanceUntil(events, releasedAny, "10 seconds")
        assert.strictEqual(third.status, "completed")
        const done = yield* getTask(task.id)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.retryCount, 2)
        // each retry waited out its backoff (1 minute, then 2)
        assert.isAtLeast(done.startedAt!.getTime() - pending.scheduledFor.getTime(), 2 * 60_000)
        assert.strictEqual(done.lastError, "kaput")
        assert.strictEqual(yield* Ref.get(attempts), 3)
      }),
    )

    it.scoped("a handler that exceeds its timeout is interrupted and released as failed", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const startedAt = yield* Deferred.make<number>()
        const interruptedAt = yield* Deferred.make<number>()
        const task = yield* create("slow", { timeout: "5 seconds", maxRetries: 0 })
        yield* start({
          handlers: {
            slow: () =>
              Effect.zipRight(
                Effect.flatMap(TestClock.currentTimeMillis, (now) => Deferred.succeed(startedAt, now)),
                Effect.onInterrupt(Effect.never, () =>
                  Effect.flatMap(TestClock.currentTimeMillis, (now) => Deferred.succeed(interruptedAt, now)),
                ),
              ),
          },
        })
        yield* Deferred.await(startedAt)
        const release = yield* advanceUntil(events, releasedAny, "1 second")
        assert.deepStrictEqual(release, {
          op: "release",
          id: task.id,
          status: "failed",
          error: "timed out after 5s",
        })
        // not before its timeout (how far past it depends on the steps of the clock)
        const ran = (yield* Deferred.await(interruptedAt)) - (yield* Deferred.await(startedAt))
        assert.isAtLeast(ran, 5000)
        const failed = yield* getTask(task.id)
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.lastError, "timed out after 5s")
      }),
    )

    it.scoped("heartbeats extend the lock while a handler runs; a cancel interrupts it at the next one", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const running = yield* Deferred.make<void>()
        const interrupted = yield* Deferred.make<void>()
        const task = yield* create("beating")
        yield* start({
          runnerId: "beater",
          lockDuration: "30 seconds",
          heartbeatInterval: "10 seconds",
          handlers: {
            beating: () =>
              Effect.zipRight(
                Deferred.succeed(running, undefined),
                Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined)),
              ),
          },
        })
        yield* Deferred.await(running)
        const t0 = yield* TestClock.currentTimeMillis
        assert.deepStrictEqual((yield* getTask(task.id)).lockExpiresAt, new Date(t0 + 30_000))
        let expires = t0 + 30_000
        for (let beat = 1; beat <= 3; beat++) {
          assert.strictEqual(
            (yield* advanceUntil(events, heartbeatOf(task.id), "5 seconds")).result,
            "running",
          )
          // extended to 30 s after the heartbeat, which came at least 10 s after the one before
          const extended = (yield* getTask(task.id)).lockExpiresAt!.getTime()
          assert.isAtLeast(extended, t0 + beat * 10_000 + 30_000)
          assert.isAtLeast(extended, expires + 10_000)
          assert.isAtMost(extended, (yield* TestClock.currentTimeMillis) + 30_000)
          expires = extended
        }
        // without the heartbeats, the lock would have expired by now
        assert.isAtLeast((yield* TestClock.currentTimeMillis) - t0, 30_000)
        assert.strictEqual((yield* getTask(task.id)).lockedBy, "beater")
        yield* Effect.flatMap(Scheduler, (scheduler) => scheduler.cancel(task.id))
        assert.strictEqual(
          (yield* advanceUntil(events, heartbeatOf(task.id), "5 seconds")).result,
          "cancelled",
        )
        yield* Deferred.await(interrupted)
        yield* next(events, logged("task finished"))
        const cancelled = yield* getTask(task.id)
        assert.strictEqual(cancelled.status, "cancelled")
        assert.strictEqual(cancelled.retryCount, 0)
        assert.isNull(cancelled.lastError)
      }),
    )

    it.scoped("database errors are logged and retried with backoff; the runner keeps going", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const { failLocks } = yield* Probe
        const task = yield* create("unlucky")
        yield* Ref.set(failLocks, 3)
        const runner = yield* start({ handlers: { unlucky: () => Effect.void } })
        yield* next(events, lockFailed)
        yield* next(events, logged("taking tasks failed; retrying"))
        // the backoff (100 ms, doubled, jittered) is on the TestClock
        const [taken] = (yield* advanceUntil(events, locked, "1 second")).ids
        assert.strictEqual(yield* Ref.get(failLocks), 0) // all three failures happened
        assert.strictEqual(taken, task.id)
        assert.strictEqual((yield* next(events, releasedAny)).status, "completed")
        assert.isTrue(Option.isNone(yield* Fiber.poll(runner)))
      }),
    )

    it.scoped("shutdown stops taking tasks and lets running handlers finish", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const running = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        const first = yield* create("graceful")
        const runner = yield* start({
          handlers: {
            graceful: () => Effect.zipRight(Deferred.succeed(running, undefined), Deferred.await(gate)),
          },
        })
        yield* Deferred.await(running)
        const stopping = yield* Effect.fork(Fiber.interrupt(runner))
        yield* next(events, logged("task runner stopping"))
        const second = yield* create("graceful") // not taken: the runner stopped taking tasks
        yield* Deferred.succeed(gate, undefined)
        assert.deepStrictEqual(yield* next(events, releasedAny), {
          op: "release",
          id: first.id,
          status: "completed",
        })
        yield* Fiber.join(stopping)
        assert.strictEqual((yield* getTask(first.id)).status, "completed")
        const untouched = yield* getTask(second.id)
        assert.strictEqual(untouched.status, "pending")
        assert.isNull(untouched.lockedBy)
      }),
    )

    it.scoped(
      "after the shutdown timeout, handlers are interrupted and their tasks given back uncounted",
      () =>
        Effect.gen(function* () {
          const events = yield* subscribe
          const running = yield* Deferred.make<void>()
          const task = yield* create("stuck")
          const runner = yield* start({
            runnerId: "leaving",
            shutdownTimeout: "10 seconds",
            handlers: { stuck: () => Effect.zipRight(Deferred.succeed(running, undefined), Effect.never) },
          })
          yield* Deferred.await(running)
          const stopping = yield* Effect.fork(Fiber.interrupt(runner))
          yield* next(events, logged("task runner stopping"))
          const release = yield* advanceUntil(events, releasedAny, "5 seconds")
          assert.strictEqual(release.status, "pending")
          yield* Fiber.join(stopping)
          const back = yield* getTask(task.id)
          assert.strictEqual(back.status, "pending")
          assert.strictEqual(back.retryCount, 0)
          assert.isNull(back.lockedBy)
          assert.include(back.lastError, "leaving shut down")
        }),
    )

    it.scoped("an idle runner is woken by a task created in a mutateAll batch (the outbox)", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const store = yield* Store
        const ran = yield* Deferred.make<unknown>()
        yield* start({
          runnerId: "outbox-runner",
          handlers: { "outbox-run": (task) => Deferred.succeed(ran, task.payload) },
        })
        yield* next(events, locked) // the first look found nothing: the runner waits (1 hour)
        const task = yield* Task.make("outbox-run", { order: 7 })
        yield* store.mutateAll([Mutation.put("outbox-run/order", 0, { order: 7 }), Mutation.task(task)])
        // no TestClock step: only the wake-up can start it
        assert.deepStrictEqual(yield* Deferred.await(ran), { order: 7 })
        yield* store.delete("outbox-run/order")
      }),
    )

    it.scoped("a task due later is taken when it is due, not at the next poll", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const task = yield* create("later", { delay: "30 seconds" })
        yield* start({ pollInterval: "1 hour", handlers: { later: () => Effect.void } })
        // at most 400 steps of 5 s: far less than the poll interval
        const release = yield* advanceUntil(events, releasedAny, "5 seconds")
        assert.strictEqual(release.id, task.id)
        const done = yield* getTask(task.id)
        assert.isAtLeast(done.startedAt!.getTime(), done.scheduledFor.getTime())
        assert.isBelow(done.startedAt!.getTime() - done.scheduledFor.getTime(), 30 * 60_000)
      }),
    )

    it.scoped("only tasks it has handlers for are taken", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const other = yield* create("not-mine")
        const mine = yield* create("mine")
        yield* start({ handlers: { mine: () => Effect.void } })
        const release = yield* next(events, releasedAny)
        assert.strictEqual(release.id, mine.id)
        const untouched = yield* getTask(other.id)
        assert.strictEqual(untouched.status, "pending")
        assert.isUndefined(untouched.startedAt)
      }),
    )

    it.scoped("records task metrics: started, completed, failed once stored, handler durations", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        // the metric registry is global: a task name of this run only
        const name = `metered-${crypto.randomUUID().slice(0, 8)}`
        const read = Effect.all({
          started: Metric.value(KvMetrics.forTask(KvMetrics.tasksStarted, name)),
          completed: Metric.value(KvMetrics.forTask(KvMetrics.tasksCompleted, name)),
          failed: Metric.value(KvMetrics.forTask(KvMetrics.tasksFailed, name)),
          duration: Metric.value(KvMetrics.forTask(KvMetrics.taskDuration, name)),
        })
        const before = yield* read
        yield* create(name, { maxRetries: 0 }, { fail: false })
        yield* create(name, { maxRetries: 0 }, { fail: true })
        yield* create(name, { maxRetries: 0 }, { fail: false })
        yield* start({
          concurrency: 1,
          handlers: {
            [name]: (task) =>
              Effect.zipRight(
                TestClock.adjust("3 millis"),
                (task.payload as { fail: boolean }).fail ? Effect.fail("no") : Effect.void,
              ),
          },
        })
        for (let i = 0; i < 3; i++) yield* next(events, releasedAny)
        yield* next(events, logged("task finished"))
        const after = yield* read
        assert.strictEqual(after.started.count - before.started.count, 3)
        assert.strictEqual(after.completed.count - before.completed.count, 2)
        assert.strictEqual(after.failed.count - before.failed.count, 1)
        assert.strictEqual(after.duration.count - before.duration.count, 3)
        assert.isAtLeast(after.duration.sum - before.duration.sum, 9)
      }),
    )

    it.scoped("prefetch: one lock takes free slots plus prefetch; every task runs once, in due order", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const t0 = yield* TestClock.currentTimeMillis
        // created latest-due first: due order is not creation order
        const tasks = yield* Effect.forEach(
          Array.from({ length: 12 }, (_, i) => 11 - i),
          (i) => create("prefetched", { scheduledFor: new Date(t0 - 1000 + i) }, { i }),
        )
        const order: Array<number> = []
        let inHandlers = 0
        let most = 0
        yield* start({
          runnerId: "prefetcher",
          concurrency: 2,
          prefetch: 3,
          handlers: {
            prefetched: (task) =>
              Effect.sync(() => {
                most = Math.max(most, ++inHandlers)
                order.push((task.payload as { i: number }).i)
              }).pipe(Effect.zipRight(Effect.yieldNow()), Effect.ensuring(Effect.sync(() => inHandlers--))),
          },
        })
        const first = yield* next(events, locked)
        assert.strictEqual(first.ids.length, 5) // 2 free slots + 3 prefetched
        const seen = new Set<string>()
        let held = first.ids.length
        while (seen.size < tasks.length) {
          const event = yield* Queue.take(events)
          if (event.op === "lock") held += event.ids.length
          if (event.op === "release") {
            assert.strictEqual(event.status, "completed")
            assert.isFalse(seen.has(event.id), "released twice")
            seen.add(event.id)
            held--
          }
          // running, releasing and prefetched: twice concurrency + prefetch at most
          assert.isAtMost(held, 2 * (2 + 3))
        }
        assert.isAtMost(most, 2)
        // what one runner claimed starts in due order (two handlers at a time may finish in any order)
        assert.deepStrictEqual(
          order.slice(0, 5).sort((a, b) => a - b),
          [0, 1, 2, 3, 4],
        )
        for (let i = 0; i + 2 < order.length; i++) assert.isBelow(order[i]!, order[i + 2]!)
        for (const task of tasks) assert.strictEqual((yield* getTask(task.id)).status, "completed")
      }),
    )

    it.scoped("prefetched tasks not started are given back at shutdown, uncounted", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const running = yield* Deferred.make<string>()
        const gate = yield* Deferred.make<void>()
        const tasks = yield* Effect.forEach([0, 1, 2, 3], (i) => create("held-back", {}, { i }))
        const runner = yield* start({
          runnerId: "holder",
          concurrency: 1,
          prefetch: 3,
          handlers: {
            "held-back": (task) => Effect.zipRight(Deferred.succeed(running, task.id), Deferred.await(gate)),
          },
        })
        assert.strictEqual((yield* next(events, locked)).ids.length, 4)
        const ran = yield* Deferred.await(running)
        const stopping = yield* Effect.fork(Fiber.interrupt(runner))
        yield* next(events, logged("task runner stopping"))
        const givenBack = new Set<string>()
        for (let i = 0; i < 3; i++) {
          const release = yield* next(events, releasedAny)
          assert.strictEqual(release.status, "pending")
          givenBack.add(release.id)
        }
        assert.isFalse(givenBack.has(ran))
        yield* Deferred.succeed(gate, undefined)
        assert.deepStrictEqual(yield* next(events, releasedAny), {
          op: "release",
          id: ran,
          status: "completed",
        })
        yield* Fiber.join(stopping)
        for (const task of tasks) {
          const after = yield* getTask(task.id)
          if (task.id === ran) assert.strictEqual(after.status, "completed")
          else {
            assert.strictEqual(after.status, "pending")
            assert.strictEqual(after.retryCount, 0)
            assert.isNull(after.lockedBy)
          }
        }
      }),
    )

    it.scoped(
      "a lease that heartbeats cannot extend: the handler is interrupted before it expires, prefetched tasks are not run",
      () =>
        Effect.gen(function* () {
          const events = yield* subscribe
          const { failHeartbeats } = yield* Probe
          const started = yield* Queue.unbounded<string>()
          const interruptedAt = yield* Deferred.make<number>()
          const tasks = yield* Effect.forEach([0, 1, 2], (i) => create("leased", {}, { i }))
          let first = true
          yield* start({
            runnerId: "cut-off",
            concurrency: 1,
            prefetch: 2,
            lockDuration: "30 seconds",
            heartbeatInterval: "10 seconds",
            handlers: {
              leased: (task) =>
                Effect.zipRight(
                  Queue.offer(started, task.id),
                  Effect.suspend(() => {
                    if (!first) return Effect.void
                    first = false
                    return Effect.onInterrupt(Effect.never, () =>
                      Effect.flatMap(TestClock.currentTimeMillis, (now) =>
                        Deferred.succeed(interruptedAt, now),
                      ),
                    )
                  }),
                ),
            },
          })
          assert.strictEqual((yield* next(events, locked)).ids.length, 3)
          const ran = yield* Queue.take(started)
          const lockedUntil = (yield* getTask(ran)).lockExpiresAt!.getTime()
          yield* Ref.set(failHeartbeats, true)
          const seen: Array<Event> = []
          const until =
            (message: string) =>
            (event: Event): event is Event => {
              seen.push(event)
              return event.op === "log" && event.message === message
            }
          yield* advanceUntil(events, until("task lease expired; handler interrupted"), "1 second")
          const at = yield* Deferred.await(interruptedAt)
          assert.isBelow(at, lockedUntil) // stopped before its lock expired
          yield* next(events, until("task finished"))
          // the prefetched ones were not run on their lapsed lease: given back first
          const lapsed = seen.filter(
            (e) => e.op === "log" && e.message === "prefetched task's lease expired; not running it",
          )
          assert.strictEqual(lapsed.length, 2)
          assert.isFalse(seen.some((e) => e.op === "release" && e.id === ran))
          const stopped = yield* getTask(ran)
          assert.strictEqual(stopped.status, "running")
          assert.strictEqual(stopped.lockedBy, "cut-off")
          // once its lock expired another runner takes it: it never ran in two at once
          yield* Ref.set(failHeartbeats, false)
          yield* TestClock.adjust("31 seconds")
          const scheduler = yield* Scheduler
          // the moved clock also wakes the runner that was cut off: its lock or the successor's
          // gives the expired lock back, and the give-back wakes that runner again, so either
          // may take the task (and a read may see it pending while a claim is on its way):
          // the successor locks until it holds the task or the other runner does. Either way it
          // is a new attempt on a new lock (the lapsed one counted as failed)
          const retaken: Array<Task> = []
          let after = yield* getTask(ran)
          const retakenBySomeone = () =>
            after.retryCount > 0 &&
            (retaken.some((t) => t.id === ran) ||
              after.lockedBy === "cut-off" ||
              after.status === "completed")
          for (let round = 0; round < 50 && !retakenBySomeone(); round++) {
            retaken.push(...(yield* scheduler.lock("successor", "1 minute", ["leased"], 10)))
            after = yield* getTask(ran)
          }
          assert.isTrue(retakenBySomeone(), `held by ${after.lockedBy} (${after.status})`)
          assert.strictEqual(after.retryCount, 1)
          for (const task of retaken) yield* scheduler.release(task.id, "successor", "completed")
          assert.strictEqual(tasks.length, 3)
        }),
    )

    it.scoped("a defect in the heartbeat loop is logged and the loop goes on", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const { dieHeartbeats } = yield* Probe
        const running = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        const task = yield* create("defective")
        yield* Ref.set(dieHeartbeats, 1)
        yield* start({
          lockDuration: "30 seconds",
          heartbeatInterval: "10 seconds",
          handlers: {
            defective: () => Effect.zipRight(Deferred.succeed(running, undefined), Deferred.await(gate)),
          },
        })
        yield* Deferred.await(running)
        yield* advanceUntil(events, logged("heartbeats failed; restarting it"), "2 seconds")
        const beat = yield* advanceUntil(events, heartbeatOf(task.id), "2 seconds")
        assert.strictEqual(beat.result, "running")
        assert.strictEqual((yield* getTask(task.id)).status, "running")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual((yield* next(events, releasedAny)).status, "completed")
      }),
    )

    it.scoped("several runners with prefetch: every task done once, none held by two at once", () =>
      Effect.gen(function* () {
        const events = yield* subscribe
        const tasks = yield* Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          (i) => create("shared", {}, { i }),
        )
        const inHandler = new Set<string>()
        const runs = new Map<string, number>()
        let overlap = false
        const handler = (task: Task) =>
          Effect.suspend(() => {
            if (inHandler.has(task.id)) overlap = true
            inHandler.add(task.id)
            runs.set(task.id, (runs.get(task.id) ?? 0) + 1)
            return Effect.yieldNow()
          }).pipe(Effect.ensuring(Effect.sync(() => inHandler.delete(task.id))))
        for (const runnerId of ["r1", "r2", "r3"]) {
          yield* start({ runnerId, concurrency: 2, prefetch: 4, handlers: { shared: handler } })
        }
        const done = new Set<string>()
        while (done.size < tasks.length) {
          const release = yield* next(events, releasedAny)
          assert.strictEqual(release.status, "completed")
          assert.isFalse(done.has(release.id), "released twice")
          done.add(release.id)
        }
        assert.isFalse(overlap)
        for (const task of tasks) {
          assert.strictEqual(runs.get(task.id), 1)
          assert.strictEqual((yield* getTask(task.id)).status, "completed")
        }
      }),
    )
  })
