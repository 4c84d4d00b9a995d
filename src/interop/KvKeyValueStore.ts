/**
 * `@effect/platform`'s `KeyValueStore` over the {@link Store}: Effect's own `KeyValueStore`
 * combinators (`forSchema`, `prefix`, `layerSchema`) and whatever runs on a `KeyValueStore`
 * then keep their data in SQLite, PostgreSQL or rqlite, next to the application's records.
 *
 * Each entry is the record `<prefix><key>`:
 * - a string is stored as a string value (record type `string`);
 * - a `Uint8Array` as its base64 text with the record type {@link binaryType}, so a binary entry
 *   is told from a string that happens to be valid base64. `getUint8Array` decodes it; `get` of a
 *   binary entry returns the base64 text (as Effect's in-memory store does);
 * - a record written through the `Store` with a value other than a string (an object, a number)
 *   reads as its JSON text, so `forSchema` decodes it.
 *
 * `clear` and `size` see only the keys under `prefix`; `has`, `isEmpty`, `modify` and
 * `modifyUint8Array` are what `KeyValueStore.make` derives from `get`, `set` and `size` (a
 * `modify` is a read, then an unconditional write). Store failures become the platform's
 * `PlatformError`: an `InvalidArgumentError` (say, a key with a NUL character) a `BadArgument`,
 * a `StoreError` a `SystemError` of reason `Unknown`, each with the store's message as its
 * `description` and the store's error as its `cause`.
 */
import * as PlatformError from "@effect/platform/Error"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import {
  type InvalidArgumentError,
  type KvRecord,
  Store,
  type StoreError,
  type StoreService,
  type VersionMismatchError,
} from "../Store.js"

/** The record type of an entry set from a `Uint8Array` (its value: the bytes as base64). */
export const binaryType = "KeyValueStore/base64"

export interface Options {
  /**
   * The keys of this store are `<prefix><key>`; `clear` and `size` see only them. `""` makes the
   * whole store one `KeyValueStore` (then `clear` deletes every key).
   */
  readonly prefix: string
}

type Failure = InvalidArgumentError | StoreError | VersionMismatchError

/** A store failure as the platform's error of `method`, keeping the store's message and error. */
const platformError =
  (method: string) =>
  (error: Failure): PlatformError.PlatformError =>
    error._tag === "InvalidArgumentError"
      ? new PlatformError.BadArgument({
          module: "KeyValueStore",
          method,
          description: error.message,
          cause: error,
        })
      : new PlatformError.SystemError({
          reason: "Unknown",
          module: "KeyValueStore",
          method,
          description: error.message,
          cause: error,
        })

const encoder = new TextEncoder()

/** An entry's text: a string value as it is, any other value as its JSON. */
const textOf = (record: KvRecord): string =>
  typeof record.value === "string" ? record.value : JSON.stringify(record.value)

const bytesOf = (
  method: string,
  record: KvRecord,
): Effect.Effect<Uint8Array, PlatformError.PlatformError> => {
  if (record.type !== binaryType || typeof record.value !== "string") {
    return Effect.succeed(encoder.encode(textOf(record)))
  }
  return Either.match(Encoding.decodeBase64(record.value), {
    onLeft: (error) =>
      Effect.fail(
        new PlatformError.SystemError({
          reason: "InvalidData",
          module: "KeyValueStore",
          method,
          pathOrDescriptor: record.key,
          description: `the binary entry is not valid base64: ${error.message}`,
          cause: error,
        }),
      ),
    onRight: Effect.succeed,
  })
}

/** The `KeyValueStore` on `store`, under `prefix`. */
export const make = (store: StoreService, options: Options): KeyValueStore.KeyValueStore => {
  const { prefix } = options
  const keyOf = (key: string) => `${prefix}${key}`
  const read = (method: string, key: string) => Effect.mapError(store.get(keyOf(key)), platformError(method))
  // deletePrefix reads "*" as every key, and rejects ""
  const clear =
    prefix === ""
      ? store.deletePrefix("*")
      : prefix === "*"
        ? store.deleteRange("*", "+")
        : store.deletePrefix(prefix)
  return KeyValueStore.make({
    get: (key) => Effect.map(read("get", key), Option.map(textOf)),
    getUint8Array: (key) =>
      Effect.flatMap(
        read("getUint8Array", key),
        Option.match({
          onNone: () => Effect.succeedNone,
          onSome: (record) => Effect.asSome(bytesOf("getUint8Array", record)),
        }),
      ),
    set: (key, value) =>
      Effect.suspend(() =>
        typeof value === "string"
          ? store.put(keyOf(key), -1, value, { type: "string" })
          : store.put(keyOf(key), -1, Encoding.encodeBase64(value), { type: binaryType }),
      ).pipe(Effect.asVoid, Effect.mapError(platformError("set"))),
    remove: (key) => store.delete(keyOf(key)).pipe(Effect.asVoid, Effect.mapError(platformError("remove"))),
    clear: clear.pipe(Effect.asVoid, Effect.mapError(platformError("clear"))),
    size: Effect.mapError(store.countPrefix(prefix), platformError("size")),
  })
}

/** `KeyValueStore.KeyValueStore` over the `Store` of the context, its keys under `prefix`. */
export const layer = (options: Options): Layer.Layer<KeyValueStore.KeyValueStore, never, Store> =>
  Layer.effect(
    KeyValueStore.KeyValueStore,
    Effect.map(Store, (store) => make(store, options)),
  )
