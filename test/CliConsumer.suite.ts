/**
 * `kv consumer ...` end to end, on the BUILT executable (`npm run build` first), for one backend:
 * the administration commands, `consumer stream` as a long-running process (NDJSON lines as
 * records arrive, SIGINT/SIGTERM ends it with exit 0 and its lock released, a restart
 * delivers nothing already committed), and bad input.
 *
 * The database behind `backend.connection` must be private to the suite.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import { fileURLToPath } from "node:url"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { type CliBackend, fails, ok, type Result, spawnKv } from "./Cli.suite.js"

const bin = fileURLToPath(new URL("../dist/kv.js", import.meta.url))

/** How long to wait for a line of a running `kv consumer stream` (generous: a loaded machine). */
const lineTimeoutMs = 30_000

interface Running {
  readonly child: ChildProcess
  /** The next `n` lines of stdout, parsed as JSON. */
  readonly next: (n: number) => Promise<Array<any>>
  /** Throws (with its stderr) when the process has ended. */
  readonly alive: () => void
  /** Sends `signal` (by PID) and waits for the process to end. */
  readonly stop: (signal: NodeJS.Signals) => Promise<Result & { readonly signal: NodeJS.Signals | null }>
  /** Closes the reading end of stdout (as `head -1` does once it has its line). */
  readonly closeStdout: () => void
  /** Waits for the process to end by itself. */
  readonly ended: () => Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>
}

const running = new Set<ChildProcess>()

/** Starts a long-running `kv` (e.g. `consumer stream`) and reads its stdout line by line. */
const startKv = (args: ReadonlyArray<string>): Running => {
  const env: Record<string, string | undefined> = { ...process.env }
  delete env.KV_TYPE
  delete env.KV_CONNECTION
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: os.tmpdir(),
    env,
    stdio: ["ignore", "pipe", "pipe"],
  })
  running.add(child)
  let stdout = ""
  let stderr = ""
  const lines: Array<string> = []
  let read = 0
  let wake: (() => void) | undefined
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    const parts = stdout.split("\n")
    stdout = parts.pop()!
    lines.push(...parts)
    wake?.()
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => {
      running.delete(child)
      wake?.()
      resolve({ code, signal })
    }),
  )
  const next = async (n: number) => {
    const deadline = Date.now() + lineTimeoutMs
    while (lines.length < read + n) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `kv exited (${child.exitCode ?? child.signalCode}) before printing ${n} lines: ${stderr}`,
        )
      }
      if (Date.now() > deadline)
        throw new Error(`no ${n} lines within ${lineTimeoutMs} ms; stderr: ${stderr}`)
      await new Promise<void>((resolve) => {
        wake = resolve
        setTimeout(resolve, 100)
      })
    }
    const taken = lines.slice(read, read + n)
    read += n
    return taken.map((line) => JSON.parse(line))
  }
  const stop = async (signal: NodeJS.Signals) => {
    child.kill(signal)
    const { code, signal: endedBy } = await exited
    return { code, signal: endedBy, stdout: [...lines.slice(read), stdout].join("\n"), stderr }
  }
  const alive = () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`kv exited (${child.exitCode ?? child.signalCode}): ${stderr}`)
    }
  }
  const closeStdout = () => {
    child.stdout!.destroy()
  }
  const ended = async () => ({ ...(await exited), stderr })
  return { child, next, stop, alive, closeStdout, ended }
}

afterEach(() => {
  // a failed test must not leave a consumer running
  for (const child of running) child.kill("SIGKILL")
})

