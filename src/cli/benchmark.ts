/**
 * `kv benchmark get|put|patch|mixed`: throughput and latency of the store's operations on the chosen
 * backend, through the same `Store` service the other commands use.
 *
 * `w` fibers take operation numbers until `n` are done. Latencies go into an HDR histogram
 * (`hdr-histogram-js`, microseconds, 3 significant digits), so percentiles need no list of
 * samples. The keys live under a prefix of their own (`kv-benchmark/<run id>/`) and are deleted
 * afterwards, also when the run fails or is interrupted (Ctrl-C, or stdout closed by its reader:
 * the text summary's first line is printed as the measurement starts); the user's keys are
 * never touched.
 * The progress bar (`cli-progress`) is drawn on stderr when it is a terminal. Both libraries
 * are loaded only here, so that other commands do not pay for them at start-up.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scheduler from "effect/Scheduler"
import * as Schema from "effect/Schema"
import * as Arg from "../Arguments.js"
import {
  type InvalidArgumentError,
  Mutation,
  type StoreError,
  type StoreService,
  type VersionMismatchError,
} from "../Store.js"
import { errorText, MissingCommandError } from "./errors.js"
import { kv, withStore } from "./globals.js"
import * as Stdout from "./stdout.js"

type Operation = "get" | "put" | "patch" | "mixed"

/** Keys written by `put` and `patch` (they overwrite these over and over). */
const writtenKeys = 100
/** The keys `mixed` picks from at random (at most; fewer when there are fewer operations). */
const mixedKeys = 10_000
/**
 * Before the measurement, operations run unmeasured (at most this many, for at most
 * `warmUpTime`) so that connections, prepared statements and the JIT are warm.
 */
const warmUpOperations = 5_000
const warmUpTime = 500

export interface Summary {
  readonly operation: Operation
  readonly backend: string
  /** Records seeded (`get` only). */
  readonly records?: number
  readonly operations: number
  readonly workers: number
  readonly totalMs: number
  readonly opsPerSecond: number
  readonly latencyMs: {
    readonly p50: number
    readonly p95: number
    readonly p99: number
    readonly max: number
  }
}

const count = (name: string, what: string, fallback: number) =>
  Args.integer({ name }).pipe(
    Args.withDescription(`${what} (default ${fallback}).`),
    Args.withSchema(Arg.positive(`<${name}> (${what.toLowerCase()})`)),
    Args.withDefault(fallback),
  )

const records = count("x", "Records seeded", 100)
const operations = count("n", "Operations", 10_000)
const workers = count("w", "Concurrent fibers", 100)
const json = Options.boolean("json").pipe(Options.withDescription("Print the summary as one JSON object."))

/**
 * The workers' scheduler. Effect's default one hops through up to 2,048 microtasks before it
 * lets Node's event loop run; on SQLite (synchronous) the workers are never idle, so SIGINT or a
 * closed stdout would wait for tens of seconds. This one lets the event loop run after every
 * batch of fiber steps (`setImmediate`: no timer delay).
 */
const letsEventLoopRun = Scheduler.makeBatched((runBatch) => setImmediate(runBatch))

const padded = (i: number) => String(i).padStart(6, "0")
const recordValue = (i: number) => ({
  n: i,
  name: `item ${i}`,
  tags: ["a", "b"],
  nested: { flag: i % 2 === 0 },
})
const patchOf = (i: number) => ({ n: i, nested: { seen: i } })

/** A record just put was not there when read back (`mixed`): the store lost a write. */
export class LostWriteError extends Schema.TaggedError<LostWriteError>()("LostWriteError", {
  key: Schema.String,
}) {
  override get message() {
    return `benchmark mixed: "${this.key}" was not found right after it was put`
  }
}

