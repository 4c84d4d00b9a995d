/**
 * The tasks a runner holds, one record each, and the named transitions between their phases:
 *
 *   claimed ─▶ prefetched ─start─▶ handler ─handlerDone─▶ releasing ─released─▶ (gone)
 *                   └────────────drop──────────────────────────────────────────▶ (gone)
 *
 * - `prefetched`: locked by the runner, waiting for a slot (in priority and due order).
 * - `handler`: its handler runs; `stop(reason)` interrupts it once (timed out, cancelled,
 *   lock lost, lease expired), and the first reason given is the one that counts.
 * - `releasing`: its release is on its way to the database.
 *
 * Every record keeps the lease as the database last confirmed it (`leaseUntil`, epoch ms):
 * `overdue(now)` says which handlers passed their timeout or their lease (minus `margin`), and
 * `dropLapsed(now)` takes out the prefetched tasks that lost their lease before they started. The poll loop, the heartbeat
 * loop and the watcher of `TaskRunner` are small effects over one `TaskState`; it is plain
 * synchronous state (fibers interleave only at effects, so each transition is atomic).
 *
 * Limits: at most `concurrency` handlers run, and `room()` lets a lock take only what fits in
 * the free slots plus `prefetch` waiting tasks, while the runner holds at most `capacity`
 * (twice `concurrency + prefetch`) tasks in all, releases on their way included.
 */
import type * as Fiber from "effect/Fiber"
import type { ReleaseStatus, Task } from "../../Scheduler.js"

export type Phase = "prefetched" | "handler" | "releasing"

/** How an attempt ended: what the log says, and how the task is given back (if at all). */
export interface Outcome {
  readonly result:
    | "completed"
    | "failed"
    | "timed-out"
    | "cancelled"
    | "lock-lost"
    | "lease-expired"
    | "returned"
  readonly release?: ReleaseStatus | undefined
  readonly error?: string | undefined
}

export interface Entry {
  /** Unique per claim (the same task may be claimed again later). */
  readonly key: number
  readonly task: Task
  phase: Phase
  /** The lock's expiry as last confirmed by the database (epoch ms). */
  leaseUntil: number
  /** When the handler times out (epoch ms); infinite until it starts. */
  deadline: number
  /** The fiber running the task, once started. */
  fiber: Fiber.RuntimeFiber<void> | undefined
  /** Why the handler was stopped, if it was. */
  stopReason: Outcome | undefined
}

/** What the watcher must do at `now`. */
export interface Overdue {
  /** Handlers past their timeout. */
  readonly timedOut: ReadonlyArray<Entry>
  /** Handlers past their lease (minus the margin). */
  readonly leaseExpired: ReadonlyArray<Entry>
}

/** Priority and due order, then the order they were claimed in. */
const byUrgency = (a: Entry, b: Entry): number => {
  return (
    b.task.priority - a.task.priority ||
    a.task.scheduledFor.getTime() - b.task.scheduledFor.getTime() ||
    a.key - b.key
  )
}

export class TaskState {
  private readonly entries = new Map<number, Entry>()
  /** The prefetched entries, most urgent first. */
  private queue: Array<Entry> = []
  private handlers = 0
  private inRelease = 0
  private claims = 0
  /** When the watcher wakes next (epoch ms), so that an earlier time can wake it sooner. */
  private watching = Number.POSITIVE_INFINITY

  constructor(
    readonly concurrency: number,
    readonly prefetch: number,
    /** How long before its lease expires a task counts as lost (ms). */
    readonly margin: number,
  ) {}

  /**
   * The most tasks held at once, in any phase: `concurrency` running plus `prefetch` waiting,
   * and as many again on their way back (releases are written in batches, so they cost little
   * while they wait).
   */
  get capacity(): number {
    return 2 * (this.concurrency + this.prefetch)
  }

  /**
   * How many tasks a lock may take now: free slots plus room among the prefetched, as long as
   * the tasks held (running, releasing, prefetched) stay within `capacity`.
   */
  room(): number {
    const wanted = this.concurrency - this.handlers + this.prefetch - this.queue.length
    return Math.max(0, Math.min(wanted, this.capacity - this.entries.size))
  }

  /**
   * What the next lock should ask for: `room()`, but while prefetched tasks still wait, only
   * once half the prefetch is free again (so that a runner kept busy claims in batches rather
   * than one task per finished handler); 0 means wait.
   */
  wanted(): number {
    const room = this.room()
    if (this.queue.length === 0) return room
    return room >= Math.max(1, Math.ceil(this.prefetch / 2)) ? room : 0
  }

