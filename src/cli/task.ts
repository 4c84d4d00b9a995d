/**
 * The task commands: `task new|list|get|cancel|retry|prune|stats|run`.
 *
 * `task run` runs a `TaskRunner` with the built-in handlers `log` and `echo` until SIGINT or
 * SIGTERM or until its stdout is closed, then shuts down gracefully (exit 0). Its log (one line
 * per task start and finish, naming the runner and the task) goes to stderr in logfmt; an
 * unreachable database is retried with backoff, saying so on stderr.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Arg from "../Arguments.js"
import { redact } from "../internal/connection.js"
import {
  type FinishedStatus,
  finishedStatuses,
  keyModes,
  Priority,
  Scheduler,
  type SchedulerService,
  Task,
  TaskNotFoundError,
  taskStatuses,
} from "../Scheduler.js"
import { InvalidArgumentError, type StoreError } from "../Store.js"
import { durationOption, nameArg } from "./arguments.js"
import { layerFor } from "./backend.js"
import { MissingCommandError } from "./errors.js"
import { kv } from "./globals.js"
import { printEncoded, printInteger, printJson, readStdinJson } from "./output.js"
import * as Stdout from "./stdout.js"

/** `task cancel` of a task that had finished already: nothing changed. */
export class TaskFinishedError extends Schema.TaggedError<TaskFinishedError>()("TaskFinishedError", {
  id: Schema.String,
  status: Schema.String,
}) {
  override get message() {
    return `task "${this.id}" is already ${this.status}: it was not cancelled`
  }
}

/** Runs `f` with the Scheduler of the backend chosen by the global flags. */
const withScheduler = <A, E>(f: (scheduler: SchedulerService) => Effect.Effect<A, E>) =>
  Effect.flatMap(kv, ({ connection, type }) =>
    Effect.provide(Effect.flatMap(Scheduler, f), layerFor(type, connection)),
  )

const taskId = nameArg("id", "task id", "The task id.")

// --- task new ---------------------------------------------------------------------------

const newTask = Command.make(
  "new",
  {
    name: nameArg("name", "task name", "The task's name: the handler that runs it."),
    scheduledFor: Options.text("scheduled-for").pipe(
      Options.withPseudoName("time"),
      Options.withDescription("When the task is due, RFC 3339 (e.g. 2030-01-02T15:04:05Z); default now."),
      Options.withSchema(Arg.Timestamp),
      Options.optional,
    ),
    delay: Options.text("delay").pipe(
      Options.withPseudoName("duration"),
      Options.withDescription("Due this long from now instead, e.g. 500ms, 10s, 5m, 1h30m."),
      Options.withSchema(Arg.DurationText),
      Options.optional,
    ),
    maxRetries: Options.integer("max-retries").pipe(
      Options.withDescription("How many failed attempts are retried (default 3)."),
      Options.withSchema(Arg.nonNegative("--max-retries")),
      Options.withDefault(3),
    ),
    timeout: durationOption("timeout", "300s", "How long one attempt may run"),
    key: Options.text("key").pipe(
      Options.withDescription("The task key: at most one pending task holds it (see --key-mode)."),
      Options.withSchema(Arg.name("--key")),
      Options.optional,
    ),
    keyMode: Options.choice("key-mode", keyModes).pipe(
      Options.withDescription(
        "With --key, when a task holds the key: replace (default; update the pending task: debounce), " +
          "preserve-run-at (the same, keeping when it is due: throttle), dedupe (change nothing while one is pending or running).",
      ),
      Options.optional,
    ),
    priority: Options.integer("priority").pipe(
      Options.withDescription("Higher is taken first, then the earlier due (default 0)."),
      Options.withSchema(Priority),
      Options.withDefault(0),
    ),
  },
  ({ delay, key, keyMode, maxRetries, name, priority, scheduledFor, timeout }) =>
    Effect.gen(function* () {
      if (Option.isSome(scheduledFor) && Option.isSome(delay)) {
        return yield* new InvalidArgumentError({ message: "give --scheduled-for or --delay, not both" })
      }
      if (Option.isSome(keyMode) && Option.isNone(key)) {
        return yield* new InvalidArgumentError({ message: "--key-mode needs --key" })
      }
      const payload = yield* readStdinJson
      const task = yield* Task.make(name, payload, {
        scheduledFor: Option.getOrUndefined(scheduledFor),
        delay: Option.getOrUndefined(delay),
        maxRetries,
        timeout,
        priority,
        key: Option.getOrUndefined(key),
        keyMode: Option.getOrUndefined(keyMode),
      })
      const created = yield* withScheduler((scheduler) => scheduler.create(task))
      yield* Stdout.writeLine(created.id)
    }),
).pipe(
  Command.withDescription(
    "Create a task whose payload is the JSON read from stdin; prints its id (with --key: the id of the task as stored).",
  ),
)