/** What operation `i` does (on keys made beforehand: the loop measures the store, not string building). */
const operationOf = (
  store: StoreService,
  operation: Operation,
  keys: ReadonlyArray<string>,
): ((
  i: number,
) => Effect.Effect<unknown, VersionMismatchError | InvalidArgumentError | StoreError | LostWriteError>) => {
  switch (operation) {
    case "get":
      return (i: number) => store.get(keys[i % keys.length]!)
    case "put":
      return (i: number) => store.put(keys[i % keys.length]!, -1, recordValue(i))
    case "patch":
      return (i: number) => store.patch(keys[i % keys.length]!, -1, patchOf(i))
    case "mixed":
      // a put of a key picked at random (created or overwritten), then a get of it back
      return (i: number) => {
        const key = keys[Math.floor(Math.random() * keys.length)]!
        return Effect.flatMap(store.put(key, -1, recordValue(i)), () =>
          Effect.flatMap(store.get(key), (found) =>
            Option.isSome(found) ? Effect.void : Effect.fail(new LostWriteError({ key })),
          ),
        )
      }
  }
}

/** A progress bar on stderr while `done()` grows to `total`; nothing when stderr is not a terminal. */
const progress = (total: number, done: () => number) =>
  process.stderr.isTTY !== true
    ? Effect.void
    : Effect.gen(function* () {
        const { default: cliProgress } = yield* Effect.promise(() => import("cli-progress"))
        const bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            hideCursor: true,
            clearOnComplete: true,
            format: "{bar} {percentage}% | {value}/{total} ops | {eta_formatted}",
          },
          cliProgress.Presets.shades_classic,
        )
        yield* Effect.acquireRelease(
          Effect.sync(() => bar.start(total, 0)),
          () => Effect.sync(() => bar.stop()),
        )
        yield* Effect.forkScoped(
          Effect.repeat(
            Effect.sync(() => bar.update(done())),
            Schedule.spaced("100 millis"),
          ),
        )
      })

const millis = (micros: number) => Math.round(micros) / 1000

const runBenchmark = (operation: Operation, options: { x: number; n: number; w: number; json: boolean }) =>
  Effect.gen(function* () {
    const { type } = yield* kv
    const { default: hdr } = yield* Effect.promise(() => import("hdr-histogram-js"))
    const prefix = `kv-benchmark/${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}/`
    const summary = yield* withStore((store) =>
      Effect.gen(function* () {
        const seeded = operation === "get" ? options.x : 0
        const keyCount =
          seeded > 0 ? seeded : operation === "mixed" ? Math.min(mixedKeys, options.n) : writtenKeys
        const keys = Array.from({ length: keyCount }, (_, i) => `${prefix}${padded(i)}`)
        const run = operationOf(store, operation, keys)
        const histogram = hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 })
        yield* Effect.addFinalizer(() => Effect.sync(() => histogram.destroy()))

        // `w` long-lived fibers, each taking the next operation number until `total` are taken
        // (or, warming up, until `until`)
        let next = 0
        let done = 0
        const runAll = (total: number, record: boolean, until = Number.POSITIVE_INFINITY) => {
          next = 0
          const timed = Effect.suspend(() => {
            const started = performance.now()
            return Effect.map(run(next++), () => {
              if (record) histogram.recordValue(Math.round((performance.now() - started) * 1000))
              done++
            })
          })
          const worker = Effect.whileLoop({
            while: () => next < total && (until === Number.POSITIVE_INFINITY || performance.now() < until),
            body: () => timed,
            step: () => {},
          })
          return Effect.all(
            Array.from({ length: Math.min(options.w, total) }, () => worker),
            { concurrency: "unbounded", discard: true },
          ).pipe(Effect.withScheduler(letsEventLoopRun))
        }

        for (let i = 0; i < seeded; i += 500) {
          const chunk = Array.from({ length: Math.min(500, seeded - i) }, (_, j) =>
            Mutation.put(keys[i + j]!, -1, recordValue(i + j)),
          )
          yield* store.mutateAll(chunk)
        }
        yield* runAll(Math.min(warmUpOperations, options.n), false, performance.now() + warmUpTime)
        // what is measured, as the measurement starts (the numbers follow when it is done)
        if (!options.json) yield* Stdout.writeLine(headline(operation, type, options))
        done = 0
        yield* progress(options.n, () => done)
        const started = performance.now()
        yield* runAll(options.n, true)
        const totalMs = performance.now() - started
        return {
          operation,
          backend: type,
          ...(operation === "get" ? { records: options.x } : {}),
          operations: options.n,
          workers: options.w,
          totalMs: Math.round(totalMs * 1000) / 1000,
          opsPerSecond: Math.round((options.n / totalMs) * 1000),
          latencyMs: {
            p50: millis(histogram.getValueAtPercentile(50)),
            p95: millis(histogram.getValueAtPercentile(95)),
            p99: millis(histogram.getValueAtPercentile(99)),
            max: millis(histogram.maxValue),
          },
        } satisfies Summary
      }).pipe(
        // the benchmark's keys go, whatever happened (a failure, Ctrl-C)
        Effect.ensuring(
          store
            .deletePrefix(prefix)
            .pipe(
              Effect.catchAll((error) =>
                Console.error(`kv: could not delete the benchmark keys under ${prefix}: ${errorText(error)}`),
              ),
            ),
        ),
        Effect.scoped,
      ),
    )
    yield* Stdout.writeLine(options.json ? JSON.stringify(summary) : formatNumbers(summary))
  })

