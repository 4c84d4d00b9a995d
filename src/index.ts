/** `effect-kv`: the services, models and errors. Backends live in `effect-kv/sqlite`, `effect-kv/postgres` and `effect-kv/rqlite`. */
export * from "./Store.js"