// --- task list | get | cancel -------------------------------------------------------------

const printTask = printEncoded(Task)
const printTasks = printEncoded(Schema.Array(Task))

const listTasks = Command.make(
  "list",
  {
    status: Options.choice("status", taskStatuses).pipe(
      Options.withDescription("Only tasks with this status."),
      Options.optional,
    ),
    name: Options.text("name").pipe(
      Options.withDescription("Only tasks with this name."),
      Options.withSchema(Arg.name("--name")),
      Options.optional,
    ),
    offset: Options.integer("offset").pipe(
      Options.withDescription("How many tasks to skip (default 0)."),
      Options.withSchema(Arg.Offset),
      Options.withDefault(0),
    ),
    limit: Options.integer("limit").pipe(
      Options.withDescription("At most this many tasks; -1: no limit (default 1000)."),
      Options.withSchema(Arg.Limit),
      Options.withDefault(1000),
    ),
  },
  ({ limit, name, offset, status }) =>
    Effect.flatMap(
      withScheduler((scheduler) =>
        scheduler.list({
          status: Option.getOrUndefined(status),
          name: Option.getOrUndefined(name),
          offset,
          limit,
        }),
      ),
      printTasks,
    ),
).pipe(Command.withDescription("Print tasks as a JSON array, newest first."))

const getTask = Command.make("get", { id: taskId }, ({ id }) =>
  Effect.gen(function* () {
    const found = yield* withScheduler((scheduler) => scheduler.get(id))
    if (Option.isNone(found)) return yield* new TaskNotFoundError({ id })
    yield* printTask(found.value)
  }),
).pipe(Command.withDescription("Print the task as a JSON object."))

const cancelTask = Command.make("cancel", { id: taskId }, ({ id }) =>
  Effect.gen(function* () {
    const task = yield* withScheduler((scheduler) => scheduler.cancel(id))
    if (task.status !== "cancelled") return yield* new TaskFinishedError({ id, status: task.status })
  }),
).pipe(Command.withDescription("Cancel a pending or running task: it never runs again."))

// --- task retry | prune | stats ---------------------------------------------------------

const retryTask = Command.make("retry", { id: taskId }, ({ id }) =>
  Effect.flatMap(
    withScheduler((scheduler) => scheduler.retry(id)),
    printTask,
  ),
).pipe(
  Command.withDescription(
    "A failed or cancelled task back to pending, due now, retry count 0; prints the task as a JSON object.",
  ),
)

/** `completed,cancelled,failed`: finished statuses, comma-separated. */
const FinishedStatuses = Arg.checked(Schema.String, (input) => {
  if (typeof input !== "string") return "--status must be a string"
  const bad = input.split(",").find((s) => !finishedStatuses.includes(s.trim() as FinishedStatus))
  return bad === undefined
    ? undefined
    : `--status must be finished statuses (${finishedStatuses.join(", ")}), comma-separated, got ${JSON.stringify(bad)}`
}).pipe(
  Schema.transform(Schema.Array(Schema.String), {
    strict: true,
    decode: (input) => input.split(",").map((s) => s.trim()),
    encode: (statuses) => statuses.join(","),
  }),
)

const pruneTasks = Command.make(
  "prune",
  {
    olderThan: Options.text("older-than").pipe(
      Options.withPseudoName("duration"),
      Options.withDescription("Delete the tasks that finished longer ago than this, e.g. 7d, 12h."),
      Options.withSchema(Arg.DurationText),
    ),
    status: Options.text("status").pipe(
      Options.withPseudoName("completed,cancelled,failed"),
      Options.withDescription("Only finished tasks of these statuses (default all three)."),
      Options.withSchema(FinishedStatuses),
      Options.optional,
    ),
  },
  ({ olderThan, status }) =>
    Effect.flatMap(
      withScheduler((scheduler) =>
        scheduler.prune({
          olderThan,
          statuses: Option.getOrUndefined(status) as ReadonlyArray<FinishedStatus> | undefined,
        }),
      ),
      printInteger,
    ),
).pipe(Command.withDescription("Delete finished tasks (completed, failed, cancelled); prints how many."))

const taskStats = Command.make("stats", {}, () =>
  Effect.flatMap(
    withScheduler((scheduler) => scheduler.stats()),
    printJson,
  ),
).pipe(
  Command.withDescription(
    "Print { total, byStatus, byName, oldestDueAgeMs } as a JSON object: tasks counted by status and name, " +
      "and how long the oldest due pending task has waited (null when none is due).",
  ),
)

// --- task run -------------------------------------------------------------------------

