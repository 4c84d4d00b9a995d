/**
 * The runner's per-task state on its own: phases, limits, priority and due order, stop reasons,
 * leases. Pure and synchronous: no database, no clock (times are numbers).
 */
import { assert, describe, it } from "@effect/vitest"
import { TaskState } from "../src/internal/runner/TaskState.js"
import type { Task } from "../src/Scheduler.js"

const task = (id: string, due: number, lockExpiresAt = 30_000, timeoutSeconds = 5, priority = 0): Task => ({
  id,
  name: "t",
  payload: {},
  status: "running",
  created: new Date(0),
  scheduledFor: new Date(due),
  lastError: null,
  retryCount: 0,
  maxRetries: 3,
  timeoutSeconds,
  lockedBy: "r",
  lockExpiresAt: new Date(lockExpiresAt),
  priority,
})

describe("TaskState", () => {
  it("a lock takes free slots plus prefetch; held tasks stay within twice concurrency + prefetch", () => {
    const state = new TaskState(2, 3, 1000)
    assert.strictEqual(state.room(), 5)
    state.claimed([task("a", 3), task("b", 1), task("c", 2), task("d", 5), task("e", 4)], 30_000, 0)
    assert.strictEqual(state.room(), 0)
    // most urgent (earliest due) first, two at a time
    const first = state.start(0)!
    const second = state.start(0)!
    assert.deepStrictEqual([first.task.id, second.task.id], ["b", "c"])
    assert.isUndefined(state.start(0))
    assert.strictEqual(state.room(), 0)
    state.handlerDone(first)
    assert.strictEqual(state.room(), 1)
    assert.strictEqual(state.start(0)!.task.id, "a")
    state.released(first)
    assert.strictEqual(state.running, 2)
    assert.strictEqual(state.size, 4)
    assert.isAtMost(state.size + state.room(), state.capacity)
  })

  it("a higher priority starts first, then the earlier due", () => {
    const state = new TaskState(1, 3, 1000)
    state.claimed(
      [task("late", 5), task("urgent", 9, 30_000, 5, 2), task("early", 1), task("high", 8, 30_000, 5, 1)],
      30_000,
      0,
    )
    const order: Array<string> = []
    for (let entry = state.start(0); entry !== undefined; entry = state.start(0)) {
      order.push(entry.task.id)
      state.handlerDone(entry)
      state.released(entry)
    }
    assert.deepStrictEqual(order, ["urgent", "high", "early", "late"])
  })

  it("the first stop reason counts; a handler that finished is not stopped", () => {
    const state = new TaskState(1, 0, 1000)
    state.claimed([task("a", 0)], 30_000, 0)
    const entry = state.start(0)!
    assert.isUndefined(state.stop(entry, { result: "cancelled" })) // no fiber yet, but the reason sticks
    state.stop(entry, { result: "timed-out" })
    assert.deepStrictEqual(state.handlerDone(entry), { result: "cancelled" })
    assert.strictEqual(entry.phase, "releasing")
    assert.isUndefined(state.stop(entry, { result: "lock-lost" }))
  })

  it("timeouts and leases: overdue handlers, lapsed prefetched tasks, extended leases", () => {
    const state = new TaskState(1, 2, 3000)
    state.claimed([task("a", 0, 30_000, 100), task("b", 1), task("c", 2)], 30_000, 0)
    const running = state.start(0)!
    assert.strictEqual(state.nextCheck(), 27_000)
    state.extended(running, 60_000)
    assert.deepStrictEqual(state.overdue(26_999), { timedOut: [], leaseExpired: [] })
    assert.deepStrictEqual(state.dropLapsed(26_999), [])
    // the prefetched ones lapse at their lease minus the margin; they never start
    assert.deepStrictEqual(
      state.dropLapsed(27_000).map((e) => e.task.id),
      ["b", "c"],
    )
    assert.isUndefined(state.start(27_000))
    assert.strictEqual(state.nextCheck(), 57_000)
    assert.deepStrictEqual(state.overdue(57_000).leaseExpired, [running])
    // a timeout before the lease: timed out
    const other = new TaskState(1, 0, 3000)
    other.claimed([task("x", 0, 30_000, 5)], 30_000, 0)
    const x = other.start(1000)!
    assert.deepStrictEqual(other.overdue(6000).timedOut, [x])
  })

  it("a prefetched task dropped (cancelled, lost) leaves; dropAll gives the rest back", () => {
    const state = new TaskState(1, 2, 1000)
    state.claimed([task("a", 0), task("b", 1), task("c", 2)], 30_000, 0)
    const [, b] = [state.start(0)!, ...state.held().filter((e) => e.phase === "prefetched")]
    assert.isTrue(state.drop(b!))
    assert.isFalse(state.drop(b!))
    assert.deepStrictEqual(
      state.dropAll().map((e) => e.task.id),
      ["c"],
    )
    assert.strictEqual(state.size, 1)
  })
})
