/**
 * `kv task ...` end to end on one backend: spawns the BUILT executable (run `npm run build`
 * first). The database behind `backend.connection` must be private to the suite: bad input is
 * checked by comparing every task before and after.
 */
import * as os from "node:os"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { beforeAll, describe, expect, it, onTestFinished } from "vitest"
import { type BackendType, layerFor } from "../src/cli/backend.js"
import { Scheduler, type TaskStatus } from "../src/Scheduler.js"
import { fails, ok, spawnKv } from "./Cli.suite.js"
import { startKv } from "./support/kvProcess.js"

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

export interface TaskCliBackend {
  readonly type: BackendType
  readonly connection: string
  /** A connection to a server that does not answer (server backends). */
  readonly unreachable?: string | undefined
}

export const taskCliSuite = (backend: TaskCliBackend) =>
  describe(`kv task on ${backend.type}`, () => {
    const globals = ["--type", backend.type, "--connection", backend.connection]
    const kv = (args: ReadonlyArray<string>, input?: string) =>
      spawnKv([...args, ...globals], input === undefined ? {} : { input })
    const json = async (args: ReadonlyArray<string>) => JSON.parse(ok(await kv(args)))

    /** Every task's status, through the library. */
    const statuses = (name: string) =>
      Effect.runPromise(
        Effect.flatMap(Scheduler, (scheduler) => scheduler.list({ name })).pipe(
          Effect.map((tasks) => new Map(tasks.map((task) => [task.id, task.status] as const))),
          Effect.provide(layerFor(backend.type, Redacted.make(backend.connection))),
        ),
      )

    /** Polls (every 100 ms) until every task named `name` has `status`. */
    const until = async (name: string, status: TaskStatus, count: number) => {
      for (let i = 0; i < 300; i++) {
        const now = await statuses(name)
        if (now.size === count && [...now.values()].every((s) => s === status)) return
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      throw new Error(
        `the ${name} tasks did not all become ${status}: ${JSON.stringify([...(await statuses(name))])}`,
      )
    }

    beforeAll(async () => {
      ok(await kv(["init"]))
    })

    it("task new prints the id; get, list and cancel show the task", async () => {
      const id = ok(await kv(["task", "new", "mail"], '{"to": "ada", "n": [1, 2]}')).trim()
      expect(id).toMatch(/^[0-9a-f-]{36}$/)
      const task = await json(["task", "get", id])
      expect(Object.keys(task)).toEqual([
        "id",
        "name",
        "payload",
        "status",
        "created",
        "scheduledFor",
        "lastError",
        "retryCount",
        "maxRetries",
        "timeoutSeconds",
        "lockedBy",
        "priority",
      ])
      expect(task).toMatchObject({
        id,
        name: "mail",
        payload: { to: "ada", n: [1, 2] },
        status: "pending",
        lastError: null,
        retryCount: 0,
        maxRetries: 3,
        timeoutSeconds: 300,
        lockedBy: null,
        priority: 0,
      })
      expect(task.created).toMatch(RFC3339)
      expect(task.scheduledFor).toBe(task.created)

      const second = ok(
        await kv(["task", "new", "mail", "--max-retries", "0", "--timeout", "1m30s"], "7"),
      ).trim()
      const third = ok(await kv(["task", "new", "mail-other"], "null")).trim()
      const [all, mail, limited, paged] = await Promise.all([
        json(["task", "list"]),
        json(["task", "list", "--name", "mail"]),
        json(["task", "list", "--name=mail", "--limit", "1"]),
        json(["task", "list", "--name", "mail", "--offset", "1", "--limit", "-1"]),
      ])
      expect(all.map((t: { id: string }) => t.id).slice(0, 3)).toEqual([third, second, id]) // newest first
      expect(mail.map((t: { id: string }) => t.id)).toEqual([second, id])
      expect(mail[0]).toMatchObject({ payload: 7, maxRetries: 0, timeoutSeconds: 90 })
      expect(limited.map((t: { id: string }) => t.id)).toEqual([second])
      expect(paged.map((t: { id: string }) => t.id)).toEqual([id])

      expect(ok(await kv(["task", "cancel", id]))).toBe("")
      const [cancelled, pending, cancelledList] = await Promise.all([
        json(["task", "get", id]),
        json(["task", "list", "--status", "pending", "--name", "mail"]),
        json(["task", "list", "--status=cancelled", "--name", "mail"]),
      ])
      expect(cancelled.status).toBe("cancelled")
      expect(cancelled.completedAt).toMatch(RFC3339)
      expect(pending.map((t: { id: string }) => t.id)).toEqual([second])
      expect(cancelledList.map((t: { id: string }) => t.id)).toEqual([id])
      expect(ok(await kv(["task", "cancel", id]))).toBe("") // cancelled already: nothing to do
    })

    it("task new --delay and --scheduled-for set when the task is due", async () => {
      const [delayed, at] = await Promise.all([
        kv(["task", "new", "later", "--delay", "1h30m"], "{}"),
        kv(["task", "new", "later", "--scheduled-for", "2031-02-03T04:05:06+02:00"], "{}"),
      ])
      const [a, b] = await Promise.all([
        json(["task", "get", ok(delayed).trim()]),
        json(["task", "get", ok(at).trim()]),
      ])
      expect(Date.parse(a.scheduledFor) - Date.parse(a.created)).toBe(90 * 60 * 1000)
      expect(b.scheduledFor).toBe("2031-02-03T02:05:06.000Z")
    })

    it("task get and task cancel of an unknown id: not found", async () => {
      const [get, cancel] = await Promise.all([
        kv(["task", "get", "no-such-task"]),
        kv(["task", "cancel", "no-such-task"]),
      ])
      fails(get, /^kv: task "no-such-task" not found\n$/)
      fails(cancel, /not found/)
    })

    it("task run runs log and echo tasks, one log line per start and finish, and stops on SIGTERM", async () => {
      const ids = await Promise.all(
        [1, 2, 3].map(async (i) => ok(await kv(["task", "new", "echo"], JSON.stringify({ i }))).trim()),
      )
      const logged = ok(await kv(["task", "new", "log"], '{"note": "logged"}')).trim()
      const runner = startKv([
        "task",
        "run",
        "--runner-id",
        "cli-runner",
        "--concurrency",
        "2",
        "--poll-interval",
        "200ms",
        ...globals,
      ])
      await until("echo", "completed", 3)
      await until("log", "completed", 1)
      runner.kill("SIGTERM")
      const exit = await runner.exited
      expect(exit, runner.stderr()).toEqual({ code: 0, signal: null })
      expect(
        runner
          .stdout()
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line))
          .sort((x, y) => x.i - y.i),
      ).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }])
      const lines = runner.stderr().trim().split("\n")
      for (const id of [...ids, logged]) {
        const mine = lines.filter((line) => line.includes(`task=${id}`) && line.includes("runner=cli-runner"))
        expect(mine.filter((line) => line.includes('message="task started"'))).toHaveLength(1)
        expect(
          mine.filter(
            (line) => line.includes('message="task finished"') && line.includes("result=completed"),
          ),
        ).toHaveLength(1)
      }
      expect(
        lines.some(
          (line) => line.includes(`task=${logged}`) && line.includes('payload="{\\"note\\":\\"logged\\"}"'),
        ),
      ).toBe(true)
      expect(lines.at(-1)).toMatch(/task runner stopped/)
      const done = await json(["task", "get", ids[0]!])
      expect(done).toMatchObject({ status: "completed", lockedBy: "cli-runner" })
      expect(done.startedAt).toMatch(RFC3339)
      fails(await kv(["task", "cancel", ids[0]!]), /already completed/)
    })

    it("task run whose stdout is closed while an echo task runs gives that task back and exits 0", async () => {
      const printed = ok(await kv(["task", "new", "echo"], '{"closed": 1}')).trim()
      const runner = startKv([
        "task",
        "run",
        "--runner-id",
        "closed-stdout-runner",
        "--task-types",
        "echo",
        "--poll-interval",
        "200ms",
        // the echo task that cannot print waits this long before it is given back
        "--shutdown-timeout",
        "1s",
        ...globals,
      ])
      onTestFinished(() => runner.kill("SIGKILL")) // a failed test must not leave it running
      await runner.waitForStdout(/^\{"closed":1\}\n/)
      await until("echo", "completed", (await statuses("echo")).size)
      // the reader goes away after the first line, as `kv task run | head -1` does
      runner.closeStdout()
      const unprinted = ok(await kv(["task", "new", "echo"], '{"closed": 2}')).trim()
      expect(await runner.exited, runner.stderr()).toEqual({ code: 0, signal: null })

      const [done, returned] = await Promise.all([
        json(["task", "get", printed]),
        json(["task", "get", unprinted]),
      ])
      expect(done).toMatchObject({ status: "completed", retryCount: 0 })
      // given back as it was: pending, no attempt counted, no holder
      expect(returned).toMatchObject({ status: "pending", retryCount: 0, lockedBy: null })
      const lines = runner.stderr().trim().split("\n")
      // stderr holds log lines only, and says the task went back
      expect(lines.every((line) => line.startsWith("timestamp="))).toBe(true)
      expect(
        lines.some(
          (line) =>
            line.includes(`task=${unprinted}`) &&
            line.includes('message="task finished"') &&
            line.includes("result=returned"),
        ),
      ).toBe(true)
      expect(lines.at(-1)).toMatch(/task runner stopped/)
      // no runner of a later test is to take it
      expect(ok(await kv(["task", "cancel", unprinted]))).toBe("")
    })

    it("task run's default runner id is the library's: <hostname>-<pid>-<random>", async () => {
      const runners = [0, 1].map(() => startKv(["task", "run", "--task-types", "log", ...globals]))
      onTestFinished(() => {
        for (const runner of runners) runner.kill("SIGKILL")
      })
      const ids = await Promise.all(
        runners.map(async (runner) => {
          await runner.waitForStderr(/message="task runner started".* runner=\S+/)
          const id = /message="task runner started".* runner=(\S+)/.exec(runner.stderr())![1]!
          runner.kill("SIGINT")
          expect(await runner.exited).toEqual({ code: 0, signal: null })
          expect(id).toMatch(new RegExp(`^${escapeRegExp(os.hostname())}-${runner.child.pid}-[0-9a-f]{8}$`))
          return id.split("-").at(-1)
        }),
      )
      expect(ids[0]).not.toBe(ids[1])
    })

    it("task new --key --key-mode --priority: the id of the task as stored", async () => {
      const first = ok(
        await kv(["task", "new", "cli-keyed", "--key", "cli-k", "--delay", "1h"], '{"n":1}'),
      ).trim()
      const replaced = ok(
        await kv(["task", "new", "cli-keyed", "--key", "cli-k", "--priority", "5"], '{"n":2}'),
      ).trim()
      expect(replaced).toBe(first)
      const task = await json(["task", "get", first])
      expect(task).toMatchObject({ key: "cli-k", priority: 5, payload: { n: 2 }, status: "pending" })
      expect(task.scheduledFor).not.toBe(task.created) // replace: due when the second create said (now)
      const throttled = ok(
        await kv(
          ["task", "new", "cli-keyed", "--key", "cli-k", "--key-mode", "preserve-run-at", "--delay", "2h"],
          "3",
        ),
      ).trim()
      expect(throttled).toBe(first)
      const after = await json(["task", "get", first])
      expect(after).toMatchObject({ payload: 3, scheduledFor: task.scheduledFor })
      const deduped = ok(
        await kv(
          ["task", "new", "cli-keyed", "--key", "cli-k", "--key-mode", "dedupe", "--priority=-2"],
          "4",
        ),
      ).trim()
      expect(deduped).toBe(first)
      expect(await json(["task", "get", first])).toEqual(after)
      const other = ok(await kv(["task", "new", "cli-keyed", "--key", "cli-k2", "--priority=-3"], "5")).trim()
      expect(other).not.toBe(first)
      expect((await json(["task", "get", other])).priority).toBe(-3)
      ok(await kv(["task", "cancel", first]))
      ok(await kv(["task", "cancel", other]))
    })

    it("task retry, task prune and task stats", async () => {
      const layer = layerFor(backend.type, Redacted.make(backend.connection))
      const failed = ok(await kv(["task", "new", "cli-admin", "--max-retries", "0"], "{}")).trim()
      await Effect.runPromise(
        Effect.gen(function* () {
          const scheduler = yield* Scheduler
          yield* scheduler.lock("cli-admin-runner", "1 minute", ["cli-admin"])
          yield* scheduler.release(failed, "cli-admin-runner", "failed", "boom")
        }).pipe(Effect.provide(layer)),
      )
      const cancelled = ok(await kv(["task", "new", "cli-admin"], "{}")).trim()
      ok(await kv(["task", "cancel", cancelled]))
      const pending = ok(await kv(["task", "new", "cli-admin", "--delay", "1h"], "{}")).trim()
      ok(await kv(["task", "new", "cli-admin"], "{}"))

      const stats = await json(["task", "stats"])
      expect(Object.keys(stats)).toEqual(["total", "byStatus", "byName", "oldestDueAgeMs"])
      expect(Object.keys(stats.byStatus)).toEqual(["pending", "running", "completed", "failed", "cancelled"])
      expect(stats.byName["cli-admin"]).toEqual({ pending: 2, failed: 1, cancelled: 1 })
      expect(stats.total).toBe(
        Object.values(stats.byStatus as Record<string, number>).reduce((a, b) => a + b, 0),
      )
      expect(stats.oldestDueAgeMs).toBeGreaterThanOrEqual(0)

      fails(
        await kv(["task", "retry", pending]),
        /is pending: only a failed or cancelled task can be retried/,
      )
      fails(await kv(["task", "retry", "no-such-task"]), /^kv: task "no-such-task" not found\n$/)
      const retried = await json(["task", "retry", failed])
      expect(retried).toMatchObject({ id: failed, status: "pending", retryCount: 0, lastError: "boom" })
      expect(retried.completedAt).toBeUndefined()

      expect(ok(await kv(["task", "prune", "--older-than", "7d"])).trim()).toBe("0")
      await new Promise((resolve) => setTimeout(resolve, 20))
      const pruned = Number(
        ok(await kv(["task", "prune", "--older-than", "10ms", "--status", "cancelled"])).trim(),
      )
      expect(pruned).toBeGreaterThanOrEqual(1)
      fails(await kv(["task", "get", cancelled]), /not found/)
      expect((await json(["task", "get", failed])).status).toBe("pending")
      expect((await json(["task", "stats"])).byName["cli-admin"]).toEqual({ pending: 3 })
      for (const task of await json(["task", "list", "--name", "cli-admin", "--status", "pending"])) {
        ok(await kv(["task", "cancel", task.id]))
      }
    })

    it("--help lists the task commands", async () => {
      const [root, group, run] = await Promise.all([
        spawnKv(["--help"]),
        spawnKv(["task", "--help"]),
        spawnKv(["task", "run", "--help"]),
      ])
      for (const command of [
        "task new",
        "task list",
        "task get",
        "task cancel",
        "task retry",
        "task prune",
        "task stats",
        "task run",
      ]) {
        expect(ok(root)).toContain(command)
      }
      for (const command of ["new", "list", "get", "cancel", "retry", "prune", "stats", "run"])
        expect(ok(group)).toContain(`- ${command}`)
      for (const flag of [
        "--runner-id",
        "--poll-interval",
        "--lock-duration",
        "--task-types",
        "--concurrency",
      ]) {
        expect(ok(run)).toContain(flag)
      }
    })

    describe("bad input is one error line and creates nothing", () => {
      const cases: ReadonlyArray<{
        readonly name: string
        readonly args: ReadonlyArray<string>
        readonly input?: string
        readonly message?: RegExp
      }> = [
        { name: "invalid JSON", args: ["task", "new", "bad"], input: "{nope", message: /JSON/ },
        { name: "empty stdin", args: ["task", "new", "bad"], input: "", message: /JSON/ },
        { name: "empty name", args: ["task", "new", ""], input: "{}", message: /name/ },
        {
          name: "unparseable --delay",
          args: ["task", "new", "bad", "--delay", "5x"],
          input: "{}",
          message: /duration/,
        },
        {
          name: "zero --delay",
          args: ["task", "new", "bad", "--delay", "0s"],
          input: "{}",
          message: /duration/,
        },
        {
          name: "unparseable --scheduled-for",
          args: ["task", "new", "bad", "--scheduled-for", "tomorrow"],
          input: "{}",
          message: /RFC 3339/,
        },
        {
          name: "--scheduled-for without an offset",
          args: ["task", "new", "bad", "--scheduled-for", "2030-01-01T00:00:00"],
          input: "{}",
          message: /RFC 3339/,
        },
        {
          name: "--delay and --scheduled-for",
          args: ["task", "new", "bad", "--delay", "1m", "--scheduled-for", "2030-01-01T00:00:00Z"],
          input: "{}",
          message: /not both/,
        },
        {
          name: "negative --max-retries",
          args: ["task", "new", "bad", "--max-retries=-1"],
          input: "{}",
          message: /max-retries/,
        },
        {
          name: "negative --max-retries (separate)",
          args: ["task", "new", "bad", "--max-retries", "-1"],
          input: "{}",
        },
        {
          name: "negative --timeout",
          args: ["task", "new", "bad", "--timeout=-5s"],
          input: "{}",
          message: /duration/,
        },
        {
          name: "zero --timeout",
          args: ["task", "new", "bad", "--timeout", "0s"],
          input: "{}",
          message: /duration/,
        },
        { name: "list: bad --status", args: ["task", "list", "--status", "done"] },
        { name: "list: negative --offset", args: ["task", "list", "--offset=-1"], message: /offset/ },
        {
          name: "run: unknown --task-types",
          args: ["task", "run", "--task-types", "nope"],
          message: /no handler/,
        },
        {
          name: "run: zero --concurrency",
          args: ["task", "run", "--concurrency", "0"],
          message: /concurrency/,
        },
        { name: "missing subcommand", args: ["task"], message: /missing command/ },
        {
          name: "--key-mode without --key",
          args: ["task", "new", "bad", "--key-mode", "dedupe"],
          input: "{}",
          message: /--key-mode needs --key/,
        },
        {
          name: "unknown --key-mode",
          args: ["task", "new", "bad", "--key", "k", "--key-mode", "never"],
          input: "{}",
        },
        { name: "empty --key", args: ["task", "new", "bad", "--key", ""], input: "{}", message: /key/ },
        { name: "fractional --priority", args: ["task", "new", "bad", "--priority", "1.5"], input: "{}" },
        {
          name: "huge --priority",
          args: ["task", "new", "bad", "--priority", "9999999999"],
          input: "{}",
          message: /priority/,
        },
        { name: "prune without --older-than", args: ["task", "prune"] },
        {
          name: "prune: a status that is not finished",
          args: ["task", "prune", "--older-than", "1s", "--status", "completed,pending"],
          message: /--status must be finished statuses/,
        },
        {
          name: "prune: bad --older-than",
          args: ["task", "prune", "--older-than", "soon"],
          message: /duration/,
        },
      ]

      let before = ""
      let after = ""
      const results = new Map<string, Awaited<ReturnType<typeof kv>>>()
      beforeAll(async () => {
        before = ok(await kv(["task", "list", "--limit", "-1"]))
        await Promise.all(cases.map(async (c) => results.set(c.name, await kv(c.args, c.input ?? ""))))
        after = ok(await kv(["task", "list", "--limit", "-1"]))
      })

      for (const c of cases) {
        it(c.name, () => {
          fails(results.get(c.name)!, c.message)
        })
      }

      it("no task was created or changed", () => {
        expect(JSON.parse(before).length).toBeGreaterThan(0)
        expect(after).toBe(before)
      })
    })

    if (backend.unreachable !== undefined) {
      const unreachable = backend.unreachable
      it("task run against an unreachable server keeps retrying, says so, and exits 0 on SIGINT", async () => {
        const runner = startKv(["task", "run", "--type", backend.type, "--connection", unreachable])
        await runner.waitForStderr(
          /cannot reach the database; retrying(.|\n)*cannot reach the database; retrying/,
        )
        runner.kill("SIGINT")
        expect(await runner.exited).toEqual({ code: 0, signal: null })
        expect(runner.stdout()).toBe("")
        expect(runner.stderr()).not.toContain("Unr3achable-pw")
      })
    }
  })
