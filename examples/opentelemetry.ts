/**
 * effect-kv's spans and metrics exported with OpenTelemetry, to the console.
 *
 *   npx tsx examples/opentelemetry.ts
 *
 * Runs the store on a SQLite file in a temporary directory, writes and reads a few keys, reads
 * them as a consumer, and prints each span as it ends (`kv.store.put`, `kv.store.get`,
 * `kv.consumer.get`, ...: keys, types and counts as attributes, never values) and, when the
 * program ends, the metrics (`kv_consumer_lag_records`, `kv_consumer_lag_ms`, tagged with the
 * stream and consumer). In an application, replace the console exporters with OTLP ones
 * (`@opentelemetry/exporter-trace-otlp-http`, ...) or use `@effect/opentelemetry`'s `Otlp`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeSdk } from "@effect/opentelemetry"
import { ConsoleMetricExporter, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Consumer, Mutation, Store } from "../src/index.js"
import { KvSqlite } from "../src/sqlite.js"

/** Spans to the console as they end; metrics to the console when the program ends. */
const Observability = NodeSdk.layer(() => ({
  resource: { serviceName: "effect-kv-example" },
  spanProcessor: new SimpleSpanProcessor(new ConsoleSpanExporter()),
  metricReader: new PeriodicExportingMetricReader({
    exporter: new ConsoleMetricExporter(),
    exportIntervalMillis: 60_000,
  }),
}))

/** The store on a new SQLite file, removed when the program ends. */
const KvLayer = Layer.unwrapScoped(
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-kv-otel-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })),
    ),
    (dir) => KvSqlite.layer({ filename: path.join(dir, "example.db") }),
  ),
)

const program = Effect.gen(function* () {
  const store = yield* Store
  yield* store.put(
    "users/ada",
    -1,
    { name: "Ada Lovelace", known: "analytical engine notes" },
    { type: "User" },
  )
  yield* store.put("users/alan", -1, { name: "Alan Turing", known: "computable numbers" }, { type: "User" })
  yield* store.patch("users/ada", 1, { known: "the first program" })
  yield* store.get("users/ada")
  yield* store.getPrefix("users/")
  yield* store.mutateAll([Mutation.delete("users/alan")])

  const consumer = yield* Consumer.make({ streamName: "audit", consumerName: "example" })
  const batch = yield* consumer.get(2)
  yield* consumer.commit(batch)
  yield* consumer.get(10)
  yield* consumer.unlock
}).pipe(Effect.withSpan("example"))

program.pipe(Effect.provide(KvLayer), Effect.provide(Observability), Effect.runPromise).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
