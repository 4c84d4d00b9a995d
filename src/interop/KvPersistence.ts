/**
 * `@effect/experimental`'s `BackingPersistence` over the {@link Store}: `Persistence.layerResult`,
 * `PersistedCache` and everything else on `Persistence` then keep their entries in SQLite,
 * PostgreSQL or rqlite, and their time-to-live becomes record expiry.
 *
 * - Keys: the entry `key` of the store `storeId` is the record `<prefix><storeId>/<key>`, with
 *   `%` and `/` in `storeId` percent-encoded (`%25`, `%2F`), so that no store's keys lie under
 *   another's: `clear` deletes the keys under `<prefix><storeId>/` and nothing else.
 * - Values: the encoded value as the record's JSON value (record type as the store derives it).
 * - TTL: `Option.some(ttl)` is written as the record's `ttl` (it expires by the `Clock`, absent
 *   from every read from then on, and the expiry sweep deletes it); `Option.none()` (or an
 *   infinite duration) stores it without expiry. A zero or negative ttl stores nothing and
 *   deletes the key: the entry would be expired at once (`Persistence.layerResult` never writes
 *   such an entry).
 * - `set` is one `put` (or `delete`), `setMany` one `mutateAll` (one transaction), `getMany` one
 *   `getBatch` (answers in input order).
 * - Store failures (and an invalid key) are `PersistenceBackingError`s of the method, with the
 *   store's error as `cause`.
 */
import * as Persistence from "@effect/experimental/Persistence"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Mutation, Store, type StoreService } from "../Store.js"

export interface Options {
  /** Every store's keys are under `<prefix><storeId>/`; `""` is allowed. */
  readonly prefix: string
}

/** The key prefix of the store `storeId`: `<prefix><storeId>/`, `%` and `/` in `storeId` escaped. */
export const storePrefix = (prefix: string, storeId: string): string =>
  `${prefix}${storeId.replaceAll("%", "%25").replaceAll("/", "%2F")}/`

/** The expiry of an entry: `undefined` for none, `"now"` when it would be expired at once. */
const expiryOf = (ttl: Option.Option<Duration.Duration>): Duration.Duration | undefined | "now" => {
  if (Option.isNone(ttl) || !Duration.isFinite(ttl.value)) return undefined
  return Duration.toMillis(ttl.value) <= 0 ? "now" : ttl.value
}

/** The `BackingPersistence` on `store`, its stores under `prefix`. */
export const make = (store: StoreService, options: Options): Persistence.BackingPersistence =>
  Persistence.BackingPersistence.of({
    [Persistence.BackingPersistenceTypeId]: Persistence.BackingPersistenceTypeId,
    make: (storeId) =>
      Effect.sync(() => {
        const under = storePrefix(options.prefix, storeId)
        const keyOf = (key: string) => `${under}${key}`
        const backing =
          (method: string) =>
          <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.mapError(effect, (error) => Persistence.PersistenceBackingError.make(method, error))
        const mutationOf = (key: string, value: unknown, ttl: Option.Option<Duration.Duration>) => {
          const expiry = expiryOf(ttl)
          return expiry === "now"
            ? Mutation.delete(keyOf(key))
            : Mutation.put(keyOf(key), -1, value, { ttl: expiry })
        }
        const persisted: Persistence.BackingPersistenceStore = {
          get: (key) =>
            store.get(keyOf(key)).pipe(Effect.map(Option.map((record) => record.value)), backing("get")),
          getMany: (keys) =>
            store.getBatch(keys.map(keyOf)).pipe(
              Effect.map((found) =>
                keys.map((key) => {
                  const record = found.get(keyOf(key))
                  return record === undefined ? Option.none() : Option.some(record.value)
                }),
              ),
              backing("getMany"),
            ),
          set: (key, value, ttl) => {
            const expiry = expiryOf(ttl)
            const write =
              expiry === "now"
                ? Effect.asVoid(store.delete(keyOf(key)))
                : Effect.asVoid(store.put(keyOf(key), -1, value, { ttl: expiry }))
            return backing("set")(write)
          },
          setMany: (entries) =>
            entries.length === 0
              ? Effect.void
              : store
                  .mutateAll(entries.map(([key, value, ttl]) => mutationOf(key, value, ttl)))
                  .pipe(Effect.asVoid, backing("setMany")),
          remove: (key) => store.delete(keyOf(key)).pipe(Effect.asVoid, backing("remove")),
          clear: store.deletePrefix(under).pipe(Effect.asVoid, backing("clear")),
        }
        return persisted
      }),
  })

/** `Persistence.BackingPersistence` over the `Store` of the context, its stores under `prefix`. */
export const layer = (options: Options): Layer.Layer<Persistence.BackingPersistence, never, Store> =>
  Layer.effect(
    Persistence.BackingPersistence,
    Effect.map(Store, (store) => make(store, options)),
  )