/** The handlers `task run` has. */
const builtIn = {
  /** Logs the payload (stderr). */
  log: (task: Task) =>
    Effect.logInfo("payload").pipe(Effect.annotateLogs("payload", JSON.stringify(task.payload))),
  /**
   * Prints the payload as one line of JSON (stdout). Done once the line is written: with stdout
   * closed it waits, and the runner, stopped by the closed stdout, gives the task back after
   * its shutdown timeout.
   */
  echo: (task: Task) => Stdout.write(`${JSON.stringify(task.payload)}\n`),
}
const builtInNames = Object.keys(builtIn)

/** One line per event on stderr: `timestamp=... level=INFO ... message="task started" runner=... task=...`. */
const stderrLog = Logger.logfmtLogger.pipe(Logger.withConsoleError)

const isStoreError = (error: unknown): error is StoreError =>
  (error as { _tag?: unknown } | null)?._tag === "StoreError"

/** Connecting again after the database could not be reached: 1s, 2s, 4s, ... at most 30s. */
const reconnect = Schedule.exponential(Duration.seconds(1)).pipe(
  Schedule.union(Schedule.spaced(Duration.seconds(30))),
  Schedule.jittered,
)

const runTasks = Command.make(
  "run",
  {
    runnerId: Options.text("runner-id").pipe(
      Options.withDescription("Who holds the tasks this runner takes (default <hostname>-<pid>-<random>)."),
      Options.withSchema(Arg.name("--runner-id")),
      Options.optional,
    ),
    pollInterval: durationOption(
      "poll-interval",
      "10s",
      "The longest an idle runner waits before it looks again",
    ),
    lockDuration: durationOption(
      "lock-duration",
      "5m",
      "How long a taken task stays locked without a heartbeat",
    ),
    taskTypes: Options.text("task-types").pipe(
      Options.withPseudoName("a,b"),
      Options.withDescription(`Only these task names (default all: ${builtInNames.join(",")}).`),
      Options.withSchema(Arg.nameList("--task-types")),
      Options.optional,
    ),
    concurrency: Options.integer("concurrency").pipe(
      Options.withDescription("Tasks run at once (default 1)."),
      Options.withSchema(Arg.positive("--concurrency")),
      Options.withDefault(1),
    ),
    prefetch: Options.integer("prefetch").pipe(
      Options.withDescription(
        "Tasks locked ahead of free slots, taken in the same round trip (default 0); given back at shutdown.",
      ),
      Options.withSchema(Arg.nonNegative("--prefetch")),
      Options.withDefault(0),
    ),
    noCron: Options.boolean("no-cron").pipe(
      Options.withDescription(
        "Do not make the ticks of the recurring schedules (kv cron) into tasks in this runner (default: it does).",
      ),
    ),
    shutdownTimeout: durationOption(
      "shutdown-timeout",
      "30s",
      "On SIGINT/SIGTERM or a closed stdout, how long running tasks may take to finish before they are given back",
    ),
  },
  (options) =>
    Effect.gen(function* () {
      const { connection, type } = yield* kv
      // loaded here, not at start-up: only `task run` needs them
      const TaskRunner = yield* Effect.promise(() => import("../TaskRunner.js"))
      const runnerOptions = {
        handlers: builtIn,
        // absent: the library's default, unique to this process
        runnerId: Option.getOrUndefined(options.runnerId),
        taskTypes: Option.getOrUndefined(options.taskTypes),
        pollInterval: options.pollInterval,
        lockDuration: options.lockDuration,
        concurrency: options.concurrency,
        prefetch: options.prefetch,
        shutdownTimeout: options.shutdownTimeout,
        cron: !options.noCron,
      }
      yield* TaskRunner.validate(runnerOptions)
      return yield* TaskRunner.run(runnerOptions).pipe(
        Effect.provide(layerFor(type, connection, "long-running")),
        Effect.tapError((error) =>
          isStoreError(error)
            ? Effect.logWarning("cannot reach the database; retrying").pipe(
                Effect.annotateLogs("error", redact(error.message)),
              )
            : Effect.void,
        ),
        Effect.retry({ schedule: reconnect, while: isStoreError }),
        Effect.locally(FiberRef.currentLoggers, HashSet.make(stderrLog)),
      )
    }),
).pipe(
  Command.withDescription(
    "Run tasks with the built-in handlers (log: logs the payload; echo: prints it on stdout) " +
      "until SIGINT/SIGTERM or until stdout is closed; one log line per task start and finish on stderr.",
  ),
)

export const task = Command.make("task", {}, () =>
  Effect.fail(
    new MissingCommandError({
      path: "kv task",
      expected: ["new", "list", "get", "cancel", "retry", "prune", "stats", "run"],
    }),
  ),
).pipe(
  Command.withDescription(
    "One-off tasks, scheduled for a time and run by runners on any number of processes.",
  ),
  Command.withSubcommands([
    newTask,
    listTasks,
    getTask,
    cancelTask,
    retryTask,
    pruneTasks,
    taskStats,
    runTasks,
  ]),
)
