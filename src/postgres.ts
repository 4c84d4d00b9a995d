/** `effect-kv/postgres`: the PostgreSQL backend. */
export * as KvPostgres from "./layers/Postgres.js"
