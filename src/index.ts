/**
 * `effect-kv`: the services, models, errors and argument Schemas, and `KvSql.layer` (the store
 * on any `SqlClient`). Backends live in `effect-kv/sqlite`, `effect-kv/postgres` and
 * `effect-kv/rqlite`.
 */
export * as Arguments from "./Arguments.js"
export * as Consumer from "./Consumer.js"
export * as Cron from "./Cron.js"
export * as Graph from "./Graph.js"
export * as SqlExecutor from "./internal/executor.js"
export * as KvSql from "./layers/Sql.js"
export * as KvMetrics from "./Metrics.js"
export * from "./Scheduler.js"
export * as StateMachine from "./StateMachine.js"
export * from "./Store.js"
export * as TaskRunner from "./TaskRunner.js"
export * from "./TypedStore.js"
export * as Watch from "./Watch.js"
