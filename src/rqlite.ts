/** `effect-kv/rqlite`: the rqlite backend and its `@effect/sql` client. */
export * as KvRqlite from "./layers/Rqlite.js"
export * as RqliteClient from "./layers/RqliteClient.js"