const number = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** The first line of the text summary: `get on sqlite: 10,000 operations, 100 workers, 100 records`. */
const headline = (operation: Operation, backend: string, options: { x: number; n: number; w: number }) => {
  const seeded = operation === "get" ? `, ${number(options.x)} records` : ""
  return `${operation} on ${backend}: ${number(options.n)} operations, ${number(options.w)} workers${seeded}`
}

/** The rest of the text summary. */
const formatNumbers = (summary: Summary): string =>
  [
    `total  ${number(summary.totalMs / 1000, 3)} s`,
    `ops/s  ${number(summary.opsPerSecond)}`,
    `p50    ${number(summary.latencyMs.p50, 3)} ms`,
    `p95    ${number(summary.latencyMs.p95, 3)} ms`,
    `p99    ${number(summary.latencyMs.p99, 3)} ms`,
    `max    ${number(summary.latencyMs.max, 3)} ms`,
  ].join("\n")

const benchmarkGet = Command.make("get", { x: records, n: operations, w: workers, json }, (options) =>
  runBenchmark("get", options),
).pipe(Command.withDescription("Seed <x> records, then time <n> gets by <w> concurrent fibers."))

const benchmarkPut = Command.make("put", { n: operations, w: workers, json }, (options) =>
  runBenchmark("put", { ...options, x: 0 }),
).pipe(Command.withDescription(`Time <n> puts (over ${writtenKeys} keys) by <w> concurrent fibers.`))

const benchmarkPatch = Command.make("patch", { n: operations, w: workers, json }, (options) =>
  runBenchmark("patch", { ...options, x: 0 }),
).pipe(Command.withDescription(`Time <n> merge patches (over ${writtenKeys} keys) by <w> concurrent fibers.`))

const benchmarkMixed = Command.make("mixed", { n: operations, w: workers, json }, (options) =>
  runBenchmark("mixed", { ...options, x: 0 }),
).pipe(
  Command.withDescription(
    `Time <n> operations by <w> concurrent fibers, each a put of a key picked at random (of up to ${mixedKeys.toLocaleString("en-US")}) and a get of it back.`,
  ),
)

export const benchmark = Command.make("benchmark", {}, () =>
  Effect.fail(new MissingCommandError({ path: "kv benchmark", expected: ["get", "put", "patch", "mixed"] })),
).pipe(
  Command.withDescription(
    "Measure the store on the chosen backend: ops/s and p50/p95/p99/max latency, after a short " +
      `unmeasured warm-up (up to ${warmUpOperations} operations or ${warmUpTime} ms). Its keys live under ` +
      "kv-benchmark/<run id>/ and are deleted afterwards.",
  ),
  Command.withSubcommands([benchmarkGet, benchmarkPut, benchmarkPatch, benchmarkMixed]),
)
