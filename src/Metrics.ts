/**
 * The metrics effect-kv records, as Effect `Metric`s: read them with `Metric.value`, or export
 * them with `@effect/opentelemetry` like any other metric of your application.
 *
 * Task metrics are tagged with `task_name`; consumer metrics with `stream` and `consumer`.
 */
import { Metric, MetricBoundaries } from "effect"

/** Tasks a runner started (handler began). */
export const tasksStarted = Metric.counter("kv_tasks_started", {
  description: "tasks a runner started",
  incremental: true,
})

/** Tasks whose handler succeeded and whose completion was stored. */
export const tasksCompleted = Metric.counter("kv_tasks_completed", {
  description: "tasks completed",
  incremental: true,
})

/** Attempts that failed (handler failure, defect or timeout), whether or not the task is retried. */
export const tasksFailed = Metric.counter("kv_tasks_failed", {
  description: "failed task attempts",
  incremental: true,
})

/** How long handlers ran, in milliseconds, whatever their outcome. */
export const taskDuration = Metric.histogram(
  "kv_task_duration_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 20 }),
  "task handler duration in milliseconds",
)

/** Records of the stream a consumer has not committed yet (the stream's last seq minus its position). */
export const consumerLagRecords = Metric.gauge("kv_consumer_lag_records", {
  description: "stream records a consumer has not committed yet",
})

/**
 * How far behind a consumer is in time, when it last read: how long ago, in milliseconds, this
 * instance first saw the oldest record it has not committed yet (0 when it is caught up). The
 * stream keeps no time of writing (a record's `created` is its key's creation), so the age of a
 * record is counted from the first read that found the stream's end at or beyond it: a lower
 * bound, within a poll interval for records written while the instance runs; a backlog found at
 * an instance's first read counts from that read.
 */
export const consumerLagMs = Metric.gauge("kv_consumer_lag_ms", {
  description: "age in milliseconds of the oldest record a consumer has not committed",
})

// Tagging makes a new metric (with its own key) each time: the runner asks for the same few
// per task, so each is made once per metric and task name.
const taggedByName = new WeakMap<Metric.Metric<any, any, any>, Map<string, Metric.Metric<any, any, any>>>()

/** A task metric for one task name. */
export const forTask = <M extends Metric.Metric<any, any, any>>(metric: M, name: string): M => {
  let byName = taggedByName.get(metric)
  if (byName === undefined) {
    byName = new Map()
    taggedByName.set(metric, byName)
  }
  let tagged = byName.get(name)
  if (tagged === undefined) {
    tagged = Metric.tagged(metric, "task_name", name)
    byName.set(name, tagged)
  }
  return tagged as M
}

/** A consumer metric for one stream and consumer. */
export const forConsumer = <M extends Metric.Metric<any, any, any>>(
  metric: M,
  stream: string,
  consumer: string,
): M => Metric.tagged(Metric.tagged(metric, "stream", stream), "consumer", consumer) as M