  /** Tasks a lock took, with their leases; true when one of them needs the watcher earlier. */
  claimed(tasks: ReadonlyArray<Task>, lockMillis: number, now: number): boolean {
    for (const task of tasks) {
      const entry: Entry = {
        key: ++this.claims,
        task,
        phase: "prefetched",
        leaseUntil: task.lockExpiresAt?.getTime() ?? now + lockMillis,
        deadline: Number.POSITIVE_INFINITY,
        fiber: undefined,
        stopReason: undefined,
      }
      this.entries.set(entry.key, entry)
      this.queue.push(entry)
    }
    if (tasks.length > 0) this.queue.sort(byUrgency)
    return this.earlier(this.queue.reduce((min, e) => Math.min(min, e.leaseUntil - this.margin), Infinity))
  }

  /**
   * The most urgent prefetched task, if a slot is free: its handler starts at `now`. Call
   * `dropLapsed(now)` first: a task whose lease passed must not start.
   */
  start(now: number): Entry | undefined {
    if (this.handlers >= this.concurrency) return undefined
    const entry = this.queue.shift()
    if (entry === undefined) return undefined
    entry.phase = "handler"
    entry.deadline = now + Math.ceil(entry.task.timeoutSeconds * 1000)
    this.handlers++
    return entry
  }

  /** Whether an entry's deadline (just started) needs the watcher earlier. */
  needsWatcher(entry: Entry): boolean {
    return this.earlier(Math.min(entry.deadline, entry.leaseUntil - this.margin))
  }

  /** Stops a running handler for `reason` (the first reason counts): its fiber to interrupt. */
  stop(entry: Entry, reason: Outcome): Fiber.RuntimeFiber<void> | undefined {
    if (entry.phase !== "handler" || entry.stopReason !== undefined || !this.entries.has(entry.key))
      return undefined
    entry.stopReason = reason
    return entry.fiber
  }

  /** The handler returned: the task's release is next; why it was stopped, if it was. */
  handlerDone(entry: Entry): Outcome | undefined {
    if (entry.phase === "handler" && this.entries.has(entry.key)) {
      entry.phase = "releasing"
      this.handlers--
      this.inRelease++
    }
    return entry.stopReason
  }

  /** The task is done with, released or not. */
  released(entry: Entry): void {
    if (!this.entries.delete(entry.key)) return
    if (entry.phase === "handler") this.handlers--
    else if (entry.phase === "releasing") this.inRelease--
    else this.queue = this.queue.filter((e) => e !== entry)
  }

  /** A prefetched task leaves without being run (lost, cancelled, given back); false if it started. */
  drop(entry: Entry): boolean {
    if (entry.phase !== "prefetched" || !this.entries.delete(entry.key)) return false
    this.queue = this.queue.filter((e) => e !== entry)
    return true
  }

  /** Every prefetched task, leaving: for the shutdown to give them back. */
  dropAll(): ReadonlyArray<Entry> {
    const queued = this.queue
    this.queue = []
    for (const entry of queued) this.entries.delete(entry.key)
    return queued
  }

  /** The database confirmed the lease until `until`. */
  extended(entry: Entry, until: number): void {
    if (until > entry.leaseUntil) entry.leaseUntil = until
  }

  /** The tasks whose locks heartbeats extend: waiting and running ones. */
  held(): ReadonlyArray<Entry> {
    return Array.from(this.entries.values()).filter((e) => e.phase !== "releasing")
  }

  /** What passed its time at `now`. */
  overdue(now: number): Overdue {
    const timedOut: Array<Entry> = []
    const leaseExpired: Array<Entry> = []
    for (const entry of this.entries.values()) {
      if (entry.phase === "handler" && entry.stopReason === undefined) {
        if (this.lapsed(entry, now)) leaseExpired.push(entry)
        else if (entry.deadline <= now) timedOut.push(entry)
      }
    }
    return { timedOut, leaseExpired }
  }

  /** The prefetched tasks whose lease (minus the margin) passed by `now`, leaving: never to be run. */
  dropLapsed(now: number): ReadonlyArray<Entry> {
    if (!this.queue.some((entry) => this.lapsed(entry, now))) return []
    const lapsed = this.queue.filter((entry) => this.lapsed(entry, now))
    this.queue = this.queue.filter((entry) => !this.lapsed(entry, now))
    for (const entry of lapsed) this.entries.delete(entry.key)
    return lapsed
  }

  private lapsed(entry: Entry, now: number): boolean {
    return entry.leaseUntil - this.margin <= now
  }

  /** When the watcher must look next (epoch ms; infinite when nothing is held); remembered. */
  nextCheck(): number {
    let next = Number.POSITIVE_INFINITY
    for (const entry of this.entries.values()) {
      if (entry.phase === "releasing" || entry.stopReason !== undefined) continue
      next = Math.min(next, entry.leaseUntil - this.margin, entry.deadline)
    }
    this.watching = next
    return next
  }

  /** Handlers running now. */
  get running(): number {
    return this.handlers
  }

  /** Tasks whose release is on its way. */
  get releasing(): number {
    return this.inRelease
  }

  /** Tasks held in any phase. */
  get size(): number {
    return this.entries.size
  }

  private earlier(at: number): boolean {
    if (at >= this.watching) return false
    this.watching = at
    return true
  }
}
