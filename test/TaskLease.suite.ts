/**
 * Leases enforced by the runner itself, on every backend: runner A takes a task, then loses
 * the database (a frozen TCP proxy for PostgreSQL and rqlite, an exclusive lock held by another
 * connection for a SQLite file) for longer than its lock duration. A must stop the handler
 * before the lock it last extended expires (by its clock, the TestClock here), must not report
 * it completed, and runner B, on a working connection, takes the task once the lock expired.
 * The task never runs in two runners at once.
 *
 * `taskLeaseSuite(name, cutOff)`: `cutOff` makes a fresh database with two ways in: one that
 * can be cut (`freeze`; `thaw` for the SQLite lock) and one that keeps working.
 */
import { assert, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import { Scheduler, Task } from "../src/Scheduler.js"
import * as TaskRunner from "../src/TaskRunner.js"

export interface CutOff {
  /** The way in that `freeze` cuts (runner A's). */
  readonly cut: Layer.Layer<Scheduler, unknown>
  /** The way in that keeps working (runner B's, and the test's). */
  readonly working: Layer.Layer<Scheduler, unknown>
  readonly freeze: () => void
  /** Ends the cut, if the backend needs it to (SQLite: the lock blocks every writer). */
  readonly thaw: () => void
  /** Closes the cut way in (before its layer is torn down, so that nothing waits on it). */
  readonly close: () => Promise<void>
}

interface Run {
  readonly runner: string
  readonly startedAt: number
  endedAt?: number
}

export const taskLeaseSuite = (name: string, cutOff: Effect.Effect<CutOff, unknown, Scope.Scope>) =>
  it.scoped(
    `${name}: a runner cut off from the database stops its handler before its lease expires; the task never runs twice at once`,
    () =>
      Effect.gen(function* () {
        const access = yield* cutOff
        const a = yield* Layer.build(access.cut)
        const b = yield* Layer.build(access.working)
        const scheduler = Scheduler.pipe(Effect.provide(b))
        const created = yield* Effect.flatMap(Task.make("leased", { n: 1 }, { maxRetries: 5 }), (task) =>
          Effect.flatMap(scheduler, (s) => s.create(task)),
        )
        const runs: Array<Run> = []
        const aStarted = yield* Deferred.make<void>()
        const aStopped = yield* Deferred.make<void>()
        const completedBy = yield* Deferred.make<string>()
        const handler = (runner: string) => (task: Task) =>
          Effect.gen(function* () {
            const now = yield* TestClock.currentTimeMillis
            assert.isFalse(
              runs.some((run) => run.endedAt === undefined),
              `task ${task.id} started on ${runner} while it ran elsewhere`,
            )
            const run: Run = { runner, startedAt: now }
            runs.push(run)
            const end = Effect.flatMap(TestClock.currentTimeMillis, (at) =>
              Effect.sync(() => {
                run.endedAt = at
              }),
            )
            if (runner === "a" && runs.length === 1) {
              yield* Deferred.succeed(aStarted, undefined)
              return yield* Effect.onInterrupt(Effect.never, () =>
                Effect.zipRight(end, Deferred.succeed(aStopped, undefined)),
              )
            }
            yield* end
            yield* Deferred.succeed(completedBy, runner)
          })
        const options = (runner: string): TaskRunner.TaskRunnerOptions => ({
          runnerId: runner,
          pollInterval: "1 second",
          lockDuration: "30 seconds",
          heartbeatInterval: "10 seconds",
          handlers: { leased: handler(runner) },
        })
        yield* Effect.forkScoped(TaskRunner.run(options("a")).pipe(Effect.provide(a)))
        // runs before runner a stops and the layers are torn down: nothing is left waiting on the cut way in
        yield* Effect.addFinalizer(() => Effect.promise(access.close))
        yield* Deferred.await(aStarted)
        const lockedUntil = Option.getOrThrow(
          yield* Effect.flatMap(scheduler, (s) => s.get(created.id)),
        ).lockExpiresAt!.getTime()
        access.freeze()

        // A's clock moves on; its heartbeats cannot reach the database
        const step = Effect.zipRight(
          TestClock.adjust("1 second"),
          TestServices.provideLive(Effect.sleep("5 millis")),
        )
        for (let i = 0; i < 60 && !(yield* Deferred.isDone(aStopped)); i++) yield* step
        assert.isTrue(yield* Deferred.isDone(aStopped), "runner a never stopped its handler")
        const stoppedAt = runs[0]!.endedAt!
        assert.isBelow(stoppedAt, lockedUntil)

        // the lock expires; B takes the task from the working side
        access.thaw()
        yield* TestClock.adjust("31 seconds")
        const runnerB = yield* Effect.forkScoped(TaskRunner.run(options("b")).pipe(Effect.provide(b)))
        for (let i = 0; i < 200 && !(yield* Deferred.isDone(completedBy)); i++) yield* step
        const winner = yield* Deferred.await(completedBy)
        assert.include(["a", "b"], winner)
        // the handler returned; its completion is stored next
        const read = Effect.map(
          Effect.flatMap(scheduler, (s) => s.get(created.id)),
          Option.getOrThrow,
        )
        let done = yield* read
        for (let i = 0; i < 200 && done.status !== "completed"; i++) {
          yield* step
          done = yield* read
        }
        assert.strictEqual(done.status, "completed")
        // A's run was never reported completed: the second attempt followed its expired lock
        assert.strictEqual(runs.length, 2)
        assert.strictEqual(runs[0]!.runner, "a")
        assert.isAtLeast(runs[1]!.startedAt, lockedUntil)
        assert.isAtLeast(done.retryCount, 1)
        assert.match(done.lastError ?? "", /lock expired: runner a /)
        yield* Fiber.interrupt(runnerB)
      }),
    { timeout: 120_000 },
  )
