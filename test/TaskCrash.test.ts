/**
 * The promise a job queue makes, kept across crashes: 2,000 due tasks, four `kv task run`
 * processes (the BUILT `dist/kv.js`) with a short lock, two of them with `--prefetch` (tasks
 * locked ahead of their free slots), two of them (one of each kind) killed with SIGKILL at
 * random moments (each while it has a task under way, if it can be caught so) and started
 * again under a new runner id. In the end every task is completed, none is pending or running,
 * and a task ran a second time only after the runner that held it had died.
 *
 * The proof is in the runners' log lines (`task started` / `task finished`, each naming the
 * runner and the task, with a timestamp): for every two consecutive starts of a task, the
 * first runner was killed, and the second start came after the kill. The checks do not depend
 * on timing: the kills are random, what is checked holds whenever they happen.
 *
 * On SQLite (a file), PostgreSQL and rqlite, one after the other (the machine is small).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import { Scheduler, Task } from "../src/Scheduler.js"
import { type KvProcess, startKv } from "./support/kvProcess.js"
import { createScratchDatabase, type ScratchDatabase } from "./support/postgres.js"
import { type RqliteServer, startRqlite } from "./support/rqlite.js"

const taskCount = 2000
const runnerCount = 4
const lockDuration = "5s"
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface LogLine {
  readonly at: number
  readonly message: string
  readonly runner: string
  readonly task: string
  readonly result?: string
}

/** The task start and finish lines of a runner's stderr (logfmt). */
const parseLog = (stderr: string): Array<LogLine> =>
  stderr.split("\n").flatMap((line) => {
    const fields = new Map<string, string>()
    for (const [, key, raw] of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
      fields.set(key!, raw!.startsWith('"') ? JSON.parse(raw!) : raw!)
    }
    const message = fields.get("message")
    if (message !== "task started" && message !== "task finished") return []
    return [
      {
        at: Date.parse(fields.get("timestamp")!),
        message,
        runner: fields.get("runner")!,
        task: fields.get("task")!,
        ...(fields.has("result") ? { result: fields.get("result")! } : {}),
      },
    ]
  })

const count = (text: string, needle: string) => text.split(needle).length - 1