export const cliConsumerSuite = (backend: CliBackend) =>
  describe(`kv consumer on ${backend.type}`, () => {
    const globals = ["--type", backend.type, "--connection", backend.connection]
    const kv = (args: ReadonlyArray<string>, input?: string) =>
      spawnKv([...args, ...globals], input === undefined ? {} : { input })
    const put = (key: string, value: unknown, ...flags: Array<string>) =>
      kv(["put", key, ...flags], JSON.stringify(value))
    const json = async (args: ReadonlyArray<string>) => JSON.parse(ok(await kv(args)))
    const latestSeq = async () => Number(ok(await kv(["stream", "seq"])))
    const status = (name: string) => json(["consumer", "status", name])
    /** The consumer, created at the stream's current end. */
    const startAtEnd = async (name: string) => {
      expect(ok(await kv(["consumer", "commit", name, String(await latestSeq())]))).toBe("")
    }
    /** Polls `consumer status` until `check` holds (bounded), while `instance` runs. */
    const until = async (name: string, instance: Running, check: (status: any) => boolean) => {
      let last = ""
      for (let i = 0; i < 100; i++) {
        instance.alive()
        const result = await kv(["consumer", "status", name])
        last = result.stdout + result.stderr
        if (result.code === 0 && check(JSON.parse(result.stdout))) return
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      throw new Error(`consumer "${name}" never reached the expected state; last status: ${last}`)
    }

    beforeAll(async () => {
      expect(ok(await kv(["init"]))).toBe("")
    })

    it("get, status, commit and delete administer a consumer without taking its lock", async () => {
      await startAtEnd("admin")
      const before = await latestSeq()
      for (const [key, type] of [
        ["ca/1", "a"],
        ["ca/2", "b"],
        ["ca/3", "a"],
      ]) {
        ok(await put(key!, { key }, "--record-type", type!))
      }
      const [all, limited, typed, prefixed, state] = await Promise.all([
        json(["consumer", "get", "admin"]),
        json(["consumer", "get", "admin", "--limit", "2"]),
        json(["consumer", "get", "--of-type=a", "admin"]),
        json(["consumer", "get", "admin", "--prefix", "ca/2"]),
        status("admin"),
      ])
      expect(all.map((r: any) => [r.seq, r.action, r.record.key])).toEqual([
        [before + 1, "create", "ca/1"],
        [before + 2, "create", "ca/2"],
        [before + 3, "create", "ca/3"],
      ])
      expect(Object.keys(all[0])).toEqual(["seq", "action", "record"])
      expect(limited).toHaveLength(2)
      expect(typed.map((r: any) => r.record.key)).toEqual(["ca/1", "ca/3"])
      expect(prefixed.map((r: any) => r.record.key)).toEqual(["ca/2"])
      expect(Object.keys(state)).toEqual([
        "name",
        "position",
        "version",
        "lockedBy",
        "lockedAt",
        "lockExpiresAt",
        "latestSeq",
        "created",
        "updated",
      ])
      expect(state).toMatchObject({ name: "admin", position: before, lockedBy: null, latestSeq: before + 3 })

      expect(ok(await kv(["consumer", "commit", "admin", String(before + 2)]))).toBe("")
      expect((await json(["consumer", "get", "admin"])).map((r: any) => r.seq)).toEqual([before + 3])
      expect((await status("admin")).position).toBe(before + 2)

      expect(ok(await kv(["consumer", "delete", "admin"]))).toBe("1\n")
      const [gone, again] = await Promise.all([
        kv(["consumer", "status", "admin"]),
        kv(["consumer", "delete", "admin"]),
      ])
      fails(gone, /^kv: consumer "admin" not found\n$/)
      expect(ok(again)).toBe("0\n")
    })

    it("consumer stream prints NDJSON as records arrive; SIGINT exits 0; a restart redelivers nothing committed", async () => {
      await startAtEnd("live")
      const first = startKv(["consumer", "stream", "live", "worker-1", ...globals])
      await until("live", first, (s) => s.lockedBy === "worker-1")

      ok(await put("live/1", { n: 1 }))
      ok(await put("live/2", { n: 2 }, "--record-type", "special"))
      const lines = await first.next(2)
      expect(lines.map((r) => [r.action, r.record.key, r.record.value, r.record.type])).toEqual([
        ["create", "live/1", { n: 1 }, "object"],
        ["create", "live/2", { n: 2 }, "special"],
      ])
      expect(Object.keys(lines[0])).toEqual(["seq", "action", "record"])
      expect(lines[1].seq).toBe(lines[0].seq + 1)
      // the batch is committed once it was printed
      await until("live", first, (s) => s.position === lines[1].seq)

      const stopped = await first.stop("SIGINT")
      expect(stopped).toMatchObject({ code: 0, stdout: "", stderr: "" })
      expect((await status("live")).lockedBy).toBeNull()

      // again, with another instance: only what came since
      ok(await put("live/3", { n: 3 }))
      const second = startKv([
        "consumer",
        "stream",
        "live",
        "worker-2",
        "--commit-mode",
        "record",
        ...globals,
      ])
      const [next] = await second.next(1)
      expect(next.record.key).toBe("live/3")
      expect(next.seq).toBe(lines[1].seq + 1)
      await until("live", second, (s) => s.lockedBy === "worker-2" && s.position === next.seq)
      expect(await second.stop("SIGTERM")).toMatchObject({ code: 0, stdout: "", stderr: "" })
      expect((await status("live")).lockedBy).toBeNull()
    })

    it("watch prints the current records, then each change, as NDJSON; --since replays; SIGINT exits 0", async () => {
      ok(await put("wa/1", { n: 1 }))
      const since = await latestSeq()
      const watching = startKv(["watch", "prefix", "wa/", ...globals])
      const [snapshot] = await watching.next(1)
      expect(snapshot).toMatchObject({
        seq: since,
        action: "snapshot",
        record: { key: "wa/1", value: { n: 1 } },
      })
      expect(Object.keys(snapshot)).toEqual(["seq", "action", "record"])
      ok(await put("wb/1", "not watched"))
      ok(await put("wa/2", { n: 2 }))
      ok(await kv(["delete", "wa/1"]))
      const changes = await watching.next(2)
      expect(changes.map((e) => [e.action, e.record.key])).toEqual([
        ["create", "wa/2"],
        ["delete", "wa/1"],
      ])
      expect(await watching.stop("SIGINT")).toMatchObject({ code: 0, stdout: "", stderr: "" })

      const replay = startKv(["watch", "key", "wa/1", "--since", String(since), ...globals])
      expect((await replay.next(2)).map((e) => [e.seq, e.action])).toEqual([
        [since, "create"],
        [changes[1].seq, "delete"],
      ])
      expect(await replay.stop("SIGTERM")).toMatchObject({ code: 0, stdout: "", stderr: "" })

      fails(await kv(["watch", "key", ""]), /key must be a non-empty string/)
      fails(await kv(["watch", "all", "--since", "-1"]), /seq must be a non-negative integer/)
      fails(await kv(["watch"]), /"kv watch" expects one of key, prefix, range, all/)
    })

    it("consumer stream whose stdout is closed releases its lock, keeps the batch it could not print, exits 0", async () => {
      await startAtEnd("closed")
      const reader = startKv(["consumer", "stream", "closed", "reader", ...globals])
      await until("closed", reader, (s) => s.lockedBy === "reader")
      ok(await put("closed/1", 1))
      const [printed] = await reader.next(1)
      expect(printed.record.key).toBe("closed/1")
      await until("closed", reader, (s) => s.position === printed.seq)

      // the reader goes away after the first line, as `kv consumer stream closed reader | head -1` does
      reader.closeStdout()
      ok(await put("closed/2", 2))
      expect(await reader.ended()).toEqual({ code: 0, signal: null, stderr: "" })
      // released at once (not after the lock duration), and the record it could not print is not committed
      expect(await status("closed")).toMatchObject({ lockedBy: null, position: printed.seq })

      const next = startKv(["consumer", "stream", "closed", "reader-2", ...globals])
      const [again] = await next.next(1)
      expect(again).toMatchObject({ seq: printed.seq + 1, record: { key: "closed/2" } })
      expect(await next.stop("SIGINT")).toMatchObject({ code: 0, stderr: "" })
    })

    it("consumer stream: only the lock holder prints; --of-type filters", async () => {
      await startAtEnd("pair")
      const holder = startKv(["consumer", "stream", "pair", "holder", "--of-type", "wanted", ...globals])
      await until("pair", holder, (s) => s.lockedBy === "holder")
      const standby = startKv(["consumer", "stream", "pair", "standby", ...globals])
      ok(await put("pair/other", 1))
      ok(await put("pair/wanted", 2, "--record-type", "wanted"))
      const [line] = await holder.next(1)
      expect(line.record.key).toBe("pair/wanted")
      // the standby, stopped while the holder still holds the lock, printed nothing
      expect(await standby.stop("SIGINT")).toMatchObject({ code: 0, stdout: "", stderr: "" })
      expect(await holder.stop("SIGINT")).toMatchObject({ code: 0, stdout: "", stderr: "" })
      // the holder moved its position over the record of the other type too
      expect((await status("pair")).position).toBe(line.seq)
    })

    it("a consumer whose next records were trimmed fails naming the gap until an operator commits past it", async () => {
      await startAtEnd("gap")
      const before = await latestSeq()
      ok(await put("gap/1", 1))
      ok(await put("gap/2", 2))
      ok(await put("gap/3", 3))
      ok(await kv(["stream", "trim", String(before + 2)]))
      const expected = new RegExp(
        `^kv: consumer "gap" is at seq ${before}, but seqs ${before + 1} to ${before + 2} were trimmed .*` +
          `kv consumer commit gap ${before + 2}`,
      )
      const [get, streamed] = await Promise.all([
        kv(["consumer", "get", "gap"]),
        kv(["consumer", "stream", "gap", "worker"]),
      ])
      fails(get, expected)
      fails(streamed, expected)
      ok(await kv(["consumer", "commit", "gap", String(before + 2)]))
      expect((await json(["consumer", "get", "gap"])).map((r: any) => r.record.key)).toEqual(["gap/3"])
    })

    it("--help lists the consumer commands", async () => {
      const [root, group, streamHelp] = await Promise.all([
        kv(["--help"]),
        kv(["consumer", "--help"]),
        kv(["consumer", "stream", "--help"]),
      ])
      expect(ok(root)).toMatch(/consumer/)
      for (const command of ["get", "stream", "status", "commit", "delete"]) {
        expect(ok(group)).toMatch(new RegExp(`- ${command} `))
      }
      expect(ok(streamHelp)).toMatch(/--commit-mode batch \| record \| none/)
      fails(await kv(["consumer"]), /missing command.*get, stream, status, commit, delete/)
    })

    describe("bad input is one error line and changes nothing", () => {
      const cases: ReadonlyArray<{ name: string; args: ReadonlyArray<string>; message?: RegExp }> = [
        {
          name: "unknown commit mode",
          args: ["consumer", "stream", "bad", "w", "--commit-mode", "sometimes"],
        },
        {
          name: "stream: limit 0",
          args: ["consumer", "stream", "bad", "w", "--limit", "0"],
          message: /limit/,
        },
        {
          name: "stream: negative limit",
          args: ["consumer", "stream", "bad", "w", "--limit=-5"],
          message: /limit/,
        },
        { name: "stream: empty stream name", args: ["consumer", "stream", "", "w"], message: /stream name/ },
        {
          name: "stream: empty consumer name",
          args: ["consumer", "stream", "bad", ""],
          message: /consumer name/,
        },
        { name: "get: limit below -1", args: ["consumer", "get", "bad", "--limit", "-2"], message: /limit/ },
        { name: "get: non-numeric limit", args: ["consumer", "get", "bad", "--limit", "many"] },
        { name: "get: empty name", args: ["consumer", "get", ""], message: /stream name/ },
        { name: "commit: negative seq", args: ["consumer", "commit", "bad", "-1"], message: /seq/ },
        { name: "commit: non-numeric seq", args: ["consumer", "commit", "bad", "ten"] },
        {
          name: "commit: beyond the end",
          args: ["consumer", "commit", "bad", "1000000"],
          message: /beyond the end/,
        },
        { name: "commit: empty name", args: ["consumer", "commit", "", "1"], message: /stream name/ },
        { name: "status: empty name", args: ["consumer", "status", ""], message: /stream name/ },
        { name: "delete: empty name", args: ["consumer", "delete", ""], message: /stream name/ },
        { name: "unknown subcommand", args: ["consumer", "frobnicate", "bad"] },
      ]

      const snapshot = async () => {
        const [records, seq, consumer] = await Promise.all([
          kv(["list", "0", "-1"]),
          kv(["stream", "seq"]),
          kv(["consumer", "status", "bad"]),
        ])
        return { records: ok(records), seq: ok(seq), consumer: ok(consumer) }
      }

      let before: Awaited<ReturnType<typeof snapshot>>
      let after: Awaited<ReturnType<typeof snapshot>>
      const results = new Map<string, Result>()

      beforeAll(async () => {
        ok(await put("bad/1", { original: true }))
        await startAtEnd("bad")
        ok(await put("bad/2", { after: true }))
        before = await snapshot()
        await Promise.all(
          cases.map(async (c) => {
            results.set(c.name, await kv(c.args))
          }),
        )
        after = await snapshot()
      })

      for (const c of cases) {
        it(c.name, () => {
          fails(results.get(c.name)!, c.message)
        })
      }

      it("the database and the consumer are unchanged", () => {
        expect(after).toEqual(before)
      })
    })
  })
