/**
 * `effect-kv/interop`: the store under Effect's own storage interfaces.
 * `KvKeyValueStore.layer({ prefix })` provides `@effect/platform`'s `KeyValueStore`, and
 * `KvPersistence.layer({ prefix })` `@effect/experimental`'s `BackingPersistence` (its TTLs as
 * record expiry), each over the `Store` of the context. Needs the optional peers
 * `@effect/platform` and `@effect/experimental`.
 */
export * as KvKeyValueStore from "./interop/KvKeyValueStore.js"
export * as KvPersistence from "./interop/KvPersistence.js"