const crashTest = (type: BackendType, connectionOf: () => string) =>
  it(`on ${type}: every task completes, and reruns only follow a dead runner`, {
    timeout: 150_000,
  }, async () => {
    const connection = connectionOf()
    const runtime = ManagedRuntime.make(layerFor(type, Redacted.make(connection)))
    const runners: Array<{ readonly id: string; readonly process: KvProcess; killedAt?: number }> = []
    try {
      const scheduler = await runtime.runPromise(Scheduler)
      await runtime.runPromise(
        Effect.forEach(
          Array.from({ length: taskCount }, (_, i) => i),
          (i) => Effect.flatMap(Task.make("echo", { i }, { maxRetries: 10 }), scheduler.create),
          { concurrency: 8, discard: true },
        ),
      )
      const completed = () =>
        runtime.runPromise(Effect.map(scheduler.list({ status: "completed", name: "echo" }), (t) => t.length))

      const launch = (slot: number, generation: number) => {
        const id = `crash-${slot}-g${generation}`
        const process = startKv(
          [
            "task",
            "run",
            "--runner-id",
            id,
            "--lock-duration",
            lockDuration,
            "--poll-interval",
            "250ms",
            "--concurrency",
            "4",
            // the even slots lock ahead: a killed one takes prefetched tasks down with it
            ...(slot % 2 === 0 ? ["--prefetch", "6"] : []),
            "--task-types",
            "echo",
            "--type",
            type,
            "--connection",
            connection,
          ],
          { keepStdout: false },
        )
        const runner: { id: string; process: KvProcess; killedAt?: number } = { id, process }
        runners.push(runner)
        return runner
      }
      const live = Array.from({ length: runnerCount }, (_, slot) => launch(slot, 0))

      // two victims (one prefetching, one not), each killed once when the tasks completed pass a random mark
      const victims = [Math.random() < 0.5 ? 0 : 2, Math.random() < 0.5 ? 1 : 3]
      const marks = new Map(victims.map((slot) => [slot, 100 + Math.floor(Math.random() * 1100)]))
      const started = Date.now()
      let done = 0
      while (done < taskCount) {
        if (Date.now() - started > 120_000)
          throw new Error(`only ${done} of ${taskCount} tasks completed in 2 minutes`)
        done = await completed()
        for (const [slot, mark] of marks) {
          if (done < mark) continue
          marks.delete(slot)
          const victim = live[slot]!
          // kill it while it has a task under way, if that moment comes within a second
          for (let i = 0; i < 1000; i++) {
            const stderr = victim.process.stderr()
            if (count(stderr, 'message="task started"') > count(stderr, 'message="task finished"')) break
            await sleep(1)
          }
          victim.killedAt = Date.now()
          victim.process.kill("SIGKILL")
          expect((await victim.process.exited).signal).toBe("SIGKILL")
          live[slot] = launch(slot, 1)
        }
        await sleep(100)
      }
      const elapsed = Date.now() - started

      for (const runner of live) runner.process.kill("SIGTERM")
      for (const runner of live)
        expect(await runner.process.exited, runner.process.stderr()).toEqual({ code: 0, signal: null })

      // every task completed; none left pending or running
      const tasks = await runtime.runPromise(scheduler.list({ limit: -1 }))
      expect(tasks).toHaveLength(taskCount)
      expect(tasks.filter((task) => task.status !== "completed")).toEqual([])

      const killed = new Map(
        runners.flatMap((r) => (r.killedAt === undefined ? [] : [[r.id, r.killedAt] as const])),
      )
      expect(killed.size).toBe(2)
      const lines = runners.flatMap((runner) => parseLog(runner.process.stderr()))
      const starts = new Map<string, Array<LogLine>>()
      for (const line of lines) {
        if (line.message === "task started") starts.set(line.task, [...(starts.get(line.task) ?? []), line])
      }
      let reruns = 0
      for (const task of tasks) {
        const runs = (starts.get(task.id) ?? []).sort((a, b) => a.at - b.at)
        expect(runs.length, `task ${task.id} was never started`).toBeGreaterThan(0)
        for (let i = 1; i < runs.length; i++) {
          const [before, after] = [runs[i - 1]!, runs[i]!]
          const death = killed.get(before.runner)
          expect(
            death,
            `task ${task.id} ran again on ${after.runner} while ${before.runner} lived`,
          ).toBeDefined()
          expect(after.at, `task ${task.id} ran again before ${before.runner} died`).toBeGreaterThan(death!)
          reruns++
        }
        const last = runs.at(-1)!
        expect(task.lockedBy).toBe(last.runner)
        const finished = lines.some(
          (line) =>
            line.message === "task finished" &&
            line.task === task.id &&
            line.runner === last.runner &&
            line.result === "completed",
        )
        expect(finished || killed.has(last.runner), `task ${task.id}: no finish by ${last.runner}`).toBe(true)
        // a retry here can only be a lock that expired with a killed runner
        if (task.retryCount > 0) {
          const holder = /^lock expired: runner (\S+) /.exec(task.lastError ?? "")?.[1]
          expect(holder !== undefined && killed.has(holder), `task ${task.id}: ${task.lastError}`).toBe(true)
          expect(task.retryCount).toBeGreaterThanOrEqual(runs.length - 1)
        } else {
          expect(runs).toHaveLength(1)
        }
      }
      console.log(
        `crash test on ${type}: ${taskCount} tasks in ${(elapsed / 1000).toFixed(1)}s, ` +
          `${reruns} reruns after ${killed.size} kills, ${tasks.filter((t) => t.retryCount > 0).length} tasks reclaimed`,
      )
    } finally {
      for (const runner of runners) runner.process.kill("SIGKILL") // after a failure: none left behind
      await runtime.dispose()
    }
  })

describe("crashed task runners on SQLite", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-crash-"))
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  crashTest("sqlite", () => `file:${path.join(dir, "data.db")}?mode=rwc`)
})

describe("crashed task runners on PostgreSQL", () => {
  let database: ScratchDatabase | undefined
  beforeAll(async () => {
    database = await createScratchDatabase()
  })
  afterAll(() => database?.drop())
  crashTest("postgres", () => database!.url)
})

describe("crashed task runners on rqlite", () => {
  let server: RqliteServer | undefined
  beforeAll(async () => {
    server = await startRqlite()
  })
  afterAll(() => server?.stop())
  crashTest("rqlite", () => server!.url)
})
