/** `effect-kv/sqlite`: the embedded SQLite backend. */
export * as KvSqlite from "./layers/Sqlite.js"
