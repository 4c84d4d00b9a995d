/** `effect-kv/sqlite`: the embedded SQLite backend and its `@effect/sql` client. */
export * as KvSqlite from "./layers/Sqlite.js"
export * as SqliteClient from "./layers/SqliteClient.js"
