/**
 * `kv benchmark get|put|patch|mixed` end to end, on the BUILT executable, for one backend: the
 * summary (text and `--json`), the user's keys untouched, the benchmark's keys gone, bad counts.
 * Small counts: this checks the command, not the store's speed.
 */
import { beforeAll, describe, expect, it, onTestFinished } from "vitest"
import { type CliBackend, fails, ok, spawnKv } from "./Cli.suite.js"
import { startKv } from "./support/kvProcess.js"

export const cliBenchmarkSuite = (backend: CliBackend) =>
  describe(`kv benchmark on ${backend.type}`, () => {
    const globals = ["--type", backend.type, "--connection", backend.connection]
    const kv = (args: ReadonlyArray<string>, input?: string) =>
      spawnKv([...args, ...globals], input === undefined ? {} : { input })
    /** Everything a user can see of the database. */
    const snapshot = async () => {
      const [records, count] = await Promise.all([kv(["list", "0", "-1"]), kv(["count", "all"])])
      return { records: ok(records), count: ok(count) }
    }

    let before: Awaited<ReturnType<typeof snapshot>>

    beforeAll(async () => {
      ok(await kv(["init"]))
      // the user's keys, one of them where a careless benchmark might write
      ok(await kv(["put", "user/1"], '{"mine": true}'))
      ok(await kv(["put", "kv-benchmark"], '"not the benchmark\'s"'))
      ok(await kv(["put", "kv-benchmark-x/000001"], "1"))
      before = await snapshot()
    })

    it("get prints a summary with total time, ops/s and latency percentiles; the user's keys survive", async () => {
      const text = ok(await kv(["benchmark", "get", "20", "300", "4"]))
      const lines = text.trimEnd().split("\n")
      expect(lines[0]).toBe(`get on ${backend.type}: 300 operations, 4 workers, 20 records`)
      expect(lines.slice(1).map((line) => line.split(/\s+/)[0])).toEqual([
        "total",
        "ops/s",
        "p50",
        "p95",
        "p99",
        "max",
      ])
      const values = Object.fromEntries(
        lines.slice(1).map((line) => {
          const [name, value] = line.split(/\s+/)
          return [name, Number(value!.replaceAll(",", ""))]
        }),
      )
      expect(values.total).toBeGreaterThan(0)
      expect(values["ops/s"]).toBeGreaterThan(0)
      expect(values.p50).toBeLessThanOrEqual(values.p95!)
      expect(values.p95).toBeLessThanOrEqual(values.p99!)
      expect(values.p99).toBeLessThanOrEqual(values.max!)
      expect(await snapshot()).toEqual(before)
    })

    it("put and patch --json print one JSON object; the benchmark's keys are gone afterwards", async () => {
      for (const operation of ["put", "patch"]) {
        const summary = JSON.parse(ok(await kv(["benchmark", operation, "300", "8", "--json"])))
        expect(Object.keys(summary)).toEqual([
          "operation",
          "backend",
          "operations",
          "workers",
          "totalMs",
          "opsPerSecond",
          "latencyMs",
        ])
        expect(summary).toMatchObject({ operation, backend: backend.type, operations: 300, workers: 8 })
        expect(summary.totalMs).toBeGreaterThan(0)
        expect(summary.opsPerSecond).toBeGreaterThan(0)
        const { p50, p95, p99, max } = summary.latencyMs
        expect([p50, p95, p99, max].every((n: unknown) => typeof n === "number" && n >= 0)).toBe(true)
        expect(p50 <= p95 && p95 <= p99 && p99 <= max).toBe(true)
      }
      const summary = JSON.parse(ok(await kv(["benchmark", "get", "--json"])))
      expect(summary).toMatchObject({ operation: "get", records: 100, operations: 10_000, workers: 100 })
      expect(ok(await kv(["count", "prefix", "kv-benchmark/"]))).toBe("0\n")
      expect(await snapshot()).toEqual(before)
    })

    it("mixed (a put of a random key and a get of it back per operation): the summary, --json, no keys left", async () => {
      const text = ok(await kv(["benchmark", "mixed", "300", "4"]))
      const lines = text.trimEnd().split("\n")
      expect(lines[0]).toBe(`mixed on ${backend.type}: 300 operations, 4 workers`)
      expect(lines.slice(1).map((line) => line.split(/\s+/)[0])).toEqual([
        "total",
        "ops/s",
        "p50",
        "p95",
        "p99",
        "max",
      ])
      const seqBefore = Number(ok(await kv(["stream", "seq"])))
      const summary = JSON.parse(ok(await kv(["benchmark", "mixed", "200", "8", "--json"])))
      expect(Object.keys(summary)).toEqual([
        "operation",
        "backend",
        "operations",
        "workers",
        "totalMs",
        "opsPerSecond",
        "latencyMs",
      ])
      expect(summary).toMatchObject({
        operation: "mixed",
        backend: backend.type,
        operations: 200,
        workers: 8,
      })
      expect(summary.opsPerSecond).toBeGreaterThan(0)
      const { p50, p95, p99, max } = summary.latencyMs
      expect(p50 <= p95 && p95 <= p99 && p99 <= max).toBe(true)
      // it wrote: at least the 200 measured puts (and the warm-up's), then deleted its keys
      const changes = JSON.parse(ok(await kv(["stream", "get", String(seqBefore + 1), "-1"])))
      const writes = changes.filter(
        (c: any) => c.action !== "delete" && c.record.key.startsWith("kv-benchmark/"),
      )
      expect(writes.length).toBeGreaterThanOrEqual(200)
      expect(ok(await kv(["count", "prefix", "kv-benchmark/"]))).toBe("0\n")
      expect(await snapshot()).toEqual(before)
    })

    it("a benchmark whose stdout is closed stops, deletes its keys and exits 0", async () => {
      // far more operations than the test can wait for: only the closed stdout ends this run
      const run = startKv(["benchmark", "get", "200", "1000000000", "4", ...globals])
      // the reader is gone before the first line, as in `kv benchmark get | true`: the first
      // line, printed once the 200 keys are seeded and the measurement starts, fails (EPIPE)
      onTestFinished(() => run.kill("SIGKILL")) // a test that timed out must not leave it running
      run.closeStdout()
      expect(await run.exited, run.stderr()).toEqual({ code: 0, signal: null })
      expect(run.stderr()).toBe("")
      expect(ok(await kv(["count", "prefix", "kv-benchmark/"]))).toBe("0\n")
      expect(await snapshot()).toEqual(before)
    })

    it("bad counts are one error line and change nothing", async () => {
      const results = await Promise.all(
        [
          ["benchmark", "get", "0"],
          ["benchmark", "get", "10", "-5"],
          ["benchmark", "get", "10", "10", "0"],
          ["benchmark", "put", "many"],
          ["benchmark", "patch", "10", "1.5"],
          ["benchmark", "mixed", "0"],
          ["benchmark", "mixed", "10", "0"],
          ["benchmark", "frobnicate"],
          ["benchmark"],
        ].map((args) => kv(args)),
      )
      fails(results[0]!, /<x> \(records seeded\) must be a positive integer, got 0/)
      fails(results[1]!, /<n> \(operations\) must be a positive integer/)
      fails(results[2]!, /<w> \(concurrent fibers\) must be a positive integer/)
      fails(results[5]!, /<n> \(operations\) must be a positive integer/)
      fails(results[6]!, /<w> \(concurrent fibers\) must be a positive integer/)
      for (const result of [results[3]!, results[4]!, results[7]!]) fails(result)
      fails(results[8]!, /missing command.*get, put, patch, mixed/)
      expect(await snapshot()).toEqual(before)
    })
  })
