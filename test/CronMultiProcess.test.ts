/**
 * Recurring schedules with several runners: 3 `kv task run` processes (the BUILT `dist/kv.js`)
 * on one SQLite file, and on one PostgreSQL database, for a few seconds with an every-second
 * schedule: every tick while they ran became exactly one task (no tick missed, none twice),
 * due at the tick, and each ran once.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { describe, expect, it } from "vitest"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import { Scheduler, type Task } from "../src/Scheduler.js"
import { ok, spawnKv } from "./Cli.suite.js"
import { startKv } from "./support/kvProcess.js"
import { createScratchDatabase } from "./support/postgres.js"

const runners = 3
const runForMs = 5000

const tasksOf = (type: BackendType, connection: string, name: string) =>
  Effect.runPromise(
    Effect.flatMap(Scheduler, (scheduler) => scheduler.list({ name })).pipe(
      Effect.provide(layerFor(type, Redacted.make(connection))),
    ),
  )

const everyTickOnce = async (type: BackendType, connection: string) => {
  const globals = ["--type", type, "--connection", connection]
  ok(await spawnKv(["init", ...globals]))
  ok(
    await spawnKv(["cron", "set", "every-second", "* * * * * *", "log", ...globals], {
      input: '{"from": "cron"}',
    }),
  )
  const processes = Array.from({ length: runners }, (_, i) =>
    startKv(["task", "run", "--runner-id", `runner-${i}`, "--poll-interval", "200ms", ...globals], {
      keepStdout: false,
    }),
  )
  try {
    await Promise.all(processes.map((p) => p.waitForStderr(/task runner started/)))
    const started = Date.now()
    await new Promise((resolve) => setTimeout(resolve, runForMs))
    for (const p of processes) p.kill("SIGTERM")
    const exits = await Promise.all(processes.map((p) => p.exited))
    const stopped = Date.now()
    expect(exits.map((exit) => exit.code)).toEqual(Array(runners).fill(0))
    const tasks: ReadonlyArray<Task> = [...(await tasksOf(type, connection, "log"))].sort(
      (a, b) => a.scheduledFor.getTime() - b.scheduledFor.getTime(),
    )
    const ticks = tasks.map((task) => task.scheduledFor.getTime())
    expect(new Set(ticks).size).toBe(ticks.length)
    expect(ticks.length).toBeGreaterThanOrEqual(runForMs / 1000 - 1)
    // every second from the first tick to the last: none missed
    ticks.forEach((tick, i) => {
      expect(tick % 1000).toBe(0)
      if (i > 0) expect(tick - ticks[i - 1]!).toBe(1000)
    })
    expect(ticks[0]!).toBeLessThanOrEqual(started + 1000)
    expect(ticks.at(-1)!).toBeGreaterThanOrEqual(started + runForMs - 1000)
    expect(ticks.at(-1)!).toBeLessThanOrEqual(stopped)
    for (const task of tasks) {
      const tick = task.scheduledFor.toISOString()
      expect(task.id).toBe(`cron:every-second:${tick}`)
      expect(task.payload).toEqual({ from: "cron", _cron: { id: "every-second", tick, backfilled: false } })
    }
    // each ran once (the runners drained what was due before they stopped; a tick made as they
    // stopped may still be pending)
    const done = tasks.filter((task) => task.status === "completed")
    expect(done.length).toBeGreaterThanOrEqual(tasks.length - 2)
    expect(tasks.every((task) => task.status === "completed" || task.status === "pending")).toBe(true)
    expect(done.every((task) => task.retryCount === 0)).toBe(true)
  } finally {
    for (const p of processes) p.kill("SIGKILL")
  }
}

describe("3 kv task run processes with an every-second schedule: every tick exactly one task", () => {
  it("on one SQLite file", { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cron-mp-"))
    try {
      await everyTickOnce("sqlite", `file:${path.join(dir, "data.db")}?mode=rwc`)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("kv task run --no-cron makes no ticks", { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-cron-mp-"))
    const connection = `file:${path.join(dir, "data.db")}?mode=rwc`
    const globals = ["--type", "sqlite", "--connection", connection]
    try {
      ok(await spawnKv(["cron", "set", "every-second", "* * * * * *", "log", ...globals]))
      const runner = startKv(["task", "run", "--no-cron", "--poll-interval", "200ms", ...globals], {
        keepStdout: false,
      })
      try {
        await runner.waitForStderr(/task runner started/)
        await new Promise((resolve) => setTimeout(resolve, 2500))
        runner.kill("SIGTERM")
        expect((await runner.exited).code).toBe(0)
      } finally {
        runner.kill("SIGKILL")
      }
      expect(await tasksOf("sqlite", connection, "log")).toEqual([])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("on one PostgreSQL database", { timeout: 60_000 }, async () => {
    const database = await createScratchDatabase()
    try {
      await everyTickOnce("postgres", database.url)
    } finally {
      await database.drop()
    }
  })
})
