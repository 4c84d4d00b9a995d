/**
 * Task keys under contention from many processes: 8 processes x 200 creates of 20 keys, under
 * each key mode, leave exactly 20 pending tasks per mode, on a SQLite file, PostgreSQL and
 * rqlite. With `replace` and `preserve-run-at` each key's task carries the payload of the last
 * create of one of the processes (the last write wins, and every process's last create of a key
 * is its last write to it); `preserve-run-at` keeps the first create's `scheduledFor`; with
 * `dedupe` it carries a payload of some process's first create of the key, unchanged since.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { afterAll, describe, expect, it } from "vitest"
import * as KvPostgres from "../src/layers/Postgres.js"
import * as KvRqlite from "../src/layers/Rqlite.js"
import * as KvSqlite from "../src/layers/Sqlite.js"
import { keyModes, Scheduler, type Task } from "../src/Scheduler.js"
import { createScratchDatabase, type ScratchDatabase } from "./support/postgres.js"
import { killAll, spawnScript, waitForLine, watch } from "./support/processes.js"
import { type RqliteServer, startRqlite } from "./support/rqlite.js"

const processes = 8
const creates = 200
const keys = 20

const run = async (
  type: "sqlite" | "postgres" | "rqlite",
  connection: string,
  layer: Layer.Layer<Scheduler, unknown>,
) => {
  const children = Array.from({ length: processes }, (_, p) =>
    spawnScript("keyedCreator.ts", [type, connection, String(p), String(creates), String(keys)]),
  )
  try {
    const watched = children.map((child) => watch(child))
    await Promise.all(children.map((child) => waitForLine(child, "ready")))
    const started = Date.now()
    for (const child of children) child.stdin?.end("go\n")
    const finished = await Promise.all(watched.map((w) => w.finished))
    const seconds = (Date.now() - started) / 1000
    for (const result of finished) {
      expect(result.stderr).not.toMatch(/locked|busy/i)
      expect(result, result.stderr).toMatchObject({ code: 0 })
      expect(JSON.parse(result.stdout.trim().split("\n").at(-1)!)).toEqual({
        created: creates * keyModes.length,
      })
    }
    console.log(
      `${type}: ${processes} processes x ${creates} creates x ${keyModes.length} modes of ${keys} keys each in ${seconds.toFixed(1)}s`,
    )
    return await Effect.runPromise(
      Effect.flatMap(Scheduler, (scheduler) => scheduler.list()).pipe(Effect.provide(layer)),
    )
  } finally {
    killAll(children)
  }
}

/** What each key's task may carry: one of these payloads, per mode. */
const check = (tasks: ReadonlyArray<Task>) => {
  expect(tasks.length).toBe(keys * keyModes.length)
  for (const mode of keyModes) {
    const ofMode = tasks.filter((task) => task.key?.startsWith(`${mode}/`))
    expect(ofMode.length, mode).toBe(keys)
    expect(new Set(ofMode.map((task) => task.key)).size).toBe(keys)
    for (const task of ofMode) {
      expect(task.status).toBe("pending")
      const k = Number(task.key!.slice(mode.length + 1))
      const { i, process } = task.payload as { i: number; process: number }
      expect(process).toBeGreaterThanOrEqual(0)
      expect(process).toBeLessThan(processes)
      // the last create of the key by one process (replace modes), or its first (dedupe)
      expect(i, `${mode} ${task.key}`).toBe(mode === "dedupe" ? k : creates - keys + k)
      if (mode === "preserve-run-at") expect(task.scheduledFor).toEqual(task.created)
    }
  }
}

describe(`${processes} processes x ${creates} creates of ${keys} task keys, under each key mode`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-task-keys-"))
  let scratch: ScratchDatabase | undefined
  let rqlite: RqliteServer | undefined
  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true })
    await scratch?.drop()
    await rqlite?.stop()
  })

  it("leave exactly 20 pending tasks per mode on a SQLite file", async () => {
    const filename = `file:${path.join(dir, "keys.db")}?mode=rwc`
    check(await run("sqlite", filename, KvSqlite.layer({ filename })))
  }, 180_000)

  it("leave exactly 20 pending tasks per mode on PostgreSQL", async () => {
    scratch = await createScratchDatabase()
    check(await run("postgres", scratch.url, KvPostgres.layer({ url: scratch.url })))
  }, 180_000)

  it("leave exactly 20 pending tasks per mode on rqlite", async () => {
    rqlite = await startRqlite()
    check(await run("rqlite", rqlite.url, KvRqlite.layer({ url: rqlite.url })))
  }, 180_000)
})
